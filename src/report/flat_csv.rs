//! CSV from any `Serialize` rows, including structs with `#[serde(flatten)]` fields (which the
//! `csv` crate cannot write): each row goes through JSON, read back as an ordered list of
//! `(column, value)`, so columns keep their declaration order.

use std::fmt;

use serde::Serialize;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// The fields of one serialized row, in order.
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a flat JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    fields.push((k, v));
                }
                Ok(Ordered(fields))
            }
        }
        d.deserialize_map(V)
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// CSV text of `rows` (header from the first row). Every row must serialize to an object of
/// scalars with the same keys; a NaN float becomes an empty cell.
pub fn to_csv<T: Serialize>(rows: &[T]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for (i, row) in rows.iter().enumerate() {
        let json = serde_json::to_string(row).expect("rows serialize to JSON");
        let Ordered(fields) = serde_json::from_str(&json).expect("a row is a JSON object");
        if i == 0 {
            w.write_record(fields.iter().map(|(k, _)| k.as_str()))
                .expect("writing to memory");
        }
        w.write_record(fields.iter().map(|(_, v)| cell(v)))
            .expect("writing to memory");
    }
    w.into_inner().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Inner {
        b: f64,
        c: Option<u32>,
    }

    #[derive(Serialize)]
    struct Row {
        z: &'static str,
        #[serde(flatten)]
        inner: Inner,
        a: bool,
    }

    #[test]
    fn flattened_columns_keep_their_order() {
        let rows = [
            Row {
                z: "x,y",
                inner: Inner { b: 0.1, c: None },
                a: true,
            },
            Row {
                z: "w",
                inner: Inner {
                    b: f64::NAN,
                    c: Some(3),
                },
                a: false,
            },
        ];
        let text = String::from_utf8(to_csv(&rows)).unwrap();
        assert_eq!(text, "z,b,c,a\n\"x,y\",0.1,,true\nw,,3,false\n");
    }
}
