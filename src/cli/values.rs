//! The command line's value enums: the spellings and help of the choices a flag takes
//! (`--scope per-layer`), each mapped to the library type it selects, which knows nothing of
//! clap.
//!
//! A flag's spellings are its variants' names in kebab case and its help their doc comments.
//! Conversions go both ways and match exhaustively, so a variant added to either side does not
//! compile until the other has it.

use crate::cache::replay::{BetweenRequests, Scope, Semantics};
use crate::router::GateWeights;
use crate::trace::export::ExportFormat;
use crate::trace::import::ImportFormat;

/// Declares a clap value enum and its conversions to and from the library's `$core`, which has
/// the same variants.
macro_rules! value_enum {
    (
        $(#[$meta:meta])*
        $arg:ident => $core:ident {
            $( $(#[$variant_meta:meta])* $variant:ident, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
        pub enum $arg {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl From<$arg> for $core {
            fn from(value: $arg) -> $core {
                match value {
                    $( $arg::$variant => $core::$variant, )+
                }
            }
        }

        impl From<$core> for $arg {
            fn from(value: $core) -> $arg {
                match value {
                    $( $core::$variant => $arg::$variant, )+
                }
            }
        }
    };
}

value_enum! {
    /// `--scope`: one cache per layer, or one for all layers.
    ScopeArg => Scope {
        /// One cache per MoE layer, each with the same capacity.
        PerLayer,
        /// One cache shared by all layers.
        Shared,
    }
}

value_enum! {
    /// `--semantics`: how the experts of one selection reach the cache.
    SemanticsArg => Semantics {
        /// One expert at a time, nothing protected (libCacheSim).
        Sequential,
        /// A token's selection is one event whose experts cannot evict each other.
        Atomic,
    }
}

value_enum! {
    /// `--between-requests`: what happens to caches when a new request starts.
    BetweenRequestsArg => BetweenRequests {
        /// Empty every cache (and policy state).
        Reset,
        /// Keep caches warm across requests.
        Keep,
    }
}

value_enum! {
    /// `--gate`: how gate weights are computed from the selection.
    GateWeightsArg => GateWeights {
        /// Softmax of the original logits renormalised over the selection (Mixtral).
        Renormalized,
        /// Softmax of the original logits over all experts, not renormalised (Switch-style).
        Softmax,
        /// Softmax of the router's own ranking scores (e.g. logits plus the memory bonus),
        /// renormalised over the selection.
        Biased,
    }
}

value_enum! {
    /// `trace export --format`.
    ExportFormatArg => ExportFormat {
        /// CSV with a `time,obj_id,obj_size` header.
        LibcachesimCsv,
        /// libCacheSim's 24-byte oracleGeneral binary records.
        OracleGeneral,
    }
}

value_enum! {
    /// `trace import --format`.
    ImportFormatArg => ImportFormat {
        /// moe-cache-lab v1 routing JSONL (one file per request).
        MoeCacheLab,
        /// Generic JSONL with field names mapped by `--map role=field`.
        Jsonl,
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    fn spelling(v: &impl ValueEnum) -> String {
        v.to_possible_value()
            .expect("not skipped")
            .get_name()
            .to_string()
    }

    /// Serde's name of a library value, as in experiment files and results.
    fn serde_name(v: impl serde::Serialize) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The spellings are the library's own names (its serde names, `GateWeights::name`).
    #[test]
    fn spellings_match_the_library_names() {
        for v in ScopeArg::value_variants() {
            assert_eq!(spelling(v), serde_name(Scope::from(*v)));
        }
        for v in SemanticsArg::value_variants() {
            assert_eq!(spelling(v), serde_name(Semantics::from(*v)));
        }
        for v in BetweenRequestsArg::value_variants() {
            assert_eq!(spelling(v), serde_name(BetweenRequests::from(*v)));
        }
        for v in GateWeightsArg::value_variants() {
            assert_eq!(spelling(v), GateWeights::from(*v).name());
            assert_eq!(spelling(v), serde_name(GateWeights::from(*v)));
        }
    }
}
