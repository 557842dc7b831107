//! A nemesis that panics mid-fault never leaves a node broken nor passes the run: the
//! panic is recorded as a run error (exit 3 from the CLI), every node is healed at once,
//! and nothing is left behind; a topology operation that panics is a run error too. Its own
//! test binary: the hooks that make the nemesis panic are process-wide.

mod common;

use std::sync::atomic::Ordering;

use common::{TempDir, leftovers};
use slotstorm::history::EventKind;
use slotstorm::run::RunOptions;
use slotstorm::spec;

#[tokio::test(flavor = "multi_thread")]
async fn a_nemesis_panic_mid_fault_heals_the_node_at_once_and_fails_the_run() {
    let dir = TempDir::new("nemesis-panic");
    // A SIGSTOP for 60 s in a 12 s run: only the supervisor's heal can resume the node.
    dir.write(
        "chaos.toml",
        "[[fault]]\nat = \"3s\"\naction = \"sigstop\"\ntarget = \"redis-1\"\nduration = \"60s\"\n\
         [[operation]]\nat = \"1s\"\naction = \"failover\"\ntarget = \"redis-5\"\n",
    );
    let path = dir.write(
        "w.toml",
        &common::WorkloadToml::new("nemesis-panic")
            .chaos("chaos.toml")
            .cluster("node_timeout = \"5s\"")
            .load("duration = \"12s\"\nmode = \"open\"\nrate = 200")
            .client("timeout = \"300ms\"")
            .op("set", common::SET)
            .text(),
    );
    let w = spec::load(&path).unwrap_or_else(|e| panic!("{e}"));
    slotstorm::nemesis::PANIC_AFTER_INJECT.store(true, Ordering::Relaxed);
    slotstorm::nemesis::PANIC_IN_OPERATION.store(true, Ordering::Relaxed);
    let opts = RunOptions { results_root: dir.0.join("results"), ..RunOptions::default() };
    let report = slotstorm::run::run(&w, &opts).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.run_errors.len(), 2, "{:?}", report.run_errors);
    let (operation, fault) = (&report.run_errors[0], &report.run_errors[1]);
    assert!(operation.starts_with("operation[0] at "), "{operation}");
    assert!(operation.contains("panicked (test hook: an operation panics)"), "{operation}");
    assert!(fault.starts_with("fault[0] at "), "{fault}");
    assert!(fault.contains("the nemesis panicked (test hook"), "{fault}");
    // The operation's own report says it failed, and why.
    assert!(
        report.operations.iter().any(|o| o.error.as_deref().is_some_and(|e| e.contains("panicked"))),
        "{:?}",
        report.operations
    );
    let events = &report.history.events;
    let at = |want: fn(&EventKind) -> bool| events.iter().find(|e| want(&e.kind)).map(|e| e.at_us);
    let injected = at(|k| matches!(k, EventKind::FaultInjected { .. })).expect("the fault was injected");
    let panicked = at(|k| matches!(k, EventKind::FaultError { .. })).expect("the panic was recorded");
    assert!(
        panicked >= injected && panicked < injected + 2_000_000,
        "recorded at once: {injected} {panicked}"
    );
    // The stopped node's own clients see it again: ops on its slots succeed after the heal,
    // long before the fault's 60 s were up.
    let ok_after = report
        .history
        .ops
        .iter()
        .filter(|o| o.start_us > panicked + 2_000_000 && o.outcome == slotstorm::history::Outcome::Ok)
        .count();
    let all_after = report.history.ops.iter().filter(|o| o.start_us > panicked + 2_000_000).count();
    assert!(all_after > 500 && ok_after == all_after, "{ok_after} of {all_after} ops ok after the heal");
    let run = common::read_run(&report.dir);
    // What the nodes themselves say they run (INFO server), not this machine's binary.
    let version = &run.redis_version;
    assert!(version.chars().next().is_some_and(|c| c.is_ascii_digit()), "redis_version {version}");
    let run_id = common::run_id(&run);
    assert_eq!(leftovers(&run_id).await, Vec::<String>::new());
}
