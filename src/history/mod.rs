//! The history of a run: every op the driver completed and every error it met, on one
//! monotonic clock that starts when the run does, plus latency histograms per op kind and
//! interval. Workers record into their own [`Recorder`]; one [`Aggregator`] merges interval
//! reports off the hot path.
//!
//! This module records; it never decides pass or fail (that is `check`) and never writes
//! files (that is `report`).
//!
//! Length: mostly the event and op types with a doc comment on every field; the error
//! classes live in `class`, the recorders in `recorder`, saving in `store`.

mod class;
mod intervals;
mod keep;
mod recorder;
pub mod store;

pub use class::{ErrorClass, ErrorCounts};
pub use intervals::Intervals;
pub use keep::Recording;
pub use recorder::{Aggregator, Gathered, IntervalReport, Recorder, ReportSender};

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram can hold: one hour in microseconds. Anything slower is
/// clamped to it (a run never waits that long for one op).
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A fresh latency histogram: microseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// A fresh send-lag histogram: microseconds, 2 significant digits (a tenth of the latency
/// histogram's size: lag is a warning, not a headline figure).
pub fn new_lag_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("valid histogram bounds")
}

/// A value read off a send-lag histogram, in µs: lag is recorded from 1 µs up (a histogram
/// holds nothing below its lowest value), so an op sent on time reads back as 0.
pub fn lag_value(recorded: u64) -> u64 {
    if recorded <= 1 { 0 } else { recorded }
}

/// An op that waited at least this long for a free in-flight slot counts as queued (a
/// shorter wait is the scheduler's jitter, not a full pool).
pub const QUEUED_MIN_US: u64 = 1_000;

/// How an op ended, as the application saw it (after the client policy's retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every command got a non-error reply.
    Ok,
    /// Definitely not applied: refused before sending, or an error reply.
    Fail(ErrorClass),
    /// May or may not have been applied: timed out or cut off after sending. Never counted
    /// as a failed write by the checkers, and its effect is never an anomaly.
    Unknown(ErrorClass),
}

impl Outcome {
    /// The error class, unless the op succeeded.
    pub fn error(self) -> Option<ErrorClass> {
        match self {
            Outcome::Ok => None,
            Outcome::Fail(c) | Outcome::Unknown(c) => Some(c),
        }
    }
}

/// An op kind: the index of the op in the workload's op list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct OpKind(pub u16);

/// One completed op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpEvent {
    /// Intended start, µs since the run began (the schedule's time in open loop).
    pub start_us: u64,
    /// From intended start to the final reply, including retries and queueing, in µs.
    pub latency_us: u64,
    /// Which op.
    pub kind: OpKind,
    /// The slot the op's outcome came from: for a failed op the failed command's its
    /// outcome names; otherwise the slot of the request that answered last in its last round
    /// of redirections (its only slot, for an op on one slot; the slowest shard's, for a
    /// batch across shards).
    pub slot: u16,
    /// The key id the op's first command addressed (`$id`).
    pub id: u64,
    /// The op's run-unique id (`$uid`): what a set-full add writes.
    pub uid: u64,
    /// When it was actually sent (rendered: `$now` is read then), µs since the run began;
    /// later than `start_us` when an open-loop schedule runs behind.
    pub sent_us: u64,
    /// How long it waited for a free in-flight slot (every worker, or the application's
    /// pool, had an op in flight at its intended start), µs; part of `sent_us − start_us`,
    /// the rest being timer and scheduling delay.
    pub queued_us: u32,
    /// What the application saw.
    pub outcome: Outcome,
    /// Attempts made (1 without retries).
    pub attempts: u8,
    /// MOVED redirections the driver followed for it (at most 255 counted).
    pub moved: u8,
    /// ASK redirections the driver followed for it (at most 255 counted).
    pub ask: u8,
    /// The first command's reply when it is an integer (a rate limiter's verdict, a
    /// counter), for checkers.
    pub reply: Option<i64>,
}

#[cfg(test)]
impl History {
    /// Count `ops` into intervals as a run's recorder does (by each op's end), for tests
    /// that build a history from ops.
    pub(crate) fn count_ops(mut self) -> History {
        let kinds = self.op_names.len().max(1);
        let (agg, tx) = Aggregator::new(kinds);
        let mut recorder = Recorder::new(kinds, self.interval, tx, std::sync::Arc::default());
        let mut ops = self.ops.clone();
        ops.sort_by_key(OpEvent::end_us);
        for o in ops {
            recorder.record_op(o, o.end_us(), u32::from(o.moved), u32::from(o.ask));
        }
        recorder.finish();
        let last = (self.elapsed.as_micros() / self.interval.as_micros().max(1)) as u32;
        self.intervals = agg.finish(last).intervals;
        self
    }
}

