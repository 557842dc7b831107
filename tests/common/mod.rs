//! What every integration test shares: a real cluster in Docker, started through the public
//! API and removed in `Drop` (on success, failure or panic of the test), and a check that a
//! run left nothing labelled behind.

#![allow(dead_code)] // each test binary uses its own part of this helper

pub mod spec_base;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListNetworksOptionsBuilder};
use slotstorm::backend::docker::{self, DockerCluster, RUN_LABEL, RunId};
use slotstorm::embedded::{self, EmbeddedSpec, Up};
use slotstorm::report::model::{ClusterInfo, RunFile};

/// A unique run id for this test process: `t<pid>-<tag>-<n>`.
pub fn unique_run(tag: &str) -> RunId {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    RunId::new(&format!("t{}-{tag}-{n}", std::process::id())).expect("a valid run id")
}

/// A cluster that exists for one test.
pub struct TestCluster {
    /// The run it belongs to.
    pub run: RunId,
    /// What `up` returned.
    pub up: Up,
}

impl TestCluster {
    /// Bring up a cluster shaped by `spec`; panics (after `up` cleaned up) if it fails.
    pub async fn start(tag: &str, spec: &EmbeddedSpec) -> TestCluster {
        let docker = docker::connect().await.expect("the Docker engine is reachable");
        let run = unique_run(tag);
        let up = embedded::up(&docker, &run, spec).await.unwrap_or_else(|e| panic!("cluster {run} up: {e}"));
        eprintln!(
            "cluster {run} up in {:.2}s (containers {:.2}s)",
            up.elapsed.as_secs_f64(),
            up.containers_elapsed.as_secs_f64()
        );
        TestCluster { run, up }
    }

    /// The containers.
    pub fn cluster(&self) -> &DockerCluster {
        &self.up.cluster
    }

    /// The nodes' client addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.up.cluster.addrs()
    }

    /// A `redis` crate cluster client seeded with every node.
    pub fn client(&self) -> redis::cluster::ClusterClient {
        let urls: Vec<String> = self.addrs().iter().map(|a| format!("redis://{a}/")).collect();
        redis::cluster::ClusterClient::new(urls).expect("a cluster client")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Err(e) = down_blocking(&self.run) {
            eprintln!("tearing down {}: {e}", self.run);
        }
    }
}

/// Run `f` to completion on a thread of its own with its own runtime: from `Drop` (which may
/// run inside a runtime, or while unwinding from a panic in one) and from plain `#[test]`s.
pub fn block_on<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(f)
    })
    .join()
    .unwrap_or_else(|_| panic!("the blocking task panicked"))
}

/// Remove the embedded cluster of `run`, whatever state it is in.
pub fn down_blocking(run: &RunId) -> Result<(), String> {
    let run = run.clone();
    block_on(async move {
        let docker = docker::connect().await.map_err(|e| e.to_string())?;
        embedded::down(&docker, &run).await.map(|_| ()).map_err(|e| e.to_string())
    })
}

/// Assert that the embedded run a `run.json` describes left no container or network behind.
pub fn assert_nothing_left(run_json: &RunFile) {
    let ClusterInfo::Embedded { run, .. } = &run_json.cluster else { panic!("not an embedded cluster") };
    let run = RunId::new(run).unwrap();
    let left = block_on({
        let run = run.clone();
        async move { leftovers(&run).await }
    });
    assert_eq!(left, Vec::<String>::new(), "run {run} left these behind");
}

