//! slotstorm's own cluster routing: a slot table read from `CLUSTER NODES`, connections to
//! each node, and refreshes when the cluster says the table is stale.
//!
//! Why not the `redis` crate's cluster client: with its retries it hides what a chaos
//! harness must see (a killed primary shows as one long stall), and without them it stops
//! following MOVED/ASK. Routing here follows every redirect itself and counts it, and times
//! and classifies every attempt. The connections are slotstorm's own too ([`Conn`]): they
//! speak RESP directly, for speed (see `bench/README.md`).
//!
//! A refresh never waits on a node that does not answer (see the `refresh` module): it asks
//! the nodes at once, leaves out of its first round those that just failed (a connect failure
//! here, or a failed ask), installs a newer owner the moment any view names one, and ends a
//! few ms after the views cover every slot. Every change of the installed table can be reported
//! ([`Router::report_changes`]) so a run can tell when the client learned of a failover.
//!
//! Length: about 60 lines are unit tests; refreshing lives in `router/refresh.rs`.

mod refresh;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;

use self::refresh::{Merge, gather};
use super::classify::Failure;
use super::conn::Conn;
use crate::cluster::node::{ADMIN_TIMEOUT, Node};
use crate::cluster::slot::SLOT_COUNT;
use crate::cluster::topology::View;

/// How long a node that just failed (a connect failure, a failed refresh ask) is left out of
/// a refresh's first round of asks. Long enough to cover a failover (it is asked anyway when
/// nobody else answers); short enough that a node back from a fault is soon asked again.
const SUSPECT_FOR: Duration = Duration::from_secs(5);

/// MOVED-driven table changes are reported about this often at most: a reshard can move
/// thousands of slots one MOVED at a time.
const MOVED_REPORT_GAP: Duration = Duration::from_millis(100);

/// Which node serves each slot.
///
/// Every command of every op looks its slot up here, at a random slot: a slot holds a
/// 2-byte index into the table's nodes rather than a 32-byte address, so the whole table is
/// 32 KiB and stays in cache (16384 addresses would be 512 KiB, a cache miss per command).
#[derive(Debug, Clone)]
pub struct SlotTable {
    /// The nodes the table has named, in order of first mention (a node that lost all its
    /// slots to MOVED replies stays listed, owning none).
    addrs: Vec<SocketAddr>,
    /// Per slot, an index into `addrs`, or [`NO_OWNER`].
    owner: Vec<u16>,
}

/// A slot no node serves.
const NO_OWNER: u16 = u16::MAX;

impl SlotTable {
    /// The table a `CLUSTER NODES` view describes. A primary flagged as failed keeps its
    /// slots until a replica takes them over: an application's client keeps sending there
    /// too, and meets the same timeouts.
    pub fn from_view(view: &View) -> SlotTable {
        let mut table = SlotTable { addrs: Vec::new(), owner: vec![NO_OWNER; usize::from(SLOT_COUNT)] };
        for node in view.nodes.iter().filter(|n| n.is_primary()) {
            let Ok(addr) = node.addr.parse() else { continue };
            let index = table.index(addr);
            for r in &node.slots {
                table.owner[usize::from(r.start)..=usize::from(r.end)].fill(index);
            }
        }
        table
    }

    /// The node serving `slot`, if the table knows one.
    pub fn owner(&self, slot: u16) -> Option<SocketAddr> {
        match self.owner[usize::from(slot)] {
            NO_OWNER => None,
            i => Some(self.addrs[usize::from(i)]),
        }
    }

    /// Note that `addr` serves `slot`.
    fn set_owner(&mut self, slot: u16, addr: SocketAddr) {
        self.owner[usize::from(slot)] = self.index(addr);
    }

    /// `addr`'s index in `addrs`, adding it if it is new.
    fn index(&mut self, addr: SocketAddr) -> u16 {
        let index = match self.addrs.iter().position(|a| *a == addr) {
            Some(i) => i,
            None => {
                self.addrs.push(addr);
                self.addrs.len() - 1
            }
        };
        // A cluster has at most 16384 primaries that serve slots, and MOVED replies name
        // only nodes that serve one, so the index fits.
        u16::try_from(index).expect("fewer than 65535 nodes")
    }

    /// How many slots some node serves.
    fn covered(&self) -> usize {
        self.owner.iter().filter(|&&o| o != NO_OWNER).count()
    }

