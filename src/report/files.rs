//! Writing the data files of a results folder.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use serde_json::{Value, json};

use crate::check::failover::FaultReport;
use crate::check::lost_writes::LostWrites;
use crate::check::rate_limit::OverAdmission;
use crate::check::slo::Verdict;
use crate::history::{ErrorClass, History, OpStats};
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
    /// The cluster, described for people (kind, layout, settings, nodes).
    pub cluster: Value,
    /// The shards at the start, for attributing errors.
    pub shards: Vec<Shard>,
    /// True when the run was cut short (Ctrl-C, SIGTERM, an error).
    pub interrupted: Option<String>,
}

/// Write `run.json`, `latency.hlog`, `timeline.csv` and `events.jsonl` into `dir`.
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
    let mut run = run_json(history, meta);
    run["schedule"] = serde_json::to_value(findings.schedule)?;
    run["faults"] = serde_json::to_value(findings.faults)?;
    run["operations"] = serde_json::to_value(findings.operations)?;
    run["lost_writes"] = serde_json::to_value(findings.lost_writes)?;
    run["over_admissions"] = serde_json::to_value(findings.over_admissions)?;
    run["slo_verdicts"] = serde_json::to_value(findings.verdicts)?;
    write_json(&dir.join("run.json"), &run)?;
    write_nodes(&dir.join("nodes.csv"), samples)?;
    crate::history::store::save(&dir.join(crate::history::store::FILE), history)?;
    write_hlog(&dir.join("latency.hlog"), history)?;
    write_timeline(&dir.join("timeline.csv"), history)?;
    write_shards(&dir.join("shards.csv"), history, &meta.shards)?;
    write_events(&dir.join("events.jsonl"), history, meta)?;
    Ok(())
}

/// Percentiles reported everywhere, with their names.
pub const PERCENTILES: [(&str, f64); 5] =
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9), ("p99_99", 99.99)];

fn latency_json(h: &Histogram<u64>) -> Value {
    let mut m = serde_json::Map::new();
    for (name, p) in PERCENTILES {
        m.insert(name.into(), json!(h.value_at_percentile(p)));
    }
    m.insert("max".into(), json!(h.max()));
    m.insert("mean".into(), json!((h.mean() * 10.0).round() / 10.0));
    m.insert("count".into(), json!(h.len()));
    Value::Object(m)
}

fn classes_json(counts: &[u64; ErrorClass::COUNT]) -> Value {
    let m: serde_json::Map<String, Value> = ErrorClass::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| (c.name().to_string(), json!(n)))
        .collect();
    Value::Object(m)
}

fn op_json(s: &OpStats, measured_s: f64) -> Value {
    json!({
        "count": s.count(),
        "ok": s.ok,
        "errors": s.errors(),
        "ops_per_s": (s.count() as f64 / measured_s * 10.0).round() / 10.0,
        "failed": classes_json(&s.failed),
        "unknown": classes_json(&s.unknown),
        "attempt_errors": classes_json(&s.attempt_errors),
        "moved_followed": s.moved,
        "ask_followed": s.ask,
        "latency_us": latency_json(&s.latency),
    })
}

fn run_json(history: &History, meta: &RunMeta) -> Value {
    let totals = history.totals();
    let measured_s = history.elapsed.saturating_sub(history.warmup).as_secs_f64().max(1e-9);
    let mut all = OpStats::default();
    let mut ops = serde_json::Map::new();
    for (name, s) in history.op_names.iter().zip(&totals) {
        ops.insert(name.clone(), op_json(s, measured_s));
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
    let mut by_shard: BTreeMap<String, [u64; ErrorClass::COUNT]> = BTreeMap::new();
    for e in history.errors.iter().filter(|e| e.last && e.at_us >= warmup_us) {
        by_shard.entry(shard_of(e.slot)).or_insert([0; ErrorClass::COUNT])[e.class.index()] += 1;
    }
    let by_shard: serde_json::Map<String, Value> =
        by_shard.iter().map(|(k, v)| (k.clone(), classes_json(v))).collect();
    json!({
        "slotstorm_version": env!("CARGO_PKG_VERSION"),
        "redis_version": meta.redis_version,
        "workload": meta.workload,
        "workload_path": meta.workload_path,
        "started_at": humantime::format_rfc3339_millis(history.started_at).to_string(),
        "elapsed_s": history.elapsed.as_secs_f64(),
        "warmup_s": history.warmup.as_secs_f64(),
        "interval_s": history.interval.as_secs_f64(),
        "interrupted": meta.interrupted,
        "cluster": meta.cluster,
        "shards": meta.shards.iter().map(|s| json!({"name": s.name, "slots": s.ranges})).collect::<Vec<_>>(),
        "totals": op_json(&all, measured_s),
        "ops": ops,
        "errors_by_shard": by_shard,
        "latency_unit": "us, from each op's intended start",
        "workload_toml": meta.workload_toml,
    })
}

fn write_json(path: &Path, v: &Value) -> io::Result<()> {
    let mut f = BufWriter::new(File::create(path)?);
    serde_json::to_writer_pretty(&mut f, v)?;
    f.write_all(b"\n")?;
    f.flush()
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
    for interval in &history.intervals {
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
    for interval in &history.intervals {
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
            for n in s.errors_by_class() {
                write!(f, ",{n}")?;
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
/// redirections followed for them, and every attempt's errors by class, so redirections
/// during a reshard or CLUSTERDOWN during a failover show where they struck.
fn write_shards(path: &Path, history: &History, shards: &[Shard]) -> io::Result<()> {
    let mut shard_of = vec![shards.len(); 16384];
    for (i, s) in shards.iter().enumerate() {
        for &(a, b) in &s.ranges {
            for slot in a..=b.min(16383) {
                shard_of[usize::from(slot)] = i;
            }
        }
    }
    let names: Vec<&str> = shards.iter().map(|s| s.name.as_str()).chain(std::iter::once("unowned")).collect();
    let len = history.interval.as_micros().max(1) as u64;
    // (interval, shard) → ops, failed ops, MOVED and ASK followed, attempt errors by class.
    #[derive(Default)]
    struct Row {
        ops: u64,
        errors: u64,
        moved: u64,
        ask: u64,
        attempts: [u64; ErrorClass::COUNT],
    }
    let mut rows: BTreeMap<(u64, usize), Row> = BTreeMap::new();
    for o in &history.ops {
        let row = rows.entry((o.start_us / len, shard_of[usize::from(o.slot)])).or_default();
        row.ops += 1;
        row.errors += u64::from(o.outcome.error().is_some());
        row.moved += u64::from(o.moved);
        row.ask += u64::from(o.ask);
    }
    for e in &history.errors {
        rows.entry((e.at_us / len, shard_of[usize::from(e.slot)])).or_default().attempts[e.class.index()] +=
            1;
    }
    let mut f = BufWriter::new(File::create(path)?);
    write!(f, "interval,start_s,shard,ops,errors,moved_followed,ask_followed")?;
    for c in ErrorClass::ALL {
        write!(f, ",attempt_{}", c.name())?;
    }
    writeln!(f)?;
    for ((interval, shard), row) in rows {
        let start_s = (interval * len) as f64 / 1e6;
        write!(
            f,
            "{interval},{start_s:.3},{},{},{},{},{}",
            names[shard], row.ops, row.errors, row.moved, row.ask
        )?;
        for n in row.attempts {
            write!(f, ",{n}")?;
        }
        writeln!(f)?;
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
