//! The bootstrap script a rented machine runs at start (Vast.ai's `onstart`),
//! and the per-instance environment it reads.
//!
//! Vast.ai limits `onstart` to about 4 KB, each environment variable to 256
//! characters and the whole environment to 32 KB. So `onstart` is a small loader (`onstart.sh`), and everything
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

/// Vast.ai's limit on one environment variable (`env` `max_length` in its
/// OpenAPI). Whether it counts the value or the whole `KEY=value` entry is
/// not said, so rigger keeps every entry, key and `=` included, within it.
pub const ENV_ENTRY_LIMIT: usize = 256;

/// Vast.ai's limit on the whole environment (`env` `max_total_length`),
/// counted over `env` as its OpenAPI types it: the Docker-flag string
/// `-e KEY=value -e KEY=value …`.
pub const ENV_TOTAL_LIMIT: usize = 32_768;

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

/// An environment Vast.ai would refuse. Names only: values may be secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// `KEY=value` longer than [`ENV_ENTRY_LIMIT`].
    EntryTooLong { name: String, len: usize },
    /// The whole environment longer than [`ENV_TOTAL_LIMIT`]; `users` is
    /// what `extra_config.env_vars` take of it.
    TooLarge { total: usize, users: usize },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::EntryTooLong { name, len } => write!(
                f,
                "the environment variable `{}` is {len} characters as `{}=…`; Vast.ai takes at \
                 most {ENV_ENTRY_LIMIT} for one variable",
                crate::text::for_log(name),
                crate::text::for_log(name)
            ),
            EnvError::TooLarge { total, users } => write!(
                f,
                "the machine's environment would be {total} characters, over Vast.ai's limit of \
                 {ENV_TOTAL_LIMIT}; extra_config.env_vars take {users} of them: make them smaller"
            ),
        }
    }
}

impl std::error::Error for EnvError {}

/// One variable's length as Vast.ai may count it: `KEY=value`.
pub fn entry_len(name: &str, value: &str) -> usize {
    name.chars().count() + 1 + value.chars().count()
}

/// The environment's length as Vast.ai counts it: `-e KEY=value`, joined by spaces.
pub fn env_total<'a>(env: impl IntoIterator<Item = (&'a String, &'a String)>) -> usize {
    let mut total = 0;
    let mut n: usize = 0;
    for (k, v) in env {
        total += "-e ".len() + entry_len(k, v);
        n += 1;
    }
    total + n.saturating_sub(1)
}

/// Whether Vast.ai would take `env`: every entry and the whole within its limits.
fn check_env(
    env: &BTreeMap<String, String>,
    users: &BTreeMap<String, String>,
) -> Result<(), EnvError> {
    if let Some((name, value)) = env.iter().find(|(k, v)| entry_len(k, v) > ENV_ENTRY_LIMIT) {
        return Err(EnvError::EntryTooLong {
            name: name.clone(),
            len: entry_len(name, value),
        });
    }
    let total = env_total(env);
    if total > ENV_TOTAL_LIMIT {
        return Err(EnvError::TooLarge {
            total,
            users: env_total(users),
        });
    }
    Ok(())
}

/// How much of Vast.ai's environment limit `extra_config.env_vars` may take
/// and still leave room for rigger's own variables with a JIT config of a
/// generous size (GitHub's are about 2 KB) and long URLs. `rigger validate`
/// checks against it; the exact check is made when the machine is rented.
pub fn user_env_budget() -> usize {
    let own = render_env(&BootstrapSpec {
        vm: false,
        vast_url: "u".repeat(200),
        runner_url: "u".repeat(200),
        runner_arch: "x64".into(),
        runner_sha256: Some("0".repeat(64)),
        allow_unverified: false,
        preinstalled_runner: Some("p".repeat(100)),
        gpu_count: 8,
        gpu_models: vec!["H100 SXM".into(), "H100 PCIE".into(), "H100 NVL".into()],
        idle_timeout_secs: 86_400,
        jit_config: Secret::new("j".repeat(6_000)),
        setup_info: vec![SetupInfo {
            group: "rigger".into(),
            detail: "d".repeat(200),
        }],
        env_vars: BTreeMap::new(),
        callback: Some(("u".repeat(200), Secret::new("t".repeat(64)))),
    });
    ENV_TOTAL_LIMIT.saturating_sub(env_total(&own) + 1)
}

