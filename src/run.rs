//! One run, start to end: bring the cluster up (or reach an external one), drive the
//! workload with a live progress line, write the results folder, take the cluster down.
//! Every exit path (normal end, error, Ctrl-C/SIGTERM, panic) writes what was measured and
//! removes what the run started.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use serde_json::json;

use crate::backend::docker::DockerCluster;
use crate::backend::docker::{self as docker_backend, RunId};
use crate::backend::{self, BackendError};
use crate::check::lost_writes::{self, LostWrites};
use crate::check::rate_limit::{self, OverAdmission};
use crate::check::slo::Verdict;
use crate::check::{self, failover::FailoverConfig, failover::FaultReport};
use crate::cluster::{self, ClusterError};
use crate::driver::keys::KeySpace;
use crate::driver::readback;
use crate::driver::render::Renderer;
use crate::driver::router::{Router, TableChange};
use crate::driver::{self, DriverPlan, RunClock, Stop};
use crate::embedded::{self, UpError};
use crate::history::{Aggregator, EventKind, History};
use crate::nemesis::{self, inject};
use crate::observe::{self, EventLog, ObserverConfig, Samples, logs};
use crate::report::{self, RunMeta, Shard};
use crate::shutdown;
use crate::spec::{Action, ClusterTarget, Workload};

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
    /// Faults that could not be injected or healed, one line each: the run did not test
    /// what its chaos file asked, so its verdicts cannot be trusted (exit code 3).
    pub chaos_errors: Vec<String>,
}

