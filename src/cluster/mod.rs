//! Cluster administration over the Redis protocol: bootstrap (MEET, ADDSLOTSRANGE,
//! REPLICATE), waiting until every node agrees and every replica is in sync, and surveying a
//! running cluster for `status`. Topology changes have a file each: planned failover and the
//! shared helpers in `admin`, reshard in `migrate` (keys moved by `transfer`), `rebalance`,
//! `fix` for open and uncovered slots, join and forget in `membership`.
//!
//! This module talks to nodes by address only; it never knows whether they live in Docker
//! or elsewhere, and it never generates load.

pub mod admin;
pub mod atomic;
pub mod failover;
pub mod fix;
pub mod membership;
pub mod migrate;
pub mod node;
pub mod rebalance;
pub mod settle;
pub mod slot;
pub mod status;
pub mod topology;
pub mod transfer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use self::node::{ADMIN_TIMEOUT, Node};
use self::topology::{NodeId, View, even_slot_ranges};

/// Errors talking to or shaping a cluster. Each names the node it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A node could not be reached.
    #[error("cannot connect to node {addr}: {source}")]
    Connect {
        /// The node's address.
        addr: SocketAddr,
        /// The client's error.
        source: redis::RedisError,
    },
    /// A node answered a command with an error, or not in time.
    #[error("node {addr} failed {command}: {source}")]
    Command {
        /// The node's address.
        addr: SocketAddr,
        /// The command (and subcommand) that failed.
        command: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// A node's reply could not be understood.
    #[error("node {addr} sent a reply slotstorm cannot read: {reason}")]
    Reply {
        /// The node's address.
        addr: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// A node is already part of some cluster, so bootstrapping it would merge two clusters.
    #[error(
        "node {addr} already belongs to a cluster ({known} known nodes, {slots} slots); bootstrap needs fresh nodes"
    )]
    NotFresh {
        /// The node's address.
        addr: SocketAddr,
        /// How many nodes it knows.
        known: usize,
        /// How many slots it serves.
        slots: u32,
    },
    /// The cluster did not reach the wanted state in time.
    #[error("cluster not ready after {waited:.1?}: {still}")]
    NotReady {
        /// How long slotstorm waited.
        waited: Duration,
        /// The last condition that did not hold.
        still: String,
    },
    /// No seed address answered.
    #[error("none of the seed nodes answered ({seeds}): {last}")]
    NoSeed {
        /// The seeds tried.
        seeds: String,
        /// The last error seen.
        last: String,
    },
}

/// How many primaries and how many replicas each primary gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Number of primaries; the slots are split evenly between them.
    pub masters: usize,
    /// Number of replicas per primary.
    pub replicas: usize,
}

impl Layout {
    /// Total number of nodes.
    pub fn nodes(&self) -> usize {
        self.masters * (1 + self.replicas)
    }

    /// The index of the primary that node `i` replicates, or `None` when node `i` is a
    /// primary. Nodes `0..masters` are primaries; replica `k` (counting after them) follows
    /// primary `k % masters`, so with 3 × 1 the seed's redis-4 follows redis-1.
    pub fn primary_of(&self, i: usize) -> Option<usize> {
        (i >= self.masters).then(|| (i - self.masters) % self.masters)
    }
}

