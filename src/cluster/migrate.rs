//! Resharding: moving hash slots, with their keys, from one primary to another, the way
//! `redis-cli --cluster reshard` does it: `SETSLOT IMPORTING` on the target, `SETSLOT
//! MIGRATING` on the source, `GETKEYSINSLOT` + `MIGRATE … KEYS` until the slot is empty,
//! then `SETSLOT NODE` on the target, the source and every other primary.
//!
//! A plan is checked against the cluster before anything moves ([`validate`]), and several
//! slots move at once (a bounded number) so that a thousand slots take seconds.
//!
//! Length: about 80 lines are unit tests; the key-by-key move is one loop best read whole.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::ClusterError;
use super::admin::{AdminError, NodeRef, describe, live_addr, resolve};
use super::node::{ADMIN_TIMEOUT, Node};
use super::settle::{self, Reachable, seed_view};
use super::slot::Slot;
use super::topology::{self, NodeId, SlotRange, View, slot_list, to_ranges};
pub use super::transfer::Replace;
use super::transfer::{BatchOptions, move_keys, set_owner, tell_others};

/// Which slots go where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReshardPlan {
    /// The primary that serves the slots now.
    pub from: NodeRef,
    /// The primary that will serve them.
    pub to: NodeRef,
    /// The slots to move.
    pub slots: Vec<SlotRange>,
}

/// How a reshard runs.
#[derive(Debug, Clone)]
pub struct ReshardOptions {
    /// Keys per `GETKEYSINSLOT` / `MIGRATE` round (redis-cli's `--cluster-pipeline`).
    pub keys_per_batch: usize,
    /// Slots moved at once.
    pub parallel_slots: usize,
    /// `MIGRATE`'s own timeout for one batch.
    pub migrate_timeout: Duration,
    /// Limit for the whole reshard, waiting for agreement included.
    pub timeout: Duration,
    /// Keys that exist on both sides.
    pub replace: Replace,
    /// Wait until every answering node sees the target serving the slots before returning.
    pub wait_agreement: bool,
    /// Have the nodes move the slots themselves, all at once (Valkey 9's `CLUSTER
    /// MIGRATESLOTS`, [`super::atomic`]), instead of key by key.
    pub atomic: bool,
}

impl Default for ReshardOptions {
    fn default() -> Self {
        ReshardOptions {
            keys_per_batch: 100,
            parallel_slots: 32,
            migrate_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
            replace: Replace::Never,
            wait_agreement: true,
            atomic: false,
        }
    }
}

/// Progress of a reshard, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReshardEvent {
    /// The plan was accepted; nothing has moved yet.
    Started {
        /// The source.
        from: NodeId,
        /// The target.
        to: NodeId,
        /// Slots to move.
        slots: u32,
    },
    /// One `MIGRATE` round finished.
    Batch {
        /// The slot.
        slot: Slot,
        /// Keys moved in this round.
        keys: usize,
        /// Their size (`MEMORY USAGE` on the source), bytes.
        bytes: u64,
    },
    /// A slot was handed over: the target serves it.
    SlotMoved {
        /// The slot.
        slot: Slot,
        /// Keys it carried.
        keys: u64,
    },
    /// An atomic migration's job reached a new state (`snapshotting`, `streaming`, …,
    /// `success`).
    Phase {
        /// The state, as `CLUSTER GETSLOTMIGRATIONS` names it.
        state: String,
    },
    /// Every slot was handed over.
    Done {
        /// Slots moved.
        slots: u32,
        /// Keys moved.
        keys: u64,
        /// Time spent moving.
        elapsed: Duration,
        /// Their size, bytes.
        bytes: u64,
    },
}

/// A finished reshard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReshardReport {
    /// The source.
    pub from: NodeId,
    /// The target.
    pub to: NodeId,
    /// Slots moved.
    pub slots: u32,
    /// Keys moved.
    pub keys: u64,
    /// Their size as `MEMORY USAGE` estimated it on the source, bytes.
    pub bytes: u64,
    /// `MIGRATE` rounds.
    pub batches: u64,
    /// Keys that existed on the target and were overwritten (see [`Replace`]).
    pub replaced: u64,
    /// From the first command until the last slot was handed over.
    pub elapsed: Duration,
    /// Further time until every answering node agreed, when waited for.
    pub agreed_after: Option<Duration>,
}

