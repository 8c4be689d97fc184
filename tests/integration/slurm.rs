//! A real Slurm: scripts/slurm/ci-test.sh starts munged, slurmctld and slurmd on localhost, runs a
//! shipped sweep as a 4-shard job array with a dependent merge job, and compares the merged report
//! with a single-machine run byte for byte. It runs when CI=true (where it must not skip) or
//! MOESIM_SLURM=1; otherwise this test prints a SKIP line.

use std::process::Command;

#[test]
fn a_slurm_job_array_merges_to_the_single_machine_report() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let asked = std::env::var("MOESIM_SLURM").is_ok_and(|v| v == "1");
    if !ci && !asked {
        eprintln!(
            "SKIP: real Slurm test: set CI=true or MOESIM_SLURM=1 to run scripts/slurm/ci-test.sh (needs root and apt-get)"
        );
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{root}/scripts/slurm/ci-test.sh"))
        .env("MOESIM", env!("CARGO_BIN_EXE_moesim"))
        .output()
        .expect("runs scripts/slurm/ci-test.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    if out.status.code() == Some(77) {
        assert!(
            !ci,
            "CI must run the real Slurm test, but the script skipped: {stdout}"
        );
        return;
    }
    assert!(
        out.status.success(),
        "ci-test.sh failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("PASS: 4-shard Slurm array"), "{stdout}");
    assert!(stdout.contains("stopped daemons"), "{stdout}");
}
