//! Topology changes over the cluster protocol, the part every one of them shares: naming a
//! node ([`NodeRef`]), the errors ([`AdminError`]), reading the cluster from a seed, waiting
//! until the nodes that answer agree, and planned failover.
//!
//! Slot moves live in `migrate` (reshard), `rebalance` and `fix`; membership (join, forget) in
//! `membership`. None of them shells out to `redis-cli`: each step is a command sent to the
//! node it concerns, so errors name that node.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::node::{ADMIN_TIMEOUT, Node};
use super::topology::{NodeEntry, NodeId, SlotRange, View};
use super::{ClusterError, NodeReport, disagreement};

/// Why a topology change was refused or did not complete. Refusals (everything but
/// [`AdminError::Cluster`], [`AdminError::BusyKey`] and [`AdminError::Interrupted`]) happen
/// before anything in the cluster changed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Talking to a node failed, or the cluster did not settle in time.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// No node of the cluster has this address or id.
    #[error(
        "the {role} {node} is not a node of this cluster (check the address or id with `cluster status`)"
    )]
    UnknownNode {
        /// What the node was meant to be ("source", "target", "replica", …).
        role: &'static str,
        /// The reference given.
        node: String,
    },
    /// A failover was asked of a node that is not a replica.
    #[error("{node} is a primary, not a replica; a failover is run on the replica that should take over")]
    NotAReplica {
        /// The node.
        node: String,
    },
    /// A slot move named a replica as source or target; replicas serve no slots.
    #[error("the {role} {node} is a replica (of {primary}); slots move between primaries only")]
    IsReplica {
        /// "source" or "target".
        role: &'static str,
        /// The node.
        node: String,
        /// Its primary.
        primary: NodeId,
    },
    /// Source and target are the same node.
    #[error("source and target are the same node {0}")]
    SameNode(String),
    /// A node the change needs is marked failed or has no address.
    #[error("the {role} {node} is down ({flags}); bring it back or fail it over first")]
    NodeDown {
        /// What the node was meant to be.
        role: &'static str,
        /// The node.
        node: String,
        /// Its flags.
        flags: String,
    },
    /// A slot move with no slots.
    #[error("the plan names no slots to move")]
    NoSlots,
    /// The source does not serve some of the slots to move.
    #[error("the source {node} does not serve slots {slots}")]
    SourceDoesNotOwn {
        /// The source.
        node: String,
        /// The slots it does not serve.
        slots: String,
    },
    /// The target already serves some of the slots to move.
    #[error("the target {node} already serves slots {slots}")]
    TargetOwns {
        /// The target.
        node: String,
        /// The slots it already serves.
        slots: String,
    },
    /// Slots are left importing or migrating from an earlier move.
    #[error("slots are left open from an earlier move ({slots}); run `slotstorm cluster fix` first")]
    SlotsOpen {
        /// The open slots, with the node that has them open.
        slots: String,
    },
    /// A node to remove still serves slots.
    #[error("{node} still serves {count} slots ({slots}); move them first (reshard or rebalance)")]
    StillServesSlots {
        /// The node.
        node: String,
        /// How many slots.
        count: u32,
        /// Which.
        slots: String,
    },
    /// A node to remove has replicas and there is no other primary to give them to.
    #[error("{node} has replicas ({replicas}) and no other primary serves slots to take them")]
    HasReplicas {
        /// The node.
        node: String,
        /// Its replicas.
        replicas: String,
    },
    /// A node to add already belongs to a cluster.
    #[error("{addr} already knows {known} nodes; only a fresh node can join")]
    NotFresh {
        /// The node.
        addr: SocketAddr,
        /// How many nodes it knows.
        known: usize,
    },
    /// A key exists on both sides of a move and was not replaced.
    #[error(
        "slot {slot}: key {key:?} already exists on {target} {why}; nothing was overwritten (a move with replace may overwrite it)"
    )]
    BusyKey {
        /// The slot being moved.
        slot: u16,
        /// The key.
        key: String,
        /// The node that already had it.
        target: SocketAddr,
        /// "with another value" or "".
        why: &'static str,
    },
    /// A primary that is down still serves slots and has a replica that may yet take over;
    /// repairing now would race its failover.
    #[error(
        "{primary} is down but its replica {replica} may still take over its slots; wait for the failover (or run it with takeover) before fixing"
    )]
    FailoverPending {
        /// The primary that is down.
        primary: String,
        /// Its replica.
        replica: String,
    },
    /// A primary serving slots does not answer but the cluster has not marked it failed: it
    /// may be paused or cut off, and giving its slots away would lose its keys.
    #[error(
        "{primary} serves slots but does not answer, and the cluster has not marked it failed; its slots are not given away: wait until it answers or is marked failed"
    )]
    PrimaryUnreachable {
        /// The primary.
        primary: String,
    },
    /// A slot move stopped part-way: some slots moved, others may be left open.
    #[error(
        "the move stopped after {moved} of {total} slots: {cause}; slots {open} may be left open: run `slotstorm cluster fix`"
    )]
    Interrupted {
        /// Slots handed over.
        moved: u32,
        /// Slots planned.
        total: u32,
        /// Slots started and not finished.
        open: String,
        /// What stopped it.
        cause: Box<AdminError>,
    },
}

