//! Weight formats: their block layout, exact bits per weight and compute class.
//!
//! Sizes follow ggml's `ggml-common.h` (see `../shared/reference/moe-models.md` §4): a format
//! stores `weights_per_block` weights in `bytes_per_block` bytes, scales included. The compute
//! class is the column of a hardware profile's throughput table that times a kernel of the format.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A storage format for expert weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// IEEE single precision, the quality reference.
    F32,
    /// IEEE half precision.
    F16,
    /// ggml Q8_0: 32 weights, fp16 scale + 32 int8.
    #[serde(rename = "q8_0")]
    Q8_0,
    /// ggml Q4_0: 32 weights, fp16 scale + 16 bytes of nibbles.
    #[serde(rename = "q4_0")]
    Q4_0,
    /// ggml Q4_1: 32 weights, fp16 scale and minimum + 16 bytes of nibbles.
    #[serde(rename = "q4_1")]
    Q4_1,
    /// ggml Q5_0: 32 weights, fp16 scale + 4 bytes of fifth bits + 16 bytes of nibbles.
    #[serde(rename = "q5_0")]
    Q5_0,
    /// ggml Q5_1: 32 weights, fp16 scale and minimum + fifth bits + nibbles.
    #[serde(rename = "q5_1")]
    Q5_1,
    /// ggml Q6_K: 256 weights, 128 B low nibbles, 64 B high bits, 16 int8 scales, fp16 d.
    #[serde(rename = "q6_k")]
    Q6K,
    /// ggml Q5_K: 256 weights, fp16 d and dmin, 12 B of 6-bit scales, 32 B fifth bits, 128 B.
    #[serde(rename = "q5_k")]
    Q5K,
    /// ggml IQ4_NL: 32 weights, fp16 scale + 16 B of indices into 16 non-uniform levels.
    #[serde(rename = "iq4_nl")]
    Iq4Nl,
    /// ggml IQ4_XS: 256 weights, IQ4_NL's levels with a 6-bit scale per 32, fp16 d.
    #[serde(rename = "iq4_xs")]
    Iq4Xs,
    /// MXFP4 (OCP microscaling): 32 FP4 E2M1 weights + one E8M0 power-of-two scale.
    #[serde(rename = "mxfp4")]
    Mxfp4,
    /// ggml Q4_K: 256 weights, fp16 d and dmin, 12 bytes of 6-bit scales, 128 bytes of nibbles.
    #[serde(rename = "q4_k")]
    Q4K,
    /// ggml Q3_K: 256 weights, 32 B high bits, 64 B low bits, 12 B scales, fp16 d.
    #[serde(rename = "q3_k")]
    Q3K,
    /// ggml Q2_K: 256 weights, 16 B scales, 64 B codes, fp16 d and dmin.
    #[serde(rename = "q2_k")]
    Q2K,
    /// ggml TQ2_0: 256 ternary weights at 2 bits each + fp16 scale.
    #[serde(rename = "tq2_0")]
    TQ2_0,
    /// ggml TQ1_0: 256 ternary weights, 5 trits per byte + fp16 scale.
    #[serde(rename = "tq1_0")]
    TQ1_0,
    /// BitNet b1.58: absmean-ternarized weights in TQ2_0 blocks.
    Bitnet,
    /// The seed's pi-constant 3-bit quantizer (k = 4): 256 weights, f16 α + 96 B of codes.
    Piq3,
    /// The seed's pi-constant 2-bit quantizer (k = 3): 256 weights, f16 α + 64 B of codes.
    Piq2,
    /// Uniform 4-bit grid with the MSE-optimal step per 256 weights (f16 step + 128 B).
    Uq4,
    /// Uniform 3-bit grid with the MSE-optimal step (the baseline for PiQ3).
    Uq3,
    /// Uniform 2-bit grid with the MSE-optimal step (the baseline for PiQ2).
    Uq2,
}

