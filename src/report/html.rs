//! `report.html` (one self-contained file: summary, SLO verdicts, faults and their phases,
//! lost writes, the plots inline, the fault timeline) and `summary.md`, built from what a
//! results folder holds: `run.json` for what the run decided, the history for the rest.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::model::{ClusterInfo, RunFile};

use crate::check::failover::FaultReport;
use crate::check::operations::OperationReport;
use crate::history::{EventKind, History};

/// Escape text for HTML.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn secs(us: Option<u64>, from: u64) -> String {
    us.map_or_else(|| "—".to_string(), |u| format!("+{:.2}s", u.saturating_sub(from) as f64 / 1e6))
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// Rows of the per-op table: name, count, errors, ops/s, p50, p99, p99.9, max (ms).
fn op_rows(run: &RunFile) -> Vec<[String; 8]> {
    let all = std::iter::once(("all", &run.totals));
    run.ops
        .iter()
        .map(|(name, o)| (name.as_str(), o))
        .chain(all)
        .map(|(name, o)| {
            let l = &o.latency_us;
            [
                name.to_string(),
                o.count.to_string(),
                o.errors.to_string(),
                o.ops_per_s.to_string(),
                ms(l.p50),
                ms(l.p99),
                ms(l.p99_9),
                ms(l.max),
            ]
        })
        .collect()
}

/// Rows of the fault table.
fn fault_rows(faults: &[FaultReport]) -> Vec<[String; 10]> {
    faults
        .iter()
        .map(|f| {
            let t0 = f.t0_us;
            [
                format!("{} {}", f.action, f.targets.join(",")),
                format!("{:.2}s", t0 as f64 / 1e6),
                secs(f.detected_us, t0),
                match &f.elected_node {
                    Some(n) => format!("{} ({n})", secs(f.elected_us, t0)),
                    None => "no failover".into(),
                },
                secs(f.converged_us, t0),
                if f.table_seen { secs(f.learned_us, t0) } else { "not seen (library)".into() },
                secs(f.client_recovered_us, t0),
                format!(
                    "{:.2}s / {} errors",
                    f.victim_slots.error_span_us() as f64 / 1e6,
                    f.victim_slots.errors()
                ),
                format!(
                    "{:.2}s / {} errors",
                    f.other_slots.error_span_us() as f64 / 1e6,
                    f.other_slots.errors()
                ),
                f.acked_on_victim_slots_before_election.to_string(),
            ]
        })
        .collect()
}

/// What the engine's rules predicted for each fault that has a prediction, numbered as the
/// fault table's rows (from 1).
fn predictions(faults: &[FaultReport]) -> Vec<(usize, String)> {
    faults
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Some((i + 1, super::predicted_line(f.predicted.as_ref()?))))
        .collect()
}

const FAULT_HEAD: [&str; 10] = [
    "fault",
    "t0",
    "detected",
    "elected",
    "converged",
    "client learned",
    "client recovered",
    "victim slots: error window",
    "other slots: error window",
    "acked on victim slots before election",
];
const OPERATION_HEAD: [&str; 9] = [
    "operation",
    "start",
    "duration",
    "result",
    "slots / keys / MB",
    "keys/s, MB/s",
    "MOVED / ASK followed",
    "TRYAGAIN / CLUSTERDOWN",
    "p99 before → during ms",
];

/// Rows of the operations table.
fn operation_rows(ops: &[OperationReport]) -> Vec<[String; 9]> {
    let ms = |us: Option<u64>| us.map_or_else(|| "—".into(), |u| format!("{:.1}", u as f64 / 1000.0));
    ops.iter()
        .map(|o| {
            let class = |c: crate::history::ErrorClass| o.attempt_errors[c];
            [
                format!("[{}] {} {}", o.index, o.action, o.detail),
                format!("{:.2}s", o.started_us as f64 / 1e6),
                format!("{:.2}s", o.duration_us() as f64 / 1e6),
                match &o.error {
                    None => "done".into(),
                    Some(e) if o.open_slots.is_empty() => format!("failed: {e}"),
                    Some(e) => format!("failed: {e} (open slots {:?})", o.open_slots),
                },
                format!("{} / {} / {:.1}", o.slots, o.keys, o.bytes as f64 / 1e6),
                format!("{:.0}, {:.2}", o.keys_per_s, o.bytes_per_s / 1e6),
                format!("{} / {}", o.moved_followed, o.ask_followed),
                format!(
                    "{} / {}",
                    class(crate::history::ErrorClass::TryAgain),
                    class(crate::history::ErrorClass::ClusterDown)
                ),
                format!("{} → {}", ms(o.p99_before_us), ms(o.p99_during_us)),
            ]
        })
        .collect()
}