impl ReshardReport {
    /// Keys moved per second of [`ReshardReport::elapsed`].
    pub fn keys_per_sec(&self) -> f64 {
        self.keys as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A plan checked against a view: who is who, and every slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPlan {
    /// The source's id.
    pub from: NodeId,
    /// The source's address.
    pub from_addr: SocketAddr,
    /// The target's id.
    pub to: NodeId,
    /// The target's address.
    pub to_addr: SocketAddr,
    /// The slots, sorted, without duplicates.
    pub slots: Vec<u16>,
}

/// Check `plan` against `view`, in this order: both nodes known, distinct, primaries, up;
/// slots named; the target serves none of them; the source serves all of them.
///
/// # Errors
/// The first check that fails, as its own [`AdminError`] variant.
pub fn validate(view: &View, plan: &ReshardPlan) -> Result<CheckedPlan, AdminError> {
    let from = resolve(view, &plan.from, "source")?;
    let to = resolve(view, &plan.to, "target")?;
    if from.id == to.id {
        return Err(AdminError::SameNode(describe(from)));
    }
    for (role, n) in [("target", to), ("source", from)] {
        if !n.is_primary() {
            let primary = n.primary.clone().unwrap_or_else(|| NodeId("-".into()));
            return Err(AdminError::IsReplica { role, node: describe(n), primary });
        }
    }
    let to_addr = live_addr(to, "target")?;
    let from_addr = live_addr(from, "source")?;
    let slots: BTreeSet<u16> = plan.slots.iter().flat_map(|r| r.start..=r.end).collect();
    if slots.is_empty() {
        return Err(AdminError::NoSlots);
    }
    let serves = |n: &super::topology::NodeEntry, s: u16| n.slots.iter().any(|r| r.start <= s && s <= r.end);
    let taken: Vec<u16> = slots.iter().copied().filter(|&s| serves(to, s)).collect();
    if !taken.is_empty() {
        return Err(AdminError::TargetOwns { node: describe(to), slots: slot_list(taken) });
    }
    let missing: Vec<u16> = slots.iter().copied().filter(|&s| !serves(from, s)).collect();
    if !missing.is_empty() {
        return Err(AdminError::SourceDoesNotOwn { node: describe(from), slots: slot_list(missing) });
    }
    Ok(CheckedPlan {
        from: from.id.clone(),
        from_addr,
        to: to.id.clone(),
        to_addr,
        slots: slots.into_iter().collect(),
    })
}

/// The lowest `count` slots `node` serves (fewer when it serves fewer).
///
/// # Errors
/// [`AdminError::UnknownNode`].
pub fn lowest_slots(view: &View, node: &NodeRef, count: u32) -> Result<Vec<SlotRange>, AdminError> {
    let entry = resolve(view, node, "source")?;
    let mut ranges = entry.slots.clone();
    ranges.sort();
    Ok(to_ranges(topology::slots_in(&ranges).into_iter().take(count as usize)))
}

/// The one slot `key` (or the `{tag}` in it) hashes to.
pub fn key_slot(key: &[u8]) -> SlotRange {
    let s = Slot::of(key).get();
    SlotRange { start: s, end: s }
}

/// Move the plan's slots and their keys from the source to the target. Nothing moves unless
/// the plan passes [`validate`] against the seed's view and the source's own, and none of
/// its slots is open on either node. `on_event` hears each step.
///
/// # Errors
/// A refusal from [`validate`] or [`AdminError::SlotsOpen`] before anything moved;
/// [`AdminError::Interrupted`] naming the slots possibly left open when a step fails part-way
/// or `opts.timeout` passes; [`ClusterError::NotReady`] when the nodes do not agree in time.
pub async fn reshard(
    seeds: &[SocketAddr],
    plan: &ReshardPlan,
    opts: &ReshardOptions,
    on_event: &(dyn Fn(ReshardEvent) + Send + Sync),
) -> Result<ReshardReport, AdminError> {
    let start = Instant::now();
    let view = seed_view(seeds).await?;
    let checked = validate(&view, plan)?;
    let conn_timeout = opts.migrate_timeout + ADMIN_TIMEOUT;
    let mut src = Node::connect(checked.from_addr, conn_timeout).await?;
    let mut dst = Node::connect(checked.to_addr, conn_timeout).await?;
    // The seed may lag; the source's own view is the authority on what it serves, and open
    // slots show only in a node's own line.
    let by_id =
        ReshardPlan { from: checked.from.clone().into(), to: checked.to.clone().into(), ..plan.clone() };
    let src_view = src.view().await?;
    validate(&src_view, &by_id)?;
    let dst_view = dst.view().await?;
    let wanted: BTreeSet<u16> = checked.slots.iter().copied().collect();
    let open: Vec<String> = [&src_view, &dst_view]
        .iter()
        .filter_map(|v| v.myself())
        .flat_map(|me| {
            me.open_slots.iter().filter(|o| wanted.contains(&o.0)).map(|o| format!("{} on {}", o.0, me.addr))
        })
        .collect();
    if !open.is_empty() {
        return Err(AdminError::SlotsOpen { slots: open.join(", ") });
    }
    let total = checked.slots.len() as u32;
    if opts.atomic {
        on_event(ReshardEvent::Started { from: checked.from.clone(), to: checked.to.clone(), slots: total });
        // The job hands every slot over or none: nothing is left open when it fails.
        let (keys, bytes) = super::atomic::contents(&mut src, &checked.slots).await?;
        let mut on_state = |state: &str| on_event(ReshardEvent::Phase { state: state.to_string() });
        let deadline = start + opts.timeout;
        super::atomic::migrate(&mut src, &checked.to, &checked.slots, deadline, &mut on_state).await?;
        let elapsed = start.elapsed();
        on_event(ReshardEvent::Done { slots: total, keys, bytes, elapsed });
        let tally = Tally { slots: total, keys, bytes, ..Tally::default() };
        return finish(seeds, &checked, opts, start, tally, elapsed).await;
    }
    let others = other_primaries(&view, &[&checked.from, &checked.to]).await;
    on_event(ReshardEvent::Started { from: checked.from.clone(), to: checked.to.clone(), slots: total });

    let ctx = SlotMove {
        checked: &checked,
        src,
        dst,
        others,
        opts,
        on_event,
        in_flight: Mutex::default(),
        counters: Default::default(),
        stop: AtomicBool::new(false),
    };
    let remaining = opts.timeout.saturating_sub(start.elapsed());
    let outcome = tokio::time::timeout(remaining, ctx.run_all()).await;
    let elapsed = start.elapsed();
    let (tally, failure) = match outcome {
        Ok(done) => done,
        Err(_) => {
            let t = ctx.tally();
            (
                t,
                Some(
                    ClusterError::NotReady { waited: elapsed, still: "the reshard timed out".into() }.into(),
                ),
            )
        }
    };
    if let Some(cause) = failure {
        let open = ctx.in_flight.lock().expect("not poisoned").clone();
        return Err(AdminError::Interrupted {
            moved: tally.slots,
            total,
            open: slot_list(open),
            cause: Box::new(cause),
        });
    }
    on_event(ReshardEvent::Done { slots: tally.slots, keys: tally.keys, bytes: tally.bytes, elapsed });
    finish(seeds, &checked, opts, start, tally, elapsed).await
}

/// The report of a reshard whose slots all moved, once every node agrees (when asked to).
async fn finish(
    seeds: &[SocketAddr],
    checked: &CheckedPlan,
    opts: &ReshardOptions,
    start: Instant,
    tally: Tally,
    elapsed: Duration,
) -> Result<ReshardReport, AdminError> {
    let mut report = ReshardReport {
        from: checked.from.clone(),
        to: checked.to.clone(),
        slots: tally.slots,
        keys: tally.keys,
        bytes: tally.bytes,
        batches: tally.batches,
        replaced: tally.replaced,
        elapsed,
        agreed_after: None,
    };
    if opts.wait_agreement {
        let left = opts.timeout.saturating_sub(start.elapsed());
        settle::wait_until(seeds, left, |r| handover_pending(r, &checked.to, &checked.slots)).await?;
        report.agreed_after = Some(start.elapsed() - elapsed);
    }
    Ok(report)
}

/// Why not every answering node sees `to` serving `slots` with none of them open.
pub fn handover_pending(r: &Reachable, to: &NodeId, slots: &[u16]) -> Option<String> {
    for report in &r.reports {
        let view = &report.view;
        if let Some(&s) = slots.iter().find(|&&s| view.owner_of(s).map(|o| &o.id) != Some(to)) {
            return Some(format!("{} does not yet see slot {s} on {to}", report.addr));
        }
        if let Some(me) = view.myself()
            && let Some(o) = me.open_slots.iter().find(|o| slots.binary_search(&o.0).is_ok())
        {
            return Some(format!("{} still has slot {} open", report.addr, o.0));
        }
    }
    None
}

/// Connections to the primaries of `view` other than `skip` that answer; the others are left
/// to learn of moves through gossip.
pub(crate) async fn other_primaries(view: &View, skip: &[&NodeId]) -> Vec<Node> {
    let candidates = view.nodes.iter().filter(|n| n.is_primary() && !n.is_failed() && !skip.contains(&&n.id));
    let connects = candidates.filter_map(|n| n.addr.parse().ok()).map(|a| Node::connect(a, ADMIN_TIMEOUT));
    let mut out = Vec::new();
    for r in futures_util::future::join_all(connects).await {
        match r {
            Ok(n) => out.push(n),
            Err(e) => {
                tracing::warn!(error = %e, "A primary does not answer; it will learn of the move by gossip.")
            }
        }
    }
    out
}

/// Counts of what moved.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    slots: u32,
    keys: u64,
    batches: u64,
    replaced: u64,
    bytes: u64,
}

/// One reshard's shared state while its slots move.
struct SlotMove<'a> {
    checked: &'a CheckedPlan,
    src: Node,
    dst: Node,
    others: Vec<Node>,
    opts: &'a ReshardOptions,
    on_event: &'a (dyn Fn(ReshardEvent) + Send + Sync),
    in_flight: Mutex<BTreeSet<u16>>,
    counters: Counters,
    stop: AtomicBool,
}

