//! Finding and repairing slots a move left behind, as `redis-cli --cluster fix` does: slots
//! left importing or migrating ([`open_slots`]) and slots no answering primary serves
//! ([`uncovered_slots`]). [`fix`] finishes or closes each open slot and gives each uncovered
//! one an owner, then waits until the nodes that answer agree and report `cluster_state:ok`.
//!
//! Length: about 70 lines are unit tests; the repair's cases (finish, take over, close,
//! assign) are kept together so their order can be read in one place.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::admin::{AdminError, describe};
use super::node::{ADMIN_TIMEOUT, Node};
use super::settle::{self, Reachable};
use super::slot::{SLOT_COUNT, Slot};
use super::topology::{self, NodeId, SlotRange, View, slot_list, to_ranges};
use super::transfer::{BatchOptions, Moved, Replace, move_keys, set_owner};

/// Which way a slot is open on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpenKind {
    /// `[slot-<-peer]`: the node accepts the slot's keys from `peer`.
    Importing,
    /// `[slot->-peer]`: the node sends the slot's keys to `peer`.
    Migrating,
}

/// A slot open on one node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpenSlot {
    /// The slot.
    pub slot: Slot,
    /// The node with the slot open.
    pub node: NodeId,
    /// Its address.
    pub addr: String,
    /// The node at the other end of the move.
    pub peer: NodeId,
    /// Which way.
    pub kind: OpenKind,
}

/// Every slot open on the primary that answered each view. A node shows its open slots
/// only in its own line of `CLUSTER NODES`, so this needs every node's own view. Valkey (8
/// and later) shows a replica its primary's open slots too, and changes them when its
/// primary's change: they are left out, the primary's are what is repaired.
pub fn open_slots(views: &[View]) -> Vec<OpenSlot> {
    let mut out: Vec<OpenSlot> = views
        .iter()
        .filter_map(View::myself)
        .filter(|me| me.is_primary())
        .flat_map(|me| {
            me.open_slots.iter().filter_map(|(slot, peer, importing)| {
                Some(OpenSlot {
                    slot: Slot::new(*slot)?,
                    node: me.id.clone(),
                    addr: me.addr.clone(),
                    peer: peer.clone(),
                    kind: if *importing { OpenKind::Importing } else { OpenKind::Migrating },
                })
            })
        })
        .collect();
    out.sort();
    out
}

/// Slots that no primary among the views' own nodes claims for itself: when each view is a
/// different node's, the slots no answering primary serves.
pub fn uncovered_slots(views: &[View]) -> Vec<SlotRange> {
    let mut served = vec![false; usize::from(SLOT_COUNT)];
    for me in views.iter().filter_map(View::myself).filter(|m| m.is_primary()) {
        for r in &me.slots {
            for s in r.start..=r.end {
                served[usize::from(s)] = true;
            }
        }
    }
    to_ranges((0..SLOT_COUNT).filter(|&s| !served[usize::from(s)]))
}

/// Open and uncovered slots of a cluster, and the nodes that did not answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotHealth {
    /// Slots open somewhere.
    pub open: Vec<OpenSlot>,
    /// Slots no answering primary serves.
    pub uncovered: Vec<SlotRange>,
    /// Nodes that did not answer (their slots count as uncovered).
    pub unreachable: Vec<NodeId>,
}

impl SlotHealth {
    /// True when no slot is open or uncovered.
    pub fn is_clean(&self) -> bool {
        self.open.is_empty() && self.uncovered.is_empty()
    }

    fn of(r: &Reachable) -> SlotHealth {
        let views: Vec<View> = r.reports.iter().map(|r| r.view.clone()).collect();
        SlotHealth {
            open: open_slots(&views),
            uncovered: uncovered_slots(&views),
            unreachable: r.unreachable.clone(),
        }
    }
}

