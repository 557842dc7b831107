//! The embedded cluster: containers from `backend::docker`, shaped into a Redis Cluster by
//! `cluster::bootstrap`. `up` either returns a ready cluster or removes everything it made;
//! `add_node` and `remove_node` grow and shrink it by one container at a time.

use std::time::Duration;

use bollard::Docker;
use tokio::time::{Instant, sleep};

use crate::backend::docker::{self, DockerCluster, NodeConfig, NodeContainer, Removed, RunId};
use crate::backend::engine::Engine;
use crate::backend::{BackendError, image};
use crate::cluster::admin::{AdminError, NodeRef};
use crate::cluster::membership::{self, Forgotten, JoinAs, Joined};
use crate::cluster::{self, ClusterError, Layout};

/// How long bootstrap may take before slotstorm gives up (it needs about a second).
pub const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);

/// What an embedded cluster looks like.
#[derive(Debug, Clone)]
pub struct EmbeddedSpec {
    /// The server the nodes run.
    pub engine: Engine,
    /// Primaries and replicas per primary.
    pub layout: Layout,
    /// `cluster-node-timeout` (the seed's 5000 ms by default).
    pub node_timeout: Duration,
    /// `appendonly` (on by default, as in the seed).
    pub appendonly: bool,
    /// `cluster-require-full-coverage` (Redis's default, on).
    pub require_full_coverage: bool,
    /// Further `redis.conf` directives.
    pub extra: Vec<(String, String)>,
    /// An image already present in the engine to run instead of the one slotstorm builds
    /// (e.g. one made from `docker/Dockerfile`); it must accept redis-server arguments.
    pub image: Option<String>,
}

impl EmbeddedSpec {
    /// Its shape for a progress line: `redis, 3 primaries × 1 replicas, cluster-node-timeout
    /// 5000 ms`.
    pub fn shape(&self) -> String {
        format!(
            "{}, {} primaries × {} replicas, cluster-node-timeout {} ms",
            self.engine,
            self.layout.masters,
            self.layout.replicas,
            self.node_timeout.as_millis()
        )
    }
}

impl Default for EmbeddedSpec {
    fn default() -> Self {
        EmbeddedSpec {
            engine: Engine::Redis,
            layout: Layout { masters: 3, replicas: 1 },
            node_timeout: Duration::from_millis(5000),
            appendonly: true,
            require_full_coverage: true,
            extra: Vec::new(),
            image: None,
        }
    }
}

/// Why an embedded cluster could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// Docker or the image failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The nodes did not form a healthy cluster.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A cluster that is up, with how long each step took.
#[derive(Debug, Clone)]
pub struct Up {
    /// The containers, in node order.
    pub cluster: DockerCluster,
    /// The image the nodes run.
    pub image: image::BuiltImage,
    /// Time from the first container call until every node agreed.
    pub elapsed: Duration,
    /// Of that, the time until every container ran and had an address.
    pub containers_elapsed: Duration,
}

/// Build the image if missing, start the containers and bootstrap the cluster. On any error
/// every container and network of `run` is removed before the error is returned.
///
/// # Errors
/// [`UpError`] naming the node, container or step that failed.
pub async fn up(docker: &Docker, run: &RunId, spec: &EmbeddedSpec) -> Result<Up, UpError> {
    let image = match &spec.image {
        Some(tag) => image::existing(docker, tag).await?,
        None => image::ensure(docker, &image::Source::of(spec.engine), false).await?,
    };
    let start = Instant::now();
    let config = NodeConfig {
        image: image.tag.clone(),
        node_timeout: spec.node_timeout,
        appendonly: spec.appendonly,
        require_full_coverage: spec.require_full_coverage,
        extra: spec.extra.clone(),
    };
    let result = async {
        let cluster = docker::create_cluster(docker, run, spec.layout.nodes(), &config).await?;
        let containers_elapsed = start.elapsed();
        // A server that exits at start (a bad directive) would only show as a node that never
        // answers; watching the containers names it at once, with its log.
        let addrs = cluster.addrs();
        tokio::select! {
            done = cluster::bootstrap(&addrs, spec.layout, BOOTSTRAP_TIMEOUT) => done?,
            exited = watch_for_exit(docker, run) => return Err(exited.into()),
        }
        Ok::<_, UpError>((cluster, containers_elapsed))
    }
    .await;
    match result {
        Ok((cluster, containers_elapsed)) => {
            Ok(Up { cluster, image, elapsed: start.elapsed(), containers_elapsed })
        }
        // The names belong to a run that is already there: it is not ours to remove.
        Err(e @ UpError::Backend(BackendError::NamesTaken { .. })) => Err(e),
        Err(e) => {
            if let Err(cleanup) = down(docker, run).await {
                tracing::warn!(run = %run, error = %cleanup, "Cleanup after a failed start also failed.");
            }
            Err(e)
        }
    }
}

