//! Faults on one node container, through the Docker API: process faults (kill, stop,
//! restart, pause, SIGSTOP) and network faults made with `iptables` and `tc` inside the
//! node's own network namespace (the node image carries both; containers have NET_ADMIN).
//! Each fault has its heal; [`heal_node`] undoes every kind at once, for exit paths.

use std::net::IpAddr;
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{KillContainerOptionsBuilder, StopContainerOptionsBuilder};
use futures_util::StreamExt;

/// A fault that could not be injected or healed.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// A Docker API call failed.
    #[error("{action} on container {container} failed: {source}")]
    Docker {
        /// What was attempted.
        action: String,
        /// The container.
        container: String,
        /// The engine's error.
        source: bollard::errors::Error,
    },
    /// A command run inside the container failed.
    #[error("`{command}` in container {container} exited with {code}: {output}")]
    Exec {
        /// The command line.
        command: String,
        /// The container.
        container: String,
        /// Its exit code.
        code: i64,
        /// What it printed.
        output: String,
    },
    /// The node refused a command sent to it, or did not do what it said.
    #[error("node container {container}: {message}")]
    Command {
        /// The container.
        container: String,
        /// What went wrong.
        message: String,
    },
}

fn docker_err(action: &str, container: &str) -> impl FnOnce(bollard::errors::Error) -> InjectError {
    let (action, container) = (action.to_string(), container.to_string());
    move |source| InjectError::Docker { action, container, source }
}

/// Send `signal` (`SIGKILL`, `SIGSTOP`, `SIGCONT`, …) to the container's server.
///
/// # Errors
/// [`InjectError::Docker`].
pub async fn signal(docker: &Docker, container: &str, signal: &str) -> Result<(), InjectError> {
    let options = KillContainerOptionsBuilder::default().signal(signal).build();
    docker
        .kill_container(container, Some(options))
        .await
        .map_err(docker_err(&format!("sending {signal}"), container))
}

/// Start a stopped or killed container. Starting a running one is not an error.
///
/// # Errors
/// [`InjectError::Docker`].
pub async fn start(docker: &Docker, container: &str) -> Result<(), InjectError> {
    match docker.start_container(container, None).await {
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
        Err(e) => Err(docker_err("starting", container)(e)),
    }
}

/// Stop gracefully (SIGTERM, then SIGKILL after `grace`).
///
/// # Errors
/// [`InjectError::Docker`].
pub async fn stop(docker: &Docker, container: &str, grace: Duration) -> Result<(), InjectError> {
    let options = StopContainerOptionsBuilder::default().t(grace.as_secs() as i32).build();
    match docker.stop_container(container, Some(options)).await {
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
        Err(e) => Err(docker_err("stopping", container)(e)),
    }
}

