//! `percentiles`: the whole-run latency distribution per op kind (warm-up excluded), as
//! HdrHistogram plots it: x is the percentile on a log scale of 1/(1-p), so 90 %, 99 %,
//! 99.9 % … are evenly spaced and the tail gets the room.

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    ALL_OPS, Dash, DrawResult, Entry, FONT, LEGEND_WIDTH, Plot, SIZE, Series, Swatch, draw_legend,
    draw_no_data, fmt_num, log_bounds, op_color,
};
use crate::history::{History, OpStats};

/// The plot.
pub(super) struct Percentiles<'a> {
    /// The run.
    pub history: &'a History,
}

/// `90%` for 1, `99.9%` for 3: the percentile at `x = log10(1/(1-p))`.
pub(super) fn percent_label(x: &f64) -> String {
    if (x - x.round()).abs() > 1e-6 {
        return String::new();
    }
    let nines = x.round().max(0.0) as usize;
    match nines {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        _ => format!("99.{}%", "9".repeat(nines - 2)),
    }
}

/// The curve of `hist`: (log10(1/(1-p)), ms), the last point (p = 1, the max) at `x_max`.
fn curve(hist: &Histogram<u64>, x_max: f64) -> Vec<Option<(f64, f64)>> {
    let mut points: Vec<Option<(f64, f64)>> = hist
        .iter_quantiles(5)
        .map(|v| {
            let q = v.quantile_iterated_to();
            let x = if q >= 1.0 { x_max } else { (1.0 / (1.0 - q)).log10().min(x_max) };
            Some((x, v.value_iterated_to().max(1) as f64 / 1000.0))
        })
        .collect();
    points.push(Some((x_max, hist.max().max(1) as f64 / 1000.0)));
    points
}

impl Plot for Percentiles<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (main, side) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
        let h = self.history;
        let totals = h.totals();
        let mut all = OpStats::default();
        for t in &totals {
            all.merge(t);
        }
        // 99.999 % at least; a millionth of the ops needs a million ops to mean anything.
        let x_max = if all.latency.len() > 1_000_000 { 6.0 } else { 5.0 };
        let mut series = Vec::new();
        let mut legend = vec![Entry::new("op kinds", Swatch::Heading)];
        if totals.len() > 1 && !all.latency.is_empty() {
            let points = curve(&all.latency, x_max);
            series.push(Series { color: ALL_OPS, width: 2, dash: Dash::Solid, points });
            legend.push(Entry::new("all ops", Swatch::Line(ALL_OPS, 3, Dash::Solid)));
        }
        for (k, (name, t)) in h.op_names.iter().zip(&totals).enumerate() {
            if t.latency.is_empty() {
                continue;
            }
            let points = curve(&t.latency, x_max);
            series.push(Series { color: op_color(k), width: 2, dash: Dash::Solid, points });
            legend.push(Entry::new(
                format!("{name} ({} ops)", t.latency.len()),
                Swatch::Line(op_color(k), 3, Dash::Solid),
            ));
        }
        let (lo, hi) = log_bounds(series.iter().flat_map(|s| s.points.iter().flatten().map(|p| p.1)));
        let mut chart = ChartBuilder::on(&main)
            .caption("Latency by percentile, whole run (warm-up excluded)", (FONT, 22))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("percentile (log scale of 1/(1-p))")
            .y_desc("latency (ms, log scale)")
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&percent_label)
            .y_label_formatter(&|v| fmt_num(*v))
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 14))
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        for s in &series {
            s.draw(&mut chart)?;
        }
        if series.is_empty() {
            draw_no_data(&chart.plotting_area().strip_coord_spec(), "no ops recorded after the warm-up")?;
        }
        draw_legend(&side, 50, &legend)
    }
}
