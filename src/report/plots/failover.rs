//! `failover`: one horizontal bar per fault, from its `t0`, split into the failover phases
//! (detection, election, convergence, client recovery); a fault that caused no failover
//! shows only the client's disruption.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::timeline::{Phase, fault_label};
use super::{DrawResult, Entry, FONT, LEGEND_WIDTH, Plot, Swatch, draw_legend, fmt_secs, text};
use crate::check::failover::FaultReport;

/// The client's disruption of a fault without failover.
const DISRUPTION: RGBColor = RGBColor(150, 150, 160);
/// The whisker from the bar to the heal.
const HEALED: RGBColor = RGBColor(90, 90, 90);

/// The plot.
pub(super) struct Failover<'a> {
    /// The faults, in order.
    pub faults: &'a [FaultReport],
}

/// A stretch of one bar: its colour, and its start and end in s after `t0`.
pub(super) struct Segment {
    pub(super) color: RGBColor,
    pub(super) start: f64,
    pub(super) end: f64,
}

/// The segments of `r`'s bar, and the text after it.
pub(super) fn bar(r: &FaultReport) -> (Vec<Segment>, String) {
    let rel = |at: u64| at.saturating_sub(r.t0_us) as f64 / 1e6;
    let mut out = Vec::new();
    if r.failed_over() {
        let mut prev = 0.0;
        for phase in Phase::ALL {
            // A phase whose moment came before the previous one's (the client recovered
            // before the last node converged) adds nothing to the bar.
            if let Some(at) = phase.at_us(r).map(rel).filter(|at| *at > prev) {
                out.push(Segment { color: phase.color(), start: prev, end: at });
                prev = at;
            }
        }
        // `rel`, not `failover_duration_us`: a plot of an odd report must not underflow.
        let text = match r.client_recovered_us.map(rel) {
            Some(s) => format!("client recovered +{s:.2}s"),
            None => format!("elected +{:.2}s, no client disruption", rel(r.elected_us.unwrap_or(0))),
        };
        return (out, text);
    }
    // The victims' slots, or, when no primary was hit, every slot.
    let end =
        r.client_recovered_us.or_else(|| r.other_slots.disruption_windows.last().map(|w| w.end_us)).map(rel);
    let text = match end {
        Some(end) if end > 0.0 => {
            out.push(Segment { color: DISRUPTION, start: 0.0, end });
            format!("no failover; disruption +{end:.2}s")
        }
        _ => "no failover, no disruption".to_string(),
    };
    (out, text)
}

impl Failover<'_> {
    /// Size of the plot: a row per fault.
    pub(super) fn size(&self) -> (u32, u32) {
        (1200, (150 + 60 * self.faults.len() as u32).clamp(360, 1800))
    }
}

impl Plot for Failover<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (main, side) = root.split_horizontally(self.size().0 - LEGEND_WIDTH);
        let n = self.faults.len();
        let bars: Vec<(Vec<Segment>, String)> = self.faults.iter().map(bar).collect();
        let labels: Vec<String> = self.faults.iter().map(fault_label).collect();
        let healed: Vec<Option<f64>> =
            self.faults.iter().map(|r| r.healed_us.map(|h| h.saturating_sub(r.t0_us) as f64 / 1e6)).collect();
        let longest = bars
            .iter()
            .flat_map(|(segs, _)| segs.iter().map(|s| s.end))
            .chain(healed.iter().flatten().copied())
            .fold(0.0, f64::max);
        // Room after the longest bar for its text.
        let x_max = if longest > 0.0 { longest * 1.35 } else { 1.0 };
        let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32 * 8 + 30;
        // The first fault on top: fault i sits at y = n - 1 - i.
        let row = |i: usize| (n - 1 - i) as f64;
        let mut chart = ChartBuilder::on(&main)
            .caption("Failover phases per fault, from injection (t0)", (FONT, 22))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(label_width.clamp(120, 420))
            .build_cartesian_2d(0.0..x_max, -0.5..n as f64 - 0.5)?;
        chart
            .configure_mesh()
            .x_desc("time since the fault was injected (s)")
            .x_label_formatter(&fmt_secs)
            .y_labels(n)
            .y_label_formatter(&|y| {
                if (y - y.round()).abs() > 1e-6 {
                    return String::new();
                }
                let i = n as i64 - 1 - y.round() as i64;
                usize::try_from(i).ok().and_then(|i| labels.get(i)).cloned().unwrap_or_default()
            })
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 14))
            .disable_y_mesh()
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        let inside = text(12, WHITE, HPos::Center, VPos::Center);
        let after = text(13, BLACK, HPos::Left, VPos::Center);
        for (i, (segs, text)) in bars.iter().enumerate() {
            let y = row(i);
            for s in segs {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(s.start, y - 0.3), (s.end, y + 0.3)],
                    s.color.filled(),
                )))?;
                let (a, b) = (chart.backend_coord(&(s.start, y)), chart.backend_coord(&(s.end, y)));
                if b.0 - a.0 >= 46 {
                    chart.draw_series(std::iter::once(Text::new(
                        format!("{:.2}s", s.end - s.start),
                        ((s.start + s.end) / 2.0, y),
                        inside.clone(),
                    )))?;
                }
            }
            let bar_end = segs.last().map_or(0.0, |s| s.end);
            if let Some(h) = healed[i] {
                // A whisker on from the bar (or under it) to the heal, ending in a tick.
                let style = HEALED.stroke_width(2);
                if h > bar_end {
                    chart
                        .draw_series(std::iter::once(PathElement::new(vec![(bar_end, y), (h, y)], style)))?;
                }
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(h, y - 0.18), (h, y + 0.18)],
                    style,
                )))?;
            }
            let end = bar_end.max(healed[i].unwrap_or(0.0));
            chart.draw_series(std::iter::once(
                EmptyElement::at((end, y)) + Text::new(text.clone(), (8, 0), after.clone()),
            ))?;
        }
        let mut legend = vec![Entry::new("phase", Swatch::Heading)];
        for phase in Phase::ALL {
            legend.push(Entry::new(phase.stretch(), Swatch::Area(phase.color().to_rgba())));
        }
        legend.push(Entry::new("disruption, no failover", Swatch::Area(DISRUPTION.to_rgba())));
        legend.push(Entry::new("on until healed", Swatch::Line(HEALED, 2, super::Dash::Solid)));
        draw_legend(&side, 50, &legend)
    }
}