const OP_HEAD: [&str; 8] = ["op", "count", "errors", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"];

/// The events worth a line in the timeline: faults, failure marks, roles, states, the
/// driver's slot table.
fn timeline(history: &History) -> Vec<(f64, String)> {
    history
        .events
        .iter()
        .filter_map(|e| {
            let text = match &e.kind {
                EventKind::FaultInjected { action, targets, .. } => {
                    format!("injected {action} on {}", targets.join(","))
                }
                EventKind::FaultHealed { action, targets, .. } => {
                    format!("healed {action} on {}", targets.join(","))
                }
                EventKind::FaultError { fault, error } => format!("fault[{fault}] error: {error}"),
                EventKind::DriverError { worker, error } => format!("driver worker {worker} {error}"),
                EventKind::OperationError { index, error } => format!("operation[{index}] {error}"),
                EventKind::OperationStarted { index, action, detail } => {
                    format!("operation[{index}] {action} started: {detail}")
                }
                EventKind::OperationDone { index, action, detail, .. } => {
                    format!("operation[{index}] {action} done: {detail}")
                }
                EventKind::OperationFailed { index, action, error, .. } => {
                    format!("operation[{index}] {action} failed: {error}")
                }
                EventKind::SlotsFixed { detail, .. } => format!("heal: {detail}"),
                EventKind::Flagged { observer, subject, flag } if flag == "fail" => {
                    format!("{observer} marks {subject} failed")
                }
                EventKind::Role { node, role, primary, .. } if e.at_us > 0 => match primary {
                    Some(p) => format!("{node} is a {role} of {p}"),
                    None => format!("{node} is a {role}"),
                },
                EventKind::State { node, state } if e.at_us > 0 => format!("{node}: cluster_state {state}"),
                // MOVED-driven changes come by the hundred during a reshard: events.jsonl
                // has them.
                EventKind::TableChanged { source, owners } if source != "moved" => {
                    let owners: Vec<String> = owners.iter().map(|(n, c)| format!("{n} {c}")).collect();
                    format!("driver's slot table ({source}): {}", owners.join(", "))
                }
                EventKind::Reachable { node, reachable } => {
                    format!("{node} {}", if *reachable { "answers again" } else { "stops answering" })
                }
                _ => return None,
            };
            Some((e.at_us as f64 / 1e6, text))
        })
        .collect()
}

pub(crate) fn html_table<const N: usize>(out: &mut String, head: [&str; N], rows: &[[String; N]]) {
    out.push_str("<table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>\n");
}

pub(crate) fn md_table<const N: usize>(out: &mut String, head: [&str; N], rows: &[[String; N]]) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(N));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

/// SLO verdict rows from `run.json`'s `slo_verdicts` (as the run decided them).
fn verdict_rows(run: &RunFile) -> Vec<[String; 5]> {
    run.slo_verdicts
        .iter()
        .map(|v| [v.name.clone(), v.limit.clone(), v.observed.clone(), v.outcome.to_string(), v.slo.clone()])
        .collect()
}

fn lost_lines(run: &RunFile) -> Vec<String> {
    run.lost_writes
        .iter()
        .map(|l| {
            format!(
                "{}: {} of {} acknowledged adds lost; {} unknown ({} present); {} failed ({} present anyway)",
                l.op,
                l.lost(),
                l.acknowledged,
                l.unknown,
                l.unknown_present,
                l.failed,
                l.failed_present.len(),
            )
        })
        .collect()
}

