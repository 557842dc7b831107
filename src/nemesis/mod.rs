//! The nemesis: injects a chaos file's faults on schedule through the Docker API, heals each
//! at its time, and on every exit path (normal end, error, Ctrl-C, panic of the run) heals
//! everything it may have left: every node is resumed, started and stripped of network
//! rules. Targets such as `random-primary` are resolved against the cluster as it is when
//! the fault starts.
//!
//! This module injects and heals; it never records latency (the driver does) and never
//! judges what happened (the checkers do).

pub mod inject;
pub mod operation;
mod target;

pub use operation::Operator;
pub use target::{Resolved, resolve};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use futures_util::FutureExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::backend::docker::DockerCluster;
use crate::clock::{RunClock, Stop};
use crate::history::EventKind;
use crate::history::{EventLog, emit};
use crate::spec::chaos::{Action, Scheduled, ScheduledOperation};

/// How long operations may go on after the schedule's last step before they are abandoned
/// (a drain of a large node under load takes minutes; a hung one must not hold the run).
const OPERATIONS_GRACE: Duration = Duration::from_secs(300);

/// Test hook: when set, the nemesis panics right after its next successful injection, so a
/// test can check that a panic mid-fault is healed and recorded. Never set outside tests.
#[doc(hidden)]
pub static PANIC_AFTER_INJECT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Test hook: when set, the next topology operation panics once it has started, so a test can
/// check that the panic is recorded as a run error. Never set outside tests.
#[doc(hidden)]
pub static PANIC_IN_OPERATION: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// [`run`] on a task of its own, supervised: if it panics, the panic is recorded as a chaos
/// error of the fault it was handling (so the run ends with exit 3 and says so) and every
/// node is healed at once, so a bug in the nemesis never leaves a node broken for the rest
/// of the run nor passes it.
pub fn spawn(
    operator: Operator,
    schedule: Vec<Scheduled>,
    seed: u64,
    stop: Arc<Stop>,
) -> tokio::task::JoinHandle<()> {
    let current = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let task = tokio::spawn(run(operator.clone(), schedule, seed, stop, current.clone()));
    tokio::spawn(async move {
        let Err(e) = task.await else { return };
        if !e.is_panic() {
            return;
        }
        let why = crate::history::panic_message(e.into_panic().as_ref());
        let fault = current.load(std::sync::atomic::Ordering::Relaxed);
        tracing::error!(fault, panic = %why, "The nemesis panicked; healing every node.");
        let error = format!(
            "the nemesis panicked ({why}): the rest of the schedule was skipped and every node healed"
        );
        emit(&operator.events, operator.clock.now_us(), EventKind::FaultError { fault, error });
        heal_all(&operator.docker, &operator.cluster()).await;
    })
}

/// A fault that is in force and how to end it.
struct Active {
    fault: usize,
    repeat: u32,
    action: Action,
    heal_at: Duration,
    targets: Vec<String>,
}

