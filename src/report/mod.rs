//! The results folder of a run: `run.json`, `latency.hlog`, `timeline.csv`, `events.jsonl`,
//! the plots (SVG and PNG), and the summary printed at the end. Folders are never overwritten.
//!
//! Reports present what the history and the checkers found; they never recompute a verdict.

mod files;
pub(crate) mod html;
mod junit;
mod markdown;
pub mod model;
mod plots;
mod summary;

pub use files::{Findings, RunMeta, Shard, write_results, write_run_file};
pub use html::write_reports;
pub use junit::{junit_xml, write_junit};
pub use markdown::verdicts_markdown;
pub use plots::{BoxStats, Panel, PlotError, write_distributions, write_plots};
pub use summary::{
    fault_lines, lost_write_lines, operation_lines, over_admission_lines, predicted_line, schedule_line,
    summary_table,
};

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Create a fresh folder `<root>/<UTC time>-<name>` (with `-2`, `-3`, … appended if that
/// exists already). Creation is atomic, so two runs never share a folder.
///
/// # Errors
/// The I/O error, when the folder cannot be created.
pub fn new_results_dir(root: &Path, name: &str, at: SystemTime) -> io::Result<PathBuf> {
    fresh_dir(root, &format!("{}-{name}", utc_stamp(at)))
}

/// `20261130T202512Z`: a UTC time for folder names.
pub fn utc_stamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string().chars().filter(|c| !matches!(c, '-' | ':')).collect()
}

/// Create `<root>/<stem>`, or `<stem>-2`, `<stem>-3`, … when it exists; creation is atomic,
/// so two callers never share a folder.
///
/// # Errors
/// The I/O error, when the folder cannot be created.
pub fn fresh_dir(root: &Path, stem: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    for n in 1.. {
        let dir = if n == 1 { root.join(stem) } else { root.join(format!("{stem}-{n}")) };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("some suffix is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_folders_are_never_reused() {
        let root = std::env::temp_dir().join(format!("slotstorm-results-{}", std::process::id()));
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_534_312);
        let a = new_results_dir(&root, "smoke", at).unwrap();
        let b = new_results_dir(&root, "smoke", at).unwrap();
        assert_eq!(a.file_name().unwrap(), "20251130T202512Z-smoke");
        assert_eq!(b.file_name().unwrap(), "20251130T202512Z-smoke-2");
        std::fs::remove_dir_all(root).unwrap();
    }
}

/// Why the reports of a results folder could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file of the folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `run.json` could not be read, or is not a format this slotstorm reads.
    #[error(transparent)]
    RunFile(#[from] model::RunFileError),
    /// A plot failed.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// What [`build_reports`] wrote.
pub struct Built {
    /// The files written.
    pub written: Vec<PathBuf>,
    /// For a run that did not finish: what was rebuilt, and from how much of its history;
    /// for one whose history ends early (damaged, cut short): that.
    pub unfinished: Option<String>,
}

/// Build the plots, `report.html` and `summary.md` of the results folder `dir` from its
/// `run.json` and the saved history alone: the end of every run, and `slotstorm report`.
/// A run that did not finish (killed, crashed) left a `run.json` written at its start: its
/// measured parts and data files are first filled from the history, up to where that stops.
///
/// # Errors
/// [`ReportError`] naming the file concerned.
pub fn build_reports(dir: &Path) -> Result<Built, ReportError> {
    let run_path = dir.join("run.json");
    let mut run = model::RunFile::read(&run_path)?;
    let history_path = crate::history::store::path_in(dir);
    let loaded =
        crate::history::store::load(dir).map_err(|source| ReportError::Io { path: history_path, source })?;
    let history = loaded.history;
    let mut unfinished = None;
    if run.finished
        && let Some(why) = &loaded.ends_early
    {
        unfinished = Some(format!("{why}: the plots and tables cover what it holds"));
    }
    if !run.finished {
        let why = loaded.ends_early.unwrap_or_else(|| "its history is whole".into());
        let written = fill_unfinished(dir, &run, &history, &why)
            .map_err(|source| ReportError::Io { path: dir.to_path_buf(), source })?;
        unfinished = Some(format!(
            "this run did not finish: its tables and plots come from the history it wrote ({why}); \
             lost writes and SLOs were not judged"
        ));
        run = written;
    }
    // Phases are measurements, not verdicts: the same pure check the run used, on the same
    // history, gives the same numbers.
    let faults = crate::check::failover::fault_reports_of(&history, &run.cluster, &run.client);
    let operations = crate::check::operations::operation_reports(&history);
    let mut written = write_plots(dir, &history, &faults)?;
    write_reports(dir, &run, &history, &faults, &operations, &written)
        .map_err(|source| ReportError::Io { path: dir.join("report.html"), source })?;
    written.push(dir.join("report.html"));
    written.push(dir.join("summary.md"));
    Ok(Built { written, unfinished })
}

/// Measure an unfinished run's history as the run would have (every check that reads the
/// history alone), and write its data files and `run.json`, still marked unfinished.
fn fill_unfinished(
    dir: &Path,
    run: &model::RunFile,
    history: &crate::history::History,
    why: &str,
) -> io::Result<model::RunFile> {
    use crate::check;
    let s = &run.schedule;
    let pacing = match s.rate {
        Some(rate) if s.pacing == "open" => crate::spec::Pacing::Open { rate },
        _ => crate::spec::Pacing::Closed,
    };
    let in_flight = crate::spec::InFlight { limit: s.in_flight_limit, source: s.limit_source };
    let schedule = check::schedule::schedule_report(history, pacing, in_flight);
    // The limiter ops were named, with their limits, when the run began.
    let over_admissions: Vec<_> = run
        .over_admissions
        .iter()
        .filter_map(|o| {
            let kind = history.op_names.iter().position(|n| *n == o.op)?;
            let kind = crate::history::OpKind(u16::try_from(kind).ok()?);
            let window = std::time::Duration::from_secs_f64(o.window_s);
            Some(check::rate_limit::check(&history.ops, kind, &o.op, o.limit, window))
        })
        .collect();
    let faults = check::failover::fault_reports_of(history, &run.cluster, &run.client);
    let operations = check::operations::operation_reports(history);
    let meta = RunMeta {
        workload: run.workload.clone(),
        workload_path: run.workload_path.clone(),
        workload_toml: run.workload_toml.clone(),
        redis_version: run.redis_version.clone(),
        client: run.client.clone(),
        cluster: run.cluster.clone(),
        shards: run
            .shards
            .iter()
            .map(|s| Shard { name: s.name.clone(), ranges: s.slots.iter().map(|&[a, b]| (a, b)).collect() })
            .collect(),
        interrupted: Some(format!(
            "did not finish: slotstorm stopped before writing its results; measured up to the end of its history ({why})"
        )),
        finished: false,
    };
    let findings = Findings {
        schedule: &schedule,
        faults: &faults,
        operations: &operations,
        lost_writes: &[],
        over_admissions: &over_admissions,
        verdicts: &[],
    };
    // The observer's samples were to be written at the end: none are left.
    write_results(dir, history, &meta, &findings, &[])?;
    model::RunFile::read(&dir.join("run.json"))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}
