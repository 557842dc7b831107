//! What the time plots (latency, throughput) show behind and over their data: the warm-up,
//! each fault's window (from `FaultInjected` to the matching `FaultHealed`) and the failover
//! phases the fault reports measured, as vertical marks.

use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{Chart, DrawResult, Entry, Swatch, text};
use crate::check::failover::FaultReport;
use crate::history::{EventKind, History};

/// Shading of a fault window.
pub(super) const FAULT_FILL: RGBAColor = RGBAColor(220, 40, 40, 0.13);
/// A fault without a window (a restart): a line at `t0`; also fault label text.
const FAULT_LINE: RGBColor = RGBColor(190, 30, 30);
/// Shading of a topology operation (started → done or failed), and its label text.
pub(super) const OPERATION_FILL: RGBAColor = RGBAColor(40, 90, 220, 0.12);
const OPERATION_LINE: RGBColor = RGBColor(30, 70, 190);
/// Shading of the warm-up.
const WARMUP_FILL: RGBAColor = RGBAColor(110, 110, 110, 0.16);

/// A failover phase, named by the moment that ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// A node marked the victim failed.
    Detected,
    /// A replica reported itself primary.
    Elected,
    /// Every other reachable node agreed.
    Converged,
    /// The client's disruption on the victim's slots ended.
    ClientRecovered,
}

impl Phase {
    /// Every phase, in order.
    pub(super) const ALL: [Phase; 4] =
        [Phase::Detected, Phase::Elected, Phase::Converged, Phase::ClientRecovered];

    /// The moment's name, as marks label it.
    pub(super) fn moment(self) -> &'static str {
        match self {
            Phase::Detected => "detected",
            Phase::Elected => "elected",
            Phase::Converged => "converged",
            Phase::ClientRecovered => "client recovered",
        }
    }

    /// The phase's name, as the failover bars label it (the stretch that ends at
    /// [`Phase::moment`]).
    pub(super) fn stretch(self) -> &'static str {
        match self {
            Phase::Detected => "detection",
            Phase::Elected => "election",
            Phase::Converged => "convergence",
            Phase::ClientRecovered => "client recovery",
        }
    }

    /// Its colour, shared by the marks here and the failover bars.
    pub(super) fn color(self) -> RGBColor {
        match self {
            Phase::Detected => RGBColor(230, 120, 0),
            Phase::Elected => RGBColor(120, 60, 180),
            Phase::Converged => RGBColor(0, 140, 150),
            Phase::ClientRecovered => RGBColor(40, 150, 50),
        }
    }

    /// When it ended by `report`, µs since the run began.
    pub(super) fn at_us(self, report: &FaultReport) -> Option<u64> {
        match self {
            Phase::Detected => report.detected_us,
            Phase::Elected => report.elected_us,
            Phase::Converged => report.converged_us,
            Phase::ClientRecovered => report.client_recovered_us,
        }
    }
}

/// One fault on the time axis.
pub(super) struct FaultSpan {
    /// `kill redis-3`.
    label: String,
    /// Injected, s of run time.
    start_s: f64,
    /// Healed (the run's end when it never was; `start_s` for a restart), s.
    end_s: f64,
    /// The phases measured, s.
    phases: Vec<(Phase, f64)>,
}

/// One topology operation on the time axis.
struct OperationSpan {
    /// `reshard`, `add-node`, with `FAILED` when it failed.
    label: String,
    /// Started, s of run time.
    start_s: f64,
    /// Done or failed (the run's end when neither was seen), s.
    end_s: f64,
}

/// The warm-up, the faults and the topology operations of a run.
pub(super) struct Timeline {
    warmup_s: f64,
    faults: Vec<FaultSpan>,
    operations: Vec<OperationSpan>,
}

