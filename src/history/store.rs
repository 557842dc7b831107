//! Saving a history with the results (`history.json.gz`) and loading it back, so checks,
//! plots and reports run offline: `slotstorm report results/<run>` needs no cluster.
//!
//! The format is versioned JSON, gzip-compressed: ops and errors as compact arrays,
//! histograms as base64 compressed V2 (the HdrHistogram log encoding).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde_json::{Value, json};

use super::{ErrorClass, ErrorEvent, Event, History, Interval, OpEvent, OpKind, OpStats, Outcome};

/// The format version written; loading refuses others.
const VERSION: u64 = 1;

/// The file name inside a results folder.
pub const FILE: &str = "history.json.gz";

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn outcome_code(o: Outcome) -> u64 {
    match o {
        Outcome::Ok => 0,
        Outcome::Fail(c) => 1 + c.index() as u64,
        Outcome::Unknown(c) => 101 + c.index() as u64,
    }
}

fn outcome_from(code: u64) -> io::Result<Outcome> {
    let class =
        |i: u64| ErrorClass::ALL.get(i as usize).copied().ok_or_else(|| invalid(format!("outcome {code}")));
    Ok(match code {
        0 => Outcome::Ok,
        1..=100 => Outcome::Fail(class(code - 1)?),
        _ => Outcome::Unknown(class(code - 101)?),
    })
}

fn histogram_text(h: &hdrhistogram::Histogram<u64>) -> io::Result<String> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut buf).map_err(|e| invalid(format!("{e:?}")))?;
    Ok(STANDARD.encode(&buf))
}

fn histogram_from(text: &str) -> io::Result<hdrhistogram::Histogram<u64>> {
    let bytes = STANDARD.decode(text).map_err(|e| invalid(e.to_string()))?;
    Deserializer::new().deserialize(&mut &bytes[..]).map_err(|e| invalid(format!("{e:?}")))
}

fn stats_json(s: &OpStats) -> io::Result<Value> {
    Ok(json!({
        "h": histogram_text(&s.latency)?,
        "lag": histogram_text(&s.send_lag)?,
        "queued": s.queued,
        "ok": s.ok,
        "failed": s.failed,
        "unknown": s.unknown,
        "attempt_errors": s.attempt_errors,
        "moved": s.moved,
        "ask": s.ask,
    }))
}

fn counts(v: &Value) -> io::Result<[u64; ErrorClass::COUNT]> {
    let a = v.as_array().ok_or_else(|| invalid("counts are not an array"))?;
    let mut out = [0; ErrorClass::COUNT];
    for (o, x) in out.iter_mut().zip(a) {
        *o = x.as_u64().ok_or_else(|| invalid("count is not a number"))?;
    }
    Ok(out)
}

fn stats_from(v: &Value) -> io::Result<OpStats> {
    let latency = histogram_from(v["h"].as_str().unwrap_or_default())?;
    // Histories saved before send lag was recorded have none (every op sent on time).
    let send_lag = match v["lag"].as_str() {
        Some(text) => histogram_from(text)?,
        None => super::new_lag_histogram(),
    };
    Ok(OpStats {
        latency,
        send_lag,
        queued: v["queued"].as_u64().unwrap_or(0),
        ok: v["ok"].as_u64().unwrap_or(0),
        failed: counts(&v["failed"])?,
        unknown: counts(&v["unknown"])?,
        attempt_errors: counts(&v["attempt_errors"])?,
        moved: v["moved"].as_u64().unwrap_or(0),
        ask: v["ask"].as_u64().unwrap_or(0),
    })
}

/// Write `history` to `path`.
///
/// # Errors
/// The I/O error.
pub fn save(path: &Path, history: &History) -> io::Result<()> {
    let intervals = history
        .intervals
        .iter()
        .map(|i| Ok(json!({"index": i.index, "ops": i.ops.iter().map(stats_json).collect::<io::Result<Vec<_>>>()?})))
        .collect::<io::Result<Vec<_>>>()?;
    let ops: Vec<Value> = history
        .ops
        .iter()
        .map(|o| {
            json!([
                o.start_us,
                o.latency_us,
                o.kind.0,
                o.slot,
                o.id,
                o.uid,
                outcome_code(o.outcome),
                o.attempts,
                o.reply,
                o.sent_us,
                o.moved,
                o.ask,
                o.queued_us
            ])
        })
        .collect();
    let errors: Vec<Value> =
        history.errors.iter().map(|e| json!([e.at_us, e.kind.0, e.slot, e.class.index(), e.last])).collect();
    let doc = json!({
        "version": VERSION,
        "op_names": history.op_names,
        "interval_us": history.interval.as_micros() as u64,
        "warmup_us": history.warmup.as_micros() as u64,
        "started_at_us": history.started_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64,
        "elapsed_us": history.elapsed.as_micros() as u64,
        "intervals": intervals,
        "ops": ops,
        "errors": errors,
        "events": history.events,
    });
    let mut gz = GzEncoder::new(BufWriter::new(File::create(path)?), Compression::fast());
    // serde_json writes token by token, and flate2 (miniz backend) zero-fills its 32 KiB
    // output buffer on every write it gets: without this buffer, saving a history of a
    // million ops spent seconds in memset.
    let mut json = BufWriter::with_capacity(64 * 1024, &mut gz);
    serde_json::to_writer(&mut json, &doc)?;
    json.flush()?;
    drop(json);
    gz.finish()?.flush()
}