    /// Each node that serves slots, with how many, sorted by address.
    pub fn owners(&self) -> Vec<(SocketAddr, u32)> {
        let mut counts = vec![0u32; self.addrs.len()];
        for &o in self.owner.iter().filter(|&&o| o != NO_OWNER) {
            counts[usize::from(o)] += 1;
        }
        let mut v: Vec<(SocketAddr, u32)> =
            self.addrs.iter().copied().zip(counts).filter(|(_, c)| *c > 0).collect();
        v.sort();
        v
    }

    /// True when both tables give every slot the same owner (however they number nodes).
    fn same_owners(&self, other: &SlotTable) -> bool {
        (0..SLOT_COUNT).all(|s| self.owner(s) == other.owner(s))
    }

    /// Every node that serves some slot.
    pub fn nodes(&self) -> Vec<SocketAddr> {
        let mut serves = vec![false; self.addrs.len()];
        for &o in self.owner.iter().filter(|&&o| o != NO_OWNER) {
            serves[usize::from(o)] = true;
        }
        let mut v: Vec<SocketAddr> =
            self.addrs.iter().zip(serves).filter(|(_, serves)| *serves).map(|(a, _)| *a).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// One node's connection (shared by all workers: it multiplexes) and its generation.
#[derive(Default)]
struct NodeSlot {
    conn: Option<(u64, Conn)>,
    /// When the last connect attempt failed, and how: workers that queued behind that
    /// attempt share its result instead of each trying again in turn.
    last_failure: Option<(Instant, Failure)>,
}

/// One connection lane of one node, locked while it (re)connects.
type SharedSlot = Arc<tokio::sync::Mutex<NodeSlot>>;

/// What installed a new slot table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSource {
    /// The table the router started with (reported when reporting is switched on).
    Connect,
    /// A refresh from the nodes' `CLUSTER NODES` views.
    Refresh,
    /// MOVED replies (coalesced: see [`TableChange`]).
    Moved,
}

impl ChangeSource {
    /// The name used in events: `connect`, `refresh`, `moved`.
    pub fn name(self) -> &'static str {
        match self {
            ChangeSource::Connect => "connect",
            ChangeSource::Refresh => "refresh",
            ChangeSource::Moved => "moved",
        }
    }
}

/// The router installed a slot table that gives some slot a different owner.
///
/// Changes by MOVED are coalesced: the first one after a quiet spell of 100 ms is reported
/// at once, later ones within that spell only as the table the last of them left (at its
/// time), once the refresher runs or [`Router::flush_table_changes`] is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChange {
    /// When the table was installed.
    pub at: Instant,
    /// What installed it.
    pub source: ChangeSource,
    /// Each node serving slots in the new table, with how many, sorted by address.
    pub owners: Vec<(SocketAddr, u32)>,
}

/// The installed table, and what MOVED reporting needs to coalesce (kept under the table's
/// lock, which `moved` holds anyway).
struct Installed {
    /// The table workers read.
    table: Arc<SlotTable>,
    /// The coalescing of MOVED-driven changes.
    moved: MovedReports,
}

/// Coalesces MOVED-driven table changes (see [`TableChange`]).
#[derive(Debug, Default)]
struct MovedReports {
    /// When the last MOVED-driven change was reported.
    last: Option<Instant>,
    /// A change not yet reported: when, and the table it left (shared, not copied).
    pending: Option<(Instant, Arc<SlotTable>)>,
}

impl MovedReports {
    /// A MOVED changed the table to `table` at `now`: what to report now, if anything.
    fn note(&mut self, now: Instant, table: &Arc<SlotTable>) -> Option<(Instant, Arc<SlotTable>)> {
        if self.last.is_some_and(|l| now.saturating_duration_since(l) < MOVED_REPORT_GAP) {
            self.pending = Some((now, table.clone()));
            None
        } else {
            self.last = Some(now);
            self.pending = None;
            Some((now, table.clone()))
        }
    }

    /// The change held back, if any, to report now (`now` counts as a report).
    fn flush(&mut self, now: Instant) -> Option<(Instant, Arc<SlotTable>)> {
        let pending = self.pending.take()?;
        self.last = Some(now);
        Some(pending)
    }
}

/// Nodes that failed lately, by when: left out of a refresh's first round.
type Suspects = Arc<Mutex<HashMap<SocketAddr, Instant>>>;

/// Note that `addr` answered (it is no longer suspect) or failed (it is, from now).
fn note_answer(suspects: &Suspects, addr: SocketAddr, answered: bool) {
    let mut s = suspects.lock().expect("suspects lock");
    if answered {
        s.remove(&addr);
    } else {
        s.insert(addr, Instant::now());
    }
}

