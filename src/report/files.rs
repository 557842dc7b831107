//! Writing the data files of a results folder.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use serde_json::{Value, json};

use super::model::{self, ClusterInfo, OpSummary, RunFile, ShardSlots};
use crate::check::failover::FaultReport;
use crate::check::lost_writes::LostWrites;
use crate::check::rate_limit::OverAdmission;
use crate::check::slo::Verdict;
use crate::history::{ErrorClass, ErrorCounts, History, OpStats, Recording};
use crate::observe::NodeSample;

/// A shard: a primary's slots at the start of the run, named after that primary.
#[derive(Debug, Clone)]
pub struct Shard {
    /// The primary's name (`redis-1`) or address.
    pub name: String,
    /// Its slot ranges, inclusive.
    pub ranges: Vec<(u16, u16)>,
}

/// What the checkers found, as `run.json` records it.
pub struct Findings<'a> {
    /// How the driver kept its schedule.
    pub schedule: &'a crate::check::schedule::ScheduleReport,
    /// Each fault, measured.
    pub faults: &'a [FaultReport],
    /// Each topology operation, measured.
    pub operations: &'a [crate::check::operations::OperationReport],
    /// Each set-full op's lost writes.
    pub lost_writes: &'a [LostWrites],
    /// Each limiter op's over-admissions.
    pub over_admissions: &'a [OverAdmission],
    /// The SLO verdicts.
    pub verdicts: &'a [Verdict],
}

/// What a run's files say besides the history.
#[derive(Debug, Clone)]
pub struct RunMeta {
    /// The workload's name.
    pub workload: String,
    /// The workload file as given.
    pub workload_path: String,
    /// The workload file's text, verbatim: the config snapshot.
    pub workload_toml: String,
    /// The Redis version the nodes run.
    pub redis_version: String,
    /// The client library that sent the ops ([`RunFile::client`]).
    pub client: String,
    /// The cluster the run drove.
    pub cluster: ClusterInfo,
    /// The shards at the start, for attributing errors.
    pub shards: Vec<Shard>,
    /// True when the run was cut short (Ctrl-C, SIGTERM, an error).
    pub interrupted: Option<String>,
    /// Whether the run got to its end ([`RunFile::finished`]).
    pub finished: bool,
}

/// Write `run.json`, `nodes.csv`, `latency.hlog`, `timeline.csv`, `shards.csv` and
/// `events.jsonl` into `dir` (the history is written by the run as it goes).
///
/// # Errors
/// The first I/O error.
pub fn write_results(
    dir: &Path,
    history: &History,
    meta: &RunMeta,
    findings: &Findings<'_>,
    samples: &[NodeSample],
) -> io::Result<()> {
    write_run_file(dir, history, meta, findings)?;
    write_nodes(&dir.join("nodes.csv"), samples)?;
    write_hlog(&dir.join("latency.hlog"), history)?;
    write_timeline(&dir.join("timeline.csv"), history)?;
    write_shards(&dir.join("shards.csv"), history, &meta.shards)?;
    write_events(&dir.join("events.jsonl"), history, meta)?;
    Ok(())
}

/// Write `run.json` alone: at a run's start, what it is and will measure (unfinished).
///
/// # Errors
/// The I/O error.
pub fn write_run_file(
    dir: &Path,
    history: &History,
    meta: &RunMeta,
    findings: &Findings<'_>,
) -> io::Result<()> {
    run_file(history, meta, findings).write(&dir.join("run.json"))
}