#[cfg(test)]
impl OpEvent {
    /// A test op: started at `start_ms` (and sent then), `latency_ms` long, of op `kind`, on
    /// `slot`, ending in `outcome`; ids zero, one attempt, no reply.
    pub(crate) fn sample(start_ms: u64, latency_ms: u64, kind: u16, slot: u16, outcome: Outcome) -> OpEvent {
        OpEvent {
            start_us: start_ms * 1000,
            latency_us: latency_ms * 1000,
            kind: OpKind(kind),
            slot,
            id: 0,
            uid: 0,
            sent_us: start_ms * 1000,
            queued_us: 0,
            outcome,
            attempts: 1,
            moved: 0,
            ask: 0,
            reply: None,
        }
    }
}

impl OpEvent {
    /// When it ended (its final reply, or its last attempt's give-up), µs since the run began.
    pub fn end_us(&self) -> u64 {
        self.start_us + self.latency_us
    }

    /// How late it was sent after its intended start, µs: the schedule running behind
    /// (waiting for an in-flight slot, timers, CPU).
    pub fn send_lag_us(&self) -> u64 {
        self.sent_us.saturating_sub(self.start_us)
    }

    /// From its send to its end, µs: what the client library saw of it, without the time it
    /// waited to be sent.
    pub fn service_us(&self) -> u64 {
        self.end_us().saturating_sub(self.sent_us.max(self.start_us))
    }
}

/// One failed attempt of one request (a command or sub-pipeline sent to one node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorEvent {
    /// When the error was seen, µs since the run began.
    pub at_us: u64,
    /// Which op.
    pub kind: OpKind,
    /// The slot the failed request addressed.
    pub slot: u16,
    /// The error.
    pub class: ErrorClass,
    /// True when this error is what the application saw (no retry followed).
    pub last: bool,
}

/// The run's event log, shared by the nemesis and the observer (events are rare: a mutex
/// is fine here, unlike on the driver's per-op path).
pub type EventLog = std::sync::Arc<std::sync::Mutex<Vec<Event>>>;

/// Record `kind` at `at_us` in `log`.
pub fn emit(log: &EventLog, at_us: u64, kind: EventKind) {
    log.lock().expect("event log lock").push(Event { at_us, kind });
}

/// A panic's message, for the run error that records it.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (_, Some(s)) => s.clone(),
        _ => "no message".to_string(),
    }
}

