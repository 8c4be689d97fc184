//! The commands in README.md and GUIDE.md run as written (issue 17).
//!
//! Every fenced block tagged `sh` is executed, in file order, in one scratch directory that
//! holds the repository's inputs (`experiments/`, `hardware-profiles/`, `tests/`, `scripts/`,
//! `src/` as symlinks), an empty `reports/`, and `../shared` beside it. Each line runs with
//! `sh -c` and `moesim` on `PATH` (`cargo run --release --` stands for the binary); a line
//! ending in `\` continues on the next. A block whose first line is
//! `# not run by the docs test: REASON` is listed with its reason and not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::scratch;

/// One command with where it came from.
struct Cmd {
    file: &'static str,
    line: usize,
    text: String,
}

/// The `sh` blocks of `text`: runnable commands (heredocs kept with the command that opens
/// them), and the skipped blocks with their reasons.
fn commands(file: &'static str, text: &str) -> (Vec<Cmd>, Vec<(usize, String)>) {
    let mut cmds: Vec<Cmd> = Vec::new();
    let mut skipped = Vec::new();
    let mut in_block = false;
    let mut first = false;
    let mut skip = false;
    let mut pending: Option<(usize, String)> = None;
    let mut heredoc: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if heredoc.is_none()
            && let Some(tag) = trimmed.strip_prefix("```")
        {
            in_block = !in_block && tag.trim() == "sh";
            first = true;
            skip = false;
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(end) = &heredoc {
            let last = cmds.last_mut().expect("a heredoc belongs to a command");
            last.text.push('\n');
            last.text.push_str(line);
            if line.trim() == end {
                heredoc = None;
            }
            continue;
        }
        if first {
            first = false;
            if let Some(reason) = trimmed.strip_prefix("# not run by the docs test:") {
                skip = true;
                skipped.push((i + 1, reason.trim().to_string()));
            }
        }
        if skip {
            continue;
        }
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(part) = line.strip_suffix('\\') {
            acc.push_str(part);
            acc.push(' ');
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(line);
        let t = acc.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(pos) = acc.find("<<") {
            let end = acc[pos + 2..]
                .trim()
                .trim_start_matches('-')
                .split_whitespace()
                .next()
                .unwrap_or("EOF")
                .trim_matches(|c| c == '\'' || c == '"')
                .to_string();
            heredoc = Some(end);
        }
        cmds.push(Cmd {
            file,
            line: start,
            text: acc,
        });
    }
    (cmds, skipped)
}

#[test]
fn every_documented_command_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let base = scratch("docs-commands");
    let work = base.join("work");
    std::fs::create_dir_all(work.join("reports")).unwrap();
    for d in [
        "experiments",
        "hardware-profiles",
        "tests",
        "scripts",
        "src",
    ] {
        std::os::unix::fs::symlink(root.join(d), work.join(d)).unwrap();
    }
    let shared = root.join("../shared");
    if shared.exists() {
        std::os::unix::fs::symlink(std::fs::canonicalize(&shared).unwrap(), base.join("shared"))
            .unwrap();
    }
    // `moesim` on PATH.
    let bin_dir: PathBuf = base.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_moesim"), bin_dir.join("moesim")).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut all = Vec::new();
    let mut skipped = Vec::new();
    for file in ["README.md", "GUIDE.md"] {
        let text: &'static str = Box::leak(
            std::fs::read_to_string(root.join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .into_boxed_str(),
        );
        let (c, s) = commands(file, text);
        all.extend(c);
        skipped.extend(s.into_iter().map(|(l, r)| format!("{file}:{l}: {r}")));
    }
    assert!(all.len() >= 20, "only {} commands found", all.len());
    for s in &skipped {
        println!("not run: {s}");
    }
    // The README's first two lines are the setup commands; running `cargo test` inside the
    // test suite would recurse, so the test command is checked by CI itself (.ci/run runs it).
    let mut ran = 0;
    for c in &all {
        let text = c
            .text
            .replace("cargo run --release -- ", "moesim ")
            .replace("cargo run --release --", "moesim");
        if text.trim_start().starts_with("cargo test") {
            println!(
                "checked by CI itself: {}:{}: {}",
                c.file,
                c.line,
                text.trim()
            );
            continue;
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(&text)
            .current_dir(&work)
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}:{}: `{}` failed ({}):\n{}{}",
            c.file,
            c.line,
            text.trim(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    println!(
        "ran {ran} documented commands; {} blocks not run",
        skipped.len()
    );
    assert!(
        skipped.len() <= 6,
        "too many documented blocks are not run: {skipped:?}"
    );
}
