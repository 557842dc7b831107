//! The failover detector: watches every node from the inside and turns what changes into
//! [`Event`]s on the run's clock. One task per node polls `CLUSTER NODES` and `CLUSTER INFO`
//! (every 50 ms by default, with short timeouts, so a hung node stalls only its own task),
//! and once per interval `INFO` for the `nodes.csv` health samples; [`logs`] follows the
//! nodes' own logs for the lines that mark failover steps.
//!
//! This module observes; it never drives load and never injects faults.

pub mod logs;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::clock::{RunClock, Stop};
use crate::cluster::node::Node;
use crate::cluster::topology::View;
use crate::history::{EventKind, EventLog, emit};

/// One node's health at one moment, for `nodes.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSample {
    /// µs since the run began.
    pub at_us: u64,
    /// The node.
    pub node: String,
    /// `master` or `slave`, as `INFO` says.
    pub role: String,
    /// `instantaneous_ops_per_sec`.
    pub ops_per_sec: u64,
    /// `used_memory` in bytes.
    pub used_memory: u64,
    /// `connected_clients`.
    pub connected_clients: u64,
    /// For a primary: the largest gap, in bytes of replication stream, between its offset
    /// and a replica's (what a failover now would lose). `None` for replicas.
    pub repl_lag_bytes: Option<u64>,
}

/// Samples gathered during a run.
pub type Samples = Arc<Mutex<Vec<NodeSample>>>;

/// The nodes of a cluster as they are now, name and address: topology operations add and
/// remove nodes during a run.
pub type Roster = Arc<dyn Fn() -> Vec<(String, SocketAddr)> + Send + Sync>;

/// How often the observer looks at the roster for nodes that joined or left.
const ROSTER_CHECK: Duration = Duration::from_millis(250);

/// What the observer needs.
#[derive(Clone)]
pub struct ObserverConfig {
    /// The nodes: name and address.
    pub nodes: Vec<(String, SocketAddr)>,
    /// Poll period.
    pub poll: Duration,
    /// Health sample period.
    pub sample: Duration,
    /// Where to learn of nodes that join or leave during the run; `None` when the nodes are
    /// fixed.
    pub roster: Option<Roster>,
}

/// What one observer task remembers of its node's last answer.
#[derive(Default)]
struct Seen {
    reachable: Option<bool>,
    state: Option<String>,
    role: Option<(String, Option<String>, u32)>,
    owners: Option<Vec<(String, u32)>>,
    /// Flags this node holds on others: subject → flags of interest.
    flags: BTreeMap<String, Vec<String>>,
}

/// Watch every node until `stop`, recording into `events` and `samples`.
pub async fn observe(
    config: ObserverConfig,
    clock: RunClock,
    events: EventLog,
    samples: Samples,
    stop: Arc<Stop>,
) {
    let names: Names = Arc::new(RwLock::new(config.nodes.iter().map(|(n, a)| (*a, n.clone())).collect()));
    let (nodes, roster) = (config.nodes.clone(), config.roster.clone());
    per_node(&nodes, roster, &stop, |name, addr| {
        names.write().expect("names lock").insert(addr, name.to_string());
        watch_node(
            name.to_string(),
            addr,
            config.clone(),
            names.clone(),
            clock,
            events.clone(),
            samples.clone(),
        )
    })
    .await;
}

/// Run one task per node, made by `task`, for `nodes` and then, with a `roster`, for every
/// node that joins (a node that leaves has its task ended: it would only stop answering),
/// until `stop`. Dropping the future ends every task too.
pub async fn per_node<F>(
    nodes: &[(String, SocketAddr)],
    roster: Option<Roster>,
    stop: &Stop,
    mut task: impl FnMut(&str, SocketAddr) -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    let mut running: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    for (name, addr) in nodes {
        running.insert(name.clone(), tasks.spawn(task(name, *addr)));
    }
    loop {
        tokio::select! {
            () = stop.wait() => break,
            _ = tokio::time::sleep(ROSTER_CHECK), if roster.is_some() => {}
        }
        let Some(roster) = &roster else { continue };
        let now = roster();
        for (name, addr) in &now {
            if !running.contains_key(name) {
                running.insert(name.clone(), tasks.spawn(task(name, *addr)));
            }
        }
        running.retain(|name, handle| {
            let stays = now.iter().any(|(n, _)| n == name);
            if !stays {
                handle.abort();
            }
            stays
        });
    }
    tasks.shutdown().await;
}

/// Node names by address, growing as nodes join.
type Names = Arc<RwLock<HashMap<SocketAddr, String>>>;