/// The cluster a run drives, once it is there.
struct Target {
    seeds: Vec<SocketAddr>,
    names: HashMap<SocketAddr, String>,
    desc: serde_json::Value,
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
    let clock_wall = std::time::SystemTime::now();
    let mut teardown = Teardown { run: None };
    let target = match &workload.cluster {
        ClusterTarget::Embedded(spec) => {
            let d = docker_backend::connect().await?;
            let run = run_id(&workload.name, clock_wall);
            eprintln!(
                "starting cluster {run}: {} primaries × {} replicas, cluster-node-timeout {} ms",
                spec.layout.masters,
                spec.layout.replicas,
                spec.node_timeout.as_millis()
            );
            let up = tokio::select! {
                up = embedded::up(&d, &run, spec) => up?,
                _ = wait_stop(&stop) => {
                    embedded::down(&d, &run).await?;
                    let name = signal.lock().expect("signal lock").unwrap_or("a stop");
                    return Err(RunError::Interrupted(name));
                }
            };
            teardown.run = Some(run.clone());
            eprintln!("cluster {run} up in {:.2}s", up.elapsed.as_secs_f64());
            let desc = json!({
                "kind": "embedded",
                "run": run.as_str(),
                "masters": spec.layout.masters,
                "replicas": spec.layout.replicas,
                "node_timeout_ms": spec.node_timeout.as_millis() as u64,
                "appendonly": spec.appendonly,
                "require_full_coverage": spec.require_full_coverage,
                "config": spec.extra,
                "image": up.image.tag,
                "nodes": up.cluster.nodes.iter().map(|n| json!({"node": n.node, "addr": n.addr.to_string()})).collect::<Vec<_>>(),
            });
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
            desc: json!({"kind": "external", "seeds": seeds}),
            password: password.clone(),
            embedded: None,
        },
    };
    let docker = target.embedded.as_ref().map(|(d, _)| d.clone());
    let outcome = drive_and_record(workload, opts, target, stop, &signal, &hurry).await;
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

async fn drive_and_record(
    workload: &Workload,
    opts: &RunOptions,
    target: Target,
    stop: Arc<Stop>,
    signal: &Arc<Mutex<Option<&'static str>>>,
    hurry: &Stop,
) -> Result<RunReport, RunError> {
    let Target { seeds, names, desc: cluster_desc, password, embedded } = target;
    let seeds = &seeds[..];
    let names = &names;
    // An external cluster that cannot be reached is the user's setup (exit 2); an embedded
    // one just brought up is the harness's.
    let survey = cluster::survey(seeds).await.map_err(|e| match embedded {
        Some(_) => RunError::Cluster(e),
        None => RunError::Unreachable(e),
    })?;
    let shards = survey
        .seed_view
        .nodes
        .iter()
        .filter(|n| n.is_primary() && !n.slots.is_empty())
        .map(|n| Shard {
            name: n.addr.parse().ok().and_then(|a| names.get(&a).cloned()).unwrap_or_else(|| n.addr.clone()),
            ranges: n.slots.iter().map(|r| (r.start, r.end)).collect(),
        })
        .collect();
    let redis_version = nodes_version(seeds).await;
    let router = Router::connect(seeds, workload.client.timeout, password).await?;
    let plan = Arc::new(driver_plan(workload));
    let live: driver::Live = Arc::new(Mutex::new(Aggregator::new(plan.renderer.len()).0));
    let clock = RunClock::start();
    let dir = match &opts.exact_dir {
        Some(dir) => std::fs::create_dir_all(dir.parent().unwrap_or(dir))
            .and_then(|()| std::fs::create_dir(dir))
            .map(|()| dir.clone())
            .map_err(|source| RunError::Results { dir: dir.clone(), source })?,
        None => report::new_results_dir(&opts.results_root, &workload.name, clock.started_at)
            .map_err(|source| RunError::Results { dir: opts.results_root.clone(), source })?,
    };
    eprintln!(
        "driving {} for {:.0}s (warm-up {:.0}s); results in {}",
        workload.name,
        plan.duration.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        dir.display()
    );
    let events: EventLog = Arc::default();
    // The driver's own slot table: when it learned of each change (kept until the load
    // stops; changes are few, MOVED ones coalesced).
    let (table_tx, mut table_changes) = tokio::sync::mpsc::unbounded_channel();
    router.report_changes(table_tx);
    let samples: Samples = Arc::default();
    let observers_stop = Arc::new(Stop::default());
    let mut background = Vec::new();
    let mut nemesis = None;
    if let Some((docker, cluster)) = &embedded {
        let ids: HashMap<String, String> = survey
            .seed_view
            .nodes
            .iter()
            .filter_map(|n| Some((n.id.0.clone(), names.get(&n.addr.parse().ok()?)?.clone())))
            .collect();
        // Operations may add and remove nodes; the observer follows the operator's roster.
        let operator = workload
            .chaos
            .as_ref()
            .map(|_| nemesis::Operator::new(docker.clone(), cluster.clone(), clock, events.clone()));
        let roster = operator.clone().map(|op| -> observe::Roster {
            Arc::new(move || op.cluster().nodes.iter().map(|n| (n.node.clone(), n.addr)).collect())
        });
        let nodes: Vec<_> = cluster.nodes.iter().map(|n| (n.node.clone(), n.addr)).collect();
        let config = ObserverConfig {
            nodes: nodes.clone(),
            poll: OBSERVER_POLL,
            sample: workload.load.interval,
            roster: roster.clone(),
        };
        let observer =
            observe::observe(config, clock, events.clone(), samples.clone(), observers_stop.clone());
        background.push(tokio::spawn(observer));
        // Every node's log, added nodes' too.
        let followers = {
            let (docker, run, events, stop) =
                (docker.clone(), cluster.run.clone(), events.clone(), observers_stop.clone());
            async move {
                observe::per_node(&nodes, roster, &stop, |node, _| {
                    let container = run.container(node);
                    logs::follow(docker.clone(), node.into(), container, ids.clone(), clock, events.clone())
                })
                .await;
            }
        };
        background.push(tokio::spawn(followers));
        if let (Some(chaos), Some(op)) = (&workload.chaos, operator) {
            let schedule = chaos.schedule(plan.duration);
            nemesis = Some((nemesis::spawn(op.clone(), schedule, chaos.seed, stop.clone()), op));
        }
    }
    let progress = tokio::spawn(progress(live.clone(), plan.clone(), clock, opts.progress_label.clone()));
    let mut history = driver::drive(plan.clone(), router.clone(), clock, stop.clone(), live).await;
    progress.abort();
    router.flush_table_changes();
    // The nemesis heals by the end of the run on its own (or at once after a stop); wait
    // for it, so no fault outlives the run.
    // Operations may add and remove nodes: from here on, the cluster is what it is now.
    let mut seeds = seeds.to_vec();
    let mut names = names.clone();
    if let Some((n, op)) = nemesis {
        let _ = n.await;
        seeds = op.cluster().addrs();
        // Operations may have added nodes: name them as the operator does.
        names.extend(op.cluster().names());
        // After Ctrl-C the user wants out: the repair is left to `slotstorm cluster fix`.
        let stopped = signal.lock().expect("signal lock").is_some();
        if workload.chaos.as_ref().is_some_and(|c| !c.operations.is_empty()) && !stopped {
            repair_slots(&seeds, &clock, &events).await;
        }
    }
    let seeds = &seeds[..];
    observers_stop.stop();
    for task in background {
        task.abort();
    }
    record_table_changes(&mut table_changes, &clock, &names, &events);
    history.events = std::mem::take(&mut *events.lock().expect("event log lock"));
    history.events.sort_by_key(|e| e.at_us);
    let faults = check::failover::fault_reports(&history, &FailoverConfig::default());
    let chaos_errors = check::chaos_errors(&history.events);
    let schedule = check::schedule::schedule_report(&history, plan.pacing, plan.in_flight);
    let operations = check::operations::operation_reports(&history);
    let samples = std::mem::take(&mut *samples.lock().expect("samples lock"));
    let interrupted = *signal.lock().expect("signal lock");
    // After a signal the user wants out: the cluster gets a short while to settle, and a
    // second signal skips the read-back (lost writes are then left unjudged).
    let settle = if interrupted.is_some() { SETTLE_AFTER_SIGNAL } else { SETTLE_TIMEOUT };
    let lost_writes = tokio::select! {
        judged = check_lost_writes(seeds, &router, &plan.renderer, &history, &faults, settle) => judged,
        () = wait_stop(hurry) => Vec::new(),
    };
    let meta = RunMeta {
        workload: workload.name.clone(),
        workload_path: workload.path.display().to_string(),
        workload_toml: std::fs::read_to_string(&workload.path).unwrap_or_default(),
        redis_version,
        cluster: cluster_desc,
        shards,
        interrupted: interrupted.map(|s| format!("interrupted by {s}")),
    };
    let over_admissions: Vec<OverAdmission> = plan
        .renderer
        .limiter_ops()
        .into_iter()
        .map(|(kind, name, limit, window)| rate_limit::check(&history.ops, kind, &name, limit, window))
        .collect();
    let measured = check::slo::Measured {
        lost_writes: (!lost_writes.is_empty()).then(|| lost_writes.iter().map(LostWrites::lost).sum()),
        over_admissions: (!over_admissions.is_empty())
            .then(|| over_admissions.iter().map(|o| o.over_windows).sum()),
        send_lag_max_us: Some(schedule.send_lag_max_us),
    };
    let verdicts = check::slo::evaluate(&workload.slo, &history, &faults, &measured);
    let findings = report::Findings {
        schedule: &schedule,
        faults: &faults,
        operations: &operations,
        lost_writes: &lost_writes,
        over_admissions: &over_admissions,
        verdicts: &verdicts,
    };
    let results = report::write_results(&dir, &history, &meta, &findings, &samples)
        .and_then(|()| report::write_junit(&dir.join("junit.xml"), &workload.name, &verdicts))
        .and_then(|()| std::fs::write(dir.join("slo.md"), report::verdicts_markdown(&verdicts)));
    results.map_err(|source| RunError::Results { dir: dir.clone(), source })?;
    report::build_reports(&dir)?;
    Ok(RunReport {
        dir,
        history,
        interrupted,
        schedule,
        faults,
        operations,
        lost_writes,
        over_admissions,
        verdicts,
        chaos_errors,
    })
}

/// What the nodes say they run (`INFO server`), from the first seed that answers: an
/// external cluster's nodes run what they run, not what this machine has installed. Valkey
/// reports its own version beside the Redis one it is compatible with.
async fn nodes_version(seeds: &[SocketAddr]) -> String {
    for &seed in seeds {
        let Ok(mut node) = cluster::node::Node::connect(seed, cluster::node::ADMIN_TIMEOUT).await else {
            continue;
        };
        let Ok(info) = node.info("server").await else { continue };
        return match (info.get("valkey_version"), info.get("redis_version")) {
            (Some(v), _) => format!("valkey {v}"),
            (None, Some(v)) => v.clone(),
            (None, None) => continue,
        };
    }
    "unknown (no node answered INFO server)".to_string()
}

/// Record the driver's slot-table changes received so far as `TableChanged` events at their
/// run time, naming nodes as the run does (an address it has no name for stands as itself).
fn record_table_changes(
    changes: &mut tokio::sync::mpsc::UnboundedReceiver<TableChange>,
    clock: &RunClock,
    names: &HashMap<SocketAddr, String>,
    events: &EventLog,
) {
    while let Ok(change) = changes.try_recv() {
        let at_us = change.at.saturating_duration_since(clock.start).as_micros() as u64;
        let mut owners: Vec<(String, u32)> = change
            .owners
            .iter()
            .map(|(a, n)| (names.get(a).cloned().unwrap_or_else(|| a.to_string()), *n))
            .collect();
        owners.sort();
        observe::emit(events, at_us, EventKind::TableChanged { source: change.source.name().into(), owners });
    }
}

/// The heal step after topology operations: once the cluster has settled, repair slots an
/// operation left open (or uncovered) as `slotstorm cluster fix` does, and record it.
async fn repair_slots(seeds: &[SocketAddr], clock: &RunClock, events: &EventLog) {
    if let Err(e) = cluster::wait_agreed(seeds, SETTLE_TIMEOUT).await {
        tracing::warn!(error = %e, "The cluster has not settled after the operations; checking its slots anyway.");
    }
    let health = match cluster::fix::check_slots(seeds).await {
        Ok(h) if h.is_clean() => return,
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "Could not check the slots after the operations.");
            return;
        }
    };
    let open: Vec<u16> = health.open.iter().map(|o| o.slot.get()).collect();
    let uncovered: Vec<(u16, u16)> = health.uncovered.iter().map(|r| (r.start, r.end)).collect();
    eprintln!("heal: {health}; repairing as `slotstorm cluster fix` does");
    let detail = match cluster::fix::fix(seeds, &cluster::fix::FixOptions::default()).await {
        Ok(r) => format!(
            "repaired {health}: {} closed, {} moves finished, {} ranges assigned, {} keys moved",
            r.closed.len(),
            r.finished.len(),
            r.assigned.len(),
            r.keys_moved
        ),
        Err(e) => format!("could not repair {health}: {e}"),
    };
    eprintln!("heal: {detail}");
    observe::emit(events, clock.now_us(), crate::history::EventKind::SlotsFixed { open, uncovered, detail });
}

