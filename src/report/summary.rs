//! The table printed at the end of a run.

use std::fmt::Write;

use crate::check::failover::{FaultReport, Impact};
use crate::check::lost_writes::LostWrites;
use crate::check::rate_limit::OverAdmission;
use crate::history::{ErrorCounts, History, OpStats};

/// Per op: count, ok, errors, rate and latency percentiles (warm-up excluded), then the
/// errors by class.
pub fn summary_table(history: &History) -> String {
    let totals = history.totals();
    let measured = history.elapsed.saturating_sub(history.warmup).as_secs_f64().max(1e-9);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "op", "count", "errors", "err%", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    let mut all = OpStats::default();
    for (name, s) in history.op_names.iter().zip(&totals) {
        row(&mut out, name, s, measured);
        all.merge(s);
    }
    if totals.len() > 1 {
        row(&mut out, "all", &all, measured);
    }
    let classes: Vec<String> =
        all.errors_by_class().nonzero().map(|(c, n)| format!("{n} {}", c.name())).collect();
    let hidden: u64 = all.attempt_errors.total().saturating_sub(all.errors());
    if !classes.is_empty() {
        let _ = writeln!(out, "errors: {}", classes.join(", "));
    }
    if hidden > 0 {
        let _ = writeln!(out, "attempt errors hidden by retries or handled by the driver: {hidden}");
    }
    if all.moved + all.ask > 0 {
        let _ = writeln!(out, "redirections followed: {} MOVED, {} ASK", all.moved, all.ask);
    }
    out
}

fn row(out: &mut String, name: &str, s: &OpStats, measured_s: f64) {
    let ms = |q: f64| s.latency.value_at_quantile(q) as f64 / 1000.0;
    let count = s.count();
    let err_pct = if count == 0 { 0.0 } else { 100.0 * s.errors() as f64 / count as f64 };
    let _ = writeln!(
        out,
        "{:<18} {:>9} {:>9} {:>7.2} {:>9.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        name,
        count,
        s.errors(),
        err_pct,
        count as f64 / measured_s,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        s.latency.max() as f64 / 1000.0
    );
}

/// A prediction in one line: the ranges, then where the measurement left them.
pub fn predicted_line(p: &crate::check::predict::Predicted) -> String {
    let range = |[lo, hi]: [f64; 2]| format!("{lo:.2}–{hi:.2}s");
    let mut line = match p.detected_s {
        Some(d) => format!("detected {} after t0, elected {} after that", range(d), range(p.election_s)),
        None => format!("handed over {} after t0", range(p.election_s)),
    };
    line.push_str(&format!(" ({})", p.rule));
    if let Some(note) = &p.note {
        line.push_str(&format!("; {note}"));
    }
    line
}

/// One line per fault, e.g. `kill redis-1 at 20.0s: detected +1.12s, elected +2.03s,
/// converged +2.11s, client learned +2.06s, client recovered +2.35s; error window 2.31s (4180 errors: 3012
/// refused, 1168 clusterdown)`, then what the other slots saw, then what the engine's rules
/// predicted when known.
pub fn fault_lines(faults: &[FaultReport]) -> String {
    let mut out = String::new();
    for f in faults {
        let rel = |at: Option<u64>| at.map(|a| format!("+{:.2}s", a.saturating_sub(f.t0_us) as f64 / 1e6));
        let mut phases = Vec::new();
        if f.victims.is_empty() {
            phases.push("no primary among the targets".to_string());
        } else {
            phases.push(format!("detected {}", rel(f.detected_us).unwrap_or_else(|| "never".into())));
            match rel(f.elected_us) {
                Some(e) => {
                    phases.push(format!("elected {e} ({})", f.elected_node.as_deref().unwrap_or("?")));
                    phases.push(format!(
                        "converged {}",
                        rel(f.converged_us).unwrap_or_else(|| "not by the next fault".into())
                    ));
                    if f.table_seen {
                        phases.push(format!(
                            "client learned {}",
                            rel(f.learned_us).unwrap_or_else(|| "not by the next fault".into())
                        ));
                    }
                }
                None => phases.push("no failover (no replica promoted)".to_string()),
            }
        }
        phases.push(match rel(f.client_recovered_us) {
            Some(r) => format!("client recovered {r}"),
            None => "clients saw no disruption".to_string(),
        });
        if let Some(b) = rel(f.backlog_drained_us) {
            phases.push(format!("backlog drained {b} ({} sends delayed)", f.delayed_sends));
        }
        let _ = writeln!(
            out,
            "{} {} at {:.1}s: {}; {}",
            f.action,
            f.targets.join(","),
            f.t0_us as f64 / 1e6,
            phases.join(", "),
            impact("victim slots", &f.victim_slots)
        );
        let _ = writeln!(out, "    other slots: {}", impact("", &f.other_slots).trim_start());
        if let Some(p) = &f.predicted {
            let _ = writeln!(out, "    predicted: {}", predicted_line(p));
        }
    }
    out
}

