//! The simulated actions/runner: a tarball holding a `run.sh` that does
//! what the real runner does with a JIT config — connect, take one job, run
//! it for its scripted time, report the end, exit — and, like the real
//! `run.sh`, exits 0 when its listener fails or refuses to run as root.
//! Built in memory (ustar inside a gzip of stored deflate blocks), with a
//! real SHA-256, so the bootstrap script downloads, verifies and unpacks it
//! as it would the real one; each release (`releases.rs`) has its own.
//! Also here: what generate-jitconfig checks of a runner, and the labels
//! (and label types) GitHub gives it.

use sha2::{Digest, Sha256};

/// The runner. The JIT config is base64 of `{"url":…,"token":…}`: the
/// simulated GitHub's address travels in it, as the real config carries the
/// service's URLs.
pub const RUN_SH: &str = r#"#!/bin/sh
# rigger's simulated actions/runner.
set -u
# .env is KEY=VALUE lines, read literally (values may hold spaces), as the real runner reads it.
[ -f ./.env ] && while IFS= read -r l; do case $l in *=*) export "$l" ;; esac; done < ./.env
# As run-helper.sh: root only with RUNNER_ALLOW_RUNASROOT; run.sh exits 0
# whatever the listener's own code (1, terminated error, included).
if [ "$(id -u)" = 0 ] && [ -z "${RUNNER_ALLOW_RUNASROOT-}" ]; then
  echo "Must not run interactively with sudo"; echo "Exiting runner..."; exit 0
fi
cfg=$(printf '%s' "$ACTIONS_RUNNER_INPUT_JITCONFIG" | base64 -d 2>/dev/null) || { echo "runner: the JIT config is not base64"; echo "Exiting runner..."; exit 0; }
url=$(printf '%s' "$cfg" | sed -n 's/.*"url":"\([^"]*\)".*/\1/p')
[ -n "$url" ] || { echo "runner: no service URL in the JIT config"; echo "Exiting runner..."; exit 0; }
r=$(curl -fsS -X POST -H 'Content-Type: application/json' \
  -d "{\"jit_config\":\"$ACTIONS_RUNNER_INPUT_JITCONFIG\"}" "$url/_runner/connect") ||
  { echo "runner: the JIT config was refused"; echo "Exiting runner..."; exit 0; }
id=$(printf '%s' "$r" | sed -n 's/.*"runner_id":\([0-9]*\).*/\1/p')
echo "runner: connected as runner $id; listening for jobs"
while :; do
  j=$(curl -fsS -X POST "$url/_runner/$id/next") || { echo "runner: lost the service"; echo "Exiting runner..."; exit 0; }
  job=$(printf '%s' "$j" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
  [ -n "$job" ] && break
  sleep 1
done
if [ -n "${ACTIONS_RUNNER_HOOK_JOB_STARTED-}" ]; then "$ACTIONS_RUNNER_HOOK_JOB_STARTED"; fi
secs=$(printf '%s' "$j" | sed -n 's/.*"run_seconds":\([0-9.]*\).*/\1/p')
conclusion=$(printf '%s' "$j" | sed -n 's/.*"conclusion":"\([a-z_]*\)".*/\1/p')
echo "runner: running job $job"
# As the real runner renews its job's lock while it runs: each second, and
# a job the service ended (cancelled) ends here.
whole=$(awk "BEGIN { print int(${secs:-0}) }")
i=0
while [ "$i" -lt "$whole" ]; do
  sleep 1
  curl -fsS -X POST "$url/_runner/$id/renew" >/dev/null || { echo "runner: job $job ended on the service"; echo "Exiting runner..."; exit 0; }
  i=$((i + 1))
done
sleep "$(awk "BEGIN { print ${secs:-0} - $whole }")"
curl -fsS -X POST -H 'Content-Type: application/json' \
  -d "{\"job_id\":$job,\"conclusion\":\"${conclusion:-success}\"}" "$url/_runner/$id/finish" >/dev/null
echo "runner: job $job completed: ${conclusion:-success}"
exit 0
"#;

/// The architectures it serves: the simulated runner is a shell script, so
/// one tarball serves both.
pub const ARCHES: [&str; 2] = ["x64", "arm64"];

/// GitHub's limit on a runner's name.
pub const MAX_RUNNER_NAME: usize = 64;

/// Why generate-jitconfig refuses this runner name, if it does.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("Name can't be blank".into())
    } else if name.chars().count() > MAX_RUNNER_NAME {
        Some(format!(
            "Name is too long (maximum is {MAX_RUNNER_NAME} characters)"
        ))
    } else {
        None
    }
}

