//! Per-worker recording and the one aggregator that merges interval reports.
//!
//! A worker's [`Recorder`] owns its histograms and event buffers outright, so recording an
//! op takes no lock and, once the buffers have grown, no allocation. When an op completes in
//! a later interval than the last, the finished interval's stats travel to the
//! [`Aggregator`] over a channel; the aggregator merges them whenever it is asked, empties
//! them (off the workers' path) and puts them in a pool of spares the workers take the next
//! interval's stats from, so a worker does not allocate and zero fresh histograms on the op
//! that crosses an interval boundary.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::store::journal::Sink;
use super::{ErrorEvent, Interval, Intervals, OpEvent, OpStats, Outcome, Recording, ShardStats};

/// One worker's stats for one interval.
#[derive(Debug)]
pub struct IntervalReport {
    /// The interval's number.
    pub index: u32,
    /// Per op kind.
    pub ops: Vec<OpStats>,
    /// Per shard ([`Recording::shard`]).
    pub shards: Vec<ShardStats>,
    /// The ops kept one by one ([`Recording::keeps`]) that completed in it.
    pub kept: Vec<OpEvent>,
    /// The failed attempts in it.
    pub errors: Vec<ErrorEvent>,
}

/// A worker's recorder.
pub struct Recorder {
    interval_us: u64,
    current_index: u32,
    current: Vec<OpStats>,
    shards: Vec<ShardStats>,
    touched: bool,
    recording: Arc<Recording>,
    ops: Vec<OpEvent>,
    errors: Vec<ErrorEvent>,
    tx: ReportSender,
}

/// Emptied per-kind stats, ready for a worker's next interval.
type Spares = Arc<Mutex<Vec<Vec<OpStats>>>>;

/// Where a worker's [`Recorder`] sends its intervals: the aggregator's channel, and the
/// pool it takes emptied stats from.
#[derive(Clone)]
pub struct ReportSender {
    tx: mpsc::UnboundedSender<IntervalReport>,
    spares: Spares,
}

impl Recorder {
    /// A recorder for `kinds` op kinds reporting to the aggregator behind `tx`, keeping and
    /// counting ops as `recording` says.
    pub fn new(kinds: usize, interval: Duration, tx: ReportSender, recording: Arc<Recording>) -> Recorder {
        Recorder {
            interval_us: interval.as_micros().max(1) as u64,
            current_index: 0,
            current: vec![OpStats::default(); kinds],
            shards: vec![ShardStats::default(); recording.shards() + 1],
            touched: false,
            recording,
            ops: Vec::new(),
            errors: Vec::new(),
            tx,
        }
    }

    /// Record a completed op that ended at `end_us`, having followed `moved` MOVED and
    /// `ask` ASK redirections.
    pub fn record_op(&mut self, op: OpEvent, end_us: u64, moved: u32, ask: u32) {
        self.roll(end_us);
        let stats = &mut self.current[usize::from(op.kind.0)];
        stats.latency.saturating_record(op.latency_us.max(1));
        stats.send_lag.saturating_record(op.send_lag_us().max(1));
        stats.queued += u64::from(u64::from(op.queued_us) >= super::QUEUED_MIN_US);
        match op.outcome {
            Outcome::Ok => stats.ok += 1,
            Outcome::Fail(c) => stats.failed[c] += 1,
            Outcome::Unknown(c) => stats.unknown[c] += 1,
        }
        stats.moved += u64::from(moved);
        stats.ask += u64::from(ask);
        let shard = &mut self.shards[self.recording.shard(op.slot)];
        shard.ops += 1;
        shard.errors += u64::from(op.outcome != Outcome::Ok);
        shard.moved += u64::from(moved);
        shard.ask += u64::from(ask);
        self.touched = true;
        if self.recording.keeps(&op) {
            self.ops.push(op);
        }
    }

    /// Record one failed attempt.
    pub fn record_error(&mut self, error: ErrorEvent) {
        self.roll(error.at_us);
        self.current[usize::from(error.kind.0)].attempt_errors[error.class] += 1;
        self.touched = true;
        self.errors.push(error);
    }

    /// Send the current interval when `now_us` lies in a later one.
    fn roll(&mut self, now_us: u64) {
        let index = (now_us / self.interval_us) as u32;
        if index > self.current_index {
            self.flush();
            self.current_index = index;
        }
    }

