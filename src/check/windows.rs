//! Error and disruption windows: maximal stretches of time in which ops on some slots failed
//! (or, for disruption, failed or were slower than a threshold), with short gaps joined.

use serde::Serialize;

use crate::history::{ErrorClass, ErrorCounts, OpEvent};

/// One window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Window {
    /// Start of the first bad op in it, µs since the run began.
    pub start_us: u64,
    /// End (completion) of the last bad op in it.
    pub end_us: u64,
    /// Bad ops in it.
    pub ops: u64,
    /// Of those, failed or unknown ones by class (slow but successful ops are not counted
    /// here).
    pub errors: ErrorCounts,
}

impl Window {
    /// Its length in µs.
    pub fn len_us(&self) -> u64 {
        self.end_us - self.start_us
    }

    /// Errors of every class.
    pub fn error_count(&self) -> u64 {
        self.errors.total()
    }

    /// `4180 errors: 3012 refused, 1168 clusterdown`, largest first.
    pub fn describe_errors(&self) -> String {
        let mut by: Vec<(u64, &str)> =
            ErrorClass::ALL.iter().map(|c| (self.errors[*c], c.name())).filter(|(n, _)| *n > 0).collect();
        by.sort_by_key(|&(n, _)| std::cmp::Reverse(n));
        let parts: Vec<String> = by.iter().map(|(n, c)| format!("{n} {c}")).collect();
        if parts.is_empty() {
            format!("{} slow ops, no errors", self.ops)
        } else {
            format!("{} errors: {}", self.error_count(), parts.join(", "))
        }
    }
}

/// Which ops count as bad.
#[derive(Debug, Clone, Copy)]
pub enum Badness {
    /// Ops whose outcome is not ok.
    Errors,
    /// Ops that failed or whose client took longer than this many µs from send to end (a
    /// retrying client shows a stall, not an error). The time an op waited to be sent (a
    /// full pool, a driver behind its schedule) is not the cluster's and does not count.
    ErrorsOrSlowerThan(u64),
}

/// The windows of the `ops` that `keep` selects (e.g. by slot), from `ops` sorted by start;
/// bad ops less than `merge_gap_us` apart share a window. A window spans what the client saw:
/// from the first bad op's send to the last one's end.
pub fn windows<'a>(
    ops: impl IntoIterator<Item = &'a OpEvent>,
    keep: impl Fn(&OpEvent) -> bool,
    bad: Badness,
    merge_gap_us: u64,
) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    for op in ops.into_iter().filter(|o| keep(o)) {
        let error = op.outcome.error();
        let is_bad = match bad {
            Badness::Errors => error.is_some(),
            Badness::ErrorsOrSlowerThan(t) => error.is_some() || op.service_us() > t,
        };
        if !is_bad {
            continue;
        }
        let (start, end) = (op.sent_us.max(op.start_us), op.end_us());
        match out.last_mut() {
            Some(w) if start <= w.end_us + merge_gap_us => {
                w.start_us = w.start_us.min(start);
                w.end_us = w.end_us.max(end);
                w.ops += 1;
                if let Some(c) = error {
                    w.errors[c] += 1;
                }
            }
            _ => {
                let mut errors = ErrorCounts::default();
                if let Some(c) = error {
                    errors[c] += 1;
                }
                out.push(Window { start_us: start, end_us: end, ops: 1, errors });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Outcome;

    fn op(start_ms: u64, latency_ms: u64, outcome: Outcome, slot: u16) -> OpEvent {
        OpEvent::sample(start_ms, latency_ms, 0, slot, outcome)
    }

    #[test]
    fn failures_close_together_share_a_window_and_far_ones_do_not() {
        let refused = Outcome::Fail(ErrorClass::Refused);
        let down = Outcome::Fail(ErrorClass::ClusterDown);
        let ops = vec![
            op(0, 1, Outcome::Ok, 0),
            op(100, 1, refused, 0),
            op(150, 1, down, 0),
            op(500, 1, Outcome::Ok, 0),
            op(700, 1, down, 0),
            op(2000, 1, refused, 0),
        ];
        let w = windows(&ops, |_| true, Badness::Errors, 600_000);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].start_us, w[0].end_us, w[0].ops), (100_000, 701_000, 3));
        assert_eq!(w[0].errors[ErrorClass::ClusterDown], 2);
        assert_eq!(w[0].describe_errors(), "3 errors: 2 clusterdown, 1 refused");
        assert_eq!(w[1].len_us(), 1000);
        // With no merging, the ok op at 500 ms splits nothing: gaps decide, not ok ops.
        assert_eq!(windows(&ops, |_| true, Badness::Errors, 0).len(), 4);
    }

    #[test]
    fn a_stall_is_a_disruption_but_not_an_error_window() {
        let ops = vec![op(0, 1, Outcome::Ok, 0), op(10, 3000, Outcome::Ok, 0), op(3020, 1, Outcome::Ok, 0)];
        assert!(windows(&ops, |_| true, Badness::Errors, 0).is_empty());
        let d = windows(&ops, |_| true, Badness::ErrorsOrSlowerThan(100_000), 0);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].start_us, d[0].end_us), (10_000, 3_010_000));
        assert_eq!(d[0].describe_errors(), "1 slow ops, no errors");
    }

    #[test]
    fn an_op_that_waited_to_be_sent_is_not_a_disruption_but_its_slow_service_is() {
        // Sent 2 s late (a full pool), then answered in 1 ms: the client saw nothing wrong.
        let queued = OpEvent { sent_us: 2_010_000, ..op(10, 2001, Outcome::Ok, 0) };
        // Sent 1 s late, then 500 ms in the client: a disruption from its send to its end.
        let slow = OpEvent { sent_us: 3_000_000, ..op(2000, 1500, Outcome::Ok, 0) };
        let d = windows(&[queued, slow], |_| true, Badness::ErrorsOrSlowerThan(100_000), 0);
        assert_eq!(
            d.iter().map(|w| (w.start_us, w.end_us)).collect::<Vec<_>>(),
            vec![(3_000_000, 3_500_000)]
        );
    }

    #[test]
    fn windows_only_see_the_selected_slots() {
        let down = Outcome::Fail(ErrorClass::ClusterDown);
        let ops = vec![op(0, 1, down, 1), op(1, 1, down, 9000)];
        let w = windows(&ops, |o| o.slot < 5000, Badness::Errors, 0);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].ops, 1);
    }
}
