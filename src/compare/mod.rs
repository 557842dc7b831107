//! `slotstorm compare`: one workload and its chaos file, run over a matrix of settings
//! (`cluster-node-timeout`, other redis.conf directives, the client's request timeout and
//! retries) with repeats, each run on a fresh cluster, into `results/compare-<time>/`, and
//! the comparative report over those runs.
//!
//! Every run is an ordinary `run` (this module only changes the workload and says where the
//! results go), so each one's folder under `runs/` is complete on its own. Repeats are
//! interleaved (every cell once, then every cell again), so a machine that slows down during
//! a long comparison slows every cell alike instead of the last ones.
//!
//! `compare.json` says what was planned and how each run ended; it is rewritten after every
//! run, so an interrupted comparison still names what it measured. The report
//! ([`report::build`]) is computed from it and the runs' folders alone.

pub mod figures;
pub mod matrix;
pub mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::run::{self, Ending, ProgressLabel, RunError, RunOptions, StopSignal};
use crate::spec::Workload;
use matrix::Axis;

/// The file naming the comparison's cells and runs.
pub const MANIFEST: &str = "compare.json";

/// What to compare.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The axes; their product are the cells. Empty: one cell, the workload as written.
    pub axes: Vec<Axis>,
    /// Runs per cell, at least 1.
    pub repeat: u32,
    /// Where the `compare-<time>` folder goes (`results/`).
    pub results_root: PathBuf,
}

/// How one run of a comparison ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Finished; every SLO of the workload met (or none set).
    Ok,
    /// Finished; an SLO of the workload was violated (a comparison reports it, it does not
    /// fail on it: comparing bad settings is the point).
    SloViolated,
    /// Cut short by a signal; its folder holds what it measured.
    Interrupted,
    /// The harness failed (a cluster that would not form); see its error.
    Failed,
}

/// One run in `compare.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Which repeat, from 1.
    pub repeat: u32,
    /// Its results folder, relative to the comparison's folder.
    pub dir: String,
    /// How it ended.
    pub status: RunStatus,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// How long it took from start to teardown, seconds.
    pub wall_s: f64,
}

/// One cell in `compare.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellRecord {
    /// The full label (`cluster-node-timeout=1000ms`).
    pub label: String,
    /// The short label the plots use (`1000ms`).
    pub short: String,
    /// The runs done so far, in order.
    pub runs: Vec<RunRecord>,
}

/// `compare.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The slotstorm that ran it.
    pub slotstorm_version: String,
    /// UTC start.
    pub started_at: String,
    /// The workload's name.
    pub workload: String,
    /// The workload file.
    pub workload_path: String,
    /// The chaos file.
    pub chaos_path: String,
    /// Runs per cell planned.
    pub repeat: u32,
    /// The axes' names, joined (`cluster-node-timeout / retries`).
    pub axes: String,
    /// The cells, in matrix order.
    pub cells: Vec<CellRecord>,
    /// Set when a signal cut the comparison short.
    pub interrupted: Option<String>,
    /// True once every planned run was made (or the comparison stopped for good).
    pub finished: bool,
}

impl Manifest {
    /// Read `compare.json` from `dir`.
    ///
    /// # Errors
    /// The file is missing or not a manifest, with the path in the message.
    pub fn load(dir: &Path) -> Result<Manifest, String> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a slotstorm {MANIFEST}: {e}", path.display()))
    }

    /// Write `compare.json` through a temporary file, so a comparison killed mid-write
    /// leaves the previous manifest, never half of one.
    fn save(&self, dir: &Path) -> Result<(), CompareError> {
        let (path, tmp) = (dir.join(MANIFEST), dir.join(format!("{MANIFEST}.tmp")));
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| CompareError::Io { path, source })
    }
}

/// Why a comparison could not be made or finished.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The workload or the matrix cannot be compared (exit 2; nothing started).
    #[error("{0}")]
    Input(String),
    /// A run failed in a way every other run would too (an unreachable engine): the
    /// comparison stops. Runs before it are in the folder.
    #[error("run {run} of the comparison: {source}")]
    Setup {
        /// The run's folder.
        run: String,
        /// Its error.
        source: RunError,
    },
    /// The comparison's folder or manifest could not be written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The comparative report could not be built (the runs' folders are complete).
    #[error(transparent)]
    Report(#[from] report::ReportError),
}

