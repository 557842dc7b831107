//! Topology changes on real clusters (3 primaries × 1 replica in Docker): reshard with keys,
//! refused plans that move nothing, planned failover, scaling out and in with rebalance, and
//! `fix` after the source of a reshard was killed part-way.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::TestCluster;
use redis::AsyncCommands;
use slotstorm::backend::docker;
use slotstorm::cluster::admin::{AdminError, NodeRef};
use slotstorm::cluster::failover::{self, FailoverMode};
use slotstorm::cluster::fix::{self, FixOptions};
use slotstorm::cluster::membership::JoinAs;
use slotstorm::cluster::migrate::{self, ReshardEvent, ReshardOptions, ReshardPlan};
use slotstorm::cluster::rebalance;
use slotstorm::cluster::slot::Slot;
use slotstorm::cluster::topology::{NodeEntry, SlotRange, View};
use slotstorm::cluster::{NodeReport, wait_agreed};
use slotstorm::embedded::{self, EmbeddedSpec};
use slotstorm::nemesis::inject;

const SETTLE: Duration = Duration::from_secs(30);

/// Every node's own report.
async fn reports(addrs: &[SocketAddr]) -> Vec<NodeReport> {
    let mut out = Vec::new();
    for &a in addrs {
        out.push(NodeReport::fetch(a).await.unwrap_or_else(|e| panic!("{a}: {e}")));
    }
    out
}

/// The primary serving `slot` in `view`.
fn owner(view: &View, slot: u16) -> &NodeEntry {
    view.owner_of(slot).unwrap_or_else(|| panic!("slot {slot} has an owner"))
}

fn addr_of(e: &NodeEntry) -> SocketAddr {
    e.addr.parse().unwrap()
}

/// `count` keys whose slots lie in `slots`, with their values.
fn keys_in(slots: std::ops::Range<u16>, count: usize, tag: &str) -> Vec<(String, String)> {
    (0u64..)
        .map(|i| format!("{tag}:{i}"))
        .filter(|k| slots.contains(&Slot::of(k.as_bytes()).get()))
        .take(count)
        .map(|k| {
            let v = format!("value-of-{k}");
            (k, v)
        })
        .collect()
}

async fn write_all(tc: &TestCluster, kv: &[(String, String)]) {
    let conn = tc.client().get_async_connection().await.unwrap();
    for chunk in kv.chunks(500) {
        let sets = chunk.iter().map(|(k, v)| {
            let mut c = conn.clone();
            async move { c.set::<_, _, ()>(k, v).await }
        });
        for r in futures_util::future::join_all(sets).await {
            r.unwrap();
        }
    }
}

/// How many of `kv` read back with their value through a fresh cluster client.
async fn readable(tc: &TestCluster, kv: &[(String, String)]) -> usize {
    let conn = tc.client().get_async_connection().await.unwrap();
    let mut ok = 0;
    for chunk in kv.chunks(500) {
        let gets = chunk.iter().map(|(k, v)| {
            let mut c = conn.clone();
            async move { c.get::<_, Option<String>>(k).await.ok().flatten().as_deref() == Some(v.as_str()) }
        });
        ok += futures_util::future::join_all(gets).await.into_iter().filter(|b| *b).count();
    }
    ok
}

fn quiet(_: ReshardEvent) {}

