//! The run proper, in its steps: reach the cluster ([`reach`]), start the tasks beside the
//! driver ([`start_beside`]: observer, log followers, nemesis), drive with a progress line,
//! heal and let the cluster settle ([`heal_and_settle`]), judge ([`judge`]) and write the
//! results folder ([`write`]).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;

use crate::backend::docker::DockerCluster;
use crate::check::failover::FaultReport;
use crate::check::operations::OperationReport;
use crate::check::schedule::ScheduleReport;
use crate::check::slo::Verdict;
use crate::driver::router::TableChange;
use crate::history::History;

use crate::check;
use crate::check::lost_writes::LostWrites;
use crate::check::rate_limit::{self, OverAdmission};
use crate::clock::{RunClock, Stop};
use crate::cluster::{self};
use crate::driver::keys::KeySpace;
use crate::driver::render::Renderer;
use crate::driver::router::Router;
use crate::driver::{self, DriverPlan, library};
use crate::history::store::journal::{Journal, Start};
use crate::history::{Aggregator, EventKind, Recording};
use crate::history::{EventLog, emit};
use crate::nemesis;
use crate::observe::{self, ObserverConfig, Samples, logs};
use crate::report::model::ClusterInfo;
use crate::report::{self, RunMeta, Shard};
use crate::spec::{ClientLibrary, Workload};

use super::finish::{check_lost_writes, record_table_changes, repair_slots};
use super::{
    OBSERVER_POLL, ProgressLabel, RunError, RunOptions, RunReport, SETTLE_AFTER_SIGNAL, SETTLE_TIMEOUT,
    Target,
};

/// Drive the workload against `target` with the nemesis, observers and log followers beside
/// it, then check and write the results folder: the steps below, in order.
pub(super) async fn drive_and_record(
    workload: &Workload,
    opts: &RunOptions,
    target: Target,
    python: Option<PathBuf>,
    stop: Arc<Stop>,
    signal: &Arc<Mutex<Option<&'static str>>>,
    hurry: &Stop,
) -> Result<RunReport, RunError> {
    let Target { seeds, names, desc, password, embedded } = target;
    let (mut ready, journal) =
        reach(workload, opts, &seeds, &names, password, &desc, embedded.is_some(), python).await?;
    let beside = start_beside(workload, &ready, embedded.as_ref(), &stop);
    let progress = tokio::spawn(progress(
        ready.live.clone(),
        ready.plan.clone(),
        ready.clock,
        opts.progress_label.clone(),
    ));
    let (plan, router, live) = (ready.plan.clone(), ready.router.clone(), ready.live.clone());
    let history = match ready.library.take() {
        None => driver::drive(plan, router, ready.clock, stop, live, Some(journal.sink())).await,
        Some((process, scripts)) => {
            library::drive(plan, process, scripts, ready.clock, stop, live, Some(journal.sink())).await
        }
    };
    progress.abort();
    let healed =
        heal_and_settle(workload, &ready, beside, history, journal, seeds, names, signal, hurry).await;
    let judged = judge(workload, &ready, &healed, hurry, &desc).await;
    write(workload, ready, healed, judged, desc)
}

/// Step 1: what the run drives, reached.
struct Ready {
    /// The primaries and their slots at the start.
    shards: Vec<Shard>,
    /// What the nodes say they run.
    redis_version: String,
    /// The client library that sends the ops, and its version.
    client: String,
    /// Node ids by name, for the log followers.
    ids: HashMap<String, String>,
    /// The driver's cluster client.
    router: Arc<Router>,
    /// What the driver does.
    plan: Arc<DriverPlan>,
    /// The live interval stats, for the progress line.
    live: driver::Live,
    /// The run's clock, started once everything is ready.
    clock: RunClock,
    /// The results folder, made.
    dir: PathBuf,
    /// What the nemesis and the observers record, written to the history as it grows.
    events: EventLog,
    /// The client library's process, when a real library sends the ops, and each op
    /// kind's script among those it was given.
    library: Option<(library::Process, Vec<Option<usize>>)>,
}

