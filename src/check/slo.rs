//! SLO verdicts: the workload's `[slo]` limits held against what a run measured. One
//! verdict per limit, and for the per-fault limits one per fault; each passes, fails, or is
//! unknown when the run cannot tell (not measured, no samples). Verdicts compose as Jepsen's
//! do: fail > unknown > pass.
//!
//! "Steady state" (for `p99` and `p99_9`) is every interval after the warm-up that does not
//! overlap a fault's window: from `t0` until the latest of its heal, the client's recovery on
//! the victim's slots and the end of the disruption on the other slots.
//!
//! Like every checker this is pure: no I/O, no panics on odd histories.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::failover::FaultReport;
use crate::history::{EventKind, History, OpEvent, Outcome as OpOutcome};
use crate::spec::Slo;

/// What checkers outside the history measured, for the limits they judge; `None` is "not
/// measured" (the workload has no op the checker can judge, or the checker did not run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measured {
    /// Acknowledged writes lost, over every set-full op.
    pub lost_writes: Option<u64>,
    /// Rate-limit windows that admitted more than the limit.
    pub over_admissions: Option<u64>,
    /// The largest send lag of a measured op, µs ([`super::schedule`]).
    pub send_lag_max_us: Option<u64>,
}

/// A verdict's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The limit was met.
    Pass,
    /// The limit was violated.
    Fail,
    /// The run cannot tell: the value was not measured or had no samples.
    Unknown,
}

impl Outcome {
    /// `pass`, `fail` or `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One limit judged once (per fault, per op, or for the whole run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Verdict {
    /// Unique within a run and readable on its own, e.g.
    /// `max_failover fault[0] kill redis-3 @10.0s` or `p99 get-profile`.
    pub name: String,
    /// The limit's key under `[slo]`: `max_failover`, `p99.get-profile`, `p99_9.get`, ….
    pub slo: String,
    /// The limit with its direction, e.g. `≤ 15s` or `≥ 900 ops/s`.
    pub limit: String,
    /// What the run measured, or why it could not, e.g. `6.82s`, `not measured`.
    pub observed: String,
    /// Pass, fail or unknown.
    pub outcome: Outcome,
}

/// Judge every limit `slo` sets against `history`, its `faults` (from
/// [`fault_reports`](super::failover::fault_reports)) and what other checkers `measured`.
/// The order: the per-fault limits (fault by fault), lost writes, over-admissions,
/// throughput, send lag, then `p99` and `p99_9` in file order. An empty `slo` gives no verdicts.
pub fn evaluate(slo: &Slo, history: &History, faults: &[FaultReport], measured: &Measured) -> Vec<Verdict> {
    let mut out = Vec::new();
    let per_fault = [
        (Window::Failover, slo.max_failover),
        (Window::Disruption, slo.max_disruption),
        (Window::Errors, slo.max_error_window),
    ];
    for (window, limit) in per_fault {
        let Some(limit) = limit else { continue };
        if faults.is_empty() {
            let key = window.key();
            // Faults that were due but could not be injected leave nothing to judge.
            let (observed, outcome) = if !super::any_fault_error(&history.events) {
                ("no faults", Outcome::Pass)
            } else {
                ("no fault was injected (see the run errors)", Outcome::Unknown)
            };
            out.push(verdict(key.into(), key.into(), at_most(limit), observed.into(), outcome));
        }
        for f in faults {
            out.push(per_fault_verdict(window, limit, f, history));
        }
    }
    let counts = [
        ("max_lost_writes", slo.max_lost_writes, measured.lost_writes, "lost"),
        ("max_over_admissions", slo.max_over_admissions, measured.over_admissions, "windows over the limit"),
    ];
    for (key, limit, value, unit) in counts {
        let Some(limit) = limit else { continue };
        let (observed, outcome) = match value {
            None => ("not measured".to_string(), Outcome::Unknown),
            Some(n) => (format!("{n} {unit}"), pass_if(n <= limit)),
        };
        out.push(verdict(key.into(), key.into(), format!("≤ {limit}"), observed, outcome));
    }
    if let Some(limit) = slo.min_throughput {
        out.push(throughput(limit, history));
    }
    if let Some(limit) = slo.max_send_lag {
        let (observed, outcome) = match measured.send_lag_max_us {
            None => ("not measured".to_string(), Outcome::Unknown),
            Some(us) => (format_us(us), pass_if(us <= limit.as_micros() as u64)),
        };
        out.push(verdict("max_send_lag".into(), "max_send_lag".into(), at_most(limit), observed, outcome));
    }
    if !slo.p99.is_empty() || !slo.p99_9.is_empty() {
        let steady = steady_state(history, faults);
        for (label, key, q, limits) in [("p99", "p99", 0.99, &slo.p99), ("p99.9", "p99_9", 0.999, &slo.p99_9)]
        {
            for (op, limit) in limits {
                let name = format!("{label} {op}");
                let (observed, outcome) = match history.op_names.iter().position(|n| n == op) {
                    None => ("no such op in the history".to_string(), Outcome::Unknown),
                    Some(i) => match steady.get(i) {
                        Some(h) if !h.is_empty() => {
                            let us = h.value_at_quantile(q);
                            (format_us(us), pass_if(us <= limit.as_micros() as u64))
                        }
                        _ => ("no samples in steady state".to_string(), Outcome::Unknown),
                    },
                };
                out.push(verdict(name, format!("{key}.{op}"), at_most(*limit), observed, outcome));
            }
        }
    }
    out
}

