//! The shipped model specs, compiled into the binary from `src/moe/presets/`.
//!
//! A test checks that this list and the directory agree.

/// `(name, TOML text)` of every shipped model, in display order.
pub const PRESETS: &[(&str, &str)] = &[
    ("micro-moe", include_str!("presets/micro-moe.toml")),
    ("micro-moe-1l", include_str!("presets/micro-moe-1l.toml")),
    ("mixtral-8x7b", include_str!("presets/mixtral-8x7b.toml")),
    ("mixtral-8x22b", include_str!("presets/mixtral-8x22b.toml")),
    ("olmoe-1b-7b", include_str!("presets/olmoe-1b-7b.toml")),
    (
        "qwen1.5-moe-a2.7b",
        include_str!("presets/qwen1.5-moe-a2.7b.toml"),
    ),
    ("qwen3-30b-a3b", include_str!("presets/qwen3-30b-a3b.toml")),
    (
        "deepseek-v2-lite",
        include_str!("presets/deepseek-v2-lite.toml"),
    ),
    (
        "deepseek-moe-16b",
        include_str!("presets/deepseek-moe-16b.toml"),
    ),
    ("phi-3.5-moe", include_str!("presets/phi-3.5-moe.toml")),
    ("switch-base-8", include_str!("presets/switch-base-8.toml")),
    (
        "qwen3.6-35b-a3b",
        include_str!("presets/qwen3.6-35b-a3b.toml"),
    ),
    ("glm-4.7-flash", include_str!("presets/glm-4.7-flash.toml")),
    ("gpt-oss-20b", include_str!("presets/gpt-oss-20b.toml")),
    ("gpt-oss-120b", include_str!("presets/gpt-oss-120b.toml")),
    ("glm-4.5-air", include_str!("presets/glm-4.5-air.toml")),
    (
        "qwen3-235b-a22b",
        include_str!("presets/qwen3-235b-a22b.toml"),
    ),
    ("deepseek-v3", include_str!("presets/deepseek-v3.toml")),
    (
        "qwen3-next-80b-a3b",
        include_str!("presets/qwen3-next-80b-a3b.toml"),
    ),
    (
        "llama-4-scout-17b-16e",
        include_str!("presets/llama-4-scout-17b-16e.toml"),
    ),
];

/// The TOML text of preset `name`.
pub fn get(name: &str) -> Option<&'static str> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// Every preset name.
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn list_matches_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/moe/presets");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".toml").map(str::to_string)
            })
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = super::names().into_iter().map(str::to_string).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }
}
