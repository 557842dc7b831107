//! slotstorm's own cluster routing: a slot table read from `CLUSTER NODES`, connections to
//! each node, and refreshes when the cluster says the table is stale.
//!
//! Why not the `redis` crate's cluster client: with its retries it hides what a chaos
//! harness must see (a killed primary shows as one long stall), and without them it stops
//! following MOVED/ASK. Routing here follows every redirect itself and counts it, and times
//! and classifies every attempt. The connections are slotstorm's own too ([`Conn`]): they
//! speak RESP directly, for speed (see `bench/README.md`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::classify::Failure;
use super::conn::Conn;
use crate::cluster::node::{ADMIN_TIMEOUT, Node};
use crate::cluster::slot::SLOT_COUNT;
use crate::cluster::topology::View;

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

/// The shared router.
pub struct Router {
    table: RwLock<Arc<SlotTable>>,
    epoch: AtomicU64,
    nodes: Mutex<HashMap<(SocketAddr, usize), SharedSlot>>,
    next_generation: AtomicU64,
    request_timeout: Duration,
    password: Option<String>,
    seeds: Vec<SocketAddr>,
    refresh: Notify,
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
        Ok(Arc::new(Router {
            table: RwLock::new(Arc::new(table)),
            epoch: AtomicU64::new(0),
            nodes: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            request_timeout,
            password,
            seeds: seeds.to_vec(),
            refresh: Notify::new(),
        }))
    }

    /// The current table and its epoch; workers keep both and reload when the epoch moves.
    pub fn table(&self) -> (u64, Arc<SlotTable>) {
        let table = self.table.read().expect("slot table lock").clone();
        (self.epoch.load(Ordering::Acquire), table)
    }

    /// The epoch of the current table (cheap: one atomic load).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A MOVED reply says `slot` lives at `addr` now: note it at once, and ask for a full
    /// refresh since more slots have probably moved with it.
    pub fn moved(&self, slot: u16, addr: SocketAddr) {
        {
            let mut guard = self.table.write().expect("slot table lock");
            if guard.owner(slot) != Some(addr) {
                let mut table = (**guard).clone();
                table.set_owner(slot, addr);
                *guard = Arc::new(table);
                self.epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
        self.request_refresh();
    }

    /// Ask the refresher to reread the table soon (after a connection error, CLUSTERDOWN or
    /// a redirect). Cheap, and many requests collapse into one refresh.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// Refresh the table whenever asked, at most every `min_gap`; runs until aborted.
    pub async fn refresher(self: Arc<Self>, min_gap: Duration) {
        loop {
            self.refresh.notified().await;
            self.refresh_now().await;
            tokio::time::sleep(min_gap).await;
        }
    }

    /// Reread the table: ask every known node and the seeds at once and keep the view with
    /// the highest config epoch among those that cover the most slots, so that a node cut
    /// off from the majority, still serving its old slots, does not win.
    pub async fn refresh_now(&self) {
        let mut addrs = self.table().1.nodes();
        addrs.extend(self.seeds.iter().copied());
        addrs.extend(self.nodes.lock().expect("node map lock").keys().map(|(a, _)| *a));
        addrs.sort();
        addrs.dedup();
        let views = futures_util::future::join_all(addrs.into_iter().map(|a| async move {
            let mut node =
                tokio::time::timeout(ADMIN_TIMEOUT, Node::connect(a, ADMIN_TIMEOUT)).await.ok()?.ok()?;
            tokio::time::timeout(ADMIN_TIMEOUT, node.view()).await.ok()?.ok()
        }))
        .await;
        let best = views.into_iter().flatten().max_by_key(|v| {
            let max_epoch = v.nodes.iter().map(|n| n.config_epoch).max().unwrap_or(0);
            (SlotTable::from_view(v).covered(), max_epoch)
        });
        if let Some(view) = best {
            let table = SlotTable::from_view(&view);
            let mut guard = self.table.write().expect("slot table lock");
            if !guard.same_owners(&table) {
                *guard = Arc::new(table);
                self.epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
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
        match self.open(addr).await {
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
    }
}
