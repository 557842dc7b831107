//! Rate-limit over-admission: the seed's sliding-window limiter must never admit more than
//! `limit` calls for a key in any `window`. From the calls the limiter admitted (reply 1),
//! timed when they were sent (the moment the script's `now` argument was read), find every
//! stretch in which some window held more than `limit` admissions.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::history::{OpEvent, OpKind, Outcome};

/// The verdict on one limiter op.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct OverAdmission {
    /// The op's name.
    pub op: String,
    /// The limit per window.
    pub limit: u64,
    /// The window, in seconds.
    pub window_s: f64,
    /// Calls answered.
    pub calls: u64,
    /// Of those, admitted.
    pub admitted: u64,
    /// Maximal stretches, per key, in which a window held more than `limit` admissions.
    pub over_windows: u64,
    /// The largest number of admissions over the limit in one window.
    pub worst_excess: u64,
    /// The key id of that worst window.
    pub worst_key: Option<u64>,
    /// When (µs since the run began) the worst window ended.
    pub worst_at_us: Option<u64>,
}

/// Judge the calls of limiter op `kind`: `limit` admissions per `window` per key id.
pub fn check(ops: &[OpEvent], kind: OpKind, name: &str, limit: u64, window: Duration) -> OverAdmission {
    let window_us = window.as_micros() as u64;
    let mut out =
        OverAdmission { op: name.to_string(), limit, window_s: window.as_secs_f64(), ..Default::default() };
    let mut admitted: HashMap<u64, Vec<u64>> = HashMap::new();
    for o in ops.iter().filter(|o| o.kind == kind && o.outcome == Outcome::Ok) {
        out.calls += 1;
        if o.reply == Some(1) {
            out.admitted += 1;
            admitted.entry(o.id).or_default().push(o.sent_us);
        }
    }
    let mut keys: Vec<_> = admitted.into_iter().collect();
    keys.sort_by_key(|(k, _)| *k);
    for (key, mut times) in keys {
        times.sort_unstable();
        // Two pointers: for each admission as a window's end, the admissions in
        // (end − window, end].
        let mut first = 0;
        let mut inside_over = false;
        for (i, &t) in times.iter().enumerate() {
            while times[first] + window_us <= t {
                first += 1;
            }
            let count = (i - first + 1) as u64;
            if count > limit {
                if !inside_over {
                    out.over_windows += 1;
                    inside_over = true;
                }
                let excess = count - limit;
                if excess > out.worst_excess {
                    out.worst_excess = excess;
                    out.worst_key = Some(key);
                    out.worst_at_us = Some(t);
                }
            } else {
                inside_over = false;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::ErrorClass;

    fn call(id: u64, sent_ms: u64, admitted: bool) -> OpEvent {
        OpEvent {
            latency_us: 100,
            id,
            reply: Some(i64::from(admitted)),
            ..OpEvent::sample(sent_ms, 0, 2, 0, Outcome::Ok)
        }
    }

    #[test]
    fn a_limiter_that_holds_is_never_over() {
        // 3 per 1 s: admitted at 0, 100, 200; denied until 1000; admitted again from 1000.
        let mut ops = vec![call(1, 0, true), call(1, 100, true), call(1, 200, true), call(1, 500, false)];
        ops.extend([call(1, 1000, true), call(1, 1100, true), call(1, 1200, true)]);
        let r = check(&ops, OpKind(2), "limiter", 3, Duration::from_secs(1));
        assert_eq!((r.calls, r.admitted, r.over_windows, r.worst_excess), (7, 6, 0, 0));
    }

    #[test]
    fn admissions_over_the_limit_are_found_with_the_worst_one() {
        // A failover lost the sorted set: the new primary admits 3 more within the window.
        let ops = vec![
            call(1, 0, true),
            call(1, 100, true),
            call(1, 200, true),
            call(1, 300, true),
            call(1, 400, true),
            call(2, 0, true),
            call(1, 2000, true),
        ];
        let r = check(&ops, OpKind(2), "limiter", 3, Duration::from_secs(1));
        assert_eq!(r.over_windows, 1);
        assert_eq!(r.worst_excess, 2);
        assert_eq!((r.worst_key, r.worst_at_us), (Some(1), Some(400_000)));
    }

    #[test]
    fn window_boundaries_are_half_open_and_failed_calls_do_not_count() {
        // An admission exactly one window after another is in a new window.
        let mut ops = vec![call(1, 0, true), call(1, 1000, true)];
        let mut failed = call(1, 500, true);
        failed.outcome = Outcome::Unknown(ErrorClass::Timeout);
        ops.push(failed);
        let r = check(&ops, OpKind(2), "limiter", 1, Duration::from_secs(1));
        assert_eq!((r.calls, r.over_windows), (2, 0));
        // Two separate stretches over the limit count twice.
        let ops = vec![call(1, 0, true), call(1, 10, true), call(1, 5000, true), call(1, 5010, true)];
        let r = check(&ops, OpKind(2), "limiter", 1, Duration::from_secs(1));
        assert_eq!(r.over_windows, 2);
    }
}
