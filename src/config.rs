//! Turning the text of a TOML input file into a `*Spec` value.
//!
//! Owns the first of the two configuration layers: syntax and shape. A syntax error, an unknown
//! key, a missing field or a value of the wrong type becomes one [`InputError`] naming the file,
//! the line and the key path. The second layer, the meaning of the values, belongs to each
//! spec's `validate`. This module never touches the filesystem; callers pass the text.

use serde::de::DeserializeOwned;

use crate::error::InputError;

/// Parses `text` (the contents of `file`) into `T`.
pub fn parse_toml<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, InputError> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| toml_error(file, text, None, &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let key = if path.is_empty() || path == "." {
            None
        } else {
            Some(path)
        };
        toml_error(file, text, key, e.inner())
    })
}

fn toml_error(file: &str, text: &str, key: Option<String>, e: &toml::de::Error) -> InputError {
    let line = e.span().map(|span| line_of_offset(text, span.start));
    let mut reason = short_floats(e.message());
    // serde reports a missing field at the table that lacks it; name the field in the key.
    let mut key = key;
    if let Some(field) = missing_field(&reason) {
        key = Some(match key {
            Some(k) => format!("{k}.{field}"),
            None => field.to_string(),
        });
        reason = "missing field".to_string();
    }
    InputError {
        file: file.to_string(),
        line,
        key,
        reason,
    }
}

/// serde writes an unexpected float in full (`1e300` as 301 digits): rewrites every
/// "floating point `X`" with [`crate::param::show`].
fn short_floats(message: &str) -> String {
    const TAG: &str = "floating point `";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(TAG) {
        let (head, tail) = rest.split_at(at + TAG.len());
        out.push_str(head);
        let Some(end) = tail.find('`') else {
            rest = tail;
            break;
        };
        match tail[..end].parse::<f64>() {
            Ok(x) => out.push_str(&crate::param::show(x)),
            Err(_) => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Deserializes a plug-in kind given either by name (a string its `FromStr` reads, such as
/// `"lru"` or `"ema:0.9"`) or as a table (`{ kind = "ema", decay = 0.9 }`): the two spellings
/// of one `*Kind` in an experiment file, a sweep axis or a command-line flag.
pub fn name_or_table<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = String> + DeserializeOwned,
{
    use serde::Deserialize;
    use serde::de::Error;
    match toml::Value::deserialize(d)? {
        toml::Value::String(s) => s.parse().map_err(D::Error::custom),
        v @ toml::Value::Table(_) => v
            .try_into()
            .map_err(|e: toml::de::Error| D::Error::custom(e.message())),
        other => Err(D::Error::custom(format!(
            "expected a name or a table with `kind`, found {}",
            other.type_str()
        ))),
    }
}

/// Serializes a plug-in kind by its name, as [`name_or_table`] reads it back.
pub fn by_name<S, T>(value: &T, s: S) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
    T: std::fmt::Display,
{
    s.collect_str(value)
}

/// 1-based line number of byte `offset` in `text`.
pub fn line_of_offset(text: &str, offset: usize) -> u64 {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        a: u32,
        b: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        items: Vec<Inner>,
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse_toml::<Outer>("x.toml", "name = \"a\"\n\nitems = [\n").unwrap_err();
        assert_eq!(e.file, "x.toml");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn unknown_key_has_path_and_line() {
        let text = "name = \"a\"\n[[items]]\na = 1\n[[items]]\na = 2\nc = 3\n";
        let e = parse_toml::<Outer>("x.toml", text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("items[1].c"), "{e}");
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.reason.contains("unknown field"), "{e}");
    }

    /// A float where an integer belongs was echoed with every digit (`1e300` as 301 of them).
    #[test]
    fn unexpected_floats_are_shown_short() {
        for (value, shown) in [
            ("1e300", "`1e300`"),
            ("1e-300", "`1e-300`"),
            ("2.5", "`2.5`"),
            ("-1e20", "`-1e20`"),
        ] {
            let text = format!("name = \"a\"\n[[items]]\na = {value}\n");
            let e = parse_toml::<Outer>("x.toml", &text).unwrap_err();
            assert!(
                e.reason.contains(&format!("floating point {shown}")) && e.reason.len() < 80,
                "{e}"
            );
        }
    }

    #[test]
    fn missing_field_names_the_field() {
        let text = "name = \"a\"\n[[items]]\nb = \"x\"\n";
        let e = parse_toml::<Outer>("x.toml", text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("items[0].a"), "{e}");
        assert_eq!(e.reason, "missing field");
    }
}