/// A node named by its client address or its cluster id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeRef {
    /// `ip:port`, as `CLUSTER NODES` shows it.
    Addr(SocketAddr),
    /// The 40-character node id.
    Id(NodeId),
}

impl FromStr for NodeRef {
    type Err = String;

    /// `ip:port` or a 40-character hex node id.
    fn from_str(s: &str) -> Result<NodeRef, String> {
        if let Ok(addr) = s.parse() {
            return Ok(NodeRef::Addr(addr));
        }
        if s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(NodeRef::Id(NodeId(s.to_ascii_lowercase())));
        }
        Err(format!("{s:?} is neither an ip:port address nor a 40-character node id"))
    }
}

impl From<SocketAddr> for NodeRef {
    fn from(a: SocketAddr) -> NodeRef {
        NodeRef::Addr(a)
    }
}

impl From<NodeId> for NodeRef {
    fn from(id: NodeId) -> NodeRef {
        NodeRef::Id(id)
    }
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRef::Addr(a) => a.fmt(f),
            NodeRef::Id(id) => id.fmt(f),
        }
    }
}

/// The entry of `view` that `node` names.
///
/// # Errors
/// [`AdminError::UnknownNode`] (with `role` in the message) when no entry matches.
pub fn resolve<'a>(view: &'a View, node: &NodeRef, role: &'static str) -> Result<&'a NodeEntry, AdminError> {
    let found = match node {
        NodeRef::Addr(a) => view.nodes.iter().find(|n| n.addr.parse::<SocketAddr>().ok() == Some(*a)),
        NodeRef::Id(id) => view.node(id),
    };
    found.ok_or_else(|| AdminError::UnknownNode { role, node: node.to_string() })
}

/// A node's client address, or [`AdminError::NodeDown`] when it has none or is marked failed.
pub fn live_addr(entry: &NodeEntry, role: &'static str) -> Result<SocketAddr, AdminError> {
    let down = || AdminError::NodeDown { role, node: describe(entry), flags: entry.flags.join(",") };
    if entry.is_failed() || entry.has_flag("noaddr") {
        return Err(down());
    }
    entry.addr.parse().map_err(|_| down())
}

/// `addr (id prefix)`, for messages.
pub fn describe(entry: &NodeEntry) -> String {
    let id = &entry.id.0[..entry.id.0.len().min(8)];
    if entry.addr.is_empty() { id.to_string() } else { format!("{} ({id})", entry.addr) }
}

/// Slot numbers as compact ranges: `0-99,200 (101 slots)`.
pub fn slot_list(slots: impl IntoIterator<Item = u16>) -> String {
    let ranges = to_ranges(slots);
    let count: u32 = ranges.iter().map(SlotRange::len).sum();
    let mut text: Vec<String> = ranges.iter().take(8).map(ToString::to_string).collect();
    if ranges.len() > 8 {
        text.push("…".into());
    }
    let noun = if count == 1 { "slot" } else { "slots" };
    format!("{} ({count} {noun})", text.join(","))
}

/// Slot numbers (any order, duplicates allowed) as sorted inclusive ranges.
pub fn to_ranges(slots: impl IntoIterator<Item = u16>) -> Vec<SlotRange> {
    let sorted: BTreeSet<u16> = slots.into_iter().collect();
    let mut ranges: Vec<SlotRange> = Vec::new();
    for s in sorted {
        match ranges.last_mut() {
            Some(r) if u32::from(r.end) + 1 == u32::from(s) => r.end = s,
            _ => ranges.push(SlotRange { start: s, end: s }),
        }
    }
    ranges
}

/// Every slot number of `ranges`, in order.
pub fn slots_in(ranges: &[SlotRange]) -> Vec<u16> {
    ranges.iter().flat_map(|r| r.start..=r.end).collect()
}

