//! NumPy `.npy` files, versions 1–3: a magic string, a header dict
//! (`{'descr': '<f4', 'fortran_order': False, 'shape': (R, C), }`) and the raw data. Reads
//! little-endian f32 and f16 2-D arrays in C order; writes f32.

use super::Matrix;
use crate::quant::f16::f16_to_f32;

const MAGIC: &[u8] = b"\x93NUMPY";

/// The value of `key` in the header dict, as raw text up to the next top-level comma.
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    if let Some(inner) = rest.strip_prefix('(') {
        return Some(&inner[..inner.find(')')?]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// Parses an `.npy` file's bytes.
pub fn read(bytes: &[u8]) -> Result<Matrix, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let data_start = header_start + header_len;
    let header = bytes
        .get(header_start..data_start)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or non-text .npy header")?;
    let descr = field(header, "descr")
        .ok_or("header has no 'descr'")?
        .trim_matches(['\'', '"']);
    let fortran = field(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    if fortran != "False" {
        return Err("Fortran-order arrays are not supported (save with C order)".into());
    }
    let shape_text = field(header, "shape").ok_or("header has no 'shape'")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape entry `{s}`"))
        })
        .collect::<Result<_, _>>()?;
    let [rows, cols] = shape[..] else {
        return Err(format!("expected a 2-D array, got shape ({shape_text})"));
    };
    if rows == 0 || cols == 0 {
        return Err(format!(
            "shape ({rows}, {cols}) has no {}; a weight matrix needs at least one of each",
            if rows == 0 { "rows" } else { "columns" }
        ));
    }
    let (width, convert): (usize, fn(&[u8]) -> f32) = match descr {
        "<f4" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "<f2" => (2, |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        other => {
            return Err(format!(
                "dtype `{other}` is not supported (f32 `<f4` or f16 `<f2`)"
            ));
        }
    };
    let expected = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(width))
        .ok_or_else(|| format!("shape ({rows}, {cols}) overflows"))?;
    let data = &bytes[data_start..];
    if data.len() != expected {
        return Err(format!(
            "{} data bytes for shape ({rows}, {cols}) of `{descr}`, expected {expected}",
            data.len()
        ));
    }
    Ok(Matrix {
        rows,
        cols,
        data: data.chunks_exact(width).map(convert).collect(),
    })
}

/// Serialises a row-major f32 matrix as `.npy` version 1.0.
pub fn write_f32(rows: usize, cols: usize, data: &[f32]) -> Vec<u8> {
    assert_eq!(data.len(), rows * cols);
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Pad so that magic + version + length + header + newline is a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let data: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        let bytes = write_f32(2, 3, &data);
        assert_eq!(
            (bytes.len() - 24) % 64,
            0,
            "the data starts 64-byte aligned"
        );
        let m = read(&bytes).unwrap();
        assert_eq!((m.rows, m.cols, &m.data[..]), (2, 3, &data[..]));
        assert!(read(b"garbage!!!!!").unwrap_err().contains("magic"));
        let mut short = bytes.clone();
        short.truncate(bytes.len() - 4);
        assert!(read(&short).unwrap_err().contains("data bytes"));
        let mut one_d = bytes.clone();
        let at = one_d.windows(6).position(|w| w == b"(2, 3)").unwrap();
        one_d[at..at + 6].copy_from_slice(b"(6,)  ");
        assert!(read(&one_d).unwrap_err().contains("2-D"));
    }

    /// Shapes whose byte count overflows: (2^32, 2^30) wrapped `n * 4` to 0 and passed the size
    /// check with no data; (2^40, 2^40) overflows the element count. Both are refused.
    #[test]
    fn overflowing_shapes_are_refused() {
        for shape in ["(4294967296, 1073741824)", "(1099511627776, 1099511627776)"] {
            let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&[1, 0]);
            bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
            bytes.extend_from_slice(header.as_bytes());
            let e = read(&bytes).unwrap_err();
            assert!(e.contains("overflows"), "{shape}: {e}");
        }
    }

    /// Empty matrices: once read, they panicked in `quant` (a chunk size of zero, a rotation
    /// of an empty vector). They are refused here, naming the shape.
    #[test]
    fn empty_matrices_are_refused() {
        for (rows, cols, needle) in [
            (0, 256, "shape (0, 256) has no rows"),
            (4, 0, "shape (4, 0) has no columns"),
            (0, 0, "shape (0, 0) has no rows"),
        ] {
            let e = read(&write_f32(rows, cols, &[])).unwrap_err();
            assert!(e.contains(needle), "({rows}, {cols}): {e}");
        }
    }
}
