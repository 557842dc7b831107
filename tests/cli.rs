//! The `slotstorm` binary as a user meets it: exit codes, one-line errors, Ctrl-C, and the
//! cluster commands end to end.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{leftovers, unique_run};

fn slotstorm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slotstorm")).args(args).output().expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn an_unreachable_engine_is_one_line_naming_the_socket_and_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_slotstorm"))
        .args(["cluster", "up", "--name", "never"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("unix:///nonexistent/docker.sock") && errors[0].contains("DOCKER_HOST"),
        "{stderr}"
    );
}

#[test]
fn a_bad_name_or_flag_is_refused_with_exit_2() {
    let out = slotstorm(&["cluster", "up", "--name", "Bad Name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("must be 1-40 characters"), "{}", text(&out.stderr));
    let out = slotstorm(&["cluster", "up", "--masters", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = slotstorm(&["cluster", "status", "--name", "no-such-run-here"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cluster up --name no-such-run-here"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn up_status_by_name_and_by_seed_then_down_leaves_nothing() {
    let run = unique_run("cli");
    let out = slotstorm(&["cluster", "up", "--name", run.as_str(), "--node-timeout", "2s"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    print!("{stdout}");
    assert!(stdout.contains(&format!("cluster {run} up in")), "{stdout}");
    assert!(stdout.contains(
        "16384 of 16384 slots covered; 6 nodes known, 6 answered, 6 report cluster_state:ok; views agree"
    ));
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("redis-")).collect();
    assert_eq!(rows.len(), 6, "{stdout}");
    assert_eq!(rows.iter().filter(|r| r.contains(" primary ")).count(), 3);
    assert_eq!(rows.iter().filter(|r| r.contains("link up")).count(), 3);

    let out = slotstorm(&["cluster", "status", "--name", run.as_str()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout).lines().filter(|l| l.starts_with("redis-")).count(), 6);

    // The same cluster as an external target: addresses stand in for names.
    let seed = rows[0].split_whitespace().nth(1).unwrap().to_string();
    let out = slotstorm(&["cluster", "status", "--seed", &seed]);
    let external = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{external}");
    assert!(external.contains("views agree"), "{external}");
    assert_eq!(external.lines().filter(|l| l.contains(":6379 ")).count(), 6, "{external}");

    let out = slotstorm(&["cluster", "down", "--name", run.as_str()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    print!("{stdout}");
    assert!(stdout.contains("removed 6 containers and 1 networks"), "{stdout}");
    assert_eq!(leftovers(&run).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_cluster_up_leaves_nothing_behind() {
    // Interrupt at several points: while containers are created, and during bootstrap.
    for delay_ms in [300, 1200, 2000] {
        let run = unique_run("sigint");
        let child = Command::new(env!("CARGO_BIN_EXE_slotstorm"))
            .args(["cluster", "up", "--name", run.as_str()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let start = Instant::now();
        let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        eprintln!("interrupted after {delay_ms} ms, exited in {:?}: {stderr}", start.elapsed());
        // Either the signal arrived mid-way (130, cleaned up) or up had already finished (0);
        // in both cases nothing may be left once the run is taken down.
        match out.status.code() {
            Some(130) => assert!(stderr.contains("nothing left behind"), "{stderr}"),
            Some(0) => {
                slotstorm(&["cluster", "down", "--name", run.as_str()]);
            }
            other => panic!("unexpected exit {other:?}: {stderr}"),
        }
        assert_eq!(leftovers(&run).await, Vec::<String>::new(), "after interrupting at {delay_ms} ms");
    }
}

#[test]
fn a_client_library_that_is_not_installed_is_exit_2_before_any_cluster_starts() {
    let dir = common::TempDir::new("cli-no-library");
    let workload = dir.write(
        "lib.toml",
        "name = \"no-library\"\n[load]\nduration = \"2s\"\n[client]\nlibrary = \"redis-py\"\n[[op]]\nname = \"get\"\ncommand = [\"GET\", \"k:$id\"]\n",
    );
    let results = dir.0.join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_slotstorm"))
        .args(["run", workload.to_str().unwrap(), "--results", results.to_str().unwrap()])
        .env("SLOTSTORM_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{stderr}");
    assert!(stderr.contains("client.library = \"redis-py\" needs Python with redis-py"), "{stderr}");
    assert!(stderr.contains("/nonexistent/python3"), "names what it tried: {stderr}");
    assert!(!stderr.contains("starting cluster"), "nothing started: {stderr}");
    assert!(!results.exists(), "nothing written for a run that never started");
    // `validate` says who will send the ops, without needing the library.
    let out = slotstorm(&["validate", workload.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("sent through redis-py from 16 threads (shared client)"), "{out:?}");
}

#[test]
fn an_unreachable_external_cluster_or_a_folder_without_data_is_exit_2_and_one_line() {
    let dir = common::TempDir::new("cli-unreachable");
    let workload = dir.write(
        "ext.toml",
        "name = \"ext\"\n[cluster]\nkind = \"external\"\nseeds = [\"127.0.0.1:1\"]\n[load]\nduration = \"2s\"\n[[op]]\nname = \"get\"\ncommand = [\"GET\", \"k:$id\"]\n",
    );
    let results = dir.0.join("results");
    let out = slotstorm(&["run", workload.to_str().unwrap(), "--results", results.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{stderr}");
    assert!(stderr.contains("cannot be reached") && stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(!results.exists(), "nothing written for a run that never started");

    // A results folder of an older format (run.json before its `format` field) cannot be
    // rebuilt by this slotstorm: one line naming the format, exit 2.
    let folder = dir.0.join("half");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("run.json"), r#"{"slotstorm_version": "0.1.0"}"#).unwrap();
    let out = slotstorm(&["report", folder.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("run.json format 1 (slotstorm 0.1.0)"), "{stderr}");
}
