//! A record of what every resource did, exported as Chrome trace-event JSON (the format
//! Perfetto and chrome://tracing open): one track for the compute unit, one per link channel
//! group, complete events (`"ph": "X"`) with microsecond timestamps.

use std::fmt::Write;

use crate::engine::TimeNs;

/// What a span was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Non-expert layer work.
    Dense,
    /// The gate and the router's own work.
    Route,
    /// The prefetch predictor.
    Predict,
    /// Handing transfers to links with nothing in flight.
    Issue,
    /// An expert kernel.
    Expert,
    /// Shared experts.
    Shared,
    /// The LM head.
    Head,
    /// The draft source of speculative decoding.
    Draft,
    /// The compute unit waiting for an expert to arrive.
    Stall,
    /// One hop of a demand load.
    Load,
    /// One hop of a prefetch.
    Prefetch,
    /// One hop of a shared-expert stream.
    SharedLoad,
    /// Activations crossing to the in-place unit, or its results (and the synchronisation)
    /// coming back.
    Activation,
}

impl SpanKind {
    fn name(self) -> &'static str {
        match self {
            SpanKind::Dense => "dense",
            SpanKind::Route => "route",
            SpanKind::Predict => "predict",
            SpanKind::Issue => "issue",
            SpanKind::Expert => "expert",
            SpanKind::Shared => "shared experts",
            SpanKind::Head => "lm head",
            SpanKind::Draft => "draft",
            SpanKind::Stall => "stall",
            SpanKind::Load => "load",
            SpanKind::Prefetch => "prefetch",
            SpanKind::SharedLoad => "shared load",
            SpanKind::Activation => "activations",
        }
    }

    fn category(self) -> &'static str {
        match self {
            SpanKind::Load | SpanKind::Prefetch | SpanKind::SharedLoad | SpanKind::Activation => {
                "transfer"
            }
            SpanKind::Stall => "stall",
            _ => "compute",
        }
    }
}

/// One busy interval of one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// What it was.
    pub kind: SpanKind,
    /// Track: 0 = compute, 1 + i = link i.
    pub track: u16,
    /// Start.
    pub start_ns: TimeNs,
    /// Duration.
    pub duration_ns: TimeNs,
    /// Request.
    pub request: u32,
    /// Token position (the first prompt token for a prefill step).
    pub position: u32,
    /// MoE layer.
    pub layer: u32,
    /// Expert, for expert spans and transfers.
    pub expert: Option<u32>,
}

/// The spans of a run and the names of its tracks.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Track names: compute first, then one per link.
    pub tracks: Vec<String>,
    /// Spans in the order they were recorded.
    pub spans: Vec<Span>,
}

impl Timeline {
    /// Chrome trace-event JSON: `{"traceEvents": [...], "displayTimeUnit": "ns"}`.
    pub fn to_chrome_json(&self) -> String {
        let mut s = String::with_capacity(128 + self.spans.len() * 160);
        s.push_str("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
        let _ = write!(
            s,
            "{{\"ph\":\"M\",\"pid\":1,\"name\":\"process_name\",\"args\":{{\"name\":\"moesim\"}}}}"
        );
        for (i, name) in self.tracks.iter().enumerate() {
            let _ = write!(
                s,
                ",\n{{\"ph\":\"M\",\"pid\":1,\"tid\":{},\"name\":\"thread_name\",\"args\":{{\"name\":{}}}}}",
                i + 1,
                json_string(name)
            );
            let _ = write!(
                s,
                ",\n{{\"ph\":\"M\",\"pid\":1,\"tid\":{},\"name\":\"thread_sort_index\",\"args\":{{\"sort_index\":{i}}}}}",
                i + 1
            );
        }
        for sp in &self.spans {
            let name = match sp.expert {
                Some(e) => format!("{} L{} E{}", sp.kind.name(), sp.layer, e),
                None => format!("{} L{}", sp.kind.name(), sp.layer),
            };
            let _ = write!(
                s,
                ",\n{{\"ph\":\"X\",\"pid\":1,\"tid\":{},\"name\":{},\"cat\":\"{}\",\"ts\":{},\"dur\":{},\"args\":{{\"request\":{},\"position\":{},\"layer\":{}",
                sp.track + 1,
                json_string(&name),
                sp.kind.category(),
                micros(sp.start_ns),
                micros(sp.duration_ns),
                sp.request,
                sp.position,
                sp.layer
            );
            if let Some(e) = sp.expert {
                let _ = write!(s, ",\"expert\":{e}");
            }
            s.push_str("}}");
        }
        s.push_str("\n]}\n");
        s
    }
}

/// Nanoseconds as microseconds with three decimals (exact).
fn micros(ns: TimeNs) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chrome_json_parses_and_keeps_times_exact() {
        let t = Timeline {
            tracks: vec!["compute".into(), "sdcard -> psram \"link\"".into()],
            spans: vec![
                Span {
                    kind: SpanKind::Load,
                    track: 1,
                    start_ns: 1_234_567,
                    duration_ns: 89,
                    request: 0,
                    position: 3,
                    layer: 2,
                    expert: Some(5),
                },
                Span {
                    kind: SpanKind::Dense,
                    track: 0,
                    start_ns: 0,
                    duration_ns: 1000,
                    request: 0,
                    position: 3,
                    layer: 2,
                    expert: None,
                },
            ],
        };
        let v: serde_json::Value = serde_json::from_str(&t.to_chrome_json()).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        let x: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(x.len(), 2);
        assert_eq!(x[0]["ts"].as_f64().unwrap(), 1234.567);
        assert_eq!(x[0]["dur"].as_f64().unwrap(), 0.089);
        assert_eq!(x[0]["tid"], 2);
        assert_eq!(x[0]["args"]["expert"], 5);
        assert!(
            events
                .iter()
                .any(|e| e["args"]["name"] == "sdcard -> psram \"link\"")
        );
    }
}