/// The throughput class a hardware profile gives a rate for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeClass {
    /// 16-bit floating-point weights.
    F16,
    /// 8-bit integer weights.
    Q8,
    /// 4-bit weights.
    Q4,
    /// 3-bit weights.
    Q3,
    /// 2-bit weights.
    Q2,
    /// Ternary (1.58-bit) weights.
    Ternary,
}

impl WeightFormat {
    /// Every format, most bits first.
    pub const ALL: [WeightFormat; 23] = [
        WeightFormat::F32,
        WeightFormat::F16,
        WeightFormat::Q8_0,
        WeightFormat::Q6K,
        WeightFormat::Q5_1,
        WeightFormat::Q5_0,
        WeightFormat::Q5K,
        WeightFormat::Q4_1,
        WeightFormat::Q4_0,
        WeightFormat::Iq4Nl,
        WeightFormat::Q4K,
        WeightFormat::Iq4Xs,
        WeightFormat::Mxfp4,
        WeightFormat::Uq4,
        WeightFormat::Q3K,
        WeightFormat::Piq3,
        WeightFormat::Uq3,
        WeightFormat::Q2K,
        WeightFormat::TQ2_0,
        WeightFormat::Bitnet,
        WeightFormat::Piq2,
        WeightFormat::Uq2,
        WeightFormat::TQ1_0,
    ];

    /// The formats llama.cpp deploys experts in (the tables of `profile show` and
    /// `model show` list these; the others are research formats with their own kernels).
    pub const DEPLOYABLE: [WeightFormat; 16] = [
        WeightFormat::F16,
        WeightFormat::Q8_0,
        WeightFormat::Q6K,
        WeightFormat::Q5_1,
        WeightFormat::Q5_0,
        WeightFormat::Q5K,
        WeightFormat::Q4_1,
        WeightFormat::Q4_0,
        WeightFormat::Iq4Nl,
        WeightFormat::Q4K,
        WeightFormat::Iq4Xs,
        WeightFormat::Mxfp4,
        WeightFormat::Q3K,
        WeightFormat::Q2K,
        WeightFormat::TQ2_0,
        WeightFormat::TQ1_0,
    ];