/// Run `schedule` against the operator's cluster until it is done or `stop` is asked, then
/// heal everything. Faults are injected and healed here; operations go, in order, to a task
/// of their own ([`operation`]), so a fault can strike in the middle of one. After the
/// schedule, a running operation is waited for, unless `stop` is asked (then it is cut
/// short, and the run's heal step repairs the slots it left open).
///
/// `current` names the fault being handled, for [`spawn`]'s report of a panic.
pub async fn run(
    operator: Operator,
    schedule: Vec<Scheduled>,
    seed: u64,
    stop: Arc<Stop>,
    current: Arc<std::sync::atomic::AtomicUsize>,
) {
    let (docker, clock, events) = (operator.docker.clone(), operator.clock, operator.events.clone());
    let mut rng = SmallRng::seed_from_u64(seed);
    let (ops_tx, mut ops_rx) = tokio::sync::mpsc::unbounded_channel::<ScheduledOperation>();
    let mut operations = {
        let operator = operator.clone();
        // Operations choose their targets from a generator of their own, so adding one
        // never changes which nodes the faults hit.
        let mut rng = SmallRng::seed_from_u64(seed.rotate_left(17) ^ 0x6f70_7365);
        tokio::spawn(async move {
            while let Some(op) = ops_rx.recv().await {
                let performed =
                    std::panic::AssertUnwindSafe(operator.perform(&op, &mut rng)).catch_unwind().await;
                match performed {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(operation = op.index, action = op.operation.name(), error = %e, "An operation failed; the schedule goes on.");
                    }
                    // A defect of slotstorm: recorded as a run error; the cluster is left to
                    // the run's heal step rather than to more operations.
                    Err(panic) => {
                        let why = crate::history::panic_message(panic.as_ref());
                        tracing::error!(operation = op.index, panic = %why, "An operation panicked; skipping the rest.");
                        operator.cut_short(&format!("panicked ({why})")).await;
                        let error = format!("panicked ({why}): the operations after it were skipped");
                        emit(
                            &operator.events,
                            operator.clock.now_us(),
                            EventKind::OperationError { index: op.index, error },
                        );
                        break;
                    }
                }
            }
        })
    };
    let mut active: Vec<Active> = Vec::new();
    let mut next = schedule.into_iter().peekable();
    loop {
        let next_inject = next.peek().map(Scheduled::at);
        let next_heal = active.iter().map(|a| a.heal_at).min();
        let Some(when) = [next_inject, next_heal].into_iter().flatten().min() else { break };
        if !stop.sleep_until(clock.start + when).await {
            break;
        }
        // The cluster as it is now: an operation may have added or removed a node meanwhile.
        let cluster = operator.cluster();
        // Heals due now go first, so a repeat never meets its predecessor still in force.
        if next_heal == Some(when) {
            let i = active.iter().position(|a| a.heal_at == when).expect("a heal is due");
            let a = active.remove(i);
            heal(&docker, &cluster, &a, &clock, &events).await;
            continue;
        }
        let fault = match next.next().expect("an injection is due") {
            Scheduled::Fault(fault) => fault,
            Scheduled::Operation(op) => {
                let _ = ops_tx.send(op);
                continue;
            }
        };
        current.store(fault.index, std::sync::atomic::Ordering::Relaxed);
        let resolved = match resolve(&fault.target, &cluster, &mut rng).await {
            Ok(r) => r,
            Err(error) => {
                emit(&events, clock.now_us(), EventKind::FaultError { fault: fault.index, error });
                continue;
            }
        };
        let began_us = clock.now_us();
        let targets: Vec<String> = resolved.nodes.iter().map(|n| n.node.clone()).collect();
        match inject(&docker, &cluster, &fault.action, &resolved).await {
            Ok(()) => {
                emit(
                    &events,
                    clock.now_us(),
                    EventKind::FaultInjected {
                        began_us,
                        fault: fault.index,
                        repeat: fault.repeat,
                        action: fault.action.name().into(),
                        targets: targets.clone(),
                        primaries: resolved.primaries.clone(),
                        slots: resolved.slots.clone(),
                    },
                );
                if PANIC_AFTER_INJECT.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    panic!("test hook: the nemesis panics mid-fault");
                }
                if let Some(heal_at) = fault.heal_at {
                    active.push(Active {
                        fault: fault.index,
                        repeat: fault.repeat,
                        action: fault.action,
                        heal_at,
                        targets,
                    });
                }
            }
            Err(e) => {
                emit(
                    &events,
                    clock.now_us(),
                    EventKind::FaultError { fault: fault.index, error: e.to_string() },
                );
                // Half-injected faults (a partition applied to some nodes) are healed now.
                let a = Active {
                    fault: fault.index,
                    repeat: fault.repeat,
                    action: fault.action,
                    heal_at: when,
                    targets,
                };
                heal(&docker, &cluster, &a, &clock, &events).await;
            }
        }
    }
    drop(ops_tx);
    tokio::select! {
        _ = &mut operations => {}
        () = stop.wait() => {
            operations.abort();
            operator.cut_short("cut short: the run was stopped").await;
        }
        () = tokio::time::sleep(OPERATIONS_GRACE) => {
            operations.abort();
            let why = format!("cut short: still running {}s after the schedule's last step", OPERATIONS_GRACE.as_secs());
            operator.cut_short(&why).await;
        }
    }
    let cluster = operator.cluster();
    for a in active.drain(..).rev() {
        heal(&docker, &cluster, &a, &clock, &events).await;
    }
    heal_all(&docker, &cluster).await;
}