/// Something that happened to the cluster, from the nemesis or the observer.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Event {
    /// When, µs since the run began.
    pub at_us: u64,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of events, as written to `events.jsonl` (`"event": "<kind>"`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A fault was injected: the Docker call (or every command) for it returned (`t0`, the
    /// event's time).
    FaultInjected {
        /// When the injection began (a partition is partly in force from its first rule).
        began_us: u64,
        /// The fault's number in the chaos file.
        fault: usize,
        /// Which repetition.
        repeat: u32,
        /// The action (`kill`, `partition`, …).
        action: String,
        /// The nodes it hit.
        targets: Vec<String>,
        /// Whether each target was a primary when it was hit, in `targets` order.
        primaries: Vec<bool>,
        /// The slots the targets served when hit, as inclusive ranges.
        slots: Vec<(u16, u16)>,
    },
    /// A fault was healed.
    FaultHealed {
        /// The fault's number in the chaos file.
        fault: usize,
        /// Which repetition.
        repeat: u32,
        /// The action.
        action: String,
        /// The nodes it had hit.
        targets: Vec<String>,
    },
    /// A driver worker panicked (a defect of slotstorm): the op it was on is recorded as
    /// unknown, and the run stopped there.
    DriverError {
        /// The worker's number.
        worker: usize,
        /// The panic's message.
        error: String,
    },
    /// A topology operation's task panicked (a defect of slotstorm): the operation is
    /// recorded as failed, the operations after it are skipped, and the run's heal step
    /// repairs the slots it left open.
    OperationError {
        /// The operation's number in the chaos file.
        index: usize,
        /// What happened.
        error: String,
    },
    /// A fault could not be injected or healed.
    FaultError {
        /// The fault's number in the chaos file.
        fault: usize,
        /// What went wrong.
        error: String,
    },
    /// `observer` now flags `subject` with `flag` (`fail?` or `fail`).
    Flagged {
        /// The node whose view this is.
        observer: String,
        /// The node flagged.
        subject: String,
        /// The flag.
        flag: String,
    },
    /// `observer` no longer flags `subject` with `flag`.
    Unflagged {
        /// The node whose view this is.
        observer: String,
        /// The node.
        subject: String,
        /// The flag.
        flag: String,
    },
    /// A node reports a new role for itself.
    Role {
        /// The node.
        node: String,
        /// `primary` or `replica`.
        role: String,
        /// Its primary, for a replica.
        primary: Option<String>,
        /// The slots it serves, for a primary.
        slots: u32,
    },
    /// A node reports a new `cluster_state`.
    State {
        /// The node.
        node: String,
        /// `ok` or `fail`.
        state: String,
    },
    /// The primaries that serve slots, as one node sees them, changed.
    Owners {
        /// The node whose view this is.
        node: String,
        /// Each primary serving slots, with how many, sorted by name.
        owners: Vec<(String, u32)>,
    },
    /// The driver installed a slot table that gives some slot a different owner: when the
    /// client learned of a failover or a move (beside when the nodes did, in `Owners`).
    TableChanged {
        /// What installed it: `connect` (the table the driver started with), `refresh` (the
        /// nodes' views) or `moved` (MOVED replies; several within 100 ms are recorded once,
        /// as the table the last of them left).
        source: String,
        /// Each primary serving slots in the driver's table, with how many, sorted by name.
        owners: Vec<(String, u32)>,
    },
    /// A node stopped or started answering the observer.
    Reachable {
        /// The node.
        node: String,
        /// Whether it answers now.
        reachable: bool,
    },
    /// A topology operation of the chaos file began (the event's time).
    OperationStarted {
        /// The operation's number in the chaos file.
        index: usize,
        /// Its action (`reshard`, `failover`, …).
        action: String,
        /// What it does, resolved (`1000 slots redis-3 → redis-1`).
        detail: String,
    },
    /// A step of an operation: a batch of keys migrated, slots handed over, a node joined.
    OperationStep {
        /// The operation's number.
        index: usize,
        /// What happened (`batch`, `slot_handed_over`, `node_added`, …).
        what: String,
        /// The slot concerned, if one is.
        slot: Option<u16>,
        /// Keys moved in this step.
        keys: u64,
        /// Their size (`MEMORY USAGE` on the source), bytes.
        bytes: u64,
    },
    /// An operation finished.
    OperationDone {
        /// The operation's number.
        index: usize,
        /// Its action.
        action: String,
        /// What it did.
        detail: String,
        /// Slots it moved.
        slots: u32,
        /// Keys it moved.
        keys: u64,
        /// Their size, bytes.
        bytes: u64,
    },
    /// An operation failed part-way.
    OperationFailed {
        /// The operation's number.
        index: usize,
        /// Its action.
        action: String,
        /// Why.
        error: String,
        /// Slots left importing or migrating when it stopped.
        open_slots: Vec<u16>,
    },
    /// The heal step found slots open or uncovered and repaired them, as `slotstorm cluster
    /// fix` does.
    SlotsFixed {
        /// Slots that were importing or migrating.
        open: Vec<u16>,
        /// Slots no node served, as inclusive ranges.
        uncovered: Vec<(u16, u16)>,
        /// What was done, or why it failed.
        detail: String,
    },
    /// A line of a node's own log that marks a failover step, timed by the node's clock.
    Log {
        /// The node.
        node: String,
        /// What it marks: `marked_failing`, `election_won`, `config_epoch`, `state_changed`.
        what: String,
        /// The line.
        line: String,
    },
}

/// Counters and a latency histogram for one op kind over one interval.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latency of every completed op (any outcome), µs from intended start.
    pub latency: Histogram<u64>,
    /// How late every op was sent after its intended start, µs ([`new_lag_histogram`]).
    pub send_lag: Histogram<u64>,
    /// Ops that waited at least [`QUEUED_MIN_US`] for a free in-flight slot.
    pub queued: u64,
    /// Ops that succeeded.
    pub ok: u64,
    /// Ops that failed, by class.
    pub failed: ErrorCounts,
    /// Ops whose outcome is unknown, by class.
    pub unknown: ErrorCounts,
    /// Errors of every attempt, including ones a retry later hid, by class.
    pub attempt_errors: ErrorCounts,
    /// MOVED redirections the driver followed.
    pub moved: u64,
    /// ASK redirections the driver followed.
    pub ask: u64,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            latency: new_histogram(),
            send_lag: new_lag_histogram(),
            queued: 0,
            ok: 0,
            failed: ErrorCounts::default(),
            unknown: ErrorCounts::default(),
            attempt_errors: ErrorCounts::default(),
            moved: 0,
            ask: 0,
        }
    }
}

impl OpStats {
    /// Completed ops of any outcome.
    pub fn count(&self) -> u64 {
        self.ok + self.errors()
    }

    /// Ops that failed or ended unknown.
    pub fn errors(&self) -> u64 {
        self.failed.total() + self.unknown.total()
    }

    /// Add `other` into `self`.
    pub fn merge(&mut self, other: &OpStats) {
        self.latency.add(&other.latency).expect("histograms share bounds");
        self.send_lag.add(&other.send_lag).expect("histograms share bounds");
        self.queued += other.queued;
        self.ok += other.ok;
        self.failed.add(&other.failed);
        self.unknown.add(&other.unknown);
        self.attempt_errors.add(&other.attempt_errors);
        self.moved += other.moved;
        self.ask += other.ask;
    }

