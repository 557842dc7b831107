//! Topology operations, measured: for each `[[operation]]` of the chaos file, when it ran,
//! what it moved and how fast, and what the client saw meanwhile: MOVED and ASK followed,
//! attempt errors by class (TRYAGAIN and CLUSTERDOWN are the ones a migration causes), the
//! client-visible error windows, and the p99 of the ops during it against the 10 s before.

use serde::Serialize;

use super::windows::{Badness, Window, windows};
use crate::history::{ErrorCounts, EventKind, History, new_histogram};

/// How long before an operation its "before" latency is taken from.
const BEFORE_US: u64 = 10_000_000;
/// Bad ops closer than this share an error window (as for faults).
const MERGE_GAP_US: u64 = 500_000;

/// One operation, measured.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct OperationReport {
    /// Its number in the chaos file.
    pub index: usize,
    /// Its action.
    pub action: String,
    /// What it did, resolved.
    pub detail: String,
    /// When it began, µs since the run began.
    pub started_us: u64,
    /// When it finished or failed (the run's end if neither was seen).
    pub ended_us: u64,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Slots left open when it failed.
    pub open_slots: Vec<u16>,
    /// Slots it moved.
    pub slots: u32,
    /// Keys it moved.
    pub keys: u64,
    /// Keys moved per second of its duration.
    pub keys_per_s: f64,
    /// Their size (`MEMORY USAGE` on the source before each batch), bytes.
    pub bytes: u64,
    /// Bytes moved per second of its duration.
    pub bytes_per_s: f64,
    /// Steps recorded (batches, hand-overs, …).
    pub steps: u64,
    /// MOVED redirections the driver followed in the intervals it overlapped.
    pub moved_followed: u64,
    /// ASK redirections the driver followed in those intervals.
    pub ask_followed: u64,
    /// Attempt errors while it ran, by class (including those a retry hid).
    pub attempt_errors: ErrorCounts,
    /// Error windows of the ops (any slot) from its start to 2 s after its end.
    pub error_windows: Vec<Window>,
    /// p99 of the ops that started in the 10 s before it, µs.
    pub p99_before_us: Option<u64>,
    /// p99 of the ops that started while it ran, µs.
    pub p99_during_us: Option<u64>,
}

impl OperationReport {
    /// How long it ran, µs.
    pub fn duration_us(&self) -> u64 {
        self.ended_us.saturating_sub(self.started_us)
    }

    /// From the first error window's start to the last one's end (0 without errors).
    pub fn error_span_us(&self) -> u64 {
        match (self.error_windows.first(), self.error_windows.last()) {
            (Some(a), Some(b)) => b.end_us - a.start_us,
            _ => 0,
        }
    }
}

/// Measure every operation in `history`.
pub fn operation_reports(history: &History) -> Vec<OperationReport> {
    let end_us = history.elapsed.as_micros() as u64;
    history
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::OperationStarted { index, action, detail } => Some((e.at_us, *index, action, detail)),
            _ => None,
        })
        .map(|(started_us, index, action, detail)| one(history, started_us, index, action, detail, end_us))
        .collect()
}