/// The view of the first seed that answers, with `myself`'s address filled in when the node
/// does not know it.
///
/// # Errors
/// [`ClusterError::NoSeed`] when no seed answers.
pub async fn seed_view(seeds: &[SocketAddr]) -> Result<View, ClusterError> {
    let mut last = String::from("no seeds given");
    for &seed in seeds {
        let view = match Node::connect(seed, ADMIN_TIMEOUT).await {
            Ok(mut n) => n.view().await,
            Err(e) => Err(e),
        };
        match view {
            Ok(mut view) => {
                for n in &mut view.nodes {
                    if n.is_myself() && n.addr.is_empty() {
                        n.addr = seed.to_string();
                    }
                }
                return Ok(view);
            }
            Err(e) => last = e.to_string(),
        }
    }
    let seeds = seeds.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    Err(ClusterError::NoSeed { seeds, last })
}

/// What the nodes of a view say about themselves: the reports of those that answered, and
/// the ids of those that did not (or have no address).
#[derive(Debug, Clone)]
pub struct Reachable {
    /// Reports of the nodes that answered.
    pub reports: Vec<NodeReport>,
    /// Nodes that did not answer.
    pub unreachable: Vec<NodeId>,
}

/// Ask every node of `view` for its report, at once.
pub async fn reach(view: &View) -> Reachable {
    let fetches = view.nodes.iter().map(|n| async move {
        match n.addr.parse::<SocketAddr>() {
            Ok(a) => NodeReport::fetch(a).await.map_err(|_| n.id.clone()),
            Err(_) => Err(n.id.clone()),
        }
    });
    let mut out = Reachable { reports: Vec::new(), unreachable: Vec::new() };
    for r in futures_util::future::join_all(fetches).await {
        match r {
            Ok(r) => out.reports.push(r),
            Err(id) => out.unreachable.push(id),
        }
    }
    out
}

/// Why the nodes that answer do not form a settled cluster, or `None` when they do: as
/// [`disagreement`] (state ok, all slots, no flags, same shape, replicas in sync), with nodes
/// that do not answer left out of every view (a node that is down is flagged by the others,
/// and that is expected), and no slot left importing or migrating.
pub fn settled_reason(reachable: &Reachable) -> Option<String> {
    if reachable.reports.is_empty() {
        return Some("no node answers".into());
    }
    let mut reports = reachable.reports.clone();
    for r in &mut reports {
        r.view.nodes.retain(|n| !reachable.unreachable.contains(&n.id));
        if let Some(me) = r.view.myself()
            && let Some(&(slot, _, importing)) = me.open_slots.first()
        {
            let what = if importing { "importing" } else { "migrating" };
            return Some(format!("{} has slot {slot} open ({what})", r.addr));
        }
    }
    disagreement(&reports)
}

/// Poll the nodes the seeds know until [`settled_reason`] finds nothing, or `timeout` passes.
///
/// # Errors
/// [`ClusterError::NotReady`] with the last unmet condition.
pub async fn wait_settled(seeds: &[SocketAddr], timeout: Duration) -> Result<(), ClusterError> {
    wait_until(seeds, timeout, settled_reason).await
}

/// Poll the nodes the seeds know until `pending` returns `None`, or `timeout` passes.
///
/// # Errors
/// [`ClusterError::NotReady`] with the last reason `pending` gave.
pub async fn wait_until(
    seeds: &[SocketAddr],
    timeout: Duration,
    pending: impl Fn(&Reachable) -> Option<String>,
) -> Result<(), ClusterError> {
    let start = Instant::now();
    loop {
        let still = match seed_view(seeds).await {
            Ok(view) => pending(&reach(&view).await),
            Err(e) => Some(e.to_string()),
        };
        let Some(still) = still else { return Ok(()) };
        if start.elapsed() >= timeout {
            return Err(ClusterError::NotReady { waited: start.elapsed(), still });
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// How a replica takes over from its primary (`CLUSTER FAILOVER`'s option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailoverMode {
    /// Coordinated: the primary stops writes, the replica catches up, then takes over; no
    /// acknowledged write is lost. Needs the primary to answer.
    #[default]
    Default,
    /// The replica does not wait for its primary (which may be down), but still needs the
    /// other primaries' votes.
    Force,
    /// The replica takes over alone, without an election: works in a minority partition,
    /// and may lose writes.
    Takeover,
}

impl FailoverMode {
    /// The name as the file writes it.
    pub fn name(self) -> &'static str {
        match self {
            FailoverMode::Default => "default",
            FailoverMode::Force => "force",
            FailoverMode::Takeover => "takeover",
        }
    }

    /// The option `CLUSTER FAILOVER` takes for this mode: none, `FORCE` or `TAKEOVER`.
    pub fn argument(self) -> Option<&'static str> {
        match self {
            FailoverMode::Default => None,
            FailoverMode::Force => Some("FORCE"),
            FailoverMode::Takeover => Some("TAKEOVER"),
        }
    }
}

