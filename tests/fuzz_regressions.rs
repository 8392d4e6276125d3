//! Every input the fuzzers found a problem with, replayed in `cargo test`:
//! `fuzz/regressions/<target>/<name>` goes through the same check as
//! `cargo fuzz run <target>` (the checks in `fuzz/src/`, included here), so
//! a finding stays fixed without anyone running a fuzzer.
//!
//! Each input runs in a child process (this test binary again, on the test
//! `replay_child`), with its address space capped and a deadline, because
//! a finding may be a stack overflow (which aborts the process), a memory
//! bomb or a hang: the parent reports which input did what, and the other
//! inputs still run.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one input may take. A debug build is slow, but no check of one
/// input comes near this unless something is wrong.
const DEADLINE: Duration = Duration::from_secs(120);
/// Address space for one replay (KiB): enough for the runtime and the
/// store, not for a YAML alias bomb to take the machine with it.
const ADDRESS_SPACE_KIB: u64 = 4 * 1024 * 1024;

const TARGET_VAR: &str = "RIGGER_FUZZ_REPLAY_TARGET";
const FILE_VAR: &str = "RIGGER_FUZZ_REPLAY_FILE";

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions")
}

/// The child's side: replay the one input the parent named. Without the
/// variables (a plain `cargo test`) there is nothing to replay.
#[test]
fn replay_child() {
    let (Some(target), Some(file)) = (std::env::var_os(TARGET_VAR), std::env::var_os(FILE_VAR))
    else {
        return;
    };
    let target = target.to_string_lossy();
    let check = harness::target(&target).unwrap_or_else(|| panic!("no fuzz target {target}"));
    let data = std::fs::read(&file).expect("the input is readable");
    check(&data);
}

/// Why an input failed, or `None` if its check passed.
fn replay(target: &str, file: &Path) -> Option<String> {
    let exe = std::env::current_exe().expect("this test binary");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(exe)
        .args(["--exact", "replay_child", "--nocapture", "--test-threads=1"])
        .env(TARGET_VAR, target)
        .env(FILE_VAR, file)
        // The panic's message, not where the test harness called it from.
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh starts");
    // Read as it comes: a child blocked on a full pipe would look hung.
    let mut pipe = child.stderr.take().expect("the child's stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => None,
        Some(s) => Some(format!("{s}\n{}", what_failed(&stderr))),
        None => Some(format!("still running after {DEADLINE:?}")),
    }
}

/// From the panic's first line on (or the last lines, for an abort
/// without one), at most a dozen lines.
fn what_failed(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let from = lines
        .iter()
        .position(|l| l.contains("panicked at"))
        .unwrap_or(lines.len().saturating_sub(12));
    lines[from..]
        .iter()
        .take(12)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

/// Replay every saved input of a target; fail naming each that fails.
fn replay_all(target: &str) {
    assert!(harness::target(target).is_some(), "no fuzz target {target}");
    let dir = regressions().join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| replay(target, f).map(|why| format!("{}: {why}", f.display())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} saved {target} inputs fail:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

/// Every folder under `fuzz/regressions/` is a target's: a misspelt one
/// would be silently never replayed.
#[test]
fn every_regressions_folder_names_a_target() {
    let Ok(entries) = std::fs::read_dir(regressions()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            harness::target(&name).is_some(),
            "fuzz/regressions/{name} is not a fuzz target: {:?}",
            harness::TARGETS.iter().map(|(n, _)| *n).collect::<Vec<_>>()
        );
    }
}

macro_rules! replays {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay_all(stringify!($target));
            }
        )*

        /// Each target has its test above.
        #[test]
        fn every_target_is_replayed() {
            let tested = [$(stringify!($target)),*];
            for (name, _) in harness::TARGETS {
                assert!(tested.contains(name), "no replay test for {name}");
            }
        }
    };
}

replays!(
    access_yml,
    callback,
    cirun_global_yml,
    cirun_yml,
    github_responses,
    instance_type,
    labels,
    settings,
    vast_responses,
    webhook,
    webhook_inbox,
);