impl fmt::Display for SlotHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return f.write_str("no slot open or uncovered");
        }
        let open: Vec<String> = self
            .open
            .iter()
            .map(|o| {
                format!(
                    "{} {} on {}",
                    o.slot,
                    if o.kind == OpenKind::Importing { "importing" } else { "migrating" },
                    o.addr
                )
            })
            .collect();
        let uncovered: u32 = self.uncovered.iter().map(SlotRange::len).sum();
        let shown = open.len().min(6);
        let more = if open.len() > shown { ", …" } else { "" };
        write!(
            f,
            "{} open slots [{}{more}], {uncovered} uncovered slots",
            open.len(),
            open[..shown].join(", ")
        )
    }
}

/// Ask every node of `view` and report open and uncovered slots.
pub async fn slot_health(view: &View) -> SlotHealth {
    SlotHealth::of(&settle::reach(view).await)
}

/// [`slot_health`] of the cluster the seeds belong to.
///
/// # Errors
/// [`AdminError::Cluster`] when no seed answers.
pub async fn check_slots(seeds: &[SocketAddr]) -> Result<SlotHealth, AdminError> {
    Ok(slot_health(&settle::seed_view(seeds).await?).await)
}

/// How long a node may take to hear that a replica was promoted.
const PROMOTION_NEWS: Duration = Duration::from_secs(5);

/// How [`fix`] runs.
#[derive(Debug, Clone)]
pub struct FixOptions {
    /// Keys per `MIGRATE` round.
    pub keys_per_batch: usize,
    /// `MIGRATE`'s own timeout for one round.
    pub migrate_timeout: Duration,
    /// Limit for the whole repair, waiting for a pending failover and agreement included.
    pub timeout: Duration,
    /// Keys present on both sides of a finished move (by default overwritten only when equal).
    pub replace: Replace,
}

impl Default for FixOptions {
    fn default() -> Self {
        FixOptions {
            keys_per_batch: 100,
            migrate_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            replace: Replace::IfIdentical,
        }
    }
}

/// What [`fix`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FixReport {
    /// The slots as found.
    pub before: SlotHealth,
    /// Open slots closed (`SETSLOT STABLE`) where they were.
    pub closed: Vec<SlotRange>,
    /// Open slots whose move was finished, with the owner they went to.
    pub finished: Vec<(u16, NodeId)>,
    /// Uncovered slots given an owner.
    pub assigned: Vec<(SlotRange, NodeId)>,
    /// Keys moved while finishing.
    pub keys_moved: u64,
    /// Keys that existed on both sides and were overwritten.
    pub replaced: u64,
    /// The whole repair, agreement included.
    pub elapsed: Duration,
}

/// What to do with one slot, decided from who claims it, who imports it and who holds keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotFix {
    /// Close it where it is open; the owner keeps it.
    Close,
    /// Make this node the owner, moving every other node's keys for the slot to it.
    Finish(NodeId),
    /// No node holds keys and none claims it: give it to the primary with fewest slots.
    Assign,
}

/// Decide a slot's repair. `claimants` serve the slot by their own account, `importers`
/// have it importing, `keys` counts the slot's keys per node. An importer holding keys gets
/// the slot (the move is finished); an unclaimed slot goes to the node holding most keys, or
/// to its importer; two claimants are settled for the one holding most keys. When one
/// claimant and another node hold keys, as redis-cli does: a claimant `migrating` the slot
/// was moving it, and the move is finished to the holder with most keys (a move's target that
/// died and whose replica took over holds the keys moved so far, with no importing state
/// left); otherwise the claimant keeps the slot and gets the keys back. Otherwise the slot is
/// closed.
pub fn decide(
    claimants: &[NodeId],
    importers: &[NodeId],
    migrating: &[NodeId],
    keys: &BTreeMap<NodeId, u64>,
) -> SlotFix {
    let count = |n: &NodeId| keys.get(n).copied().unwrap_or(0);
    let most = |nodes: &mut dyn Iterator<Item = &NodeId>| {
        nodes.filter(|n| count(n) > 0).max_by(|a, b| count(a).cmp(&count(b)).then_with(|| b.cmp(a))).cloned()
    };
    if let Some(importer) = most(&mut importers.iter()) {
        return SlotFix::Finish(importer);
    }
    match claimants {
        [] => match (most(&mut keys.keys()), importers.first()) {
            (Some(holder), _) => SlotFix::Finish(holder),
            (None, Some(importer)) => SlotFix::Finish(importer.clone()),
            (None, None) => SlotFix::Assign,
        },
        // A live importer (without keys yet) is where the claimant was moving the slot.
        [owner] => match most(&mut keys.keys().filter(|n| *n != owner)) {
            Some(holder) if migrating.contains(owner) => {
                SlotFix::Finish(importers.first().cloned().unwrap_or(holder))
            }
            Some(_) => SlotFix::Finish(owner.clone()),
            None => SlotFix::Close,
        },
        many => SlotFix::Finish(most(&mut many.iter()).unwrap_or_else(|| many[0].clone())),
    }
}