async fn inject(
    docker: &Docker,
    cluster: &DockerCluster,
    action: &Action,
    r: &Resolved,
) -> Result<(), inject::InjectError> {
    let others: Vec<IpAddr> = cluster
        .nodes
        .iter()
        .filter(|n| !r.nodes.iter().any(|t| t.node == n.node))
        .map(|n| n.addr.ip())
        .collect();
    // Every target at once: a fault on all primaries hits them together.
    let one = |n: &'_ crate::backend::docker::NodeContainer| {
        let others = &others;
        let (c, addr) = (n.container.clone(), n.addr);
        async move {
            let c = c.as_str();
            match *action {
                Action::Kill => inject::signal(docker, c, "SIGKILL").await,
                Action::Stop => inject::stop(docker, c, Duration::from_secs(10)).await,
                Action::ShutdownFailover => inject::shutdown_failover(docker, c, addr).await,
                Action::Restart => {
                    inject::stop(docker, c, Duration::from_secs(10)).await?;
                    inject::start(docker, c).await
                }
                Action::Pause => inject::pause(docker, c).await,
                Action::Sigstop => inject::signal(docker, c, "SIGSTOP").await,
                Action::Isolate => inject::isolate(docker, c).await,
                Action::Partition => inject::cut_from(docker, c, others).await,
                Action::Loss { probability } => inject::loss(docker, c, probability).await,
                Action::Bandwidth { bits_per_s } => inject::bandwidth(docker, c, bits_per_s).await,
                Action::Delay { delay, jitter } => inject::delay(docker, c, delay, jitter).await,
            }
        }
    };
    futures_util::future::try_join_all(r.nodes.iter().map(one)).await.map(drop)
}

async fn heal(docker: &Docker, cluster: &DockerCluster, a: &Active, clock: &RunClock, events: &EventLog) {
    let mut error = None;
    for name in &a.targets {
        let Some(n) = cluster.nodes.iter().find(|n| &n.node == name) else { continue };
        let c = n.container.as_str();
        let r = match a.action {
            Action::Kill | Action::Stop | Action::ShutdownFailover => inject::start(docker, c).await,
            Action::Restart => Ok(()),
            Action::Pause => inject::unpause(docker, c).await,
            Action::Sigstop => inject::signal(docker, c, "SIGCONT").await,
            Action::Isolate
            | Action::Partition
            | Action::Loss { .. }
            | Action::Bandwidth { .. }
            | Action::Delay { .. } => inject::heal_network(docker, c).await,
        };
        if let Err(e) = r {
            error.get_or_insert(e.to_string());
        }
    }
    let now = clock.now_us();
    match error {
        None => emit(
            events,
            now,
            EventKind::FaultHealed {
                fault: a.fault,
                repeat: a.repeat,
                action: a.action.name().into(),
                targets: a.targets.clone(),
            },
        ),
        Some(error) => {
            emit(events, now, EventKind::FaultError { fault: a.fault, error: format!("healing: {error}") })
        }
    }
}

/// Undo anything a fault can leave on any node of `cluster`. Safe to call at any time and
/// more than once; errors are logged, not returned, because it runs on exit paths.
pub async fn heal_all(docker: &Docker, cluster: &DockerCluster) {
    let heals = cluster.nodes.iter().map(|n| async move {
        if let Err(e) = inject::heal_node(docker, &n.container).await {
            tracing::warn!(container = %n.container, error = %e, "Could not heal a node on the way out.");
        }
    });
    futures_util::future::join_all(heals).await;
}