/// The shared router.
pub struct Router {
    table: RwLock<Installed>,
    epoch: AtomicU64,
    /// Per slot, the config epoch of the claim behind the installed owner, as refreshes
    /// merged it (MOVED does not know epochs and leaves it): a view's claim newer than this
    /// is installed at once. Only refreshes touch it.
    claims: Mutex<Vec<u64>>,
    nodes: Mutex<HashMap<(SocketAddr, usize), SharedSlot>>,
    next_generation: AtomicU64,
    request_timeout: Duration,
    password: Option<String>,
    seeds: Vec<SocketAddr>,
    refresh: Notify,
    suspects: Suspects,
    changes: OnceLock<UnboundedSender<TableChange>>,
}

impl Router {
    /// Read the slot table from the first seed that answers.
    ///
    /// # Errors
    /// The last seed's error when none answers.
    pub async fn connect(
        seeds: &[SocketAddr],
        request_timeout: Duration,
        password: Option<String>,
    ) -> Result<Arc<Router>, crate::cluster::ClusterError> {
        let survey = crate::cluster::survey(seeds).await?;
        let table = SlotTable::from_view(&survey.seed_view);
        let mut merge = Merge::new();
        merge.add(&survey.seed_view);
        Ok(Arc::new(Router {
            table: RwLock::new(Installed { table: Arc::new(table), moved: MovedReports::default() }),
            epoch: AtomicU64::new(0),
            claims: Mutex::new(merge.claims),
            nodes: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            request_timeout,
            password,
            seeds: seeds.to_vec(),
            refresh: Notify::new(),
            suspects: Arc::default(),
            changes: OnceLock::new(),
        }))
    }

    /// Report every change of the installed table to `tx` from now on, starting with the
    /// current table (as [`ChangeSource::Connect`]). Reporting can be switched on once; a
    /// second call is refused and returns false.
    pub fn report_changes(&self, tx: UnboundedSender<TableChange>) -> bool {
        if self.changes.set(tx).is_err() {
            return false;
        }
        let table = self.table().1;
        self.send(Instant::now(), ChangeSource::Connect, &table);
        true
    }

    /// Report the MOVED-driven change held back by coalescing, if any (the refresher does
    /// this after each refresh; call it once more when the load stops).
    pub fn flush_table_changes(&self) {
        let pending = self.table.write().expect("slot table lock").moved.flush(Instant::now());
        if let Some((at, table)) = pending {
            self.send(at, ChangeSource::Moved, &table);
        }
    }

    /// Send `table` as installed at `at` by `source`, when reporting is on.
    fn send(&self, at: Instant, source: ChangeSource, table: &SlotTable) {
        if let Some(tx) = self.changes.get() {
            // The receiver may be gone at the end of a run: nobody is listening then.
            let _ = tx.send(TableChange { at, source, owners: table.owners() });
        }
    }

    /// The current table and its epoch; workers keep both and reload when the epoch moves.
    pub fn table(&self) -> (u64, Arc<SlotTable>) {
        let table = self.table.read().expect("slot table lock").table.clone();
        (self.epoch.load(Ordering::Acquire), table)
    }

    /// The epoch of the current table (cheap: one atomic load).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A MOVED reply says `slot` lives at `addr` now: note it at once, and ask for a full
    /// refresh since more slots have probably moved with it.
    pub fn moved(&self, slot: u16, addr: SocketAddr) {
        let report = {
            let mut guard = self.table.write().expect("slot table lock");
            let installed = &mut *guard;
            if installed.table.owner(slot) != Some(addr) {
                let mut table = (*installed.table).clone();
                table.set_owner(slot, addr);
                installed.table = Arc::new(table);
                self.epoch.fetch_add(1, Ordering::AcqRel);
                // Only with reporting on: one clock read and a shared pointer per change.
                match self.changes.get() {
                    Some(_) => installed.moved.note(Instant::now(), &installed.table),
                    None => None,
                }
            } else {
                None
            }
        };
        if let Some((at, table)) = report {
            self.send(at, ChangeSource::Moved, &table);
        }
        self.request_refresh();
    }

