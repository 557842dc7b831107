//! The run's plots, each written as SVG (for the HTML report) and PNG (for a quick look):
//! latency and throughput over time with the fault windows shaded and the failover phases
//! marked (`latency`, `throughput`), the whole-run latency percentile distribution
//! (`percentiles`) and one bar per fault split into its failover phases (`failover`).
//!
//! Plots present what the history and the fault reports hold; they recompute no verdict.
//! Text is drawn with DejaVu Sans embedded in the binary (`assets/fonts/`), so plotting needs
//! no system font.

mod distribution;
mod failover;
mod latency;
mod percentiles;
mod throughput;
mod timeline;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::element::{DashedPathElement, DottedPathElement};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::check::failover::FaultReport;
use crate::history::History;

use timeline::Timeline;

pub use distribution::{BoxStats, Panel};

/// Write a figure of box-and-strip `panels` (one measure each, across `categories`, which
/// `axis` names) as `<dir>/<name>.svg` and `.png`. Returns the two paths.
///
/// # Errors
/// As [`write_plots`].
pub fn write_distributions(
    dir: &Path,
    name: &str,
    title: &str,
    axis: &str,
    categories: &[String],
    panels: &[Panel],
) -> Result<[PathBuf; 2], PlotError> {
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Dir { path: dir.to_path_buf(), source })?;
    let figure = distribution::Distributions { title, axis, categories, panels };
    render(dir, name, figure.size(), &figure)
}

/// Size of the time-series and distribution plots, in pixels (SVG user units alike).
const SIZE: (u32, u32) = (1200, 600);
/// Width of the legend column at the right of each plot.
const LEGEND_WIDTH: u32 = 250;
/// The font family every text in the plots uses; the embedded font is registered under it.
const FONT: &str = "sans-serif";
/// DejaVu Sans; its licence is `assets/fonts/LICENSE`.
const DEJAVU_SANS: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fonts/DejaVuSans.ttf"));

/// Why the plots could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The folder for the plots could not be created.
    #[error("cannot create the plots folder {}: {source}", .path.display())]
    Dir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Drawing or writing one file failed (a full disk, a folder without write permission).
    #[error("cannot write the plot {}: {message}", .path.display())]
    Draw {
        /// The file.
        path: PathBuf,
        /// What plotters reported.
        message: String,
    },
    /// The embedded font could not be parsed (a broken build).
    #[error("the font embedded for plots is not a valid font file; rebuild slotstorm")]
    Font,
}

/// Write the run's plots into `dir` (created if missing): `latency`, `throughput`,
/// `percentiles` and, when there were faults, `failover`, each as `<name>.svg` and
/// `<name>.png`. Returns the paths written, SVG before PNG, in that order of plots.
///
/// Any history draws, an empty one included: a plot without data says so in its area.
///
/// # Errors
/// [`PlotError::Dir`] when `dir` cannot be created, [`PlotError::Draw`] when a file cannot
/// be written; files written before the failure stay.
pub fn write_plots(dir: &Path, history: &History, faults: &[FaultReport]) -> Result<Vec<PathBuf>, PlotError> {
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Dir { path: dir.to_path_buf(), source })?;
    let timeline = Timeline::new(history, faults);
    let mut paths = Vec::new();
    paths.extend(render(dir, "latency", SIZE, &latency::Latency { history, timeline: &timeline })?);
    paths.extend(render(
        dir,
        "throughput",
        throughput::SIZE,
        &throughput::Throughput { history, timeline: &timeline },
    )?);
    paths.extend(render(dir, "percentiles", SIZE, &percentiles::Percentiles { history })?);
    if !faults.is_empty() {
        let plot = failover::Failover { faults };
        paths.extend(render(dir, "failover", plot.size(), &plot)?);
    }
    Ok(paths)
}

/// Register the embedded font with plotters, once per process.
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok());
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

