//! Cluster membership: a fresh node joining ([`join`]: `CLUSTER MEET`, then `CLUSTER
//! REPLICATE` for a replica) and a node leaving ([`forget`]: its replicas re-homed, then
//! `CLUSTER FORGET` on every other node at once, inside the 60 s in which a forgotten node
//! cannot be re-learnt through gossip).
//!
//! Only the protocol side: creating or removing the node's container is the backend's job
//! (`embedded::add_node` / `embedded::remove_node` do both).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::admin::{AdminError, NodeRef, describe, live_addr, resolve};
use super::node::{ADMIN_TIMEOUT, Node};
use super::settle::{self, Reachable};
use super::topology::{self, NodeId, View};
use super::{connect_retrying, replicate_when_known};

/// The role a joining node takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinAs {
    /// A primary with no slots (give it some with reshard or rebalance).
    Primary,
    /// A replica of this primary.
    ReplicaOf(NodeRef),
}

/// A node that joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Its cluster id.
    pub id: NodeId,
    /// Its address.
    pub addr: SocketAddr,
    /// The primary it replicates, for a replica.
    pub primary: Option<NodeId>,
    /// From the first command until every answering node agreed.
    pub elapsed: Duration,
}

/// Bring the fresh node at `new` into the cluster the seeds belong to: it meets every node,
/// and once every answering node knows it (handshake done everywhere) it replicates its
/// primary if asked to. Returns when the answering nodes have settled with it in its role
/// (a replica has finished its first sync).
///
/// # Errors
/// [`AdminError::NotFresh`], [`AdminError::UnknownNode`] or [`AdminError::IsReplica`] (for
/// the primary to replicate) before any command changes the cluster;
/// [`AdminError::Cluster`] when a node fails or the cluster does not settle within `timeout`.
pub async fn join(
    seeds: &[SocketAddr],
    new: SocketAddr,
    role: &JoinAs,
    timeout: Duration,
) -> Result<Joined, AdminError> {
    let start = Instant::now();
    let seeds: Vec<SocketAddr> = seeds.iter().copied().filter(|&s| s != new).collect();
    let view = settle::seed_view(&seeds).await?;
    let primary = match role {
        JoinAs::Primary => None,
        JoinAs::ReplicaOf(p) => {
            let entry = resolve(&view, p, "primary to replicate")?;
            if !entry.is_primary() {
                let of = entry.primary.clone().unwrap_or_else(|| NodeId("-".into()));
                return Err(AdminError::IsReplica {
                    role: "primary to replicate",
                    node: describe(entry),
                    primary: of,
                });
            }
            live_addr(entry, "primary to replicate")?;
            Some(entry.id.clone())
        }
    };
    let mut node = connect_retrying(new, start + timeout).await?;
    let info = node.cluster_info().await?;
    let known: usize = info.get("cluster_known_nodes").and_then(|v| v.parse().ok()).unwrap_or(0);
    if known > 1 {
        return Err(AdminError::NotFresh { addr: new, known });
    }
    let id = NodeId(node.myid().await?);
    // Meeting every node directly instead of one and waiting for gossip: each handshake
    // completes on its own, in about one round trip.
    for peer in view.nodes.iter().filter(|n| !n.is_failed()).filter_map(|n| n.addr.parse::<SocketAddr>().ok())
    {
        node.run::<()>(redis::cmd("CLUSTER").arg("MEET").arg(peer.ip().to_string()).arg(peer.port())).await?;
    }
    let expected = view.nodes.iter().filter(|n| !n.is_failed()).count() + 1;
    let left = |start: Instant| timeout.saturating_sub(start.elapsed());
    settle::wait_until(&seeds, left(start), |r| handshake_pending(r, &id, expected)).await?;
    tracing::debug!(node = %new, elapsed = ?start.elapsed(), "Every answering node knows the new node.");
    if let Some(p) = &primary {
        replicate_when_known(&mut node, p, start + timeout).await?;
    }
    settle::wait_until(&seeds, left(start), |r| {
        role_pending(r, &id, primary.as_ref()).or_else(|| settle::settled_reason(r))
    })
    .await?;
    Ok(Joined { id, addr: new, primary, elapsed: start.elapsed() })
}

/// Why not every answering node (the new one included) knows the `expected` live nodes with
/// no handshake under way.
fn handshake_pending(r: &Reachable, new: &NodeId, expected: usize) -> Option<String> {
    if !r.reports.iter().any(|rep| rep.view.myself().is_some_and(|m| &m.id == new)) {
        return Some(format!("the seed does not know {new} yet"));
    }
    for rep in &r.reports {
        let v = &rep.view;
        if let Some(n) = v.nodes.iter().find(|n| n.in_handshake()) {
            return Some(format!("{} is still in a handshake with {}", rep.addr, n.addr));
        }
        let known = v.nodes.iter().filter(|n| !n.is_failed()).count();
        if known < expected {
            return Some(format!("{} knows {known} live nodes, expected {expected}", rep.addr));
        }
    }
    None
}

/// Why the answering nodes do not all see `new` in its role yet.
fn role_pending(r: &Reachable, new: &NodeId, primary: Option<&NodeId>) -> Option<String> {
    for rep in &r.reports {
        let shape = rep.view.shape();
        let ok = match primary {
            Some(p) => shape.replicas.get(new) == Some(p),
            None => shape.primaries.contains_key(new),
        };
        if !ok {
            return Some(format!("{} does not see {new} in its role yet", rep.addr));
        }
    }
    None
}

/// A node that was forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// Its cluster id.
    pub id: NodeId,
    /// Its address as the cluster knew it.
    pub addr: String,
    /// Its replicas and the primaries they now follow.
    pub rehomed: Vec<(NodeId, NodeId)>,
    /// Nodes that did not answer and may still know it.
    pub missed: Vec<NodeId>,
    /// From the first command until no answering node knew it.
    pub elapsed: Duration,
}