/// Labels GitHub itself gives runners (`self-hosted`, the OS and the
/// architecture, as actions/runner names them): read-only on a runner.
const SYSTEM_LABELS: [&str; 8] = [
    "self-hosted",
    "Linux",
    "Windows",
    "macOS",
    "X64",
    "X86",
    "ARM",
    "ARM64",
];

/// A runner label's type as GitHub lists it: `read-only` for the system
/// labels, `custom` for the rest.
pub fn label_type(label: &str) -> &'static str {
    if SYSTEM_LABELS.iter().any(|s| s.eq_ignore_ascii_case(label)) {
        "read-only"
    } else {
        "custom"
    }
}

/// The labels a JIT runner gets: those of the registration, once each
/// (labels compare without case), and nothing else. GitHub's documented
/// example registers `["self-hosted","X64","macOS","no-gpu"]` and answers
/// with those four, the first three read-only: it adds no architecture of
/// its own (the runner never runs config.sh, which would add it), so an
/// arm64 registration has no `X64`.
pub fn jit_labels(registered: &[String]) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for l in registered {
        if !all.iter().any(|a| a.eq_ignore_ascii_case(l)) {
            all.push(l.clone());
        }
    }
    all
}

/// One release's tarball and its SHA-256 (hex): each version's bytes
/// differ (the version is in its `run.sh`), so their checksums do too.
pub fn tarball(version: &str) -> (Vec<u8>, String) {
    let run_sh = RUN_SH.replacen(
        "# rigger's simulated actions/runner.",
        &format!("# rigger's simulated actions/runner {version}."),
        1,
    );
    let tar = ustar(&[("run.sh", 0o755, run_sh.as_bytes())]);
    let gz = gzip_stored(&tar);
    let sum = hex::encode(Sha256::digest(&gz));
    (gz, sum)
}

fn ustar(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, mode, data) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |v: u64, width: usize| format!("{v:0w$o}\0", w = width - 1);
        h[100..108].copy_from_slice(octal(u64::from(*mode), 8).as_bytes());
        h[108..116].copy_from_slice(octal(0, 8).as_bytes());
        h[116..124].copy_from_slice(octal(0, 8).as_bytes());
        h[124..136].copy_from_slice(octal(data.len() as u64, 12).as_bytes());
        h[136..148].copy_from_slice(octal(1_700_000_000, 12).as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        // The checksum is computed with its own field as spaces.
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0); // two empty blocks end the archive
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// gzip with deflate "stored" blocks: valid, uncompressed, no dependency.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn each_release_has_its_own_bytes_and_checksum() {
        let (a, sum_a) = tarball("2.330.0");
        let (b, sum_b) = tarball("2.331.0");
        assert_ne!(a, b);
        assert_ne!(sum_a, sum_b);
        assert_eq!(sum_a, hex::encode(Sha256::digest(&a)));
    }

    #[test]
    fn jit_runners_get_the_architecture_they_run_on() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            jit_labels(&s(&["self-hosted", "linux", "x64", "cirun-gpu", "X64"])),
            s(&["self-hosted", "linux", "x64", "cirun-gpu"])
        );
        let arm = jit_labels(&s(&["self-hosted", "linux", "arm64", "cirun-gh200"]));
        assert!(
            !arm.iter().any(|l| l.eq_ignore_ascii_case("x64")),
            "{arm:?}"
        );
        let types: Vec<&str> = arm.iter().map(|l| label_type(l)).collect();
        assert_eq!(types, ["read-only", "read-only", "read-only", "custom"]);
        assert_eq!(name_problem(&"r".repeat(64)), None);
        assert!(
            name_problem(&"r".repeat(65))
                .unwrap()
                .contains("maximum is 64")
        );
    }

    #[test]
    fn tar_unpacks_the_tarball() {
        let (gz, sum) = tarball("2.331.0");
        assert_eq!(sum.len(), 64);
        let dir = std::env::temp_dir().join(format!("rigger-runner-tgz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("r.tgz"), &gz).unwrap();
        let ok = std::process::Command::new("tar")
            .arg("xzf")
            .arg(dir.join("r.tgz"))
            .arg("-C")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success());
        let run_sh = std::fs::read_to_string(dir.join("run.sh")).unwrap();
        assert!(
            run_sh.contains("simulated actions/runner 2.331.0"),
            "{run_sh}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "executable");
    }
}