/// One line per topology operation: what it did and how fast, then what the client saw.
pub fn operation_lines(ops: &[crate::check::operations::OperationReport]) -> String {
    let mut out = String::new();
    for o in ops {
        let secs = o.duration_us() as f64 / 1e6;
        let result = match &o.error {
            None => format!("done in {secs:.2}s"),
            Some(e) if o.open_slots.is_empty() => format!("FAILED after {secs:.2}s: {e}"),
            Some(e) => format!(
                "FAILED after {secs:.2}s: {e}; left open: slots {}",
                o.open_slots.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
            ),
        };
        let moved = match (o.slots, o.keys) {
            (0, 0) => String::new(),
            (slots, 0) => format!("; {slots} slots"),
            (slots, keys) => format!(
                "; {slots} slots, {keys} keys, {:.1} MB ({:.0} keys/s, {:.2} MB/s)",
                o.bytes as f64 / 1e6,
                o.keys_per_s,
                o.bytes_per_s / 1e6
            ),
        };
        let _ = writeln!(
            out,
            "operation[{}] {} at {:.1}s ({}): {result}{moved}",
            o.index,
            o.action,
            o.started_us as f64 / 1e6,
            o.detail
        );
        let ms = |us: Option<u64>| us.map_or_else(|| "—".into(), |u| format!("{:.1} ms", u as f64 / 1000.0));
        let class = |c: crate::history::ErrorClass| o.attempt_errors[c];
        let errors = if o.error_windows.is_empty() {
            "no errors".to_string()
        } else {
            format!("error window {:.2}s", o.error_span_us() as f64 / 1e6)
        };
        let _ = writeln!(
            out,
            "    client: {} MOVED, {} ASK followed; {} TRYAGAIN, {} CLUSTERDOWN attempts; p99 {} before, {} during; {errors}",
            o.moved_followed,
            o.ask_followed,
            class(crate::history::ErrorClass::TryAgain),
            class(crate::history::ErrorClass::ClusterDown),
            ms(o.p99_before_us),
            ms(o.p99_during_us),
        );
    }
    out
}

fn impact(label: &str, i: &Impact) -> String {
    let errors = if i.error_windows.is_empty() {
        "no errors".to_string()
    } else {
        let mut all =
            crate::check::windows::Window { start_us: 0, end_us: 0, ops: 0, errors: ErrorCounts::default() };
        for w in &i.error_windows {
            all.errors.add(&w.errors);
        }
        format!("error window {:.2}s ({})", i.error_span_us() as f64 / 1e6, all.describe_errors())
    };
    let disruption = if i.disruption_windows.is_empty() {
        String::new()
    } else {
        format!(", disruption {:.2}s", i.disruption_span_us() as f64 / 1e6)
    };
    format!("{label} {errors}{disruption}")
}

/// One line per set-full op: adds, acknowledged, lost (and during which fault), anomalies.
pub fn lost_write_lines(checks: &[LostWrites], faults: &[FaultReport]) -> String {
    let mut out = String::new();
    for c in checks {
        let during: Vec<String> = c
            .lost_by_fault
            .iter()
            .map(|&crate::check::lost_writes::FaultLoss { fault, lost: n }| {
                let f = &faults[fault];
                format!("{n} during {} {} at {:.1}s", f.action, f.targets.join(","), f.t0_us as f64 / 1e6)
            })
            .collect();
        let during = if during.is_empty() { String::new() } else { format!(" ({})", during.join("; ")) };
        let _ = writeln!(
            out,
            "lost writes, {}: {} of {} acknowledged adds lost{during}; {} unknown ({} present); {} failed{}{}",
            c.op,
            c.lost(),
            c.acknowledged,
            c.unknown,
            c.unknown_present,
            c.failed,
            if c.failed_present.is_empty() {
                String::new()
            } else {
                format!(", {} of them present anyway", c.failed_present.len())
            },
            if c.unjudged > 0 {
                format!("; {} unjudged (unreadable keys)", c.unjudged)
            } else {
                String::new()
            },
        );
    }
    out
}

/// One line per rate-limiter op: admissions, and windows over the limit.
pub fn over_admission_lines(checks: &[OverAdmission]) -> String {
    let mut out = String::new();
    for c in checks {
        let worst = match (c.worst_key, c.worst_at_us) {
            (Some(k), Some(at)) => {
                format!(", worst {} over the limit for id {k} at {:.1}s", c.worst_excess, at as f64 / 1e6)
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "rate limit, {}: {} of {} calls admitted (limit {} per {}s); {} windows over the limit{worst}",
            c.op, c.admitted, c.calls, c.limit, c.window_s, c.over_windows
        );
    }
    out
}

/// `Schedule: open loop at 1000 ops/s, at most 4125 in flight (sized); send lag p99 0.8 ms,
/// max 3.1 ms; no op waited for an in-flight slot.`
pub fn schedule_line(s: &crate::check::schedule::ScheduleReport) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    let limit = crate::spec::InFlight { limit: s.in_flight_limit, source: s.limit_source }.describe();
    let pacing = match s.rate {
        Some(rate) => format!("open loop at {rate} ops/s"),
        None => "closed loop".to_string(),
    };
    let queued = match s.queued_ops {
        0 => "no op waited for an in-flight slot".to_string(),
        n => format!("{n} ops waited for an in-flight slot"),
    };
    format!(
        "Schedule: {pacing}, {limit}; send lag p99 {:.1} ms, max {:.1} ms; {queued}.",
        ms(s.send_lag_p99_us),
        ms(s.send_lag_max_us)
    )
}
