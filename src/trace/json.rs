//! A small, fast scanner for one JSON object per line.
//!
//! Trace files hold millions of flat records, and generic deserialization allocates per field;
//! this scanner reads keys as borrowed slices and numbers straight into reused buffers. It
//! accepts standard JSON, plus the tokens `NaN`, `Infinity` and `-Infinity` that Python's
//! `json` module writes, so that such values are reported as "not finite" rather than as a
//! syntax error. Errors are short reasons; callers add the file and line.

use std::borrow::Cow;

/// A cursor over one line of JSON.
#[derive(Debug)]
pub struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// A key found by [`Scanner::next_key_among`]: the index of an expected name, or another key.
pub type KeyMatch<'a> = Result<usize, Cow<'a, [u8]>>;

/// The JSON type of the next value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `{`
    Object,
    /// `[`
    Array,
    /// `"`
    String,
    /// A number (or NaN/Infinity).
    Number,
    /// `true` / `false`
    Bool,
    /// `null`
    Null,
}

impl<'a> Scanner<'a> {
    /// A scanner over `line` (without its newline).
    pub fn new(line: &'a [u8]) -> Scanner<'a> {
        Scanner {
            bytes: line,
            pos: 0,
        }
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if b == b' ' || b == b'\t' || b == b'\r' || b == b'\n' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.peek() {
            Some(b) if b == c => {
                self.pos += 1;
                Ok(())
            }
            Some(b) => Err(format!(
                "expected `{}` at column {}, found `{}`",
                c as char,
                self.pos + 1,
                b as char
            )),
            None => Err(format!(
                "expected `{}` at column {}, found the end of the line",
                c as char,
                self.pos + 1
            )),
        }
    }

    /// Consumes the opening `{` of the line's object.
    pub fn begin_object(&mut self) -> Result<(), String> {
        self.expect(b'{')
    }

    /// The next key of the current object (raw bytes, escapes decoded), or `None` after its
    /// closing `}`. `first` must be true for the first call on an object.
    #[inline]
    pub fn next_key(&mut self, first: bool) -> Result<Option<Cow<'a, [u8]>>, String> {
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                return Ok(None);
            }
            Some(b',') if !first => self.pos += 1,
            Some(_) if first => {}
            Some(b) => {
                return Err(format!(
                    "expected `,` or `}}` at column {}, found `{}`",
                    self.pos + 1,
                    b as char
                ));
            }
            None => return Err("the object is not closed (truncated line?)".into()),
        }
        let key = self.raw_string()?;
        self.expect(b':')?;
        Ok(Some(key))
    }

    /// A string's raw bytes, without UTF-8 validation; escapes are decoded.
    #[inline]
    fn raw_string(&mut self) -> Result<Cow<'a, [u8]>, String> {
        self.expect(b'"')?;
        let start = self.pos;
        let bytes = self.bytes;
        let mut i = start;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(Cow::Borrowed(&bytes[start..i]));
                }
                b'\\' => {
                    return match self.escaped_string(start)? {
                        Cow::Owned(s) => Ok(Cow::Owned(s.into_bytes())),
                        Cow::Borrowed(s) => Ok(Cow::Borrowed(s.as_bytes())),
                    };
                }
                _ => i += 1,
            }
        }
        Err("unterminated string (truncated line?)".into())
    }

    /// Like [`Scanner::next_key`], but first tries the expected `names` in place, which avoids
    /// scanning the key: returns `Ok(index)` for one of them, `Err(key)` for any other key.
    #[inline]
    pub fn next_key_among(
        &mut self,
        first: bool,
        names: &[&[u8]],
    ) -> Result<Option<KeyMatch<'a>>, String> {
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                return Ok(None);
            }
            Some(b',') if !first => self.pos += 1,
            Some(_) if first => {}
            Some(b) => {
                return Err(format!(
                    "expected `,` or `}}` at column {}, found `{}`",
                    self.pos + 1,
                    b as char
                ));
            }
            None => return Err("the object is not closed (truncated line?)".into()),
        }
        if self.peek() == Some(b'"') {
            let rest = &self.bytes[self.pos + 1..];
            for (i, name) in names.iter().enumerate() {
                if rest.len() > name.len()
                    && rest[name.len()] == b'"'
                    && eq_bytes(&rest[..name.len()], name)
                {
                    self.pos += name.len() + 2;
                    self.expect(b':')?;
                    return Ok(Some(Ok(i)));
                }
            }
        }
        let key = self.raw_string()?;
        self.expect(b':')?;
        Ok(Some(Err(key)))
    }

    /// Checks that nothing but whitespace follows the object.
    pub fn end(&mut self) -> Result<(), String> {
        match self.peek() {
            None => Ok(()),
            Some(b) => Err(format!(
                "unexpected `{}` after the object at column {}",
                b as char,
                self.pos + 1
            )),
        }
    }

    /// The kind of the next value.
    #[inline]
    pub fn kind(&mut self) -> Result<Kind, String> {
        match self.peek() {
            Some(b'{') => Ok(Kind::Object),
            Some(b'[') => Ok(Kind::Array),
            Some(b'"') => Ok(Kind::String),
            Some(b't' | b'f') => Ok(Kind::Bool),
            Some(b'n') => Ok(Kind::Null),
            Some(b'-' | b'0'..=b'9' | b'N' | b'I') => Ok(Kind::Number),
            Some(b) => Err(format!(
                "unexpected `{}` at column {}",
                b as char,
                self.pos + 1
            )),
            None => Err("a value is missing (truncated line?)".into()),
        }
    }

    /// Consumes `null` if it is next; returns whether it was.
    pub fn null(&mut self) -> Result<bool, String> {
        if self.kind()? == Kind::Null {
            self.literal("null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), String> {
        self.skip_ws();
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(format!("invalid literal at column {}", self.pos + 1))
        }
    }

    /// A boolean.
    pub fn bool(&mut self) -> Result<bool, String> {
        match self.peek() {
            Some(b't') => self.literal("true").map(|_| true),
            Some(b'f') => self.literal("false").map(|_| false),
            _ => Err(format!("expected true or false at column {}", self.pos + 1)),
        }
    }

    /// A string, borrowed when it has no escapes.
    pub fn string(&mut self) -> Result<Cow<'a, str>, String> {
        match self.raw_string()? {
            Cow::Borrowed(b) => std::str::from_utf8(b)
                .map(Cow::Borrowed)
                .map_err(|_| "invalid UTF-8 in a string".into()),
            Cow::Owned(b) => String::from_utf8(b)
                .map(Cow::Owned)
                .map_err(|_| "invalid UTF-8 in a string".into()),
        }
    }

    fn escaped_string(&mut self, start: usize) -> Result<Cow<'a, str>, String> {
        // Find the closing quote, honouring escapes, and let serde_json decode the escapes.
        let mut i = self.pos;
        while let Some(&b) = self.bytes.get(i) {
            match b {
                b'\\' => i += 2,
                b'"' => {
                    let raw = &self.bytes[start - 1..=i];
                    let s: String =
                        serde_json::from_slice(raw).map_err(|e| format!("invalid string: {e}"))?;
                    self.pos = i + 1;
                    return Ok(Cow::Owned(s));
                }
                _ => i += 1,
            }
        }
        Err("unterminated string (truncated line?)".into())
    }

    #[inline]
    fn number_token(&mut self) -> Result<&'a str, String> {
        self.skip_ws();
        let start = self.pos;
        let bytes = self.bytes;
        for word in ["NaN", "Infinity", "-Infinity"] {
            if bytes[start..].starts_with(word.as_bytes()) {
                self.pos += word.len();
                return Ok(word);
            }
        }
        while let Some(&b) = bytes.get(self.pos) {
            if matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(format!("expected a number at column {}", start + 1));
        }
        // SAFETY: the loop above consumed only the ASCII bytes 0-9 + - . e E, so the slice is
        // valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(&bytes[start..self.pos]) })
    }

    /// A non-negative integer.
    #[inline]
    pub fn u64(&mut self) -> Result<u64, String> {
        self.skip_ws();
        let start = self.pos;
        let mut value: u64 = 0;
        let bytes = self.bytes;
        while let Some(&b) = bytes.get(self.pos) {
            if b.is_ascii_digit() {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add((b - b'0') as u64))
                    .ok_or_else(|| format!("integer too large at column {}", start + 1))?;
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start || matches!(bytes.get(self.pos), Some(b'.' | b'e' | b'E' | b'-')) {
            self.pos = start;
            let token = self.number_token()?;
            return Err(format!("expected a non-negative integer, found `{token}`"));
        }
        Ok(value)
    }

    /// A non-negative integer that fits `u32`.
    pub fn u32(&mut self) -> Result<u32, String> {
        let v = self.u64()?;
        u32::try_from(v).map_err(|_| format!("integer {v} is too large"))
    }

    /// A number as `f64` (NaN and infinities are returned, for the caller to reject).
    pub fn f64(&mut self) -> Result<f64, String> {
        let token = self.number_token()?;
        match token {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => token
                .parse::<f64>()
                .map_err(|_| format!("invalid number `{token}`")),
        }
    }

    /// A number as `f32`.
    #[inline]
    pub fn f32(&mut self) -> Result<f32, String> {
        let token = self.number_token()?;
        match token {
            "NaN" => Ok(f32::NAN),
            "Infinity" => Ok(f32::INFINITY),
            "-Infinity" => Ok(f32::NEG_INFINITY),
            _ => token
                .parse::<f32>()
                .map_err(|_| format!("invalid number `{token}`")),
        }
    }

    /// An array of non-negative integers below 65536, appended to `out`.
    pub fn u16_array(&mut self, out: &mut Vec<u16>) -> Result<(), String> {
        self.array(|s| {
            let v = s.u64()?;
            let v = u16::try_from(v).map_err(|_| format!("id {v} is too large"))?;
            out.push(v);
            Ok(())
        })
    }

    /// An array of numbers, appended to `out`.
    pub fn f32_array(&mut self, out: &mut Vec<f32>) -> Result<(), String> {
        self.array(|s| {
            out.push(s.f32()?);
            Ok(())
        })
    }

    fn array(
        &mut self,
        mut item: impl FnMut(&mut Scanner<'a>) -> Result<(), String>,
    ) -> Result<(), String> {
        self.expect(b'[')?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            item(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b) => {
                    return Err(format!(
                        "expected `,` or `]` at column {}, found `{}`",
                        self.pos + 1,
                        b as char
                    ));
                }
                None => return Err("the array is not closed (truncated line?)".into()),
            }
        }
    }

    /// Skips any value.
    pub fn skip_value(&mut self) -> Result<(), String> {
        match self.kind()? {
            Kind::Null => self.literal("null"),
            Kind::Bool => self.bool().map(|_| ()),
            Kind::Number => self.number_token().map(|_| ()),
            Kind::String => self.raw_string().map(|_| ()),
            Kind::Array => self.array(|s| s.skip_value()),
            Kind::Object => {
                self.expect(b'{')?;
                let mut first = true;
                while self.next_key(first)?.is_some() {
                    first = false;
                    self.skip_value()?;
                }
                Ok(())
            }
        }
    }
}