/// What the slot moves under way have done so far, counted from several tasks at once.
#[derive(Default)]
struct Counters {
    slots: AtomicU64,
    keys: AtomicU64,
    batches: AtomicU64,
    replaced: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl SlotMove<'_> {
    fn tally(&self) -> Tally {
        let c = &self.counters;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Tally {
            slots: get(&c.slots) as u32,
            keys: get(&c.keys),
            batches: get(&c.batches),
            replaced: get(&c.replaced),
            bytes: get(&c.bytes),
        }
    }

    /// Move every slot, `parallel_slots` at a time; after the first failure no new slot
    /// starts, and the ones under way finish or fail on their own.
    async fn run_all(&self) -> (Tally, Option<AdminError>) {
        let parallel = self.opts.parallel_slots.max(1);
        let results: Vec<Result<(), AdminError>> =
            futures_util::stream::iter(self.checked.slots.iter().copied())
                .map(|slot| async move {
                    if self.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    self.in_flight.lock().expect("not poisoned").insert(slot);
                    let r = self.move_one(slot).await;
                    if r.is_err() {
                        self.stop.store(true, Ordering::Relaxed);
                    } else {
                        self.in_flight.lock().expect("not poisoned").remove(&slot);
                    }
                    r
                })
                .buffer_unordered(parallel)
                .collect()
                .await;
        (self.tally(), results.into_iter().find_map(Result::err))
    }

