//! `latency`: p50, p99, p99.9 and max latency per interval over run time, per op kind, on a
//! log scale, with the warm-up and fault windows shaded and the failover phases marked.

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::timeline::Timeline;
use super::{
    ALL_OPS, Dash, DrawResult, Entry, FONT, LEGEND_WIDTH, Plot, SIZE, Series, Swatch, draw_legend, fmt_num,
    fmt_secs, interval_bounds, log_bounds, op_color, time_axis_end,
};
use crate::history::{History, new_histogram};

/// Up to this many op kinds each get all four lines; with more, the four lines are drawn for
/// all ops together and each kind gets only its p99.
const DETAILED_OPS: usize = 4;

/// The lines drawn per op kind: name, quantile (`None`: the max), width, dash.
const LINES: [(&str, Option<f64>, u32, Dash); 4] = [
    ("p50", Some(0.5), 1, Dash::Solid),
    ("p99", Some(0.99), 2, Dash::Solid),
    ("p99.9", Some(0.999), 1, Dash::Dashed),
    ("max", None, 1, Dash::Dotted),
];

/// The plot.
pub(super) struct Latency<'a> {
    /// The run.
    pub history: &'a History,
    /// Its warm-up and faults.
    pub timeline: &'a Timeline,
}

/// One plotted point: the middle of an interval (s) and a latency (ms).
type Point = Option<(f64, f64)>;

impl Latency<'_> {
    /// The lines, and the legend entries that explain them. The intervals are read once,
    /// one at a time (they are kept compressed).
    fn series(&self) -> (Vec<Series>, Vec<Entry>) {
        let h = self.history;
        let kinds = h.op_names.len();
        let detailed = kinds <= DETAILED_OPS;
        // [kind][line] and [line]: one point per interval.
        let mut per_kind: Vec<Vec<Vec<Point>>> = vec![vec![Vec::new(); LINES.len()]; kinds];
        let mut all: Vec<Vec<Point>> = vec![Vec::new(); LINES.len()];
        for iv in h.intervals.iter() {
            let (a, b) = interval_bounds(h, iv.index);
            let point = |hist: &Histogram<u64>, q: Option<f64>| -> Point {
                // A log axis has no zero; sub-µs latencies sit at 1 µs.
                (!hist.is_empty()).then(|| {
                    (
                        (a + b) / 2.0,
                        q.map_or(hist.max(), |q| hist.value_at_quantile(q)).max(1) as f64 / 1000.0,
                    )
                })
            };
            for (k, lines) in per_kind.iter_mut().enumerate() {
                for ((_, q, ..), points) in LINES.iter().zip(lines.iter_mut()) {
                    points.push(iv.ops.get(k).and_then(|s| point(&s.latency, *q)));
                }
            }
            if !detailed {
                let mut merged = new_histogram();
                for s in &iv.ops {
                    merged.add(&s.latency).expect("histograms share bounds");
                }
                for ((_, q, ..), points) in LINES.iter().zip(all.iter_mut()) {
                    points.push(point(&merged, *q));
                }
            }
        }
        let mut series = Vec::new();
        let mut legend = vec![Entry::new("op kinds", Swatch::Heading)];
        if detailed {
            for ((k, name), lines) in h.op_names.iter().enumerate().zip(per_kind) {
                let color = op_color(k);
                legend.push(Entry::new(name.clone(), Swatch::Line(color, 3, Dash::Solid)));
                for ((_, _, width, dash), points) in LINES.into_iter().zip(lines) {
                    series.push(Series { color, width, dash, points });
                }
            }
            legend.push(Entry::new("lines", Swatch::Heading));
            for (name, _, width, dash) in LINES {
                legend.push(Entry::new(name, Swatch::Line(ALL_OPS, width, dash)));
            }
        } else {
            for ((name, _, width, dash), points) in LINES.into_iter().zip(all) {
                series.push(Series { color: ALL_OPS, width, dash, points });
                legend.push(Entry::new(format!("all ops {name}"), Swatch::Line(ALL_OPS, width, dash)));
            }
            let p99 = LINES.iter().position(|l| l.1 == Some(0.99)).expect("a p99 line");
            for ((k, name), mut lines) in h.op_names.iter().enumerate().zip(per_kind) {
                let color = op_color(k);
                let points = lines.swap_remove(p99);
                series.push(Series { color, width: 2, dash: Dash::Solid, points });
                legend.push(Entry::new(format!("{name} p99"), Swatch::Line(color, 2, Dash::Solid)));
            }
        }
        (series, legend)
    }
}

impl Plot for Latency<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (main, side) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
        let (series, mut legend) = self.series();
        let (lo, hi) = log_bounds(series.iter().flat_map(|s| s.points.iter().flatten().map(|p| p.1)));
        let x_end = time_axis_end(self.history, self.timeline);
        let interval = humantime::format_duration(self.history.interval);
        let mut chart = ChartBuilder::on(&main)
            .caption(format!("Latency per {interval} interval, by op kind"), (FONT, 22))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_end, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("run time (s)")
            .y_desc("latency (ms, log scale)")
            .x_label_formatter(&fmt_secs)
            .y_label_formatter(&|v| fmt_num(*v))
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 14))
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        self.timeline.draw_shading(&mut chart, (lo, hi))?;
        for s in &series {
            s.draw(&mut chart)?;
        }
        self.timeline.draw_marks(&mut chart, (lo, hi), true)?;
        if series.iter().all(|s| s.points.iter().all(Option::is_none)) {
            super::draw_no_data(&chart.plotting_area().strip_coord_spec(), "no ops recorded")?;
        }
        legend.extend(self.timeline.legend());
        draw_legend(&side, 50, &legend)
    }
}