/// What a comparison leaves.
#[derive(Debug)]
pub struct CompareReport {
    /// The `compare-<time>` folder.
    pub dir: PathBuf,
    /// The manifest as written last.
    pub manifest: Manifest,
    /// The report built over the runs.
    pub built: report::Built,
    /// The signal that cut it short, if one did.
    pub interrupted: Option<&'static str>,
}

impl CompareReport {
    /// How the comparison ended, the first that applies: interrupted, else broken when any
    /// of its runs failed (SLOs are not judged across a matrix), else passed. The exit code
    /// is [`Ending::exit_code`]'s, as for one run.
    pub fn ending(&self) -> Ending {
        if let Some(signal) = self.interrupted {
            Ending::Interrupted(signal)
        } else if self.failed_runs() > 0 {
            Ending::Broken
        } else {
            Ending::Passed
        }
    }

    /// One line on how it ended and where to look.
    pub fn ending_message(&self) -> String {
        match self.ending() {
            Ending::Interrupted(signal) => {
                format!("interrupted by {signal}; the runs made are in {}", self.dir.display())
            }
            Ending::Broken | Ending::SloViolated => format!(
                "{} runs of the comparison failed; see {}",
                self.failed_runs(),
                self.dir.join("summary.md").display()
            ),
            Ending::Passed => format!("done; results in {}", self.dir.display()),
        }
    }

    fn failed_runs(&self) -> usize {
        self.manifest.cells.iter().flat_map(|c| &c.runs).filter(|r| r.status == RunStatus::Failed).count()
    }
}