impl Timeline {
    /// From the history's fault events, with the phases of the matching `reports`.
    pub(super) fn new(history: &History, reports: &[FaultReport]) -> Timeline {
        let secs = |us: u64| us as f64 / 1e6;
        let end_s = history.elapsed.as_secs_f64();
        let mut faults = Vec::new();
        let mut seen = Vec::new();
        for e in &history.events {
            let EventKind::FaultInjected { fault, repeat, action, targets, .. } = &e.kind else {
                continue;
            };
            let healed = history.events.iter().find_map(|h| match &h.kind {
                EventKind::FaultHealed { fault: f, repeat: r, .. }
                    if f == fault && r == repeat && h.at_us >= e.at_us =>
                {
                    Some(h.at_us)
                }
                _ => None,
            });
            let end = match healed {
                Some(at) => secs(at),
                // A restart is over once injected; anything else lasted to the end.
                None if action == "restart" => secs(e.at_us),
                None => end_s.max(secs(e.at_us)),
            };
            let report = reports.iter().find(|r| r.fault == *fault && r.repeat == *repeat);
            seen.push((*fault, *repeat));
            faults.push(FaultSpan {
                label: short_label(action, targets),
                start_s: secs(e.at_us),
                end_s: end,
                phases: report.map(phases).unwrap_or_default(),
            });
        }
        // Reports whose injection is not among the events (a history cut short): their own
        // times.
        for r in reports.iter().filter(|r| !seen.contains(&(r.fault, r.repeat))) {
            faults.push(FaultSpan {
                label: short_label(&r.action, &r.targets),
                start_s: secs(r.t0_us),
                end_s: r.healed_us.map_or(secs(r.t0_us), secs),
                phases: phases(r),
            });
        }
        let operations = history
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::OperationStarted { index, action, .. } => Some((e.at_us, *index, action)),
                _ => None,
            })
            .map(|(at, index, action)| {
                let end = history.events.iter().find_map(|d| match &d.kind {
                    EventKind::OperationDone { index: i, .. } if *i == index && d.at_us >= at => {
                        Some((d.at_us, false))
                    }
                    EventKind::OperationFailed { index: i, .. } if *i == index && d.at_us >= at => {
                        Some((d.at_us, true))
                    }
                    _ => None,
                });
                let failed = end.is_some_and(|(_, failed)| failed);
                OperationSpan {
                    label: if failed { format!("{action} FAILED") } else { action.clone() },
                    start_s: secs(at),
                    end_s: end.map_or(end_s.max(secs(at)), |(at, _)| secs(at)),
                }
            })
            .collect();
        Timeline { warmup_s: history.warmup.as_secs_f64(), faults, operations }
    }

    /// The latest moment any fault shows, s.
    pub(super) fn last_mark_s(&self) -> f64 {
        self.faults
            .iter()
            .flat_map(|f| std::iter::once(f.end_s).chain(f.phases.iter().map(|p| p.1)))
            .chain(self.operations.iter().map(|o| o.end_s))
            .fold(0.0, f64::max)
    }

    /// Shade the warm-up and the fault windows over the y range `lo..hi` (a fault without a
    /// window is a line at its `t0`). Drawn first, under the data.
    pub(super) fn draw_shading<DB, Y>(
        &self,
        chart: &mut Chart<'_, DB, RangedCoordf64, Y>,
        (lo, hi): (f64, f64),
    ) -> DrawResult<DB>
    where
        DB: DrawingBackend,
        Y: Ranged<ValueType = f64>,
    {
        if self.warmup_s > 0.0 {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(0.0, lo), (self.warmup_s, hi)],
                WARMUP_FILL.filled(),
            )))?;
        }
        for o in &self.operations {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(o.start_s, lo), (o.end_s.max(o.start_s + 0.05), hi)],
                OPERATION_FILL.filled(),
            )))?;
        }
        for f in &self.faults {
            if f.end_s > f.start_s {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(f.start_s, lo), (f.end_s, hi)],
                    FAULT_FILL.filled(),
                )))?;
            } else {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(f.start_s, lo), (f.start_s, hi)],
                    FAULT_LINE.stroke_width(2),
                )))?;
            }
        }
        Ok(())
    }

    /// Draw each fault's phase moments as dashed vertical lines over `lo..hi`, then, when
    /// `labels`, the names of the warm-up, the faults and the moments at the top (the
    /// moments staggered under their fault's name, so equal moments stay legible). Drawn
    /// last, over the data.
    pub(super) fn draw_marks<DB, Y>(
        &self,
        chart: &mut Chart<'_, DB, RangedCoordf64, Y>,
        (lo, hi): (f64, f64),
        labels: bool,
    ) -> DrawResult<DB>
    where
        DB: DrawingBackend,
        Y: Ranged<ValueType = f64>,
    {
        for f in &self.faults {
            for (phase, at) in &f.phases {
                chart.draw_series(std::iter::once(DashedPathElement::new(
                    vec![(*at, lo), (*at, hi)],
                    6,
                    4,
                    phase.color().stroke_width(2),
                )))?;
            }
        }
        if !labels {
            return Ok(());
        }
        if self.warmup_s > 0.0 {
            boxed_label(chart, (0.0, hi), (4, 4), "warm-up", 13, RGBColor(80, 80, 80))?;
        }
        // Operation names sit at the bottom, out of the way of the fault and phase labels.
        for o in &self.operations {
            boxed_label(chart, (o.start_s, lo), (4, -20), &o.label, 13, OPERATION_LINE)?;
        }
        for f in &self.faults {
            boxed_label(chart, (f.start_s, hi), (4, 4), &f.label, 13, FAULT_LINE)?;
            for (row, (phase, at)) in f.phases.iter().enumerate() {
                let dy = 22 + 16 * row as i32;
                boxed_label(chart, (*at, hi), (4, dy), phase.moment(), 12, phase.color())?;
            }
        }
        Ok(())
    }

    /// Legend entries for what the run has: the warm-up, faults, each phase seen.
    pub(super) fn legend(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        if self.warmup_s > 0.0 || !self.faults.is_empty() || !self.operations.is_empty() {
            out.push(Entry::new("marks", Swatch::Heading));
        }
        if self.warmup_s > 0.0 {
            out.push(Entry::new("warm-up", Swatch::Area(WARMUP_FILL)));
        }
        if !self.faults.is_empty() {
            out.push(Entry::new("fault (injected → healed)", Swatch::Area(FAULT_FILL)));
        }
        if !self.operations.is_empty() {
            out.push(Entry::new("operation (started → done)", Swatch::Area(OPERATION_FILL)));
        }
        for phase in Phase::ALL {
            if self.faults.iter().any(|f| f.phases.iter().any(|p| p.0 == phase)) {
                out.push(Entry::new(phase.moment(), Swatch::Mark(phase.color())));
            }
        }
        out
    }
}

