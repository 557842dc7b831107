//! What every integration test shares: a real cluster in Docker, started through the public
//! API and removed in `Drop` (on success, failure or panic of the test), and a check that a
//! run left nothing labelled behind.

#![allow(dead_code)] // each test binary uses its own part of this helper

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListNetworksOptionsBuilder};
use slotstorm::backend::docker::{self, DockerCluster, RUN_LABEL, RunId};
use slotstorm::embedded::{self, EmbeddedSpec, Up};

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
        // Drop may run inside a runtime (or while unwinding from a panic in one): tear down
        // on a thread of our own with its own runtime.
        let run = self.run.clone();
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async {
                let docker = docker::connect().await.expect("the Docker engine is reachable");
                embedded::down(&docker, &run).await
            })
        })
        .join();
        match joined {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("tearing down {}: {e}", self.run),
            Err(_) => eprintln!("tearing down {} panicked", self.run),
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