/// The onstart loader and the environment, or why Vast.ai would refuse the
/// environment (checked here, before any create is sent).
pub fn render(spec: &BootstrapSpec) -> Result<Rendered, EnvError> {
    let env = render_env(spec);
    check_env(&env, &spec.env_vars)?;
    Ok(Rendered {
        onstart: loader(),
        env,
    })
}

fn render_env(spec: &BootstrapSpec) -> BTreeMap<String, String> {
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
    env
}

fn set_value(env: &mut BTreeMap<String, String>, name: &str, value: impl Into<String>) {
    env.insert(name.to_string(), value.into());
}

/// `NAME_0`, `NAME_1`, … each entry (`NAME_i=chunk`) at most
/// [`ENV_ENTRY_LIMIT`] characters, so it fits whichever way Vast.ai counts.
fn split_into(env: &mut BTreeMap<String, String>, name: &str, value: &str) {
    let chars: Vec<char> = value.chars().collect();
    let mut rest = &chars[..];
    let mut i = 0;
    while !rest.is_empty() {
        let key = format!("{name}_{i}");
        let room = ENV_ENTRY_LIMIT.saturating_sub(key.len() + 1).max(1);
        let (chunk, more) = rest.split_at(room.min(rest.len()));
        env.insert(key, chunk.iter().collect());
        rest = more;
        i += 1;
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
        let r = render(&spec()).unwrap();
        assert!(r.onstart.len() < ONSTART_LIMIT, "{} bytes", r.onstart.len());
        assert!(
            r.onstart.starts_with("#!/bin/sh\n"),
            "VM mode needs the shebang"
        );
        // Stripping comments kept what a failed decode needs: destroying the machine.
        assert!(!r.onstart.contains("\n#"), "comments are stripped");
        assert!(r.onstart.contains("/api/v0/instances/$CONTAINER_ID/"));
        assert!(r.onstart.contains("$RIGGER_CALLBACK_URL?exit_code=1"));
        let total = env_total(&r.env);
        assert!(
            total < ENV_TOTAL_LIMIT,
            "Vast.ai's limit on the whole environment: {total}"
        );
    }

    #[test]
    fn the_script_travels_whole_in_the_environment() {
        let r = render(&spec()).unwrap();
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
        let r = render(&spec()).unwrap();
        assert!(
            r.env
                .iter()
                .all(|(k, v)| entry_len(k, v) <= ENV_ENTRY_LIMIT),
            "every `KEY=value` fits Vast.ai's limit on one variable"
        );
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
    fn an_environment_vast_ai_would_refuse_is_refused_here() {
        let mut s = spec();
        s.env_vars.insert("LONG".into(), "v".repeat(252));
        assert_eq!(
            render(&s).unwrap_err(),
            EnvError::EntryTooLong {
                name: "LONG".into(),
                len: 257
            }
        );
        let mut s = spec();
        for i in 0..200 {
            s.env_vars.insert(format!("V{i:03}"), "v".repeat(200));
        }
        let users = env_total(&s.env_vars);
        match render(&s).unwrap_err() {
            EnvError::TooLarge { total, users: u } => {
                assert!(total > ENV_TOTAL_LIMIT, "{total}");
                assert_eq!(u, users);
            }
            other => panic!("{other:?}"),
        }
        // Within the budget `rigger validate` allows, a real render fits.
        let mut s = spec();
        let budget = user_env_budget();
        assert!(budget > 10_000, "room for users' variables: {budget}");
        let mut i = 0;
        while env_total(&s.env_vars) + 210 < budget {
            s.env_vars.insert(format!("V{i:03}"), "v".repeat(200));
            i += 1;
        }
        render(&s).expect("fits");
    }

    #[test]
    fn debug_never_shows_the_jit_config() {
        let r = render(&spec()).unwrap();
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