/// Make a cluster of fresh nodes: `addrs[..masters]` become primaries with even slot shares,
/// the rest replicas as [`Layout::primary_of`] says. Returns once [`wait_ready`] holds.
///
/// # Errors
/// A [`ClusterError`] naming the node that failed, or [`ClusterError::NotReady`] when the
/// cluster has not converged within `timeout`.
pub async fn bootstrap(addrs: &[SocketAddr], layout: Layout, timeout: Duration) -> Result<(), ClusterError> {
    assert_eq!(addrs.len(), layout.nodes(), "one address per node of the layout");
    let start = Instant::now();
    let mut nodes = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        nodes.push(connect_retrying(addr, start + timeout).await?);
    }
    let mut ids = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter_mut().enumerate() {
        let info = node.cluster_info().await?;
        let known: usize = info.get("cluster_known_nodes").and_then(|v| v.parse().ok()).unwrap_or(0);
        let slots: u32 = info.get("cluster_slots_assigned").and_then(|v| v.parse().ok()).unwrap_or(0);
        if known > 1 || slots > 0 {
            return Err(ClusterError::NotFresh { addr: node.addr, known, slots });
        }
        // Distinct epochs up front avoid the collision-resolution dance after the MEETs,
        // as redis-cli does.
        node.run::<()>(redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(i + 1)).await?;
        ids.push(NodeId(node.myid().await?));
    }
    // A node learns a primary's slots only from a message that primary sends after the
    // handshake, and idle nodes ping each other every node-timeout/2: with the 5 s default
    // agreement would take seconds. A short timeout while bootstrapping, restored at the
    // end, brings it under one.
    let mut node_timeouts = Vec::with_capacity(nodes.len());
    for node in &mut nodes {
        let original = node_timeout(node).await?;
        if BOOTSTRAP_NODE_TIMEOUT < original {
            set_node_timeout(node, BOOTSTRAP_NODE_TIMEOUT).await?;
        }
        node_timeouts.push(original);
    }
    // Each pair meets once, so every node learns every other directly instead of waiting
    // for gossip.
    for i in 0..nodes.len() {
        for &peer in &addrs[i + 1..] {
            let meet = redis::cmd("CLUSTER").arg("MEET").arg(peer.ip().to_string()).arg(peer.port()).clone();
            nodes[i].run::<()>(&meet).await?;
        }
    }
    tracing::debug!(elapsed = ?start.elapsed(), "Every pair of nodes has met.");
    for (node, range) in nodes.iter_mut().zip(even_slot_ranges(layout.masters)) {
        let cmd = redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(range.start).arg(range.end).clone();
        node.run::<()>(&cmd).await?;
    }
    for i in layout.masters..nodes.len() {
        let primary = &ids[layout.primary_of(i).expect("index past the primaries")];
        replicate_when_known(&mut nodes[i], primary, start + timeout).await?;
    }
    tracing::debug!(elapsed = ?start.elapsed(), "Slots assigned and replicas attached; waiting for agreement.");
    wait_ready(addrs, layout, timeout.saturating_sub(start.elapsed())).await?;
    for (node, original) in nodes.iter_mut().zip(node_timeouts) {
        set_node_timeout(node, original).await?;
    }
    Ok(())
}

/// `cluster-node-timeout` while bootstrapping: short enough that nodes ping each other
/// every 250 ms, long enough that an idle node on a busy machine is not suspected.
const BOOTSTRAP_NODE_TIMEOUT: Duration = Duration::from_millis(500);

/// A node's `cluster-node-timeout`.
async fn node_timeout(node: &mut Node) -> Result<Duration, ClusterError> {
    let reply: HashMap<String, String> =
        node.run(redis::cmd("CONFIG").arg("GET").arg("cluster-node-timeout")).await?;
    let ms = reply.get("cluster-node-timeout").cloned().unwrap_or_default();
    ms.parse().map(Duration::from_millis).map_err(|_| ClusterError::Reply {
        addr: node.addr,
        reason: format!("cluster-node-timeout {ms:?} is not a number"),
    })
}

/// Set a node's `cluster-node-timeout` at run time (its command line keeps the original).
async fn set_node_timeout(node: &mut Node, to: Duration) -> Result<(), ClusterError> {
    let ms = to.as_millis() as u64;
    node.run(redis::cmd("CONFIG").arg("SET").arg("cluster-node-timeout").arg(ms)).await
}

