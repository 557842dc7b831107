//! What a run records of each op. Every op is counted in its interval, per op kind and per
//! shard; an op is also kept one by one only when a check needs it, so that a run's memory
//! and its saved history depend on its rate, its faults and its checks, not on its length.
//!
//! Kept are: ops that did not succeed; ops the client took at least [`Recording::SLOW_US`]
//! to complete (no disruption threshold is lower); ops sent more than
//! [`Recording::LATE_US`] late or that waited for an in-flight slot; every op of a kind a
//! check reads whole (set-full adds, limiter calls); every op that starts within a *span*
//! around a scheduled fault, from [`Recording::BEFORE_FAULT`] before it (the pre-fault p99
//! that sets its disruption threshold) to [`Recording::AFTER_HEAL`] after its heal
//! (acknowledged writes before the election, the p99 during it); and every op on a shard
//! that starts within [`Recording::AFTER_BAD_US`] of the end of a failed or slow op there,
//! so the op that follows a disruption (did the client recover?) is known wherever it falls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{OpEvent, Outcome, QUEUED_MIN_US};

/// The keep rule and the shard table of one run, shared by every worker's recorder.
#[derive(Debug)]
pub struct Recording {
    /// Keep every op (tests, and histories built by hand).
    all: bool,
    /// Per op kind: keep every op of it.
    kinds: Vec<bool>,
    /// Spans of run time, µs, in which every op (by intended start) is kept.
    spans: Vec<(u64, u64)>,
    /// The shard of every slot, by index into the run's shards; `shards` for none.
    shard_of: Vec<u8>,
    /// How many shards.
    shards: usize,
    /// Per shard (and one for none): ops starting before this (µs) are kept, as they follow
    /// a failed or slow op there. One relaxed load per op; a store only after a bad one.
    tails: Vec<AtomicU64>,
}

fn tails(shards: usize) -> Vec<AtomicU64> {
    (0..=shards).map(|_| AtomicU64::new(0)).collect()
}

impl Default for Recording {
    /// Keep every op; one shard holding every slot.
    fn default() -> Recording {
        Recording {
            all: true,
            kinds: Vec::new(),
            spans: Vec::new(),
            shard_of: vec![0; 16384],
            shards: 1,
            tails: tails(1),
        }
    }
}

impl Recording {
    /// Ops the client took at least this long to complete (send to end) are kept: the
    /// smallest disruption threshold there is (`FailoverConfig::min_disruption_us`).
    pub const SLOW_US: u64 = 100_000;
    /// Ops sent later than this after their intended start are kept (the schedule check
    /// counts them exactly; `schedule::LAG_WARNING_US`).
    pub const LATE_US: u64 = 10_000;
    /// A fault's span starts this long before it.
    pub const BEFORE_FAULT: Duration = Duration::from_secs(10);
    /// ... and ends this long after its heal.
    pub const AFTER_HEAL: Duration = Duration::from_secs(30);
    /// Ops on a shard are kept for this long (µs) after a failed or slow op there ends.
    pub const AFTER_BAD_US: u64 = 5_000_000;

    /// Keep what checks need: every op of the kinds flagged in `kinds`, every op in
    /// `faults` (each `(at, heal_at)` of the schedule, widened by [`Self::BEFORE_FAULT`]
    /// and [`Self::AFTER_HEAL`]); count ops per shard, `shards` being each one's slot ranges
    /// (at most 255 shards: the others count as none).
    pub fn new(kinds: Vec<bool>, faults: &[(Duration, Duration)], shards: &[Vec<(u16, u16)>]) -> Recording {
        let us = |d: Duration| d.as_micros() as u64;
        let spans = faults
            .iter()
            .map(|&(at, healed)| {
                (
                    us(at.saturating_sub(Self::BEFORE_FAULT)),
                    us(healed.max(at).saturating_add(Self::AFTER_HEAL)),
                )
            })
            .collect();
        let count = shards.len().min(255);
        let mut shard_of = vec![count as u8; 16384];
        for (i, ranges) in shards.iter().take(count).enumerate() {
            for &(a, b) in ranges {
                for slot in a..=b.min(16383) {
                    shard_of[usize::from(slot)] = i as u8;
                }
            }
        }
        Recording { all: false, kinds, spans, shard_of, shards: count, tails: tails(count) }
    }

    /// The same, keeping every op.
    pub fn keeping_all(mut self) -> Recording {
        self.all = true;
        self
    }