fn run_file(history: &History, meta: &RunMeta, findings: &Findings<'_>) -> RunFile {
    let totals = history.totals();
    let measured_s = history.elapsed.saturating_sub(history.warmup).as_secs_f64();
    let mut all = OpStats::default();
    let mut ops = BTreeMap::new();
    for (name, s) in history.op_names.iter().zip(&totals) {
        ops.insert(name.clone(), OpSummary::of(s, measured_s));
        all.merge(s);
    }
    // Errors the application saw, by the shard (initial primary) of the slot they addressed.
    let shard_of = |slot: u16| {
        meta.shards
            .iter()
            .find(|s| s.ranges.iter().any(|&(a, b)| a <= slot && slot <= b))
            .map_or_else(|| format!("slot {slot}"), |s| s.name.clone())
    };
    let warmup_us = history.warmup.as_micros() as u64;
    let mut errors_by_shard: BTreeMap<String, ErrorCounts> = BTreeMap::new();
    for e in history.errors.iter().filter(|e| e.last && e.at_us >= warmup_us) {
        errors_by_shard.entry(shard_of(e.slot)).or_default()[e.class] += 1;
    }
    RunFile {
        format: model::FORMAT,
        slotstorm_version: env!("CARGO_PKG_VERSION").into(),
        redis_version: meta.redis_version.clone(),
        client: meta.client.clone(),
        workload: meta.workload.clone(),
        workload_path: meta.workload_path.clone(),
        started_at: humantime::format_rfc3339_millis(history.started_at).to_string(),
        elapsed_s: history.elapsed.as_secs_f64(),
        warmup_s: history.warmup.as_secs_f64(),
        interval_s: history.interval.as_secs_f64(),
        interrupted: meta.interrupted.clone(),
        finished: meta.finished,
        cluster: meta.cluster.clone(),
        shards: meta
            .shards
            .iter()
            .map(|s| ShardSlots {
                name: s.name.clone(),
                slots: s.ranges.iter().map(|&(a, b)| [a, b]).collect(),
            })
            .collect(),
        totals: OpSummary::of(&all, measured_s),
        ops,
        errors_by_shard,
        latency_unit: "us, from each op's intended start".into(),
        schedule: findings.schedule.clone(),
        faults: findings.faults.to_vec(),
        operations: findings.operations.to_vec(),
        lost_writes: findings.lost_writes.to_vec(),
        over_admissions: findings.over_admissions.to_vec(),
        slo_verdicts: findings.verdicts.to_vec(),
        workload_toml: meta.workload_toml.clone(),
    }
}

