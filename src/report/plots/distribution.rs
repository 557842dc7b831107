//! Box-and-strip panels: one measure (a failover phase, an error window, a p99) across the
//! settings of a comparison. Every measured value is drawn as a dot (a strip), over a box
//! from the first to the third quartile with the median marked and whiskers to the extremes,
//! so a reader sees both the spread and how few repeats it rests on.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{DrawResult, FONT, Plot, draw_no_data, fmt_num, op_color, text};

/// Width of the whole figure; each panel takes half of it.
const WIDTH: u32 = 1200;
/// Height of one row of panels.
const ROW_HEIGHT: u32 = 380;
/// Height of the figure's title band.
const TITLE_HEIGHT: u32 = 44;

/// One measure across the settings.
#[derive(Debug, Clone)]
pub struct Panel {
    /// What is measured (`detection`), shown above the panel.
    pub title: String,
    /// The y axis' description, with its unit (`s after t0`).
    pub unit: String,
    /// The values measured for each setting, in the order of the figure's categories; a
    /// setting without values (no fault failed over, say) stays empty.
    pub values: Vec<Vec<f64>>,
}

/// A figure of panels side by side, two per row, sharing the categories on their x axes.
pub struct Distributions<'a> {
    /// The figure's title.
    pub title: &'a str,
    /// What the categories are (`cluster-node-timeout`), below each x axis.
    pub axis: &'a str,
    /// The settings' names, in order.
    pub categories: &'a [String],
    /// The panels, in reading order.
    pub panels: &'a [Panel],
}

impl Distributions<'_> {
    /// The figure's size in pixels.
    pub fn size(&self) -> (u32, u32) {
        let rows = self.panels.len().div_ceil(2).max(1) as u32;
        (WIDTH, TITLE_HEIGHT + rows * ROW_HEIGHT)
    }
}

impl Plot for Distributions<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (title, body) = root.split_vertically(TITLE_HEIGHT);
        title.draw(&Text::new(
            self.title.to_string(),
            (WIDTH as i32 / 2, TITLE_HEIGHT as i32 / 2),
            text(22, BLACK, HPos::Center, VPos::Center),
        ))?;
        let rows = self.panels.len().div_ceil(2).max(1);
        for (area, panel) in body.split_evenly((rows, 2)).iter().zip(self.panels) {
            self.draw_panel(area, panel)?;
        }
        Ok(())
    }
}

impl Distributions<'_> {
    fn draw_panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, panel: &Panel) -> DrawResult<DB> {
        let n = self.categories.len().max(1);
        let top = panel.values.iter().flatten().copied().filter(|v| v.is_finite()).fold(0.0f64, f64::max);
        let y_max = if top > 0.0 { top * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .caption(&panel.title, (FONT, 18))
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..y_max)?;
        let categories = self.categories;
        let label_of = |v: &f64| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < categories.len() {
                categories[i as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(2)
            .x_labels(n + 1)
            .x_label_formatter(&label_of)
            .y_label_formatter(&|v| fmt_num(*v))
            .x_desc(self.axis)
            .y_desc(&panel.unit)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()?;
        if panel.values.iter().all(Vec::is_empty) {
            return draw_no_data(area, "not measured");
        }
        for (i, values) in panel.values.iter().enumerate() {
            let color = op_color(i);
            let x = i as f64;
            if let Some(b) = BoxStats::of(values) {
                let (l, r) = (x - 0.25, x + 0.25);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(l, b.q1), (r, b.q3)],
                    color.mix(0.18).filled(),
                )))?;
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(l, b.q1), (r, b.q3)],
                    color.stroke_width(1),
                )))?;
                let whisker = color.stroke_width(1);
                for (from, to) in [(b.min, b.q1), (b.q3, b.max)] {
                    chart
                        .draw_series(std::iter::once(PathElement::new(vec![(x, from), (x, to)], whisker)))?;
                }
                for end in [b.min, b.max] {
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(x - 0.08, end), (x + 0.08, end)],
                        whisker,
                    )))?;
                }
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(l, b.median), (r, b.median)],
                    color.stroke_width(3),
                )))?;
            }
            // Dots spread evenly across the box's width, so equal values stay visible.
            let m = values.len();
            chart.draw_series(values.iter().enumerate().map(|(k, v)| {
                let offset = if m > 1 { (k as f64 / (m - 1) as f64 - 0.5) * 0.3 } else { 0.0 };
                Circle::new((x + offset, *v), 4, BLACK.mix(0.75).filled())
            }))?;
        }
        Ok(())
    }
}

/// The five numbers a box shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxStats {
    /// Smallest value.
    pub min: f64,
    /// First quartile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// Third quartile.
    pub q3: f64,
    /// Largest value.
    pub max: f64,
}

impl BoxStats {
    /// The five numbers of `values` (quartiles interpolated linearly between ranks), or
    /// `None` without a finite value.
    pub fn of(values: &[f64]) -> Option<BoxStats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let pos = q * (v.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        };
        Some(BoxStats { min: v[0], q1: at(0.25), median: at(0.5), q3: at(0.75), max: v[v.len() - 1] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate_between_ranks() {
        let b = BoxStats::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(b, BoxStats { min: 1.0, q1: 1.75, median: 2.5, q3: 3.25, max: 4.0 });
        let one = BoxStats::of(&[7.0]).unwrap();
        assert_eq!((one.min, one.median, one.max), (7.0, 7.0, 7.0));
        assert_eq!(BoxStats::of(&[f64::NAN]), None);
        assert_eq!(BoxStats::of(&[]), None);
    }
}
