//! `scripts/pyenv.sh` under concurrency: four callers start at the same moment on an empty
//! directory (as the cross-check tests do on a fresh clone); all must succeed, print the same
//! interpreter, and leave one working environment with the requirements installed.

use std::process::Command;

use crate::util::scratch;

#[test]
fn concurrent_creation_from_an_empty_directory_succeeds_for_every_caller() {
    if std::env::var("MOESIM_SKIP_PYTHON").is_ok_and(|v| v == "1") {
        println!("SKIP: MOESIM_SKIP_PYTHON=1, the Python environment script did not run");
        return;
    }
    let dir = scratch("pyenv-concurrent");
    let req = dir.join("requirements.txt");
    // One small real package, so that the pip step (where the original race lost files) runs.
    std::fs::write(&req, "six==1.16.0\n").unwrap();
    let venv = dir.join("env");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pyenv.sh");
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(script)
                .env("MOESIM_PYENV_DIR", &venv)
                .env("MOESIM_PYENV_REQUIREMENTS", &req)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("scripts/pyenv.sh starts")
        })
        .collect();
    let mut printed = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a concurrent caller failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        printed.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    assert!(printed.iter().all(|p| p == &printed[0]), "{printed:?}");
    assert_eq!(printed[0], venv.join("bin/python").display().to_string());
    let check = Command::new(&printed[0])
        .args(["-c", "import six; print(six.__version__)"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "1.16.0");
    // The stamp matches the requirements, so a later caller reuses the environment.
    assert_eq!(
        std::fs::read(venv.join(".requirements")).unwrap(),
        std::fs::read(&req).unwrap()
    );
    let again = Command::new(script)
        .env("MOESIM_PYENV_DIR", &venv)
        .env("MOESIM_PYENV_REQUIREMENTS", &req)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(
        again.stderr.is_empty(),
        "a reuse creates nothing: {}",
        String::from_utf8_lossy(&again.stderr)
    );
}
