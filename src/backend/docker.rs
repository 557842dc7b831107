//! Embedded clusters in Docker: one user-defined bridge network and one container per node,
//! all labelled `slotstorm.run=<id>` so that `down` and `clean` find everything a run made.
//! The host reaches the containers at their bridge addresses, so nodes announce the same
//! addresses to clients and to each other (no port publishing, no NAT in the way).
//!
//! Length: about 40 lines are unit tests; the rest is one concept (the Docker side of a run).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use futures_util::future::{join_all, try_join_all};

use super::BackendError;
use super::image::DATA_DIR;

/// The label every container and network of a run carries; its value is the run id.
pub const RUN_LABEL: &str = "slotstorm.run";
/// The label naming a container's node (`redis-1`, …).
pub const NODE_LABEL: &str = "slotstorm.node";
/// The port every node listens on, inside its own network namespace.
pub const REDIS_PORT: u16 = 6379;

/// A run id: names the containers, the network and the label value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunId(String);

impl RunId {
    /// Check `s` can name Docker objects: 1–40 characters of `a-z 0-9 _ . -`, starting with a
    /// letter or digit.
    ///
    /// # Errors
    /// A message saying which characters are allowed.
    pub fn new(s: &str) -> Result<RunId, String> {
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
        if ok {
            Ok(RunId(s.to_string()))
        } else {
            Err(format!(
                "run name {s:?} must be 1-40 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit"
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The network's name.
    pub fn network(&self) -> String {
        format!("slotstorm-{}", self.0)
    }

    /// The container name of node `node` (`redis-1`, …).
    pub fn container(&self, node: &str) -> String {
        format!("slotstorm-{}-{node}", self.0)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How each node's server is configured.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The image to run (see [`super::image::ensure`]).
    pub image: String,
    /// `cluster-node-timeout`.
    pub node_timeout: Duration,
    /// `appendonly`.
    pub appendonly: bool,
    /// `cluster-require-full-coverage`.
    pub require_full_coverage: bool,
    /// Further `redis.conf` directives, as (name, value).
    pub extra: Vec<(String, String)>,
}

impl NodeConfig {
    /// The server's command line: cluster mode on the fixed port, data in the image's data
    /// folder, no RDB snapshots, and no delay before a replica's first sync (a replica that
    /// has not synced never runs for election).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--port",
            &REDIS_PORT.to_string(),
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &self.node_timeout.as_millis().to_string(),
            "--cluster-require-full-coverage",
            yes_no(self.require_full_coverage),
            "--appendonly",
            yes_no(self.appendonly),
            "--dir",
            DATA_DIR,
            "--save",
            "",
            "--repl-diskless-sync-delay",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (k, v) in &self.extra {
            args.push(format!("--{k}"));
            args.push(v.clone());
        }
        args
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// One node container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeContainer {
    /// The node's name in the cluster and in chaos files (`redis-1`, …).
    pub node: String,
    /// The container's name.
    pub container: String,
    /// The node's client address on the run's network.
    pub addr: SocketAddr,
}

/// The containers of one run, in node order.
#[derive(Debug, Clone)]
pub struct DockerCluster {
    /// The run they belong to.
    pub run: RunId,
    /// The nodes, `redis-1` first.
    pub nodes: Vec<NodeContainer>,
}

impl DockerCluster {
    /// The nodes' client addresses, in node order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// Node name by address, for printing.
    pub fn names(&self) -> HashMap<SocketAddr, String> {
        self.nodes.iter().map(|n| (n.addr, n.node.clone())).collect()
    }
}

/// Connect to the engine named by `DOCKER_HOST` (or the local socket) and settle on an API
/// version both sides speak: bollard's default is newer than a Debian 20.10 engine.
///
/// # Errors
/// [`BackendError::Unreachable`] naming the endpoint.
pub async fn connect() -> Result<Docker, BackendError> {
    let endpoint = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let unreachable = |source| BackendError::Unreachable { endpoint: endpoint.clone(), source };
    let docker = Docker::connect_with_local_defaults().map_err(unreachable)?;
    let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
        .await
        .map_err(|_| unreachable(bollard::errors::Error::RequestTimeoutError))?
        .map_err(unreachable)?;
    Ok(docker)
}

/// Create the run's network and `count` node containers named `redis-1..=count`, start them
/// and read their addresses. On error, whatever was created is left for the caller to remove
/// with [`remove_labelled`].
///
/// # Errors
/// [`BackendError::NamesTaken`] when a container or network of this run already exists;
/// [`BackendError::Docker`] for a failed API call.
pub async fn create_cluster(
    docker: &Docker,
    run: &RunId,
    count: usize,
    config: &NodeConfig,
) -> Result<DockerCluster, BackendError> {
    let nodes: Vec<String> = (1..=count).map(|i| format!("redis-{i}")).collect();
    refuse_taken_names(docker, run, &nodes).await?;
    let labels = HashMap::from([(RUN_LABEL.to_string(), run.to_string())]);
    let network = run.network();
    docker
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await
        .map_err(|source| BackendError::Docker { action: format!("creating network {network}"), source })?;
    let args = config.args();
    try_join_all(nodes.iter().map(|node| create_node(docker, run, node, &config.image, &args))).await?;
    try_join_all(nodes.iter().map(|node| async move {
        let name = run.container(node);
        docker
            .start_container(&name, None)
            .await
            .map_err(|source| BackendError::Docker { action: format!("starting container {name}"), source })
    }))
    .await?;
    let found = find_cluster(docker, run).await?.ok_or_else(|| BackendError::NoSuchRun(run.to_string()))?;
    if found.nodes.len() != count {
        return Err(BackendError::NoAddress { container: format!("{count} node containers"), network });
    }
    Ok(found)
}

async fn create_node(
    docker: &Docker,
    run: &RunId,
    node: &str,
    image: &str,
    args: &[String],
) -> Result<(), BackendError> {
    let name = run.container(node);
    let labels =
        HashMap::from([(RUN_LABEL.to_string(), run.to_string()), (NODE_LABEL.to_string(), node.to_string())]);
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(args.to_vec()),
        hostname: Some(node.to_string()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(run.network()),
            // iptables and tc inside the node's namespace, for partitions and network faults.
            cap_add: Some(vec!["NET_ADMIN".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    // A name taken between the check and here is a race with another run of the same name;
    // it surfaces as a Docker error (409), so the caller cleans up what this run made.
    docker
        .create_container(Some(options), body)
        .await
        .map_err(|source| BackendError::Docker { action: format!("creating container {name}"), source })?;
    Ok(())
}

/// Create and start one more node container in `cluster`'s run: named after the highest
/// node number there plus one (`redis-7` after `redis-6`), on the run's network, with the
/// labels, image and server command line of the run's first node, so it is configured as
/// the others are and `find_cluster`, `remove_labelled` and `clean` find it by its labels.
/// The node is not part of the Redis cluster yet (see `cluster::membership::join`).
///
/// # Errors
/// [`BackendError::NoSuchRun`] when the run has no container; [`BackendError::Docker`] for
/// a failed API call (a container created before the failure is removed).
pub async fn add_node(docker: &Docker, cluster: &DockerCluster) -> Result<NodeContainer, BackendError> {
    let run = &cluster.run;
    let current = find_cluster(docker, run).await?.ok_or_else(|| BackendError::NoSuchRun(run.to_string()))?;
    let first = current.nodes.first().ok_or_else(|| BackendError::NoSuchRun(run.to_string()))?;
    let inspected = docker.inspect_container(&first.container, None).await.map_err(|source| {
        BackendError::Docker { action: format!("inspecting {}", first.container), source }
    })?;
    let config = inspected.config.unwrap_or_default();
    let image = config.image.unwrap_or_default();
    let args = config.cmd.unwrap_or_default();
    let next =
        current.nodes.iter().map(|n| node_index(&n.node)).filter(|&i| i != u32::MAX).max().unwrap_or(0) + 1;
    let node = format!("redis-{next}");
    refuse_taken_containers(docker, run, std::slice::from_ref(&node)).await?;
    create_node(docker, run, &node, &image, &args).await?;
    let name = run.container(&node);
    if let Err(source) = docker.start_container(&name, None).await {
        remove_container(docker, &name).await?;
        return Err(BackendError::Docker { action: format!("starting container {name}"), source });
    }
    let found = find_cluster(docker, run).await?.ok_or_else(|| BackendError::NoSuchRun(run.to_string()))?;
    found
        .nodes
        .into_iter()
        .find(|n| n.node == node)
        .ok_or_else(|| BackendError::NoAddress { container: name, network: run.network() })
}

/// Kill and remove one container (and its anonymous volumes). A container already gone is
/// not an error.
///
/// # Errors
/// [`BackendError::Docker`].
pub async fn remove_container(docker: &Docker, container: &str) -> Result<(), BackendError> {
    let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    match docker.remove_container(container, Some(options)).await {
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        Err(source) => {
            Err(BackendError::Docker { action: format!("removing container {container}"), source })
        }
    }
}

/// Fail with [`BackendError::NamesTaken`] when the run's network or containers exist.
async fn refuse_taken_names(docker: &Docker, run: &RunId, nodes: &[String]) -> Result<(), BackendError> {
    refuse_taken_containers(docker, run, nodes).await?;
    let network = run.network();
    let nets = docker
        .list_networks(Some(ListNetworksOptionsBuilder::default().build()))
        .await
        .map_err(|source| BackendError::Docker { action: "listing networks".into(), source })?;
    if nets.iter().any(|n| n.name.as_deref() == Some(network.as_str())) {
        return Err(BackendError::NamesTaken { what: "networks", names: network });
    }
    Ok(())
}

/// Fail with [`BackendError::NamesTaken`] when containers for `nodes` of the run exist.
async fn refuse_taken_containers(docker: &Docker, run: &RunId, nodes: &[String]) -> Result<(), BackendError> {
    let wanted: Vec<String> = nodes.iter().map(|n| run.container(n)).collect();
    let taken: Vec<String> = list_containers(docker, HashMap::new())
        .await?
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| wanted.contains(n))
        .collect();
    if !taken.is_empty() {
        return Err(BackendError::NamesTaken { what: "containers", names: taken.join(", ") });
    }
    Ok(())
}

async fn list_containers(
    docker: &Docker,
    filters: HashMap<&str, Vec<&str>>,
) -> Result<Vec<bollard::models::ContainerSummary>, BackendError> {
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    docker
        .list_containers(Some(options))
        .await
        .map_err(|source| BackendError::Docker { action: "listing containers".into(), source })
}

/// The containers of run `run`, in node order, or `None` when it has none.
///
/// # Errors
/// [`BackendError::Docker`] when listing fails; [`BackendError::NoAddress`] when a container
/// is not attached to the run's network (stopped containers have no address).
pub async fn find_cluster(docker: &Docker, run: &RunId) -> Result<Option<DockerCluster>, BackendError> {
    Ok(find(docker, run, false).await?.map(|(cluster, _)| cluster))
}

/// The running containers of run `run`, in node order, and the names of the nodes whose
/// containers are not running (killed or stopped by a fault, say); `None` when the run has
/// no containers.
///
/// # Errors
/// [`BackendError::Docker`] when listing fails.
pub async fn find_running(
    docker: &Docker,
    run: &RunId,
) -> Result<Option<(DockerCluster, Vec<String>)>, BackendError> {
    find(docker, run, true).await
}

async fn find(
    docker: &Docker,
    run: &RunId,
    skip_exited: bool,
) -> Result<Option<(DockerCluster, Vec<String>)>, BackendError> {
    let label = format!("{RUN_LABEL}={run}");
    let found = list_containers(docker, HashMap::from([("label", vec![label.as_str()])])).await?;
    if found.is_empty() {
        return Ok(None);
    }
    let network = run.network();
    let mut nodes = Vec::new();
    let mut exited = Vec::new();
    for c in found {
        let labels = c.labels.unwrap_or_default();
        let Some(node) = labels.get(NODE_LABEL) else { continue };
        let container = run.container(node);
        let ip = c
            .network_settings
            .and_then(|s| s.networks)
            .and_then(|mut n| n.remove(&network))
            .and_then(|e| e.ip_address)
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .ok_or_else(|| BackendError::NoAddress {
                container: container.clone(),
                network: network.clone(),
            });
        let ip = match ip {
            Ok(ip) => ip,
            Err(_) if skip_exited && c.state != Some(ContainerSummaryStateEnum::RUNNING) => {
                exited.push(node.clone());
                continue;
            }
            // A container that exited has no address; its log says why.
            Err(_) if c.state != Some(ContainerSummaryStateEnum::RUNNING) => {
                let log = log_tail(docker, &container, 6).await;
                return Err(BackendError::NodeExited { container, log });
            }
            Err(e) => return Err(e),
        };
        nodes.push(NodeContainer { node: node.clone(), container, addr: SocketAddr::new(ip, REDIS_PORT) });
    }
    nodes.sort_by_key(|n| node_index(&n.node));
    exited.sort_by_key(|n| node_index(n));
    Ok(Some((DockerCluster { run: run.clone(), nodes }, exited)))
}

/// The last `lines` lines of a container's output, joined with ` | ` for a one-line message.
pub async fn log_tail(docker: &Docker, container: &str, lines: usize) -> String {
    let tail = lines.to_string();
    let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&tail).build();
    let chunks: Vec<_> = docker.logs(container, Some(options)).collect().await;
    let text: String = chunks.into_iter().filter_map(Result::ok).map(|c| c.to_string()).collect();
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}

/// `redis-12` → 12, for ordering nodes naturally.
fn node_index(node: &str) -> u32 {
    node.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(u32::MAX)
}

/// What a removal removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Container names removed.
    pub containers: Vec<String>,
    /// Network names removed.
    pub networks: Vec<String>,
}

/// Remove every container and network labelled with run `run` (or, with `None`, with any
/// slotstorm run). Containers are killed, not stopped: nothing in them needs a graceful end.
///
/// # Errors
/// [`BackendError::Docker`] naming the object that could not be removed.
pub async fn remove_labelled(docker: &Docker, run: Option<&RunId>) -> Result<Removed, BackendError> {
    let label = match run {
        Some(r) => format!("{RUN_LABEL}={r}"),
        None => RUN_LABEL.to_string(),
    };
    let containers = list_containers(docker, HashMap::from([("label", vec![label.as_str()])])).await?;
    let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    let removals = containers.into_iter().filter_map(|c| c.id.map(|id| (id, c.names))).map(|(id, names)| {
        let name = names.and_then(|n| n.first().cloned()).unwrap_or(id.clone());
        let name = name.trim_start_matches('/').to_string();
        let options = options.clone();
        async move {
            match docker.remove_container(&id, Some(options)).await {
                Ok(()) => Ok(Some(name)),
                // Gone already (a concurrent clean, or auto-removal): nothing to do.
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
                // Removal already in progress elsewhere.
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => Ok(None),
                Err(source) => {
                    Err(BackendError::Docker { action: format!("removing container {name}"), source })
                }
            }
        }
    });
    let mut removed = Removed::default();
    for r in join_all(removals).await {
        removed.containers.extend(r?);
    }
    let filters = HashMap::from([("label", vec![label.as_str()])]);
    let nets = docker
        .list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build()))
        .await
        .map_err(|source| BackendError::Docker { action: "listing networks".into(), source })?;
    for net in nets {
        let Some(name) = net.name else { continue };
        match docker.remove_network(&name).await {
            Ok(()) => removed.networks.push(name),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(source) => {
                return Err(BackendError::Docker { action: format!("removing network {name}"), source });
            }
        }
    }
    removed.containers.sort_by_key(|c| node_index(c));
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_checked() {
        assert!(RunId::new("dev").is_ok());
        assert!(RunId::new("20261130t101500-seed-users").is_ok());
        for bad in ["", "Dev", "-x", "a b", "a/b", &"x".repeat(41)] {
            assert!(RunId::new(bad).is_err(), "{bad:?} should be refused");
        }
        let r = RunId::new("dev").unwrap();
        assert_eq!(r.network(), "slotstorm-dev");
        assert_eq!(r.container("redis-1"), "slotstorm-dev-redis-1");
    }

    #[test]
    fn node_config_args_carry_the_settings() {
        let c = NodeConfig {
            image: "x".into(),
            node_timeout: Duration::from_millis(1500),
            appendonly: true,
            require_full_coverage: false,
            extra: vec![("maxmemory".into(), "100mb".into())],
        };
        let a = c.args().join(" ");
        assert!(a.contains("--cluster-node-timeout 1500"));
        assert!(a.contains("--appendonly yes"));
        assert!(a.contains("--cluster-require-full-coverage no"));
        assert!(a.ends_with("--maxmemory 100mb"));
    }

    #[test]
    fn nodes_sort_naturally() {
        let mut v = vec!["redis-10", "redis-2", "redis-1"];
        v.sort_by_key(|n| node_index(n));
        assert_eq!(v, vec!["redis-1", "redis-2", "redis-10"]);
    }
}