/// Draw `label` at `offset` px right and down from `at`, on a translucent white box so it
/// stays legible over lines and shading.
fn boxed_label<DB, Y>(
    chart: &mut Chart<'_, DB, RangedCoordf64, Y>,
    at: (f64, f64),
    (dx, dy): (i32, i32),
    label: &str,
    size: u32,
    color: RGBColor,
) -> DrawResult<DB>
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64>,
{
    let style = text(size, color, HPos::Left, VPos::Top);
    let (w, h) = chart.plotting_area().estimate_text_size(label, &style)?;
    let (w, h) = (w as i32, h as i32);
    let back = Rectangle::new([(dx - 2, dy - 1), (dx + w + 2, dy + h + 2)], WHITE.mix(0.8).filled());
    chart.draw_series(std::iter::once(
        EmptyElement::at(at) + back + Text::new(label.to_string(), (dx, dy), style),
    ))?;
    Ok(())
}

/// The phase moments `report` measured, s of run time.
fn phases(report: &FaultReport) -> Vec<(Phase, f64)> {
    Phase::ALL.iter().filter_map(|p| p.at_us(report).map(|at| (*p, at as f64 / 1e6))).collect()
}

/// `kill redis-3`, `pause redis-1, redis-2 +1`.
fn short_label(action: &str, targets: &[String]) -> String {
    let mut names = targets.iter().take(2).cloned().collect::<Vec<_>>().join(", ");
    if targets.len() > 2 {
        names.push_str(&format!(" +{}", targets.len() - 2));
    }
    format!("{action} {names}").trim_end().to_string()
}

/// `kill redis-3 @5.1s`: a fault as the failover bars name it.
pub(super) fn fault_label(report: &FaultReport) -> String {
    format!("{} @{:.1}s", short_label(&report.action, &report.targets), report.t0_us as f64 / 1e6)
}
