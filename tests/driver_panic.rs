//! A driver worker that panics mid-op never disappears: the op it was on is counted unknown,
//! the panic is a run error (exit 3 from the CLI), the run stops there and still writes what
//! it measured, and nothing is left behind. Its own test binary: the hook that makes a worker
//! panic is process-wide.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{TempDir, leftovers};
use slotstorm::history::{ErrorClass, Outcome};
use slotstorm::run::RunOptions;
use slotstorm::spec;

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_panic_counts_its_op_unknown_and_stops_the_run_as_an_error() {
    let dir = TempDir::new("driver-panic");
    let path = dir.write(
        "w.toml",
        &common::WorkloadToml::new("driver-panic")
            .cluster("masters = 1\nreplicas = 0")
            .load("duration = \"30s\"\nmode = \"open\"\nrate = 200")
            .op("set", common::SET)
            .text(),
    );
    let w = spec::load(&path).unwrap_or_else(|e| panic!("{e}"));
    // Every op kept: the test looks at the ones that succeeded too.
    let opts = RunOptions { results_root: dir.0.join("results"), all_ops: true, ..RunOptions::default() };
    // Armed once the load runs (the cluster takes a few seconds to start): the next op after
    // that panics its worker.
    let armed = tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        slotstorm::driver::PANIC_IN_OP.store(true, Ordering::Relaxed);
    });
    let report = slotstorm::run::run(&w, &opts).await.unwrap_or_else(|e| panic!("{e}"));
    armed.await.unwrap();
    assert!(!slotstorm::driver::PANIC_IN_OP.load(Ordering::Relaxed), "the hook fired");
    assert_eq!(report.run_errors.len(), 1, "{:?}", report.run_errors);
    let line = &report.run_errors[0];
    assert!(line.starts_with("driver worker "), "{line}");
    assert!(line.contains("panicked (test hook: the driver panics mid-op)"), "{line}");
    assert!(line.contains("counted unknown"), "{line}");
    let ops = &report.history.ops;
    let unknown: Vec<_> = ops.iter().filter(|o| matches!(o.outcome, Outcome::Unknown(_))).collect();
    assert_eq!(unknown.len(), 1, "only the panicked op is unknown on a healthy cluster");
    assert_eq!(unknown[0].outcome, Outcome::Unknown(ErrorClass::Other));
    assert!(ops.iter().filter(|o| o.outcome == Outcome::Ok).count() > 100, "{} ops", ops.len());
    // The run stopped at the panic, not at its 30 s.
    let panicked_s = unknown[0].end_us() as f64 / 1e6;
    let elapsed = report.history.elapsed.as_secs_f64();
    assert!(
        elapsed < panicked_s + 3.0 && elapsed < 25.0,
        "stopped at {elapsed:.1} s, panic at {panicked_s:.1} s"
    );
    assert!(
        ops.iter().all(|o| o.start_us <= unknown[0].end_us() + 500_000),
        "no op started long after the panic"
    );
    // Written down where a reader of the results sees it.
    let events = std::fs::read_to_string(report.dir.join("events.jsonl")).unwrap();
    assert!(events.lines().any(|l| l.contains("\"event\":\"driver_error\"")), "{events}");
    let summary = std::fs::read_to_string(report.dir.join("summary.md")).unwrap();
    assert!(summary.contains("## Run errors") && summary.contains("driver worker "), "{summary}");
    let run_id = common::run_id(&common::read_run(&report.dir));
    assert_eq!(leftovers(&run_id).await, Vec::<String>::new());
}
