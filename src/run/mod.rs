//! One run, start to end: bring the cluster up (or reach an external one), drive the
//! workload with a live progress line, write the results folder, take the cluster down.
//! Every exit path (normal end, error, Ctrl-C/SIGTERM, panic) writes what was measured and
//! removes what the run started.
//!
//! Its steps, in files of their own: reaching the target and tearing it down (here),
//! driving with the nemesis and observers beside and writing the results (`record`), the
//! heal, repair and read-back after the load (`finish`), and how the run ended (`ending`).

mod ending;
mod finish;
mod record;

pub use self::ending::{Ending, exit};
use self::record::drive_and_record;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::report::model::{ClusterInfo, NodeAddr};
use bollard::Docker;

use crate::backend::docker::DockerCluster;
use crate::backend::docker::{self as docker_backend, RunId};
use crate::backend::{self, BackendError};
use crate::check::lost_writes::LostWrites;
use crate::check::rate_limit::OverAdmission;
use crate::check::slo::Verdict;
use crate::check::{self, failover::FaultReport};
use crate::clock::Stop;
use crate::cluster::ClusterError;
use crate::driver;
use crate::embedded::{self, UpError};
use crate::history::History;
use crate::nemesis::inject;
use crate::report;
use crate::shutdown;
use crate::spec::{Action, ClientLibrary, ClusterTarget, Workload};

/// How long to wait for the cluster to settle after the faults before reading data back.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the cluster may settle before the read-back once a signal has cut the run short.
const SETTLE_AFTER_SIGNAL: Duration = Duration::from_secs(5);

/// How often the observer polls every node.
pub const OBSERVER_POLL: Duration = Duration::from_millis(50);

/// Options of `slotstorm run` beyond the workload file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Leave the embedded cluster running afterwards.
    pub keep: bool,
    /// Where results folders go (`results/`).
    pub results_root: PathBuf,
    /// Write the results into exactly this folder (created; it must not exist) instead of a
    /// new `<time>-<name>` folder under `results_root`: `compare` places its runs so.
    pub exact_dir: Option<PathBuf>,
    /// Put in front of every progress line (`compare` says which cell is running).
    pub progress_label: Option<ProgressLabel>,
    /// Keep every op in the history, not only those a check needs: memory and the saved
    /// history then grow with the run (`--all-ops`, for debugging and for tests that look
    /// at every op).
    pub all_ops: bool,
}

/// Text for the front of a run's progress lines, given how long the load has been running.
#[derive(Clone)]
pub struct ProgressLabel(pub Arc<dyn Fn(Duration) -> String + Send + Sync>);

impl std::fmt::Debug for ProgressLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressLabel")
    }
}

/// What a run is stopped by: set it to end the load early; `signal` names what did.
#[derive(Clone, Default)]
pub struct StopSignal {
    /// The stop every part of the run watches.
    pub stop: Arc<Stop>,
    /// The signal's name, once one arrived.
    pub signal: Arc<Mutex<Option<&'static str>>>,
    /// Set by a second signal: skip what is left to wait for (the cluster settling, the
    /// read-back) and go straight to writing results and removing the cluster.
    pub hurry: Arc<Stop>,
}

impl StopSignal {
    /// Watch for SIGINT/SIGTERM: on one, stop and remember its name. Abort the task
    /// returned to stop watching.
    pub fn watch_signals(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut signals = shutdown::Signals::new();
            let name = signals.next().await;
            eprintln!(
                "{name}: stopping the load, writing results and cleaning up… (again to skip the checks)"
            );
            *this.signal.lock().expect("signal lock") = Some(name);
            this.stop.stop();
            let again = signals.next().await;
            eprintln!("{again} again: skipping the settle wait and the read-back; removing the cluster");
            this.hurry.stop();
        })
    }

    /// The signal that stopped the run, if one did.
    pub fn signalled(&self) -> Option<&'static str> {
        *self.signal.lock().expect("signal lock")
    }
}