/// What drawing on a backend returns.
type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A chart with `f64` on both axes (seconds, percentiles, ms), of any scale.
type Chart<'a, DB, X, Y> = ChartContext<'a, DB, Cartesian2d<X, Y>>;

/// One plot, drawable on any backend (the same code makes the SVG and the PNG).
trait Plot {
    /// Draw the whole plot on `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Draw `plot` into `<dir>/<name>.svg` and `<dir>/<name>.png`.
fn render(dir: &Path, name: &str, size: (u32, u32), plot: &impl Plot) -> Result<[PathBuf; 2], PlotError> {
    let svg = dir.join(format!("{name}.svg"));
    let png = dir.join(format!("{name}.png"));
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |e: &dyn std::fmt::Display| PlotError::Draw { path, message: e.to_string() }
    };
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        plot.draw(&root).and_then(|()| root.present()).map_err(|e| failed(&svg)(&e))?;
    }
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        plot.draw(&root).and_then(|()| root.present()).map_err(|e| failed(&png)(&e))?;
    }
    Ok([svg, png])
}

/// A text style of the plots' font, anchored at `h`, `v`.
fn text(size: u32, color: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    (FONT, size).into_font().color(&color).pos(Pos::new(h, v))
}

/// How a line is stroked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dash {
    /// Continuous.
    Solid,
    /// Dashes.
    Dashed,
    /// Dots.
    Dotted,
}

/// A line of a time series or distribution. `None` points break it (an interval without
/// ops is a gap, not a zero).
struct Series {
    color: RGBColor,
    width: u32,
    dash: Dash,
    points: Vec<Option<(f64, f64)>>,
}

impl Series {
    /// The runs of consecutive points.
    fn segments(&self) -> Vec<Vec<(f64, f64)>> {
        let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for p in &self.points {
            match p {
                Some(p) => out.last_mut().expect("never empty").push(*p),
                None if out.last().is_some_and(|s| !s.is_empty()) => out.push(Vec::new()),
                None => {}
            }
        }
        out.retain(|s| !s.is_empty());
        out
    }

    /// Draw it on `chart`.
    fn draw<DB, X, Y>(&self, chart: &mut Chart<'_, DB, X, Y>) -> DrawResult<DB>
    where
        DB: DrawingBackend,
        X: Ranged<ValueType = f64>,
        Y: Ranged<ValueType = f64>,
    {
        let style = self.color.stroke_width(self.width);
        for seg in self.segments() {
            if seg.len() == 1 {
                // A lone point draws no line; show it as a dot.
                chart.draw_series(std::iter::once(Circle::new(seg[0], 2, self.color.filled())))?;
                continue;
            }
            match self.dash {
                Dash::Solid => {
                    chart.draw_series(LineSeries::new(seg, style))?;
                }
                Dash::Dashed => {
                    chart.draw_series(DashedLineSeries::new(seg, 7, 4, style))?;
                }
                Dash::Dotted => {
                    let color = self.color;
                    chart.draw_series(DottedLineSeries::new(seg, 0, 5, move |c| {
                        Circle::new(c, 1, color.filled())
                    }))?;
                }
            }
        }
        Ok(())
    }
}

/// How a legend entry is shown.
enum Swatch {
    /// A heading, no sample.
    Heading,
    /// A line sample.
    Line(RGBColor, u32, Dash),
    /// A filled box.
    Area(RGBAColor),
    /// A vertical dashed mark.
    Mark(RGBColor),
}

/// One legend entry.
struct Entry {
    label: String,
    swatch: Swatch,
}

impl Entry {
    fn new(label: impl Into<String>, swatch: Swatch) -> Entry {
        Entry { label: label.into(), swatch }
    }
}

/// Draw `entries` as a column in `area` (the legend column beside a chart), from `top` px.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    top: i32,
    entries: &[Entry],
) -> DrawResult<DB> {
    const ROW: i32 = 21;
    let x = 8;
    let label = text(14, BLACK, HPos::Left, VPos::Center);
    let heading = (FONT, 14, FontStyle::Bold)
        .into_font()
        .color(&RGBColor(60, 60, 60))
        .pos(Pos::new(HPos::Left, VPos::Center));
    let mut y = top + ROW / 2;
    for (i, e) in entries.iter().enumerate() {
        match e.swatch {
            Swatch::Heading => {
                if i > 0 {
                    y += ROW / 3;
                }
                area.draw(&Text::new(e.label.clone(), (x, y), heading.clone()))?;
                y += ROW;
                continue;
            }
            Swatch::Line(color, width, dash) => {
                let style = color.stroke_width(width.max(1));
                let (a, b) = ((x, y), (x + 32, y));
                match dash {
                    Dash::Solid => area.draw(&PathElement::new(vec![a, b], style))?,
                    Dash::Dashed => area.draw(&DashedPathElement::new(vec![a, b], 7, 4, style))?,
                    Dash::Dotted => area.draw(&DottedPathElement::new(vec![a, b], 0, 5, move |c| {
                        Circle::new(c, 1, color.filled())
                    }))?,
                }
            }
            Swatch::Area(color) => {
                area.draw(&Rectangle::new([(x, y - 6), (x + 32, y + 6)], color.filled()))?;
                area.draw(&Rectangle::new([(x, y - 6), (x + 32, y + 6)], RGBColor(150, 150, 150)))?;
            }
            Swatch::Mark(color) => {
                let style = color.stroke_width(2);
                area.draw(&DashedPathElement::new(vec![(x + 16, y - 8), (x + 16, y + 8)], 4, 3, style))?;
            }
        }
        area.draw(&Text::new(e.label.clone(), (x + 42, y), label.clone()))?;
        y += ROW;
    }
    Ok(())
}