fn one(
    history: &History,
    started_us: u64,
    index: usize,
    action: &str,
    detail: &str,
    end_us: u64,
) -> OperationReport {
    let mine = history.events.iter().filter(|e| e.at_us >= started_us);
    let mut report = OperationReport {
        index,
        action: action.to_string(),
        detail: detail.to_string(),
        started_us,
        ended_us: end_us.max(started_us),
        error: None,
        open_slots: Vec::new(),
        slots: 0,
        keys: 0,
        keys_per_s: 0.0,
        bytes: 0,
        bytes_per_s: 0.0,
        steps: 0,
        moved_followed: 0,
        ask_followed: 0,
        attempt_errors: ErrorCounts::default(),
        error_windows: Vec::new(),
        p99_before_us: None,
        p99_during_us: None,
    };
    let (mut step_keys, mut step_slots, mut step_bytes) = (0, 0, 0);
    for e in mine {
        match &e.kind {
            EventKind::OperationStep { index: i, keys, bytes, what, .. } if *i == index => {
                report.steps += 1;
                step_keys += keys;
                step_bytes += bytes;
                step_slots += u32::from(what == "slot_handed_over");
            }
            EventKind::OperationDone { index: i, slots, keys, bytes, detail, .. } if *i == index => {
                report.ended_us = e.at_us;
                report.slots = *slots;
                report.keys = *keys;
                report.bytes = *bytes;
                report.detail = detail.clone();
                break;
            }
            EventKind::OperationFailed { index: i, error, open_slots, .. } if *i == index => {
                report.ended_us = e.at_us;
                report.error = Some(error.clone());
                report.open_slots = open_slots.clone();
                report.keys = step_keys;
                report.slots = step_slots;
                report.bytes = step_bytes;
                break;
            }
            _ => {}
        }
    }
    let (start, end) = (report.started_us, report.ended_us);
    let secs = (end - start) as f64 / 1e6;
    report.keys_per_s = if secs > 0.0 { report.keys as f64 / secs } else { 0.0 };
    report.bytes_per_s = if secs > 0.0 { report.bytes as f64 / secs } else { 0.0 };
    // From the intervals (every op is counted there; few are kept one by one): those the
    // operation overlaps are "during", those wholly in the 10 s before it "before".
    let len = history.interval.as_micros().max(1) as u64;
    let (mut before, mut during) = (new_histogram(), new_histogram());
    for interval in history.intervals.iter() {
        let (a, b) = (u64::from(interval.index) * len, u64::from(interval.index + 1) * len);
        if a <= end && b >= start {
            for s in &interval.ops {
                report.moved_followed += s.moved;
                report.ask_followed += s.ask;
                during.add(&s.latency).expect("histograms share bounds");
            }
        } else if a >= start.saturating_sub(BEFORE_US) && b <= start {
            for s in &interval.ops {
                before.add(&s.latency).expect("histograms share bounds");
            }
        }
    }
    for e in history.errors.iter().filter(|e| e.at_us >= start && e.at_us <= end) {
        report.attempt_errors[e.class] += 1;
    }
    let p99 = |h: &hdrhistogram::Histogram<u64>| (!h.is_empty()).then(|| h.value_at_quantile(0.99));
    report.p99_before_us = p99(&before);
    report.p99_during_us = p99(&during);
    let window_end = end + 2_000_000;
    let ops = history.ops.iter().filter(|o| o.start_us + o.latency_us >= start && o.start_us <= window_end);
    report.error_windows = windows(ops, |_| true, Badness::Errors, MERGE_GAP_US);
    report
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::{ErrorClass, ErrorEvent, Event, OpEvent, OpKind, Outcome};

    fn event(at_ms: u64, kind: EventKind) -> Event {
        Event { at_us: at_ms * 1000, kind }
    }

    fn history(ops: Vec<OpEvent>, errors: Vec<ErrorEvent>, events: Vec<Event>) -> History {
        History {
            op_names: vec!["get".into()],
            interval: Duration::from_secs(1),
            warmup: Duration::ZERO,
            started_at: std::time::SystemTime::UNIX_EPOCH,
            elapsed: Duration::from_secs(60),
            intervals: Default::default(),
            ops,
            errors,
            events,
        }
    }

    fn step(at_ms: u64, index: usize, what: &str, slot: Option<u16>, keys: u64, bytes: u64) -> Event {
        event(at_ms, EventKind::OperationStep { index, what: what.into(), slot, keys, bytes })
    }

    fn started(at_ms: u64, index: usize) -> Event {
        event(
            at_ms,
            EventKind::OperationStarted { index, action: "reshard".into(), detail: "planned".into() },
        )
    }

    #[test]
    fn a_finished_reshard_has_its_duration_keys_rate_and_errors() {
        let events = vec![
            started(10_000, 0),
            step(10_500, 0, "batch", Some(5), 100, 8000),
            // Another operation's events never count.
            step(11_000, 1, "batch", Some(9), 7, 560),
            event(
                14_000,
                EventKind::OperationDone {
                    index: 0,
                    action: "reshard".into(),
                    detail: "1000 slots redis-3 → redis-1".into(),
                    slots: 1000,
                    keys: 4000,
                    bytes: 320_000,
                },
            ),
        ];
        let mut ops: Vec<OpEvent> =
            (0..100).map(|i| OpEvent::sample(1_000 + i * 50, 1, 0, 0, Outcome::Ok)).collect();
        ops.push(OpEvent::sample(12_000, 30, 0, 0, Outcome::Fail(ErrorClass::TryAgain)));
        ops.push(OpEvent::sample(13_000, 20, 0, 0, Outcome::Ok));
        let errors = vec![
            ErrorEvent {
                at_us: 12_030_000,
                kind: OpKind(0),
                slot: 5,
                class: ErrorClass::TryAgain,
                last: true,
            },
            ErrorEvent {
                at_us: 14_500_000,
                kind: OpKind(0),
                slot: 5,
                class: ErrorClass::TryAgain,
                last: true,
            },
        ];
        let r = &operation_reports(&history(ops, errors, events).count_ops())[0];
        assert_eq!((r.started_us, r.ended_us, r.duration_us()), (10_000_000, 14_000_000, 4_000_000));
        assert_eq!((r.slots, r.keys, r.steps, r.keys_per_s), (1000, 4000, 1, 1000.0));
        assert_eq!((r.bytes, r.bytes_per_s), (320_000, 80_000.0));
        assert_eq!(r.detail, "1000 slots redis-3 → redis-1");
        assert_eq!(r.attempt_errors[ErrorClass::TryAgain], 1, "the error after its end is not its");
        assert_eq!(
            (r.p99_before_us.map(|v| v / 1000), r.p99_during_us.map(|v| v / 1000)),
            (Some(1), Some(30))
        );
        assert_eq!(r.error_windows.len(), 1);
        assert_eq!(r.error_span_us(), 30_000);
        assert_eq!(r.error, None);
    }

    #[test]
    fn a_failed_operation_keeps_its_error_open_slots_and_the_keys_its_steps_moved() {
        let events = vec![
            started(5_000, 2),
            step(5_100, 2, "batch", Some(1), 10, 900),
            step(5_150, 2, "slot_handed_over", Some(1), 0, 0),
            step(5_200, 2, "batch", Some(2), 5, 100),
            event(
                6_000,
                EventKind::OperationFailed {
                    index: 2,
                    action: "reshard".into(),
                    error: "MIGRATE: connection refused".into(),
                    open_slots: vec![2],
                },
            ),
        ];
        let r = &operation_reports(&history(vec![], vec![], events))[0];
        assert_eq!((r.keys, r.slots, r.steps, r.open_slots.clone()), (15, 1, 3, vec![2]));
        assert_eq!(r.bytes, 1000);
        assert_eq!(r.error.as_deref(), Some("MIGRATE: connection refused"));
        assert_eq!((r.p99_before_us, r.p99_during_us), (None, None));
    }

    #[test]
    fn an_operation_still_running_at_the_end_ends_with_the_run() {
        let r = &operation_reports(&history(vec![], vec![], vec![started(50_000, 0)]))[0];
        assert_eq!(r.ended_us, 60_000_000);
        assert_eq!(r.error, None);
    }
}
