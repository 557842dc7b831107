//! The comparative report of a `compare-<time>` folder: `figures.json` (every run's
//! figures, by cell), two box-and-strip figures (`phases`: detection, election, convergence,
//! client recovery; `impact`: error windows, p99 during faults, lost writes,
//! over-admissions), `summary.md` with one row per cell, and one self-contained
//! `report.html`. Built from `compare.json` and the runs' folders alone, by `compare` at its
//! end and by `slotstorm report`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::figures::{self, FaultFigures, RunFigures};
use super::{Manifest, RunStatus};
use crate::report::html::{esc, html_table, md_table};
use crate::report::{BoxStats, Panel, PlotError};

/// Why the comparative report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `compare.json` is missing or unreadable.
    #[error("{0}")]
    Manifest(String),
    /// A file could not be written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A plot failed.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// One cell's runs, reduced.
#[derive(Debug, Clone, Serialize)]
pub struct CellFigures {
    /// The cell's label.
    pub label: String,
    /// Its short label.
    pub short: String,
    /// The figures of each run that left a readable folder, with the folder.
    pub runs: Vec<(String, RunFigures)>,
}

impl CellFigures {
    /// Every fault of every run.
    pub fn faults(&self) -> impl Iterator<Item = &FaultFigures> {
        self.runs.iter().flat_map(|(_, r)| &r.faults)
    }

    /// One phase (or other per-fault figure) over every fault of every run, measured ones only.
    pub fn per_fault(&self, pick: impl Fn(&FaultFigures) -> Option<f64>) -> Vec<f64> {
        self.faults().filter_map(pick).collect()
    }

    /// One per-run figure over the runs that measured it.
    pub fn per_run(&self, pick: impl Fn(&RunFigures) -> Option<f64>) -> Vec<f64> {
        self.runs.iter().filter_map(|(_, r)| pick(r)).collect()
    }
}

/// What [`build`] made.
#[derive(Debug, Clone)]
pub struct Built {
    /// Each cell, in matrix order.
    pub cells: Vec<CellFigures>,
    /// Runs left out of the figures (interrupted, failed, or a folder that cannot be read),
    /// with why.
    pub unreadable: Vec<(String, String)>,
    /// The files written.
    pub written: Vec<PathBuf>,
}

/// Build the comparative report of the comparison folder `dir`.
///
/// # Errors
/// [`ReportError`] naming the file concerned.
pub fn build(dir: &Path) -> Result<Built, ReportError> {
    let manifest = Manifest::load(dir).map_err(ReportError::Manifest)?;
    let mut cells = Vec::new();
    let mut unreadable = Vec::new();
    for cell in &manifest.cells {
        let mut runs = Vec::new();
        for run in &cell.runs {
            // A run cut short measured part of what the others did: pooling it would skew
            // the medians.
            if !matches!(run.status, RunStatus::Ok | RunStatus::SloViolated) {
                unreadable.push((run.dir.clone(), format!("left out: {}", status(run.status))));
                continue;
            }
            match read_run(&dir.join(&run.dir)) {
                Ok(f) => runs.push((run.dir.clone(), f)),
                Err(why) => unreadable.push((run.dir.clone(), why)),
            }
        }
        cells.push(CellFigures { label: cell.label.clone(), short: cell.short.clone(), runs });
    }
    let io = |path: PathBuf| move |source| ReportError::Io { path, source };
    let figures_path = dir.join("figures.json");
    let text = serde_json::to_string_pretty(&cells).expect("figures serialise");
    std::fs::write(&figures_path, text).map_err(io(figures_path.clone()))?;
    let mut written = vec![figures_path];
    let categories: Vec<String> = cells.iter().map(|c| c.short.clone()).collect();
    let title = |what: &str| format!("{what}: {} under {}", manifest.workload, chaos_name(&manifest));
    written.extend(crate::report::write_distributions(
        dir,
        "phases",
        &title("Failover phases"),
        &manifest.axes,
        &categories,
        &phase_panels(&cells),
    )?);
    written.extend(crate::report::write_distributions(
        dir,
        "impact",
        &title("What the client saw"),
        &manifest.axes,
        &categories,
        &impact_panels(&cells),
    )?);
    let rows = rows(&cells);
    let md = markdown(&manifest, &rows, &unreadable);
    let md_path = dir.join("summary.md");
    std::fs::write(&md_path, md).map_err(io(md_path.clone()))?;
    let html_path = dir.join("report.html");
    let html = html(dir, &manifest, &rows, &written).map_err(io(html_path.clone()))?;
    std::fs::write(&html_path, html).map_err(io(html_path.clone()))?;
    written.push(md_path);
    written.push(html_path);
    Ok(Built { cells, unreadable, written })
}