/// The `run.json` of the results folder `dir`: first checked against the committed schema
/// (`docs/run.schema.json`) by Python's `jsonschema`, a validator slotstorm did not write,
/// then read through slotstorm's own types.
pub fn read_run(dir: &std::path::Path) -> RunFile {
    let path = dir.join("run.json");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(venv_python())
        .arg(root.join("tests/validate_run_json.py"))
        .arg(root.join("docs/run.schema.json"))
        .arg(&path)
        .output()
        .expect("the schema validator runs (scripts/setup installs it in .venv)");
    assert!(
        out.status.success(),
        "{} does not match docs/run.schema.json:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    RunFile::read(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The run id of an embedded run's `run.json`.
pub fn run_id(run: &RunFile) -> RunId {
    let ClusterInfo::Embedded { run, .. } = &run.cluster else { panic!("not an embedded cluster") };
    RunId::new(run).unwrap()
}

/// A JSON file, parsed.
pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `slotstorm run <workload> --results <results>` in the background, as a user starts it.
pub struct Running {
    child: std::process::Child,
    /// Where its results folder appears.
    pub results: std::path::PathBuf,
}

/// How a [`Running`] ended.
pub struct Ended {
    /// Its exit code.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Its one results folder.
    pub folder: std::path::PathBuf,
}

impl Running {
    /// Start the run.
    pub fn start(workload: &std::path::Path, results: &std::path::Path) -> Running {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_slotstorm"))
            .arg("run")
            .arg(workload)
            .arg("--results")
            .arg(results)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("slotstorm starts");
        Running { child, results: results.to_path_buf() }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until the load runs (its results folder exists), then `after` more.
    pub fn wait_load(&self, after: std::time::Duration) {
        let start = std::time::Instant::now();
        let results = &self.results;
        while !(results.exists() && std::fs::read_dir(results).unwrap().next().is_some()) {
            assert!(start.elapsed() < std::time::Duration::from_secs(60), "the run never started");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::thread::sleep(after);
    }

    /// Send SIGINT, as Ctrl-C does; false when the process is gone.
    pub fn interrupt(&self) -> bool {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success()
    }

    /// SIGKILL it, as the kernel's OOM killer or a lost machine would end it: no handler
    /// runs, nothing is healed or written after.
    pub fn kill(&mut self) {
        self.child.kill().expect("slotstorm is still running");
    }

    /// Wait for it to end.
    pub fn wait(self) -> Ended {
        let out = self.child.wait_with_output().unwrap();
        let folder = std::fs::read_dir(&self.results)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path())
            .unwrap_or_default();
        Ended {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            folder,
        }
    }
}

/// Names of containers and networks still labelled with `run`.
pub async fn leftovers(run: &RunId) -> Vec<String> {
    let docker = Docker::connect_with_local_defaults().unwrap().negotiate_version().await.unwrap();
    let label = format!("{RUN_LABEL}={run}");
    let filters = HashMap::from([("label", vec![label.as_str()])]);
    let containers = docker
        .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
        .await
        .unwrap();
    let networks = docker
        .list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build()))
        .await
        .unwrap();
    containers
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .chain(networks.into_iter().filter_map(|n| n.name))
        .collect()
}

/// A scratch folder for one test, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A new empty folder named after `tag`.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("slotstorm-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("scripts")).unwrap();
        // Workloads here may name the shipped scripts.
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/workloads/scripts")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join("scripts").join(path.file_name().unwrap())).unwrap();
        }
        TempDir(dir)
    }

    /// Write `text` to `name` in the folder and return its path.
    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tests' Python: the repo's `.venv`, where scripts/setup installs the pinned packages of
/// `tests/requirements.txt` (HdrHistogram's port, the seed's redis-py). Panics, saying to run
/// scripts/setup, when it is missing.
pub fn venv_python() -> std::path::PathBuf {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup, which makes the venv and installs tests/requirements.txt",
        python.display()
    );
    python
}

/// A `[cluster]` table pointing a workload at `tc` as an external cluster.
pub fn external_cluster_toml(tc: &TestCluster) -> String {
    let seeds: Vec<String> = tc.addrs().iter().map(|a| format!("\"{a}\"")).collect();
    format!("[cluster]\nkind = \"external\"\nseeds = [{}]\n", seeds.join(", "))
}

/// A workload file for a test, built by table rather than written out as TOML each time:
/// `WorkloadToml::new("x").cluster("masters = 1").load("duration = \"7s\"").op("set", r#"["SET", "k:$id", "$value"]"#)`.
#[derive(Debug, Clone, Default)]
pub struct WorkloadToml {
    name: String,
    chaos: Option<String>,
    tables: Vec<(&'static str, Vec<String>)>,
    ops: Vec<(String, String)>,
}

impl WorkloadToml {
    /// A workload named `name`, with no tables yet.
    pub fn new(name: &str) -> WorkloadToml {
        WorkloadToml { name: name.into(), ..WorkloadToml::default() }
    }

    /// Name a chaos file (relative to the workload).
    pub fn chaos(mut self, path: &str) -> Self {
        self.chaos = Some(path.into());
        self
    }

    fn line(mut self, table: &'static str, line: &str) -> Self {
        match self.tables.iter_mut().find(|(t, _)| *t == table) {
            Some((_, lines)) => lines.push(line.into()),
            None => self.tables.push((table, vec![line.into()])),
        }
        self
    }

    /// A line of `[cluster]`.
    pub fn cluster(self, line: &str) -> Self {
        self.line("cluster", line)
    }

    /// A line of `[load]`.
    pub fn load(self, line: &str) -> Self {
        self.line("load", line)
    }

    /// A line of `[client]`.
    pub fn client(self, line: &str) -> Self {
        self.line("client", line)
    }

    /// An `[[op]]` named `name` whose `command` is `command` (TOML array text).
    pub fn op(mut self, name: &str, command: &str) -> Self {
        self.ops.push((name.into(), command.into()));
        self
    }

    /// The file's text.
    pub fn text(&self) -> String {
        let mut out = format!("name = \"{}\"\n", self.name);
        if let Some(chaos) = &self.chaos {
            out += &format!("chaos = \"{chaos}\"\n");
        }
        for (table, lines) in &self.tables {
            out += &format!("[{table}]\n{}\n", lines.join("\n"));
        }
        for (name, command) in &self.ops {
            out += &format!("[[op]]\nname = \"{name}\"\ncommand = {command}\n");
        }
        out
    }
}

/// The `SET k:$id $value` command most tests drive.
pub const SET: &str = r#"["SET", "k:$id", "$value"]"#;
