//! `run.json`: what a run measured and decided, as one typed model. The run writes it and
//! every reader (`report.html`, `summary.md`, `slotstorm compare`, the tests) reads it
//! through these same structs, so a renamed field is a compile error rather than a `?` in a
//! report. Its JSON Schema (`docs/run.schema.json`) is generated from them
//! ([`schema`]) and checked in a test, so other tools can rely on it.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::check::failover::FaultReport;
use crate::check::lost_writes::LostWrites;
use crate::check::operations::OperationReport;
use crate::check::rate_limit::OverAdmission;
use crate::check::schedule::ScheduleReport;
use crate::check::slo::Verdict;
use crate::history::{ErrorCounts, OpStats};

/// The format of `run.json` this build writes and reads. Folders of another format are
/// refused with one line naming both (format 1, before this field, had error counts as
/// arrays by class).
pub const FORMAT: u32 = 2;

/// Everything `run.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunFile {
    /// The format of this file ([`FORMAT`]); readers refuse others.
    pub format: u32,
    /// The slotstorm that wrote it.
    pub slotstorm_version: String,
    /// What the nodes said they run (`INFO server`): `7.0.15`, or `valkey 9.1.2`.
    pub redis_version: String,
    /// The client library that sent the ops: `slotstorm` (its own client), or a real one
    /// and its version (`redis-py 5.2.1`). (Absent in files written before it: slotstorm.)
    #[serde(default = "own_client")]
    pub client: String,
    /// The workload's name.
    pub workload: String,
    /// The workload file as given on the command line.
    pub workload_path: String,
    /// When the run's clock started, RFC 3339 with milliseconds, UTC.
    pub started_at: String,
    /// How long the load ran (warm-up included), seconds.
    pub elapsed_s: f64,
    /// The warm-up, seconds: ops intended to start before it are not measured.
    pub warmup_s: f64,
    /// The length of one interval of the histograms and the timeline, seconds.
    pub interval_s: f64,
    /// Why the run was cut short (`interrupted by SIGINT`), if it was.
    pub interrupted: Option<String>,
    /// False while the run goes on, and for a run that never finished (killed, crashed):
    /// the file was written when the run began, and `slotstorm report` fills its measured
    /// parts from the history up to where that stops. Lost writes and SLOs are judged only
    /// by a run that finished. (Absent in files written before it: those finished.)
    #[serde(default = "yes")]
    pub finished: bool,
    /// The cluster the run drove.
    pub cluster: ClusterInfo,
    /// The primaries and their slots at the start, which the per-shard figures name.
    pub shards: Vec<ShardSlots>,
    /// Every measured op, of every kind.
    pub totals: OpSummary,
    /// Measured ops by op name.
    pub ops: BTreeMap<String, OpSummary>,
    /// Ops that failed or ended unknown, by the shard (primary at the start) of the slot they
    /// addressed, by class.
    pub errors_by_shard: BTreeMap<String, ErrorCounts>,
    /// The unit of every latency: `us, from each op's intended start`.
    pub latency_unit: String,
    /// How the driver kept its schedule.
    pub schedule: ScheduleReport,
    /// Each fault, measured.
    pub faults: Vec<FaultReport>,
    /// Each topology operation, measured.
    pub operations: Vec<OperationReport>,
    /// Each set-full op's lost-writes check.
    pub lost_writes: Vec<LostWrites>,
    /// Each limiter op's over-admission check.
    pub over_admissions: Vec<OverAdmission>,
    /// The SLO verdicts, as the run decided them (reports never recompute them).
    pub slo_verdicts: Vec<Verdict>,
    /// The workload file's text, verbatim: the configuration the figures belong to.
    pub workload_toml: String,
}

/// The cluster a run drove.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ClusterInfo {
    /// One slotstorm built in Docker for the run.
    Embedded {
        /// The run id its containers and network are labelled with (`slotstorm.run`).
        run: String,
        /// The server its nodes run (absent in files written before Valkey: Redis).
        #[serde(default)]
        engine: crate::backend::engine::Engine,
        /// Primaries.
        masters: usize,
        /// Replicas per primary.
        replicas: usize,
        /// `cluster-node-timeout`, ms.
        node_timeout_ms: u64,
        /// `appendonly`.
        appendonly: bool,
        /// `cluster-require-full-coverage`.
        require_full_coverage: bool,
        /// Further `redis-server` settings from `[cluster.config]`.
        config: BTreeMap<String, String>,
        /// The node image.
        image: String,
        /// Its nodes at the start.
        nodes: Vec<NodeAddr>,
    },
    /// A cluster slotstorm did not start, reached through its seeds.
    External {
        /// The seed addresses as given.
        seeds: Vec<String>,
    },
}

/// A node and its address.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeAddr {
    /// Its name (`redis-1`).
    pub node: String,
    /// `ip:port`.
    pub addr: String,
}

/// A shard: a primary at the start and its slots.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ShardSlots {
    /// The primary's name (`redis-1`), or its address.
    pub name: String,
    /// Its slot ranges, each `[first, last]` inclusive.
    pub slots: Vec<[u16; 2]>,
}

/// The measured ops of one kind (or all of them).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OpSummary {
    /// Ops completed, of any outcome.
    pub count: u64,
    /// Ops that succeeded.
    pub ok: u64,
    /// Ops that failed or ended unknown.
    pub errors: u64,
    /// Ops completed per second of measured time.
    pub ops_per_s: f64,
    /// Ops that definitely failed, by class.
    pub failed: ErrorCounts,
    /// Ops whose outcome is unknown (they may have been applied), by class.
    pub unknown: ErrorCounts,
    /// Every attempt's errors, including those a retry hid, by class.
    pub attempt_errors: ErrorCounts,
    /// MOVED redirections the driver followed.
    pub moved_followed: u64,
    /// ASK redirections the driver followed.
    pub ask_followed: u64,
    /// Latency from each op's intended start, µs.
    pub latency_us: LatencySummary,
}

