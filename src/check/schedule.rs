//! Whether the driver kept its schedule: how late ops were sent after their intended start
//! (the *send lag*, as wrk2 reports its own lateness), and when every in-flight slot was taken
//! so that ops waited for one. With `client.pool` set that wait is the application's pool
//! filling up, which the workload models on purpose; otherwise it is slotstorm falling behind,
//! and the run's latencies then include slotstorm's own queueing: the report says so.
//!
//! Latency stays measured from the intended start either way (coordinated omission
//! corrected); the failover checks measure what the client saw from each op's send
//! ([`crate::check::windows`]).

use serde::{Deserialize, Serialize};

use crate::history::{History, OpEvent, QUEUED_MIN_US};
use crate::spec::{InFlight, LimitSource, Pacing};

/// A p99 send lag above this, or any op that waited for slotstorm's own in-flight limit,
/// gets a warning line in the summary and the report.
pub const LAG_WARNING_US: u64 = 10_000;

/// Queued ops closer than this share a saturation window.
const SATURATION_GAP_US: u64 = 500_000;

/// How the driver kept its schedule, as `run.json`'s `schedule` block records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScheduleReport {
    /// `open` or `closed`.
    pub pacing: String,
    /// Open loop: the target rate, ops/s.
    pub rate: Option<f64>,
    /// Ops in flight at most.
    pub in_flight_limit: usize,
    /// Who set that limit.
    pub limit_source: LimitSource,
    /// Send lag over the measured part (warm-up left out), µs: median.
    pub send_lag_p50_us: u64,
    /// The same, 99th percentile.
    pub send_lag_p99_us: u64,
    /// The largest of any measured op (intended start after the warm-up), exact.
    pub send_lag_max_us: u64,
    /// Measured ops sent more than [`LAG_WARNING_US`] late.
    pub late_ops: u64,
    /// Measured ops that waited at least 1 ms for a free in-flight slot.
    pub queued_ops: u64,
    /// When every in-flight slot was taken: stretches of queued measured ops, in order.
    pub saturated: Vec<Saturation>,
    /// One line for people when the schedule was not kept, else none.
    pub warning: Option<String>,
}

/// A stretch of time in which ops waited for a free in-flight slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Saturation {
    /// Intended start of the first op that waited, µs since the run began.
    pub start_us: u64,
    /// Send of the last one.
    pub end_us: u64,
    /// Ops that waited.
    pub ops: u64,
    /// The longest wait, µs.
    pub max_wait_us: u64,
}

/// Measure how `history`'s ops kept the schedule that `pacing` and `in_flight` set.
pub fn schedule_report(history: &History, pacing: Pacing, in_flight: InFlight) -> ScheduleReport {
    let mut lag = crate::history::new_lag_histogram();
    for s in history.totals() {
        lag.add(&s.send_lag).expect("histograms share bounds");
    }
    let warmup_us = history.warmup.as_micros() as u64;
    let measured = || history.ops.iter().filter(|o| o.start_us >= warmup_us);
    let late_ops = measured().filter(|o| o.send_lag_us() > LAG_WARNING_US).count() as u64;
    let saturated = saturation(measured());
    let queued_ops = measured().filter(|o| queued(o)).count() as u64;
    let q = |p: f64| if lag.is_empty() { 0 } else { crate::history::lag_value(lag.value_at_quantile(p)) };
    // The largest exactly, from the ops (an SLO judges it), when any was late: every op
    // sent more than LAG_WARNING_US late is kept. Otherwise it is under that, and the
    // histograms' largest (to 1%) says how far; the percentiles come from them too.
    let kept_max = measured().map(OpEvent::send_lag_us).max().unwrap_or(0);
    let send_lag_max_us = if kept_max > LAG_WARNING_US {
        kept_max
    } else {
        let counted = if lag.is_empty() { 0 } else { crate::history::lag_value(lag.max()) };
        kept_max.max(counted.min(LAG_WARNING_US))
    };
    let (send_lag_p50_us, send_lag_p99_us) = (q(0.5), q(0.99));
    let (pacing_name, rate) = match pacing {
        Pacing::Open { rate } => ("open", Some(rate)),
        Pacing::Closed => ("closed", None),
    };
    let mut report = ScheduleReport {
        pacing: pacing_name.to_string(),
        rate,
        in_flight_limit: in_flight.limit,
        limit_source: in_flight.source,
        send_lag_p50_us,
        send_lag_p99_us,
        send_lag_max_us,
        late_ops,
        queued_ops,
        saturated,
        warning: None,
    };
    report.warning = warning(&report);
    report
}

fn queued(o: &OpEvent) -> bool {
    u64::from(o.queued_us) >= QUEUED_MIN_US
}

/// The stretches of queued ops among `ops` (sorted by intended start).
fn saturation<'a>(ops: impl Iterator<Item = &'a OpEvent>) -> Vec<Saturation> {
    let mut out: Vec<Saturation> = Vec::new();
    for o in ops.filter(|o| queued(o)) {
        let (start, end, wait) = (o.start_us, o.sent_us.max(o.start_us), u64::from(o.queued_us));
        match out.last_mut() {
            Some(s) if start <= s.end_us + SATURATION_GAP_US => {
                s.end_us = s.end_us.max(end);
                s.ops += 1;
                s.max_wait_us = s.max_wait_us.max(wait);
            }
            _ => out.push(Saturation { start_us: start, end_us: end, ops: 1, max_wait_us: wait }),
        }
    }
    out
}