/// Byte equality for short slices, without a `memcmp` call.
#[inline]
pub fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Tracks which keys of a record were seen, to reject duplicates (up to 64 known keys).
#[derive(Debug, Default, Clone, Copy)]
pub struct SeenKeys(u64);

impl SeenKeys {
    /// Marks key number `index`; errors if it was already seen.
    pub fn mark(&mut self, index: usize, name: &[u8]) -> Result<(), String> {
        let bit = 1u64 << index;
        if self.0 & bit != 0 {
            return Err(format!("duplicate key `{}`", String::from_utf8_lossy(name)));
        }
        self.0 |= bit;
        Ok(())
    }

    /// Whether key number `index` was seen.
    pub fn has(&self, index: usize) -> bool {
        self.0 & (1u64 << index) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_a_record() {
        let line = br#"{"a": 12, "b":[1,2,3], "c":[0.5,-1e-3,NaN], "d":"x\"y", "e":{"f":[true,null]}, "g":false}"#;
        let mut s = Scanner::new(line);
        s.begin_object().unwrap();
        let mut first = true;
        let mut keys = Vec::new();
        let (mut ints, mut floats) = (Vec::new(), Vec::new());
        while let Some(k) = s.next_key(first).unwrap() {
            first = false;
            match k.as_ref() {
                b"a" => assert_eq!(s.u64().unwrap(), 12),
                b"b" => s.u16_array(&mut ints).unwrap(),
                b"c" => s.f32_array(&mut floats).unwrap(),
                b"d" => assert_eq!(s.string().unwrap(), "x\"y"),
                _ => s.skip_value().unwrap(),
            }
            keys.push(String::from_utf8(k.into_owned()).unwrap());
        }
        s.end().unwrap();
        assert_eq!(keys, ["a", "b", "c", "d", "e", "g"]);
        assert_eq!(ints, [1, 2, 3]);
        assert_eq!(floats[..2], [0.5, -1e-3]);
        assert!(floats[2].is_nan());
    }

    #[test]
    fn rejects_floats_for_integers_and_truncation() {
        let mut s = Scanner::new(b"3.5");
        assert!(s.u64().unwrap_err().contains("non-negative integer"));
        let mut s = Scanner::new(b"-2");
        assert!(s.u64().is_err());
        let mut s = Scanner::new(br#"{"a":[1,2"#);
        s.begin_object().unwrap();
        s.next_key(true).unwrap();
        let mut v = Vec::new();
        assert!(s.u16_array(&mut v).unwrap_err().contains("truncated"));
    }
}
