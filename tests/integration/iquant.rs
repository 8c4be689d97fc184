//! ggml's lattice-codebook i-quants (`src/quant/iquant/`): moesim's dequantization against the
//! `gguf` package's (`gguf.quants.dequantize`), bit for bit, on the committed random blocks of
//! `tests/data/iquant/` and live on fresh ones (`scripts/iquant_check.py`).

use std::path::{Path, PathBuf};
use std::process::Command;

use moesim::quant::iquant::IqFormat;
use moesim::weights::npy;

use crate::libcachesim_check::python;
use crate::util::scratch;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/iquant")
}

/// One format's comparison: values compared, how many differ in their bits, and how many of
/// those are not NaN on both sides.
struct Compared {
    format: IqFormat,
    values: usize,
    differing: usize,
    not_both_nan: usize,
}

/// Dequantizes `{name}.bin` of `dir` for every format and compares it with gguf's
/// `{name}.gguf-dequant.npy` bit for bit.
fn compare(dir: &Path) -> Vec<Compared> {
    IqFormat::ALL
        .iter()
        .map(|&format| {
            let name = format.name().to_ascii_lowercase();
            let bytes = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
            let theirs =
                npy::read(&std::fs::read(dir.join(format!("{name}.gguf-dequant.npy"))).unwrap())
                    .unwrap();
            let blocks = bytes.len() / format.block_bytes();
            assert_eq!(
                bytes.len(),
                blocks * format.block_bytes(),
                "{name}: whole blocks"
            );
            assert_eq!(
                (theirs.rows, theirs.cols),
                (blocks, 256),
                "{name}: npy shape"
            );
            let mut ours = vec![0.0f32; blocks * 256];
            format.dequantize_row(&bytes, &mut ours);
            let differing: Vec<(f32, f32)> = ours
                .iter()
                .zip(&theirs.data)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .map(|(&a, &b)| (a, b))
                .collect();
            Compared {
                format,
                values: ours.len(),
                differing: differing.len(),
                not_both_nan: differing
                    .iter()
                    .filter(|(a, b)| !(a.is_nan() && b.is_nan()))
                    .count(),
            }
        })
        .collect()
}

/// Asserts every format compared `values_each` values and none differed, reporting all.
fn assert_bit_identical(results: &[Compared], values_each: usize) {
    let report: Vec<String> = results
        .iter()
        .map(|c| {
            format!(
                "{}: {} of {} values differ",
                c.format, c.differing, c.values
            )
        })
        .collect();
    println!("{}", report.join("\n"));
    assert!(
        results
            .iter()
            .all(|c| c.differing == 0 && c.values == values_each),
        "moesim's i-quant dequantization differs from gguf.quants.dequantize:\n{}",
        report.join("\n")
    );
}

fn run_script(py: &Path, out: &Path, args: &[&str]) {
    let run = Command::new(py)
        .arg(format!(
            "{}/scripts/iquant_check.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn committed_fixtures_dequantize_bit_for_bit() {
    assert_bit_identical(&compare(&fixtures()), 8 * 256);
}

/// Fresh random blocks (512 per format, another seed than the fixtures'), and the committed
/// fixtures are what the script writes today.
#[test]
fn gguf_live_check() {
    let Some(py) = python() else { return };
    let live = scratch("iquant_live");
    run_script(&py, &live, &["--blocks", "512", "--seed", "1"]);
    assert_bit_identical(&compare(&live), 512 * 256);

    let again = scratch("iquant_fixtures");
    run_script(&py, &again, &[]);
    for format in IqFormat::ALL {
        let name = format.name().to_ascii_lowercase();
        for file in [format!("{name}.bin"), format!("{name}.gguf-dequant.npy")] {
            assert!(
                std::fs::read(again.join(&file)).unwrap()
                    == std::fs::read(fixtures().join(&file)).unwrap(),
                "tests/data/iquant/{file} is not what scripts/iquant_check.py writes; regenerate with `\"$(scripts/pyenv.sh)\" scripts/iquant_check.py tests/data/iquant`"
            );
        }
    }
}

/// Blocks whose scale is infinite or NaN (half of them) dequantize as gguf's do: the same
/// infinities, and NaN where gguf has NaN (its sign and payload are the hardware's business;
/// on x86-64 they agree too, and the count of bit differences is printed).
#[test]
fn gguf_live_check_nonfinite_scales() {
    let Some(py) = python() else { return };
    let dir = scratch("iquant_nonfinite");
    run_script(&py, &dir, &["--blocks", "64", "--seed", "2", "--nonfinite"]);
    let results = compare(&dir);
    for c in &results {
        println!(
            "{}: {} of {} values differ in their bits, {} other than NaN against NaN",
            c.format, c.differing, c.values, c.not_both_nan
        );
        assert_eq!(c.values, 64 * 256);
        assert_eq!(c.not_both_nan, 0, "{}", c.format);
    }
}
