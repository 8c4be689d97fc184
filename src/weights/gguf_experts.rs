//! Proxy experts read from a GGUF file: each routed expert's gate, up and down projections
//! sliced out of the merged `blk.N.ffn_{gate,up,down}_exps` tensors and dequantized from the
//! file's own bytes (any type moesim decodes: the float types, the legacy and K-quants, IQ4,
//! MXFP4, the ternary and lattice i-quants). The file is never read whole: each expert's three
//! slices are read on demand (three positioned reads), so a 60 GB file costs what its sampled
//! experts cost.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, InputError, Result};
use crate::gguf::read::TensorInfo;
use crate::quality::{ExpertWeights, WeightSource};

/// One MoE block's three merged expert tensors.
#[derive(Debug, Clone)]
struct BlockTensors {
    gate: TensorInfo,
    up: TensorInfo,
    down: TensorInfo,
}

/// Routed experts read from a GGUF file.
#[derive(Debug)]
pub struct GgufExperts {
    label: String,
    file: Mutex<std::fs::File>,
    data_offset: u64,
    /// Per MoE layer (in block order).
    blocks: Vec<BlockTensors>,
    experts: u64,
    hidden: usize,
    ffn: usize,
}

impl GgufExperts {
    /// Opens `path`, reads its header and checks that every MoE block has gate, up and down
    /// expert tensors of one shape, both widths multiples of 256 (the K-quant super-block the
    /// quality path requantizes into), in types moesim decodes; then reads expert (0, 0).
    pub fn open(path: &Path) -> Result<GgufExperts> {
        let label = path.display().to_string();
        let bad = |at: &str, reason: String| Error::Input(InputError::at_key(&label, at, reason));
        let (h, m) = crate::gguf::file::read(path)?;
        let mut blocks = Vec::new();
        for l in &m.moe_layers {
            let get = |s: &str| {
                h.tensor(&format!("blk.{}.{s}_exps.weight", l.layer))
                    .cloned()
            };
            let (Some(gate), Some(up), Some(down)) =
                (get("ffn_gate"), get("ffn_up"), get("ffn_down"))
            else {
                return Err(bad(
                    &format!("blk.{}.ffn_gate_exps.weight", l.layer),
                    "missing: the quality path's experts are gated (SwiGLU) and need gate, up and down projections".into(),
                ));
            };
            for t in [&gate, &up, &down] {
                let mut probe = vec![0.0f32; t.ggml_type.block_values as usize];
                let zero = vec![0u8; t.ggml_type.block_bytes as usize];
                crate::quant::dequantize_ggml(t.ggml_type.name, &zero, &mut probe)
                    .map_err(|r| bad(&t.name, r))?;
            }
            blocks.push(BlockTensors { gate, up, down });
        }
        let (hidden, ffn) = (m.hidden as usize, m.expert_ffn as usize);
        if !hidden.is_multiple_of(256) || !ffn.is_multiple_of(256) {
            return Err(bad(
                "blk.0.ffn_up_exps.weight",
                format!(
                    "experts of {ffn} × {hidden}: both widths must be multiples of 256 (the K-quant super-block the quality path requantizes into)"
                ),
            ));
        }
        let file = crate::input::open(path)?;
        let s = GgufExperts {
            label: label.clone(),
            file: Mutex::new(file),
            data_offset: h.data_offset,
            blocks,
            experts: m.experts as u64,
            hidden,
            ffn,
        };
        s.expert(0, 0)
            .map_err(|r| Error::Input(InputError::new(label, r)))?;
        Ok(s)
    }

    /// MoE layers the file has.
    pub fn layers(&self) -> usize {
        self.blocks.len()
    }

    /// Routed experts per MoE layer.
    pub fn experts(&self) -> u64 {
        self.experts
    }

    /// Where the file's tensor data starts (its header's length).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Expert `expert`'s slice of merged tensor `t`, dequantized (`rows × cols`).
    fn slice(
        &self,
        t: &TensorInfo,
        expert: u64,
        rows: usize,
        cols: usize,
    ) -> std::result::Result<Vec<f32>, String> {
        let per = t.bytes / self.experts;
        let mut buf = vec![0u8; per as usize];
        {
            let mut f = self
                .file
                .lock()
                .map_err(|_| "the file handle was poisoned".to_string())?;
            f.seek(SeekFrom::Start(self.data_offset + t.offset + expert * per))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|e| format!("{}: tensor `{}`: {e}", self.label, t.name))?;
        }
        let mut out = vec![0.0f32; rows * cols];
        crate::quant::dequantize_ggml(t.ggml_type.name, &buf, &mut out)
            .map_err(|r| format!("{}: tensor `{}`: {r}", self.label, t.name))?;
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "{}: tensor `{}`, expert {expert}: value {i} is not finite",
                self.label, t.name
            ));
        }
        Ok(out)
    }
}

impl WeightSource for GgufExperts {
    fn hidden(&self) -> usize {
        self.hidden
    }

    fn ffn(&self) -> usize {
        self.ffn
    }

    fn expert(&self, layer: u32, expert: u32) -> std::result::Result<ExpertWeights, String> {
        let b = self.blocks.get(layer as usize).ok_or_else(|| {
            format!(
                "{}: MoE layer {layer} asked for, the file has {}",
                self.label,
                self.blocks.len()
            )
        })?;
        if expert as u64 >= self.experts {
            return Err(format!(
                "{}: expert {expert} asked for, the file has {} per layer",
                self.label, self.experts
            ));
        }
        let (d, f, e) = (self.hidden, self.ffn, expert as u64);
        Ok(ExpertWeights {
            hidden: d,
            ffn: f,
            w1: self.slice(&b.gate, e, f, d)?,
            w2: self.slice(&b.down, e, d, f)?,
            w3: self.slice(&b.up, e, f, d)?,
        })
    }
}
