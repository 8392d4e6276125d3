//! The bootstrap script a rented machine runs at start (Vast.ai's `onstart`),
//! and the per-instance environment it reads.
//!
//! Vast.ai limits `onstart` to about 4 KB and each environment value to 256
//! characters. So `onstart` is a small loader (`onstart.sh`), and everything
//! else travels in `RIGGER_*` environment variables: the bootstrap script
//! itself (`bootstrap.sh`, base64), the JIT config, setup info and the
//! callback token, each long value split into `NAME_0`, `NAME_1`, … and
//! joined on the machine. The script reports a runner that exits without
//! having taken a job (its job-started hook leaves a marker) as a failed
//! boot: the real `run.sh` exits 0 when its listener fails.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

use crate::config::model::SetupInfo;
use crate::settings::Secret;

/// The bootstrap script, as kept in the repository.
pub const SCRIPT_SOURCE: &str = include_str!("bootstrap.sh");

/// The `onstart` loader that joins, decodes and runs it.
pub const ONSTART: &str = include_str!("onstart.sh");

/// Vast.ai's limit on the combined size of onstart and args.
pub const ONSTART_LIMIT: usize = 4096;

/// Vast.ai's limit on one environment value.
pub const ENV_VALUE_LIMIT: usize = 256;

/// What one machine's bootstrap needs to know.
#[derive(Clone)]
pub struct BootstrapSpec {
    /// VM mode: variables come from `/etc/environment`, not PID 1.
    pub vm: bool,
    /// Base URL of Vast.ai's API, for the self-destroy call.
    pub vast_url: String,
    /// The runner release file for `runner_arch`, as rigger's lookup named
    /// it (GitHub's URL, or `runner.url_template`'s mirror). An `{arch}` left
    /// in it is filled in from `uname -m`.
    pub runner_url: String,
    /// The architecture the runner was registered for (its labels say so):
    /// a machine of another one fails fast rather than run under false labels.
    pub runner_arch: String,
    /// SHA-256 of the release for `runner_arch`. Without it the machine
    /// refuses to run a downloaded runner unless `allow_unverified`.
    pub runner_sha256: Option<String>,
    pub allow_unverified: bool,
    /// A runner already installed in the image, used instead of downloading.
    pub preinstalled_runner: Option<String>,
    pub gpu_count: u32,
    /// Vast.ai model names the machine may have (`RTX 4090`, or several for `H100`).
    pub gpu_models: Vec<String>,
    /// Stop (and destroy the machine) if no job starts within this many seconds.
    pub idle_timeout_secs: u64,
    pub jit_config: Secret,
    pub setup_info: Vec<SetupInfo>,
    /// `extra_config.env_vars`.
    pub env_vars: BTreeMap<String, String>,
    /// rigger's callback for machines without a per-instance Vast.ai key.
    pub callback: Option<(String, Secret)>,
}