/// All verdicts together: fail if any failed, else unknown if any is unknown, else pass
/// (also when there are none).
pub fn overall(verdicts: &[Verdict]) -> Outcome {
    verdicts.iter().fold(Outcome::Pass, |all, v| match (all, v.outcome) {
        (Outcome::Fail, _) | (_, Outcome::Fail) => Outcome::Fail,
        (Outcome::Unknown, _) | (_, Outcome::Unknown) => Outcome::Unknown,
        _ => Outcome::Pass,
    })
}

/// The per-fault limits.
#[derive(Debug, Clone, Copy)]
enum Window {
    /// `client_recovered − t0`.
    Failover,
    /// The victim's slots' disruption span.
    Disruption,
    /// The victim's slots' error span.
    Errors,
}

impl Window {
    fn key(self) -> &'static str {
        match self {
            Window::Failover => "max_failover",
            Window::Disruption => "max_disruption",
            Window::Errors => "max_error_window",
        }
    }
}

/// How the victim's slots were doing after the last bad op of a window.
enum After {
    /// The next op on them was good: the window closed.
    Good,
    /// The next op on them was bad too, yet outside the window: it lies past the next
    /// fault's injection, which took over the measurement.
    Bad,
    /// No op started on them afterwards: the run ended.
    Nothing,
}

fn per_fault_verdict(window: Window, limit: Duration, f: &FaultReport, history: &History) -> Verdict {
    let key = window.key();
    let repeat = if f.repeat > 0 { format!(" repeat {}", f.repeat) } else { String::new() };
    let name = format!(
        "{key} fault[{}]{repeat} {} {} @{:.1}s",
        f.fault,
        f.action,
        f.targets.join(","),
        f.t0_us as f64 / 1e6
    );
    let limit_us = limit.as_micros() as u64;
    let done =
        |observed: String, outcome| verdict(name.clone(), key.into(), at_most(limit), observed, outcome);
    if f.victims.is_empty() {
        return done("no primary among the targets".into(), Outcome::Pass);
    }
    let (impact_windows, bad): (_, fn(&OpEvent, u64) -> bool) = match window {
        Window::Failover | Window::Disruption => {
            (&f.victim_slots.disruption_windows, |o, t| o.outcome.error().is_some() || o.latency_us > t)
        }
        Window::Errors => (&f.victim_slots.error_windows, |o, _| o.outcome != OpOutcome::Ok),
    };
    let value = match window {
        Window::Failover => f.client_recovered_us.map(|r| r.saturating_sub(f.t0_us)),
        Window::Disruption => impact_windows.last().map(|_| f.victim_slots.disruption_span_us()),
        Window::Errors => impact_windows.last().map(|_| f.victim_slots.error_span_us()),
    };
    let last_end = impact_windows.last().map_or(f.t0_us, |w| w.end_us);
    // Without the injection's slots (an odd history) the reports are taken as they are.
    let after = match victim_slots(history, f) {
        Some(slots) => after(history, slots, last_end, |o| bad(o, f.disruption_threshold_us)),
        None => After::Good,
    };
    match (value, after) {
        (None, After::Nothing) => {
            done("no ops on the victim's slots after the fault".into(), Outcome::Unknown)
        }
        (None, _) => done("0s (no client-visible impact)".into(), Outcome::Pass),
        (Some(v), After::Good) => done(format_us(v), pass_if(v <= limit_us)),
        (Some(v), After::Bad) => {
            done(format!("≥ {}, not recovered before the next fault", format_us(v)), Outcome::Fail)
        }
        (Some(v), After::Nothing) => {
            done(format!("≥ {}, not recovered by the end of the run", format_us(v)), Outcome::Fail)
        }
    }
}