/// The warning line, when the schedule was not kept: an application pool that filled up
/// is reported as such; slotstorm's own limit or a lagging driver is a warning that the
/// latencies include its queueing.
fn warning(r: &ScheduleReport) -> Option<String> {
    // A closed loop (no rate) has no schedule to keep.
    r.rate?;
    let ms = |us: u64| us as f64 / 1000.0;
    let stretches = |r: &ScheduleReport| {
        let parts: Vec<String> = r
            .saturated
            .iter()
            .map(|s| format!("{:.1}s–{:.1}s", s.start_us as f64 / 1e6, s.end_us as f64 / 1e6))
            .collect();
        parts.join(", ")
    };
    let longest = r.saturated.iter().map(|s| s.max_wait_us).max().unwrap_or(0);
    match r.limit_source {
        LimitSource::Pool if !r.saturated.is_empty() => Some(format!(
            "the application pool of {} was full at {}: {} ops waited for it (longest {:.1} ms); their latency includes that wait, the failover figures do not",
            r.in_flight_limit,
            stretches(r),
            r.saturated.iter().map(|s| s.ops).sum::<u64>(),
            ms(longest),
        )),
        LimitSource::Set | LimitSource::Sized if !r.saturated.is_empty() => Some(format!(
            "slotstorm's limit of {} ops in flight was reached at {}: {} ops were sent late (longest wait {:.1} ms), so latency includes slotstorm's own queueing; raise load.concurrency",
            r.in_flight_limit,
            stretches(r),
            r.saturated.iter().map(|s| s.ops).sum::<u64>(),
            ms(longest),
        )),
        _ if r.send_lag_p99_us > LAG_WARNING_US => Some(format!(
            "the driver fell behind its schedule: p99 send lag {:.1} ms, max {:.1} ms, {} ops sent more than {:.0} ms late (CPU or timers, not the in-flight limit)",
            ms(r.send_lag_p99_us),
            ms(r.send_lag_max_us),
            r.late_ops,
            ms(LAG_WARNING_US),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Interval, OpStats, Outcome};
    use std::time::Duration;

    fn op(start_ms: u64, lag_ms: u64, queued_ms: u32) -> OpEvent {
        OpEvent {
            sent_us: (start_ms + lag_ms) * 1000,
            queued_us: queued_ms * 1000,
            ..OpEvent::sample(start_ms, lag_ms + 1, 0, 0, Outcome::Ok)
        }
    }

    fn history(ops: Vec<OpEvent>) -> History {
        let mut stats = OpStats::default();
        for o in &ops {
            stats.send_lag.saturating_record(o.send_lag_us().max(1));
        }
        History {
            op_names: vec!["set".into()],
            interval: Duration::from_secs(10),
            warmup: Duration::ZERO,
            started_at: std::time::UNIX_EPOCH,
            elapsed: Duration::from_secs(10),
            intervals: vec![Interval { index: 0, ops: vec![stats], shards: Vec::new() }].into(),
            ops,
            errors: Vec::new(),
            events: Vec::new(),
        }
    }

    const OPEN: Pacing = Pacing::Open { rate: 1000.0 };

    #[test]
    fn a_kept_schedule_has_no_warning() {
        let h = history((0..1000).map(|i| op(i, 0, 0)).collect());
        let r = schedule_report(&h, OPEN, InFlight { limit: 100, source: LimitSource::Sized });
        assert_eq!((r.late_ops, r.queued_ops, r.saturated.len(), r.warning), (0, 0, 0, None));
    }

    #[test]
    fn a_full_pool_is_reported_with_its_start_end_and_count() {
        // 200 ops from 2 s on waited up to 300 ms for the pool; one more at 5 s, apart.
        let mut ops: Vec<OpEvent> = (0..1000).map(|i| op(i, 0, 0)).collect();
        ops.extend((0..200).map(|i| op(2000 + i, 300 - i, (300 - i) as u32)));
        ops.push(op(5000, 5, 5));
        ops.sort_by_key(|o| o.start_us);
        let r = schedule_report(&history(ops), OPEN, InFlight { limit: 64, source: LimitSource::Pool });
        assert_eq!(r.queued_ops, 201);
        assert_eq!(r.saturated.len(), 2);
        let s = &r.saturated[0];
        assert_eq!((s.start_us, s.end_us, s.ops, s.max_wait_us), (2_000_000, 2_300_000, 200, 300_000));
        assert_eq!(r.late_ops, 200, "lags of 101..=300 ms; the 5 ms one is not late");
        let w = r.warning.unwrap();
        assert!(w.starts_with("the application pool of 64 was full at 2.0s–2.3s, 5.0s–5.0s: 201 ops"), "{w}");
        // The same waits under slotstorm's own limit are slotstorm's fault, and say so.
        let mut ops: Vec<OpEvent> = (0..200).map(|i| op(2000 + i, 300 - i, (300 - i) as u32)).collect();
        ops.sort_by_key(|o| o.start_us);
        let r = schedule_report(&history(ops), OPEN, InFlight { limit: 64, source: LimitSource::Set });
        assert!(r.warning.unwrap().contains("slotstorm's limit of 64 ops in flight was reached"));
    }

    #[test]
    fn lag_without_queueing_is_the_driver_falling_behind() {
        let h = history((0..100).map(|i| op(i * 10, 50, 0)).collect());
        let r = schedule_report(&h, OPEN, InFlight { limit: 100, source: LimitSource::Sized });
        assert_eq!((r.queued_ops, r.late_ops), (0, 100));
        assert!(r.warning.unwrap().starts_with("the driver fell behind its schedule: p99 send lag 50"));
        // A closed loop has no schedule to keep.
        assert_eq!(
            schedule_report(&h, Pacing::Closed, InFlight { limit: 8, source: LimitSource::Workers }).warning,
            None
        );
    }
}