    /// Whether `op` is kept one by one (ops are asked about as they complete).
    pub fn keeps(&self, op: &OpEvent) -> bool {
        if self.all {
            return true;
        }
        let tail = &self.tails[self.shard(op.slot)];
        if op.outcome != Outcome::Ok || op.service_us() >= Self::SLOW_US {
            tail.fetch_max(op.end_us().saturating_add(Self::AFTER_BAD_US), Ordering::Relaxed);
            return true;
        }
        op.start_us < tail.load(Ordering::Relaxed)
            || op.send_lag_us() > Self::LATE_US
            || u64::from(op.queued_us) >= QUEUED_MIN_US
            || self.kinds.get(usize::from(op.kind.0)).copied().unwrap_or(false)
            || self.spans.iter().any(|&(a, b)| op.start_us >= a && op.start_us < b)
    }

    /// The shard `slot` counts on: an index into the run's shards, or [`Self::shards`] for
    /// a slot none held.
    pub fn shard(&self, slot: u16) -> usize {
        usize::from(self.shard_of[usize::from(slot) & 16383])
    }

    /// How many shards ops are counted on (the last index, one more, is "none").
    pub fn shards(&self) -> usize {
        self.shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::failover::FailoverConfig;
    use crate::history::ErrorClass;

    fn op(start_ms: u64, latency_ms: u64) -> OpEvent {
        OpEvent::sample(start_ms, latency_ms, 0, 100, Outcome::Ok)
    }

    #[test]
    fn only_what_a_check_needs_is_kept() {
        // A fresh rule for each op: a failed or slow one would keep what follows it.
        let r =
            || Recording::new(vec![false, true], &[(Duration::from_secs(60), Duration::from_secs(66))], &[]);
        assert!(!r().keeps(&op(1000, 5)), "a fast op on time, far from any fault");
        assert!(r().keeps(&OpEvent::sample(1000, 5, 0, 100, Outcome::Fail(ErrorClass::Refused))));
        assert!(r().keeps(&OpEvent::sample(1000, 5, 0, 100, Outcome::Unknown(ErrorClass::Timeout))));
        assert!(r().keeps(&op(1000, 100)) && !r().keeps(&op(1000, 99)), "slow from 100 ms");
        let mut late = op(1000, 5);
        late.sent_us += 10_001;
        late.latency_us += 10_001;
        assert!(r().keeps(&late), "sent more than 10 ms late");
        let mut queued = op(1000, 5);
        queued.queued_us = 1_000;
        assert!(r().keeps(&queued));
        assert!(r().keeps(&OpEvent::sample(1000, 5, 1, 100, Outcome::Ok)), "a kind checked whole");
        assert!(r().keeps(&op(50_000, 5)) && !r().keeps(&op(49_999, 5)), "10 s before the fault");
        assert!(r().keeps(&op(95_999, 5)) && !r().keeps(&op(96_000, 5)), "30 s after its heal");
        assert!(Recording::default().keeps(&op(1000, 5)), "by default, everything");
    }

    #[test]
    fn ops_that_follow_a_failure_on_its_shard_are_kept_for_5_s() {
        let r = Recording::new(vec![false], &[], &[vec![(0, 99)], vec![(100, 16383)]]);
        let on = |slot: u16, start_ms: u64| OpEvent::sample(start_ms, 5, 0, slot, Outcome::Ok);
        assert!(!r.keeps(&on(5, 100_000)));
        assert!(r.keeps(&OpEvent::sample(100_000, 5, 0, 5, Outcome::Fail(ErrorClass::ClusterDown))));
        assert!(r.keeps(&on(5, 105_004)) && !r.keeps(&on(5, 105_005)), "until 5 s after its end");
        assert!(!r.keeps(&on(200, 100_010)), "another shard's ops are not");
    }

    #[test]
    fn nothing_a_disruption_threshold_counts_as_slow_is_dropped() {
        assert!(Recording::SLOW_US <= FailoverConfig::default().min_disruption_us);
        assert_eq!(Recording::LATE_US, crate::check::schedule::LAG_WARNING_US);
    }

    #[test]
    fn slots_count_on_the_shard_that_held_them() {
        let r = Recording::new(vec![], &[], &[vec![(0, 5460)], vec![(5461, 10922)], vec![(10923, 16383)]]);
        assert_eq!((r.shard(0), r.shard(5461), r.shard(16383), r.shards()), (0, 1, 2, 3));
        let gap = Recording::new(vec![], &[], &[vec![(0, 99)]]);
        assert_eq!((gap.shard(100), gap.shards()), (1, 1), "a slot no shard held");
    }
}