async fn watch_node(
    name: String,
    addr: SocketAddr,
    config: ObserverConfig,
    names: Names,
    clock: RunClock,
    events: EventLog,
    samples: Samples,
) {
    // Generous enough for a loaded machine, short enough that a hung node is noticed
    // within a few polls.
    let timeout = (config.poll * 4).max(Duration::from_millis(200));
    let mut seen = Seen::default();
    let mut conn: Option<Node> = None;
    let mut next_sample = Duration::ZERO;
    let mut tick = tokio::time::interval(config.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if conn.is_none() {
            conn =
                tokio::time::timeout(timeout, Node::connect(addr, timeout)).await.ok().and_then(Result::ok);
        }
        let answer = match conn.as_mut() {
            Some(node) => tokio::time::timeout(timeout, async {
                let view = node.view().await?;
                let info = node.cluster_info().await?;
                Ok::<_, crate::cluster::ClusterError>((view, info))
            })
            .await
            .ok()
            .and_then(Result::ok),
            None => None,
        };
        let now = clock.now_us();
        let reachable = answer.is_some();
        if seen.reachable != Some(reachable) {
            if seen.reachable.is_some() {
                emit(&events, now, EventKind::Reachable { node: name.clone(), reachable });
            }
            seen.reachable = Some(reachable);
        }
        let Some((view, info)) = answer else {
            // Reconnect next time: a killed node's connection is dead, a paused one's may
            // hold a stale reply.
            conn = None;
            continue;
        };
        let state = info.get("cluster_state").cloned().unwrap_or_default();
        let kinds = changes(&name, &view, &state, &names.read().expect("names lock"), &mut seen);
        for kind in kinds {
            emit(&events, now, kind);
        }
        if clock.start.elapsed() >= next_sample {
            next_sample = clock.start.elapsed() + config.sample;
            if let Some(node) = conn.as_mut()
                && let Ok(Ok(info)) = tokio::time::timeout(timeout, node.info("everything")).await
            {
                samples.lock().expect("samples lock").push(sample(&name, clock.now_us(), &info));
            }
        }
    }
}

/// The events that tell how `view` and `state` differ from what `seen` remembers, and
/// remember them. Pure, so it is tested on crafted views.
fn changes(
    me: &str,
    view: &View,
    state: &str,
    names: &HashMap<SocketAddr, String>,
    seen: &mut Seen,
) -> Vec<EventKind> {
    let name_of = |addr: &str| {
        addr.parse().ok().and_then(|a| names.get(&a).cloned()).unwrap_or_else(|| addr.to_string())
    };
    let mut out = Vec::new();
    if seen.state.as_deref() != Some(state) {
        out.push(EventKind::State { node: me.to_string(), state: state.to_string() });
        seen.state = Some(state.to_string());
    }
    if let Some(myself) = view.myself() {
        let role = if myself.is_primary() { "primary" } else { "replica" };
        let primary = myself.primary.as_ref().and_then(|p| view.node(p)).map(|p| name_of(&p.addr));
        let now = (role.to_string(), primary.clone(), myself.slot_count());
        if seen.role.as_ref() != Some(&now) {
            out.push(EventKind::Role { node: me.to_string(), role: role.into(), primary, slots: now.2 });
            seen.role = Some(now);
        }
    }
    let mut owners: Vec<(String, u32)> = view
        .nodes
        .iter()
        .filter(|n| n.is_primary() && n.slot_count() > 0)
        .map(|n| (name_of(&n.addr), n.slot_count()))
        .collect();
    owners.sort();
    if seen.owners.as_ref() != Some(&owners) {
        out.push(EventKind::Owners { node: me.to_string(), owners: owners.clone() });
        seen.owners = Some(owners);
    }
    let mut flags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in view.nodes.iter().filter(|n| !n.is_myself()) {
        let held: Vec<String> = n.flags.iter().filter(|f| *f == "fail" || *f == "fail?").cloned().collect();
        if !held.is_empty() {
            flags.insert(name_of(&n.addr), held);
        }
    }
    for (subject, held) in &flags {
        let before = seen.flags.get(subject);
        for f in held.iter().filter(|f| before.is_none_or(|b| !b.contains(f))) {
            out.push(EventKind::Flagged {
                observer: me.to_string(),
                subject: subject.clone(),
                flag: f.clone(),
            });
        }
    }
    for (subject, held) in &seen.flags {
        let now = flags.get(subject);
        for f in held.iter().filter(|f| now.is_none_or(|n| !n.contains(f))) {
            out.push(EventKind::Unflagged {
                observer: me.to_string(),
                subject: subject.clone(),
                flag: f.clone(),
            });
        }
    }
    seen.flags = flags;
    out
}