/// Run `workload` over the matrix of `opts`.
///
/// # Errors
/// [`CompareError::Input`] before anything starts when the workload cannot be compared;
/// [`CompareError::Setup`] when a run shows the machine cannot run any; the others when
/// results cannot be written. A run that fails otherwise is recorded and the comparison
/// goes on; a signal ends it with a report of the runs made.
pub async fn compare(workload: &Workload, opts: &CompareOptions) -> Result<CompareReport, CompareError> {
    matrix::check_workload(workload).map_err(CompareError::Input)?;
    matrix::check_engines(workload, &opts.axes).map_err(CompareError::Input)?;
    if let Some(name) = matrix::duplicate_axis(&opts.axes) {
        return Err(CompareError::Input(format!("{name} is given as two axes; list its values in one")));
    }
    let repeat = opts.repeat.max(1);
    let cells = matrix::cells(&opts.axes);
    let dir = fresh_dir(&opts.results_root)?;
    let mut manifest = Manifest {
        slotstorm_version: env!("CARGO_PKG_VERSION").into(),
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        workload: workload.name.clone(),
        workload_path: workload.path.display().to_string(),
        chaos_path: workload.chaos.as_ref().map(|c| c.path.display().to_string()).unwrap_or_default(),
        repeat,
        axes: matrix::axes_title(&opts.axes),
        cells: cells
            .iter()
            .map(|c| CellRecord { label: c.label(), short: c.short(), runs: Vec::new() })
            .collect(),
        interrupted: None,
        finished: false,
    };
    manifest.save(&dir)?;
    let total = cells.len() * repeat as usize;
    let load_s = (workload.load.warmup + workload.load.duration).as_secs_f64();
    eprintln!(
        "compare {}: {} cells × {repeat} repeats = {total} runs of about {}; results in {}",
        workload.name,
        cells.len(),
        human(load_s + ESTIMATED_OVERHEAD_S),
        dir.display()
    );
    let stop = StopSignal::default();
    let watcher = stop.watch_signals();
    let started = Instant::now();
    let mut overheads: Vec<f64> = Vec::new();
    let mut outcome = Ok(());
    'matrix: for r in 1..=repeat {
        for (i, cell) in cells.iter().enumerate() {
            let done = (r as usize - 1) * cells.len() + i;
            let overhead = mean(&overheads).unwrap_or(ESTIMATED_OVERHEAD_S);
            let left_after = (total - done - 1) as f64 * (load_s + overhead);
            eprintln!(
                "compare: run {}/{total} · cell {}/{} ({}) · repeat {r}/{repeat} · {} elapsed · about {} left",
                done + 1,
                i + 1,
                cells.len(),
                cell.label(),
                human(started.elapsed().as_secs_f64()),
                human(load_s + overhead + left_after)
            );
            let label = format!("[{}/{total} {} r{r}", done + 1, cell.short());
            let progress = ProgressLabel(Arc::new(move |elapsed: Duration| {
                let left = (load_s - elapsed.as_secs_f64()).max(0.0) + overhead + left_after;
                format!("{label} · ~{} left]", human(left))
            }));
            let rel = format!("runs/{}-{}-r{r}", i + 1, cell.slug());
            let run_opts = RunOptions {
                keep: false,
                results_root: dir.clone(),
                exact_dir: Some(dir.join(&rel)),
                progress_label: Some(progress),
                all_ops: false,
            };
            let t = Instant::now();
            let result = run::run_stoppable(&cell.apply(workload), &run_opts, &stop).await;
            let wall_s = t.elapsed().as_secs_f64();
            let (status, error) = match &result {
                Ok(report) => match report.ending() {
                    Ending::Interrupted(_) => (RunStatus::Interrupted, None),
                    Ending::Broken => {
                        (RunStatus::Failed, Some(format!("run error: {}", report.run_errors.join("; "))))
                    }
                    Ending::SloViolated => (RunStatus::SloViolated, None),
                    Ending::Passed => (RunStatus::Ok, None),
                },
                Err(RunError::Interrupted(_)) => (RunStatus::Interrupted, None),
                Err(e) => (RunStatus::Failed, Some(e.to_string())),
            };
            if status == RunStatus::Ok || status == RunStatus::SloViolated {
                overheads.push((wall_s - load_s).max(0.0));
            }
            if let Some(e) = &error {
                eprintln!("compare: run {} failed: {e}", done + 1);
            }
            manifest.cells[i].runs.push(RunRecord { repeat: r, dir: rel.clone(), status, error, wall_s });
            manifest.save(&dir)?;
            match result {
                Err(e) if e.is_setup() => {
                    outcome = Err(CompareError::Setup { run: rel, source: e });
                    break 'matrix;
                }
                _ if stop.signalled().is_some() => break 'matrix,
                _ => {}
            }
        }
    }
    watcher.abort();
    let interrupted = stop.signalled();
    manifest.interrupted = interrupted.map(|s| format!("interrupted by {s}"));
    manifest.finished = true;
    manifest.save(&dir)?;
    outcome?;
    let built = report::build(&dir)?;
    Ok(CompareReport { dir, manifest, built, interrupted })
}

/// Cluster start, teardown and reports of one run, before any was measured, seconds.
const ESTIMATED_OVERHEAD_S: f64 = 12.0;

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// `45s`, `3m05s`, `1h02m`.
fn human(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Create `<root>/compare-<UTC time>` (with `-2`, `-3`, … when taken).
fn fresh_dir(root: &Path) -> Result<PathBuf, CompareError> {
    let stem = format!("compare-{}", crate::report::utc_stamp(SystemTime::now()));
    crate::report::fresh_dir(root, &stem)
        .map_err(|source| CompareError::Io { path: root.join(&stem), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human(44.6), "45s");
        assert_eq!(human(185.0), "3m05s");
        assert_eq!(human(3720.0), "1h02m");
        assert_eq!(human(-3.0), "0s");
    }

    #[test]
    fn comparison_folders_are_never_reused() {
        let root = std::env::temp_dir().join(format!("slotstorm-compare-{}", std::process::id()));
        let a = fresh_dir(&root).unwrap();
        let b = fresh_dir(&root).unwrap();
        assert_ne!(a, b);
        assert!(a.file_name().unwrap().to_string_lossy().starts_with("compare-"));
        std::fs::remove_dir_all(root).unwrap();
    }
}