/// Repair every open and uncovered slot (see [`decide`]), then wait until the answering nodes
/// settle. A primary that is down but has a replica that answers is first given the time to
/// fail over: taking its slots now would race the election.
///
/// # Errors
/// [`AdminError::FailoverPending`] when that failover does not come within the timeout;
/// [`AdminError::BusyKey`] when a key differs on both sides; [`AdminError::Cluster`] when a
/// node fails a command or the cluster does not settle in time.
pub async fn fix(seeds: &[SocketAddr], opts: &FixOptions) -> Result<FixReport, AdminError> {
    let start = Instant::now();
    let (view, reachable) = loop {
        let view = settle::seed_view(seeds).await?;
        let reachable = settle::reach(&view).await;
        match pending_failover(&view, &reachable) {
            None => break (view, reachable),
            Some(e) if start.elapsed() >= opts.timeout => return Err(e),
            Some(_) => sleep(Duration::from_millis(200)).await,
        }
    };
    let health = SlotHealth::of(&reachable);
    let mut report = FixReport { before: health.clone(), ..Default::default() };
    let mut nodes: BTreeMap<NodeId, Node> = BTreeMap::new();
    let mut slot_counts: BTreeMap<NodeId, u32> = BTreeMap::new();
    let mut claims: BTreeMap<u16, Vec<NodeId>> = BTreeMap::new();
    for r in &reachable.reports {
        let Some(me) = r.view.myself().filter(|m| m.is_primary()) else { continue };
        nodes.insert(me.id.clone(), Node::connect(r.addr, opts.migrate_timeout + ADMIN_TIMEOUT).await?);
        slot_counts.insert(me.id.clone(), me.slot_count());
        for s in topology::slots_in(&me.slots) {
            claims.entry(s).or_default().push(me.id.clone());
        }
    }
    let mut todo: BTreeSet<u16> = health.open.iter().map(|o| o.slot.get()).collect();
    todo.extend(topology::slots_in(&health.uncovered));
    todo.extend(claims.iter().filter(|(_, c)| c.len() > 1).map(|(s, _)| *s));
    let keys = count_keys(&mut nodes, &todo).await?;
    let batch = BatchOptions {
        keys_per_batch: opts.keys_per_batch,
        migrate_timeout: opts.migrate_timeout,
        replace: opts.replace,
    };
    // Decide every slot first: slots no answering primary serves get their owner before any
    // key moves, because a node refuses keys (CLUSTERDOWN) until every slot is covered.
    let mut assign: BTreeMap<NodeId, Vec<u16>> = BTreeMap::new();
    let mut plans = Vec::new();
    for &slot in &todo {
        let open: Vec<&OpenSlot> = health.open.iter().filter(|o| o.slot.get() == slot).collect();
        let importers: Vec<NodeId> =
            open.iter().filter(|o| o.kind == OpenKind::Importing).map(|o| o.node.clone()).collect();
        let mut claimants = claims.get(&slot).cloned().unwrap_or_default();
        let slot_keys = keys.get(&slot).cloned().unwrap_or_default();
        let migrating: Vec<NodeId> =
            open.iter().filter(|o| o.kind == OpenKind::Migrating).map(|o| o.node.clone()).collect();
        let decision = decide(&claimants, &importers, &migrating, &slot_keys);
        let owner = match &decision {
            SlotFix::Close => None,
            SlotFix::Finish(owner) if !claimants.is_empty() => Some(owner.clone()),
            SlotFix::Finish(owner) => {
                assign.entry(owner.clone()).or_default().push(slot);
                claimants.push(owner.clone());
                Some(owner.clone())
            }
            SlotFix::Assign => {
                let fewest =
                    slot_counts.iter().min_by_key(|(id, c)| (**c, (*id).clone())).map(|(id, _)| id.clone());
                let Some(owner) = fewest else { continue };
                *slot_counts.get_mut(&owner).expect("counted") += 1;
                assign.entry(owner).or_default().push(slot);
                continue;
            }
        };
        plans.push((slot, owner, claimants, slot_keys, open));
    }
    // A move to finish with one live claimant is taken over where it stands, not closed and
    // reopened: closed, the claimant would serve the slot alone meanwhile, answering for
    // keys the other side holds (reads miss them, writes collide when the move resumes).
    // The owner-to-be is told the claimant owns the slot (an importer ignores that news, so
    // one whose source died keeps the dead node as owner and reports the cluster down) and
    // imports from it; the claimant migrates to it.
    let mut taken_over: BTreeSet<(u16, NodeId)> = BTreeSet::new();
    for (slot, owner, claimants, _, _) in &plans {
        let (Some(owner), [claimant]) = (owner, claimants.as_slice()) else { continue };
        if claimant == owner {
            continue;
        }
        let setslot = |state: &str, peer: &NodeId| {
            redis::cmd("CLUSTER").arg("SETSLOT").arg(*slot).arg(state).arg(&peer.0).clone()
        };
        let mut pipe = redis::pipe();
        pipe.add_command(setslot("NODE", claimant))
            .ignore()
            .add_command(setslot("IMPORTING", claimant))
            .ignore();
        // Either side may have been promoted just now and still be a replica in the other's
        // eyes (which refuses it as an owner or a target) until gossip says otherwise.
        let patience = PROMOTION_NEWS.min(opts.timeout.saturating_sub(start.elapsed()));
        let asked = Instant::now();
        loop {
            let mut tried = nodes.get_mut(owner).expect("an answering primary").run_pipe::<()>(&pipe).await;
            if tried.is_ok() {
                let claimant = nodes.get_mut(claimant).expect("an answering primary");
                tried = claimant.run::<()>(&setslot("MIGRATING", owner)).await;
            }
            match tried {
                Ok(()) => break,
                Err(e) if asked.elapsed() >= patience => return Err(e.into()),
                Err(_) => sleep(Duration::from_millis(100)).await,
            }
        }
        taken_over.extend([(*slot, owner.clone()), (*slot, claimant.clone())]);
    }
    // Every other open slot is closed first; a finished move opens it again below.
    for o in health.open.iter().filter(|o| !taken_over.contains(&(o.slot.get(), o.node.clone()))) {
        let node = nodes.get_mut(&o.node).expect("an answering primary");
        node.run::<()>(redis::cmd("CLUSTER").arg("SETSLOT").arg(o.slot.get()).arg("STABLE")).await?;
    }
    for (owner, slots) in &assign {
        take_slots(&mut nodes, owner, slots).await?;
        report.assigned.extend(to_ranges(slots.iter().copied()).into_iter().map(|r| (r, owner.clone())));
    }
    if plans.iter().any(|p| p.1.is_some()) {
        wait_state_ok(&mut nodes, opts.timeout.saturating_sub(start.elapsed())).await?;
    }
    let mut closed = Vec::new();
    for (slot, owner, claimants, slot_keys, open) in plans {
        match owner {
            None => closed.push(slot),
            Some(owner) => {
                let moved = finish(&mut nodes, slot, &owner, &claimants, &slot_keys, &open, &batch).await?;
                report.keys_moved += moved.keys;
                report.replaced += moved.replaced;
                report.finished.push((slot, owner));
            }
        }
    }
    report.closed = to_ranges(closed);
    tracing::info!(
        closed = report.closed.len(),
        finished = report.finished.len(),
        assigned = report.assigned.len(),
        "Slots repaired; waiting for the nodes to agree."
    );
    drop(view);
    settle::wait_settled(seeds, opts.timeout.saturating_sub(start.elapsed())).await?;
    report.elapsed = start.elapsed();
    Ok(report)
}