/// Reach the cluster, learn its shards and version, connect the driver, make the results
/// folder and start the clock; write `run.json` as an unfinished run's and start writing
/// the history, so a run killed from here on leaves what it measured.
#[allow(clippy::too_many_arguments)]
async fn reach(
    workload: &Workload,
    opts: &RunOptions,
    seeds: &[SocketAddr],
    names: &HashMap<SocketAddr, String>,
    password: Option<String>,
    cluster: &ClusterInfo,
    embedded: bool,
    python: Option<PathBuf>,
) -> Result<(Ready, Journal), RunError> {
    // An external cluster that cannot be reached is the user's setup (exit 2); an embedded
    // one just brought up is the harness's.
    let survey = cluster::survey(seeds).await.map_err(|e| match embedded {
        true => RunError::Cluster(e),
        false => RunError::Unreachable(e),
    })?;
    let name_of = |addr: &str| addr.parse().ok().and_then(|a| names.get(&a).cloned());
    let nodes = &survey.seed_view.nodes;
    let shards: Vec<Shard> = nodes
        .iter()
        .filter(|n| n.is_primary() && !n.slots.is_empty())
        .map(|n| Shard {
            name: name_of(&n.addr).unwrap_or_else(|| n.addr.clone()),
            ranges: n.slots.iter().map(|r| (r.start, r.end)).collect(),
        })
        .collect();
    let ids = nodes.iter().filter_map(|n| Some((n.id.0.clone(), name_of(&n.addr)?))).collect();
    let redis_version = nodes_version(seeds).await;
    let plan = Arc::new(driver_plan(workload, &shards, opts.all_ops));
    // A real library finds the cluster before the clock starts (its first ops are due at
    // once); its clock is mapped onto the run's once that has started.
    let mut library = match python {
        Some(python) => {
            let (scripts, index) = library::scripts(&plan);
            let threads = library::threads(workload.client.pool, plan.pacing, plan.in_flight.limit);
            let process = library::Process::start(
                workload.client.library,
                &python,
                seeds,
                &workload.client,
                threads,
                &scripts,
                password.as_deref(),
            )
            .await
            .map_err(RunError::Library)?;
            Some((process, index))
        }
        None => None,
    };
    let router = Router::connect(seeds, workload.client.timeout, password).await?;
    let live: driver::Live = Arc::new(Mutex::new(Aggregator::new(plan.renderer.len()).0));
    let clock = RunClock::start();
    if let Some((process, _)) = &mut library {
        process.sync(clock).await.map_err(RunError::Library)?;
    }
    let dir = match &opts.exact_dir {
        Some(dir) => std::fs::create_dir_all(dir.parent().unwrap_or(dir))
            .and_then(|()| std::fs::create_dir(dir))
            .map(|()| dir.clone())
            .map_err(|source| RunError::Results { dir: dir.clone(), source })?,
        None => report::new_results_dir(&opts.results_root, &workload.name, clock.started_at)
            .map_err(|source| RunError::Results { dir: opts.results_root.clone(), source })?,
    };
    let events = EventLog::default();
    let client = library
        .as_ref()
        .map_or_else(|| ClientLibrary::Slotstorm.name().to_string(), |(p, _)| p.version.clone());
    let unfinished =
        RunMeta { finished: false, ..meta(workload, &shards, &redis_version, &client, cluster, None) };
    let journal = begin_results(&dir, &plan, clock, &unfinished, &events)
        .map_err(|source| RunError::Results { dir: dir.clone(), source })?;
    let through = match &library {
        Some((p, _)) => format!(" through {}", p.version),
        None => String::new(),
    };
    eprintln!(
        "driving {}{through} for {:.0}s (warm-up {:.0}s); results in {}",
        workload.name,
        plan.duration.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        dir.display()
    );
    let ready = Ready { shards, redis_version, client, ids, router, plan, live, clock, dir, events, library };
    Ok((ready, journal))
}

