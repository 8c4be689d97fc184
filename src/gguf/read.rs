//! Reading a GGUF file's header: its metadata and the description of every tensor, never the
//! tensor data (a 60 GB file is read for a few megabytes of header).
//!
//! The layout (ggml's `docs/gguf.md`): magic `GGUF`, version (2 or 3; v1's 32-bit counts are
//! refused), tensor count and metadata count (u64), the metadata key/value pairs, the tensor
//! infos (name, dimension count, dimensions, type, offset into the data section), padding to
//! `general.alignment` (default 32), then the data. Everything is little-endian.
//!
//! Defensive: every count and length is checked against the bytes left in the file before
//! anything is allocated for it; string arrays (a tokenizer's vocabulary) are skipped, keeping
//! their length; a tensor's type must be known, its dimensions at most 4 and positive, its
//! bytes inside the data section and its offset aligned. Errors name the key or tensor.

use std::io::{BufRead, Seek, SeekFrom};

use super::types::GgmlType;

/// A metadata value. Arrays of more than [`KEPT_ARRAY`] values, and arrays of strings, keep only
/// their element type and length.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type.
    U64(u64),
    /// Any signed integer type.
    I64(i64),
    /// f32 or f64.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// A numeric array (kept when short), as f64.
    Array(Vec<f64>),
    /// An array whose values were skipped.
    SkippedArray {
        /// The GGUF type id of its elements.
        element_type: u32,
        /// Its length.
        len: u64,
    },
}

impl Value {
    /// As an unsigned integer, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }

    /// As text, when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An array's length.
    pub fn array_len(&self) -> Option<u64> {
        match self {
            Value::Array(v) => Some(v.len() as u64),
            Value::SkippedArray { len, .. } => Some(*len),
            _ => None,
        }
    }
}

/// Numeric arrays up to this length are kept.
pub const KEPT_ARRAY: u64 = 65_536;

/// The longest key or string value read (1 MiB; longer strings are refused).
const MAX_STRING: u64 = 1 << 20;

/// One tensor's description.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Its name (`blk.3.ffn_down_exps.weight`).
    pub name: String,
    /// Dimensions, fastest-varying first (ggml's `ne`): a row has `dims[0]` values.
    pub dims: Vec<u64>,
    /// Its type.
    pub ggml_type: GgmlType,
    /// Offset of its data from the start of the data section.
    pub offset: u64,
    /// Bytes of its data.
    pub bytes: u64,
}

impl TensorInfo {
    /// Number of values.
    pub fn values(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A GGUF file's header.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata, in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensors, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Where the data section starts.
    pub data_offset: u64,
    /// The file's length.
    pub file_bytes: u64,
}

impl GgufHeader {
    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// A parse failure: the key or tensor it concerns (if any) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadError {
    /// The metadata key or tensor name, or `header`.
    pub at: String,
    /// What is wrong.
    pub reason: String,
}

fn fail<T>(at: impl Into<String>, reason: impl Into<String>) -> Result<T, ReadError> {
    Err(ReadError {
        at: printable(&at.into()),
        reason: reason.into(),
    })
}

/// A name from the file as an error may show it: control characters escaped, at most 80
/// characters (a key or tensor name is whatever bytes the file holds).
pub fn printable(name: &str) -> String {
    let escaped: String = name.chars().flat_map(char::escape_default).collect();
    if escaped.chars().count() > 80 {
        let cut: String = escaped.chars().take(77).collect();
        format!("{cut}...")
    } else {
        escaped
    }
}

/// A reader that knows how many bytes are left.
struct Cursor<R> {
    r: R,
    pos: u64,
    len: u64,
}

impl<R: BufRead + Seek> Cursor<R> {
    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, at: &str) -> Result<[u8; N], ReadError> {
        let mut b = [0u8; N];
        if self.left() < N as u64 {
            return fail(at, "the file ends early (truncated)");
        }
        self.r.read_exact(&mut b).map_err(|e| ReadError {
            at: at.into(),
            reason: format!("read failed: {e}"),
        })?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, at: &str) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.bytes::<4>(at)?))
    }

    fn u64(&mut self, at: &str) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.bytes::<8>(at)?))
    }

    fn skip(&mut self, n: u64, at: &str) -> Result<(), ReadError> {
        if self.left() < n {
            return fail(at, "the file ends early (truncated)");
        }
        self.r
            .seek(SeekFrom::Current(n as i64))
            .map_err(|e| ReadError {
                at: at.into(),
                reason: format!("seek failed: {e}"),
            })?;
        self.pos += n;
        Ok(())
    }

    fn string(&mut self, at: &str) -> Result<String, ReadError> {
        let n = self.u64(at)?;
        if n > self.left() {
            return fail(
                at,
                format!(
                    "a string of {n} bytes, more than the {} left in the file",
                    self.left()
                ),
            );
        }
        if n > MAX_STRING {
            return fail(at, format!("a string of {n} bytes (at most {MAX_STRING})"));
        }
        let mut b = vec![0u8; n as usize];
        self.r.read_exact(&mut b).map_err(|e| ReadError {
            at: at.into(),
            reason: format!("read failed: {e}"),
        })?;
        self.pos += n;
        String::from_utf8(b).map_err(|_| ReadError {
            at: at.into(),
            reason: "a string that is not UTF-8".into(),
        })
    }

    fn skip_string(&mut self, at: &str) -> Result<(), ReadError> {
        let n = self.u64(at)?;
        self.skip(n, at)
    }
}

