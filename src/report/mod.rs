//! The results folder of a run: `run.json`, `latency.hlog`, `timeline.csv`, `events.jsonl`,
//! the plots (SVG and PNG), and the summary printed at the end. Folders are never overwritten.
//!
//! Reports present what the history and the checkers found; they never recompute a verdict.

mod files;
pub(crate) mod html;
mod junit;
mod markdown;
mod plots;
mod summary;

pub use files::{Findings, RunMeta, Shard, write_results};
pub use html::write_reports;
pub use junit::{junit_xml, write_junit};
pub use markdown::verdicts_markdown;
pub use plots::{BoxStats, Panel, PlotError, write_distributions, write_plots};
pub use summary::{
    fault_lines, lost_write_lines, operation_lines, over_admission_lines, schedule_line, summary_table,
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
    /// `run.json` is not what slotstorm writes.
    #[error("{path}: not a slotstorm run.json: {reason}")]
    RunJson {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A plot failed.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// Build the plots, `report.html` and `summary.md` of the results folder `dir` from its
/// `run.json` and `history.json.gz` alone: the end of every run, and `slotstorm report`.
/// Returns the files written.
///
/// # Errors
/// [`ReportError`] naming the file concerned.
pub fn build_reports(dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let run_path = dir.join("run.json");
    let text = std::fs::read_to_string(&run_path)
        .map_err(|source| ReportError::Io { path: run_path.clone(), source })?;
    let run: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ReportError::RunJson { path: run_path.clone(), reason: e.to_string() })?;
    let history_path = dir.join(crate::history::store::FILE);
    let history = crate::history::store::load(&history_path)
        .map_err(|source| ReportError::Io { path: history_path, source })?;
    // Phases are measurements, not verdicts: the same pure check the run used, on the same
    // history, gives the same numbers.
    let faults = crate::check::failover::fault_reports(&history, &Default::default());
    let operations = crate::check::operations::operation_reports(&history);
    let mut written = write_plots(dir, &history, &faults)?;
    write_reports(dir, &run, &history, &faults, &operations, &written)
        .map_err(|source| ReportError::Io { path: dir.join("report.html"), source })?;
    written.push(dir.join("report.html"));
    written.push(dir.join("summary.md"));
    Ok(written)
}