/// `run.json` as a run that has not finished (what it drives, its schedule and limiter ops,
/// nothing measured), and the history file with its header.
fn begin_results(
    dir: &std::path::Path,
    plan: &DriverPlan,
    clock: RunClock,
    meta: &RunMeta,
    events: &EventLog,
) -> std::io::Result<Journal> {
    let start = Start {
        op_names: &plan.renderer.names(),
        interval: plan.interval,
        warmup: plan.warmup,
        started_at: clock.started_at,
    };
    let nothing = History {
        op_names: start.op_names.to_vec(),
        interval: plan.interval,
        warmup: plan.warmup,
        started_at: clock.started_at,
        elapsed: Duration::ZERO,
        intervals: Default::default(),
        ops: Vec::new(),
        errors: Vec::new(),
        events: Vec::new(),
    };
    let schedule = check::schedule::schedule_report(&nothing, plan.pacing, plan.in_flight);
    let limiters = plan.renderer.limiter_ops().into_iter();
    let over_admissions: Vec<OverAdmission> = limiters
        .map(|(kind, name, limit, window)| rate_limit::check(&[], kind, &name, limit, window))
        .collect();
    let findings = report::Findings {
        schedule: &schedule,
        faults: &[],
        operations: &[],
        lost_writes: &[],
        over_admissions: &over_admissions,
        verdicts: &[],
    };
    report::write_run_file(dir, &nothing, meta, &findings)?;
    Journal::start(dir, &start, Some(events.clone()))
}

/// What `run.json` says of the run besides what it measured.
fn meta(
    workload: &Workload,
    shards: &[Shard],
    redis_version: &str,
    client: &str,
    cluster: &ClusterInfo,
    interrupted: Option<&'static str>,
) -> RunMeta {
    RunMeta {
        workload: workload.name.clone(),
        workload_path: workload.path.display().to_string(),
        workload_toml: std::fs::read_to_string(&workload.path).unwrap_or_default(),
        redis_version: redis_version.to_string(),
        client: client.to_string(),
        cluster: cluster.clone(),
        shards: shards.to_vec(),
        interrupted: interrupted.map(|s| format!("interrupted by {s}")),
        finished: true,
    }
}

/// Step 2: the tasks beside the driver.
struct Beside {
    /// What the nemesis and the observers record.
    events: EventLog,
    /// The observer's `INFO` samples.
    samples: Samples,
    /// Stops the observers and log followers once the cluster has settled.
    observers_stop: Arc<Stop>,
    /// The observer and the log followers.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// The nemesis and its operator, with a chaos file.
    nemesis: Option<(tokio::task::JoinHandle<()>, nemesis::Operator)>,
    /// The driver's slot-table changes (few; MOVED ones coalesced).
    table_changes: tokio::sync::mpsc::UnboundedReceiver<TableChange>,
}

/// Start the observer and the log followers (an embedded cluster) and the nemesis (with a
/// chaos file), and have the driver report its slot-table changes.
fn start_beside(
    workload: &Workload,
    ready: &Ready,
    embedded: Option<&(Docker, DockerCluster)>,
    stop: &Arc<Stop>,
) -> Beside {
    let (events, samples, clock): (EventLog, Samples, _) =
        (ready.events.clone(), Arc::default(), ready.clock);
    let (table_tx, table_changes) = tokio::sync::mpsc::unbounded_channel();
    ready.router.report_changes(table_tx);
    let observers_stop = Arc::new(Stop::default());
    let mut background = Vec::new();
    let mut nemesis = None;
    if let Some((docker, cluster)) = embedded {
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
            let (docker, run, events, stop, ids) = (
                docker.clone(),
                cluster.run.clone(),
                events.clone(),
                observers_stop.clone(),
                ready.ids.clone(),
            );
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
            let schedule = chaos.schedule(ready.plan.duration);
            nemesis = Some((nemesis::spawn(op.clone(), schedule, chaos.seed, stop.clone()), op));
        }
    }
    Beside { events, samples, observers_stop, background, nemesis, table_changes }
}

