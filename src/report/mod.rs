//! Output only: plots and the pieces of reports. Nothing here feeds back into a simulation,
//! and nothing here knows of experiments or sweeps: the sweep module hands the report what it
//! needs (the summarised points, the `[report]` section) as arguments.
//!
//! Plots are drawn with plotters on its bitmap (PNG) and SVG backends. Text uses DejaVu Sans,
//! compiled into the binary (`fonts/`, Bitstream Vera license); SVG text is laid out by the
//! viewer, PNG text is rasterised by [`text::TextBackend`] with `ab_glyph`, so rendering needs
//! no system font library.

pub mod flat_csv;
pub mod font;
pub mod kind;
pub mod metrics;
pub mod numbers;
pub mod plot;
pub mod plots;
pub mod seed_table;
pub mod text;