impl OpSummary {
    /// The summary of `s` over `measured_s` seconds.
    pub fn of(s: &OpStats, measured_s: f64) -> OpSummary {
        OpSummary {
            count: s.count(),
            ok: s.ok,
            errors: s.errors(),
            ops_per_s: (s.count() as f64 / measured_s.max(1e-9) * 10.0).round() / 10.0,
            failed: s.failed,
            unknown: s.unknown,
            attempt_errors: s.attempt_errors,
            moved_followed: s.moved,
            ask_followed: s.ask,
            latency_us: LatencySummary::of(&s.latency),
        }
    }
}

/// A latency histogram's figures, µs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
pub struct LatencySummary {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// 99.99th percentile.
    pub p99_99: u64,
    /// The largest.
    pub max: u64,
    /// The mean, to a tenth of a µs.
    pub mean: f64,
    /// Values recorded.
    pub count: u64,
}

impl LatencySummary {
    /// The figures of `h`.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        let p = |q: f64| h.value_at_percentile(q);
        LatencySummary {
            p50: p(50.0),
            p90: p(90.0),
            p99: p(99.0),
            p99_9: p(99.9),
            p99_99: p(99.99),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
            count: h.len(),
        }
    }
}

/// Why a `run.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RunFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// It was written by a slotstorm whose format this one does not read.
    #[error(
        "{path}: run.json format {found} (slotstorm {writer}); this slotstorm reads format {FORMAT}: run `slotstorm report` of that version, or run again"
    )]
    Format {
        /// The file.
        path: String,
        /// The format it says it has (1 before the field existed).
        found: u64,
        /// The slotstorm that wrote it, as it says.
        writer: String,
    },
    /// It is not what slotstorm writes.
    #[error("{path}: not a slotstorm run.json: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// `finished`'s default: a `run.json` written before the field was a finished run's.
fn yes() -> bool {
    true
}

/// What sent the ops in a file that does not say: slotstorm's own client.
fn own_client() -> String {
    crate::spec::ClientLibrary::Slotstorm.name().into()
}

impl RunFile {
    /// Read `path`, refusing another format with one line that names it.
    ///
    /// # Errors
    /// [`RunFileError`] naming the file.
    pub fn read(path: &Path) -> Result<RunFile, RunFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| RunFileError::Io { path: shown.clone(), source })?;
        let invalid =
            |e: serde_json::Error| RunFileError::Invalid { path: shown.clone(), reason: e.to_string() };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(invalid)?;
        let found = value.get("format").map_or(Some(1), serde_json::Value::as_u64);
        if found != Some(u64::from(FORMAT)) {
            let writer = value.get("slotstorm_version").and_then(|v| v.as_str()).unwrap_or("unknown");
            return Err(RunFileError::Format {
                path: shown,
                found: found.unwrap_or(0),
                writer: writer.to_string(),
            });
        }
        serde_json::from_value(value).map_err(invalid)
    }

    /// Write it to `path`, pretty-printed.
    ///
    /// # Errors
    /// The I/O error.
    /// The file is written beside and renamed into place, so a reader (or a run killed
    /// while writing it) never sees half of it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let part = path.with_extension("json.part");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&part)?);
        serde_json::to_writer_pretty(&mut f, self)?;
        f.write_all(b"\n")?;
        f.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_data()?;
        std::fs::rename(&part, path)
    }

    /// Lost acknowledged writes over every set-full op, if any was checked.
    pub fn lost_writes_total(&self) -> Option<u64> {
        (!self.lost_writes.is_empty()).then(|| self.lost_writes.iter().map(LostWrites::lost).sum())
    }

    /// Windows over the limit over every limiter op, if any was checked.
    pub fn over_admissions_total(&self) -> Option<u64> {
        (!self.over_admissions.is_empty()).then(|| self.over_admissions.iter().map(|o| o.over_windows).sum())
    }
}

/// The JSON Schema of `run.json`, as committed in `docs/run.schema.json`.
pub fn schema() -> String {
    let schema = schemars::schema_for!(RunFile);
    serde_json::to_string_pretty(&schema).expect("a schema serialises") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_schema_is_the_one_the_types_generate() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/run.schema.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != schema() {
            // Write it for the developer to commit; the test still fails until it is.
            std::fs::write(&path, schema()).unwrap();
            panic!("docs/run.schema.json was out of date with report::model; it is rewritten now: commit it");
        }
    }

    #[test]
    fn a_run_json_of_another_format_is_refused_with_one_line_naming_it() {
        let dir = std::env::temp_dir().join(format!("slotstorm-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.json");
        std::fs::write(&path, r#"{"slotstorm_version": "0.1.0", "totals": {}}"#).unwrap();
        let e = RunFile::read(&path).unwrap_err().to_string();
        assert!(e.contains("run.json format 1 (slotstorm 0.1.0)") && !e.contains('\n'), "{e}");
        std::fs::write(&path, "[1, 2]").unwrap();
        let e = RunFile::read(&path).unwrap_err().to_string();
        assert!(e.contains("format 1"), "{e}");
        std::fs::write(&path, "{").unwrap();
        assert!(RunFile::read(&path).unwrap_err().to_string().contains("not a slotstorm run.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