/// Write `report.html` and `summary.md` into `dir`; `plots` are the plot files already
/// written there (SVGs are inlined in the HTML, PNGs linked from the Markdown).
///
/// # Errors
/// The I/O error.
pub fn write_reports(
    dir: &Path,
    run: &RunFile,
    history: &History,
    faults: &[FaultReport],
    operations: &[OperationReport],
    plots: &[PathBuf],
) -> std::io::Result<()> {
    let title = format!("slotstorm: {}", run.workload);
    let cluster = match &run.cluster {
        ClusterInfo::Embedded { masters, replicas, node_timeout_ms, .. } => {
            format!("embedded {masters}×{replicas} node timeout {node_timeout_ms} ms")
        }
        ClusterInfo::External { seeds } => format!("external ({})", seeds.join(", ")),
    };
    let about = format!(
        "started {} · {:.1}s (warm-up {:.1}s) · cluster {cluster} · {} · client {}{}",
        run.started_at,
        run.elapsed_s,
        run.warmup_s,
        run.redis_version,
        run.client,
        run.interrupted.as_deref().map_or(String::new(), |s| format!(" · {s}")),
    );
    let ops = op_rows(run);
    let fault_rows = fault_rows(faults);
    let operation_rows = operation_rows(operations);
    let verdicts = verdict_rows(run);
    let lost = lost_lines(run);
    let events = timeline(history);
    let run_errors = crate::check::run_errors(&history.events);
    let schedule_warning = run.schedule.warning.clone();
    let schedule_line = Some(super::schedule_line(&run.schedule));

    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1300px}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}\
         td:first-child,th:first-child{{text-align:left}}.pass{{color:#070}}.fail{{color:#b00;font-weight:bold}}\
         .plot svg{{max-width:100%;height:auto}}</style></head><body>\n<h1>{}</h1><p>{}</p>\n",
        esc(&title),
        esc(&title),
        esc(&about)
    );
    if !run_errors.is_empty() {
        h.push_str("<h2 class=\"fail\">Run errors: this run did not test what it was asked to</h2><ul>");
        for l in &run_errors {
            let _ = write!(h, "<li>{}</li>", esc(l));
        }
        h.push_str("</ul>");
    }
    if let Some(w) = &schedule_warning {
        let _ = write!(h, "<p class=\"fail\">Warning: {}</p>", esc(w));
    }
    if let Some(l) = &schedule_line {
        let _ = write!(h, "<p>{}</p>", esc(l));
    }
    if !verdicts.is_empty() {
        h.push_str("<h2>SLOs</h2>");
        html_table(&mut h, ["SLO", "limit", "observed", "verdict", "kind"], &verdicts);
    }
    h.push_str("<h2>Ops</h2>");
    html_table(&mut h, OP_HEAD, &ops);
    if !fault_rows.is_empty() {
        h.push_str("<h2>Faults</h2>");
        html_table(&mut h, FAULT_HEAD, &fault_rows);
        for (i, line) in predictions(faults) {
            h.push_str(&format!("<p>fault {i}, predicted: {}</p>", esc(&line)));
        }
    }
    if !operation_rows.is_empty() {
        h.push_str("<h2>Operations</h2>");
        html_table(&mut h, OPERATION_HEAD, &operation_rows);
    }
    if !lost.is_empty() {
        h.push_str("<h2>Lost writes</h2><ul>");
        for l in &lost {
            let _ = write!(h, "<li>{}</li>", esc(l));
        }
        h.push_str("</ul>");
    }
    h.push_str("<h2>Plots</h2>");
    for p in plots.iter().filter(|p| p.extension().is_some_and(|e| e == "svg")) {
        let svg = std::fs::read_to_string(p)?;
        let svg = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
        let _ = writeln!(h, "<div class=\"plot\">{svg}</div>");
    }
    if !events.is_empty() {
        h.push_str("<h2>Timeline</h2><table><tr><th>t</th><th>event</th></tr>");
        for (t, e) in &events {
            let _ = write!(h, "<tr><td>{t:.3}s</td><td style=\"text-align:left\">{}</td></tr>", esc(e));
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    // Verdict cells read better coloured.
    let h = h
        .replace("<td>pass</td>", "<td class=\"pass\">pass</td>")
        .replace("<td>fail</td>", "<td class=\"fail\">fail</td>");
    std::fs::write(dir.join("report.html"), h)?;

    let mut m = String::new();
    let _ = writeln!(m, "# {title}\n\n{about}\n");
    if !run_errors.is_empty() {
        m.push_str("## Run errors: this run did not test what it was asked to\n\n");
        for l in &run_errors {
            let _ = writeln!(m, "- {l}");
        }
        m.push('\n');
    }
    if let Some(w) = &schedule_warning {
        let _ = writeln!(m, "**Warning:** {w}\n");
    }
    if let Some(l) = &schedule_line {
        let _ = writeln!(m, "{l}\n");
    }
    if !verdicts.is_empty() {
        m.push_str("## SLOs\n\n");
        md_table(&mut m, ["SLO", "limit", "observed", "verdict", "kind"], &verdicts);
    }
    m.push_str("## Ops\n\n");
    md_table(&mut m, OP_HEAD, &ops);
    if !fault_rows.is_empty() {
        m.push_str("## Faults\n\n");
        md_table(&mut m, FAULT_HEAD, &fault_rows);
        for (i, line) in predictions(faults) {
            m.push_str(&format!("\nFault {i}, predicted: {line}\n"));
        }
    }
    if !operation_rows.is_empty() {
        m.push_str("## Operations\n\n");
        md_table(&mut m, OPERATION_HEAD, &operation_rows);
    }
    if !lost.is_empty() {
        m.push_str("## Lost writes\n\n");
        for l in &lost {
            let _ = writeln!(m, "- {l}");
        }
        m.push('\n');
    }
    let pngs: Vec<&PathBuf> = plots.iter().filter(|p| p.extension().is_some_and(|e| e == "png")).collect();
    if !pngs.is_empty() {
        m.push_str("## Plots\n\n");
        for p in pngs {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let _ = writeln!(m, "![{name}]({name})");
        }
    }
    std::fs::write(dir.join("summary.md"), m)
}