/// Poll the primaries until each reports `cluster_state:ok`: a node refuses the keys of a
/// move while its cluster is down.
async fn wait_state_ok(nodes: &mut BTreeMap<NodeId, Node>, timeout: Duration) -> Result<(), AdminError> {
    let nodes = &tokio::sync::Mutex::new(nodes);
    super::settle::poll_until(timeout, Duration::from_millis(50), || async move {
        for node in nodes.lock().await.values_mut() {
            let state = node.cluster_info().await?.get("cluster_state").cloned().unwrap_or_default();
            if state != "ok" {
                return Ok(Some(format!("{} reports cluster_state:{state}", node.addr)));
            }
        }
        Ok::<_, AdminError>(None)
    })
    .await
}

/// A primary that serves slots and does not answer, and either has a replica that does
/// (a failover may come) or is not marked failed (it may come back).
fn pending_failover(view: &View, r: &Reachable) -> Option<AdminError> {
    let answering: BTreeSet<&NodeId> =
        r.reports.iter().filter_map(|r| r.view.myself()).map(|m| &m.id).collect();
    for down in
        view.nodes.iter().filter(|n| n.is_primary() && n.slot_count() > 0 && !answering.contains(&n.id))
    {
        if let Some(replica) =
            view.nodes.iter().find(|n| n.primary.as_ref() == Some(&down.id) && answering.contains(&n.id))
        {
            return Some(AdminError::FailoverPending { primary: describe(down), replica: describe(replica) });
        }
        // Only a primary the cluster gave up on may lose its slots: one that merely does not
        // answer us (paused, cut off from this host) still holds its keys.
        if !down.is_failed() && !down.has_flag("noaddr") {
            return Some(AdminError::PrimaryUnreachable { primary: describe(down) });
        }
    }
    None
}