/// The figures of the run folder `dir`, or why there are none.
fn read_run(dir: &Path) -> Result<RunFigures, String> {
    let run = crate::report::model::RunFile::read(&dir.join("run.json")).map_err(|e| e.to_string())?;
    if !run.finished {
        return Err("the run did not finish (killed or crashed): its figures are not comparable".into());
    }
    let history = crate::history::store::load(dir)
        .map_err(|e| format!("{}: {e}", crate::history::store::path_in(dir).display()))?
        .history;
    let faults = crate::check::failover::fault_reports(&history, &Default::default());
    Ok(figures::figures(&history, &faults, figures::Recorded::of(&run)))
}

fn chaos_name(m: &Manifest) -> String {
    Path::new(&m.chaos_path)
        .file_name()
        .map_or_else(|| "its faults".into(), |n| n.to_string_lossy().into_owned())
}

fn phase_panels(cells: &[CellFigures]) -> Vec<Panel> {
    let panel = |title: &str, pick: fn(&FaultFigures) -> Option<f64>| Panel {
        title: title.into(),
        unit: "seconds after t0".into(),
        values: cells.iter().map(|c| c.per_fault(pick)).collect(),
    };
    vec![
        panel("detection (first node marks it failed)", |f| f.detection_s),
        panel("election (a replica is primary)", |f| f.election_s),
        panel("convergence (all nodes agree, state ok)", |f| f.convergence_s),
        panel("client recovered (failover duration)", |f| f.recovery_s),
    ]
}

fn impact_panels(cells: &[CellFigures]) -> Vec<Panel> {
    vec![
        Panel {
            title: "error window on the victim's slots".into(),
            unit: "seconds".into(),
            values: cells.iter().map(|c| c.per_fault(|f| Some(f.error_window_s))).collect(),
        },
        Panel {
            title: "p99 of ops during faults".into(),
            unit: "ms (failed ops included)".into(),
            values: cells.iter().map(|c| c.per_run(|r| r.p99_during_faults_ms)).collect(),
        },
        Panel {
            title: "acknowledged writes lost".into(),
            unit: "writes per run".into(),
            values: cells.iter().map(|c| c.per_run(|r| r.lost_writes.map(|n| n as f64))).collect(),
        },
        Panel {
            title: "rate-limit over-admissions".into(),
            unit: "windows per run".into(),
            values: cells.iter().map(|c| c.per_run(|r| r.over_admissions.map(|n| n as f64))).collect(),
        },
    ]
}

const HEAD: [&str; 10] = [
    "setting",
    "runs",
    "failed over",
    "detection s",
    "election s",
    "convergence s",
    "client recovered s",
    "victim error window s",
    "p99 during faults ms",
    "lost writes",
];

/// `median (min–max)`, or `—` without values.
fn spread(values: &[f64]) -> String {
    match BoxStats::of(values) {
        None => "—".into(),
        Some(b) if b.min == b.max => format!("{:.2}", b.median),
        Some(b) => format!("{:.2} ({:.2}–{:.2})", b.median, b.min, b.max),
    }
}

