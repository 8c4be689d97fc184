//! Line-and-marker charts of a few named series, written as PNG and SVG with the embedded font.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::Ranged;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::font::{FONT_FAMILY, register};
use super::text::TextBackend;
use crate::error::{Error, Result};

/// One named series of points.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points, drawn joined in the order given.
    pub points: Vec<(f64, f64)>,
    /// A shaded band `(x, low, high)` around the line (a confidence interval), if any.
    pub band: Vec<(f64, f64, f64)>,
    /// Markers only, no joining line (a scatter).
    pub scatter: bool,
    /// A guide (a Pareto front, y = x): a thin dashed grey line without markers, drawn under
    /// every other series so it hides none of the points it joins.
    pub guide: bool,
    /// A label per point (empty: none), drawn beside its marker.
    pub labels: Vec<String>,
}

impl Series {
    /// The series of `series` named `name`, appended (empty, with `scatter`) if there is none.
    pub fn named<'a>(series: &'a mut Vec<Series>, name: &str, scatter: bool) -> &'a mut Series {
        let i = match series.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                series.push(Series {
                    name: name.to_string(),
                    scatter,
                    ..Default::default()
                });
                series.len() - 1
            }
        };
        &mut series[i]
    }
}

/// How an axis is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AxisScale {
    /// Logarithmic when every value is positive and they span two decades or more, else
    /// linear.
    #[default]
    Auto,
    /// Linear.
    Linear,
    /// Logarithmic.
    Log,
}

/// A chart of series against two numeric axes.
#[derive(Debug, Clone, Default)]
pub struct XyChart {
    /// Title.
    pub title: String,
    /// X axis label: words with a unit.
    pub x_label: String,
    /// Y axis label: words with a unit.
    pub y_label: String,
    /// The series.
    pub series: Vec<Series>,
    /// X axis scale.
    pub x_scale: AxisScale,
    /// Y axis scale.
    pub y_scale: AxisScale,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Marker shapes, cycled with the colours so that series stay apart in print.
#[derive(Debug, Clone, Copy)]
enum Marker {
    Circle,
    Triangle,
    Square,
    Cross,
    Diamond,
}

const MARKERS: [Marker; 5] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Cross,
    Marker::Diamond,
];

/// The finite `(lo, hi)` of `values`, or `None`.
fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let mut r: Option<(f64, f64)> = None;
    for v in values.filter(|v| v.is_finite()) {
        r = Some(match r {
            None => (v, v),
            Some((a, b)) => (a.min(v), b.max(v)),
        });
    }
    r
}

/// Whether `scale` is logarithmic for values spanning `ext`.
fn is_log(scale: AxisScale, ext: Option<(f64, f64)>) -> bool {
    match scale {
        AxisScale::Linear => false,
        AxisScale::Log => ext.is_some_and(|(lo, _)| lo > 0.0),
        AxisScale::Auto => ext.is_some_and(|(lo, hi)| lo > 0.0 && hi / lo >= 100.0),
    }
}

/// An axis range with a margin: linear padding, or a fraction of a decade in log space.
fn padded(ext: Option<(f64, f64)>, log: bool) -> (f64, f64) {
    let Some((a, b)) = ext else {
        return (0.0, 1.0);
    };
    if log {
        let (la, lb) = (a.log10(), b.log10());
        let d = ((lb - la) * 0.06).max(0.05);
        return (10f64.powf(la - d), 10f64.powf(lb + d));
    }
    let d = if b > a {
        (b - a) * 0.06
    } else {
        a.abs().max(1.0) * 0.1
    };
    (a - d, b + d)
}

/// A title's font size: 22 px, smaller for a long title so that it fits `width` pixels
/// (DejaVu Sans averages about 0.56 em per character), never below 12.
fn title_size(title: &str, width: u32) -> f64 {
    let chars = title.chars().count().max(1) as f64;
    (0.94 * width as f64 / (0.56 * chars)).clamp(12.0, 22.0)
}

/// Whether every value is a whole number and there are few enough of them to tick each.
fn integral(values: &[f64]) -> bool {
    !values.is_empty()
        && values.iter().all(|v| v.fract() == 0.0)
        && extent(values.iter().copied()).is_some_and(|(a, b)| b - a <= 40.0)
}