/// A distinct colour per op kind (Tableau 10, with red kept for faults).
fn op_color(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

/// Colour for "all ops" lines.
const ALL_OPS: RGBColor = RGBColor(30, 30, 30);

/// Bounds of a log axis that hold `values` (ms), with room above the data for the fault
/// labels: the data fills the lower ~80 %.
fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi <= 0.0 {
        return (0.1, 10.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = hi.max(lo * 10.0);
    let span = hi.log10() - lo.log10();
    (lo, 10f64.powf(lo.log10() + span / 0.8))
}

/// A number for an axis: up to three significant digits, no trailing zeros (`0.05`, `1.5`,
/// `250`, `12000`).
fn fmt_num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// Seconds of run time, for axes (`0`, `2.5`, `30`).
fn fmt_secs(v: &f64) -> String {
    fmt_num(*v)
}

/// Start and end of interval `i` in seconds of run time (the last one ends with the run).
fn interval_bounds(history: &History, i: u32) -> (f64, f64) {
    let len = history.interval.as_secs_f64().max(1e-3);
    let start = f64::from(i) * len;
    let end = (start + len).min(history.elapsed.as_secs_f64());
    // A run that ended just after an interval began (or a history without an elapsed
    // time): the interval's nominal length, rather than a rate over almost nothing.
    if end - start < len * 0.05 { (start, start + len) } else { (start, end) }
}

/// Where the x axis of the time plots ends: the run's end (or its intervals' when the
/// history has no elapsed time), and never before the last fault mark.
fn time_axis_end(history: &History, timeline: &Timeline) -> f64 {
    let mut end = history.elapsed.as_secs_f64();
    if end <= 0.0 {
        end = history.intervals.len() as f64 * history.interval.as_secs_f64();
    }
    let end = end.max(timeline.last_mark_s());
    if end > 0.0 { end } else { 1.0 }
}

/// "no data" in the middle of a chart area.
fn draw_no_data<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, what: &str) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    let style = text(18, RGBColor(120, 120, 120), HPos::Center, VPos::Center);
    area.draw(&Text::new(what.to_string(), (w as i32 / 2, h as i32 / 2), style))
}
