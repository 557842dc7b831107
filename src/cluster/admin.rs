//! Topology changes over the cluster protocol, the part every one of them shares: naming a
//! node ([`NodeRef`]) and the errors ([`AdminError`]). Reading the cluster from its seeds and
//! waiting until it settles are `settle`'s; planned failover is `failover`'s.
//!
//! Slot moves live in `migrate` (reshard), `rebalance` and `fix`; membership (join, forget) in
//! `membership`. None of them shells out to `redis-cli`: each step is a command sent to the
//! node it concerns, so errors name that node.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use super::ClusterError;
use super::topology::{NodeEntry, NodeId, View};

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
    /// Valkey's atomic slot migration did not succeed (its job's state and message).
    #[error("the atomic migration {0}")]
    Atomic(String),
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
}