/// A failover that completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverDone {
    /// The replica that became primary.
    pub promoted: NodeId,
    /// The primary it took over from.
    pub demoted: NodeId,
    /// How many slots changed hands.
    pub slots: u32,
    /// From the command until every answering node agreed.
    pub elapsed: Duration,
}

/// Make `replica` take over from its primary with `CLUSTER FAILOVER [FORCE|TAKEOVER]`, then
/// wait until the roles have swapped (the replica serves the slots; the old primary, if it
/// answers, replicates it) and every answering node agrees.
///
/// # Errors
/// [`AdminError::UnknownNode`] or [`AdminError::NotAReplica`] before anything is sent;
/// [`ClusterError::NotReady`] when the roles have not swapped within `timeout`.
pub async fn failover(
    seeds: &[SocketAddr],
    replica: &NodeRef,
    mode: FailoverMode,
    timeout: Duration,
) -> Result<FailoverDone, AdminError> {
    let start = Instant::now();
    let view = seed_view(seeds).await?;
    let entry = resolve(&view, replica, "replica")?;
    let Some(old) = entry.primary.clone().filter(|_| !entry.is_primary()) else {
        return Err(AdminError::NotAReplica { node: describe(entry) });
    };
    let new = entry.id.clone();
    let addr = live_addr(entry, "replica")?;
    let slots = view.node(&old).map(|p| p.slots.clone()).unwrap_or_default();
    let mut node = Node::connect(addr, ADMIN_TIMEOUT).await?;
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("FAILOVER");
    if let Some(option) = mode.argument() {
        cmd.arg(option);
    }
    node.run::<()>(&cmd).await?;
    tracing::debug!(replica = %addr, ?mode, "Failover requested; waiting for the roles to swap.");
    let count = slots.iter().map(SlotRange::len).sum();
    let remaining = timeout.saturating_sub(start.elapsed());
    wait_until(seeds, remaining, |r| swap_pending(r, &new, &old, &slots).or_else(|| settled_reason(r)))
        .await?;
    Ok(FailoverDone { promoted: new, demoted: old, slots: count, elapsed: start.elapsed() })
}

/// Why the swap of `new` and `old` is not yet seen by every answering node.
fn swap_pending(r: &Reachable, new: &NodeId, old: &NodeId, slots: &[SlotRange]) -> Option<String> {
    let mut want = slots.to_vec();
    want.sort();
    for report in &r.reports {
        let shape = report.view.shape();
        if shape.primaries.get(new) != Some(&want) {
            return Some(format!("{} does not yet see {new} serving the slots", report.addr));
        }
        if !r.unreachable.contains(old) && shape.replicas.get(old) != Some(new) {
            return Some(format!("{} does not yet see {old} replicating {new}", report.addr));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_refs_parse_addresses_and_ids() {
        assert_eq!("10.0.0.1:6379".parse(), Ok(NodeRef::Addr("10.0.0.1:6379".parse().unwrap())));
        let id = "07c37dfeb235213a872192d90877d0cd55635b91";
        assert_eq!(id.parse(), Ok(NodeRef::Id(NodeId(id.into()))));
        assert!("redis-1".parse::<NodeRef>().is_err());
    }

    #[test]
    fn slot_lists_are_compact() {
        assert_eq!(
            to_ranges([3, 1, 2, 7, 2]),
            vec![SlotRange { start: 1, end: 3 }, SlotRange { start: 7, end: 7 }]
        );
        assert_eq!(slot_list([0, 1, 2, 10]), "0-2,10 (4 slots)");
        assert_eq!(slots_in(&[SlotRange { start: 5, end: 7 }]), vec![5, 6, 7]);
    }

    #[test]
    fn unreachable_nodes_are_left_out_and_open_slots_count() {
        let text = "\
a 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-16383
b 10.0.0.2:6379@16379 master,fail - 0 0 2 disconnected
";
        let report = NodeReport {
            addr: "10.0.0.1:6379".parse().unwrap(),
            view: View::parse(text).unwrap(),
            cluster_info: [("cluster_state".to_string(), "ok".to_string())].into(),
            replication: [("role".to_string(), "master".to_string())].into(),
        };
        let mut r = Reachable { reports: vec![report.clone()], unreachable: vec![] };
        assert!(settled_reason(&r).unwrap().contains("as master,fail"));
        r.unreachable.push(NodeId("b".into()));
        assert_eq!(settled_reason(&r), None);
        let mut open = report;
        open.view = View::parse(&text.replace("0-16383", "0-16383 [5-<-b]")).unwrap();
        let r = Reachable { reports: vec![open], unreachable: vec![NodeId("b".into())] };
        assert!(settled_reason(&r).unwrap().contains("slot 5 open (importing)"));
    }
}