/// `SHUTDOWN FAILOVER` to the node at `addr` (Valkey): a primary waits for a replica to
/// catch up, hands its slots over and exits. Returns once the container has stopped (at
/// most 30 s, as the node waits for its replica at most `shutdown-timeout`, 10 s).
///
/// # Errors
/// [`InjectError::Command`] when the node refuses it, or is still running after 30 s.
pub async fn shutdown_failover(
    docker: &Docker,
    container: &str,
    addr: std::net::SocketAddr,
) -> Result<(), InjectError> {
    let fail = |message: String| InjectError::Command { container: container.to_string(), message };
    let mut node = crate::cluster::node::Node::connect(addr, crate::cluster::node::ADMIN_TIMEOUT)
        .await
        .map_err(|e| fail(e.to_string()))?;
    // A node that shuts down closes the connection instead of answering; any reply it
    // sends is a refusal.
    let sent: Result<(), _> = node.run(redis::cmd("SHUTDOWN").arg("FAILOVER")).await;
    if let Err(crate::cluster::ClusterError::Command { source, .. }) = &sent
        && !(source.is_io_error() || source.is_connection_dropped() || source.is_timeout())
    {
        return Err(fail(format!("SHUTDOWN FAILOVER was refused: {source}")));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let running = docker
            .inspect_container(container, None)
            .await
            .map_err(docker_err("inspecting", container))?
            .state
            .and_then(|s| s.running)
            .unwrap_or(false);
        if !running {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(fail("still running 30 s after SHUTDOWN FAILOVER".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `docker pause` (the cgroup freezer: the process and its sockets freeze, connections stay open).
///
/// # Errors
/// [`InjectError::Docker`].
pub async fn pause(docker: &Docker, container: &str) -> Result<(), InjectError> {
    docker.pause_container(container).await.map_err(docker_err("pausing", container))
}

/// Undo [`pause`]. Unpausing a container that is not paused is not an error.
///
/// # Errors
/// [`InjectError::Docker`].
pub async fn unpause(docker: &Docker, container: &str) -> Result<(), InjectError> {
    match docker.unpause_container(container).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 409 | 500, message })
            if message.contains("not paused") =>
        {
            Ok(())
        }
        Err(e) => Err(docker_err("unpausing", container)(e)),
    }
}

/// Run `argv` inside the container and return its output.
///
/// # Errors
/// [`InjectError::Exec`] when it exits non-zero.
pub async fn exec(docker: &Docker, container: &str, argv: &[&str]) -> Result<String, InjectError> {
    let command = argv.join(" ");
    let options = CreateExecOptions {
        cmd: Some(argv.to_vec()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let created = docker.create_exec(container, options).await.map_err(docker_err(&command, container))?;
    let mut output = String::new();
    if let StartExecResults::Attached { output: mut stream, .. } =
        docker.start_exec(&created.id, None).await.map_err(docker_err(&command, container))?
    {
        while let Some(chunk) = stream.next().await {
            output.push_str(&chunk.map_err(docker_err(&command, container))?.to_string());
        }
    }
    let inspect = docker.inspect_exec(&created.id).await.map_err(docker_err(&command, container))?;
    match inspect.exit_code {
        Some(0) | None => Ok(output),
        Some(code) => Err(InjectError::Exec {
            command,
            container: container.to_string(),
            code,
            output: output.trim().to_string(),
        }),
    }
}

/// Drop every packet between the node and each of `peers`, both ways. Clients (the host)
/// still reach it.
///
/// # Errors
/// [`InjectError`] from iptables.
pub async fn cut_from(docker: &Docker, container: &str, peers: &[IpAddr]) -> Result<(), InjectError> {
    if peers.is_empty() {
        return Ok(());
    }
    // One rule per direction with an address list (iptables expands it): two execs, not two
    // per peer, so the partition takes hold at once rather than peer by peer.
    let list = peers.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    exec(docker, container, &["iptables", "-w", "-A", "INPUT", "-s", &list, "-j", "DROP"]).await?;
    exec(docker, container, &["iptables", "-w", "-A", "OUTPUT", "-d", &list, "-j", "DROP"]).await?;
    Ok(())
}

/// Drop every packet on the node's network interface: no peer and no client reaches it.
///
/// # Errors
/// [`InjectError`] from iptables.
pub async fn isolate(docker: &Docker, container: &str) -> Result<(), InjectError> {
    exec(docker, container, &["iptables", "-w", "-A", "INPUT", "-i", "eth0", "-j", "DROP"]).await?;
    exec(docker, container, &["iptables", "-w", "-A", "OUTPUT", "-o", "eth0", "-j", "DROP"]).await?;
    Ok(())
}

/// Drop each packet arriving at the node with `probability`.
///
/// # Errors
/// [`InjectError`] from iptables.
pub async fn loss(docker: &Docker, container: &str, probability: f64) -> Result<(), InjectError> {
    let p = format!("{probability:.4}");
    let argv = [
        "iptables",
        "-w",
        "-A",
        "INPUT",
        "-i",
        "eth0",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        &p,
        "-j",
        "DROP",
    ];
    exec(docker, container, &argv).await.map(drop)
}

/// Limit the node's outgoing bandwidth (token bucket).
///
/// # Errors
/// [`InjectError`] from tc.
pub async fn bandwidth(docker: &Docker, container: &str, bits_per_s: u64) -> Result<(), InjectError> {
    let rate = format!("{bits_per_s}bit");
    let argv = [
        "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", &rate, "burst", "32kbit", "latency",
        "400ms",
    ];
    exec(docker, container, &argv).await.map(drop)
}

/// Delay the node's outgoing packets (needs the kernel's netem, see [`netem_available`]).
///
/// # Errors
/// [`InjectError`] from tc.
pub async fn delay(
    docker: &Docker,
    container: &str,
    delay: Duration,
    jitter: Duration,
) -> Result<(), InjectError> {
    let d = format!("{}us", delay.as_micros());
    let j = format!("{}us", jitter.as_micros());
    let argv = ["tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", &d, &j];
    exec(docker, container, &argv).await.map(drop)
}

/// Remove every network fault: flush the filter table's INPUT and OUTPUT chains (Docker puts
/// nothing there inside a container's namespace) and the root qdisc.
///
/// # Errors
/// [`InjectError`] from iptables (a missing qdisc is not an error).
pub async fn heal_network(docker: &Docker, container: &str) -> Result<(), InjectError> {
    exec(docker, container, &["iptables", "-w", "-F", "INPUT"]).await?;
    exec(docker, container, &["iptables", "-w", "-F", "OUTPUT"]).await?;
    match exec(docker, container, &["tc", "qdisc", "del", "dev", "eth0", "root"]).await {
        Ok(_) | Err(InjectError::Exec { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Undo every fault a node can be in, whatever it is: resume it, start it if it is down,
/// remove network rules. Used on every exit path; each step is tried even if one fails.
///
/// # Errors
/// The first error met, after trying every step.
pub async fn heal_node(docker: &Docker, container: &str) -> Result<(), InjectError> {
    let mut first = None;
    let mut keep = |r: Result<(), InjectError>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    keep(unpause(docker, container).await);
    // SIGCONT to a running, unfrozen process is harmless; a stopped container refuses it.
    let _ = signal(docker, container, "SIGCONT").await;
    keep(start(docker, container).await);
    keep(heal_network(docker, container).await);
    first.map_or(Ok(()), Err)
}

/// Whether this kernel has the netem qdisc that `delay` needs: tried on the loopback device
/// of a throwaway network namespace (`unshare -n`), so nothing on the host changes. Docker
/// containers share the host's kernel, so the answer holds for them.
pub fn netem_available() -> bool {
    std::process::Command::new("unshare")
        .args(["-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