/// Why a run could not happen or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The cluster could not be brought up.
    #[error(transparent)]
    Up(#[from] UpError),
    /// Docker failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The cluster could not be reached.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The external cluster named by the workload could not be reached.
    #[error("the cluster at the workload's seeds cannot be reached: {0}")]
    Unreachable(ClusterError),
    /// A seed address is malformed.
    #[error("{0}")]
    Seeds(String),
    /// The results could not be written.
    #[error("writing results to {dir}: {source}")]
    Results {
        /// The folder.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The plots or the HTML report could not be built (the data files are written).
    #[error(transparent)]
    Report(#[from] report::ReportError),
    /// The workload asks for something this machine or target cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// The client library's process failed to start or to find the cluster.
    #[error(transparent)]
    Library(driver::library::LibraryError),
    /// Interrupted before the load started; nothing was measured.
    #[error("interrupted by {0} before the load started; nothing left behind")]
    Interrupted(&'static str),
}

impl RunError {
    /// True when the user's input or this machine's setup is at fault (exit code 2): an
    /// unreachable engine, a taken name, a malformed seed, what cannot be done here.
    pub fn is_setup(&self) -> bool {
        match self {
            RunError::Up(UpError::Backend(b)) | RunError::Backend(b) => b.is_setup(),
            RunError::Seeds(_) | RunError::Unsupported(_) | RunError::Unreachable(_) => true,
            _ => false,
        }
    }
}

/// What a finished (or interrupted) run leaves.
pub struct RunReport {
    /// The results folder.
    pub dir: PathBuf,
    /// The history.
    pub history: History,
    /// The signal that cut the run short, if one did.
    pub interrupted: Option<&'static str>,
    /// How the driver kept its schedule.
    pub schedule: check::schedule::ScheduleReport,
    /// Each fault, measured.
    pub faults: Vec<FaultReport>,
    /// Each topology operation, measured.
    pub operations: Vec<check::operations::OperationReport>,
    /// The lost-writes verdict of each set-full op (`SADD <key> $uid`).
    pub lost_writes: Vec<LostWrites>,
    /// The over-admission verdict of each rate-limiter op.
    pub over_admissions: Vec<OverAdmission>,
    /// The workload's SLOs, judged.
    pub verdicts: Vec<Verdict>,
    /// What went wrong in slotstorm itself or its chaos, one line each (faults that could not
    /// be injected or healed, driver workers that panicked): the run did not test what it was
    /// asked to, so its verdicts cannot be trusted (exit code 3).
    pub run_errors: Vec<String>,
}

/// The cluster a run drives, once it is there.
struct Target {
    seeds: Vec<SocketAddr>,
    names: HashMap<SocketAddr, String>,
    desc: crate::report::model::ClusterInfo,
    password: Option<String>,
    /// The containers, for an embedded cluster: what the nemesis breaks and the observer's
    /// log reader follows.
    embedded: Option<(Docker, DockerCluster)>,
}

/// Removes an embedded cluster when dropped without [`Teardown::disarm`]: the path a panic
/// takes. Normal ends tear down explicitly (and report it).
struct Teardown {
    run: Option<RunId>,
}

impl Teardown {
    fn disarm(&mut self) -> Option<RunId> {
        self.run.take()
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let Some(run) = self.run.take() else { return };
        // Drop may run on a runtime thread while unwinding: use a thread and runtime of
        // our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let docker = docker_backend::connect().await.ok()?;
                embedded::down(&docker, &run).await.ok()
            })
        })
        .join();
    }
}

/// Run `workload`.
///
/// # Errors
/// [`RunError`] when the cluster cannot be had or results cannot be written; a run cut short
/// by a signal after the load began is not an error (see [`RunReport::interrupted`]).
pub async fn run(workload: &Workload, opts: &RunOptions) -> Result<RunReport, RunError> {
    let stop = StopSignal::default();
    let watcher = stop.watch_signals();
    let result = run_stoppable(workload, opts, &stop).await;
    watcher.abort();
    result
}