/// The onstart script and the environment to create the instance with.
/// The environment holds the JIT config: it never prints.
#[derive(Clone)]
pub struct Rendered {
    pub onstart: String,
    pub env: BTreeMap<String, String>,
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("onstart_bytes", &self.onstart.len())
            .field("env_keys", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The bootstrap script without comment lines and blank lines (the shebang
/// stays): a smaller environment for the instance.
pub fn script() -> String {
    strip_comments(SCRIPT_SOURCE)
}

/// The onstart loader as sent: comments stripped, shebang kept (VM mode needs it).
pub fn loader() -> String {
    strip_comments(ONSTART)
}

fn strip_comments(source: &str) -> String {
    let mut out = String::new();
    for (i, line) in source.lines().enumerate() {
        let t = line.trim_start();
        let keep = i == 0 || !t.starts_with('#');
        if keep && !t.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

pub fn render(spec: &BootstrapSpec) -> Rendered {
    let mut env: BTreeMap<String, String> = spec.env_vars.clone();
    let encoded_script = base64::engine::general_purpose::STANDARD.encode(script());
    split_into(&mut env, "RIGGER_SCRIPT", &encoded_script);
    set_value(
        &mut env,
        "RIGGER_VAST_URL",
        spec.vast_url.trim_end_matches('/'),
    );
    set_value(&mut env, "RIGGER_RUNNER_URL", spec.runner_url.clone());
    set_value(&mut env, "RIGGER_RUNNER_ARCH", spec.runner_arch.clone());
    if spec.allow_unverified {
        set_value(&mut env, "RIGGER_RUNNER_UNVERIFIED", "1");
    }
    if let Some(sum) = &spec.runner_sha256 {
        set_value(&mut env, "RIGGER_RUNNER_SHA256", sum.to_ascii_lowercase());
    }
    if let Some(dir) = &spec.preinstalled_runner {
        set_value(&mut env, "RIGGER_RUNNER_PREINSTALLED", dir.clone());
    }
    if spec.vm {
        set_value(&mut env, "RIGGER_VM", "1");
    }
    if spec.gpu_count > 0 {
        set_value(&mut env, "RIGGER_GPU_COUNT", spec.gpu_count.to_string());
        set_value(&mut env, "RIGGER_GPU_MODEL", spec.gpu_models.join(" or "));
        set_value(&mut env, "RIGGER_GPU_MATCH", gpu_match(&spec.gpu_models));
    }
    set_value(
        &mut env,
        "RIGGER_IDLE_TIMEOUT",
        spec.idle_timeout_secs.to_string(),
    );
    if let Some((url, token)) = &spec.callback {
        set_value(&mut env, "RIGGER_CALLBACK_URL", url.clone());
        split_into(&mut env, "RIGGER_CALLBACK_TOKEN", token.expose());
    }
    split_into(&mut env, "RIGGER_JIT", spec.jit_config.expose());
    if !spec.setup_info.is_empty() {
        let groups: Vec<serde_json::Value> = spec
            .setup_info
            .iter()
            .map(|s| serde_json::json!({"group": s.group, "detail": s.detail}))
            .collect();
        let json = serde_json::to_string(&groups).unwrap_or_default();
        let encoded = base64::engine::general_purpose::STANDARD.encode(json);
        split_into(&mut env, "RIGGER_SETUP_INFO", &encoded);
    }
    Rendered {
        onstart: loader(),
        env,
    }
}

fn set_value(env: &mut BTreeMap<String, String>, name: &str, value: impl Into<String>) {
    env.insert(name.to_string(), value.into());
}

/// `NAME_0`, `NAME_1`, … each at most [`ENV_VALUE_LIMIT`] characters.
fn split_into(env: &mut BTreeMap<String, String>, name: &str, value: &str) {
    let chars: Vec<char> = value.chars().collect();
    for (i, chunk) in chars.chunks(ENV_VALUE_LIMIT).enumerate() {
        env.insert(format!("{name}_{i}"), chunk.iter().collect());
    }
}

/// An extended regex that matches `nvidia-smi`'s name for any of the models,
/// compared without spaces, `_` and `-`. nvidia-smi says `NVIDIA GeForce RTX
/// 4090` for Vast.ai's `RTX 4090` and `NVIDIA H100 80GB HBM3` for `H100 SXM`,
/// so the form factor (SXM, PCIE, NVL) is not required to match.
pub fn gpu_match(models: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for m in models {
        let mut key: String = m
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_uppercase();
        for suffix in ["SXM4", "SXM5", "SXM", "PCIE", "NVL"] {
            if key.len() > suffix.len()
                && let Some(stripped) = key.strip_suffix(suffix)
            {
                key = stripped.to_string();
                break;
            }
        }
        if key.starts_with("TESLA") {
            key = key.trim_start_matches("TESLA").to_string();
        }
        if !parts.contains(&key) {
            parts.push(key);
        }
    }
    parts.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BootstrapSpec {
        BootstrapSpec {
            vm: false,
            vast_url: "https://console.vast.ai/".into(),
            runner_url: "https://example.invalid/runner-{arch}.tgz".into(),
            runner_arch: "x64".into(),
            runner_sha256: Some("AB".repeat(32)),
            allow_unverified: false,
            preinstalled_runner: None,
            gpu_count: 1,
            gpu_models: vec!["RTX 4090".into()],
            idle_timeout_secs: 600,
            jit_config: Secret::new("J".repeat(3000)),
            setup_info: vec![SetupInfo {
                group: "GPU".into(),
                detail: "RTX 4090 at $0.40/h".into(),
            }],
            env_vars: BTreeMap::from([("HF_HOME".into(), "/cache".into())]),
            callback: None,
        }
    }

    #[test]
    fn onstart_fits_vast_ais_limit() {
        let r = render(&spec());
        assert!(r.onstart.len() < ONSTART_LIMIT, "{} bytes", r.onstart.len());
        assert!(
            r.onstart.starts_with("#!/bin/sh\n"),
            "VM mode needs the shebang"
        );
        // Stripping comments kept what a failed decode needs: destroying the machine.
        assert!(!r.onstart.contains("\n#"), "comments are stripped");
        assert!(r.onstart.contains("/api/v0/instances/$CONTAINER_ID/"));
        assert!(r.onstart.contains("$RIGGER_CALLBACK_URL?exit_code=1"));
        let total: usize = r.env.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(
            total < 32_768,
            "Vast.ai's limit on the whole environment: {total}"
        );
    }

    #[test]
    fn the_script_travels_whole_in_the_environment() {
        let r = render(&spec());
        let joined: String = (0..)
            .map_while(|i| r.env.get(&format!("RIGGER_SCRIPT_{i}")))
            .cloned()
            .collect();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(joined)
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), script());
        assert!(!script().contains("\n#"), "comments are stripped");
    }

    #[test]
    fn long_values_are_split_under_the_env_limit() {
        let r = render(&spec());
        assert!(r.env.values().all(|v| v.chars().count() <= ENV_VALUE_LIMIT));
        let joined: String = (0..)
            .map_while(|i| r.env.get(&format!("RIGGER_JIT_{i}")))
            .cloned()
            .collect();
        assert_eq!(joined, "J".repeat(3000));
        assert_eq!(r.env["RIGGER_VAST_URL"], "https://console.vast.ai");
        assert_eq!(r.env["HF_HOME"], "/cache");
        assert_eq!(r.env["RIGGER_GPU_MATCH"], "RTX4090");
        assert_eq!(r.env["RIGGER_RUNNER_SHA256"], "ab".repeat(32));
        assert!(r.env.contains_key("RIGGER_SETUP_INFO_0"));
    }

    #[test]
    fn debug_never_shows_the_jit_config() {
        let r = render(&spec());
        let shown = format!("{r:?}");
        assert!(!shown.contains("JJJJ"), "{shown}");
    }

    #[test]
    fn gpu_names_match_nvidia_smi() {
        let m = gpu_match(&["H100 SXM".into(), "H100 PCIE".into(), "H100 NVL".into()]);
        assert_eq!(m, "H100");
        assert_eq!(gpu_match(&["A100 SXM4".into()]), "A100");
        assert_eq!(gpu_match(&["Tesla T4".into()]), "T4");
        assert_eq!(gpu_match(&["RTX 6000Ada".into()]), "RTX6000ADA");
    }
}