/// `COUNTKEYSINSLOT` of every slot in `slots` on every node, pipelined per node: slot → node
/// → keys (nodes with none left out).
async fn count_keys(
    nodes: &mut BTreeMap<NodeId, Node>,
    slots: &BTreeSet<u16>,
) -> Result<BTreeMap<u16, BTreeMap<NodeId, u64>>, AdminError> {
    let mut out: BTreeMap<u16, BTreeMap<NodeId, u64>> = BTreeMap::new();
    if slots.is_empty() {
        return Ok(out);
    }
    for (id, node) in nodes.iter_mut() {
        let mut pipe = redis::pipe();
        for &s in slots {
            pipe.cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(s);
        }
        let counts: Vec<u64> = node.run_pipe(&pipe).await?;
        for (&s, n) in slots.iter().zip(counts).filter(|(_, n)| *n > 0) {
            out.entry(s).or_default().insert(id.clone(), n);
        }
    }
    Ok(out)
}

/// Make `owner` serve `slot` with every key any other node holds for it: the claimant (if
/// any) keeps serving while its keys move (`MIGRATING`, with `owner` `IMPORTING`); with no
/// live claimant `owner` takes the slot first. Then every primary is told, and the slot is
/// closed wherever it was open.
async fn finish(
    nodes: &mut BTreeMap<NodeId, Node>,
    slot: u16,
    owner: &NodeId,
    claimants: &[NodeId],
    keys: &BTreeMap<NodeId, u64>,
    open: &[&OpenSlot],
    batch: &BatchOptions,
) -> Result<Moved, AdminError> {
    let mut dst = nodes[owner].clone();
    let setslot = |state: &str, peer: &NodeId| {
        redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg(state).arg(&peer.0).clone()
    };
    let other_claimant = claimants.iter().find(|c| *c != owner);
    if !claimants.contains(owner) {
        match other_claimant {
            Some(c) => dst.run::<()>(&setslot("IMPORTING", c)).await?,
            None => take_slots(nodes, owner, &[slot]).await?,
        }
    }
    for c in claimants.iter().filter(|c| *c != owner) {
        nodes.get_mut(c).expect("a claimant answers").run::<()>(&setslot("MIGRATING", owner)).await?;
    }
    let mut moved = Moved::default();
    for holder in keys.keys().filter(|h| *h != owner) {
        let mut src = nodes[holder].clone();
        // A node MIGRATEs keys of a slot it does not serve only while the slot is open on
        // it: a holder that claims nothing is opened as an importer for the move.
        let opened = !claimants.contains(holder);
        if opened {
            src.run::<()>(&setslot("IMPORTING", owner)).await?;
        }
        let m = move_keys(&mut src, &mut dst, slot, batch, |_, _| {}).await?;
        if opened {
            src.run::<()>(redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("STABLE")).await?;
        }
        moved.keys += m.keys;
        moved.replaced += m.replaced;
    }
    set_owner(&mut dst, slot, owner).await?;
    let _: String = dst.run(redis::cmd("CLUSTER").arg("BUMPEPOCH")).await?;
    // Claimants first: they must stop serving before anyone else hears of the change.
    let mut order: Vec<&NodeId> = claimants.iter().filter(|c| *c != owner).collect();
    order.extend(nodes.keys().filter(|n| *n != owner && !claimants.contains(n)));
    for id in order {
        let mut n = nodes[id].clone();
        set_owner(&mut n, slot, owner).await?;
    }
    for o in open {
        let mut n = nodes[&o.node].clone();
        n.run::<()>(redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("STABLE")).await?;
    }
    Ok(moved)
}