/// Step 4: what the run holds once the faults are healed and the cluster has settled.
struct Healed {
    /// Every op, error and event.
    history: History,
    /// The observer's samples.
    samples: Vec<crate::observe::NodeSample>,
    /// How the wait for the cluster to agree ended; `None` when a second signal cut it.
    settled: Option<Result<(), cluster::ClusterError>>,
    /// The signal that cut the run short, if one did.
    interrupted: Option<&'static str>,
    /// How writing the history ended.
    journal: std::io::Result<()>,
}

/// Wait for the nemesis to heal everything, repair what operations left open, let the
/// cluster settle while the observers still watch, then stop them and gather the events.
#[allow(clippy::too_many_arguments)]
async fn heal_and_settle(
    workload: &Workload,
    ready: &Ready,
    beside: Beside,
    mut history: History,
    journal: Journal,
    seeds: Vec<SocketAddr>,
    mut names: HashMap<SocketAddr, String>,
    signal: &Arc<Mutex<Option<&'static str>>>,
    hurry: &Stop,
) -> Healed {
    let Beside { events, samples, observers_stop, background, nemesis, mut table_changes } = beside;
    let clock = ready.clock;
    ready.router.flush_table_changes();
    // The nemesis heals by the end of the run on its own (or at once after a stop); wait
    // for it, so no fault outlives the run. Operations may add and remove nodes: from here
    // on, the cluster is what it is now.
    let mut seeds = seeds;
    if let Some((n, op)) = nemesis {
        // The supervisor records the nemesis' own panic; one of its own (while healing) is
        // recorded here, so that it too fails the run.
        if let Err(e) = n.await {
            let error = format!("the nemesis supervisor failed ({e}): its heal may not have finished");
            emit(&events, clock.now_us(), EventKind::FaultError { fault: 0, error });
        }
        seeds = op.cluster().addrs();
        // Operations may have added nodes: name them as the operator does.
        names.extend(op.cluster().names());
        // After Ctrl-C the user wants out: the repair is left to `slotstorm cluster fix`.
        let stopped = signal.lock().expect("signal lock").is_some();
        if workload.chaos.as_ref().is_some_and(|c| !c.operations.is_empty()) && !stopped {
            repair_slots(&seeds, &clock, &events).await;
        }
    }
    // Faults are healed by now, but the cluster may still be settling (a failover finishing,
    // a restarted primary rejoining as a replica). The observers keep watching while it
    // does, so the history tells how the run's faults ended, and the read-back waits on it.
    // After a signal the user wants out: a short while, and a second signal skips the wait
    // and the read-back (lost writes are then left unjudged).
    let interrupted = *signal.lock().expect("signal lock");
    let settle = if interrupted.is_some() { SETTLE_AFTER_SIGNAL } else { SETTLE_TIMEOUT };
    let must_settle = workload.chaos.is_some() || !ready.plan.renderer.set_full_ops().is_empty();
    let settled = match must_settle {
        true => tokio::select! {
            waited = cluster::wait_agreed(&seeds, settle) => Some(waited),
            () = hurry.wait() => None,
        },
        false => Some(Ok(())),
    };
    observers_stop.stop();
    for task in background {
        task.abort();
    }
    record_table_changes(&mut table_changes, &clock, &names, &events);
    // The driver's own events (a worker that panicked) follow the nemesis' and observers',
    // in the history file as here: both are then sorted alike (stable, by time).
    let driver_events = std::mem::take(&mut history.events);
    let journal = journal.finish(driver_events.clone(), history.elapsed);
    history.events = std::mem::take(&mut *events.lock().expect("event log lock"));
    history.events.extend(driver_events);
    history.events.sort_by_key(|e| e.at_us);
    let samples = std::mem::take(&mut *samples.lock().expect("samples lock"));
    Healed { history, samples, settled, interrupted, journal }
}

/// Step 5: what the checks found.
struct Judged {
    faults: Vec<FaultReport>,
    run_errors: Vec<String>,
    schedule: ScheduleReport,
    operations: Vec<OperationReport>,
    lost_writes: Vec<LostWrites>,
    over_admissions: Vec<OverAdmission>,
    verdicts: Vec<Verdict>,
}