/// A tick label: three significant digits, no trailing zeros, exponent form for extremes.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        format!("{v:.1e}")
    } else {
        let digits = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let t = format!("{v:.digits$}");
        if t.contains('.') {
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            t
        }
    }
}

impl XyChart {
    fn xs(&self) -> Vec<f64> {
        self.series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .filter(|x| x.is_finite())
            .collect()
    }

    fn ys(&self) -> impl Iterator<Item = f64> + '_ {
        self.series
            .iter()
            .flat_map(|s| {
                s.points
                    .iter()
                    .map(|p| p.1)
                    .chain(s.band.iter().flat_map(|b| [b.1, b.2]))
            })
            .filter(|y| y.is_finite())
    }

    /// The legend corner with the fewest points near it (upper right first on ties); `fx`
    /// and `fy` place a point in [0, 1] across the plot.
    fn emptiest_corner(
        &self,
        fx: &dyn Fn(f64) -> f64,
        fy: &dyn Fn(f64) -> f64,
    ) -> SeriesLabelPosition {
        let corners = [
            (SeriesLabelPosition::UpperRight, true, true),
            (SeriesLabelPosition::LowerRight, true, false),
            (SeriesLabelPosition::UpperLeft, false, true),
            (SeriesLabelPosition::LowerLeft, false, false),
        ];
        let near = |right: bool, top: bool| {
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|(x, y)| {
                    let (u, v) = (fx(*x), fy(*y));
                    (if right { u > 0.6 } else { u < 0.4 })
                        && (if top { v > 0.55 } else { v < 0.45 })
                })
                .count()
        };
        let mut best = (usize::MAX, SeriesLabelPosition::UpperRight);
        for (pos, right, top) in corners {
            let n = near(right, top);
            if n < best.0 {
                best = (n, pos);
            }
        }
        best.1
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let xs = self.xs();
        let x_ext = extent(xs.iter().copied());
        let y_ext = extent(self.ys());
        let (x_log, y_log) = (is_log(self.x_scale, x_ext), is_log(self.y_scale, y_ext));
        let x_int = !x_log && integral(&xs);
        let (x0, x1) = if x_int {
            let (a, b) = x_ext.unwrap_or((0.0, 1.0));
            (a - 0.5, b + 0.5)
        } else {
            padded(x_ext, x_log)
        };
        let (y0, y1) = padded(y_ext, y_log);
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(
                &self.title,
                (FONT_FAMILY, title_size(&self.title, root.dim_in_pixel().0)),
            )
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64);
        let x_ticks = if x_int {
            (x1 - x0).round() as usize + 1
        } else {
            10
        };
        macro_rules! body {
            ($xr:expr, $yr:expr) => {{
                let mut chart = builder.build_cartesian_2d($xr, $yr).map_err(|x| e(&x))?;
                chart
                    .configure_mesh()
                    .x_desc(&self.x_label)
                    .y_desc(&self.y_label)
                    .x_labels(x_ticks)
                    .x_label_formatter(&|v: &f64| {
                        if x_int && (v - v.round()).abs() > 1e-9 {
                            String::new()
                        } else {
                            tick(*v)
                        }
                    })
                    .y_label_formatter(&|v: &f64| tick(*v))
                    .label_style((FONT_FAMILY, 14))
                    .axis_desc_style((FONT_FAMILY, 15))
                    .draw()
                    .map_err(|x| e(&x))?;
                self.draw_series(&mut chart)?;
                let fx = |x: f64| {
                    if x_log {
                        (x.log10() - x0.log10()) / (x1.log10() - x0.log10())
                    } else {
                        (x - x0) / (x1 - x0)
                    }
                };
                let fy = |y: f64| {
                    if y_log {
                        (y.log10() - y0.log10()) / (y1.log10() - y0.log10())
                    } else {
                        (y - y0) / (y1 - y0)
                    }
                };
                chart
                    .configure_series_labels()
                    .position(self.emptiest_corner(&fx, &fy))
                    .label_font((FONT_FAMILY, 14))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|x| e(&x))?;
            }};
        }
        match (x_log, y_log) {
            (false, false) => body!(x0..x1, y0..y1),
            (true, false) => body!((x0..x1).log_scale(), y0..y1),
            (false, true) => body!(x0..x1, (y0..y1).log_scale()),
            (true, true) => body!((x0..x1).log_scale(), (y0..y1).log_scale()),
        }
        root.present().map_err(|x| e(&x))
    }

    /// Draws the series: guides first, then bands, lines, markers and point labels.
    fn draw_series<'a, DB, X, Y>(
        &self,
        chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    ) -> std::result::Result<(), String>
    where
        DB: DrawingBackend + 'a,
        X: Ranged<ValueType = f64>,
        Y: Ranged<ValueType = f64>,
    {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let finite = |s: &Series| -> Vec<(f64, f64)> {
            s.points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect()
        };
        let guide_color = RGBColor(90, 90, 90);
        for s in self.series.iter().filter(|s| s.guide) {
            chart
                .draw_series(DashedLineSeries::new(
                    finite(s),
                    8,
                    5,
                    guide_color.stroke_width(1),
                ))
                .map_err(|x| e(&x))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], guide_color.stroke_width(1))
                });
        }
        let plotted: Vec<&Series> = self.series.iter().filter(|s| !s.guide).collect();
        for (i, s) in plotted.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let band: Vec<(f64, f64, f64)> = s
                .band
                .iter()
                .copied()
                .filter(|(x, lo, hi)| x.is_finite() && lo.is_finite() && hi.is_finite())
                .collect();
            if band.len() >= 2 {
                let mut poly: Vec<(f64, f64)> = band.iter().map(|&(x, _, hi)| (x, hi)).collect();
                poly.extend(band.iter().rev().map(|&(x, lo, _)| (x, lo)));
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        poly,
                        color.mix(0.18).filled(),
                    )))
                    .map_err(|x| e(&x))?;
            }
        }
        for (i, s) in plotted.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let marker = MARKERS[i % MARKERS.len()];
            // Every other series is dashed with hollow, slightly larger markers, so a series
            // lying exactly on another (a Hadamard variant equal to its plain format, say)
            // still shows through it.
            let dashed = i % 2 == 1;
            let style = move |filled: bool| {
                if filled {
                    color.filled()
                } else {
                    color.stroke_width(2)
                }
            };
            let pts = finite(s);
            let line = if s.scatter { Vec::new() } else { pts.clone() };
            let scale = if dashed { 1.5 } else { 1.0 };
            let legend = move |(x, y): (i32, i32)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (18, 0)], color.stroke_width(2))
                    + {
                        let outline = marker_points(marker, (9, 0), scale);
                        let mut closed = outline.clone();
                        closed.push(outline[0]);
                        PathElement::new(closed, style(false))
                    }
                    + Polygon::new(
                        marker_points(marker, (9, 0), scale),
                        if dashed {
                            TRANSPARENT.filled()
                        } else {
                            style(true)
                        },
                    )
            };
            let anno = if dashed {
                chart
                    .draw_series(DashedLineSeries::new(line, 10, 6, color.stroke_width(2)))
                    .map_err(|x| e(&x))?
            } else {
                chart
                    .draw_series(LineSeries::new(line, color.stroke_width(2)))
                    .map_err(|x| e(&x))?
            };
            anno.label(s.name.clone()).legend(legend);
            chart
                .draw_series(pts.iter().map(|&p| {
                    let outline = marker_points(marker, (0, 0), scale);
                    let mut closed = outline.clone();
                    closed.push(outline[0]);
                    // Hollow markers are outlines only, so a marker under one shows through.
                    let fill = if dashed {
                        TRANSPARENT.filled()
                    } else {
                        color.filled()
                    };
                    EmptyElement::at(p)
                        + Polygon::new(outline, fill)
                        + PathElement::new(closed, color.stroke_width(if dashed { 2 } else { 1 }))
                }))
                .map_err(|x| e(&x))?;
            if !s.labels.is_empty() {
                let texts: Vec<_> = s
                    .points
                    .iter()
                    .zip(&s.labels)
                    .filter(|((x, y), l)| x.is_finite() && y.is_finite() && !l.is_empty())
                    .map(|(&p, l)| {
                        EmptyElement::at(p)
                            + Text::new(
                                l.clone(),
                                (7, -7),
                                (FONT_FAMILY, 12)
                                    .into_font()
                                    .color(&BLACK.mix(0.85))
                                    .pos(Pos::new(HPos::Left, VPos::Bottom)),
                            )
                    })
                    .collect();
                chart.draw_series(texts).map_err(|x| e(&x))?;
            }
        }
        Ok(())
    }

    /// Writes `<stem>.png` (1000×650) and `<stem>.svg` next to each other, each atomically.
    pub fn write(&self, stem: &Path) -> Result<()> {
        write_both(stem, (1000, 650), |a| self.draw(a), |a| self.draw(a))
    }
}