    fn flush(&mut self) {
        if !self.touched {
            return;
        }
        let spare = self.tx.spares.lock().expect("spares lock").pop();
        let fresh = spare.unwrap_or_else(|| vec![OpStats::default(); self.current.len()]);
        let ops = std::mem::replace(&mut self.current, fresh);
        let fresh = vec![ShardStats::default(); self.shards.len()];
        let shards = std::mem::replace(&mut self.shards, fresh);
        // The aggregator outlives the workers; if it is gone the run is being torn down
        // and there is nobody left to tell.
        let (kept, errors) = (std::mem::take(&mut self.ops), std::mem::take(&mut self.errors));
        let _ = self.tx.tx.send(IntervalReport { index: self.current_index, ops, shards, kept, errors });
        self.touched = false;
    }

    /// Send what is left.
    pub fn finish(mut self) {
        self.flush();
    }
}

/// Merges the workers' interval reports.
pub struct Aggregator {
    rx: mpsc::UnboundedReceiver<IntervalReport>,
    kinds: usize,
    /// Intervals some worker may still report, whole.
    intervals: BTreeMap<u32, (Vec<OpStats>, Vec<ShardStats>)>,
    /// Intervals every worker is past, compressed: `0..sealed.len()`.
    sealed: Intervals,
    spares: Spares,
    /// The ops kept one by one, in the order their reports arrived.
    kept: Vec<OpEvent>,
    /// The failed attempts, likewise.
    errors: Vec<ErrorEvent>,
    /// Where sealed intervals, kept ops and errors are written as they come.
    sink: Option<Sink>,
}

/// What the aggregator gathered over a run.
pub struct Gathered {
    /// Every interval.
    pub intervals: Intervals,
    /// The kept ops, ordered by intended start.
    pub ops: Vec<OpEvent>,
    /// The failed attempts, ordered by time.
    pub errors: Vec<ErrorEvent>,
}

/// An interval is sealed once a report this many intervals later has arrived: every worker
/// that is not stuck in one op has moved on by then (a stuck one's report is added late).
const SEAL_AFTER: u32 = 3;

/// Spares kept in the pool at most: about one interval's worth for a large worker pool.
const MAX_SPARES: usize = 256;

impl Aggregator {
    /// An aggregator for `kinds` op kinds, and the sender workers' recorders report to.
    pub fn new(kinds: usize) -> (Aggregator, ReportSender) {
        let (tx, rx) = mpsc::unbounded_channel();
        let spares = Spares::default();
        (
            Aggregator {
                rx,
                kinds,
                intervals: BTreeMap::new(),
                sealed: Intervals::default(),
                spares: spares.clone(),
                kept: Vec::new(),
                errors: Vec::new(),
                sink: None,
            },
            ReportSender { tx, spares },
        )
    }

    /// Also write what it gathers to `sink`, as it gathers it.
    #[must_use]
    pub fn writing_to(mut self, sink: Sink) -> Aggregator {
        self.sink = Some(sink);
        self
    }

    /// Merge every report that has arrived, and hand the emptied stats back to the workers.
    pub fn drain(&mut self) {
        let mut emptied = Vec::new();
        while let Ok(mut report) = self.rx.try_recv() {
            if let Some(sink) = &self.sink {
                sink.ops(&report.kept);
                sink.errors(&report.errors);
            }
            self.kept.append(&mut report.kept);
            self.errors.append(&mut report.errors);
            if (report.index as usize) < self.sealed.len() {
                self.sealed.add_to(report.index as usize, &report.ops, &report.shards);
                if let Some(sink) = &self.sink {
                    sink.interval(&self.sealed.sealed()[report.index as usize]);
                }
                for s in &mut report.ops {
                    s.reset();
                }
                emptied.push(report.ops);
                continue;
            }
            let (ops, shards) = self
                .intervals
                .entry(report.index)
                .or_insert_with(|| (vec![OpStats::default(); self.kinds], Vec::new()));
            for (into, from) in ops.iter_mut().zip(&mut report.ops) {
                into.merge(from);
                from.reset();
            }
            shards.resize(shards.len().max(report.shards.len()), ShardStats::default());
            for (into, from) in shards.iter_mut().zip(&report.shards) {
                into.merge(from);
            }
            emptied.push(report.ops);
        }
        let mut spares = self.spares.lock().expect("spares lock");
        let room = MAX_SPARES.saturating_sub(spares.len());
        spares.extend(emptied.into_iter().take(room));
        drop(spares);
        let newest = self.intervals.keys().next_back().copied().unwrap_or(0);
        self.seal_before(newest.saturating_sub(SEAL_AFTER - 1));
    }

    /// Compress every interval before `end` (empty ones included) into `sealed`.
    fn seal_before(&mut self, end: u32) {
        while (self.sealed.len() as u32) < end {
            let index = self.sealed.len() as u32;
            let (ops, shards) = self
                .intervals
                .remove(&index)
                .unwrap_or_else(|| (vec![OpStats::default(); self.kinds], Vec::new()));
            self.sealed.push(&Interval { index, ops, shards });
            if let Some(sink) = &self.sink {
                sink.interval(&self.sealed.sealed()[index as usize]);
            }
        }
    }

