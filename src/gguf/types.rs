//! The ggml tensor types a GGUF file may name: their ids, names and block geometry (values per
//! block and bytes per block), from ggml's `ggml_type` enum and its type traits (the same table as
//! the `gguf` package's `GGML_QUANT_SIZES`, which a test compares).

/// A ggml tensor type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType {
    /// The id stored in the file.
    pub id: u32,
    /// ggml's name (`Q4_K`).
    pub name: &'static str,
    /// Values per block.
    pub block_values: u64,
    /// Bytes per block.
    pub block_bytes: u64,
}

impl GgmlType {
    /// The type with id `id`, if ggml defines it (ids of removed types are unknown).
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TYPES.iter().copied().find(|t| t.id == id)
    }

    /// Bytes of `values` values of one row-major tensor whose rows hold `row` values (rows are
    /// whole blocks); `None` when `row` is not a whole number of blocks or on overflow.
    pub fn bytes_of(self, row: u64, values: u64) -> Option<u64> {
        if row == 0 || !row.is_multiple_of(self.block_values) || !values.is_multiple_of(row) {
            return None;
        }
        (values / self.block_values).checked_mul(self.block_bytes)
    }

    /// Bits per weight.
    pub fn bits_per_weight(self) -> f64 {
        self.block_bytes as f64 * 8.0 / self.block_values as f64
    }

    /// The name in lower case, as moesim writes formats (`q4_k`).
    pub fn lower_name(self) -> String {
        self.name.to_ascii_lowercase()
    }
}

const fn t(id: u32, name: &'static str, block_values: u64, block_bytes: u64) -> GgmlType {
    GgmlType {
        id,
        name,
        block_values,
        block_bytes,
    }
}

/// Every type ggml defines that a file may hold.
pub const TYPES: &[GgmlType] = &[
    t(0, "F32", 1, 4),
    t(1, "F16", 1, 2),
    t(2, "Q4_0", 32, 18),
    t(3, "Q4_1", 32, 20),
    t(6, "Q5_0", 32, 22),
    t(7, "Q5_1", 32, 24),
    t(8, "Q8_0", 32, 34),
    t(9, "Q8_1", 32, 36),
    t(10, "Q2_K", 256, 84),
    t(11, "Q3_K", 256, 110),
    t(12, "Q4_K", 256, 144),
    t(13, "Q5_K", 256, 176),
    t(14, "Q6_K", 256, 210),
    t(15, "Q8_K", 256, 292),
    t(16, "IQ2_XXS", 256, 66),
    t(17, "IQ2_XS", 256, 74),
    t(18, "IQ3_XXS", 256, 98),
    t(19, "IQ1_S", 256, 50),
    t(20, "IQ4_NL", 32, 18),
    t(21, "IQ3_S", 256, 110),
    t(22, "IQ2_S", 256, 82),
    t(23, "IQ4_XS", 256, 136),
    t(24, "I8", 1, 1),
    t(25, "I16", 1, 2),
    t(26, "I32", 1, 4),
    t(27, "I64", 1, 8),
    t(28, "F64", 1, 8),
    t(29, "IQ1_M", 256, 56),
    t(30, "BF16", 1, 2),
    t(34, "TQ1_0", 256, 54),
    t(35, "TQ2_0", 256, 66),
    t(39, "MXFP4", 32, 17),
    t(40, "NVFP4", 64, 36),
    t(41, "Q1_0", 128, 18),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_sizes_sane() {
        for (i, a) in TYPES.iter().enumerate() {
            assert!(
                TYPES[i + 1..]
                    .iter()
                    .all(|b| b.id != a.id && b.name != a.name)
            );
            assert!(a.block_bytes > 0 && a.block_values > 0);
        }
        let q4k = GgmlType::from_id(12).unwrap();
        assert_eq!(q4k.bits_per_weight(), 4.5);
        assert_eq!(q4k.bytes_of(512, 512 * 3), Some(6 * 144));
        assert_eq!(q4k.bytes_of(100, 100), None, "rows are whole blocks");
        assert!(GgmlType::from_id(4).is_none(), "Q4_2 was removed");
    }
}
