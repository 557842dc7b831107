//! `throughput`: two panels over run time, ops/s (all ops and per op kind) above, errors/s
//! stacked by error class below, both with the warm-up and fault windows shaded.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::timeline::Timeline;
use super::{
    ALL_OPS, Dash, DrawResult, Entry, FONT, LEGEND_WIDTH, Plot, Series, Swatch, draw_legend, draw_no_data,
    fmt_num, fmt_secs, interval_bounds, op_color, time_axis_end,
};
use crate::history::{ErrorClass, History};

/// Size of the plot: two panels, so taller than the others.
pub(super) const SIZE: (u32, u32) = (1200, 800);
/// Height of the upper (ops/s) panel.
const UPPER: u32 = 430;

/// The plot.
pub(super) struct Throughput<'a> {
    /// The run.
    pub history: &'a History,
    /// Its warm-up and faults.
    pub timeline: &'a Timeline,
}

/// Per interval: its bounds in s of run time and a rate over it (per second).
type Rates = Vec<((f64, f64), f64)>;

/// Colour of an error class in the stack.
fn class_color(class: ErrorClass) -> RGBColor {
    match class {
        ErrorClass::Timeout => RGBColor(214, 39, 40),
        ErrorClass::Refused => RGBColor(255, 127, 14),
        ErrorClass::Reset => RGBColor(148, 103, 189),
        ErrorClass::ClusterDown => RGBColor(31, 119, 180),
        ErrorClass::TryAgain => RGBColor(44, 160, 44),
        ErrorClass::Moved => RGBColor(23, 190, 207),
        ErrorClass::Ask => RGBColor(188, 189, 34),
        ErrorClass::ReadOnly => RGBColor(227, 119, 194),
        ErrorClass::Loading => RGBColor(140, 86, 75),
        ErrorClass::NoScript => RGBColor(150, 150, 150),
        ErrorClass::Other => RGBColor(70, 70, 70),
    }
}

impl Throughput<'_> {
    /// Per interval: its bounds in s and `value(interval) / length`.
    fn rates(&self, value: impl Fn(&crate::history::Interval) -> u64) -> Rates {
        self.history
            .intervals
            .iter()
            .map(|iv| {
                let (a, b) = interval_bounds(self.history, iv.index);
                ((a, b), value(&iv) as f64 / (b - a))
            })
            .collect()
    }

    /// The upper panel: ops/s.
    fn draw_ops<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (main, side) = area.split_horizontally(SIZE.0 - LEGEND_WIDTH);
        let h = self.history;
        let line = |rates: Rates, color, width| Series {
            color,
            width,
            dash: Dash::Solid,
            points: rates.into_iter().map(|((a, b), r)| Some(((a + b) / 2.0, r))).collect(),
        };
        let mut series = Vec::new();
        let mut legend = vec![Entry::new("ops/s", Swatch::Heading)];
        if h.op_names.len() > 1 {
            series.push(line(self.rates(|iv| iv.ops.iter().map(|s| s.count()).sum()), ALL_OPS, 2));
            legend.push(Entry::new("all ops", Swatch::Line(ALL_OPS, 3, Dash::Solid)));
        }
        for (k, name) in h.op_names.iter().enumerate() {
            let rates = self.rates(|iv| iv.ops.get(k).map_or(0, |s| s.count()));
            series.push(line(rates, op_color(k), 2));
            legend.push(Entry::new(name.clone(), Swatch::Line(op_color(k), 3, Dash::Solid)));
        }
        let top = series.iter().flat_map(|s| s.points.iter().flatten().map(|p| p.1)).fold(0.0, f64::max);
        // Head room for the fault and phase labels.
        let y = (0.0, if top > 0.0 { top * 1.3 } else { 1.0 });
        let interval = humantime::format_duration(h.interval);
        let mut chart = ChartBuilder::on(&main)
            .caption(format!("Throughput per {interval} interval"), (FONT, 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..time_axis_end(h, self.timeline), y.0..y.1)?;
        chart
            .configure_mesh()
            .x_desc("run time (s)")
            .y_desc("ops/s")
            .x_label_formatter(&fmt_secs)
            .y_label_formatter(&|v| fmt_num(*v))
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 14))
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        self.timeline.draw_shading(&mut chart, y)?;
        for s in &series {
            s.draw(&mut chart)?;
        }
        self.timeline.draw_marks(&mut chart, y, true)?;
        if h.intervals.iter().all(|iv| iv.ops.iter().all(|s| s.count() == 0)) {
            draw_no_data(&chart.plotting_area().strip_coord_spec(), "no ops recorded")?;
        }
        legend.extend(self.timeline.legend());
        draw_legend(&side, 50, &legend)
    }

    /// The lower panel: errors/s, stacked by class.
    fn draw_errors<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (main, side) = area.split_horizontally(SIZE.0 - LEGEND_WIDTH);
        let h = self.history;
        let by_class = |c: ErrorClass| self.rates(|iv| iv.ops.iter().map(|s| s.errors_by_class()[c]).sum());
        let present: Vec<(ErrorClass, Rates)> = ErrorClass::ALL
            .iter()
            .map(|c| (*c, by_class(*c)))
            .filter(|(_, rates)| rates.iter().any(|r| r.1 > 0.0))
            .collect();
        // Stack: each class's band sits on the sum of the classes before it.
        let mut stacked: Vec<Rates> = Vec::new();
        for (_, rates) in &present {
            let below = stacked.last();
            let sum = rates
                .iter()
                .enumerate()
                .map(|(i, (bounds, r))| (*bounds, r + below.map_or(0.0, |b| b[i].1)))
                .collect();
            stacked.push(sum);
        }
        let top = stacked.last().map_or(0.0, |s| s.iter().map(|r| r.1).fold(0.0, f64::max));
        let y = (0.0, if top > 0.0 { top * 1.15 } else { 1.0 });
        let mut chart = ChartBuilder::on(&main)
            .caption("Errors (failed or unknown ops) by class", (FONT, 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..time_axis_end(h, self.timeline), y.0..y.1)?;
        chart
            .configure_mesh()
            .x_desc("run time (s)")
            .y_desc("errors/s")
            .x_label_formatter(&fmt_secs)
            .y_label_formatter(&|v| fmt_num(*v))
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 14))
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        self.timeline.draw_shading(&mut chart, y)?;
        // Highest band first; each lower one is drawn over it.
        for ((class, _), band) in present.iter().zip(&stacked).rev() {
            let steps = band.iter().flat_map(|((a, b), r)| [(*a, *r), (*b, *r)]);
            let color = class_color(*class);
            chart.draw_series(AreaSeries::new(steps, 0.0, color.mix(0.85).filled()))?;
        }
        self.timeline.draw_marks(&mut chart, y, false)?;
        if present.is_empty() {
            draw_no_data(&chart.plotting_area().strip_coord_spec(), "no errors")?;
        }
        let mut legend = Vec::new();
        if !present.is_empty() {
            legend.push(Entry::new("error class", Swatch::Heading));
        }
        // Listed top of the stack first, as it reads.
        for (class, _) in present.iter().rev() {
            legend.push(Entry::new(class.name(), Swatch::Area(class_color(*class).to_rgba())));
        }
        draw_legend(&side, 45, &legend)
    }
}

impl Plot for Throughput<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (upper, lower) = root.split_vertically(UPPER);
        self.draw_ops(&upper)?;
        self.draw_errors(&lower)
    }
}
