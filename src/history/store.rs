//! Saving a history with the results and loading it back, so checks, plots and reports run
//! offline: `slotstorm report results/<run>` needs no cluster.
//!
//! Format 2, `history.jsonl.gz`: JSON Lines, one record per line, every field named, gzip-
//! compressed in blocks (each a gzip member; the file is one gzip stream to `zcat`). The
//! first line is the header (`{"header": {"version": 2, …}}`); then, in the order the run
//! produced them, one line per interval (`{"interval": …}`, histograms as base64 compressed
//! V2, the HdrHistogram log encoding; a later line for the same index replaces an earlier
//! one, after a late report), per kept op (`{"op": …}`), per attempt error (`{"error": …}`)
//! and per event (`{"event": …}`, as in `events.jsonl`); the last line is the end
//! (`{"end": {"elapsed_us": …}}`). A run writes it as it goes ([`journal`]): a file without
//! its end is a run that was killed, read up to its last whole block. Format 1
//! (`history.json.gz`) is still read ([`v1`]).

pub mod journal;
mod v1;

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::read::MultiGzDecoder;
use hdrhistogram::serialization::Deserializer;
use serde::{Deserialize, Serialize};

use super::intervals::Sealed;
use super::{ErrorClass, ErrorEvent, Event, History, Intervals, OpEvent, OpKind, Outcome};

/// The format version written; loading refuses others (but reads [`v1::FILE`]).
pub const VERSION: u32 = 2;

/// The file name inside a results folder.
pub const FILE: &str = "history.jsonl.gz";

pub(super) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub(super) fn histogram_from(text: &str) -> io::Result<hdrhistogram::Histogram<u64>> {
    let bytes = STANDARD.decode(text).map_err(|e| invalid(e.to_string()))?;
    Deserializer::new().deserialize(&mut &bytes[..]).map_err(|e| invalid(format!("{e:?}")))
}

/// One line of the file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    Header(Header),
    Interval(Sealed),
    Op(OpRecord),
    Error(ErrorRecord),
    Event(Event),
    End(End),
}

/// What the run was: the first line.
#[derive(Serialize, Deserialize)]
struct Header {
    /// [`VERSION`].
    version: u32,
    /// Op names, indexed by the ops' `kind`.
    op_names: Vec<String>,
    /// Interval length, µs.
    interval_us: u64,
    /// Warm-up, µs.
    warmup_us: u64,
    /// The run clock's zero, µs since the Unix epoch.
    started_at_us: u64,
}

/// The last line: the run finished writing its history.
#[derive(Serialize, Deserialize)]
struct End {
    /// How long the load ran, µs.
    elapsed_us: u64,
}

/// How an op ended.
#[derive(Serialize, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum OutcomeName {
    Ok,
    Failed,
    Unknown,
}

/// A kept op ([`OpEvent`]'s fields, named).
#[derive(Serialize, Deserialize)]
struct OpRecord {
    start_us: u64,
    latency_us: u64,
    kind: u16,
    slot: u16,
    id: u64,
    uid: u64,
    sent_us: u64,
    queued_us: u32,
    outcome: OutcomeName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class: Option<ErrorClass>,
    attempts: u8,
    moved: u8,
    ask: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct ErrorRecord {
    at_us: u64,
    kind: u16,
    slot: u16,
    class: ErrorClass,
    /// The op's last attempt (what the application saw), or one a retry went on from.
    last: bool,
}

impl ErrorRecord {
    fn of(e: &ErrorEvent) -> ErrorRecord {
        ErrorRecord { at_us: e.at_us, kind: e.kind.0, slot: e.slot, class: e.class, last: e.last }
    }
}

impl OpRecord {
    fn of(o: &OpEvent) -> OpRecord {
        let (outcome, class) = match o.outcome {
            Outcome::Ok => (OutcomeName::Ok, None),
            Outcome::Fail(c) => (OutcomeName::Failed, Some(c)),
            Outcome::Unknown(c) => (OutcomeName::Unknown, Some(c)),
        };
        OpRecord {
            start_us: o.start_us,
            latency_us: o.latency_us,
            kind: o.kind.0,
            slot: o.slot,
            id: o.id,
            uid: o.uid,
            sent_us: o.sent_us,
            queued_us: o.queued_us,
            outcome,
            class,
            attempts: o.attempts,
            moved: o.moved,
            ask: o.ask,
            reply: o.reply,
        }
    }

