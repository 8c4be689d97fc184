//! Line-and-marker charts of a few named series, written as PNG and SVG with the embedded font.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::font::{FONT_FAMILY, register};
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

/// A chart of series against two numeric axes.
#[derive(Debug, Clone)]
pub struct XyChart {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The series.
    pub series: Vec<Series>,
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

impl XyChart {
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let pts = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        for &(_, lo, hi) in self.series.iter().flat_map(|s| s.band.iter()) {
            if lo.is_finite() && hi.is_finite() {
                y0 = y0.min(lo);
                y1 = y1.max(hi);
            }
        }
        if !x0.is_finite() {
            return ((0.0, 1.0), (0.0, 1.0));
        }
        let pad = |a: f64, b: f64| {
            let d = if b > a {
                (b - a) * 0.06
            } else {
                a.abs().max(1.0) * 0.1
            };
            (a - d, b + d)
        };
        (pad(x0, x1), pad(y0, y1))
    }

    /// The legend corner with the fewest points near it (upper right first on ties).
    fn emptiest_corner(
        &self,
        ((x0, x1), (y0, y1)): ((f64, f64), (f64, f64)),
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
                    let fx = (x - x0) / (x1 - x0);
                    let fy = (y - y0) / (y1 - y0);
                    (if right { fx > 0.6 } else { fx < 0.4 })
                        && (if top { fy > 0.55 } else { fy < 0.45 })
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
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, (FONT_FAMILY, 22))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FONT_FAMILY, 14))
            .axis_desc_style((FONT_FAMILY, 15))
            .draw()
            .map_err(|x| e(&x))?;
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
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
            let line = if s.scatter { Vec::new() } else { pts.clone() };
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|x| e(&x))?;
        }
        let corner = self.emptiest_corner(((x0, x1), (y0, y1)));
        chart
            .configure_series_labels()
            .position(corner)
            .label_font((FONT_FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))
    }

    /// Writes `<stem>.png` (1000×650) and `<stem>.svg` next to each other, each atomically.
    pub fn write(&self, stem: &Path) -> Result<()> {
        write_both(stem, (1000, 650), |a| self.draw(a), |a| self.draw(a))
    }
}

/// Renders with `svg` and `png` (the same drawing on each backend) and writes both files
/// atomically.
fn write_both(
    stem: &Path,
    size: (u32, u32),
    svg: impl FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> std::result::Result<(), String>,
    png: impl FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> std::result::Result<(), String>,
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
    let drawn = png(BitMapBackend::new(&tmp, size).into_drawing_area());
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
            .titled(&self.title, (FONT_FAMILY, 22))
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
            let top = if top > 0.0 { top * 1.18 } else { 1.0 };
            let names = self.categories.clone();
            let mut chart = ChartBuilder::on(&area)
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(if p == 0 { label_px } else { 12 })
                .build_cartesian_2d(0.0..top, -0.5..(n as f64 - 0.5))
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(n + 1)
                .y_label_formatter(&move |y: &f64| {
                    let i = y.round();
                    if p == 0 && (y - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                        names[names.len() - 1 - i as usize].clone()
                    } else {
                        String::new()
                    }
                })
                .x_desc(&panel.y_label)
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
                            0.0
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
                            vec![(v - err(s, i), y), (v + err(s, i), y)],
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
            if panel.series.len() > 1 {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::LowerRight)
                    .label_font((FONT_FAMILY, 13))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|x| e(&x))?;
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
        let (main, bar) = root.split_horizontally(root.dim_in_pixel().0.saturating_sub(110));
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, (FONT_FAMILY, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..self.cols as f64, 0.0..self.rows as f64)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
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
                        [(c as f64, r as f64), (c as f64 + 1.0, r as f64 + 1.0)],
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
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..1.0, 0.0..max.max(f64::MIN_POSITIVE))
            .map_err(|x| e(&x))?;
        scale
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .label_style((FONT_FAMILY, 12))
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
                    scatter: false,
                },
                Series {
                    name: "uniform".into(),
                    points: vec![(2.06, 8.3), (3.06, 14.0), (f64::NAN, 1.0)],
                    ..Default::default()
                },
            ],
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
