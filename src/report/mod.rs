//! The results folder of a run: `run.json`, `latency.hlog`, `timeline.csv`, `events.jsonl`,
//! and the summary printed at the end. Folders are never overwritten.
//!
//! Reports present what the history and the checkers found; they never recompute a verdict.

mod files;
mod summary;

pub use files::{RunMeta, Shard, write_results};
pub use summary::{fault_lines, summary_table};

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Create a fresh folder `<root>/<UTC time>-<name>` (with `-2`, `-3`, … appended if that
/// exists already). Creation is atomic, so two runs never share a folder.
///
/// # Errors
/// The I/O error, when the folder cannot be created.
pub fn new_results_dir(root: &Path, name: &str, at: SystemTime) -> io::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    for n in 1.. {
        let dir = if n == 1 {
            root.join(format!("{stamp}-{name}"))
        } else {
            root.join(format!("{stamp}-{name}-{n}"))
        };
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