    fn op(self) -> io::Result<OpEvent> {
        let class = || self.class.ok_or_else(|| invalid("an op that did not succeed has no class"));
        let outcome = match self.outcome {
            OutcomeName::Ok => Outcome::Ok,
            OutcomeName::Failed => Outcome::Fail(class()?),
            OutcomeName::Unknown => Outcome::Unknown(class()?),
        };
        Ok(OpEvent {
            start_us: self.start_us,
            latency_us: self.latency_us,
            kind: OpKind(self.kind),
            slot: self.slot,
            id: self.id,
            uid: self.uid,
            sent_us: self.sent_us,
            queued_us: self.queued_us,
            outcome,
            attempts: self.attempts,
            moved: self.moved,
            ask: self.ask,
            reply: self.reply,
        })
    }
}

pub use journal::save;

/// The history file of the results folder `dir`: [`FILE`], or format 1's where only that is.
pub fn path_in(dir: &Path) -> PathBuf {
    let v2 = dir.join(FILE);
    let v1 = dir.join(v1::FILE);
    if !v2.exists() && v1.exists() { v1 } else { v2 }
}

/// A history read back, and whether its file ends early.
pub struct Loaded {
    /// What the file holds.
    pub history: History,
    /// Why the file stops before its end record (a run killed mid-way, a copy cut short),
    /// with the line it was read up to; `None` for a whole file.
    pub ends_early: Option<String>,
}

/// Read the history of the results folder `dir`, in format 2 or 1. A format-2 file cut
/// short (no end record) is read up to its last whole line: its elapsed time is then the
/// intervals it holds.
///
/// # Errors
/// An I/O error, or `InvalidData` naming the line and what is wrong with it.
pub fn load(dir: &Path) -> io::Result<Loaded> {
    let path = path_in(dir);
    if path.ends_with(v1::FILE) {
        return v1::load(&path).map(|history| Loaded { history, ends_early: None });
    }
    let reader = BufReader::new(MultiGzDecoder::new(BufReader::new(File::open(&path)?)));
    let mut lines = reader.lines();
    let at = |n: usize, e: &dyn std::fmt::Display| invalid(format!("{}:{n}: {e}", path.display()));
    let first = lines.next().ok_or_else(|| at(1, &"empty"))?.map_err(|e| at(1, &e))?;
    let Ok(Record::Header(h)) = serde_json::from_str::<Record>(&first) else {
        return Err(at(1, &"not a slotstorm history (no header line)"));
    };
    if h.version != VERSION {
        return Err(at(1, &format!("history format {} is not {VERSION}", h.version)));
    }
    let mut history = History {
        op_names: h.op_names,
        interval: Duration::from_micros(h.interval_us),
        warmup: Duration::from_micros(h.warmup_us),
        started_at: SystemTime::UNIX_EPOCH + Duration::from_micros(h.started_at_us),
        elapsed: Duration::ZERO,
        intervals: Intervals::default(),
        ops: Vec::new(),
        errors: Vec::new(),
        events: Vec::new(),
    };
    let mut end = None;
    let mut ends_early = None;
    let mut read = 1;
    for (n, text) in lines.enumerate() {
        let n = n + 2;
        // The decoder fails where a killed run's last block was cut off: what came before
        // it is whole (every block is a gzip member of whole lines).
        let text = match text {
            Ok(text) => text,
            Err(e) if end.is_none() => {
                ends_early = Some(format!("{} ends early after line {read} ({e})", path.display()));
                break;
            }
            Err(e) => return Err(at(n, &e)),
        };
        read = n;
        let record: Record = serde_json::from_str(&text).map_err(|e| at(n, &e))?;
        if end.is_some() {
            return Err(at(n, &"a record after the end"));
        }
        match record {
            Record::Header(_) => return Err(at(n, &"a second header")),
            Record::Interval(i) => {
                for s in &i.ops {
                    s.check().map_err(|e| at(n, &e))?;
                }
                history.intervals.put_sealed(i).map_err(|e| at(n, &e))?;
            }
            Record::Op(o) => history.ops.push(o.op().map_err(|e| at(n, &e))?),
            Record::Error(e) => history.errors.push(ErrorEvent {
                at_us: e.at_us,
                kind: OpKind(e.kind),
                slot: e.slot,
                class: e.class,
                last: e.last,
            }),
            Record::Event(e) => history.events.push(e),
            Record::End(e) => end = Some(e.elapsed_us),
        }
    }
    if end.is_none() && ends_early.is_none() {
        ends_early = Some(format!("{} has no end record after line {read}", path.display()));
    }
    // A run writes records in the order they reach the writer; it orders its own copy the
    // same way (stable sorts on the same keys), so both read alike.
    history.ops.sort_by_key(|o| o.start_us);
    history.errors.sort_by_key(|e| e.at_us);
    history.events.sort_by_key(|e| e.at_us);
    // A file without its end (a killed run) lasted at least as long as what it holds: its
    // intervals, and the kept ops and events written before the last intervals were sealed.
    history.elapsed = match end {
        Some(us) => Duration::from_micros(us),
        None => {
            let last_op = history.ops.iter().map(OpEvent::end_us).max().unwrap_or(0);
            let last_event = history.events.last().map_or(0, |e| e.at_us);
            let held = history.interval * history.intervals.len() as u32;
            held.max(Duration::from_micros(last_op.max(last_event)))
        }
    };
    Ok(Loaded { history, ends_early })
}

#[cfg(test)]
mod tests;