fn sample(node: &str, at_us: u64, info: &HashMap<String, String>) -> NodeSample {
    let num = |k: &str| info.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let role = info.get("role").cloned().unwrap_or_default();
    // A primary lists each replica's acknowledged offset (`slaveN:…,offset=…`); the gap to
    // its own offset is what a failover now would lose. A replica cannot tell its own lag.
    let repl_lag_bytes = (role == "master").then(|| {
        let master = num("master_repl_offset");
        (0..num("connected_slaves"))
            .filter_map(|i| info.get(&format!("slave{i}")))
            .filter_map(|v| {
                v.split(',').find_map(|kv| kv.strip_prefix("offset=")).and_then(|o| o.parse::<u64>().ok())
            })
            .map(|o| master.saturating_sub(o))
            .max()
            .unwrap_or(0)
    });
    NodeSample {
        at_us,
        node: node.to_string(),
        role,
        ops_per_sec: num("instantaneous_ops_per_sec"),
        used_memory: num("used_memory"),
        connected_clients: num("connected_clients"),
        repl_lag_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> HashMap<SocketAddr, String> {
        (1..=4).map(|i| (format!("10.0.0.{i}:6379").parse().unwrap(), format!("redis-{i}"))).collect()
    }

    const HEALTHY: &str = "\
a 10.0.0.1:6379@16379 master - 0 0 1 connected 0-8191
b 10.0.0.2:6379@16379 myself,master - 0 0 2 connected 8192-16383
c 10.0.0.3:6379@16379 slave a 0 0 1 connected
d 10.0.0.4:6379@16379 slave b 0 0 2 connected
";

    #[test]
    fn first_answer_reports_state_and_role_then_only_changes() {
        let mut seen = Seen::default();
        let v = View::parse(HEALTHY).unwrap();
        let first = changes("redis-2", &v, "ok", &names(), &mut seen);
        let owners = vec![("redis-1".to_string(), 8192), ("redis-2".to_string(), 8192)];
        assert_eq!(
            first,
            vec![
                EventKind::State { node: "redis-2".into(), state: "ok".into() },
                EventKind::Role {
                    node: "redis-2".into(),
                    role: "primary".into(),
                    primary: None,
                    slots: 8192
                },
                EventKind::Owners { node: "redis-2".into(), owners },
            ]
        );
        assert!(changes("redis-2", &v, "ok", &names(), &mut seen).is_empty());
    }

    #[test]
    fn a_failing_primary_is_flagged_then_failed_then_cleared() {
        let mut seen = Seen::default();
        changes("redis-2", &View::parse(HEALTHY).unwrap(), "ok", &names(), &mut seen);
        let pfail = View::parse(
            &HEALTHY.replace("a 10.0.0.1:6379@16379 master", "a 10.0.0.1:6379@16379 master,fail?"),
        )
        .unwrap();
        assert_eq!(
            changes("redis-2", &pfail, "ok", &names(), &mut seen),
            vec![EventKind::Flagged {
                observer: "redis-2".into(),
                subject: "redis-1".into(),
                flag: "fail?".into()
            }]
        );
        let fail = View::parse(
            &HEALTHY.replace("a 10.0.0.1:6379@16379 master", "a 10.0.0.1:6379@16379 master,fail"),
        )
        .unwrap();
        let ev = changes("redis-2", &fail, "fail", &names(), &mut seen);
        assert!(ev.contains(&EventKind::State { node: "redis-2".into(), state: "fail".into() }));
        assert!(ev.contains(&EventKind::Flagged {
            observer: "redis-2".into(),
            subject: "redis-1".into(),
            flag: "fail".into()
        }));
        assert!(ev.contains(&EventKind::Unflagged {
            observer: "redis-2".into(),
            subject: "redis-1".into(),
            flag: "fail?".into()
        }));
        let ev = changes("redis-2", &View::parse(HEALTHY).unwrap(), "ok", &names(), &mut seen);
        assert!(ev.contains(&EventKind::Unflagged {
            observer: "redis-2".into(),
            subject: "redis-1".into(),
            flag: "fail".into()
        }));
    }

    #[test]
    fn a_promoted_replica_reports_its_new_role() {
        let mut seen = Seen::default();
        let as_replica = HEALTHY
            .replace("myself,master - 0 0 2 connected 8192-16383", "master - 0 0 2 connected 8192-16383")
            .replace("c 10.0.0.3:6379@16379 slave", "c 10.0.0.3:6379@16379 myself,slave");
        changes("redis-3", &View::parse(&as_replica).unwrap(), "ok", &names(), &mut seen);
        let promoted = as_replica
            .replace(
                "a 10.0.0.1:6379@16379 master - 0 0 1 connected 0-8191",
                "a 10.0.0.1:6379@16379 master,fail - 0 0 1 connected",
            )
            .replace(
                "c 10.0.0.3:6379@16379 myself,slave a 0 0 1 connected",
                "c 10.0.0.3:6379@16379 myself,master - 0 0 3 connected 0-8191",
            );
        let ev = changes("redis-3", &View::parse(&promoted).unwrap(), "ok", &names(), &mut seen);
        assert!(ev.contains(&EventKind::Role {
            node: "redis-3".into(),
            role: "primary".into(),
            primary: None,
            slots: 8192
        }));
    }

    #[test]
    fn samples_read_replication_lag() {
        let info: HashMap<String, String> = [
            ("role", "master"),
            ("master_repl_offset", "1000"),
            ("connected_slaves", "1"),
            ("slave0", "ip=10.0.0.3,port=6379,state=online,offset=900,lag=0"),
            ("instantaneous_ops_per_sec", "42"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = sample("redis-1", 5, &info);
        assert_eq!((s.ops_per_sec, s.repl_lag_bytes), (42, Some(100)));
    }
}
