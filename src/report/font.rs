//! The embedded plot font.

use std::sync::Once;

use plotters::style::FontStyle;

/// The family name plots use; registered by [`register`].
pub const FONT_FAMILY: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// The embedded font's bytes (for [`super::text`], which rasterises PNG text itself).
pub fn font_bytes() -> &'static [u8] {
    DEJAVU_SANS
}

/// Registers the embedded font with plotters under [`FONT_FAMILY`]; idempotent.
pub fn register() {
    REGISTER.call_once(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, DEJAVU_SANS)
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font is a valid TTF"));
    });
}

#[cfg(test)]
mod tests {
    use plotters::prelude::*;

    use super::*;

    /// Draws a labelled chart on both backends: this fails if text rendering needs a system
    /// font library or the font does not load.
    #[test]
    fn renders_png_and_svg_with_embedded_font() {
        register();
        let mut pixels = vec![0u8; 320 * 240 * 3];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (320, 240)).into_drawing_area();
            root.fill(&WHITE).unwrap();
            let mut chart = ChartBuilder::on(&root)
                .caption("hit rate", (FONT_FAMILY, 20))
                .x_label_area_size(30)
                .y_label_area_size(30)
                .build_cartesian_2d(0f64..1f64, 0f64..1f64)
                .unwrap();
            chart
                .configure_mesh()
                .x_desc("lambda")
                .label_style((FONT_FAMILY, 12))
                .draw()
                .unwrap();
            chart
                .draw_series(LineSeries::new([(0.0, 0.1), (1.0, 0.9)], &BLUE))
                .unwrap();
            root.present().unwrap();
        }
        // Text was rasterised: some pixels are neither white nor the blue line.
        let dark = pixels
            .chunks(3)
            .filter(|p| p[0] < 100 && p[1] < 100 && p[2] < 100)
            .count();
        assert!(
            dark > 50,
            "expected rendered glyphs, found {dark} dark pixels"
        );

        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (320, 240)).into_drawing_area();
            root.fill(&WHITE).unwrap();
            root.draw(&Text::new("moesim", (10, 10), (FONT_FAMILY, 12)))
                .unwrap();
            root.present().unwrap();
        }
        assert!(svg.contains("moesim"));
    }
}
