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

use super::{ErrorEvent, Interval, OpEvent, OpStats, Outcome};

/// One worker's stats for one interval.
#[derive(Debug)]
pub struct IntervalReport {
    /// The interval's number.
    pub index: u32,
    /// Per op kind.
    pub ops: Vec<OpStats>,
}

/// A worker's recorder.
pub struct Recorder {
    interval_us: u64,
    current_index: u32,
    current: Vec<OpStats>,
    touched: bool,
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
    /// A recorder for `kinds` op kinds reporting to the aggregator behind `tx`.
    pub fn new(kinds: usize, interval: Duration, tx: ReportSender) -> Recorder {
        Recorder {
            interval_us: interval.as_micros().max(1) as u64,
            current_index: 0,
            current: vec![OpStats::default(); kinds],
            touched: false,
            ops: Vec::with_capacity(4096),
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
            Outcome::Fail(c) => stats.failed[c.index()] += 1,
            Outcome::Unknown(c) => stats.unknown[c.index()] += 1,
        }
        stats.moved += u64::from(moved);
        stats.ask += u64::from(ask);
        self.touched = true;
        self.ops.push(op);
    }

    /// Record one failed attempt.
    pub fn record_error(&mut self, error: ErrorEvent) {
        self.roll(error.at_us);
        self.current[usize::from(error.kind.0)].attempt_errors[error.class.index()] += 1;
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
        // The aggregator outlives the workers; if it is gone the run is being torn down
        // and there is nobody left to tell.
        let _ = self.tx.tx.send(IntervalReport { index: self.current_index, ops });
        self.touched = false;
    }

    /// Send what is left and hand over the events.
    pub fn finish(mut self) -> (Vec<OpEvent>, Vec<ErrorEvent>) {
        self.flush();
        (self.ops, self.errors)
    }
}

/// Merges the workers' interval reports.
pub struct Aggregator {
    rx: mpsc::UnboundedReceiver<IntervalReport>,
    kinds: usize,
    intervals: BTreeMap<u32, Vec<OpStats>>,
    spares: Spares,
}

/// Spares kept in the pool at most: about one interval's worth for a large worker pool.
const MAX_SPARES: usize = 256;

impl Aggregator {
    /// An aggregator for `kinds` op kinds, and the sender workers' recorders report to.
    pub fn new(kinds: usize) -> (Aggregator, ReportSender) {
        let (tx, rx) = mpsc::unbounded_channel();
        let spares = Spares::default();
        (
            Aggregator { rx, kinds, intervals: BTreeMap::new(), spares: spares.clone() },
            ReportSender { tx, spares },
        )
    }

    /// Merge every report that has arrived, and hand the emptied stats back to the workers.
    pub fn drain(&mut self) {
        let mut emptied = Vec::new();
        while let Ok(mut report) = self.rx.try_recv() {
            let slot =
                self.intervals.entry(report.index).or_insert_with(|| vec![OpStats::default(); self.kinds]);
            for (into, from) in slot.iter_mut().zip(&mut report.ops) {
                into.merge(from);
                from.reset();
            }
            emptied.push(report.ops);
        }
        let mut spares = self.spares.lock().expect("spares lock");
        let room = MAX_SPARES.saturating_sub(spares.len());
        spares.extend(emptied.into_iter().take(room));
    }

    /// The merged stats of interval `index` so far.
    pub fn interval(&self, index: u32) -> Option<&[OpStats]> {
        self.intervals.get(&index).map(Vec::as_slice)
    }

    /// Every interval from 0 through `last`, empty ones included, after a final drain.
    pub fn finish(mut self, last: u32) -> Vec<Interval> {
        self.drain();
        let last = last.max(self.intervals.keys().next_back().copied().unwrap_or(0));
        (0..=last)
            .map(|index| Interval {
                index,
                ops: self.intervals.remove(&index).unwrap_or_else(|| vec![OpStats::default(); self.kinds]),
            })
            .collect()
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
        let mut w1 = Recorder::new(2, Duration::from_secs(1), tx.clone());
        let mut w2 = Recorder::new(2, Duration::from_secs(1), tx);
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
        let (ops1, _) = w1.finish();
        let (ops2, errs2) = w2.finish();
        assert_eq!((ops1.len(), ops2.len(), errs2.len()), (2, 1, 1));
        let intervals = agg.finish(2);
        assert_eq!(intervals.len(), 3);
        let i0 = &intervals[0].ops[0];
        assert_eq!(i0.count(), 2);
        assert_eq!(i0.unknown[ErrorClass::Timeout.index()], 1);
        assert_eq!(i0.attempt_errors[ErrorClass::Timeout.index()], 1);
        assert_eq!(i0.moved, 1);
        assert_eq!(i0.latency.max(), i0.latency.highest_equivalent(900_000));
        assert_eq!(intervals[1].ops[0].count(), 0, "a gap is an empty interval");
        let i2 = &intervals[2].ops[1];
        assert_eq!((i2.failed[ErrorClass::ClusterDown.index()], i2.ask), (1, 1));
    }

    #[test]
    fn merged_stats_are_emptied_and_reused_without_carrying_counts_over() {
        let (mut agg, tx) = Aggregator::new(1);
        let mut w = Recorder::new(1, Duration::from_secs(1), tx);
        w.record_op(op(0, 0, 700, Outcome::Ok), 700, 2, 0);
        w.record_op(op(0, 1_000_000, 10, Outcome::Ok), 1_000_010, 0, 0);
        agg.drain();
        assert_eq!(agg.spares.lock().unwrap().len(), 1, "interval 0's stats came back as a spare");
        // Interval 1 goes out in interval 2, and interval 2 is recorded into the spare.
        w.record_op(op(0, 2_000_000, 20, Outcome::Ok), 2_000_020, 0, 0);
        assert!(agg.spares.lock().unwrap().is_empty(), "the worker took the spare");
        w.finish();
        let intervals = agg.finish(2);
        let counts: Vec<(u64, u64, u64)> =
            intervals.iter().map(|i| (i.ops[0].count(), i.ops[0].moved, i.ops[0].latency.max())).collect();
        let max = |v| intervals[0].ops[0].latency.highest_equivalent(v);
        assert_eq!(counts, vec![(1, 2, max(700)), (1, 0, max(10)), (1, 0, max(20))]);
    }
}
