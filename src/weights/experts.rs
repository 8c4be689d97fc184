//! Proxy experts from a real `.safetensors` checkpoint: tensor names are templates in which
//! `{layer}` and `{expert}` stand for the MoE layer and the expert index (for Mixtral,
//! `model.layers.{layer}.block_sparse_moe.experts.{expert}.w1.weight`). The file is read once.

use std::path::Path;

use crate::error::{Error, InputError, Result};
use crate::quality::{ExpertWeights, WeightSource};

/// Experts read from one `.safetensors` file.
#[derive(Debug, Clone)]
pub struct SafetensorsExperts {
    label: String,
    bytes: Vec<u8>,
    templates: [String; 3],
    hidden: usize,
    ffn: usize,
}

fn name(template: &str, layer: u32, expert: u32) -> String {
    template
        .replace("{layer}", &layer.to_string())
        .replace("{expert}", &expert.to_string())
}

impl SafetensorsExperts {
    /// Opens `path` and checks expert (0, 0): `w1` and `w3` of `ffn × hidden`, `w2` of
    /// `hidden × ffn`, both widths multiples of 256.
    pub fn open(path: &Path, w1: &str, w2: &str, w3: &str) -> Result<SafetensorsExperts> {
        let label = path.display().to_string();
        let bytes = crate::input::read(path)?;
        let mut s = SafetensorsExperts {
            label: label.clone(),
            bytes,
            templates: [w1.to_string(), w2.to_string(), w3.to_string()],
            hidden: 0,
            ffn: 0,
        };
        let first = super::safetensors::read_tensor(&s.bytes, &name(w1, 0, 0))
            .map_err(|r| Error::Input(InputError::new(label.clone(), r)))?;
        s.ffn = first.rows;
        s.hidden = first.cols;
        if !s.hidden.is_multiple_of(256) || !s.ffn.is_multiple_of(256) {
            return Err(Error::Input(InputError::new(
                label,
                format!(
                    "expert weights of {} × {}: both widths must be multiples of 256 (the K-quant super-block)",
                    s.ffn, s.hidden
                ),
            )));
        }
        s.expert(0, 0)
            .map_err(|r| Error::Input(InputError::new(s.label.clone(), r)))?;
        Ok(s)
    }
}

impl WeightSource for SafetensorsExperts {
    fn hidden(&self) -> usize {
        self.hidden
    }

    fn ffn(&self) -> usize {
        self.ffn
    }

    fn expert(&self, layer: u32, expert: u32) -> std::result::Result<ExpertWeights, String> {
        let (d, f) = (self.hidden, self.ffn);
        let mut m = Vec::with_capacity(3);
        for (t, want) in self.templates.iter().zip([(f, d), (d, f), (f, d)]) {
            let n = name(t, layer, expert);
            let x = super::safetensors::read_tensor(&self.bytes, &n)
                .and_then(super::Matrix::check_finite)
                .map_err(|r| format!("{}: tensor `{n}`: {r}", self.label))?;
            if (x.rows, x.cols) != want {
                return Err(format!(
                    "{}: tensor `{n}` is {} × {}, expected {} × {}",
                    self.label, x.rows, x.cols, want.0, want.1
                ));
            }
            m.push(x.data);
        }
        let w3 = m.pop().expect("three");
        let w2 = m.pop().expect("three");
        let w1 = m.pop().expect("three");
        Ok(ExpertWeights {
            hidden: d,
            ffn: f,
            w1,
            w2,
            w3,
        })
    }
}