fn rows(cells: &[CellFigures]) -> Vec<[String; 10]> {
    cells
        .iter()
        .map(|c| {
            let faults = c.faults().count();
            let failed_over = c.faults().filter(|f| f.election_s.is_some()).count();
            let lost: Vec<u64> = c.runs.iter().filter_map(|(_, r)| r.lost_writes).collect();
            [
                c.label.clone(),
                c.runs.len().to_string(),
                format!("{failed_over} of {faults}"),
                spread(&c.per_fault(|f| f.detection_s)),
                spread(&c.per_fault(|f| f.election_s)),
                spread(&c.per_fault(|f| f.convergence_s)),
                spread(&c.per_fault(|f| f.recovery_s)),
                spread(&c.per_fault(|f| Some(f.error_window_s))),
                spread(&c.per_run(|r| r.p99_during_faults_ms)),
                if lost.is_empty() {
                    "not checked".into()
                } else {
                    format!(
                        "{} in all ({})",
                        lost.iter().sum::<u64>(),
                        lost.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                    )
                },
            ]
        })
        .collect()
}

fn about(m: &Manifest) -> String {
    let runs: usize = m.cells.iter().map(|c| c.runs.len()).sum();
    format!(
        "workload {} ({}) · chaos {} · {} cells × {} repeats ({runs} runs made) · started {}{}",
        m.workload,
        m.workload_path,
        m.chaos_path,
        m.cells.len(),
        m.repeat,
        m.started_at,
        m.interrupted.as_deref().map_or(String::new(), |s| format!(" · {s}")),
    )
}

const NOTE: &str = "Phases are seconds after each fault's t0 (the injection returned); each value is median \
(min–max) over every fault of every run of the setting. The failover duration is \"client recovered\".";

fn markdown(m: &Manifest, rows: &[[String; 10]], unreadable: &[(String, String)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# slotstorm compare: {}\n\n{}\n\n{NOTE}\n", m.workload, about(m));
    md_table(&mut s, HEAD, rows);
    s.push_str("![phases](phases.png)\n\n![impact](impact.png)\n\n## Runs\n\n");
    for c in &m.cells {
        for r in &c.runs {
            let _ =
                writeln!(s, "- [{}]({}/summary.md): {}{}", r.dir, r.dir, status(r.status), error(&r.error));
        }
    }
    for (dir, why) in unreadable {
        let _ = writeln!(s, "- {dir}: not in the figures ({why})");
    }
    s
}

fn status(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Ok => "ok",
        RunStatus::SloViolated => "finished, an SLO violated",
        RunStatus::Interrupted => "interrupted",
        RunStatus::Failed => "failed",
    }
}

fn error(e: &Option<String>) -> String {
    e.as_deref().map_or(String::new(), |e| format!(": {e}"))
}

fn html(dir: &Path, m: &Manifest, rows: &[[String; 10]], written: &[PathBuf]) -> std::io::Result<String> {
    let title = format!("slotstorm compare: {}", m.workload);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1300px}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}\
         td:first-child,th:first-child{{text-align:left}}.plot svg{{max-width:100%;height:auto}}\
         </style></head><body>\n<h1>{}</h1><p>{}</p><p>{}</p>\n",
        esc(&title),
        esc(&title),
        esc(&about(m)),
        esc(NOTE)
    );
    html_table(&mut h, HEAD, rows);
    for p in written.iter().filter(|p| p.extension().is_some_and(|e| e == "svg")) {
        let svg = std::fs::read_to_string(p)?;
        let svg = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
        let _ = writeln!(h, "<div class=\"plot\">{svg}</div>");
    }
    h.push_str("<h2>Runs</h2><ul>");
    for c in &m.cells {
        for r in &c.runs {
            let link = if dir.join(&r.dir).join("report.html").is_file() {
                format!("<a href=\"{0}/report.html\">{0}</a>", esc(&r.dir))
            } else {
                esc(&r.dir)
            };
            let _ = write!(h, "<li>{link}: {}{}</li>", status(r.status), esc(&error(&r.error)));
        }
    }
    h.push_str("</ul></body></html>\n");
    Ok(h)
}