/// Read back every set-full op's sets once the cluster has settled, and judge them.
async fn check_lost_writes(
    seeds: &[SocketAddr],
    router: &Arc<Router>,
    renderer: &Renderer,
    history: &History,
    faults: &[FaultReport],
    settle: Duration,
) -> Vec<LostWrites> {
    let ops = renderer.set_full_ops();
    if ops.is_empty() {
        return Vec::new();
    }
    // Faults are healed by now; a failover may still be settling. Reading too early would
    // find keys on a node about to be demoted, so wait for agreement (but read anyway
    // after the wait: keys that cannot be read are left unjudged, not lost).
    if let Err(e) = cluster::wait_agreed(seeds, settle).await {
        eprintln!("reading back for the lost-writes check although the cluster has not settled: {e}");
    }
    router.refresh_now().await;
    let mut out = Vec::new();
    for (kind, name) in ops {
        let read = readback::read_sets(router.clone(), renderer, kind, &history.ops).await;
        out.push(lost_writes::check(&history.ops, kind, &name, &read, faults));
    }
    out
}

async fn wait_stop(stop: &Stop) {
    while !stop.stopped() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

fn driver_plan(w: &Workload) -> DriverPlan {
    let l = &w.load;
    DriverPlan {
        pacing: l.pacing,
        in_flight: w.in_flight(),
        connections: l.connections,
        duration: l.warmup + l.duration,
        warmup: l.warmup,
        interval: l.interval,
        seed: l.seed,
        policy: w.client,
        keys: KeySpace::new(
            w.keys.count,
            w.keys.distribution.clone(),
            w.keys.value_size.min,
            w.keys.value_size.max,
        ),
        renderer: Renderer::new(&w.ops),
    }
}

/// A live line on a terminal, one plain line per interval otherwise (CI logs).
async fn progress(live: driver::Live, plan: Arc<DriverPlan>, clock: RunClock, label: Option<ProgressLabel>) {
    let tty = std::io::stderr().is_terminal();
    let total = plan.duration.as_secs_f64();
    let mut shown = 0u32;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let elapsed = clock.start.elapsed();
        // An interval is shown once the next one is well under way, when every worker has
        // reported it.
        let ready = (elapsed.saturating_sub(Duration::from_millis(300)).as_micros()
            / plan.interval.as_micros().max(1)) as u32;
        if ready <= shown {
            continue;
        }
        let line = {
            let mut agg = live.lock().expect("aggregator lock");
            agg.drain();
            let Some(stats) = agg.interval(ready - 1) else {
                shown = ready;
                continue;
            };
            let mut all = crate::history::OpStats::default();
            for s in stats {
                all.merge(s);
            }
            let secs = plan.interval.as_secs_f64();
            format!(
                "[{:>5.1}s/{total:.0}s] {:>8.0} ops/s  {:>6} errors  p99 {:>8.3} ms  max {:>8.3} ms",
                elapsed.as_secs_f64().min(total),
                all.count() as f64 / secs,
                all.errors(),
                all.latency.value_at_quantile(0.99) as f64 / 1000.0,
                all.latency.max() as f64 / 1000.0,
            )
        };
        shown = ready;
        let line = match &label {
            Some(label) => format!("{} {line}", (label.0)(elapsed)),
            None => line,
        };
        if tty {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    }
}