/// The slots the fault's primaries served when it was injected, from its injection event.
fn victim_slots<'h>(history: &'h History, f: &FaultReport) -> Option<&'h [(u16, u16)]> {
    history.events.iter().find_map(|e| match &e.kind {
        EventKind::FaultInjected { fault, repeat, slots, .. }
            if *fault == f.fault && *repeat == f.repeat && e.at_us == f.t0_us =>
        {
            Some(slots.as_slice())
        }
        _ => None,
    })
}

/// The first op on `slots` that started at or after `from_us`, judged by `bad`.
fn after(history: &History, slots: &[(u16, u16)], from_us: u64, bad: impl Fn(&OpEvent) -> bool) -> After {
    let next = history
        .ops
        .iter()
        .filter(|o| o.start_us >= from_us && slots.iter().any(|&(a, b)| a <= o.slot && o.slot <= b))
        // Ops are ordered by intended start, but the answer must not depend on it.
        .min_by_key(|o| o.start_us);
    match next {
        None => After::Nothing,
        Some(o) if bad(o) => After::Bad,
        Some(_) => After::Good,
    }
}

/// `min_throughput`: successful ops per second of the measured part. Failed ops are left
/// out: an open-loop schedule completes its rate whatever the cluster answers.
fn throughput(limit: f64, history: &History) -> Verdict {
    let measured = history.elapsed.saturating_sub(history.warmup).as_secs_f64();
    let (observed, outcome) = if measured <= 0.0 {
        ("no measured time (the run ended in its warm-up)".to_string(), Outcome::Unknown)
    } else {
        let totals = history.totals();
        let count: u64 = totals.iter().map(|s| s.count()).sum();
        let ok: u64 = totals.iter().map(|s| s.ok).sum();
        let rate = ok as f64 / measured;
        let observed = format!("{rate:.0} ok/s ({:.0} ops/s in all)", count as f64 / measured);
        (observed, pass_if(rate >= limit))
    };
    verdict("min_throughput".into(), "min_throughput".into(), format!("≥ {limit} ok/s"), observed, outcome)
}

/// Per op kind, the latencies of the steady-state intervals: after the warm-up, overlapping
/// no fault window.
fn steady_state(history: &History, faults: &[FaultReport]) -> Vec<Histogram<u64>> {
    let len_us = (history.interval.as_micros() as u64).max(1);
    let windows: Vec<(u64, u64)> = faults.iter().map(fault_window).collect();
    let mut out = vec![crate::history::new_histogram(); history.op_names.len()];
    for interval in history.intervals.iter() {
        let start = u64::from(interval.index) * len_us;
        let end = start + len_us;
        if history.in_warmup(interval.index) || windows.iter().any(|&(a, b)| start < b && a < end) {
            continue;
        }
        for (h, stats) in out.iter_mut().zip(&interval.ops) {
            // Same bounds everywhere; an error could only drop samples, never panic.
            let _ = h.add(&stats.latency);
        }
    }
    out
}

/// A fault's window, `[t0, end)`: until the latest of its heal, the client's recovery on
/// its victim's slots and the end of the disruption on the other slots.
fn fault_window(f: &FaultReport) -> (u64, u64) {
    let end = [f.healed_us, f.client_recovered_us, f.other_slots.disruption_windows.last().map(|w| w.end_us)]
        .into_iter()
        .flatten()
        .fold(f.t0_us, u64::max);
    // A fault healed the moment it was injected (a restart) still covers its instant.
    (f.t0_us, end.max(f.t0_us + 1))
}

fn verdict(name: String, slo: String, limit: String, observed: String, outcome: Outcome) -> Verdict {
    Verdict { name, slo, limit, observed, outcome }
}

fn pass_if(ok: bool) -> Outcome {
    if ok { Outcome::Pass } else { Outcome::Fail }
}

fn at_most(limit: Duration) -> String {
    format!("≤ {}", humantime::format_duration(limit))
}

/// `6.82s` from a second up, `2.709ms` below, `0s` for nothing.
fn format_us(us: u64) -> String {
    match us {
        0 => "0s".to_string(),
        1_000_000.. => format!("{:.2}s", us as f64 / 1e6),
        _ => format!("{:.3}ms", us as f64 / 1e3),
    }
}

#[cfg(test)]
mod tests;