/// Bytes of one scalar of metadata type `t`, or `None` for strings, arrays and unknown types.
fn scalar_bytes(t: u32) -> Option<u64> {
    match t {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

fn scalar<R: BufRead + Seek>(c: &mut Cursor<R>, t: u32, at: &str) -> Result<Value, ReadError> {
    Ok(match t {
        0 => Value::U64(c.bytes::<1>(at)?[0] as u64),
        1 => Value::I64(c.bytes::<1>(at)?[0] as i8 as i64),
        2 => Value::U64(u16::from_le_bytes(c.bytes::<2>(at)?) as u64),
        3 => Value::I64(i16::from_le_bytes(c.bytes::<2>(at)?) as i64),
        4 => Value::U64(c.u32(at)? as u64),
        5 => Value::I64(c.u32(at)? as i32 as i64),
        6 => Value::F64(f32::from_le_bytes(c.bytes::<4>(at)?) as f64),
        7 => match c.bytes::<1>(at)?[0] {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => return fail(at, format!("a boolean of value {b}")),
        },
        10 => Value::U64(c.u64(at)?),
        11 => Value::I64(c.u64(at)? as i64),
        12 => Value::F64(f64::from_le_bytes(c.bytes::<8>(at)?)),
        8 => Value::Str(c.string(at)?),
        _ => return fail(at, format!("unknown metadata type {t}")),
    })
}

/// The ggml limit on tensor dimensions.
const MAX_DIMS: u32 = 4;

/// Reads the header of a GGUF file of `file_bytes` bytes from `r` (positioned at its start).
pub fn read_header<R: BufRead + Seek>(r: R, file_bytes: u64) -> Result<GgufHeader, ReadError> {
    let mut c = Cursor {
        r,
        pos: 0,
        len: file_bytes,
    };
    let magic = c.bytes::<4>("header")?;
    if &magic != b"GGUF" {
        return fail("header", "not a GGUF file (no GGUF magic)");
    }
    let version = c.u32("header")?;
    if !(2..=3).contains(&version) {
        return fail(
            "header",
            format!("GGUF version {version} (this reader takes versions 2 and 3)"),
        );
    }
    let n_tensors = c.u64("header")?;
    let n_kv = c.u64("header")?;
    // Each pair takes at least 13 bytes (key length, type, one byte) and each tensor info 28.
    if n_kv > c.left() / 13 {
        return fail(
            "header",
            format!(
                "{n_kv} metadata pairs cannot fit in a file of {file_bytes} bytes (the file is truncated or the count corrupt)"
            ),
        );
    }
    if n_tensors > c.left() / 28 {
        return fail(
            "header",
            format!(
                "{n_tensors} tensors cannot fit in a file of {file_bytes} bytes (the file is truncated or the count corrupt)"
            ),
        );
    }
    let mut metadata = Vec::with_capacity(n_kv.min(4096) as usize);
    for i in 0..n_kv {
        let key = c.string(&format!("metadata pair {i}"))?;
        let t = c.u32(&key)?;
        let value = if t == 9 {
            let et = c.u32(&key)?;
            let len = c.u64(&key)?;
            match scalar_bytes(et) {
                Some(b) => {
                    if len.checked_mul(b).is_none_or(|n| n > c.left()) {
                        return fail(
                            &key,
                            format!("an array of {len} values does not fit in the file"),
                        );
                    }
                    if len <= KEPT_ARRAY {
                        let mut v = Vec::with_capacity(len as usize);
                        for _ in 0..len {
                            v.push(match scalar(&mut c, et, &key)? {
                                Value::U64(x) => x as f64,
                                Value::I64(x) => x as f64,
                                Value::F64(x) => x,
                                Value::Bool(x) => x as u8 as f64,
                                _ => unreachable!("numeric scalar"),
                            });
                        }
                        Value::Array(v)
                    } else {
                        c.skip(len * b, &key)?;
                        Value::SkippedArray {
                            element_type: et,
                            len,
                        }
                    }
                }
                None if et == 8 => {
                    // Each string takes at least its 8-byte length.
                    if len > c.left() / 8 {
                        return fail(
                            &key,
                            format!("an array of {len} strings does not fit in the file"),
                        );
                    }
                    for _ in 0..len {
                        c.skip_string(&key)?;
                    }
                    Value::SkippedArray {
                        element_type: et,
                        len,
                    }
                }
                None => {
                    return fail(
                        &key,
                        format!("an array of element type {et} (nested or unknown)"),
                    );
                }
            }
        } else {
            scalar(&mut c, t, &key)?
        };
        metadata.push((key, value));
    }
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => 32,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
            _ => return fail("general.alignment", "not a power of two up to 2^20"),
        },
    };
    let mut tensors = Vec::with_capacity(n_tensors.min(4096) as usize);
    for i in 0..n_tensors {
        let name = c.string(&format!("tensor {i}"))?;
        let n_dims = c.u32(&name)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return fail(
                &name,
                format!("{n_dims} dimensions (ggml tensors have 1 to {MAX_DIMS})"),
            );
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = c.u64(&name)?;
            if d == 0 {
                return fail(&name, "a dimension of 0");
            }
            dims.push(d);
        }
        let type_id = c.u32(&name)?;
        let Some(ggml_type) = GgmlType::from_id(type_id) else {
            return fail(&name, format!("unknown ggml type {type_id}"));
        };
        let offset = c.u64(&name)?;
        let values = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| ReadError {
                at: printable(&name),
                reason: format!("dimensions {dims:?} overflow"),
            })?;
        let Some(bytes) = ggml_type.bytes_of(dims[0], values) else {
            return fail(
                &name,
                format!(
                    "rows of {} values are not whole {} blocks of {}",
                    dims[0], ggml_type.name, ggml_type.block_values
                ),
            );
        };
        if !offset.is_multiple_of(alignment) {
            return fail(
                &name,
                format!("data offset {offset} is not a multiple of the alignment {alignment}"),
            );
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            bytes,
        });
    }
    let data_offset = c.pos.div_ceil(alignment) * alignment;
    let data_bytes = file_bytes.saturating_sub(data_offset);
    for t in &tensors {
        if t.offset
            .checked_add(t.bytes)
            .is_none_or(|end| end > data_bytes)
        {
            return fail(
                &t.name,
                format!(
                    "its {} bytes at offset {} run past the end of the file's data section ({} bytes): the file is truncated or corrupt",
                    t.bytes, t.offset, data_bytes
                ),
            );
        }
    }
    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        data_offset,
        file_bytes,
    })
}
