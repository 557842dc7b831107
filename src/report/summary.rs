//! The table printed at the end of a run.

use std::fmt::Write;

use crate::history::{ErrorClass, History, OpStats};

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
    let classes: Vec<String> = ErrorClass::ALL
        .iter()
        .zip(all.errors_by_class())
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| format!("{n} {}", c.name()))
        .collect();
    let hidden: u64 = all.attempt_errors.iter().sum::<u64>().saturating_sub(all.errors());
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