/// Run every check over the history (and read back what set-full ops added), then judge the
/// SLOs on what they found.
async fn judge(
    workload: &Workload,
    ready: &Ready,
    healed: &Healed,
    hurry: &Stop,
    cluster: &ClusterInfo,
) -> Judged {
    let (history, plan) = (&healed.history, &ready.plan);
    let faults = check::failover::fault_reports_of(history, cluster, &ready.client);
    let lost_writes = match &healed.settled {
        Some(settled) => tokio::select! {
            judged = check_lost_writes(&ready.router, &plan.renderer, history, &faults, settled.as_ref().map(|_| ())) => judged,
            () = hurry.wait() => Vec::new(),
        },
        None => Vec::new(),
    };
    let over_admissions: Vec<OverAdmission> = plan
        .renderer
        .limiter_ops()
        .into_iter()
        .map(|(kind, name, limit, window)| rate_limit::check(&history.ops, kind, &name, limit, window))
        .collect();
    let schedule = check::schedule::schedule_report(history, plan.pacing, plan.in_flight);
    let measured = check::slo::Measured {
        lost_writes: (!lost_writes.is_empty()).then(|| lost_writes.iter().map(LostWrites::lost).sum()),
        over_admissions: (!over_admissions.is_empty())
            .then(|| over_admissions.iter().map(|o| o.over_windows).sum()),
        send_lag_max_us: Some(schedule.send_lag_max_us),
    };
    let verdicts = check::slo::evaluate(&workload.slo, history, &faults, &measured);
    Judged {
        run_errors: check::run_errors(&history.events),
        operations: check::operations::operation_reports(history),
        faults,
        schedule,
        lost_writes,
        over_admissions,
        verdicts,
    }
}

/// Step 6: the results folder, and the run's report.
fn write(
    workload: &Workload,
    ready: Ready,
    healed: Healed,
    judged: Judged,
    cluster: crate::report::model::ClusterInfo,
) -> Result<RunReport, RunError> {
    let Ready { shards, redis_version, client, dir, .. } = ready;
    let Healed { history, samples, interrupted, journal, .. } = healed;
    let meta = meta(workload, &shards, &redis_version, &client, &cluster, interrupted);
    let Judged { faults, mut run_errors, schedule, operations, lost_writes, over_admissions, verdicts } =
        judged;
    // The run measured everything in memory: its results are written all the same, and the
    // lost history fails it (exit 3), as `slotstorm report` cannot rebuild the folder.
    if let Err(e) = journal {
        run_errors.push(format!(
            "the history file could not be written ({e}): the results are the run's, but `slotstorm report` cannot rebuild them"
        ));
    }
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
        run_errors,
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

fn driver_plan(w: &Workload, shards: &[Shard], all_ops: bool) -> DriverPlan {
    let l = &w.load;
    let renderer = Renderer::new(&w.ops);
    // The checks read set-full adds and limiter calls whole, and every op around a fault.
    let mut whole = vec![false; renderer.len()];
    let checked = renderer.set_full_ops().into_iter().map(|(k, _)| k);
    for kind in checked.chain(renderer.limiter_ops().into_iter().map(|(k, ..)| k)) {
        whole[usize::from(kind.0)] = true;
    }
    let run_length = l.warmup + l.duration;
    let faults: Vec<(Duration, Duration)> = w
        .chaos
        .iter()
        .flat_map(|c| c.schedule(run_length))
        .filter_map(|s| match s {
            crate::spec::chaos::Scheduled::Fault(f) => Some((f.at, f.heal_at.unwrap_or(f.at))),
            crate::spec::chaos::Scheduled::Operation(_) => None,
        })
        .collect();
    let ranges: Vec<Vec<(u16, u16)>> = shards.iter().map(|s| s.ranges.clone()).collect();
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
        renderer,
        recording: Arc::new(match all_ops {
            true => Recording::new(whole, &faults, &ranges).keeping_all(),
            false => Recording::new(whole, &faults, &ranges),
        }),
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