    /// Back to empty, keeping the histogram's memory.
    pub fn reset(&mut self) {
        self.latency.reset();
        self.send_lag.reset();
        self.queued = 0;
        self.ok = 0;
        self.failed = ErrorCounts::default();
        self.unknown = ErrorCounts::default();
        self.attempt_errors = ErrorCounts::default();
        self.moved = 0;
        self.ask = 0;
    }

    /// Ops that failed or ended unknown, by class.
    pub fn errors_by_class(&self) -> ErrorCounts {
        let mut all = self.failed;
        all.add(&self.unknown);
        all
    }
}

/// One interval of the run: per op kind stats, and counts per shard.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Interval number; it covers `[index × length, (index + 1) × length)` of run time.
    pub index: u32,
    /// Per op kind, indexed by [`OpKind`].
    pub ops: Vec<OpStats>,
    /// Per shard (the primaries at the start, in the run's order; one more for slots none
    /// held), by each op's slot. Empty in histories saved before it was counted.
    pub shards: Vec<ShardStats>,
}

/// Ops of one interval on one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ShardStats {
    /// Ops completed.
    pub ops: u64,
    /// Of those, failed or unknown.
    pub errors: u64,
    /// MOVED redirections followed for them.
    pub moved: u64,
    /// ASK redirections followed for them.
    pub ask: u64,
}

impl ShardStats {
    /// Add `other` into these.
    pub fn merge(&mut self, other: &ShardStats) {
        self.ops += other.ops;
        self.errors += other.errors;
        self.moved += other.moved;
        self.ask += other.ask;
    }
}

/// Everything a run recorded.
#[derive(Debug, Clone)]
pub struct History {
    /// Names of the op kinds, indexed by [`OpKind`].
    pub op_names: Vec<String>,
    /// Interval length.
    pub interval: Duration,
    /// Warm-up length: intervals that end before it are left out of whole-run figures.
    pub warmup: Duration,
    /// Wall-clock time at which the run clock read zero.
    pub started_at: std::time::SystemTime,
    /// How long the run went on (shorter than planned when interrupted).
    pub elapsed: Duration,
    /// Intervals in order, with none missing.
    pub intervals: Intervals,
    /// The ops kept one by one ([`Recording`]: every op that did not succeed, was slow or
    /// late, is of a kind a check reads whole, or started near a fault), ordered by intended
    /// start. Every op is counted in [`Self::intervals`].
    pub ops: Vec<OpEvent>,
    /// Every failed attempt, ordered by time.
    pub errors: Vec<ErrorEvent>,
    /// Faults and topology events, ordered by time.
    pub events: Vec<Event>,
}

impl History {
    /// Whole-run stats per op kind, warm-up excluded.
    pub fn totals(&self) -> Vec<OpStats> {
        let mut totals = vec![OpStats::default(); self.op_names.len()];
        for interval in self.intervals.iter().filter(|i| !self.in_warmup(i.index)) {
            for (t, s) in totals.iter_mut().zip(&interval.ops) {
                t.merge(s);
            }
        }
        totals
    }

    /// True when interval `index` ends within the warm-up.
    pub fn in_warmup(&self, index: u32) -> bool {
        self.interval * (index + 1) <= self.warmup
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_skip_warmup_intervals_and_merge_the_rest() {
        let mut a = OpStats { ok: 5, ..Default::default() };
        a.latency.record(100).unwrap();
        let mut b = OpStats { ok: 7, ..Default::default() };
        b.failed[ErrorClass::ClusterDown] = 2;
        b.latency.record(300).unwrap();
        let h = History {
            op_names: vec!["get".into()],
            interval: Duration::from_secs(1),
            warmup: Duration::from_secs(1),
            started_at: std::time::SystemTime::UNIX_EPOCH,
            elapsed: Duration::from_secs(3),
            intervals: vec![
                Interval { index: 0, ops: vec![a.clone()], shards: Vec::new() },
                Interval { index: 1, ops: vec![b.clone()], shards: Vec::new() },
                Interval { index: 2, ops: vec![a], shards: Vec::new() },
            ]
            .into(),
            ops: vec![],
            errors: vec![],
            events: vec![],
        };
        let t = &h.totals()[0];
        assert_eq!(t.ok, 12);
        assert_eq!(t.errors(), 2);
        assert_eq!(t.count(), 14);
        assert_eq!(t.latency.len(), 2);
        assert!(h.in_warmup(0) && !h.in_warmup(1));
    }

    #[test]
    fn error_class_indices_follow_all() {
        for (i, c) in ErrorClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