/// Connect to `addr`, retrying until `deadline`: a container's server needs a moment.
pub(crate) async fn connect_retrying(addr: SocketAddr, deadline: Instant) -> Result<Node, ClusterError> {
    loop {
        match Node::connect(addr, ADMIN_TIMEOUT).await {
            Ok(mut node) => match node.run::<String>(&redis::cmd("PING")).await {
                Ok(_) => return Ok(node),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {}
            },
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// `CLUSTER REPLICATE primary` on `node`, retried until the node has learnt of the primary
/// through the handshake (before that it answers "Unknown node").
pub(crate) async fn replicate_when_known(
    node: &mut Node,
    primary: &NodeId,
    deadline: Instant,
) -> Result<(), ClusterError> {
    let cmd = redis::cmd("CLUSTER").arg("REPLICATE").arg(&primary.0).clone();
    loop {
        match node.run::<()>(&cmd).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => sleep(Duration::from_millis(20)).await,
        }
    }
}

/// What one node reports, gathered for readiness checks and `status`.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// The node's address.
    pub addr: SocketAddr,
    /// Its `CLUSTER NODES` view.
    pub view: View,
    /// Its `CLUSTER INFO` fields.
    pub cluster_info: HashMap<String, String>,
    /// Its `INFO replication` fields.
    pub replication: HashMap<String, String>,
}

impl NodeReport {
    /// Ask the node at `addr` for everything a report holds.
    ///
    /// # Errors
    /// The first [`ClusterError`] met.
    pub async fn fetch(addr: SocketAddr) -> Result<NodeReport, ClusterError> {
        let mut node = Node::connect(addr, ADMIN_TIMEOUT).await?;
        Ok(NodeReport {
            addr,
            view: node.view().await?,
            cluster_info: node.cluster_info().await?,
            replication: node.info("replication").await?,
        })
    }

    /// `cluster_state` from `CLUSTER INFO` (`ok` or `fail`).
    pub fn state(&self) -> &str {
        self.cluster_info.get("cluster_state").map_or("?", String::as_str)
    }
}

/// Why a cluster is not ready yet, or `None` when it is: every node reports
/// `cluster_state:ok` and all 16384 slots, all views agree on who serves which slots and who
/// replicates whom, the agreed shape has the layout's primaries and replicas, no node is
/// suspected, failed or in a handshake, and every replica's link to its primary is up (a
/// replica that has not synced never runs for election).
pub fn not_ready_reason(reports: &[NodeReport], layout: Layout) -> Option<String> {
    if let Some(r) = reports.iter().find(|r| r.view.nodes.len() != layout.nodes()) {
        return Some(format!("{} knows {} of {} nodes", r.addr, r.view.nodes.len(), layout.nodes()));
    }
    if let Some(reason) = disagreement(reports) {
        return Some(reason);
    }
    let shape = reports.first()?.view.shape();
    if shape.primaries.len() != layout.masters || shape.replicas.len() != layout.masters * layout.replicas {
        return Some(format!(
            "{} primaries and {} replicas, expected {} and {}",
            shape.primaries.len(),
            shape.replicas.len(),
            layout.masters,
            layout.masters * layout.replicas
        ));
    }
    None
}

/// The layout-free part of [`not_ready_reason`]: every node reports `cluster_state:ok` and
/// all 16384 slots, flags no one, agrees with the others, and every replica is in sync.
pub fn disagreement(reports: &[NodeReport]) -> Option<String> {
    let first = reports.first()?;
    let shape = first.view.shape();
    for r in reports {
        if r.state() != "ok" {
            return Some(format!("{} reports cluster_state:{}", r.addr, r.state()));
        }
        if r.view.covered_slots() != 16384 {
            return Some(format!("{} sees {} of 16384 slots covered", r.addr, r.view.covered_slots()));
        }
        if let Some(n) = r.view.nodes.iter().find(|n| n.is_failed() || n.is_suspected() || n.in_handshake()) {
            return Some(format!("{} flags {} as {}", r.addr, n.addr, n.flags.join(",")));
        }
        if r.view.shape() != shape {
            return Some(format!("{} and {} disagree on slots or replication", first.addr, r.addr));
        }
        if r.replication.get("role").map(String::as_str) == Some("slave")
            && r.replication.get("master_link_status").map(String::as_str) != Some("up")
        {
            return Some(format!("replica {} has not finished syncing with its primary", r.addr));
        }
    }
    None
}

/// Poll every node until [`not_ready_reason`] finds nothing, or `timeout` passes.
///
/// # Errors
/// [`ClusterError::NotReady`] with the last unmet condition.
pub async fn wait_ready(addrs: &[SocketAddr], layout: Layout, timeout: Duration) -> Result<(), ClusterError> {
    settle::poll_until(timeout, Duration::from_millis(25), || async move {
        let reports = futures_util::future::join_all(addrs.iter().map(|&a| NodeReport::fetch(a))).await;
        let reason = match reports.into_iter().collect::<Result<Vec<_>, _>>() {
            Ok(reports) => not_ready_reason(&reports, layout),
            Err(e) => Some(e.to_string()),
        };
        if let Some(still) = &reason {
            tracing::debug!(%still, "Cluster not ready yet.");
        }
        Ok::<_, ClusterError>(reason)
    })
    .await
}

/// Wait until every node the seeds know answers, reports `cluster_state:ok` and all 16384
/// slots, flags no node, and agrees with the others on slots and replication — whatever the
/// layout has become (after failovers). Used before reading data back after faults.
///
/// # Errors
/// [`ClusterError::NotReady`] with the last unmet condition.
pub async fn wait_agreed(seeds: &[SocketAddr], timeout: Duration) -> Result<(), ClusterError> {
    settle::poll_until(timeout, Duration::from_millis(100), || async move {
        let still = match survey(seeds).await {
            Ok(s) => {
                let mut reports = Vec::new();
                let mut unreachable = None;
                for (addr, r) in s.reports {
                    match r {
                        Ok(r) => reports.push(r),
                        Err(_) => unreachable = Some(addr),
                    }
                }
                match unreachable {
                    Some(addr) => Some(format!("{addr} does not answer")),
                    None => disagreement(&reports),
                }
            }
            Err(e) => Some(e.to_string()),
        };
        Ok::<_, ClusterError>(still)
    })
    .await
}

/// Everything `status` shows: the first seed's view, and each known node's own report (or
/// the error that kept it from answering).
#[derive(Debug)]
pub struct Survey {
    /// The view of the seed that answered.
    pub seed_view: View,
    /// Each node of that view, by address, with its own report.
    pub reports: Vec<(String, Result<NodeReport, ClusterError>)>,
}

/// Survey a running cluster starting from any of `seeds`.
///
/// # Errors
/// [`ClusterError::NoSeed`] when no seed answers.
pub async fn survey(seeds: &[SocketAddr]) -> Result<Survey, ClusterError> {
    let seed_view = settle::seed_view(seeds).await?;
    // A view came back, so there was a seed; the one that answered names itself.
    let seed = seed_view.myself().and_then(|m| m.addr.parse().ok()).unwrap_or(seeds[0]);
    let fetches = seed_view.nodes.iter().map(|n| async move {
        let report = match n.addr.parse() {
            Ok(a) => NodeReport::fetch(a).await,
            Err(_) => {
                Err(ClusterError::Reply { addr: seed, reason: format!("node {} has no address", n.id) })
            }
        };
        (n.addr.clone(), report)
    });
    let reports = futures_util::future::join_all(fetches).await;
    Ok(Survey { seed_view, reports })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(addr: &str, nodes: &str, state: &str, role: &str, link: &str) -> NodeReport {
        let mut replication = HashMap::from([("role".to_string(), role.to_string())]);
        if role == "slave" {
            replication.insert("master_link_status".into(), link.into());
        }
        NodeReport {
            addr: addr.parse().unwrap(),
            view: View::parse(nodes).unwrap(),
            cluster_info: HashMap::from([("cluster_state".to_string(), state.to_string())]),
            replication,
        }
    }

    const VIEW: &str = "\
a 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-8191
b 10.0.0.2:6379@16379 master - 0 0 2 connected 8192-16383
c 10.0.0.3:6379@16379 slave a 0 0 1 connected
d 10.0.0.4:6379@16379 slave b 0 0 2 connected
";
    const LAYOUT: Layout = Layout { masters: 2, replicas: 1 };

    #[test]
    fn ready_when_all_agree_and_replicas_synced() {
        let rs = vec![
            report("10.0.0.1:6379", VIEW, "ok", "master", ""),
            report("10.0.0.3:6379", &VIEW.replace("myself,", ""), "ok", "slave", "up"),
        ];
        assert_eq!(not_ready_reason(&rs, LAYOUT), None);
    }

    #[test]
    fn each_unmet_condition_is_named() {
        let ok = report("10.0.0.1:6379", VIEW, "ok", "master", "");
        let cases = [
            (report("10.0.0.3:6379", VIEW, "fail", "slave", "up"), "cluster_state:fail"),
            (report("10.0.0.3:6379", VIEW, "ok", "slave", "down"), "has not finished syncing"),
            (
                report("10.0.0.3:6379", &VIEW.replace("8192-16383", "8192-16000"), "ok", "slave", "up"),
                "16001 of 16384",
            ),
            (
                report(
                    "10.0.0.3:6379",
                    &VIEW.replace("b 10.0.0.2:6379@16379 master", "b 10.0.0.2:6379@16379 master,fail?"),
                    "ok",
                    "slave",
                    "up",
                ),
                "as master,fail?",
            ),
            (report("10.0.0.3:6379", &VIEW.replace("slave b", "slave a"), "ok", "slave", "up"), "disagree"),
        ];
        for (bad, expected) in cases {
            let reason = not_ready_reason(&[ok.clone(), bad], LAYOUT).expect("not ready");
            assert!(reason.contains(expected), "{reason:?} should mention {expected:?}");
        }
        let wrong_layout = Layout { masters: 2, replicas: 2 };
        assert!(not_ready_reason(&[ok], wrong_layout).unwrap().contains("knows 4 of 6"));
    }

    #[test]
    fn replicas_follow_primaries_round_robin() {
        let l = Layout { masters: 3, replicas: 2 };
        assert_eq!(l.nodes(), 9);
        let of: Vec<_> = (0..9).map(|i| l.primary_of(i)).collect();
        assert_eq!(of, vec![None, None, None, Some(0), Some(1), Some(2), Some(0), Some(1), Some(2)]);
    }
}
