//! `slotstorm compare` on real clusters: a node-timeout matrix with repeats, each run on a
//! fresh cluster, and the comparative report (also rebuilt by `slotstorm report`).

mod common;

use std::process::Command;

use common::{TempDir, assert_nothing_left, read_json};
use slotstorm::report::model::ClusterInfo;

fn slotstorm(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slotstorm")).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A short kill-the-primary workload: the fault at 3 s, 8 s long, in a 13 s run, with a
/// set-full op so lost writes are checked too.
fn kill_workload(dir: &TempDir) -> std::path::PathBuf {
    dir.write(
        "chaos.toml",
        "[[fault]]\nat = \"3s\"\naction = \"kill\"\ntarget = { primary-of = \"{user:42}\" }\nduration = \"8s\"\n",
    );
    dir.write(
        "cmp.toml",
        r#"name = "cmp"
chaos = "chaos.toml"
[cluster]
masters = 3
replicas = 1
[load]
duration = "12s"
warmup = "1s"
mode = "open"
rate = 300
concurrency = 16
[client]
timeout = "500ms"
[keys]
count = 1000
[[op]]
name = "register"
command = ["SADD", "{user:$id}:ids", "$uid"]
[[op]]
name = "get"
command = ["HGETALL", "{user:$id}:profile"]
"#,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn a_larger_node_timeout_fails_over_later_and_the_report_shows_it() {
    let dir = TempDir::new("compare");
    let workload = kill_workload(&dir);
    let results = dir.0.join("results");
    let (code, stdout, stderr) = slotstorm(&[
        "compare",
        workload.to_str().unwrap(),
        "--node-timeout",
        "1000,3000",
        "--repeat",
        "2",
        "--results",
        results.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    // A line per run naming cell, repeat and the time left; progress lines carry the cell.
    for n in 1..=4 {
        assert!(stderr.contains(&format!("compare: run {n}/4 · cell ")), "run {n}: {stderr}");
    }
    assert!(stderr.contains("repeat 2/2") && stderr.contains(" left"), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("[4/4 3000ms r2 · ~") && l.contains(" ops/s ")), "{stderr}");
    assert!(stdout.contains("| cluster-node-timeout=1000ms | 2 |"), "{stdout}");

    let folders: Vec<_> = std::fs::read_dir(&results).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    let cmp = &folders[0];
    assert!(cmp.file_name().unwrap().to_string_lossy().starts_with("compare-"));
    let manifest = read_json(&cmp.join("compare.json"));
    assert_eq!(manifest["finished"], true);
    let cells = manifest["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for (cell, timeout_ms) in cells.iter().zip([1000, 3000]) {
        let runs = cell["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{cell}");
        for run in runs {
            assert_eq!(run["status"], "ok", "{run}");
            let folder = cmp.join(run["dir"].as_str().unwrap());
            let run_json = common::read_run(&folder);
            // Each run had a fresh cluster of its own, with the cell's setting, and removed it.
            let ClusterInfo::Embedded { node_timeout_ms, .. } = run_json.cluster else { panic!("embedded") };
            assert_eq!(node_timeout_ms, timeout_ms);
            assert_nothing_left(&run_json);
            assert!(folder.join("report.html").is_file());
        }
    }

    let figures = read_json(&cmp.join("figures.json"));
    let phase = |cell: usize, name: &str| -> Vec<f64> {
        figures[cell]["runs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r[1]["faults"].as_array().unwrap().iter())
            .map(|f| f[name].as_f64().unwrap_or_else(|| panic!("{name} not measured: {f}")))
            .collect()
    };
    for name in ["detection_s", "election_s", "recovery_s"] {
        let (fast, slow) = (phase(0, name), phase(1, name));
        assert_eq!((fast.len(), slow.len()), (2, 2), "{name}");
        // Detection takes at least the node timeout; 3 s against 1 s leaves room for noise.
        assert!(
            median(slow.clone()) > median(fast.clone()) + 1.0,
            "{name}: 1000ms {fast:?} vs 3000ms {slow:?}"
        );
    }
    assert!(phase(0, "detection_s").iter().all(|d| (0.9..3.5).contains(d)), "{:?}", phase(0, "detection_s"));
    assert!(phase(1, "detection_s").iter().all(|d| (2.9..6.0).contains(d)), "{:?}", phase(1, "detection_s"));

    let html = std::fs::read_to_string(cmp.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2, "phases and impact inline");
    assert!(html.contains("cluster-node-timeout=3000ms") && html.contains("/report.html\">runs/"));
    for plot in ["phases.svg", "phases.png", "impact.svg", "impact.png", "summary.md"] {
        assert!(cmp.join(plot).is_file(), "{plot}");
    }

    // `slotstorm report` rebuilds the comparison from the folder alone.
    std::fs::remove_file(cmp.join("report.html")).unwrap();
    std::fs::remove_file(cmp.join("phases.png")).unwrap();
    let (code, stdout, stderr) = slotstorm(&["report", cmp.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(cmp.join("report.html").is_file() && cmp.join("phases.png").is_file(), "{stdout}");
    assert_eq!(read_json(&cmp.join("figures.json")), figures, "the same figures from the same runs");
}

#[test]
fn what_cannot_be_compared_exits_2_before_anything_starts() {
    let dir = TempDir::new("compare-bad");
    let results = dir.0.join("results");
    let smoke = concat!(env!("CARGO_MANIFEST_DIR"), "/workloads/smoke.toml");
    let kill = kill_workload(&dir);
    let cases: [(&[&str], &str); 4] = [
        (&["compare", smoke, "--node-timeout", "1000,2000"], "compare needs faults to compare"),
        (
            &["compare", kill.to_str().unwrap(), "--node-timeout", "1000,0"],
            "--node-timeout: \"0\" must be more than zero",
        ),
        (&["compare", kill.to_str().unwrap(), "--retries", "1,1"], "--retries: 1 is listed twice"),
        (
            &["compare", kill.to_str().unwrap(), "--config", "appendonly=sometimes"],
            "appendonly takes yes or no, not \"sometimes\"",
        ),
    ];
    for (args, expected) in cases {
        let mut args = args.to_vec();
        args.extend(["--results", results.to_str().unwrap()]);
        let (code, stdout, stderr) = slotstorm(&args);
        assert_eq!(code, Some(2), "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(!results.exists(), "{args:?} created {}", results.display());
    }
}
