//! Output only: plots and CSV reports. Nothing here feeds back into a
//! simulation.
//!
//! Plots are drawn with plotters on its bitmap (PNG) and SVG backends. Text uses DejaVu Sans,
//! compiled into the binary (`fonts/`, Bitstream Vera license) and registered with plotters'
//! `ab_glyph` text renderer, so rendering needs no system font library.

pub mod flat_csv;
pub mod font;
pub mod parts;
pub mod plot;
pub mod sweep;