/// Give `slots` to `owner`: it claims them and bumps its epoch so its claim wins over a
/// node that is gone, then every other primary is told (pipelined).
async fn take_slots(
    nodes: &mut BTreeMap<NodeId, Node>,
    owner: &NodeId,
    slots: &[u16],
) -> Result<(), AdminError> {
    let mut pipe = redis::pipe();
    for &s in slots {
        pipe.cmd("CLUSTER").arg("SETSLOT").arg(s).arg("NODE").arg(&owner.0).ignore();
    }
    nodes.get_mut(owner).expect("an answering primary").run_pipe::<()>(&pipe).await?;
    let _: String =
        nodes.get_mut(owner).expect("answering").run(redis::cmd("CLUSTER").arg("BUMPEPOCH")).await?;
    for (id, node) in nodes.iter_mut().filter(|(id, _)| *id != owner) {
        if let Err(e) = node.run_pipe::<()>(&pipe).await {
            tracing::warn!(node = %id, error = %e, "A primary did not take the new owners; gossip will tell it.");
        }
    }
    tracing::debug!(owner = %owner, slots = %slot_list(slots.iter().copied()), "Slots assigned.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId(s.into())
    }

    const A: &str = "a 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-8191 [5->-b]\n";
    const B: &str = "b 10.0.0.2:6379@16379 myself,master - 0 0 2 connected 8192-16000 [5-<-a]\n";
    const C: &str = "c 10.0.0.3:6379@16379 myself,slave a 0 0 1 connected\n";

    #[test]
    fn open_slots_come_from_each_nodes_own_line() {
        let views: Vec<View> = [A, B, C].iter().map(|t| View::parse(t).unwrap()).collect();
        let open = open_slots(&views);
        assert_eq!(open.len(), 2);
        // By slot, then by node.
        assert_eq!((open[0].slot.get(), open[0].kind, &open[0].peer), (5, OpenKind::Migrating, &id("b")));
        assert_eq!(open[1].node, id("b"));
        assert_eq!(open[1].kind, OpenKind::Importing);
        // Another node's line never counts: here `a` is not `myself`.
        let other = View::parse(&A.replace("myself,", "")).unwrap();
        assert!(open_slots(&[other]).is_empty());
        // A Valkey replica shows its primary's open slot in its own line: its primary's
        // state is the one that counts.
        let replica = View::parse(&C.replace("connected\n", "connected [5->-b]\n")).unwrap();
        assert!(open_slots(&[replica]).is_empty());
    }

    #[test]
    fn uncovered_slots_are_those_no_answering_primary_claims() {
        let views: Vec<View> = [A, B, C].iter().map(|t| View::parse(t).unwrap()).collect();
        assert_eq!(uncovered_slots(&views), vec![SlotRange { start: 16001, end: 16383 }]);
        // Without b's own answer, its slots are uncovered whatever a thinks.
        assert_eq!(uncovered_slots(&views[..1]), vec![SlotRange { start: 8192, end: 16383 }]);
        let health =
            SlotHealth { open: open_slots(&views), uncovered: uncovered_slots(&views), unreachable: vec![] };
        assert!(!health.is_clean());
        assert_eq!(
            health.to_string(),
            "2 open slots [5 migrating on 10.0.0.1:6379, 5 importing on 10.0.0.2:6379], 383 uncovered slots"
        );
    }

    #[test]
    fn decisions_follow_the_keys() {
        let keys = |pairs: &[(&str, u64)]| pairs.iter().map(|(n, k)| (id(n), *k)).collect::<BTreeMap<_, _>>();
        // An importer with keys: finish the move to it.
        assert_eq!(
            decide(&[id("a")], &[id("b")], &[], &keys(&[("a", 5), ("b", 1)])),
            SlotFix::Finish(id("b"))
        );
        // An importer without keys: close; the owner keeps the slot.
        assert_eq!(decide(&[id("a")], &[id("b")], &[], &keys(&[("a", 5)])), SlotFix::Close);
        // The owner is gone: to whoever holds keys, else to the importer…
        assert_eq!(decide(&[], &[id("b")], &[], &keys(&[("c", 3)])), SlotFix::Finish(id("c")));
        assert_eq!(decide(&[], &[id("b")], &[], &keys(&[])), SlotFix::Finish(id("b")));
        // …and with neither, to the primary with fewest slots.
        assert_eq!(decide(&[], &[], &[], &keys(&[])), SlotFix::Assign);
        // Two claimants: the one with most keys.
        assert_eq!(decide(&[id("a"), id("b")], &[], &[], &keys(&[("b", 2)])), SlotFix::Finish(id("b")));
        // One claimant migrating the slot and keys elsewhere with nobody importing (the
        // target of a move died, its replica took over holding the keys moved so far): the
        // move is finished to that holder rather than leave them unreachable…
        let a = [id("a")];
        assert_eq!(decide(&a, &[], &a, &keys(&[("a", 5), ("c", 2)])), SlotFix::Finish(id("c")));
        // …and keys astray on a node while the claimant is not moving the slot come back.
        assert_eq!(decide(&a, &[], &[], &keys(&[("a", 5), ("c", 2)])), SlotFix::Finish(id("a")));
        assert_eq!(decide(&a, &[], &a, &keys(&[("a", 5)])), SlotFix::Close);
        // A live importer still waiting for its first keys wins over a stray holder.
        assert_eq!(decide(&a, &[id("b")], &a, &keys(&[("a", 5), ("c", 2)])), SlotFix::Finish(id("b")));
    }
}