/// Run `workload` until its end or until `stop` is set (by a signal watcher the caller
/// owns: `compare` keeps one across all its runs).
///
/// # Errors
/// As [`run`].
pub async fn run_stoppable(
    workload: &Workload,
    opts: &RunOptions,
    stop: &StopSignal,
) -> Result<RunReport, RunError> {
    let (signal, hurry, stop) = (stop.signal.clone(), stop.hurry.clone(), stop.stop.clone());
    preflight(workload)?;
    let python = match workload.client.library {
        ClientLibrary::Slotstorm => None,
        library => {
            Some(driver::library::find(library).await.map_err(|e| RunError::Unsupported(e.to_string()))?)
        }
    };
    let clock_wall = std::time::SystemTime::now();
    let mut teardown = Teardown { run: None };
    let target = match &workload.cluster {
        ClusterTarget::Embedded(spec) => {
            let d = docker_backend::connect().await?;
            let run = run_id(&workload.name, clock_wall);
            eprintln!("starting cluster {run}: {}", spec.shape());
            let up = tokio::select! {
                up = embedded::up(&d, &run, spec) => up?,
                () = stop.wait() => {
                    embedded::down(&d, &run).await?;
                    let name = signal.lock().expect("signal lock").unwrap_or("a stop");
                    return Err(RunError::Interrupted(name));
                }
            };
            teardown.run = Some(run.clone());
            eprintln!("cluster {run} up in {:.2}s", up.elapsed.as_secs_f64());
            let desc = ClusterInfo::Embedded {
                run: run.as_str().into(),
                engine: spec.engine,
                masters: spec.layout.masters,
                replicas: spec.layout.replicas,
                node_timeout_ms: spec.node_timeout.as_millis() as u64,
                appendonly: spec.appendonly,
                require_full_coverage: spec.require_full_coverage,
                config: spec.extra.iter().cloned().collect(),
                image: up.image.tag.clone(),
                nodes: up
                    .cluster
                    .nodes
                    .iter()
                    .map(|n| NodeAddr { node: n.node.clone(), addr: n.addr.to_string() })
                    .collect(),
            };
            Target {
                seeds: up.cluster.addrs(),
                names: up.cluster.names(),
                desc,
                password: None,
                embedded: Some((d, up.cluster)),
            }
        }
        ClusterTarget::External { seeds, password } => Target {
            seeds: backend::resolve_seeds(seeds).map_err(RunError::Seeds)?,
            names: HashMap::new(),
            desc: ClusterInfo::External { seeds: seeds.clone() },
            password: password.clone(),
            embedded: None,
        },
    };
    let docker = target.embedded.as_ref().map(|(d, _)| d.clone());
    let outcome = drive_and_record(workload, opts, target, python, stop, &signal, &hurry).await;
    if let (Some(d), Some(run)) = (&docker, teardown.disarm()) {
        if opts.keep {
            eprintln!("keeping cluster {run} (slotstorm cluster down --name {run} removes it)");
        } else {
            let start = std::time::Instant::now();
            // A failed teardown does not throw away what the run measured: say so loudly and
            // keep the run's own outcome.
            match embedded::down(d, &run).await {
                Ok(_) => eprintln!("cluster {run} down in {:.2}s", start.elapsed().as_secs_f64()),
                Err(e) => eprintln!(
                    "error: could not remove cluster {run}: {e}; `slotstorm clean` removes what is left"
                ),
            }
        }
    }
    outcome
}

/// Refuse, before anything starts, what cannot be done here.
fn preflight(workload: &Workload) -> Result<(), RunError> {
    let Some(chaos) = &workload.chaos else { return Ok(()) };
    if matches!(workload.cluster, ClusterTarget::External { .. }) {
        return Err(RunError::Unsupported(format!(
            "{}: chaos ({}) needs an embedded cluster: slotstorm injects faults into the containers it made; remove `chaos` or the external [cluster]",
            workload.path.display(),
            chaos.path.display()
        )));
    }
    if chaos.faults.iter().any(|f| matches!(f.action, Action::Delay { .. })) && !inject::netem_available() {
        return Err(RunError::Unsupported(format!(
            "{}: `delay` needs the kernel's netem qdisc (sch_netem), which this kernel does not have; use `bandwidth` or `loss`, or run on a kernel with netem",
            chaos.path.display()
        )));
    }
    Ok(())
}

/// The run id (and container prefix) for a run of `name` started at `at`: its time, its
/// name and a random tag, so runs started in the same second never share names.
fn run_id(name: &str, at: std::time::SystemTime) -> RunId {
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .skip(4)
        .take(10)
        .collect();
    let clean: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .take(20)
        .collect();
    let tag: u16 = rand::random();
    RunId::new(&format!("{stamp}-{clean}-{tag:04x}"))
        .unwrap_or_else(|_| RunId::new(&format!("{stamp}-{tag:04x}")).expect("digits are a valid id"))
}
