//! Reading the cluster from its seeds and waiting until the nodes that answer agree: what
//! every topology change and the lost-writes read-back wait on. Every wait here is
//! [`poll_until`]: one loop, one deadline, the last unmet condition in its error.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::node::{ADMIN_TIMEOUT, Node};
use super::topology::{NodeId, View};
use super::{ClusterError, NodeReport, disagreement};

/// Ask `pending` every `every` until it finds nothing left to wait for (`Ok(None)`), fails,
/// or `timeout` passes.
///
/// # Errors
/// What `pending` returned, or [`ClusterError::NotReady`] with the last reason it gave.
pub async fn poll_until<E, F>(
    timeout: Duration,
    every: Duration,
    mut pending: impl FnMut() -> F,
) -> Result<(), E>
where
    E: From<ClusterError>,
    F: Future<Output = Result<Option<String>, E>>,
{
    let start = Instant::now();
    loop {
        let Some(still) = pending().await? else { return Ok(()) };
        if start.elapsed() >= timeout {
            return Err(ClusterError::NotReady { waited: start.elapsed(), still }.into());
        }
        sleep(every).await;
    }
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
    let pending = &pending;
    poll_until(timeout, Duration::from_millis(50), || async move {
        Ok::<_, ClusterError>(match seed_view(seeds).await {
            Ok(view) => pending(&reach(&view).await),
            Err(e) => Some(e.to_string()),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

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
