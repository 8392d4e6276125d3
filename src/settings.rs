//! rigger's own settings: `rigger.toml`, overridden by `RIGGER_*` environment
//! variables (so a container runs with no file at all), validated at
//! start-up with errors that say what to fix. Secrets are read from files or
//! the environment into [`Secret`], which never prints its value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A value that must never reach a log, an error message or an API response.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that needs it (a header, a key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the repository's `.cirun.yml` is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigSource {
    /// The default branch: what a pull request changes does not count until merged.
    DefaultBranch,
    /// The job's head commit, except for jobs from forks (which never choose
    /// what rigger rents).
    HeadCommit,
}

/// Where rigger registers its just-in-time runners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerScope {
    /// On each repository: the App needs Administration: write there.
    Repository,
    /// On the repository's organization, in `runner_group_id`: the App needs
    /// Self-hosted runners: write on the organization (GitHub's advice).
    Organization,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listen: String,
    pub database_url: String,
    /// Put in every Vast.ai label and runner name; unique per deployment.
    pub controller_id: String,
    /// rigger's address as machines on the internet reach it, for VM callbacks.
    pub public_url: Option<String>,
    pub github: GithubSettings,
    pub vast: VastSettings,
    pub limits: LimitSettings,
    pub timeouts: Timeouts,
    pub runner: RunnerSettings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GithubSettings {
    pub app_id: u64,
    pub private_key: Secret,
    /// Several at once during a rotation.
    pub webhook_secrets: Vec<Secret>,
    pub api_url: String,
    pub config_source: ConfigSource,
    pub runner_scope: RunnerScope,
    /// The runner group JIT runners join (organization scope; a repository
    /// has only the default group, 1).
    pub runner_group_id: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VastSettings {
    pub api_key: Secret,
    pub api_url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    pub max_instances: u32,
    pub max_instances_per_repo: u32,
    /// $/hour for one instance.
    pub max_dph: f64,
    /// Estimated $ for one job.
    pub max_job_cost: f64,
    /// $ per UTC day: the ledger plus what is running.
    pub daily_budget: f64,
    /// Expected job length when a runner definition has no history yet.
    pub default_job_minutes: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub reconcile_interval: Duration,
    pub create: Duration,
    pub bootstrap: Duration,
    pub idle: Duration,
    pub job_quiet: Duration,
    pub max_lifetime: Duration,
    /// How long a job may wait for capacity: GitHub's own queue limit.
    pub queue: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunnerSettings {
    pub version: String,
    /// `{version}` and `{arch}` (x64, arm64) are filled in.
    pub url_template: String,
    /// SHA-256 of the release tarball per architecture. Where one is
    /// missing, rigger asks GitHub's runner downloads API for it.
    pub sha256: BTreeMap<String, String>,
    /// Where an image may already hold a runner (`run.sh` in it); the
    /// machine uses it instead of downloading one. Empty: never.
    pub preinstalled_path: String,
    /// Boot machines even when no checksum can be had for the download.
    /// Off: such machines are refused, never run unverified silently.
    pub allow_unverified: bool,
}

/// A setting that is missing or wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problems}")]
pub struct SettingsError {
    problems: String,
}

impl SettingsError {
    fn new(problems: Vec<String>) -> SettingsError {
        let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
        SettingsError {
            problems: format!("rigger's settings need fixing:\n{}", list.join("\n")),
        }
    }
}

// ---- the file's shape (every field optional: the environment may fill it) ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    database_url: Option<String>,
    controller_id: Option<String>,
    public_url: Option<String>,
    #[serde(default)]
    github: GithubFile,
    #[serde(default)]
    vast: VastFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    timeouts: TimeoutsFile,
    #[serde(default)]
    runner: RunnerFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GithubFile {
    app_id: Option<u64>,
    private_key_file: Option<PathBuf>,
    webhook_secret_file: Option<PathBuf>,
    api_url: Option<String>,
    config_source: Option<ConfigSource>,
    runner_scope: Option<RunnerScope>,
    runner_group_id: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VastFile {
    api_key_file: Option<PathBuf>,
    api_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_instances: Option<u32>,
    max_instances_per_repo: Option<u32>,
    max_dph: Option<f64>,
    max_job_cost: Option<f64>,
    daily_budget: Option<f64>,
    default_job_minutes: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsFile {
    reconcile_interval: Option<String>,
    create: Option<String>,
    bootstrap: Option<String>,
    idle: Option<String>,
    job_quiet: Option<String>,
    max_lifetime: Option<String>,
    queue: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunnerFile {
    version: Option<String>,
    url_template: Option<String>,
    sha256: Option<BTreeMap<String, String>>,
    preinstalled_path: Option<String>,
    allow_unverified: Option<bool>,
}

/// Longest controller id: runner names must stay within GitHub's 64 characters.
pub const MAX_CONTROLLER_ID: usize = 20;

/// Every environment variable `load` reads.
pub const ENV_VARS: &[&str] = &[
    "RIGGER_LISTEN",
    "RIGGER_DATABASE_URL",
    "RIGGER_CONTROLLER_ID",
    "RIGGER_PUBLIC_URL",
    "RIGGER_GITHUB_APP_ID",
    "RIGGER_GITHUB_PRIVATE_KEY",
    "RIGGER_GITHUB_PRIVATE_KEY_FILE",
    "RIGGER_WEBHOOK_SECRET",
    "RIGGER_WEBHOOK_SECRET_FILE",
    "RIGGER_GITHUB_API_URL",
    "RIGGER_CONFIG_SOURCE",
    "RIGGER_GITHUB_RUNNER_SCOPE",
    "RIGGER_GITHUB_RUNNER_GROUP_ID",
    "RIGGER_VAST_API_KEY",
    "RIGGER_VAST_API_KEY_FILE",
    "RIGGER_VAST_API_URL",
    "RIGGER_MAX_INSTANCES",
    "RIGGER_MAX_INSTANCES_PER_REPO",
    "RIGGER_MAX_DPH",
    "RIGGER_MAX_JOB_COST",
    "RIGGER_DAILY_BUDGET",
];

/// The pinned actions/runner release and its published checksums.
pub const RUNNER_VERSION: &str = "2.330.0";
/// Where images that ship a runner usually have it (`/actions-runner/run.sh`).
pub const RUNNER_PREINSTALLED_PATH: &str = "/actions-runner";
pub const RUNNER_URL_TEMPLATE: &str = "https://github.com/actions/runner/releases/download/v{version}/actions-runner-linux-{arch}-{version}.tar.gz";

/// Reads settings from a file (optional) and an environment (a lookup
/// function, so tests pass their own).
pub fn load(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, SettingsError> {
    let mut problems = Vec::new();
    let parsed: File = match file {
        None => File::default(),
        Some(path) => match std::fs::read_to_string(path) {
            Err(e) => {
                return Err(SettingsError::new(vec![format!(
                    "cannot read {}: {e}",
                    path.display()
                )]));
            }
            Ok(text) => match toml::from_str(&text) {
                Ok(f) => f,
                Err(e) => {
                    return Err(SettingsError::new(vec![format!(
                        "{} is not valid: {}",
                        path.display(),
                        e.to_string().trim()
                    )]));
                }
            },
        },
    };
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());

    let listen = var("RIGGER_LISTEN")
        .or(parsed.listen)
        .unwrap_or_else(|| "0.0.0.0:8080".into());
    if listen.parse::<std::net::SocketAddr>().is_err() {
        problems.push(format!(
            "listen = {listen:?} is not an address; write host:port, e.g. 0.0.0.0:8080"
        ));
    }
    let database_url = var("RIGGER_DATABASE_URL")
        .or(parsed.database_url)
        .unwrap_or_else(|| "sqlite://rigger.db".into());
    if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
        problems.push(format!(
            "database_url {} is neither sqlite://PATH nor postgres://…",
            crate::store::redact_url(&database_url)
        ));
    }
    let controller_id = var("RIGGER_CONTROLLER_ID")
        .or(parsed.controller_id)
        .unwrap_or_else(|| "rigger".into());
    let id_ok = !controller_id.is_empty()
        && controller_id.len() <= MAX_CONTROLLER_ID
        && controller_id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !id_ok {
        problems.push(format!(
            "controller_id {controller_id:?} must be 1–{MAX_CONTROLLER_ID} characters of a-z, 0-9 and -: it goes into every Vast.ai label and runner name"
        ));
    }
    let public_url = var("RIGGER_PUBLIC_URL").or(parsed.public_url);

    let github = GithubSettings {
        app_id: match var("RIGGER_GITHUB_APP_ID").map(|v| v.parse::<u64>()) {
            Some(Ok(id)) => id,
            Some(Err(_)) => {
                problems.push("RIGGER_GITHUB_APP_ID must be the App's numeric id".into());
                0
            }
            None => parsed.github.app_id.unwrap_or_else(|| {
                problems.push(
                    "github.app_id is missing: the App's id, on its settings page (or RIGGER_GITHUB_APP_ID)"
                        .into(),
                );
                0
            }),
        },
        private_key: secret(
            var("RIGGER_GITHUB_PRIVATE_KEY"),
            var("RIGGER_GITHUB_PRIVATE_KEY_FILE")
                .map(PathBuf::from)
                .or(parsed.github.private_key_file),
            "the GitHub App private key: github.private_key_file, RIGGER_GITHUB_PRIVATE_KEY_FILE or RIGGER_GITHUB_PRIVATE_KEY",
            &mut problems,
        ),
        webhook_secrets: secret(
            var("RIGGER_WEBHOOK_SECRET"),
            var("RIGGER_WEBHOOK_SECRET_FILE")
                .map(PathBuf::from)
                .or(parsed.github.webhook_secret_file),
            "the webhook secret: github.webhook_secret_file, RIGGER_WEBHOOK_SECRET_FILE or RIGGER_WEBHOOK_SECRET",
            &mut problems,
        )
        .expose()
        // Several secrets, one per line (or comma-separated), during a rotation.
        .split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .collect(),
        api_url: var("RIGGER_GITHUB_API_URL")
            .or(parsed.github.api_url)
            .unwrap_or_else(|| "https://api.github.com".into()),
        config_source: match var("RIGGER_CONFIG_SOURCE").as_deref() {
            Some("default_branch") => ConfigSource::DefaultBranch,
            Some("head_commit") => ConfigSource::HeadCommit,
            Some(other) => {
                problems.push(format!(
                    "RIGGER_CONFIG_SOURCE={other:?}: use default_branch or head_commit"
                ));
                ConfigSource::DefaultBranch
            }
            None => parsed
                .github
                .config_source
                .unwrap_or(ConfigSource::DefaultBranch),
        },
        runner_scope: match var("RIGGER_GITHUB_RUNNER_SCOPE").as_deref() {
            Some("repository") => RunnerScope::Repository,
            Some("organization") => RunnerScope::Organization,
            Some(other) => {
                problems.push(format!(
                    "RIGGER_GITHUB_RUNNER_SCOPE={other:?}: use repository or organization"
                ));
                RunnerScope::Repository
            }
            None => parsed
                .github
                .runner_scope
                .unwrap_or(RunnerScope::Repository),
        },
        runner_group_id: match var("RIGGER_GITHUB_RUNNER_GROUP_ID").map(|v| v.parse::<i64>()) {
            Some(Ok(id)) => id,
            Some(Err(_)) => {
                problems.push(
                    "RIGGER_GITHUB_RUNNER_GROUP_ID must be a runner group's numeric id".into(),
                );
                1
            }
            None => parsed.github.runner_group_id.unwrap_or(1),
        },
    };
    if github.runner_group_id < 1 {
        problems.push(format!(
            "github.runner_group_id = {} is not a runner group id: 1 is the default group; \
             find others under the organization's Settings → Actions → Runner groups",
            github.runner_group_id
        ));
    } else if github.runner_scope == RunnerScope::Repository && github.runner_group_id != 1 {
        problems.push(format!(
            "github.runner_group_id = {} needs github.runner_scope = \"organization\": \
             a repository has only the default runner group (1)",
            github.runner_group_id
        ));
    }
    let vast = VastSettings {
        api_key: secret(
            var("RIGGER_VAST_API_KEY"),
            var("RIGGER_VAST_API_KEY_FILE")
                .map(PathBuf::from)
                .or(parsed.vast.api_key_file),
            "the Vast.ai API key: vast.api_key_file, RIGGER_VAST_API_KEY_FILE or RIGGER_VAST_API_KEY",
            &mut problems,
        ),
        api_url: var("RIGGER_VAST_API_URL")
            .or(parsed.vast.api_url)
            .unwrap_or_else(|| "https://console.vast.ai".into()),
    };
    for (name, url) in [
        ("github.api_url", &github.api_url),
        ("vast.api_url", &vast.api_url),
    ] {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            problems.push(format!(
                "{name} {url:?} must start with http:// or https://"
            ));
        }
    }

    let l = parsed.limits;
    let limits = LimitSettings {
        max_instances: env_num("RIGGER_MAX_INSTANCES", &var, &mut problems)
            .or(l.max_instances)
            .unwrap_or(20),
        max_instances_per_repo: env_num("RIGGER_MAX_INSTANCES_PER_REPO", &var, &mut problems)
            .or(l.max_instances_per_repo)
            .unwrap_or(10),
        max_dph: env_num("RIGGER_MAX_DPH", &var, &mut problems)
            .or(l.max_dph)
            .unwrap_or(5.0),
        max_job_cost: env_num("RIGGER_MAX_JOB_COST", &var, &mut problems)
            .or(l.max_job_cost)
            .unwrap_or(25.0),
        daily_budget: env_num("RIGGER_DAILY_BUDGET", &var, &mut problems)
            .or(l.daily_budget)
            .unwrap_or(100.0),
        default_job_minutes: l.default_job_minutes.unwrap_or(30),
    };
    if limits.max_instances == 0 || limits.max_dph <= 0.0 || limits.daily_budget <= 0.0 {
        problems.push(
            "limits.max_instances, max_dph and daily_budget must be above 0 (rigger would rent nothing)"
                .into(),
        );
    }

    let t = parsed.timeouts;
    let mut duration = |name: &str, value: Option<String>, default: u64| {
        match value {
        None => Duration::from_secs(default),
        Some(text) => parse_duration(&text).unwrap_or_else(|| {
            problems.push(format!(
                "timeouts.{name} = {text:?} is not a duration; write e.g. \"30s\", \"10m\" or \"6h\""
            ));
            Duration::from_secs(default)
        }),
    }
    };
    let timeouts = Timeouts {
        reconcile_interval: duration("reconcile_interval", t.reconcile_interval, 30),
        create: duration("create", t.create, 5 * 60),
        bootstrap: duration("bootstrap", t.bootstrap, 20 * 60),
        idle: duration("idle", t.idle, 10 * 60),
        job_quiet: duration("job_quiet", t.job_quiet, 10 * 60),
        max_lifetime: duration("max_lifetime", t.max_lifetime, 6 * 3600),
        queue: duration("queue", t.queue, 24 * 3600),
    };

    let runner = RunnerSettings {
        version: parsed
            .runner
            .version
            .unwrap_or_else(|| RUNNER_VERSION.into()),
        url_template: parsed
            .runner
            .url_template
            .unwrap_or_else(|| RUNNER_URL_TEMPLATE.into()),
        sha256: parsed.runner.sha256.unwrap_or_default(),
        preinstalled_path: parsed
            .runner
            .preinstalled_path
            .unwrap_or_else(|| RUNNER_PREINSTALLED_PATH.into()),
        allow_unverified: parsed.runner.allow_unverified.unwrap_or(false),
    };
    for (arch, sum) in &runner.sha256 {
        if sum.len() != 64 || !sum.chars().all(|c| c.is_ascii_hexdigit()) {
            problems.push(format!(
                "runner.sha256.{arch} is not a SHA-256 (64 hex digits)"
            ));
        }
    }

    if !problems.is_empty() {
        return Err(SettingsError::new(problems));
    }
    Ok(Settings {
        listen,
        database_url,
        controller_id,
        public_url,
        github,
        vast,
        limits,
        timeouts,
        runner,
    })
}

/// A secret given directly (environment) or as a file path; the error names
/// where it can come from and never holds the value.
fn secret(
    direct: Option<String>,
    file: Option<PathBuf>,
    what: &str,
    problems: &mut Vec<String>,
) -> Secret {
    if let Some(v) = direct {
        return Secret::new(v.trim().to_string());
    }
    match file {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(v) if !v.trim().is_empty() => Secret::new(v.trim().to_string()),
            Ok(_) => {
                problems.push(format!(
                    "{} is empty; it should hold {what}",
                    path.display()
                ));
                Secret::new("")
            }
            Err(e) => {
                problems.push(format!(
                    "cannot read {} ({e}); it should hold {what}",
                    path.display()
                ));
                Secret::new("")
            }
        },
        None => {
            problems.push(format!("missing {what}"));
            Secret::new("")
        }
    }
}

fn env_num<T: std::str::FromStr>(
    name: &str,
    var: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<T> {
    let v = var(name)?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            problems.push(format!("{name}={v:?} is not a number"));
            None
        }
    }
}

/// `30s`, `10m`, `6h`, `1d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let n: u64 = number.trim().parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("RIGGER_GITHUB_APP_ID", "123"),
        ("RIGGER_GITHUB_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----x"),
        ("RIGGER_WEBHOOK_SECRET", "old-secret,new-secret"),
        ("RIGGER_VAST_API_KEY", "vast-key-123"),
    ];

    #[test]
    fn runs_from_the_environment_alone() {
        let s = load(None, &env(MINIMAL)).unwrap();
        assert_eq!(s.listen, "0.0.0.0:8080");
        assert_eq!(s.database_url, "sqlite://rigger.db");
        assert_eq!(s.github.app_id, 123);
        assert_eq!(s.github.webhook_secrets.len(), 2);
        assert_eq!(s.github.webhook_secrets[1].expose(), "new-secret");
        assert_eq!(s.vast.api_url, "https://console.vast.ai");
        assert_eq!(s.github.config_source, ConfigSource::DefaultBranch);
        assert_eq!(s.timeouts.reconcile_interval, Duration::from_secs(30));
    }

    #[test]
    fn secrets_never_print() {
        let s = load(None, &env(MINIMAL)).unwrap();
        let shown = format!("{s:?}");
        for secret in ["PRIVATE KEY", "old-secret", "new-secret", "vast-key-123"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert_eq!(s.vast.api_key.to_string(), "***");
    }

    #[test]
    fn every_problem_is_listed_with_what_to_do() {
        let err = load(
            None,
            &env(&[
                ("RIGGER_LISTEN", "nowhere"),
                ("RIGGER_CONTROLLER_ID", "Has Spaces"),
                ("RIGGER_DATABASE_URL", "mysql://u:pw@h/db"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "listen = \"nowhere\" is not an address",
            "controller_id \"Has Spaces\"",
            "github.app_id is missing",
            "missing the GitHub App private key",
            "missing the webhook secret",
            "missing the Vast.ai API key",
            "neither sqlite://PATH nor postgres",
        ] {
            assert!(err.contains(expected), "{expected:?} not in:\n{err}");
        }
        assert!(!err.contains(":pw@"), "password leaked: {err}");
    }

    #[test]
    fn the_file_is_read_and_the_environment_wins() {
        let dir = std::env::temp_dir().join(format!("rigger-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("app.pem");
        std::fs::write(&key, "PEM-DATA\n").unwrap();
        let file = dir.join("rigger.toml");
        std::fs::write(
            &file,
            format!(
                "listen = \"127.0.0.1:9000\"\ncontroller_id = \"ci-1\"\n[github]\napp_id = 5\nprivate_key_file = {:?}\n[timeouts]\nidle = \"15m\"\n[limits]\nmax_dph = 2.5\n",
                key.display()
            ),
        )
        .unwrap();
        let s = load(
            Some(&file),
            &env(&[
                ("RIGGER_LISTEN", "127.0.0.1:9100"),
                ("RIGGER_WEBHOOK_SECRET", "w"),
                ("RIGGER_VAST_API_KEY", "v"),
            ]),
        )
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:9100");
        assert_eq!(s.controller_id, "ci-1");
        assert_eq!(s.github.app_id, 5);
        assert_eq!(s.github.private_key.expose(), "PEM-DATA");
        assert_eq!(s.timeouts.idle, Duration::from_secs(900));
        assert_eq!(s.limits.max_dph, 2.5);
    }

    #[test]
    fn unknown_settings_are_errors() {
        let dir = std::env::temp_dir().join(format!("rigger-settings-u-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rigger.toml");
        std::fs::write(&file, "listne = \"x\"\n").unwrap();
        let err = load(Some(&file), &env(MINIMAL)).unwrap_err().to_string();
        assert!(err.contains("unknown field `listne`"), "{err}");
    }

    #[test]
    fn env_vars_lists_what_load_reads() {
        let source = include_str!("settings.rs");
        let load_body =
            &source[source.find("pub fn load(").unwrap()..source.find("fn secret(").unwrap()];
        for name in ENV_VARS {
            assert!(
                load_body.contains(&format!("\"{name}\"")),
                "{name} is not read"
            );
        }
        let mut read: Vec<&str> = load_body
            .match_indices("\"RIGGER_")
            .map(|(i, _)| {
                let rest = &load_body[i + 1..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        read.sort();
        read.dedup();
        assert_eq!(read.len(), ENV_VARS.len(), "read but not listed: {read:?}");
    }

    #[test]
    fn runner_scope_and_group() {
        let s = load(None, &env(MINIMAL)).unwrap();
        assert_eq!(
            (s.github.runner_scope, s.github.runner_group_id),
            (RunnerScope::Repository, 1)
        );
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = MINIMAL.to_vec();
            all.extend_from_slice(extra);
            load(None, &env(&all))
        };
        let s = with(&[
            ("RIGGER_GITHUB_RUNNER_SCOPE", "organization"),
            ("RIGGER_GITHUB_RUNNER_GROUP_ID", "7"),
        ])
        .unwrap();
        assert_eq!(
            (s.github.runner_scope, s.github.runner_group_id),
            (RunnerScope::Organization, 7)
        );
        for (extra, says) in [
            (
                &[("RIGGER_GITHUB_RUNNER_SCOPE", "enterprise")][..],
                "use repository or organization",
            ),
            (
                &[("RIGGER_GITHUB_RUNNER_GROUP_ID", "7")][..],
                "needs github.runner_scope = \"organization\"",
            ),
            (
                &[
                    ("RIGGER_GITHUB_RUNNER_SCOPE", "organization"),
                    ("RIGGER_GITHUB_RUNNER_GROUP_ID", "0"),
                ][..],
                "is not a runner group id",
            ),
            (
                &[("RIGGER_GITHUB_RUNNER_GROUP_ID", "default")][..],
                "must be a runner group's numeric id",
            ),
        ] {
            let err = with(extra).unwrap_err().to_string();
            assert!(err.contains(says), "{extra:?}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("6h"), Some(Duration::from_secs(21_600)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5 weeks"), None);
    }
}
