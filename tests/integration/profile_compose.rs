//! Composed hardware profiles, `GPU+HOST` (issue 22): the GPU side of one profile on the host
//! side of another, wherever a profile is named.

use std::path::Path;

use serde_json::Value;

use crate::util::{assert_bad_input, moesim, scratch};

const GPUS: [&str; 3] = [
    "pc-rtx3060-12gb-ddr5", // GPU and CPU units
    "server-l4-24gb-pcie4", // GPU and CPU units, a server host
    "pc-rtx4090-pcie4",     // one [compute] section on VRAM, and an NVMe tier of its own
];
const HOSTS: [&str; 3] = [
    "pc-cpu-ryzen7-5800x-ddr4-2ch",
    "pc-cpu-xeon-w5-2465x-ddr5-4ch",
    "host", // one [compute] section on DRAM
];

fn show_json(profile: &str) -> Value {
    let run = moesim(["profile", "show", profile, "--json"]);
    assert_eq!(run.code, 0, "{profile}: {}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

fn tier<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tier {name} in {}", p["name"]))
}

fn unit<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no unit {name} in {}", p["name"]))
}

fn rate(unit: &Value, class: &str) -> f64 {
    unit["expert_weights_per_s"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == class)
        .unwrap()[1]
        .as_f64()
        .unwrap()
}