    /// The merged stats of interval `index` so far.
    pub fn interval(&self, index: u32) -> Option<&[OpStats]> {
        self.intervals.get(&index).map(|(ops, _)| ops.as_slice())
    }

    /// Every interval from 0 through `last`, empty ones included, and the kept ops and
    /// errors, after a final drain.
    pub fn finish(mut self, last: u32) -> Gathered {
        self.drain();
        let last = last.max(self.intervals.keys().next_back().copied().unwrap_or(0));
        self.seal_before(last + 1);
        // Stable sorts: a saved history's loader sorts the same records the same way.
        self.kept.sort_by_key(|o| o.start_us);
        self.errors.sort_by_key(|e| e.at_us);
        Gathered { intervals: self.sealed, ops: self.kept, errors: self.errors }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{ErrorClass, OpKind};

    fn op(kind: u16, start_us: u64, latency_us: u64, outcome: Outcome) -> OpEvent {
        OpEvent { start_us, latency_us, ..OpEvent::sample(0, 0, kind, 0, outcome) }
    }

    #[test]
    fn workers_reports_merge_per_interval_with_gaps_filled() {
        let (mut agg, tx) = Aggregator::new(2);
        let mut w1 = Recorder::new(2, Duration::from_secs(1), tx.clone(), Arc::default());
        let mut w2 = Recorder::new(2, Duration::from_secs(1), tx, Arc::default());
        w1.record_op(op(0, 100, 50, Outcome::Ok), 150, 1, 0);
        w2.record_op(op(0, 200, 900_000, Outcome::Unknown(ErrorClass::Timeout)), 900_200, 0, 0);
        w2.record_error(ErrorEvent {
            at_us: 900_200,
            kind: OpKind(0),
            slot: 0,
            class: ErrorClass::Timeout,
            last: true,
        });
        // Interval 0 of w1 is sent once w1 completes an op in interval 2.
        w1.record_op(op(1, 2_000_000, 10, Outcome::Fail(ErrorClass::ClusterDown)), 2_000_010, 0, 1);
        agg.drain();
        assert_eq!(agg.interval(0).unwrap()[0].ok, 1);
        w1.finish();
        w2.finish();
        let gathered = agg.finish(2);
        assert_eq!((gathered.ops.len(), gathered.errors.len()), (3, 1));
        let starts: Vec<u64> = gathered.ops.iter().map(|o| o.start_us).collect();
        assert_eq!(starts, vec![100, 200, 2_000_000], "kept ops in order of intended start");
        let intervals: Vec<Interval> = gathered.intervals.iter().collect();
        assert_eq!(intervals.len(), 3);
        let i0 = &intervals[0].ops[0];
        assert_eq!(i0.count(), 2);
        assert_eq!(i0.unknown[ErrorClass::Timeout], 1);
        assert_eq!(i0.attempt_errors[ErrorClass::Timeout], 1);
        assert_eq!(i0.moved, 1);
        assert_eq!(i0.latency.max(), i0.latency.highest_equivalent(900_000));
        assert_eq!(intervals[1].ops[0].count(), 0, "a gap is an empty interval");
        let i2 = &intervals[2].ops[1];
        assert_eq!((i2.failed[ErrorClass::ClusterDown], i2.ask), (1, 1));
    }

    #[test]
    fn merged_stats_are_emptied_and_reused_without_carrying_counts_over() {
        let (mut agg, tx) = Aggregator::new(1);
        let mut w = Recorder::new(1, Duration::from_secs(1), tx, Arc::default());
        w.record_op(op(0, 0, 700, Outcome::Ok), 700, 2, 0);
        w.record_op(op(0, 1_000_000, 10, Outcome::Ok), 1_000_010, 0, 0);
        agg.drain();
        assert_eq!(agg.spares.lock().unwrap().len(), 1, "interval 0's stats came back as a spare");
        // Interval 1 goes out in interval 2, and interval 2 is recorded into the spare.
        w.record_op(op(0, 2_000_000, 20, Outcome::Ok), 2_000_020, 0, 0);
        assert!(agg.spares.lock().unwrap().is_empty(), "the worker took the spare");
        w.finish();
        let intervals: Vec<Interval> = agg.finish(2).intervals.iter().collect();
        let counts: Vec<(u64, u64, u64)> =
            intervals.iter().map(|i| (i.ops[0].count(), i.ops[0].moved, i.ops[0].latency.max())).collect();
        let max = |v| intervals[0].ops[0].latency.highest_equivalent(v);
        assert_eq!(counts, vec![(1, 2, max(700)), (1, 0, max(10)), (1, 0, max(20))]);
    }
}