#[tokio::test(flavor = "multi_thread")]
async fn resharding_1000_slots_moves_every_key_and_every_node_agrees() {
    let tc = TestCluster::start("reshard", &EmbeddedSpec::default()).await;
    let addrs = tc.addrs();
    let view = NodeReport::fetch(addrs[0]).await.unwrap().view;
    let (from, to) = (owner(&view, 0).clone(), owner(&view, 6000).clone());
    let kv = keys_in(0..1000, 3000, "r");
    write_all(&tc, &kv).await;

    let plan = ReshardPlan {
        from: NodeRef::Id(from.id.clone()),
        to: NodeRef::Addr(addr_of(&to)),
        slots: migrate::lowest_slots(&view, &NodeRef::Id(from.id.clone()), 1000).unwrap(),
    };
    assert_eq!(plan.slots, vec![SlotRange { start: 0, end: 999 }]);
    let events = std::sync::Mutex::new(BTreeMap::<&'static str, u64>::new());
    let on_event = |e: ReshardEvent| {
        let kind = match e {
            ReshardEvent::Started { .. } => "started",
            ReshardEvent::Batch { .. } => "batch",
            ReshardEvent::SlotMoved { .. } => "moved",
            ReshardEvent::Phase { .. } => "phase",
            ReshardEvent::Done { .. } => "done",
        };
        *events.lock().unwrap().entry(kind).or_default() += 1;
    };
    let report = migrate::reshard(&addrs, &plan, &ReshardOptions::default(), &on_event).await.unwrap();
    eprintln!(
        "resharded {} slots, {} keys in {:.2}s ({:.0} keys/s), agreed {:.2}s later",
        report.slots,
        report.keys,
        report.elapsed.as_secs_f64(),
        report.keys_per_sec(),
        report.agreed_after.unwrap().as_secs_f64()
    );
    assert_eq!((report.slots, report.keys), (1000, 3000));
    assert!(report.elapsed < Duration::from_secs(30), "took {:?}", report.elapsed);
    let events = events.into_inner().unwrap();
    assert_eq!(events["started"], 1);
    assert_eq!(events["moved"], 1000);
    assert_eq!(events["done"], 1);
    assert_eq!(events["batch"], report.batches);

    wait_agreed(&addrs, SETTLE).await.unwrap();
    for r in reports(&addrs).await {
        assert_eq!(r.state(), "ok");
        assert!((0..1000).all(|s| owner(&r.view, s).id == to.id), "{} sees every slot on the target", r.addr);
    }
    assert!(fix::check_slots(&addrs).await.unwrap().is_clean());
    assert_eq!(readable(&tc, &kv).await, kv.len(), "every key reads back with its value");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_reshard_plans_are_refused_before_anything_moves() {
    let tc = TestCluster::start("badplan", &EmbeddedSpec::default()).await;
    let addrs = tc.addrs();
    let before = NodeReport::fetch(addrs[0]).await.unwrap().view;
    let from = owner(&before, 0).clone();
    let to = owner(&before, 6000).clone();
    let replica = before.nodes.iter().find(|n| !n.is_primary()).unwrap().clone();
    let slots = vec![SlotRange { start: 0, end: 99 }];
    let plan =
        |to: NodeRef, slots: Vec<SlotRange>| ReshardPlan { from: NodeRef::Id(from.id.clone()), to, slots };
    let opts = ReshardOptions::default();
    let cases = [
        (plan("10.255.255.1:6379".parse().unwrap(), slots.clone()), "is not a node of this cluster"),
        (plan(NodeRef::Id(replica.id.clone()), slots.clone()), "is a replica"),
        (
            plan(NodeRef::Id(to.id.clone()), vec![SlotRange { start: 6000, end: 6009 }]),
            "already serves slots 6000-6009",
        ),
        (
            plan(
                NodeRef::Id(to.id.clone()),
                vec![SlotRange { start: 0, end: 10 }, SlotRange { start: 10000, end: 10000 }],
            ),
            "already serves slots 10000 (1 slot)",
        ),
    ];
    for (p, expected) in &cases {
        let err = migrate::reshard(&addrs, p, &opts, &quiet).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(expected), "{msg:?} should say {expected:?}");
        assert!(
            matches!(
                err,
                AdminError::UnknownNode { .. } | AdminError::IsReplica { .. } | AdminError::TargetOwns { .. }
            ),
            "{err:?}"
        );
    }
    // Source does not serve the slots (the third primary does).
    let third = vec![SlotRange { start: 12000, end: 12000 }];
    let swapped =
        ReshardPlan { from: NodeRef::Id(to.id.clone()), to: NodeRef::Id(from.id.clone()), slots: third };
    let err = migrate::reshard(&addrs, &swapped, &opts, &quiet).await.unwrap_err();
    assert!(matches!(err, AdminError::SourceDoesNotOwn { .. }), "{err}");
    for r in reports(&addrs).await {
        assert_eq!(r.view.shape(), before.shape(), "{}: ownership unchanged", r.addr);
        assert!(r.view.myself().unwrap().open_slots.is_empty(), "{}: no slot open", r.addr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_planned_failover_swaps_roles_and_every_node_agrees() {
    let tc = TestCluster::start("failover", &EmbeddedSpec::default()).await;
    let addrs = tc.addrs();
    let view = NodeReport::fetch(addrs[0]).await.unwrap().view;
    let replica = view.nodes.iter().find(|n| !n.is_primary()).unwrap().clone();
    let old = view.node(replica.primary.as_ref().unwrap()).unwrap().clone();

    let refused =
        failover::failover(&addrs, &NodeRef::Id(old.id.clone()), FailoverMode::Default, SETTLE).await;
    assert!(matches!(refused, Err(AdminError::NotAReplica { .. })), "{refused:?}");

    let done = failover::failover(&addrs, &NodeRef::Addr(addr_of(&replica)), FailoverMode::Default, SETTLE)
        .await
        .unwrap();
    eprintln!("failover done in {:.2}s", done.elapsed.as_secs_f64());
    assert_eq!((&done.promoted, &done.demoted), (&replica.id, &old.id));
    assert_eq!(done.slots, old.slot_count());
    for r in reports(&addrs).await {
        let shape = r.view.shape();
        assert_eq!(shape.primaries[&replica.id], old.slots, "{}", r.addr);
        assert_eq!(shape.replicas[&old.id], replica.id, "{}", r.addr);
    }
    wait_agreed(&addrs, SETTLE).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fourth_primary_joins_takes_a_quarter_and_leaves_without_losing_keys() {
    let tc = TestCluster::start("scale", &EmbeddedSpec::default()).await;
    let docker = docker::connect().await.unwrap();
    let kv = keys_in(0..16384, 2000, "s");
    write_all(&tc, &kv).await;

    let start = Instant::now();
    let (node, joined) = embedded::add_node(&docker, tc.cluster(), &JoinAs::Primary, SETTLE).await.unwrap();
    eprintln!("{} joined as {} in {:.2}s", node.node, joined.id, joined.elapsed.as_secs_f64());
    assert_eq!(node.node, "redis-7");
    let mut all = tc.addrs();
    all.push(node.addr);

    let report = rebalance::rebalance(&all, true, &ReshardOptions::default(), &quiet).await.unwrap();
    eprintln!(
        "rebalanced {} slots, {} keys in {} moves, {:.2}s",
        report.slots(),
        report.keys(),
        report.moves.len(),
        report.elapsed.as_secs_f64()
    );
    let view = NodeReport::fetch(node.addr).await.unwrap().view;
    let shape = view.shape();
    assert_eq!(shape.primaries.len(), 4);
    for (id, slots) in &shape.primaries {
        let n: u32 = slots.iter().map(SlotRange::len).sum();
        assert!(n.abs_diff(4096) <= 82, "{id} serves {n} slots, not within 2% of 4096");
    }
    assert_eq!(readable(&tc, &kv).await, kv.len(), "every key reads back after the rebalance");

    // Scale in: its slots go back to redis-1, then it is forgotten and its container removed.
    let first = view.nodes.iter().find(|n| n.addr.parse::<SocketAddr>().ok() == Some(tc.addrs()[0])).unwrap();
    let plan = ReshardPlan {
        from: NodeRef::Id(joined.id.clone()),
        to: NodeRef::Id(first.id.clone()),
        slots: shape.primaries[&joined.id].clone(),
    };
    migrate::reshard(&all, &plan, &ReshardOptions::default(), &quiet).await.unwrap();
    let forgotten = embedded::remove_node(&docker, tc.cluster(), &node.node, SETTLE).await.unwrap();
    assert!(forgotten.missed.is_empty());
    for r in reports(&tc.addrs()).await {
        assert!(r.view.node(&joined.id).is_none(), "{} forgot the removed node", r.addr);
    }
    let found = docker::find_cluster(&docker, &tc.run).await.unwrap().unwrap();
    assert_eq!(found.nodes.len(), 6);
    assert!(found.nodes.iter().all(|n| n.container != node.container), "container removed");
    wait_agreed(&tc.addrs(), SETTLE).await.unwrap();
    assert_eq!(readable(&tc, &kv).await, kv.len(), "every key reads back after scaling in");
    eprintln!("scale out, rebalance, scale in: {:.1}s", start.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_source_mid_reshard_leaves_open_slots_that_fix_repairs() {
    // A short node timeout so the source's replica takes over within a couple of seconds.
    let spec = EmbeddedSpec { node_timeout: Duration::from_millis(1000), ..Default::default() };
    let tc = TestCluster::start("killsrc", &spec).await;
    let docker = docker::connect().await.unwrap();
    let addrs = tc.addrs();
    let view = NodeReport::fetch(addrs[0]).await.unwrap().view;
    let (from, to) = (owner(&view, 0).clone(), owner(&view, 6000).clone());
    let victim = tc.cluster().nodes.iter().find(|n| n.addr == addr_of(&from)).unwrap().container.clone();
    let kv = keys_in(0..3000, 15000, "e");
    write_all(&tc, &kv).await;

    let plan = ReshardPlan {
        from: NodeRef::Id(from.id.clone()),
        to: NodeRef::Id(to.id.clone()),
        slots: vec![SlotRange { start: 0, end: 2999 }],
    };
    let opts = ReshardOptions { migrate_timeout: Duration::from_secs(2), ..Default::default() };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let on_event = move |e: ReshardEvent| {
        let _ = tx.send(e);
    };
    let killer = async {
        let mut moved = 0;
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            if matches!(e, ReshardEvent::SlotMoved { .. }) {
                moved += 1;
                if moved == 300 {
                    inject::signal(&docker, &victim, "SIGKILL").await.unwrap();
                    return moved;
                }
            }
        }
        moved
    };
    let (result, moved_at_kill) = tokio::join!(migrate::reshard(&addrs, &plan, &opts, &on_event), killer);
    assert_eq!(moved_at_kill, 300, "the kill came part-way");
    let err = result.unwrap_err();
    eprintln!("reshard stopped: {err}");
    let AdminError::Interrupted { moved, total, .. } = &err else { panic!("{err:?}") };
    assert!(*moved >= 300 && *moved < *total, "{moved} of {total}");

    let health = fix::check_slots(&addrs).await.unwrap();
    eprintln!("after the kill: {health}");
    assert!(!health.open.is_empty(), "the target has slots left importing");

    let report = match fix::fix(&addrs, &FixOptions::default()).await {
        Ok(r) => r,
        Err(e) => {
            // What each node thought, for the post-mortem.
            for r in futures_util::future::join_all(addrs.iter().map(|&a| NodeReport::fetch(a)))
                .await
                .into_iter()
                .flatten()
            {
                let me = r.view.myself().unwrap();
                eprintln!(
                    "{} {} epoch {} slots {} open {:?}",
                    r.addr,
                    r.state(),
                    me.config_epoch,
                    me.slot_count(),
                    me.open_slots
                );
            }
            panic!("fix: {e}");
        }
    };
    let fixed: u32 = report.closed.iter().map(SlotRange::len).sum::<u32>() + report.finished.len() as u32;
    eprintln!(
        "fix: {} slots closed, {} moves finished, {} slots assigned, {} keys moved, {:.2}s",
        report.closed.iter().map(SlotRange::len).sum::<u32>(),
        report.finished.len(),
        report.assigned.len(),
        report.keys_moved,
        report.elapsed.as_secs_f64()
    );
    let open_before: std::collections::BTreeSet<u16> =
        report.before.open.iter().map(|o| o.slot.get()).collect();
    assert_eq!(fixed as usize, open_before.len(), "each open slot was closed or finished");
    let after = fix::check_slots(&addrs).await.unwrap();
    assert!(after.is_clean(), "{after}");
    let live: Vec<SocketAddr> = addrs.iter().copied().filter(|a| *a != addr_of(&from)).collect();
    for r in reports(&live).await {
        assert_eq!(r.state(), "ok", "{}", r.addr);
        assert_eq!(r.view.covered_slots(), 16384, "{}", r.addr);
    }
    // The keys of the slots under way when the source died may be lost (a node that loses
    // a slot to a higher epoch drops its keys for it); every other key must be there.
    let read = readable(&tc, &kv).await;
    eprintln!("{read} of {} keys read back", kv.len());
    assert!(read * 100 >= kv.len() * 99, "{read} of {}", kv.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_killed_mid_move_leaves_keys_on_its_replica_that_fix_brings_back() {
    // Half of each of 30 slots' keys moved to the target, replicated there, then the target
    // dies: its replica takes over holding those keys with no importing state, and the source
    // still serves the slots, migrating them to a dead node. `fix` must finish the moves, not
    // close the slots and leave those keys unreachable.
    let spec = EmbeddedSpec { node_timeout: Duration::from_millis(1000), ..Default::default() };
    let tc = TestCluster::start("killdst", &spec).await;
    let docker = docker::connect().await.unwrap();
    let addrs = tc.addrs();
    let view = NodeReport::fetch(addrs[0]).await.unwrap().view;
    let (from, to) = (owner(&view, 0).clone(), owner(&view, 16383).clone());
    assert_ne!(from.id, to.id);
    // 30 hash tags on the source, 10 keys each.
    let tags: Vec<String> = (0..)
        .map(|i| format!("m{i}"))
        .filter(|t| owner(&view, Slot::of(t.as_bytes()).get()).id == from.id)
        .take(30)
        .collect();
    let kv: Vec<(String, String)> = tags
        .iter()
        .flat_map(|t| (0..10).map(move |i| (format!("{{{t}}}:{i}"), format!("v-{t}-{i}"))))
        .collect();
    write_all(&tc, &kv).await;
    let timeout = Duration::from_secs(5);
    let mut src = slotstorm::cluster::node::Node::connect(addr_of(&from), timeout).await.unwrap();
    let mut dst = slotstorm::cluster::node::Node::connect(addr_of(&to), timeout).await.unwrap();
    for (t, keys) in tags.iter().zip(kv.chunks(10)) {
        let slot = Slot::of(t.as_bytes()).get();
        let setslot = |state: &str, peer: &NodeEntry| {
            redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg(state).arg(&peer.id.0).clone()
        };
        dst.run::<()>(&setslot("IMPORTING", &from)).await.unwrap();
        src.run::<()>(&setslot("MIGRATING", &to)).await.unwrap();
        let mut migrate = redis::cmd("MIGRATE");
        migrate.arg(addr_of(&to).ip().to_string()).arg(6379).arg("").arg(0).arg(5000).arg("KEYS");
        for (k, _) in &keys[..5] {
            migrate.arg(k);
        }
        src.run::<redis::Value>(&migrate).await.unwrap();
    }
    // The moved keys must be on the target's replica before the kill (WAIT would not say:
    // it waits for the caller's own writes, and this connection wrote nothing).
    let replica = view.nodes.iter().find(|n| n.primary.as_ref() == Some(&to.id)).expect("a replica");
    let mut replica = slotstorm::cluster::node::Node::connect(addr_of(replica), timeout).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut held = 0;
        for t in &tags {
            let slot = Slot::of(t.as_bytes()).get();
            held += replica.run::<u64>(redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot)).await.unwrap();
        }
        if held == 150 {
            break;
        }
        assert!(Instant::now() < deadline, "the target's replica holds {held} of the 150 moved keys");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let victim = tc.cluster().nodes.iter().find(|n| n.addr == addr_of(&to)).unwrap().container.clone();
    inject::signal(&docker, &victim, "SIGKILL").await.unwrap();
    let live: Vec<SocketAddr> = addrs.iter().copied().filter(|a| *a != addr_of(&to)).collect();
    // The source is read directly all along (no redirections followed): it may answer a key
    // with its value or send the client elsewhere (ASK, MOVED), but answering "no such key"
    // for a key the other side holds, as an owner that was closed over an unfinished move
    // does, is what a repair must never show.
    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (reading, kv, addr) = (reading.clone(), kv.clone(), addr_of(&from));
        tokio::spawn(async move {
            let mut node =
                slotstorm::cluster::node::Node::connect(addr, Duration::from_secs(2)).await.unwrap();
            let (mut right, mut wrong) = (0, Vec::new());
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                for (k, v) in &kv {
                    match node.run::<Option<String>>(redis::cmd("GET").arg(k)).await {
                        Ok(Some(got)) if got == *v => right += 1,
                        Ok(got) => wrong.push(format!("{k}: {got:?}")),
                        Err(_) => {}
                    }
                }
            }
            (right, wrong)
        })
    };
    // `fix` waits for the replica's election itself.
    let report = fix::fix(&live, &FixOptions::default()).await.unwrap_or_else(|e| panic!("fix: {e}"));
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    let (right, wrong) = reader.await.unwrap();
    assert!(
        wrong.is_empty(),
        "{} wrong reads while fixing (and {right} right), e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    assert!(right > 0, "the reader read something");
    eprintln!("fix: finished {:?}, {} keys moved", report.finished, report.keys_moved);
    assert_eq!(report.keys_moved, 150, "the source's half of each slot went over: {report:?}");
    assert_eq!(report.finished.len(), 30, "{report:?}");
    let after = fix::check_slots(&live).await.unwrap();
    assert!(after.is_clean(), "{after}");
    assert_eq!(readable(&tc, &kv).await, kv.len(), "every key of the slot reads back");
}

/// An atomic migration of slots 0–999 (about 150 MB, so the job is still going a poll
/// after it starts) from the primary of slot 0 to that of slot 6000 on a Valkey cluster
/// with `node_timeout`; `hit` is done to the source (`true`) or the target at the job's first
/// state. Returns the migration's end, the state it was hit in, the cluster, the keys, and
/// the source and target as the cluster saw them before.
async fn atomic_move_hit(
    tag: &str,
    node_timeout: Duration,
    source: bool,
    hit: impl AsyncFnOnce(&bollard::Docker, &str),
) -> (Result<migrate::ReshardReport, AdminError>, TestCluster, Vec<(String, String)>, NodeEntry, NodeEntry) {
    let spec = EmbeddedSpec {
        engine: slotstorm::backend::engine::Engine::Valkey,
        node_timeout,
        ..Default::default()
    };
    let tc = TestCluster::start(tag, &spec).await;
    let docker = docker::connect().await.unwrap();
    let addrs = tc.addrs();
    let view = NodeReport::fetch(addrs[0]).await.unwrap().view;
    let (from, to) = (owner(&view, 0).clone(), owner(&view, 6000).clone());
    let victim = addr_of(if source { &from } else { &to });
    let container = tc.cluster().nodes.iter().find(|n| n.addr == victim).unwrap().container.clone();
    let big = "x".repeat(100_000);
    let kv: Vec<(String, String)> =
        keys_in(0..1000, 1500, tag).into_iter().map(|(k, _)| (k, big.clone())).collect();
    write_all(&tc, &kv).await;
    // A source's replica must hold the keys before the source is hit.
    wait_agreed(&addrs, SETTLE).await.unwrap();
    let plan = ReshardPlan {
        from: NodeRef::Id(from.id.clone()),
        to: NodeRef::Id(to.id.clone()),
        slots: vec![SlotRange { start: 0, end: 999 }],
    };
    let opts = ReshardOptions { atomic: true, ..Default::default() };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let on_event = move |e: ReshardEvent| {
        let _ = tx.send(e);
    };
    let reshard = migrate::reshard(&addrs, &plan, &opts, &on_event);
    let hitter = async {
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            if let ReshardEvent::Phase { state } = e {
                hit(&docker, &container).await;
                return Some(state);
            }
        }
        None
    };
    let (result, hit_in) = tokio::join!(reshard, hitter);
    assert_ne!(
        hit_in.expect("the job reported a state"),
        "success",
        "the job ended before the hit: make it bigger"
    );
    (result, tc, kv, from, to)
}

#[tokio::test(flavor = "multi_thread")]
async fn on_valkey_a_target_killed_during_an_atomic_migration_ends_it_and_the_keys_stay_on_the_source() {
    let kill = async |d: &bollard::Docker, c: &str| inject::signal(d, c, "SIGKILL").await.unwrap();
    let (result, tc, kv, from, _) =
        atomic_move_hit("atomic-kill", Duration::from_millis(5000), false, kill).await;
    let error = result.expect_err("the migration cannot end with its target dead").to_string();
    // Either the job failed by itself, or it stalled and the cancel ended it: it ended.
    assert!(error.starts_with("the atomic migration "), "{error}");
    assert!(error.contains("ended ") && !error.contains("had not ended"), "{error}");
    // Nothing was left open and the source still serves every slot it had.
    let source_view = NodeReport::fetch(addr_of(&from)).await.unwrap().view;
    let me = source_view.myself().unwrap();
    assert!(me.open_slots.is_empty(), "{:?}", me.open_slots);
    assert_eq!(owner(&source_view, 0).id, from.id);
    assert_eq!(owner(&source_view, 999).id, from.id);
    // Every key still reads back from it.
    let sample: Vec<(String, String)> = kv.iter().step_by(50).cloned().collect();
    assert_eq!(readable(&tc, &sample).await, sample.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn on_valkey_a_source_killed_during_an_atomic_migration_ends_it_and_its_replica_keeps_the_keys() {
    // A short node timeout, so the source's replica takes over within a few seconds.
    let kill = async |d: &bollard::Docker, c: &str| inject::signal(d, c, "SIGKILL").await.unwrap();
    let (result, tc, kv, from, to) =
        atomic_move_hit("atomic-killsrc", Duration::from_millis(1000), true, kill).await;
    // The source stops answering the poll (or its job fails): either way, an error.
    let error = result.expect_err("the migration cannot end with its source dead").to_string();
    // The source's replica takes over its slots, all of them, with every key; the target
    // serves none of them.
    let deadline = Instant::now() + SETTLE;
    let after = loop {
        let view = NodeReport::fetch(addr_of(&to)).await.unwrap().view;
        if owner(&view, 0).id != from.id || Instant::now() > deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let new_owner = owner(&after, 0).clone();
    assert_ne!(new_owner.id, to.id, "the target took no slot: {error}");
    assert_ne!(new_owner.id, from.id, "the source's replica was promoted");
    assert_eq!(owner(&after, 999).id, new_owner.id);
    let sample: Vec<(String, String)> = kv.iter().step_by(50).cloned().collect();
    assert_eq!(readable(&tc, &sample).await, sample.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn on_valkey_an_atomic_migration_whose_target_freezes_is_cancelled_after_the_stall() {
    // Frozen, the target keeps its connections but acknowledges nothing: the job makes no
    // progress until slotstorm cancels it.
    let freeze = async |d: &bollard::Docker, c: &str| inject::pause(d, c).await.unwrap();
    let (result, tc, _, from, to) =
        atomic_move_hit("atomic-freeze", Duration::from_millis(5000), false, freeze).await;
    let target = tc.cluster().nodes.iter().find(|n| n.addr == addr_of(&to)).unwrap().container.clone();
    inject::unpause(&docker::connect().await.unwrap(), &target).await.unwrap();
    let error = result.expect_err("a frozen target cannot take the slots").to_string();
    assert!(error.contains("made no progress") && error.contains("cancelled, and it ended"), "{error}");
    let source_view = NodeReport::fetch(addr_of(&from)).await.unwrap().view;
    assert_eq!(owner(&source_view, 0).id, from.id, "{error}");
    assert!(source_view.myself().unwrap().open_slots.is_empty());
}
