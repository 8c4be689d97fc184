//! Output only: plots and CSV reports. Nothing here feeds back into a
//! simulation.
//!
//! Plots are drawn with plotters on its bitmap (PNG) and SVG backends. Text uses DejaVu Sans,
//! compiled into the binary (`fonts/`, Bitstream Vera license); SVG text is laid out by the
//! viewer, PNG text is rasterised by [`text::TextBackend`] with `ab_glyph`, so rendering needs
//! no system font library.

pub mod flat_csv;
pub mod font;
pub mod parts;
pub mod plot;
pub mod sweep;
pub mod text;