/// The outline of marker `m` around pixel offset `at`: every shape is a polygon, so markers
/// of all kinds are one element type.
fn marker_points(m: Marker, (x, y): (i32, i32), scale: f64) -> Vec<(i32, i32)> {
    let pts = match m {
        Marker::Circle => (0..12)
            .map(|i| {
                let a = i as f64 * std::f64::consts::TAU / 12.0;
                (
                    x + (4.5 * a.cos()).round() as i32,
                    y + (4.5 * a.sin()).round() as i32,
                )
            })
            .collect(),
        Marker::Triangle => vec![(x, y - 5), (x + 5, y + 4), (x - 5, y + 4)],
        Marker::Square => vec![
            (x - 4, y - 4),
            (x + 4, y - 4),
            (x + 4, y + 4),
            (x - 4, y + 4),
        ],
        Marker::Cross => vec![
            (x - 5, y - 3),
            (x - 3, y - 5),
            (x, y - 2),
            (x + 3, y - 5),
            (x + 5, y - 3),
            (x + 2, y),
            (x + 5, y + 3),
            (x + 3, y + 5),
            (x, y + 2),
            (x - 3, y + 5),
            (x - 5, y + 3),
            (x - 2, y),
        ],
        Marker::Diamond => vec![(x, y - 6), (x + 5, y), (x, y + 6), (x - 5, y)],
    };
    pts.into_iter()
        .map(|(px, py)| {
            (
                x + ((px - x) as f64 * scale).round() as i32,
                y + ((py - y) as f64 * scale).round() as i32,
            )
        })
        .collect()
}

