//! The shipped hardware profiles, compiled into the binary from `hardware-profiles/`.
//!
//! A test checks that this list and the directory agree, so a profile added to the directory
//! without a line here fails CI.

/// `(name, TOML text)` of every shipped profile, in display order.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "esp32-s3",
        include_str!("../../hardware-profiles/esp32-s3.toml"),
    ),
    (
        "esp32-p4",
        include_str!("../../hardware-profiles/esp32-p4.toml"),
    ),
    (
        "stm32h743",
        include_str!("../../hardware-profiles/stm32h743.toml"),
    ),
    (
        "alif-e7",
        include_str!("../../hardware-profiles/alif-e7.toml"),
    ),
    (
        "rp2350",
        include_str!("../../hardware-profiles/rp2350.toml"),
    ),
    (
        "raspberry-pi-5",
        include_str!("../../hardware-profiles/raspberry-pi-5.toml"),
    ),
    (
        "jetson-orin-nano",
        include_str!("../../hardware-profiles/jetson-orin-nano.toml"),
    ),
    (
        "jetson-agx-orin-64gb",
        include_str!("../../hardware-profiles/jetson-agx-orin-64gb.toml"),
    ),
    (
        "snapdragon-8-gen-3",
        include_str!("../../hardware-profiles/snapdragon-8-gen-3.toml"),
    ),
    (
        "apple-m2",
        include_str!("../../hardware-profiles/apple-m2.toml"),
    ),
    (
        "pc-rtx3060-12gb-ddr4",
        include_str!("../../hardware-profiles/pc-rtx3060-12gb-ddr4.toml"),
    ),
    (
        "pc-rtx3060-12gb-ddr5",
        include_str!("../../hardware-profiles/pc-rtx3060-12gb-ddr5.toml"),
    ),
    (
        "pc-rtx4060ti-16gb-ddr5",
        include_str!("../../hardware-profiles/pc-rtx4060ti-16gb-ddr5.toml"),
    ),
    (
        "pc-rtx3090-24gb-ddr5",
        include_str!("../../hardware-profiles/pc-rtx3090-24gb-ddr5.toml"),
    ),
    (
        "pc-rtx5090-32gb-ddr5",
        include_str!("../../hardware-profiles/pc-rtx5090-32gb-ddr5.toml"),
    ),
    (
        "pc-rx7900xtx-24gb-ddr5",
        include_str!("../../hardware-profiles/pc-rx7900xtx-24gb-ddr5.toml"),
    ),
    (
        "pc-rtx3060-12gb-pcie3",
        include_str!("../../hardware-profiles/pc-rtx3060-12gb-pcie3.toml"),
    ),
    (
        "pc-rtx2080-8gb-i9-10900x",
        include_str!("../../hardware-profiles/pc-rtx2080-8gb-i9-10900x.toml"),
    ),
    (
        "pc-cpu-ryzen7-5800x-ddr4-2ch",
        include_str!("../../hardware-profiles/pc-cpu-ryzen7-5800x-ddr4-2ch.toml"),
    ),
    (
        "pc-cpu-xeon-w5-2465x-ddr5-4ch",
        include_str!("../../hardware-profiles/pc-cpu-xeon-w5-2465x-ddr5-4ch.toml"),
    ),
    (
        "laptop-rtx3080-mobile-16gb",
        include_str!("../../hardware-profiles/laptop-rtx3080-mobile-16gb.toml"),
    ),
    (
        "gpu-t4-16gb-pcie3",
        include_str!("../../hardware-profiles/gpu-t4-16gb-pcie3.toml"),
    ),
    (
        "apple-m4-macbook-air-32gb",
        include_str!("../../hardware-profiles/apple-m4-macbook-air-32gb.toml"),
    ),
    (
        "apple-m3-macbook-air-24gb",
        include_str!("../../hardware-profiles/apple-m3-macbook-air-24gb.toml"),
    ),
    (
        "apple-m4-pro-mac-mini-48gb",
        include_str!("../../hardware-profiles/apple-m4-pro-mac-mini-48gb.toml"),
    ),
    (
        "apple-m4-max-macbook-pro-128gb",
        include_str!("../../hardware-profiles/apple-m4-max-macbook-pro-128gb.toml"),
    ),
    (
        "server-a100-80gb-sxm",
        include_str!("../../hardware-profiles/server-a100-80gb-sxm.toml"),
    ),
    (
        "server-l4-24gb-pcie4",
        include_str!("../../hardware-profiles/server-l4-24gb-pcie4.toml"),
    ),
    (
        "server-h100-80gb-sxm",
        include_str!("../../hardware-profiles/server-h100-80gb-sxm.toml"),
    ),
    (
        "pc-rtx4090-pcie4",
        include_str!("../../hardware-profiles/pc-rtx4090-pcie4.toml"),
    ),
    ("host", include_str!("../../hardware-profiles/host.toml")),
    (
        "host-calibrated-example",
        include_str!("../../hardware-profiles/host-calibrated-example.toml"),
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
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/hardware-profiles");
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
