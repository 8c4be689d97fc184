//! GGUF files (llama.cpp's model format): the header reader ([`read::read_header`], metadata and
//! tensor descriptions, never tensor data), the ggml type table ([`types`]) and the MoE model a
//! file holds ([`model::GgufModel`]: shape, per-layer expert formats and bytes, a moesim spec).
//!
//! **Architecture Invariant:** the reader and the model take a reader and the file's length;
//! [`file::read`] is the one function that opens a file.

pub mod file;
pub mod layout;
pub mod mix;
pub mod model;
pub mod read;
pub mod types;

pub use model::GgufModel;
pub use read::{GgufHeader, ReadError, read_header};