/// Renders with `svg` and `png` (the same drawing on each backend) and writes both files
/// atomically.
fn write_both(
    stem: &Path,
    size: (u32, u32),
    svg: impl FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> std::result::Result<(), String>,
    png: impl FnOnce(
        DrawingArea<TextBackend<BitMapBackend<'_>>, Shift>,
    ) -> std::result::Result<(), String>,
) -> Result<()> {
    register();
    let svg_path = stem.with_extension("svg");
    let mut text = String::new();
    svg(SVGBackend::with_string(&mut text, size).into_drawing_area())
        .map_err(|m| Error::usage(format!("{}: {m}", svg_path.display())))?;
    crate::atomic_file::write_atomic(&svg_path, text.as_bytes())?;
    // plotters writes the PNG itself; render to a temporary name, then rename into place.
    let png_path = stem.with_extension("png");
    let name = png_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = png_path.with_file_name(format!(".{name}.tmp-{}.png", std::process::id()));
    let drawn = png(TextBackend::new(BitMapBackend::new(&tmp, size)).into_drawing_area());
    if let Err(m) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::usage(format!("{}: {m}", png_path.display())));
    }
    std::fs::rename(&tmp, &png_path).map_err(|e| Error::io(&png_path, e))
}

/// One panel of a bar chart: a value per (series, category).
#[derive(Debug, Clone)]
pub struct BarPanel {
    /// Y axis label.
    pub y_label: String,
    /// Named series; `values[i]` belongs to category `i` (NaN: no bar).
    pub series: Vec<(String, Vec<f64>)>,
    /// Error bar half-widths, parallel to `series` (empty: none).
    pub errors: Vec<Vec<f64>>,
    /// Stack the series instead of placing them side by side.
    pub stacked: bool,
    /// Print each bar's value above it (side-by-side bars only).
    pub value_labels: bool,
}

/// Bar charts over named categories, one or more panels side by side.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// Category names (the x axis).
    pub categories: Vec<String>,
    /// X axis label.
    pub x_label: String,
    /// The panels.
    pub panels: Vec<BarPanel>,
}