    /// Ask the refresher to reread the table soon (after a connection error, CLUSTERDOWN or
    /// a redirect). Cheap, and many requests collapse into one refresh.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// Refresh the table whenever asked, at most every `min_gap`; runs until aborted. While
    /// some view shows a primary that serves slots flagged failing, it asks itself again
    /// (every `min_gap`): a failover's new owner is then learned within a gap of the
    /// election, whether or not ops keep failing meanwhile.
    pub async fn refresher(self: Arc<Self>, min_gap: Duration) {
        loop {
            self.refresh.notified().await;
            let in_flux = self.refresh_once().await;
            self.flush_table_changes();
            if in_flux {
                self.request_refresh();
            }
            tokio::time::sleep(min_gap).await;
        }
    }

    /// Reread the table: ask the known nodes and the seeds at once, the ones that just
    /// failed only if nobody else answers, and merge their views slot by slot, each to the
    /// claimant with the highest config epoch (so that a node cut off from the majority,
    /// still serving its old slots, does not win). A newer owner than the installed one is
    /// installed as soon as a view names it; the round ends shortly after the views cover
    /// every slot (see the `refresh` module), never waiting on a node that does not answer. Without any
    /// answer the table stays as it is.
    pub async fn refresh_now(&self) {
        self.refresh_once().await;
    }

    /// [`Router::refresh_now`]; true when the cluster looked in flux (see `Merge::in_flux`).
    async fn refresh_once(&self) -> bool {
        let (first, suspects) = self.candidates();
        let mut merge = Merge::new();
        gather(self.asks(&first), &mut merge, |m| self.install_newer(m)).await;
        if merge.views == 0 && !suspects.is_empty() {
            gather(self.asks(&suspects), &mut merge, |m| self.install_newer(m)).await;
        }
        if merge.views == 0 {
            return false;
        }
        let in_flux = merge.in_flux;
        let mut claims = self.claims.lock().expect("claims lock");
        let table = merge.onto(&self.table.read().expect("slot table lock").table, &mut claims);
        self.install(table, ChangeSource::Refresh);
        in_flux
    }

