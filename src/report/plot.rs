//! Line-and-marker charts of a few named series, written as PNG and SVG with the embedded font.

use std::path::Path;

use plotters::prelude::*;

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

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
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
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT_FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))
    }

    /// Writes `<stem>.png` (1000×650) and `<stem>.svg` next to each other, each atomically.
    pub fn write(&self, stem: &Path) -> Result<()> {
        register();
        let svg_path = stem.with_extension("svg");
        let mut svg = String::new();
        self.draw(SVGBackend::with_string(&mut svg, (1000, 650)).into_drawing_area())
            .map_err(|m| Error::usage(format!("{}: {m}", svg_path.display())))?;
        crate::atomic_file::write_atomic(&svg_path, svg.as_bytes())?;
        // plotters writes the PNG itself; render to a temporary name, then rename into place.
        let png_path = stem.with_extension("png");
        let name = png_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = png_path.with_file_name(format!(".{name}.tmp-{}.png", std::process::id()));
        let drawn = self.draw(BitMapBackend::new(&tmp, (1000, 650)).into_drawing_area());
        if let Err(m) = drawn {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::usage(format!("{}: {m}", png_path.display())));
        }
        std::fs::rename(&tmp, &png_path).map_err(|e| Error::io(&png_path, e))
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