/// Make every other node forget `node`: refused while it serves slots; its replicas (if
/// any) first follow the primary with fewest replicas; then `CLUSTER FORGET` goes to every
/// other node at once, and the node itself is reset (`CLUSTER RESET SOFT`, best effort) so
/// it cannot gossip its way back. Stop the node afterwards.
///
/// # Errors
/// [`AdminError::UnknownNode`], [`AdminError::StillServesSlots`] or
/// [`AdminError::HasReplicas`] before anything changes; [`AdminError::Cluster`] when a node
/// fails or the others still know it after `timeout`.
pub async fn forget(
    seeds: &[SocketAddr],
    node: &NodeRef,
    timeout: Duration,
) -> Result<Forgotten, AdminError> {
    let start = Instant::now();
    let view = settle::seed_view(seeds).await?;
    let entry = resolve(&view, node, "node to remove")?.clone();
    if entry.is_primary() && entry.slot_count() > 0 {
        return Err(AdminError::StillServesSlots {
            node: describe(&entry),
            count: entry.slot_count(),
            slots: topology::slot_list(topology::slots_in(&entry.slots)),
        });
    }
    let replicas: Vec<_> = view.nodes.iter().filter(|n| n.primary.as_ref() == Some(&entry.id)).collect();
    let mut rehomed = Vec::new();
    if !replicas.is_empty() {
        let homes = rehome(&view, &entry.id, replicas.len()).ok_or_else(|| AdminError::HasReplicas {
            node: describe(&entry),
            replicas: replicas.iter().map(|r| describe(r)).collect::<Vec<_>>().join(", "),
        })?;
        for (replica, home) in replicas.iter().zip(homes) {
            let mut r = Node::connect(live_addr(replica, "replica")?, ADMIN_TIMEOUT).await?;
            r.run::<()>(redis::cmd("CLUSTER").arg("REPLICATE").arg(&home.0)).await?;
            rehomed.push((replica.id.clone(), home));
        }
    }
    let others: Vec<(NodeId, SocketAddr)> = view
        .nodes
        .iter()
        .filter(|n| n.id != entry.id)
        .filter_map(|n| Some((n.id.clone(), n.addr.parse().ok()?)))
        .collect();
    let forgets = others.iter().map(|(id, addr)| {
        let target = entry.id.clone();
        async move {
            let mut n = Node::connect(*addr, ADMIN_TIMEOUT).await?;
            match n.run::<()>(redis::cmd("CLUSTER").arg("FORGET").arg(&target.0)).await {
                Err(super::ClusterError::Command { source, .. })
                    if source.to_string().contains("Unknown node") =>
                {
                    Ok(id.clone())
                }
                other => other.map(|()| id.clone()),
            }
        }
    });
    let mut missed = Vec::new();
    for (r, (id, _)) in futures_util::future::join_all(forgets).await.into_iter().zip(&others) {
        if let Err(e) = r {
            tracing::warn!(node = %id, error = %e, "A node did not forget; it may gossip the removed node back.");
            missed.push(id.clone());
        }
    }
    if let Ok(addr) = entry.addr.parse::<SocketAddr>()
        && let Ok(mut gone) = Node::connect(addr, ADMIN_TIMEOUT).await
    {
        let _ = gone.run::<()>(redis::cmd("CLUSTER").arg("RESET").arg("SOFT")).await;
    }
    let seeds: Vec<SocketAddr> = seeds.iter().copied().filter(|s| s.to_string() != entry.addr).collect();
    let id = entry.id.clone();
    settle::wait_until(&seeds, timeout.saturating_sub(start.elapsed()), |r| {
        r.reports
            .iter()
            .find(|rep| rep.view.node(&id).is_some())
            .map(|rep| format!("{} still knows {id}", rep.addr))
    })
    .await?;
    Ok(Forgotten { id: entry.id, addr: entry.addr, rehomed, missed, elapsed: start.elapsed() })
}

/// New primaries for `count` replicas of `leaving`: live primaries serving slots, fewest
/// replicas first, or `None` when there is none.
fn rehome(view: &View, leaving: &NodeId, count: usize) -> Option<Vec<NodeId>> {
    let mut homes: Vec<(usize, NodeId)> = view
        .nodes
        .iter()
        .filter(|n| n.is_primary() && !n.is_failed() && n.slot_count() > 0 && &n.id != leaving)
        .map(|p| (view.nodes.iter().filter(|n| n.primary.as_ref() == Some(&p.id)).count(), p.id.clone()))
        .collect();
    if homes.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        homes.sort();
        out.push(homes[0].1.clone());
        homes[0].0 += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_rehomed_to_the_primaries_with_fewest() {
        let v = View::parse(
            "\
a 10.0.0.1:6379@16379 master - 0 0 1 connected 0-8191
b 10.0.0.2:6379@16379 master - 0 0 2 connected 8192-16383
c 10.0.0.3:6379@16379 master - 0 0 3 connected
d 10.0.0.4:6379@16379 slave a 0 0 1 connected
e 10.0.0.5:6379@16379 slave c 0 0 3 connected
f 10.0.0.6:6379@16379 slave c 0 0 3 connected
",
        )
        .unwrap();
        let homes = rehome(&v, &NodeId("c".into()), 2).unwrap();
        assert_eq!(homes, vec![NodeId("b".into()), NodeId("a".into())]);
        let lonely = View::parse("c 10.0.0.3:6379@16379 master - 0 0 3 connected\n").unwrap();
        assert_eq!(rehome(&lonely, &NodeId("c".into()), 1), None);
    }
}
