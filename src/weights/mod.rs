//! Reading and writing weight matrices: NumPy `.npy` (f32 or f16, 2-D) and `.safetensors`
//! (F32, F16 or BF16 tensors by name). Every failure is one line naming the file and why.

pub mod experts;
pub mod gguf_experts;
pub mod npy;
pub mod safetensors;

use std::path::Path;

use crate::error::{Error, InputError, Result};

/// A 2-D f32 matrix read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Refuses a matrix holding a NaN or an infinity, naming the first one's row and column.
    pub fn check_finite(self) -> std::result::Result<Matrix, String> {
        match self.data.iter().position(|v| !v.is_finite()) {
            None => Ok(self),
            Some(i) => Err(format!(
                "row {}, column {}: {} is not a finite weight",
                i / self.cols.max(1),
                i % self.cols.max(1),
                self.data[i]
            )),
        }
    }
}

/// Reads `path` as `.npy`, or as `.safetensors` with `tensor` naming the tensor (by extension).
pub fn read_matrix(path: &Path, tensor: Option<&str>) -> Result<Matrix> {
    let label = path.display().to_string();
    let bytes = crate::input::read(path)?;
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let m = if is_safetensors {
        let Some(name) = tensor else {
            return Err(Error::usage(format!(
                "{label}: a .safetensors file needs --tensor NAME"
            )));
        };
        safetensors::read_tensor(&bytes, name)
    } else {
        if tensor.is_some() {
            return Err(Error::usage(format!(
                "{label}: --tensor applies to .safetensors files only"
            )));
        }
        npy::read(&bytes)
    };
    m.and_then(Matrix::check_finite)
        .map_err(|reason| Error::Input(InputError::new(label, reason)))
}