/// Read a history written by [`save`].
///
/// # Errors
/// An I/O error, or `InvalidData` naming what is wrong with the file.
pub fn load(path: &Path) -> io::Result<History> {
    let mut text = String::new();
    GzDecoder::new(BufReader::new(File::open(path)?)).read_to_string(&mut text)?;
    let doc: Value = serde_json::from_str(&text)?;
    if doc["version"].as_u64() != Some(VERSION) {
        return Err(invalid(format!(
            "{}: history format {} is not {VERSION}",
            path.display(),
            doc["version"]
        )));
    }
    let num = |v: &Value| v.as_u64().ok_or_else(|| invalid(format!("{v} is not a number")));
    let us = |k: &str| num(&doc[k]).map(Duration::from_micros);
    let op_names: Vec<String> = serde_json::from_value(doc["op_names"].clone())?;
    let mut intervals = Vec::new();
    for i in doc["intervals"].as_array().into_iter().flatten() {
        let ops =
            i["ops"].as_array().into_iter().flatten().map(stats_from).collect::<io::Result<Vec<_>>>()?;
        intervals.push(Interval { index: num(&i["index"])? as u32, ops });
    }
    let mut ops = Vec::new();
    for o in doc["ops"].as_array().into_iter().flatten() {
        let f = |i: usize| num(&o[i]);
        ops.push(OpEvent {
            start_us: f(0)?,
            latency_us: f(1)?,
            kind: OpKind(f(2)? as u16),
            slot: f(3)? as u16,
            id: f(4)?,
            uid: f(5)?,
            outcome: outcome_from(f(6)?)?,
            attempts: f(7)? as u8,
            reply: o[8].as_i64(),
            sent_us: o[9].as_u64().unwrap_or(0),
            // Histories saved before redirections were kept per op have none.
            moved: o[10].as_u64().unwrap_or(0).min(255) as u8,
            ask: o[11].as_u64().unwrap_or(0).min(255) as u8,
            // ... and before the wait for an in-flight slot was, none.
            queued_us: o[12].as_u64().unwrap_or(0).min(u64::from(u32::MAX)) as u32,
        });
    }
    let mut errors = Vec::new();
    for e in doc["errors"].as_array().into_iter().flatten() {
        let class =
            ErrorClass::ALL.get(num(&e[3])? as usize).copied().ok_or_else(|| invalid("error class"))?;
        errors.push(ErrorEvent {
            at_us: num(&e[0])?,
            kind: OpKind(num(&e[1])? as u16),
            slot: num(&e[2])? as u16,
            class,
            last: e[4].as_bool().unwrap_or(true),
        });
    }
    let events: Vec<Event> = serde_json::from_value(doc["events"].clone())?;
    Ok(History {
        op_names,
        interval: us("interval_us")?,
        warmup: us("warmup_us")?,
        started_at: SystemTime::UNIX_EPOCH + us("started_at_us")?,
        elapsed: us("elapsed_us")?,
        intervals,
        ops,
        errors,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EventKind;

    #[test]
    fn a_history_survives_a_round_trip() {
        let mut stats = OpStats { ok: 3, moved: 2, ..Default::default() };
        stats.latency.record(1234).unwrap();
        stats.failed[ErrorClass::ClusterDown.index()] = 1;
        let h = History {
            op_names: vec!["get".into(), "set".into()],
            interval: Duration::from_secs(1),
            warmup: Duration::from_millis(500),
            started_at: UNIX_EPOCH + Duration::from_micros(1_796_072_105_123_456),
            elapsed: Duration::from_secs(3),
            intervals: vec![Interval { index: 0, ops: vec![stats.clone(), OpStats::default()] }],
            ops: vec![
                OpEvent {
                    start_us: 10,
                    latency_us: 20,
                    kind: OpKind(1),
                    slot: 99,
                    id: 7,
                    uid: 1 << 41,
                    sent_us: 3,
                    queued_us: 2,
                    outcome: Outcome::Unknown(ErrorClass::Timeout),
                    attempts: 2,
                    moved: 1,
                    ask: 3,
                    reply: Some(-1),
                },
                OpEvent {
                    start_us: 11,
                    latency_us: 1,
                    kind: OpKind(0),
                    slot: 0,
                    id: 0,
                    uid: 2,
                    sent_us: 3,
                    queued_us: 0,
                    outcome: Outcome::Fail(ErrorClass::Other),
                    attempts: 1,
                    moved: 0,
                    ask: 0,
                    reply: None,
                },
            ],
            errors: vec![ErrorEvent {
                at_us: 5,
                kind: OpKind(1),
                slot: 99,
                class: ErrorClass::NoScript,
                last: false,
            }],
            events: vec![Event {
                at_us: 42,
                kind: EventKind::Flagged {
                    observer: "redis-2".into(),
                    subject: "redis-1".into(),
                    flag: "fail".into(),
                },
            }],
        };
        let path = std::env::temp_dir().join(format!("slotstorm-history-{}.json.gz", std::process::id()));
        save(&path, &h).unwrap();
        let back = load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back.op_names, h.op_names);
        assert_eq!(
            (back.interval, back.warmup, back.elapsed, back.started_at),
            (h.interval, h.warmup, h.elapsed, h.started_at)
        );
        assert_eq!(back.ops, h.ops);
        assert_eq!(back.errors, h.errors);
        assert_eq!(back.events, h.events);
        let s = &back.intervals[0].ops[0];
        assert_eq!((s.ok, s.moved, s.failed), (3, 2, stats.failed));
        assert_eq!(s.latency.len(), 1);
        assert_eq!(s.latency.max(), stats.latency.max());
    }
}