/// Resolve only when a container of `run` has exited (or cannot be listed).
async fn watch_for_exit(docker: &Docker, run: &RunId) -> BackendError {
    loop {
        sleep(Duration::from_millis(250)).await;
        match docker::find_cluster(docker, run).await {
            Ok(Some(_)) => {}
            Ok(None) => return BackendError::NoSuchRun(run.to_string()),
            Err(e) => return e,
        }
    }
}

/// Remove every container and network of `run`, then look again until nothing labelled with
/// it is left: a create call abandoned by Ctrl-C may still land in the engine after the
/// first pass.
///
/// # Errors
/// [`BackendError::Docker`] when a removal fails.
pub async fn down(docker: &Docker, run: &RunId) -> Result<Removed, BackendError> {
    let mut removed = docker::remove_labelled(docker, Some(run)).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        sleep(Duration::from_millis(100)).await;
        let again = docker::remove_labelled(docker, Some(run)).await?;
        if again == Removed::default() || Instant::now() >= deadline {
            removed.containers.extend(again.containers);
            removed.networks.extend(again.networks);
            return Ok(removed);
        }
        removed.containers.extend(again.containers);
        removed.networks.extend(again.networks);
    }
}

/// Why a node could not be added to or removed from an embedded cluster.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// Docker failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The cluster refused or did not complete the change.
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// Add one node to an embedded cluster: a new container configured as the others
/// ([`docker::add_node`]), joined to the cluster as `role` ([`membership::join`]). If the
/// join fails the container is removed again.
///
/// # Errors
/// [`ScaleError`] naming the container or node that failed.
pub async fn add_node(
    docker: &Docker,
    cluster: &DockerCluster,
    role: &JoinAs,
    timeout: Duration,
) -> Result<(NodeContainer, Joined), ScaleError> {
    let node = docker::add_node(docker, cluster).await?;
    match membership::join(&cluster.addrs(), node.addr, role, timeout).await {
        Ok(joined) => Ok((node, joined)),
        Err(e) => {
            // The MEETs may have gone out: have the others forget it (best effort), so no
            // `fail noaddr` ghost stays in their views.
            let (seeds, ghost) = (cluster.addrs(), NodeRef::Addr(node.addr));
            if let Err(f) = membership::forget(&seeds, &ghost, Duration::from_secs(10)).await {
                tracing::debug!(node = %node.addr, error = %f, "Forgetting a node that did not join failed.");
            }
            if let Err(cleanup) = docker::remove_container(docker, &node.container).await {
                tracing::warn!(container = %node.container, error = %cleanup, "Removing a node that did not join failed.");
            }
            Err(e.into())
        }
    }
}

/// Remove node `node` (`redis-4`, …) from an embedded cluster: every other node forgets it
/// ([`membership::forget`], refused while it serves slots), then its container is removed.
///
/// # Errors
/// [`AdminError::UnknownNode`] when the run has no such node; the refusals of
/// [`membership::forget`]; [`BackendError::Docker`] when the container cannot be removed.
pub async fn remove_node(
    docker: &Docker,
    cluster: &DockerCluster,
    node: &str,
    timeout: Duration,
) -> Result<Forgotten, ScaleError> {
    let current = docker::find_cluster(docker, &cluster.run).await?.unwrap_or_else(|| cluster.clone());
    let Some(target) = current.nodes.iter().find(|n| n.node == node) else {
        return Err(AdminError::UnknownNode { role: "node to remove", node: node.to_string() }.into());
    };
    let seeds: Vec<_> = current.nodes.iter().filter(|n| n.node != node).map(|n| n.addr).collect();
    let forgotten = membership::forget(&seeds, &NodeRef::Addr(target.addr), timeout).await?;
    docker::remove_container(docker, &target.container).await?;
    Ok(forgotten)
}