    async fn move_one(&self, slot: u16) -> Result<(), AdminError> {
        let (mut src, mut dst) = (self.src.clone(), self.dst.clone());
        let (from, to) = (&self.checked.from.0, &self.checked.to.0);
        dst.run::<()>(redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("IMPORTING").arg(from)).await?;
        src.run::<()>(redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("MIGRATING").arg(to)).await?;
        let batch = BatchOptions {
            keys_per_batch: self.opts.keys_per_batch,
            migrate_timeout: self.opts.migrate_timeout,
            replace: self.opts.replace,
        };
        let moved = move_keys(&mut src, &mut dst, slot, &batch, |keys, bytes| {
            Counters::add(&self.counters.batches, 1);
            (self.on_event)(ReshardEvent::Batch { slot: Slot::new(slot).expect("a slot"), keys, bytes });
        })
        .await?;
        // The target first: it bumps its epoch and claims the slot, then the source stops
        // redirecting with ASK, then the rest learn at once instead of through gossip.
        set_owner(&mut dst, slot, &self.checked.to).await?;
        match set_owner(&mut src, slot, &self.checked.to).await {
            // A primary that learnt from the target that its last slot is gone turns into the
            // target's replica (cluster-allow-replica-migration) before this reaches it; the
            // slot is handed over all the same, as redis-cli also accepts.
            Err(ClusterError::Command { source, .. }) if source.to_string().contains("only with masters") => {
                tracing::debug!(slot, "The source became a replica after giving away its last slot.");
            }
            other => other?,
        }
        tell_others(&self.others, slot, &self.checked.to).await;
        let c = &self.counters;
        Counters::add(&c.slots, 1);
        Counters::add(&c.keys, moved.keys);
        Counters::add(&c.replaced, moved.replaced);
        Counters::add(&c.bytes, moved.bytes);
        (self.on_event)(ReshardEvent::SlotMoved { slot: Slot::new(slot).expect("a slot"), keys: moved.keys });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIEW: &str = "\
a 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-5460
b 10.0.0.2:6379@16379 master - 0 0 2 connected 5461-10922
c 10.0.0.3:6379@16379 master - 0 0 3 connected 10923-16383
d 10.0.0.4:6379@16379 slave a 0 0 1 connected
e 10.0.0.5:6379@16379 master,fail - 0 0 5 disconnected
";

    fn plan(from: &str, to: &str, start: u16, end: u16) -> ReshardPlan {
        ReshardPlan {
            from: NodeRef::Id(NodeId(from.into())),
            to: to.parse().unwrap_or(NodeRef::Id(NodeId(to.into()))),
            slots: vec![SlotRange { start, end }],
        }
    }

    fn refusal(p: &ReshardPlan) -> String {
        validate(&View::parse(VIEW).unwrap(), p).unwrap_err().to_string()
    }

    #[test]
    fn a_good_plan_resolves_ids_addresses_and_slots() {
        let v = View::parse(VIEW).unwrap();
        let c = validate(&v, &plan("a", "10.0.0.2:6379", 0, 999)).unwrap();
        assert_eq!(c.to, NodeId("b".into()));
        assert_eq!(c.from_addr, "10.0.0.1:6379".parse().unwrap());
        assert_eq!(c.slots.len(), 1000);
    }

    #[test]
    fn each_bad_plan_is_refused_with_its_own_reason() {
        assert!(refusal(&plan("a", "10.9.9.9:6379", 0, 9)).contains("target 10.9.9.9:6379 is not a node"));
        assert!(refusal(&plan("zz", "b", 0, 9)).contains("source zz is not a node"));
        assert!(refusal(&plan("a", "a", 0, 9)).contains("same node"));
        assert!(refusal(&plan("a", "d", 0, 9)).contains("target 10.0.0.4:6379 (d) is a replica (of a)"));
        assert!(refusal(&plan("d", "b", 0, 9)).contains("source 10.0.0.4:6379 (d) is a replica"));
        assert!(refusal(&plan("a", "e", 0, 9)).contains("target 10.0.0.5:6379 (e) is down (master,fail)"));
        assert!(
            refusal(&plan("a", "b", 5000, 5999))
                .contains("target 10.0.0.2:6379 (b) already serves slots 5461-5999")
        );
        assert!(
            refusal(&plan("c", "b", 0, 9))
                .contains("source 10.0.0.3:6379 (c) does not serve slots 0-9 (10 slots)")
        );
        let empty = ReshardPlan { slots: vec![], ..plan("a", "b", 0, 0) };
        assert!(refusal(&empty).contains("no slots"));
    }

    #[test]
    fn slots_are_picked_lowest_first_or_by_key() {
        let v = View::parse(VIEW).unwrap();
        let b = NodeRef::Id(NodeId("b".into()));
        assert_eq!(lowest_slots(&v, &b, 10).unwrap(), vec![SlotRange { start: 5461, end: 5470 }]);
        assert_eq!(lowest_slots(&v, &b, 100_000).unwrap(), vec![SlotRange { start: 5461, end: 10922 }]);
        assert_eq!(key_slot(b"{user:1}:x"), key_slot(b"user:1"));
        assert_eq!(key_slot(b"foo"), SlotRange { start: 12182, end: 12182 });
    }

    #[test]
    fn handover_is_pending_until_every_node_sees_the_target() {
        use super::super::NodeReport;
        let report = |text: &str| NodeReport {
            addr: "10.0.0.1:6379".parse().unwrap(),
            view: View::parse(text).unwrap(),
            cluster_info: Default::default(),
            replication: Default::default(),
        };
        let moved = VIEW.replace("0-5460", "10-5460").replace("5461-10922", "0-9 5461-10922");
        let slots: Vec<u16> = (0..10).collect();
        let b = NodeId("b".into());
        let r = Reachable { reports: vec![report(&moved), report(VIEW)], unreachable: vec![] };
        assert!(handover_pending(&r, &b, &slots).unwrap().contains("slot 0"));
        let r = Reachable { reports: vec![report(&moved)], unreachable: vec![] };
        assert_eq!(handover_pending(&r, &b, &slots), None);
        let open = moved.replace("10-5460", "10-5460 [3->-b]");
        let r = Reachable { reports: vec![report(&open)], unreachable: vec![] };
        assert!(handover_pending(&r, &b, &slots).unwrap().contains("slot 3 open"));
    }
}