    /// The nodes to ask, sorted: those not suspect, and those that failed lately.
    fn candidates(&self) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        let mut addrs = self.table().1.nodes();
        addrs.extend(self.seeds.iter().copied());
        addrs.extend(self.nodes.lock().expect("node map lock").keys().map(|(a, _)| *a));
        addrs.sort();
        addrs.dedup();
        let mut suspects = self.suspects.lock().expect("suspects lock");
        let now = Instant::now();
        suspects.retain(|_, at| now.saturating_duration_since(*at) < SUSPECT_FOR);
        addrs.into_iter().partition(|a| !suspects.contains_key(a))
    }

    /// One `CLUSTER NODES` ask per address, each on a task of its own: an ask the round
    /// stops waiting for still finishes, and notes whether the node answered.
    fn asks(&self, addrs: &[SocketAddr]) -> Vec<impl Future<Output = Option<View>> + use<>> {
        addrs
            .iter()
            .map(|&a| {
                let suspects = self.suspects.clone();
                let task = tokio::spawn(async move {
                    let view = async {
                        let mut node = tokio::time::timeout(ADMIN_TIMEOUT, Node::connect(a, ADMIN_TIMEOUT))
                            .await
                            .ok()?
                            .ok()?;
                        tokio::time::timeout(ADMIN_TIMEOUT, node.view()).await.ok()?.ok()
                    }
                    .await;
                    note_answer(&suspects, a, view.is_some());
                    view
                });
                async move { task.await.ok().flatten() }
            })
            .collect()
    }

    /// Install the slots where `merge` names an owner newer than the installed one.
    fn install_newer(&self, merge: &Merge) {
        let mut claims = self.claims.lock().expect("claims lock");
        let mut guard = self.table.write().expect("slot table lock");
        if let Some(table) = merge.newer_than(&guard.table, &mut claims) {
            guard.table = Arc::new(table);
            self.epoch.fetch_add(1, Ordering::AcqRel);
            let table = guard.table.clone();
            drop(guard);
            self.send(Instant::now(), ChangeSource::Refresh, &table);
        }
    }

    /// Install `table` unless it gives every slot the owner the installed one does.
    fn install(&self, table: SlotTable, source: ChangeSource) {
        let mut guard = self.table.write().expect("slot table lock");
        if guard.table.same_owners(&table) {
            return;
        }
        guard.table = Arc::new(table);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let table = guard.table.clone();
        drop(guard);
        self.send(Instant::now(), source, &table);
    }

    fn node_slot(&self, addr: SocketAddr, lane: usize) -> SharedSlot {
        self.nodes.lock().expect("node map lock").entry((addr, lane)).or_default().clone()
    }

    /// Connection `lane` to `addr` (workers share `connections` lanes per node): the
    /// current one, or a new one when `stale` names the generation that just failed.
    /// Workers cache what this returns.
    ///
    /// # Errors
    /// The connect failure, classified (never applied).
    pub async fn connection(
        &self,
        addr: SocketAddr,
        lane: usize,
        stale: Option<u64>,
    ) -> Result<(u64, Conn), Failure> {
        let asked = Instant::now();
        let slot = self.node_slot(addr, lane);
        let mut slot = slot.lock().await;
        if let Some((generation, conn)) = &slot.conn
            && Some(*generation) != stale
        {
            return Ok((*generation, conn.clone()));
        }
        if let Some((at, failure)) = slot.last_failure
            && at >= asked
        {
            return Err(failure);
        }
        let opened = self.open(addr).await;
        // A node that fails to connect is left out of the next refreshes' first round.
        note_answer(&self.suspects, addr, opened.is_ok());
        match opened {
            Ok(conn) => {
                let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
                slot.conn = Some((generation, conn.clone()));
                slot.last_failure = None;
                Ok((generation, conn))
            }
            Err(failure) => {
                slot.conn = None;
                slot.last_failure = Some((Instant::now(), failure));
                self.request_refresh();
                Err(failure)
            }
        }
    }

    /// The client policy's request timeout: how long a request waits for its reply.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// A new connection to `addr`, within the request timeout.
    async fn open(&self, addr: SocketAddr) -> Result<Conn, Failure> {
        Conn::connect(addr, self.password.as_deref(), self.request_timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_from_view_keeps_failed_primaries_and_skips_replicas() {
        let view = View::parse(
            "a 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-8191
b 10.0.0.2:6379@16379 master,fail - 0 0 2 disconnected 8192-16383
c 10.0.0.3:6379@16379 slave a 0 0 1 connected
",
        )
        .unwrap();
        let t = SlotTable::from_view(&view);
        assert_eq!(t.owner(0), Some("10.0.0.1:6379".parse().unwrap()));
        assert_eq!(t.owner(8191), Some("10.0.0.1:6379".parse().unwrap()));
        assert_eq!(t.owner(8192), Some("10.0.0.2:6379".parse().unwrap()));
        assert_eq!(t.nodes().len(), 2);
    }

    #[test]
    fn moved_slots_change_owner_and_a_node_left_without_slots_is_no_longer_listed() {
        let view = View::parse(
            "a 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-1
b 10.0.0.2:6379@16379 master - 0 0 2 connected 2-16383
",
        )
        .unwrap();
        let a: SocketAddr = "10.0.0.1:6379".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:6379".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:6379".parse().unwrap();
        let before = SlotTable::from_view(&view);
        let mut t = before.clone();
        t.set_owner(0, c);
        t.set_owner(1, b);
        assert_eq!((t.owner(0), t.owner(1), t.owner(2)), (Some(c), Some(b), Some(b)));
        assert_eq!(t.nodes(), vec![b, c], "a owns nothing any more");
        assert!(!t.same_owners(&before));
        t.set_owner(0, a);
        t.set_owner(1, a);
        assert!(t.same_owners(&before), "same owners, though the nodes are numbered differently");
        assert_eq!(t.covered(), 16384);
        t.set_owner(5, c);
        assert_eq!(t.owners(), vec![(a, 2), (b, 16381), (c, 1)]);
    }

    #[test]
    fn moved_changes_are_reported_at_once_after_a_quiet_spell_and_coalesced_within_one() {
        let table = Arc::new(SlotTable::from_view(&View::default()));
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = MovedReports::default();
        assert_eq!(r.note(ms(0), &table).map(|(at, _)| at), Some(ms(0)), "the first at once");
        assert!(r.note(ms(10), &table).is_none());
        assert!(r.note(ms(40), &table).is_none());
        // The refresher flushes the last one held back, at its own time.
        assert_eq!(r.flush(ms(50)).map(|(at, _)| at), Some(ms(40)));
        assert!(r.flush(ms(60)).is_none(), "nothing left");
        assert!(r.note(ms(120), &table).is_none(), "within 100 ms of the flush");
        assert_eq!(r.note(ms(250), &table).map(|(at, _)| at), Some(ms(250)), "after a quiet spell");
        assert!(r.flush(ms(260)).is_none(), "reported already");
    }
}