/// Every GPU profile on every CPU host: the GPU's memory, unit and link, then all of the host.
#[test]
fn each_gpu_side_on_each_host_side() {
    for gpu_name in GPUS {
        let gpu = show_json(gpu_name);
        for host_name in HOSTS {
            let host = show_json(host_name);
            let c = show_json(&format!("{gpu_name}+{host_name}"));
            let what = format!("{gpu_name}+{host_name}");
            assert_eq!(c["name"], what.as_str());

            // Tiers: the GPU's VRAM, then every host tier, figures unchanged.
            let mut tiers = vec![tier(&gpu, "vram").clone()];
            tiers.extend(host["tiers"].as_array().unwrap().iter().cloned());
            assert_eq!(c["tiers"], Value::Array(tiers), "{what}");
            assert_eq!(c["compute_tier"], "vram", "{what}");
            assert_eq!(c["home_tier"], host["home_tier"], "{what}");

            // Links: the GPU's host-to-device link, now from the host's DRAM; then the host's.
            let gpu_link = gpu["links"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["to"] == "vram")
                .unwrap();
            let mut links = vec![gpu_link.clone()];
            links[0]["from"] = "dram".into();
            links.extend(host["links"].as_array().unwrap().iter().cloned());
            assert_eq!(c["links"], Value::Array(links), "{what}");

            // Units: the GPU's primary unit first, then the host's (a lone [compute] is `cpu`).
            let units = c["units"].as_array().unwrap();
            assert_eq!(units.len(), 2, "{what}");
            let mut gpu_unit = gpu["units"][0].clone();
            gpu_unit["name"] = "gpu".into();
            assert_eq!(units[0], gpu_unit, "{what}");
            let mut host_unit = host["units"][0].clone();
            host_unit["name"] = "cpu".into();
            assert_eq!(units[1], host_unit, "{what}");
            assert_eq!(
                c["compute"], gpu["compute"],
                "{what}: the primary unit is the GPU"
            );

            // Sources: both profiles', each prefixed with its profile's name.
            let sources: Vec<String> = gpu["sources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| format!("{gpu_name}: {}", s.as_str().unwrap()))
                .chain(
                    host["sources"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| format!("{host_name}: {}", s.as_str().unwrap())),
                )
                .collect();
            assert_eq!(c["sources"], serde_json::json!(sources), "{what}");

            // No static power: each side's figure covers its whole machine.
            let text = moesim(["profile", "show", &what]);
            assert_eq!(text.code, 0, "{}", text.stderr);
            assert!(
                text.stdout.contains("static power: not stated"),
                "{}",
                text.stdout
            );
            let check = moesim(["profile", "check", &what]);
            assert_eq!(check.code, 0, "{}", check.stderr);
            assert!(
                check
                    .stdout
                    .starts_with(&format!("ok: {what}: profile `{what}`"))
            );
        }
    }
}

/// The figures of two compositions, read off the TOML files.
#[test]
fn composed_figures_come_from_the_right_file() {
    // pc-rtx3060-12gb-ddr5.toml: 12 GiB GDDR6 at 360 GB/s, PCIe 4.0 pinned H2D 20 GB/s, GPU q4
    // 640e9 weights/s. pc-cpu-ryzen7-5800x-ddr4-2ch.toml: 64 GiB DDR4-3200 at 51.2 GB/s, CPU q4
    // 81.8e9, a 7.45 GB/s NVMe holding no experts.
    let c = show_json("pc-rtx3060-12gb-ddr5+pc-cpu-ryzen7-5800x-ddr4-2ch");
    let vram = tier(&c, "vram");
    assert_eq!(vram["capacity_bytes"], 12_884_901_888u64);
    assert_eq!(vram["read_bandwidth_bytes_per_s"], 360e9);
    let dram = tier(&c, "dram");
    assert_eq!(dram["capacity_bytes"], 68_719_476_736u64);
    assert_eq!(dram["read_bandwidth_bytes_per_s"], 51.2e9);
    assert_eq!(dram["latency_ns"], 75.0);
    let nvme = tier(&c, "nvme");
    assert_eq!(nvme["read_bandwidth_bytes_per_s"], 7.45e9);
    assert_eq!(nvme["holds_experts"], false);
    assert_eq!(c["links"][0]["from"], "dram");
    assert_eq!(c["links"][0]["to"], "vram");
    assert_eq!(c["links"][0]["bandwidth_bytes_per_s"], 20e9);
    assert_eq!(c["links"][1]["from"], "nvme");
    assert_eq!(c["links"][1]["bandwidth_bytes_per_s"], 7.45e9);
    assert_eq!(rate(unit(&c, "gpu"), "q4"), 640e9);
    assert_eq!(unit(&c, "gpu")["cores"], 28);
    assert_eq!(rate(unit(&c, "cpu"), "q4"), 81.8e9);
    assert_eq!(unit(&c, "cpu")["cores"], 8);
    assert_eq!(unit(&c, "cpu")["tier"], "dram");

    // pc-cpu-xeon-w5-2465x-ddr5-4ch.toml: 128 GiB quad-channel DDR5-4800 at 153.6 GB/s, 16
    // cores; server-l4-24gb-pcie4.toml: 300 GB/s GDDR6, 25 GB/s H2D.
    let c = show_json("server-l4-24gb-pcie4+pc-cpu-xeon-w5-2465x-ddr5-4ch");
    assert_eq!(tier(&c, "vram")["read_bandwidth_bytes_per_s"], 300e9);
    assert_eq!(tier(&c, "dram")["capacity_bytes"], 137_438_953_472u64);
    assert_eq!(tier(&c, "dram")["read_bandwidth_bytes_per_s"], 153.6e9);
    assert_eq!(c["links"][0]["bandwidth_bytes_per_s"], 25e9);
    assert_eq!(unit(&c, "cpu")["cores"], 16);
}

/// Same inputs, same bytes; `--toml` writes a file that reads back to the same profile.
#[test]
fn composition_is_deterministic_and_its_toml_reads_back() {
    let dir = scratch("compose_toml");
    let what = "pc-rtx3060-12gb-ddr5+pc-cpu-xeon-w5-2465x-ddr5-4ch";
    let a = moesim(["profile", "show", what, "--json"]);
    let b = moesim(["profile", "show", what, "--json"]);
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.stdout, b.stdout);
    let t1 = moesim(["profile", "show", what, "--toml"]);
    let t2 = moesim(["profile", "show", what, "--toml"]);
    assert_eq!(t1.code, 0, "{}", t1.stderr);
    assert_eq!(t1.stdout, t2.stdout);
    assert!(
        t1.stdout.starts_with(&format!(
            "# Composed by `moesim profile show {what} --toml`.\n# GPU side: pc-rtx3060-12gb-ddr5"
        )),
        "{}",
        t1.stdout
    );
    let file = dir.join("composed.toml");
    std::fs::write(&file, &t1.stdout).unwrap();
    let again = moesim(["profile", "show", file.to_str().unwrap(), "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout, a.stdout);
    // A single profile prints too, and reads back.
    let one = moesim(["profile", "show", "pc-rtx4090-pcie4", "--toml"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    let file = dir.join("one.toml");
    std::fs::write(&file, &one.stdout).unwrap();
    assert_eq!(
        moesim(["profile", "show", file.to_str().unwrap(), "--json"]).stdout,
        moesim(["profile", "show", "pc-rtx4090-pcie4", "--json"]).stdout
    );
    // --toml prints the profile alone.
    assert_bad_input(
        &moesim(["profile", "show", what, "--toml", "--json"]),
        &["--json"],
    );
}

/// `moesim plan` and `moesim run` on a composed profile; the experiment's file part is
/// relative to the experiment, and the run equals one on the profile `--toml` wrote.
#[test]
fn simulations_run_on_a_composed_profile() {
    let plan = moesim([
        "plan",
        "--hardware",
        "pc-rtx3060-12gb-ddr5+pc-cpu-ryzen7-5800x-ddr4-2ch",
        "--model",
        "micro-moe",
        "--formats",
        "q4_k",
        "--top",
        "2",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.starts_with(
            "micro-moe on pc-rtx3060-12gb-ddr5+pc-cpu-ryzen7-5800x-ddr4-2ch at q4_k: FITS ENTIRELY"
        ),
        "{}",
        plan.stdout
    );

    let dir = scratch("compose_run");
    std::fs::create_dir_all(dir.join("exp")).unwrap();
    // A host file beside the experiment, named relative to it.
    let host = moesim(["profile", "show", "pc-cpu-ryzen7-5800x-ddr4-2ch", "--toml"]);
    std::fs::write(dir.join("exp/my-host.toml"), &host.stdout).unwrap();
    let composed = moesim([
        "profile",
        "show",
        "pc-rtx3060-12gb-ddr5+pc-cpu-ryzen7-5800x-ddr4-2ch",
        "--toml",
    ]);
    std::fs::write(dir.join("exp/composed.toml"), &composed.stdout).unwrap();
    let body = |profile: &str| {
        format!(
            "schema_version = 1\nname = \"c\"\nseed = 3\n[hardware]\nprofile = \"{profile}\"\n\
             [model]\nspec = \"micro-moe\"\nformat = \"q4_k\"\n\
             [trace]\ngenerator = \"micro-moe\"\nrequests = 2\nprefill_tokens = 4\ndecode_tokens = 12\n\
             [cache]\ncapacity_experts = 3\n[quality]\nsamples = 0\n"
        )
    };
    let mut metrics = Vec::new();
    for (i, profile) in [
        "pc-rtx3060-12gb-ddr5+my-host.toml",
        "pc-rtx3060-12gb-ddr5+my-host.toml",
        "composed.toml",
    ]
    .into_iter()
    .enumerate()
    {
        let exp = dir.join(format!("exp/e{i}.toml"));
        std::fs::write(&exp, body(profile)).unwrap();
        let out = dir.join(format!("out{i}"));
        let run = moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{profile}: {}", run.stderr);
        metrics.push(std::fs::read_to_string(out.join("metrics.csv")).unwrap());
        if i == 0 {
            let resolved = std::fs::read_to_string(out.join("config.resolved.toml")).unwrap();
            let host_abs = std::fs::canonicalize(dir.join("exp/my-host.toml")).unwrap();
            assert!(
                resolved.contains(&format!(
                    "profile = \"pc-rtx3060-12gb-ddr5+{}\"",
                    host_abs.display()
                )),
                "{resolved}"
            );
        }
    }
    assert!(metrics[0].contains("pc-rtx3060-12gb-ddr5+pc-cpu-ryzen7-5800x-ddr4-2ch"));
    assert_eq!(metrics[0], metrics[1], "deterministic");
    assert_eq!(
        metrics[0], metrics[2],
        "the same as the written-out composition"
    );

    // A bad composition in an experiment: one line naming the key and both inputs.
    let exp = dir.join("exp/bad.toml");
    std::fs::write(&exp, body("pc-rtx3060-12gb-ddr5+server-l4-24gb-pcie4")).unwrap();
    let out = dir.join("bad");
    assert_bad_input(
        &moesim(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]),
        &[
            "hardware.profile",
            "pc-rtx3060-12gb-ddr5+server-l4-24gb-pcie4: cannot compose",
            "both are GPU profiles",
        ],
    );
    assert!(!out.exists());
}

/// A profile text with `from` replaced by `to` (which must occur).
fn edited(profile: &str, edits: &[(&str, &str)]) -> String {
    let mut text = moesim(["profile", "show", profile, "--toml"]).stdout;
    for (from, to) in edits {
        assert!(text.contains(from), "`{from}` not in {profile}");
        text = text.replace(from, to);
    }
    text
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Combinations that make no sense: exit 2, one line naming both inputs and the reason.
#[test]
fn bad_combinations_exit_2_on_one_line() {
    let dir = scratch("compose_bad");
    let gpu = "pc-rtx3060-12gb-ddr5";
    // A GPU with a GPUDirect-storage link from its own NVMe.
    let gds = write(
        &dir,
        "gds.toml",
        &(edited("pc-rtx4090-pcie4", &[])
            + "\n[[links]]\nfrom = \"nvme\"\nto = \"vram\"\nbandwidth_bytes_per_s = 7e9\n\
               latency_ns = 50000\ngranularity_bytes = 4096\nchannels = 1\ncalibrated = \"assumed\"\n"),
    );
    // A GPU with no link to its host memory.
    let pcie3 = edited("pc-rtx3060-12gb-pcie3", &[]);
    let (head, rest) = pcie3.split_once("[[links]]").unwrap();
    let (_, tail) = rest.split_once("[[compute_units]]").unwrap();
    let unlinked = write(
        &dir,
        "unlinked.toml",
        &format!("{head}[[compute_units]]{tail}"),
    );
    // A host whose DRAM tier is called `vram`.
    let host_named_vram = write(
        &dir,
        "host-vram.toml",
        &edited(
            "host",
            &[
                ("name = \"dram\"", "name = \"vram\""),
                ("compute_tier = \"dram\"", "compute_tier = \"vram\""),
                ("to = \"dram\"", "to = \"vram\""),
            ],
        ),
    );
    let host_gpu_unit = write(
        &dir,
        "host-gpu-unit.toml",
        &edited(
            "host-calibrated-example",
            &[("name = \"cpu\"", "name = \"gpu\"")],
        ),
    );
    let fast_host = write(
        &dir,
        "fast-host.toml",
        &edited(
            "host",
            &[(
                "read_bandwidth_bytes_per_s = 15700000000.0",
                "read_bandwidth_bytes_per_s = 1e12",
            )],
        ),
    );
    let two_dram = write(
        &dir,
        "two-dram.toml",
        &edited("host", &[("kind = \"nvme\"", "kind = \"dram\"")]),
    );
    let broken = write(&dir, "broken.toml", &(edited("host", &[]) + "colour = 1\n"));
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("{gpu}+server-l4-24gb-pcie4"),
            vec![
                "`server-l4-24gb-pcie4` has GPU memory",
                "both are GPU profiles",
            ],
        ),
        (
            format!("host+{gpu}"),
            vec![
                "`host` has no GPU memory",
                "GPU profile comes first: pc-rtx3060-12gb-ddr5+host",
            ],
        ),
        (
            "host+raspberry-pi-5".into(),
            vec![
                "host+raspberry-pi-5: cannot compose",
                "`host` has no GPU memory",
            ],
        ),
        (
            format!("{gpu}+esp32-s3"),
            vec!["`esp32-s3` has no DRAM tier", "needs host DRAM"],
        ),
        (
            format!("{gpu}+nope"),
            vec!["the host profile `nope` is no hardware profile preset or file"],
        ),
        (format!("{gpu}+"), vec!["the host profile is missing"]),
        (
            format!("{gpu}+{gpu}+host"),
            vec!["two profiles, GPU+HOST; this names 3"],
        ),
        (
            format!("{gds}+host"),
            vec![
                "link nvme -> vram",
                "only links between GPU memory and DRAM carry over",
            ],
        ),
        (
            format!("{unlinked}+host"),
            vec!["has no link between its GPU memory and its DRAM"],
        ),
        (
            format!("{gpu}+{host_named_vram}"),
            vec!["both have a tier named `vram`"],
        ),
        (
            format!("{gpu}+{host_gpu_unit}"),
            vec!["both have a compute unit named `gpu`"],
        ),
        (
            format!("{gpu}+{fast_host}"),
            vec![
                "tier `dram` reads at 1.00 TB/s, faster than",
                "GPU memory `vram` at 360.00 GB/s",
            ],
        ),
        (
            format!("{gpu}+{two_dram}"),
            vec!["has 2 DRAM tiers (`dram`, `disk`)"],
        ),
        // A part that is not a valid profile is reported in its own file.
        (
            format!("{gpu}+{broken}"),
            vec!["broken.toml", "unknown field `colour`"],
        ),
    ];
    for (arg, needles) in &cases {
        let run = moesim(["profile", "show", arg.as_str()]);
        assert_bad_input(&run, needles);
        if !needles[0].contains("broken") && !arg.ends_with('+') && !arg.contains("nope") {
            assert!(
                run.stderr.starts_with(&format!("error: {arg}: ")),
                "names both inputs: {}",
                run.stderr
            );
        }
        assert_bad_input(
            &moesim(["plan", "--hardware", arg.as_str(), "--model", "micro-moe"]),
            needles,
        );
    }
}

/// A file whose name holds a `+` is still one profile, and composes.
#[test]
fn a_plus_in_a_file_name_is_not_a_composition() {
    let dir = scratch("compose_plus");
    let file = write(
        &dir,
        "my+host.toml",
        &moesim(["profile", "show", "host", "--toml"]).stdout,
    );
    let one = moesim(["profile", "show", &file, "--json"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    let c = moesim([
        "profile",
        "show",
        &format!("pc-rtx3060-12gb-ddr5+{file}"),
        "--json",
    ]);
    assert_eq!(c.code, 0, "{}", c.stderr);
    assert_eq!(
        c.stdout,
        moesim(["profile", "show", "pc-rtx3060-12gb-ddr5+host", "--json"]).stdout
    );
}
