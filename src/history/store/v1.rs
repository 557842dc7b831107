//! The history format 1 (`history.json.gz`): one gzip-compressed JSON document with ops and
//! errors as positional arrays. Only read, so that folders written before format 2 still
//! rebuild their reports.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::time::{Duration, SystemTime};

use flate2::read::GzDecoder;
use serde_json::Value;

use super::super::{
    ErrorClass, ErrorCounts, ErrorEvent, Event, History, Interval, OpEvent, OpKind, OpStats, Outcome,
};
use super::{histogram_from, invalid};

/// The file name of format 1.
pub const FILE: &str = "history.json.gz";

/// The format version of such a file.
const VERSION: u64 = 1;

fn outcome_from(code: u64) -> io::Result<Outcome> {
    let class =
        |i: u64| ErrorClass::ALL.get(i as usize).copied().ok_or_else(|| invalid(format!("outcome {code}")));
    Ok(match code {
        0 => Outcome::Ok,
        1..=100 => Outcome::Fail(class(code - 1)?),
        _ => Outcome::Unknown(class(code - 101)?),
    })
}

fn counts(v: &Value) -> io::Result<ErrorCounts> {
    let a = v.as_array().ok_or_else(|| invalid("counts are not an array"))?;
    let mut out = ErrorCounts::default();
    for (&c, x) in ErrorClass::ALL.iter().zip(a) {
        out[c] = x.as_u64().ok_or_else(|| invalid("count is not a number"))?;
    }
    Ok(out)
}

fn stats_from(v: &Value) -> io::Result<OpStats> {
    let latency = histogram_from(v["h"].as_str().unwrap_or_default())?;
    // Histories saved before send lag was recorded have none (every op sent on time).
    let send_lag = match v["lag"].as_str() {
        Some(text) => histogram_from(text)?,
        None => crate::history::new_lag_histogram(),
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

/// Read a history of format 1 (`history.json.gz`, written before 2026-12-07).
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
        intervals.push(Interval { index: num(&i["index"])? as u32, ops, shards: Vec::new() });
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
        intervals: intervals.into(),
        ops,
        errors,
        events,
    })
}
