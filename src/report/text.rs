//! Text rasterised properly on a bitmap backend.
//!
//! plotters' built-in `ab_glyph` text drawing truncates each glyph's pen position to whole
//! pixels and ignores the glyph's left side bearing, so letters crowd or gap ("n ano"), and it
//! places glyphs against a box that is not the font's baseline, which drew decimal points at
//! mid-height ("20·0"). [`TextBackend`] wraps a backend and draws text itself: glyphs on one
//! baseline at sub-pixel pen positions with the font's kerning, anti-aliased by coverage. It
//! measures text the same way, so plotters lays out labels and legends for what is drawn.
//! Everything else goes straight to the wrapped backend.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use plotters_backend::FontTransform;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

use super::font::font_bytes;

/// A backend whose text is drawn by moesim's own rasteriser (see the module doc).
#[derive(Debug)]
pub struct TextBackend<B> {
    inner: B,
}

impl<B> TextBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> TextBackend<B> {
        TextBackend { inner }
    }
}

/// The laid-out text: each glyph's outline position, and the box's width and height.
struct Layout {
    width: f32,
    ascent: f32,
    height: f32,
}

fn font() -> &'static FontRef<'static> {
    static FONT: std::sync::OnceLock<FontRef<'static>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| {
        FontRef::try_from_slice(font_bytes()).expect("the embedded font is a valid TTF")
    })
}

/// Lays out `text` at `size` px on one baseline; calls `glyph` with each glyph id and pen x.
fn layout(
    f: &FontRef<'static>,
    size: f32,
    text: &str,
    mut glyph: impl FnMut(ab_glyph::GlyphId, f32),
) -> Layout {
    let scaled = f.as_scaled(PxScale::from(size));
    let mut caret = 0.0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        glyph(id, caret);
        caret += scaled.h_advance(id);
        prev = Some(id);
    }
    Layout {
        width: caret,
        ascent: scaled.ascent(),
        height: scaled.ascent() - scaled.descent(),
    }
}

impl<B: DrawingBackend> DrawingBackend for TextBackend<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<B::ErrorType>> {
        let l = layout(font(), style.size() as f32, text, |_, _| {});
        Ok((l.width.ceil() as u32, l.height.ceil() as u32))
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 || text.is_empty() {
            return Ok(());
        }
        let f = font();
        let size = style.size() as f32;
        let mut glyphs = Vec::new();
        let l = layout(f, size, text, |id, x| glyphs.push((id, x)));
        // The anchor point's offset into the unrotated text box.
        let dx = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Center => -l.width / 2.0,
            HPos::Right => -l.width,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0.0,
            VPos::Center => -l.height / 2.0,
            VPos::Bottom => -l.height,
        };
        let transform = style.transform();
        let (w, h) = self.get_size();
        let mut pixels: Vec<(i32, i32, f32)> = Vec::new();
        for (id, x) in glyphs {
            let g = id.with_scale_and_position(PxScale::from(size), point(x + dx, l.ascent + dy));
            if let Some(outline) = f.outline_glyph(g) {
                let b = outline.px_bounds();
                outline.draw(|gx, gy, coverage| {
                    if coverage > 0.0 {
                        pixels.push((
                            b.min.x as i32 + gx as i32,
                            b.min.y as i32 + gy as i32,
                            coverage,
                        ));
                    }
                });
            }
        }
        for (x, y, coverage) in pixels {
            let (rx, ry) = match transform {
                FontTransform::None => (x, y),
                FontTransform::Rotate90 => (-y, x),
                FontTransform::Rotate180 => (-x, -y),
                FontTransform::Rotate270 => (y, -x),
            };
            let (px, py) = (pos.0 + rx, pos.1 + ry);
            if px >= 0 && py >= 0 && (px as u32) < w && (py as u32) < h {
                self.inner.draw_pixel(
                    (px, py),
                    BackendColor {
                        alpha: color.alpha * coverage.min(1.0) as f64,
                        rgb: color.rgb,
                    },
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use plotters::prelude::*;

    use super::*;
    use crate::report::font::{FONT_FAMILY, register};

    /// Renders `text` left-top anchored at (4, 4) and returns the dark pixels.
    fn ink(text: &str) -> Vec<(u32, u32)> {
        register();
        let (w, h) = (800u32, 60u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let root =
                TextBackend::new(BitMapBackend::with_buffer(&mut buf, (w, h))).into_drawing_area();
            root.draw(&Text::new(
                text.to_string(),
                (4, 4),
                (FONT_FAMILY, 40).into_font().color(&BLACK),
            ))
            .unwrap();
            root.present().unwrap();
        }
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| buf[((y * w + x) * 3) as usize] < 128)
            .collect()
    }

    /// The decimal point sits on the digits' baseline, not at mid-height ("20·0"), and the
    /// glyphs do not overlap.
    #[test]
    fn a_decimal_point_sits_on_the_baseline() {
        let ink = ink("0.0");
        // Columns with ink, grouped into runs: zero, dot, zero.
        let mut cols: Vec<u32> = ink.iter().map(|p| p.0).collect();
        cols.sort_unstable();
        cols.dedup();
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for c in cols {
            match runs.last_mut() {
                Some(r) if c == r.1 + 1 => r.1 = c,
                _ => runs.push((c, c)),
            }
        }
        assert_eq!(runs.len(), 3, "three separate glyphs: {runs:?}");
        let rows = |(a, b): (u32, u32)| -> (u32, u32) {
            let ys: Vec<u32> = ink
                .iter()
                .filter(|p| p.0 >= a && p.0 <= b)
                .map(|p| p.1)
                .collect();
            (*ys.iter().min().unwrap(), *ys.iter().max().unwrap())
        };
        let (top, bottom) = rows(runs[0]);
        let (dot_top, dot_bottom) = rows(runs[1]);
        assert!(
            dot_top as f64 > top as f64 + 0.7 * (bottom - top) as f64,
            "the dot spans rows {dot_top}..{dot_bottom}, the digit {top}..{bottom}"
        );
        assert!(
            dot_bottom <= bottom + 1 && dot_bottom + 1 >= bottom,
            "the dot sits on the baseline"
        );
        assert_eq!(rows(runs[2]), (top, bottom), "both zeros on one baseline");
    }

    /// A measured width matches the drawn width (up to the side bearings), so plotters
    /// lays out legends and labels for what is drawn.
    #[test]
    fn measured_and_drawn_widths_agree() {
        let text = "decode throughput (tokens/s)";
        let drawn = ink(text);
        let (lo, hi) = (
            drawn.iter().map(|p| p.0).min().unwrap(),
            drawn.iter().map(|p| p.0).max().unwrap(),
        );
        let l = layout(font(), 40.0, text, |_, _| {});
        let width = hi - lo + 1;
        // The advance width includes the first and last glyphs' side bearings (a few pixels
        // at 40 px), which carry no ink.
        assert!(
            width as f32 <= l.width + 1.0 && width as f32 >= l.width - 8.0,
            "drawn {width} px, measured {}",
            l.width
        );
    }
}