impl BarChart {
    /// Horizontal bars: categories down the y axis (the first on top), values along x, so
    /// that long category names stay readable.
    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let root = root
            .titled(
                &self.title,
                (FONT_FAMILY, title_size(&self.title, root.dim_in_pixel().0)),
            )
            .map_err(|x| e(&x))?;
        let areas = root.split_evenly((1, self.panels.len().max(1)));
        let n = self.categories.len();
        let longest = self
            .categories
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(4);
        let label_px = (longest as u32 * 7 + 16).clamp(60, 340);
        let at = |i: usize| (n - 1 - i) as f64;
        let n_panels = self.panels.len();
        for (p, (panel, area)) in self.panels.iter().zip(areas).enumerate() {
            let err = |s: usize, i: usize| {
                panel
                    .errors
                    .get(s)
                    .and_then(|e| e.get(i))
                    .copied()
                    .filter(|c| c.is_finite())
                    .unwrap_or(0.0)
            };
            let top = if panel.stacked {
                (0..n)
                    .map(|i| {
                        panel
                            .series
                            .iter()
                            .map(|(_, v)| v[i])
                            .filter(|v| v.is_finite())
                            .sum::<f64>()
                    })
                    .fold(0.0f64, f64::max)
            } else {
                panel
                    .series
                    .iter()
                    .enumerate()
                    .flat_map(|(s, (_, v))| v.iter().enumerate().map(move |(i, &y)| (s, i, y)))
                    .filter(|(_, _, y)| y.is_finite())
                    .map(|(s, i, y)| y + err(s, i))
                    .fold(0.0f64, f64::max)
            };
            // Values spanning two decades or more (0.06 to 2,848 mJ) go on a log axis, where
            // every bar stays visible; bars then start at the axis' left edge.
            let positive = extent(
                panel
                    .series
                    .iter()
                    .flat_map(|(_, v)| v.iter().copied())
                    .filter(|v| *v > 0.0),
            );
            let log = !panel.stacked && is_log(AxisScale::Auto, positive);
            // Many series: room on the right for the legend (lower right), beside the bars.
            let many = panel.series.len() > 3;
            let (left, top) = if log {
                let (lo, hi) = positive.expect("log needs values");
                (
                    10f64.powf((lo / 2.0).log10().floor()),
                    hi * if many { 120.0 } else { 4.0 },
                )
            } else {
                let headroom = if many {
                    (1.18 + 0.16 * panel.series.len() as f64).min(2.3)
                } else {
                    1.18
                };
                (0.0, if top > 0.0 { top * headroom } else { 1.0 })
            };
            let names = self.categories.clone();
            let mut builder = ChartBuilder::on(&area);
            builder
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(if p == 0 { label_px } else { 12 });
            macro_rules! panel_body {
                ($xr:expr) => {{
                    let mut chart = builder
                        .build_cartesian_2d($xr, -0.5..(n as f64 - 0.5))
                        .map_err(|x| e(&x))?;
                    chart
                        .configure_mesh()
                        .disable_y_mesh()
                        .y_labels(n + 1)
                        .y_label_formatter(&move |y: &f64| {
                            let i = y.round();
                            if p == 0
                                && (y - i).abs() < 1e-6
                                && i >= 0.0
                                && (i as usize) < names.len()
                            {
                                names[names.len() - 1 - i as usize].clone()
                            } else {
                                String::new()
                            }
                        })
                        .x_desc(if log {
                            format!("{} (log scale)", panel.y_label)
                        } else {
                            panel.y_label.clone()
                        })
                        .x_label_formatter(&|v: &f64| tick(*v))
                        .label_style((FONT_FAMILY, 13))
                        .axis_desc_style((FONT_FAMILY, 15))
                        .draw()
                        .map_err(|x| e(&x))?;
                    let k = panel.series.len().max(1);
                    let height = 0.8;
                    let band = |s: usize, i: usize| {
                        if panel.stacked {
                            (at(i) - height / 2.0, at(i) + height / 2.0)
                        } else {
                            let h = height / k as f64;
                            let y1 = at(i) + height / 2.0 - s as f64 * h;
                            (y1 - h * 0.92, y1)
                        }
                    };
                    for (s, (name, values)) in panel.series.iter().enumerate() {
                        let color = PALETTE[s % PALETTE.len()];
                        let rects: Vec<Rectangle<(f64, f64)>> = values
                            .iter()
                            .enumerate()
                            .filter(|(_, v)| v.is_finite())
                            .map(|(i, &v)| {
                                let left = if panel.stacked {
                                    panel.series[..s]
                                        .iter()
                                        .map(|(_, w)| w[i])
                                        .filter(|w| w.is_finite())
                                        .sum()
                                } else {
                                    left
                                };
                                let (y0, y1) = band(s, i);
                                Rectangle::new([(left, y0), (left + v, y1)], color.filled())
                            })
                            .collect();
                        chart
                            .draw_series(rects)
                            .map_err(|x| e(&x))?
                            .label(name.clone())
                            .legend(move |(x, y)| {
                                Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                            });
                        if panel.stacked {
                            continue;
                        }
                        let bars: Vec<PathElement<(f64, f64)>> = values
                            .iter()
                            .enumerate()
                            .filter(|&(i, v)| v.is_finite() && err(s, i) > 0.0)
                            .map(|(i, &v)| {
                                let (y0, y1) = band(s, i);
                                let y = (y0 + y1) / 2.0;
                                PathElement::new(
                                    vec![((v - err(s, i)).max(left), y), (v + err(s, i), y)],
                                    BLACK.stroke_width(2),
                                )
                            })
                            .collect();
                        chart.draw_series(bars).map_err(|x| e(&x))?;
                        if panel.value_labels {
                            let texts: Vec<Text<(f64, f64), String>> = values
                                .iter()
                                .enumerate()
                                .filter(|(_, v)| v.is_finite())
                                .map(|(i, &v)| {
                                    let (y0, y1) = band(s, i);
                                    Text::new(
                                        format!(" {}", short_number(v)),
                                        (v + err(s, i), (y0 + y1) / 2.0),
                                        (FONT_FAMILY, 12)
                                            .into_font()
                                            .color(&BLACK)
                                            .pos(Pos::new(HPos::Left, VPos::Center)),
                                    )
                                })
                                .collect();
                            chart.draw_series(texts).map_err(|x| e(&x))?;
                        }
                    }
                    // One legend, in the last panel (the panels share their series).
                    if panel.series.len() > 1 && p + 1 == n_panels {
                        chart
                            .configure_series_labels()
                            .position(SeriesLabelPosition::LowerRight)
                            .label_font((FONT_FAMILY, 13))
                            .background_style(WHITE.mix(0.85))
                            .border_style(BLACK)
                            .draw()
                            .map_err(|x| e(&x))?;
                    }
                }};
            }
            if log {
                panel_body!((left..top).log_scale())
            } else {
                panel_body!(left..top)
            }
        }
        root.present().map_err(|x| e(&x))
    }

    /// Writes `<stem>.png` and `<stem>.svg`.
    pub fn write(&self, stem: &Path) -> Result<()> {
        let w = (560 * self.panels.len() as u32).max(1000);
        let h = (self.categories.len() as u32 * 34 + 160).clamp(400, 1400);
        write_both(stem, (w, h), |a| self.draw(a), |a| self.draw(a))
    }
}

