//! The embedded cluster end to end on the real engine: topology from every node, traffic
//! on every shard through a cluster client, hash slots against a live node, teardown.

mod common;

use std::time::Duration;

use common::{TestCluster, leftovers};
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;
use slotstorm::backend::docker;
use slotstorm::cluster::slot::Slot;
use slotstorm::cluster::{Layout, NodeReport};
use slotstorm::embedded::{self, EmbeddedSpec};

#[tokio::test(flavor = "multi_thread")]
async fn a_3x1_cluster_agrees_from_every_node_serves_every_shard_and_leaves_nothing() {
    let tc = TestCluster::start("topology", &EmbeddedSpec::default()).await;
    assert_eq!(tc.cluster().nodes.len(), 6);

    // Every node, asked itself: cluster_state ok, all slots, the same shape, 3 primaries
    // with one synced replica each.
    let mut shapes = Vec::new();
    for addr in tc.addrs() {
        let r = NodeReport::fetch(addr).await.unwrap();
        assert_eq!(r.state(), "ok", "{addr}");
        assert_eq!(r.view.covered_slots(), 16384, "{addr}");
        assert_eq!(r.view.nodes.len(), 6, "{addr}");
        if r.replication["role"] == "slave" {
            assert_eq!(r.replication["master_link_status"], "up", "{addr}");
        }
        shapes.push(r.view.shape());
    }
    assert!(shapes.windows(2).all(|w| w[0] == w[1]), "every node agrees");
    let shape = &shapes[0];
    assert_eq!(shape.primaries.len(), 3);
    assert_eq!(shape.replicas.len(), 3);
    for primary in shape.primaries.keys() {
        assert_eq!(shape.replicas.values().filter(|p| *p == primary).count(), 1, "one replica of {primary}");
    }
    // The node-timeout lowered for bootstrap is back to the asked-for value.
    let node = redis::Client::open(format!("redis://{}/", tc.addrs()[0])).unwrap();
    let timeout: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("cluster-node-timeout")
        .query_async(&mut node.get_multiplexed_async_connection().await.unwrap())
        .await
        .unwrap();
    assert_eq!(timeout[1], "5000");

    // Keys on every shard, written and read back through an ordinary cluster client.
    let view = NodeReport::fetch(tc.addrs()[0]).await.unwrap().view;
    let mut client = tc.client().get_async_connection().await.unwrap();
    let mut owners_hit = std::collections::BTreeSet::new();
    for i in 0..300 {
        let key = format!("{{user:{i}}}:profile");
        let _: () = client.set(&key, format!("v{i}")).await.unwrap();
        let got: String = client.get(&key).await.unwrap();
        assert_eq!(got, format!("v{i}"));
        owners_hit.insert(view.owner_of(Slot::of(key.as_bytes()).get()).unwrap().id.clone());
    }
    assert_eq!(owners_hit.len(), 3, "the keys reached every primary");

    let run = tc.run.clone();
    drop(tc);
    assert_eq!(leftovers(&run).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn slots_agree_with_cluster_keyslot_on_a_live_node() {
    let spec = EmbeddedSpec { layout: Layout { masters: 1, replicas: 0 }, ..Default::default() };
    let tc = TestCluster::start("keyslot", &spec).await;
    let client = redis::Client::open(format!("redis://{}/", tc.addrs()[0])).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let alphabet = b"ab{}:xyz01";
    let mut keys: Vec<Vec<u8>> =
        ["{}", "{", "}{", "{a}{b}", "foo{}{bar}", "123456789", "{user:123}:profile", ""]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
    for _ in 0..3000 {
        let len = rng.random_range(0..12);
        keys.push((0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect());
    }
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("CLUSTER").arg("KEYSLOT").arg(k);
    }
    let answers: Vec<u16> = pipe.query_async(&mut conn).await.unwrap();
    for (k, answer) in keys.iter().zip(answers) {
        assert_eq!(Slot::of(k).get(), answer, "key {:?}", String::from_utf8_lossy(k));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_name_is_refused_pointing_at_clean_and_the_owner_is_untouched() {
    let spec = EmbeddedSpec { layout: Layout { masters: 1, replicas: 0 }, ..Default::default() };
    let tc = TestCluster::start("taken", &spec).await;
    let docker = docker::connect().await.unwrap();
    let err = embedded::up(&docker, &tc.run, &spec).await.unwrap_err().to_string();
    assert!(err.contains("already exist") && err.contains("slotstorm clean"), "{err}");
    // The cluster that holds the names still runs.
    let found = docker::find_cluster(&docker, &tc.run).await.unwrap().unwrap();
    assert_eq!(found.nodes.len(), 1);
    let r = NodeReport::fetch(found.nodes[0].addr).await.unwrap();
    assert_eq!(r.state(), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_bootstrap_removes_everything_it_started() {
    // A directive Redis refuses makes every server exit at start: bootstrap cannot reach
    // them and `up` must clean up what it created.
    let spec = EmbeddedSpec { extra: vec![("no-such-directive".into(), "1".into())], ..Default::default() };
    let docker = docker::connect().await.unwrap();
    let run = common::unique_run("failed");
    let start = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(60), embedded::up(&docker, &run, &spec))
        .await
        .expect("up gives up in time")
        .unwrap_err();
    eprintln!("failed as expected after {:?}: {err}", start.elapsed());
    let msg = err.to_string();
    assert!(msg.contains("exited at start") && msg.contains("no-such-directive"), "{msg}");
    assert_eq!(leftovers(&run).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_image_carries_working_iptables_and_tc() {
    use slotstorm::nemesis::inject;
    let spec = EmbeddedSpec { layout: Layout { masters: 1, replicas: 0 }, ..Default::default() };
    let tc = TestCluster::start("netfault", &spec).await;
    let docker = docker::connect().await.unwrap();
    let c = tc.cluster().nodes[0].container.clone();
    // Matches and targets iptables loads at run time (libxt_standard for DROP, REJECT,
    // statistic), and tc's token bucket.
    for argv in [
        &["iptables", "-w", "-A", "INPUT", "-s", "10.255.255.1", "-j", "DROP"][..],
        &[
            "iptables",
            "-w",
            "-A",
            "INPUT",
            "-s",
            "10.255.255.2",
            "-p",
            "tcp",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
        &[
            "iptables",
            "-w",
            "-A",
            "INPUT",
            "-s",
            "10.255.255.3",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.5",
            "-j",
            "DROP",
        ],
        &[
            "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "1mbit", "burst", "32kbit",
            "latency", "400ms",
        ],
    ] {
        inject::exec(&docker, &c, argv).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let rules = inject::exec(&docker, &c, &["iptables", "-w", "-S", "INPUT"]).await.unwrap();
    assert_eq!(rules.lines().filter(|l| l.starts_with("-A INPUT")).count(), 3, "{rules}");
    inject::heal_node(&docker, &c).await.unwrap();
    let rules = inject::exec(&docker, &c, &["iptables", "-w", "-S", "INPUT"]).await.unwrap();
    assert_eq!(rules.lines().filter(|l| l.starts_with("-A INPUT")).count(), 0, "healed: {rules}");
    let qdisc = inject::exec(&docker, &c, &["tc", "qdisc", "show", "dev", "eth0"]).await.unwrap();
    assert!(!qdisc.contains("tbf"), "healed: {qdisc}");
    // netem is missing on this kernel; where it is present `delay` works instead.
    eprintln!("netem available: {}", inject::netem_available());
}
