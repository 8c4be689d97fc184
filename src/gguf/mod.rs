//! GGUF files (llama.cpp's model format): the header reader ([`read::read_header`], metadata and
//! tensor descriptions, never tensor data), the ggml type table ([`types`]) and the MoE model a
//! file holds ([`model::GgufModel`]: shape, per-layer expert formats and bytes, a moesim spec).
//!
//! **Architecture Invariant:** no I/O here: callers hand in a reader and the file's length.

pub mod model;
pub mod read;
pub mod types;

pub use model::GgufModel;
pub use read::{GgufHeader, ReadError, read_header};