/// Three significant digits, without exponent for everyday magnitudes.
fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e5 || (a > 0.0 && a < 1e-3) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A grid of values drawn as coloured cells, white (0) to dark blue (the maximum).
#[derive(Debug, Clone)]
pub struct Heatmap {
    /// Title.
    pub title: String,
    /// X axis label (columns).
    pub x_label: String,
    /// Y axis label (rows).
    pub y_label: String,
    /// What a cell's value is, for the colour bar.
    pub value_label: String,
    /// Row-major values, `rows × cols`.
    pub values: Vec<f64>,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
}

impl Heatmap {
    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let max = self
            .values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let width = root.dim_in_pixel().0;
        let root = root
            .titled(&self.title, (FONT_FAMILY, title_size(&self.title, width)))
            .map_err(|x| e(&x))?;
        let (main, bar) = root.split_horizontally(width.saturating_sub(140));
        // Cell (r, c) spans [c - 0.5, c + 0.5] x [r - 0.5, r + 0.5], so each tick sits at a
        // cell's centre and names it.
        let (cols, rows) = (self.cols as f64, self.rows as f64);
        let mut chart = ChartBuilder::on(&main)
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5..cols - 0.5, -0.5..rows - 0.5)
            .map_err(|x| e(&x))?;
        let whole = |v: &f64| {
            if (v - v.round()).abs() < 1e-6 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(self.cols.clamp(2, 33))
            .y_labels(self.rows.clamp(2, 33))
            .x_label_formatter(&whole)
            .y_label_formatter(&whole)
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FONT_FAMILY, 13))
            .axis_desc_style((FONT_FAMILY, 15))
            .draw()
            .map_err(|x| e(&x))?;
        let shade = |v: f64| {
            let t = if max > 0.0 && v.is_finite() {
                (v / max).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
            RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
        };
        chart
            .draw_series((0..self.rows).flat_map(|r| {
                (0..self.cols).map(move |c| {
                    Rectangle::new(
                        [
                            (c as f64 - 0.5, r as f64 - 0.5),
                            (c as f64 + 0.5, r as f64 + 0.5),
                        ],
                        shade(self.values[r * self.cols + c]).filled(),
                    )
                })
            }))
            .map_err(|x| e(&x))?;
        // Colour bar.
        let mut scale = ChartBuilder::on(&bar)
            .margin_top(50)
            .margin_bottom(54)
            .margin_right(8)
            .y_label_area_size(84)
            .build_cartesian_2d(0.0..1.0, 0.0..max.max(f64::MIN_POSITIVE))
            .map_err(|x| e(&x))?;
        scale
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_desc(&self.value_label)
            .y_label_formatter(&|v: &f64| tick(*v))
            .label_style((FONT_FAMILY, 12))
            .axis_desc_style((FONT_FAMILY, 13))
            .draw()
            .map_err(|x| e(&x))?;
        let steps = 64;
        scale
            .draw_series((0..steps).map(|i| {
                let lo = max * i as f64 / steps as f64;
                let hi = max * (i + 1) as f64 / steps as f64;
                Rectangle::new([(0.0, lo), (1.0, hi)], shade(lo).filled())
            }))
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))
    }

    /// Writes `<stem>.png` and `<stem>.svg`.
    pub fn write(&self, stem: &Path) -> Result<()> {
        write_both(stem, (1000, 650), |a| self.draw(a), |a| self.draw(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_spanning_decades_go_log_and_integer_axes_tick_integers() {
        assert!(is_log(AxisScale::Auto, Some((0.06, 2848.0))));
        assert!(!is_log(AxisScale::Auto, Some((0.5, 20.0))));
        assert!(
            !is_log(AxisScale::Auto, Some((0.0, 2848.0))),
            "zero cannot go on a log axis"
        );
        assert!(!is_log(AxisScale::Log, Some((-1.0, 10.0))));
        assert!(integral(&[1.0, 2.0, 7.0]));
        assert!(!integral(&[1.0, 2.5]));
        assert!(!integral(&[0.0, 1000.0]), "too many to tick each");
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(20.0), "20");
        assert_eq!(tick(2848.0), "2848");
        assert_eq!(tick(0.0601), "0.0601");
    }

    #[test]
    fn writes_png_and_svg() {
        let dir = std::env::temp_dir().join(format!("moesim-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let chart = XyChart {
            title: "SQNR against bits per weight".into(),
            x_label: "bits per weight".into(),
            y_label: "SQNR (dB)".into(),
            series: vec![
                Series {
                    name: "k-quants".into(),
                    points: vec![(2.6, 10.5), (3.4, 16.4), (4.5, 22.9)],
                    band: vec![(2.6, 10.0, 11.0), (3.4, 16.0, 17.0), (4.5, 22.0, 23.5)],
                    ..Default::default()
                },
                Series {
                    name: "uniform".into(),
                    points: vec![(2.06, 8.3), (3.06, 14.0), (f64::NAN, 1.0)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        chart.write(&dir.join("chart")).unwrap();
        let png = std::fs::read(dir.join("chart.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(dir.join("chart.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("k-quants"));
        assert!(
            std::fs::read_dir(&dir).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("tmp"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