/// An HdrHistogram interval log in the Java format: one compressed V2 histogram per interval
/// and op, tagged with the op's name; values in µs.
fn write_hlog(path: &Path, history: &History) -> io::Result<()> {
    let mut f = BufWriter::new(File::create(path)?);
    let start = history.started_at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    writeln!(f, "#[Histograms of slotstorm op latency in microseconds, one per interval and op (Tag=op)]")?;
    writeln!(f, "#[StartTime: {start:.3} (seconds since epoch)]")?;
    writeln!(f, "#[BaseTime: {start:.3} (seconds since epoch)]")?;
    writeln!(f, "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"")?;
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new().begin_log_with(&mut f, &mut serializer)?;
    for interval in history.intervals.iter() {
        let at = history.interval * interval.index;
        for (name, s) in history.op_names.iter().zip(&interval.ops) {
            if s.latency.is_empty() {
                continue;
            }
            writer
                .write_histogram(&s.latency, at, history.interval, Tag::new(name))
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
        }
    }
    drop(writer);
    f.flush()
}

fn write_timeline(path: &Path, history: &History) -> io::Result<()> {
    let mut f = BufWriter::new(File::create(path)?);
    write!(f, "interval,start_s,warmup,op,count,ok,errors")?;
    for c in ErrorClass::ALL {
        write!(f, ",{}", c.name())?;
    }
    writeln!(f, ",moved_followed,ask_followed,p50_us,p99_us,max_us,send_lag_p99_us,send_lag_max_us,queued")?;
    for interval in history.intervals.iter() {
        let start_s = (history.interval * interval.index).as_secs_f64();
        let warmup = history.in_warmup(interval.index);
        for (name, s) in history.op_names.iter().zip(&interval.ops) {
            write!(
                f,
                "{},{start_s:.3},{warmup},{name},{},{},{}",
                interval.index,
                s.count(),
                s.ok,
                s.errors()
            )?;
            let errors = s.errors_by_class();
            for c in ErrorClass::ALL {
                write!(f, ",{}", errors[c])?;
            }
            let (p50, p99) = (s.latency.value_at_quantile(0.5), s.latency.value_at_quantile(0.99));
            write!(f, ",{},{},{p50},{p99},{}", s.moved, s.ask, s.latency.max())?;
            let lag = crate::history::lag_value;
            let lag_p99 = lag(s.send_lag.value_at_quantile(0.99));
            writeln!(f, ",{lag_p99},{},{}", lag(s.send_lag.max()), s.queued)?;
        }
    }
    f.flush()
}

/// One row per interval and shard (the primaries' slots at the start; `unowned` for slots no
/// shard held), by each op's [`slot`](crate::history::OpEvent::slot): ops, their errors, the MOVED and ASK
/// redirections followed for them (counted as the run went, [`crate::history::Interval::shards`]),
/// and every attempt's errors by class, so redirections during a reshard or CLUSTERDOWN during
/// a failover show where they struck.
fn write_shards(path: &Path, history: &History, shards: &[Shard]) -> io::Result<()> {
    let recording =
        Recording::new(Vec::new(), &[], &shards.iter().map(|s| s.ranges.clone()).collect::<Vec<_>>());
    let names: Vec<&str> = shards
        .iter()
        .take(recording.shards())
        .map(|s| s.name.as_str())
        .chain(std::iter::once("unowned"))
        .collect();
    let len = history.interval.as_micros().max(1) as u64;
    // (interval, shard) → attempt errors by class.
    let mut attempts: BTreeMap<(u64, usize), ErrorCounts> = BTreeMap::new();
    for e in &history.errors {
        attempts.entry((e.at_us / len, recording.shard(e.slot))).or_default()[e.class] += 1;
    }
    let mut f = BufWriter::new(File::create(path)?);
    write!(f, "interval,start_s,shard,ops,errors,moved_followed,ask_followed")?;
    for c in ErrorClass::ALL {
        write!(f, ",attempt_{}", c.name())?;
    }
    writeln!(f)?;
    for interval in history.intervals.iter() {
        let index = u64::from(interval.index);
        for (shard, name) in names.iter().enumerate() {
            let row = interval.shards.get(shard).copied().unwrap_or_default();
            let errors = attempts.remove(&(index, shard)).unwrap_or_default();
            if row.ops == 0 && errors.total() == 0 {
                continue;
            }
            let start_s = (index * len) as f64 / 1e6;
            write!(f, "{index},{start_s:.3},{name},{},{},{},{}", row.ops, row.errors, row.moved, row.ask)?;
            for c in ErrorClass::ALL {
                write!(f, ",{}", errors[c])?;
            }
            writeln!(f)?;
        }
    }
    f.flush()
}

/// One row per node and sample: the observer's `INFO` readings.
fn write_nodes(path: &Path, samples: &[NodeSample]) -> io::Result<()> {
    let mut f = BufWriter::new(File::create(path)?);
    writeln!(f, "t_s,node,role,ops_per_sec,used_memory,connected_clients,repl_lag_bytes")?;
    for s in samples {
        let lag = s.repl_lag_bytes.map(|l| l.to_string()).unwrap_or_default();
        writeln!(
            f,
            "{:.3},{},{},{},{},{},{lag}",
            s.at_us as f64 / 1e6,
            s.node,
            s.role,
            s.ops_per_sec,
            s.used_memory,
            s.connected_clients
        )?;
    }
    f.flush()
}

fn write_events(path: &Path, history: &History, meta: &RunMeta) -> io::Result<()> {
    let mut f = BufWriter::new(File::create(path)?);
    let started = json!({"t_s": 0.0, "event": "run_started", "workload": meta.workload});
    writeln!(f, "{started}")?;
    for e in &history.events {
        let mut v = serde_json::to_value(&e.kind)?;
        if let Value::Object(m) = &mut v {
            m.insert("t_s".into(), json!(e.at_us as f64 / 1e6));
        }
        writeln!(f, "{v}")?;
    }
    let ended = json!({
        "t_s": history.elapsed.as_secs_f64(),
        "event": "run_ended",
        "interrupted": meta.interrupted,
    });
    writeln!(f, "{ended}")?;
    f.flush()
}