    /// Lower-case name as used in TOML, CSV and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::F16 => "f16",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::Q4_0 => "q4_0",
            WeightFormat::Q4_1 => "q4_1",
            WeightFormat::Q5_0 => "q5_0",
            WeightFormat::Q5_1 => "q5_1",
            WeightFormat::Q5K => "q5_k",
            WeightFormat::Q6K => "q6_k",
            WeightFormat::Iq4Nl => "iq4_nl",
            WeightFormat::Iq4Xs => "iq4_xs",
            WeightFormat::Mxfp4 => "mxfp4",
            WeightFormat::Q4K => "q4_k",
            WeightFormat::Q3K => "q3_k",
            WeightFormat::Q2K => "q2_k",
            WeightFormat::TQ2_0 => "tq2_0",
            WeightFormat::TQ1_0 => "tq1_0",
            WeightFormat::Bitnet => "bitnet",
            WeightFormat::Piq3 => "piq3",
            WeightFormat::Piq2 => "piq2",
            WeightFormat::Uq4 => "uq4",
            WeightFormat::Uq3 => "uq3",
            WeightFormat::Uq2 => "uq2",
        }
    }

    /// The family a format belongs to (plot series, reports).
    pub fn family(self) -> &'static str {
        match self {
            WeightFormat::F32 | WeightFormat::F16 => "float",
            WeightFormat::Q8_0
            | WeightFormat::Q4_0
            | WeightFormat::Q4_1
            | WeightFormat::Q5_0
            | WeightFormat::Q5_1 => "ggml legacy",
            WeightFormat::Q6K
            | WeightFormat::Q5K
            | WeightFormat::Q4K
            | WeightFormat::Q3K
            | WeightFormat::Q2K => "ggml k-quant",
            WeightFormat::Iq4Nl | WeightFormat::Iq4Xs => "ggml i-quant",
            WeightFormat::Mxfp4 => "microscaling fp4",
            WeightFormat::TQ2_0 | WeightFormat::TQ1_0 | WeightFormat::Bitnet => "ternary",
            WeightFormat::Piq3 | WeightFormat::Piq2 => "pi-constant (seed)",
            WeightFormat::Uq4 | WeightFormat::Uq3 | WeightFormat::Uq2 => {
                "uniform, MSE-optimal step"
            }
        }
    }

    /// Weights per block.
    pub fn weights_per_block(self) -> u64 {
        match self {
            WeightFormat::F32 | WeightFormat::F16 => 1,
            WeightFormat::Q8_0
            | WeightFormat::Q4_0
            | WeightFormat::Q4_1
            | WeightFormat::Q5_0
            | WeightFormat::Q5_1
            | WeightFormat::Iq4Nl
            | WeightFormat::Mxfp4 => 32,
            WeightFormat::Q6K
            | WeightFormat::Q5K
            | WeightFormat::Iq4Xs
            | WeightFormat::Q4K
            | WeightFormat::Q3K
            | WeightFormat::Q2K
            | WeightFormat::TQ2_0
            | WeightFormat::TQ1_0
            | WeightFormat::Bitnet
            | WeightFormat::Piq3
            | WeightFormat::Piq2
            | WeightFormat::Uq4
            | WeightFormat::Uq3
            | WeightFormat::Uq2 => 256,
        }
    }

    /// Bytes per block, scales included.
    pub fn bytes_per_block(self) -> u64 {
        match self {
            WeightFormat::F32 => 4,
            WeightFormat::F16 => 2,
            WeightFormat::Q8_0 => 34,
            WeightFormat::Q4_0 | WeightFormat::Iq4Nl => 18,
            WeightFormat::Q4_1 => 20,
            WeightFormat::Q5_0 => 22,
            WeightFormat::Q5_1 => 24,
            WeightFormat::Q6K => 210,
            WeightFormat::Q5K => 176,
            WeightFormat::Iq4Xs => 136,
            WeightFormat::Mxfp4 => 17,
            WeightFormat::Q4K => 144,
            WeightFormat::Q3K => 110,
            WeightFormat::Q2K => 84,
            WeightFormat::TQ2_0 | WeightFormat::Bitnet => 66,
            WeightFormat::TQ1_0 => 54,
            WeightFormat::Piq3 | WeightFormat::Uq3 => 98,
            WeightFormat::Piq2 | WeightFormat::Uq2 => 66,
            WeightFormat::Uq4 => 130,
        }
    }

    /// Exact bits per weight, `8 · bytes_per_block / weights_per_block`.
    pub fn bits_per_weight(self) -> f64 {
        8.0 * self.bytes_per_block() as f64 / self.weights_per_block() as f64
    }

    /// Bytes needed to store `n_weights` weights, rounding up to whole blocks.
    pub fn bytes_for(self, n_weights: u64) -> u64 {
        n_weights.div_ceil(self.weights_per_block()) * self.bytes_per_block()
    }

    /// Where a format's single-token kernel rate lies between the q4 and q8 classes' rates:
    /// `Some(f)` with `f = (bpw − 4.5) / 4` for the 5- and 6-bit formats, which profiles give
    /// no rate of. A kernel at batch 1 streams its weights, so its time per weight is taken
    /// linear in bits per weight between Q4_K's 4.5 and Q8_0's 8.5; `None` for the others.
    pub fn rate_between_q4_and_q8(self) -> Option<f64> {
        match self {
            WeightFormat::Q6K | WeightFormat::Q5_1 | WeightFormat::Q5_0 | WeightFormat::Q5K => {
                Some((self.bits_per_weight() - 4.5) / 4.0)
            }
            _ => None,
        }
    }

    /// The profile throughput class of this format's kernel; `None` for the f32 reference,
    /// which is never timed.
    pub fn compute_class(self) -> Option<ComputeClass> {
        match self {
            WeightFormat::F32 => None,
            WeightFormat::F16 => Some(ComputeClass::F16),
            WeightFormat::Q8_0 => Some(ComputeClass::Q8),
            // Profiles carry no 5- and 6-bit columns: these take q8's batched peak and
            // slowdowns, and a single-token rate interpolated by bytes per weight
            // (`Compute::format_weights_per_s`).
            WeightFormat::Q6K | WeightFormat::Q5_1 | WeightFormat::Q5_0 | WeightFormat::Q5K => {
                Some(ComputeClass::Q8)
            }
            WeightFormat::Q4_0
            | WeightFormat::Q4_1
            | WeightFormat::Q4K
            | WeightFormat::Iq4Nl
            | WeightFormat::Iq4Xs
            | WeightFormat::Mxfp4 => Some(ComputeClass::Q4),
            WeightFormat::Q3K => Some(ComputeClass::Q3),
            WeightFormat::Q2K => Some(ComputeClass::Q2),
            WeightFormat::TQ2_0 | WeightFormat::TQ1_0 | WeightFormat::Bitnet => {
                Some(ComputeClass::Ternary)
            }
            WeightFormat::Uq4 => Some(ComputeClass::Q4),
            WeightFormat::Piq3 | WeightFormat::Uq3 => Some(ComputeClass::Q3),
            WeightFormat::Piq2 | WeightFormat::Uq2 => Some(ComputeClass::Q2),
        }
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WeightFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<WeightFormat, String> {
        let lower = s.to_ascii_lowercase();
        WeightFormat::ALL
            .into_iter()
            .find(|f| f.name() == lower)
            .ok_or_else(|| {
                let names: Vec<&str> = WeightFormat::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown weight format `{s}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

impl ComputeClass {
    /// Every class.
    pub const ALL: [ComputeClass; 6] = [
        ComputeClass::F16,
        ComputeClass::Q8,
        ComputeClass::Q4,
        ComputeClass::Q3,
        ComputeClass::Q2,
        ComputeClass::Ternary,
    ];

    /// Lower-case name as used in hardware profiles.
    pub fn name(self) -> &'static str {
        match self {
            ComputeClass::F16 => "f16",
            ComputeClass::Q8 => "q8",
            ComputeClass::Q4 => "q4",
            ComputeClass::Q3 => "q3",
            ComputeClass::Q2 => "q2",
            ComputeClass::Ternary => "ternary",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_per_weight_match_ggml() {
        let expected = [
            (WeightFormat::F16, 16.0),
            (WeightFormat::Q8_0, 8.5),
            (WeightFormat::Q4K, 4.5),
            (WeightFormat::Q4_0, 4.5),
            (WeightFormat::Q4_1, 5.0),
            (WeightFormat::Q5_0, 5.5),
            (WeightFormat::Q5_1, 6.0),
            (WeightFormat::Q5K, 5.5),
            (WeightFormat::Q6K, 6.5625),
            (WeightFormat::Iq4Nl, 4.5),
            (WeightFormat::Iq4Xs, 4.25),
            (WeightFormat::Mxfp4, 4.25),
            (WeightFormat::Q3K, 3.4375),
            (WeightFormat::Q2K, 2.625),
            (WeightFormat::TQ2_0, 2.0625),
            (WeightFormat::TQ1_0, 1.6875),
            (WeightFormat::Bitnet, 2.0625),
            (WeightFormat::Piq3, 3.0625),
            (WeightFormat::Uq3, 3.0625),
            (WeightFormat::Piq2, 2.0625),
            (WeightFormat::Uq2, 2.0625),
            (WeightFormat::Uq4, 4.0625),
        ];
        for (format, bpw) in expected {
            assert_eq!(format.bits_per_weight(), bpw, "{format}");
        }
    }

    #[test]
    fn names_round_trip() {
        for format in WeightFormat::ALL {
            assert_eq!(format.name().parse::<WeightFormat>().unwrap(), format);
        }
        assert!("q7_k".parse::<WeightFormat>().is_err());
    }
}
