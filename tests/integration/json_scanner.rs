//! The record scanner against serde_json (issue 17): every record line serde_json reads with
//! the right shape, written in any of JSON's forms (key order, whitespace, string escapes and
//! `\u` sequences in keys and values, number forms with exponents, signs and trailing zeros),
//! is accepted by `parse_record` with the same values. The fuzz target `json_record` checks
//! the same property on arbitrary bytes.

use moesim::trace::RoutingRecord;
use moesim::trace::native::parse_record;
use proptest::prelude::*;

/// A key spelled with optional escapes: `layer`, `l\u0061yer`, `\u006cayer`.
fn key(name: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), name.len()).prop_map(move |esc| {
        name.chars()
            .zip(esc)
            .map(|(c, e)| {
                if e {
                    format!("\\u{:04x}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect()
    })
}

/// Whitespace JSON allows between tokens.
fn ws() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec![" ", "\t", "\r", ""]), 0..3)
        .prop_map(|v| v.concat())
}

/// An f32 written in one of JSON's number forms, and the f32 serde_json reads from it.
fn number() -> impl Strategy<Value = (String, f32)> {
    (-1.0e4f32..1.0e4f32, 0usize..5).prop_map(|(x, form)| {
        let text = match form {
            0 => format!("{x}"),
            1 => format!("{x:e}"),
            2 => format!("{:E}", x),
            3 => format!("{x:.3}"),
            _ => format!("{}e+0", x),
        };
        let parsed: f32 = serde_json::from_str(&text).unwrap();
        (text, parsed)
    })
}

#[derive(Debug, Clone)]
struct Line {
    text: String,
    want: RoutingRecord,
}

fn line() -> impl Strategy<Value = Line> {
    (
        (any::<u32>(), any::<bool>(), any::<u32>(), any::<u32>()),
        prop::collection::vec(any::<u16>(), 1..5),
        prop::collection::vec(number(), 0..4),
        prop::collection::vec(number(), 0..6),
        prop::option::of(any::<u32>()),
        (
            key("request"),
            key("phase"),
            key("position"),
            key("layer"),
            key("experts"),
        ),
        prop::collection::vec(ws(), 16),
        any::<u64>(),
    )
        .prop_map(
            |(
                (request, decode, position, layer),
                experts,
                weights,
                logits,
                token,
                keys,
                space,
                order,
            )| {
                let s = |i: usize| space[i % space.len()].clone();
                let list = |v: &[(String, f32)]| {
                    v.iter()
                        .map(|(t, _)| t.as_str())
                        .collect::<Vec<_>>()
                        .join(&format!(",{}", s(3)))
                };
                let phase = if decode { "decode" } else { "pr\\u0065fill" };
                let mut fields = vec![
                    format!("\"{}\"{}:{}{request}", keys.0, s(0), s(1)),
                    format!("\"{}\":{}\"{phase}\"", keys.1, s(2)),
                    format!("\"{}\":{position}", keys.2),
                    format!("\"{}\"{}:{layer}", keys.3, s(4)),
                    format!(
                        "\"{}\":[{}{}]",
                        keys.4,
                        s(5),
                        experts
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                ];
                if !weights.is_empty() {
                    fields.push(format!("\"weights\":[{}]", list(&weights)));
                }
                if !logits.is_empty() {
                    fields.push(format!("\"logits\":{}[{}]", s(6), list(&logits)));
                }
                match token {
                    Some(t) => fields.push(format!("\"token\":{t}")),
                    None if order % 3 == 0 => fields.push("\"token\":null".into()),
                    None => {}
                }
                // A key order from the seed.
                let mut o = order;
                for i in (1..fields.len()).rev() {
                    fields.swap(i, (o % (i as u64 + 1)) as usize);
                    o /= i as u64 + 1;
                }
                let text = format!(
                    "{}{{{}{}}}{}",
                    s(7),
                    s(8),
                    fields.join(&format!("{},{}", s(9), s(10))),
                    s(11)
                );
                Line {
                    text,
                    want: RoutingRecord {
                        request,
                        phase: if decode {
                            moesim::trace::Phase::Decode
                        } else {
                            moesim::trace::Phase::Prefill
                        },
                        position,
                        layer,
                        experts,
                        weights: weights.iter().map(|w| w.1).collect(),
                        logits: logits.iter().map(|w| w.1).collect(),
                        token,
                    },
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn every_record_serde_json_reads_is_read_with_the_same_values(l in line()) {
        // serde_json agrees that this is a record of that shape.
        let v: serde_json::Value = serde_json::from_str(&l.text).unwrap();
        prop_assert_eq!(v["request"].as_u64(), Some(l.want.request as u64));
        let mut r = RoutingRecord::default();
        let got = parse_record(l.text.as_bytes(), &mut r);
        prop_assert!(got.is_ok(), "{:?} refused: {}", l.text, got.unwrap_err());
        prop_assert_eq!(r, l.want, "{}", l.text);
    }
}
