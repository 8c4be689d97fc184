//! `.safetensors` files: an 8-byte little-endian header length, a JSON header mapping tensor
//! names to `{dtype, shape, data_offsets}`, then the data. Reads F32, F16 and BF16 tensors; a
//! tensor of more than two dimensions is read as (product of the leading dimensions) × last.

use super::Matrix;
use crate::quant::f16::f16_to_f32;

/// Reads tensor `name` from a `.safetensors` file's bytes.
pub fn read_tensor(bytes: &[u8], name: &str) -> Result<Matrix, String> {
    if bytes.len() < 8 {
        return Err("not a .safetensors file (shorter than its 8-byte header length)".into());
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = bytes
        .get(8..8usize.saturating_add(n))
        .ok_or("truncated .safetensors header")?;
    let header: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("bad .safetensors header JSON: {e}"))?;
    let obj = header
        .as_object()
        .ok_or("the .safetensors header is not a JSON object")?;
    let Some(t) = obj.get(name) else {
        let mut names: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "__metadata__")
            .collect();
        names.sort_unstable();
        let shown: Vec<&str> = names.iter().take(8).copied().collect();
        return Err(format!(
            "no tensor `{name}` (it has {}: {}{})",
            names.len(),
            shown.join(", "),
            if names.len() > 8 { ", ..." } else { "" }
        ));
    };
    let dtype = t["dtype"]
        .as_str()
        .ok_or_else(|| format!("tensor `{name}` has no dtype"))?;
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .ok_or_else(|| format!("tensor `{name}` has no shape"))?
        .iter()
        .map(|v| v.as_u64().map(|x| x as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("tensor `{name}` has a bad shape"))?;
    let offsets = t["data_offsets"]
        .as_array()
        .and_then(|a| Some((a.first()?.as_u64()? as usize, a.get(1)?.as_u64()? as usize)))
        .ok_or_else(|| format!("tensor `{name}` has bad data_offsets"))?;
    if shape.len() < 2 {
        return Err(format!(
            "tensor `{name}` has shape {shape:?}; a matrix needs at least 2 dimensions"
        ));
    }
    let cols = *shape.last().expect("2+ dims");
    let rows = shape[..shape.len() - 1]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("tensor `{name}`: shape {shape:?} overflows"))?;
    if rows == 0 || cols == 0 {
        return Err(format!(
            "tensor `{name}`: shape {shape:?} has no {}; a weight matrix needs at least one of each",
            if rows == 0 { "rows" } else { "columns" }
        ));
    }
    let (width, convert): (usize, fn(&[u8]) -> f32) = match dtype {
        "F32" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "F16" => (2, |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        "BF16" => (2, |b| {
            f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
        }),
        other => {
            return Err(format!(
                "tensor `{name}` has dtype {other}; F32, F16 and BF16 are supported"
            ));
        }
    };
    let past_end = || format!("tensor `{name}`: data_offsets run past the end of the file");
    let data_start = 8usize.checked_add(n).ok_or_else(past_end)?;
    let begin = data_start.checked_add(offsets.0).ok_or_else(past_end)?;
    let end = data_start.checked_add(offsets.1).ok_or_else(past_end)?;
    let data = bytes.get(begin..end).ok_or_else(past_end)?;
    let expected = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(width))
        .ok_or_else(|| format!("tensor `{name}`: shape {shape:?} overflows"))?;
    if data.len() != expected {
        return Err(format!(
            "tensor `{name}`: {} bytes for shape {shape:?} of {dtype}",
            data.len()
        ));
    }
    Ok(Matrix {
        rows,
        cols,
        data: data.chunks_exact(width).map(convert).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_f32_f16_and_bf16() {
        let mut data = Vec::new();
        for v in [1.0f32, -2.0, 0.5, 4.0] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        data.extend_from_slice(&0x3c00u16.to_le_bytes()); // f16 1.0
        data.extend_from_slice(&0xc000u16.to_le_bytes()); // f16 -2.0
        data.extend_from_slice(&0x3f80u16.to_le_bytes()); // bf16 1.0
        data.extend_from_slice(&0x4040u16.to_le_bytes()); // bf16 3.0
        let h = r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[1,2],"data_offsets":[16,20]},"c":{"dtype":"BF16","shape":[1,1,2],"data_offsets":[20,24]},"__metadata__":{"x":"y"}}"#;
        let f = file(h, &data);
        assert_eq!(read_tensor(&f, "a").unwrap().data, [1.0, -2.0, 0.5, 4.0]);
        assert_eq!(read_tensor(&f, "b").unwrap().data, [1.0, -2.0]);
        let c = read_tensor(&f, "c").unwrap();
        assert_eq!((c.rows, c.cols, &c.data[..]), (1, 2, &[1.0f32, 3.0][..]));
        let e = read_tensor(&f, "nope").unwrap_err();
        assert!(
            e.contains("no tensor `nope`") && e.contains("a, b, c"),
            "{e}"
        );
        assert!(read_tensor(&f[..30], "a").is_err());
    }

    #[test]
    fn overflowing_shapes_and_offsets_are_refused() {
        let cases = [
            (
                r#"{"a":{"dtype":"F32","shape":[4294967296,1073741824],"data_offsets":[0,0]}}"#,
                "overflows",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,0]}}"#,
                "overflows",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[18446744073709551615,0]}}"#,
                "past the end",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[8,4]}}"#,
                "past the end",
            ),
        ];
        for (h, needle) in cases {
            let e = read_tensor(&file(h, &[0; 16]), "a").unwrap_err();
            assert!(e.contains(needle), "{h}: {e}");
        }
    }

    /// Empty tensors: once read, they panicked in `quant`. They are refused here, naming the
    /// tensor and its shape.
    #[test]
    fn empty_tensors_are_refused() {
        for (shape, needle) in [
            ("[0,256]", "tensor `a`: shape [0, 256] has no rows"),
            ("[4,0]", "tensor `a`: shape [4, 0] has no columns"),
            ("[2,0,256]", "tensor `a`: shape [2, 0, 256] has no rows"),
            ("[0,0]", "tensor `a`: shape [0, 0] has no rows"),
        ] {
            let h = format!(r#"{{"a":{{"dtype":"F32","shape":{shape},"data_offsets":[0,0]}}}}"#);
            let e = read_tensor(&file(&h, &[]), "a").unwrap_err();
            assert!(e.contains(needle), "{shape}: {e}");
        }
    }
}
