//! rigger's own settings: `rigger.toml`, overridden by `RIGGER_*` environment
//! variables (so a container runs with no file at all), validated at
//! start-up with errors that say what to fix. Every key has a variable by
//! one rule, `RIGGER_<KEY>` / `RIGGER_<SECTION>_<KEY>` ([`env_var`]), found
//! from the sections' own structs, so a new key needs no code to get one. Secrets are read from files or
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

/// Names from before the rule, still read; the rule's own name wins when
/// both are set.
const ALIASES: &[(&str, &str)] = &[
    ("RIGGER_GITHUB_WEBHOOK_SECRET", "RIGGER_WEBHOOK_SECRET"),
    (
        "RIGGER_GITHUB_WEBHOOK_SECRET_FILE",
        "RIGGER_WEBHOOK_SECRET_FILE",
    ),
    ("RIGGER_GITHUB_CONFIG_SOURCE", "RIGGER_CONFIG_SOURCE"),
    ("RIGGER_LIMITS_MAX_INSTANCES", "RIGGER_MAX_INSTANCES"),
    (
        "RIGGER_LIMITS_MAX_INSTANCES_PER_REPO",
        "RIGGER_MAX_INSTANCES_PER_REPO",
    ),
    ("RIGGER_LIMITS_MAX_DPH", "RIGGER_MAX_DPH"),
    ("RIGGER_LIMITS_MAX_JOB_COST", "RIGGER_MAX_JOB_COST"),
    ("RIGGER_LIMITS_DAILY_BUDGET", "RIGGER_DAILY_BUDGET"),
];

/// One `[section]` of rigger.toml (`""`: the top level), with the keys its
/// type accepts, read from the type itself so that a key added to a
/// section's struct gets its variable with no other change.
struct Section {
    name: &'static str,
    keys: fn() -> &'static [&'static str],
    /// Whether `{key = value}` alone is a valid table for this section.
    check: fn(toml::Table) -> Result<(), String>,
}

/// Every section; a new `[section]` needs its line here.
const SECTIONS: &[Section] = &[
    section::<File>(""),
    section::<GithubFile>("github"),
    section::<VastFile>("vast"),
    section::<LimitsFile>("limits"),
    section::<TimeoutsFile>("timeouts"),
    section::<RunnerFile>("runner"),
];

const fn section<T: serde::de::DeserializeOwned>(name: &'static str) -> Section {
    Section {
        name,
        keys: fields::<T>,
        check: |table| {
            toml::Value::Table(table)
                .try_into::<T>()
                .map(drop)
                .map_err(|e| e.to_string().trim().to_string())
        },
    }
}

/// The field names a `#[derive(Deserialize)]` struct declares, caught from
/// the `deserialize_struct` call serde makes.
fn fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor, value::Error as E};
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = E;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, E> {
            Err(E::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, E> {
            *self.0 = fields;
            Err(E::custom("only its fields were wanted"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut out: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut out));
    out
}

/// The variable for a key: `RIGGER_<KEY>` at the top level,
/// `RIGGER_<SECTION>_<KEY>` in a section, upper-cased.
pub fn env_var(section: &str, key: &str) -> String {
    let path = if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}_{key}")
    };
    format!("RIGGER_{}", path.to_ascii_uppercase())
}

/// Every `(section, key)` of rigger.toml (sections themselves excluded).
pub fn keys() -> Vec<(&'static str, &'static str)> {
    let sections: Vec<&str> = SECTIONS.iter().map(|s| s.name).collect();
    let sections = &sections;
    SECTIONS
        .iter()
        .flat_map(|s| {
            (s.keys)()
                .iter()
                .filter(move |k| !(s.name.is_empty() && sections.contains(k)))
                .map(move |k| (s.name, *k))
        })
        .collect()
}

/// Every environment variable `load` reads: one per key, the value itself
/// for each `*_file` secret (the name without `_FILE`), and the old names.
pub fn env_vars() -> Vec<String> {
    let mut out = Vec::new();
    for (section, key) in keys() {
        let name = env_var(section, key);
        if let Some(direct) = name.strip_suffix("_FILE") {
            out.push(direct.to_string());
        }
        out.push(name);
    }
    out.extend(ALIASES.iter().map(|(_, old)| old.to_string()));
    out
}

/// A variable by its name under the rule, or else its old name.
fn lookup(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<(String, String)> {
    let old = ALIASES
        .iter()
        .find(|(new, _)| *new == name)
        .map(|(_, o)| *o);
    std::iter::once(name)
        .chain(old)
        .find_map(|n| Some((n.to_string(), env(n).filter(|v| !v.trim().is_empty())?)))
}

/// The file's table with every variable that is set put in place of its
/// key. A value is taken as a string when the key accepts one, and
/// otherwise as TOML (`5`, `2.5`, `true`, `{ x64 = "…" }`), so it is checked
/// exactly as the same value in the file would be.
fn overlay_env(
    mut table: toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> toml::Table {
    for (section, key) in keys() {
        let Some((name, text)) = lookup(env, &env_var(section, key)) else {
            continue;
        };
        let check = SECTIONS.iter().find(|s| s.name == section).map(|s| s.check);
        let as_toml = toml::from_str::<toml::Table>(&format!("v = {text}"))
            .ok()
            .and_then(|mut t| t.remove("v"));
        let mut error = String::new();
        let accepted = [Some(toml::Value::String(text.clone())), as_toml]
            .into_iter()
            .flatten()
            .find(|value| {
                let alone = toml::Table::from_iter([(key.to_string(), value.clone())]);
                match check.map_or(Ok(()), |c| c(alone)) {
                    Ok(()) => true,
                    Err(e) => {
                        error = e;
                        false
                    }
                }
            });
        let Some(value) = accepted else {
            let at = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            problems.push(format!("{name}={text:?} is not valid for {at}: {error}"));
            continue;
        };
        let target = if section.is_empty() {
            &mut table
        } else {
            match table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(t) => t,
                // The file's own shape error is reported when it is read.
                _ => continue,
            }
        };
        target.insert(key.to_string(), value);
    }
    table
}

/// The pinned actions/runner release and its published checksums.
pub const RUNNER_VERSION: &str = "2.330.0";
/// Where images that ship a runner usually have it (`/actions-runner/run.sh`).
pub const RUNNER_PREINSTALLED_PATH: &str = "/actions-runner";
pub const RUNNER_URL_TEMPLATE: &str = "https://github.com/actions/runner/releases/download/v{version}/actions-runner-linux-{arch}-{version}.tar.gz";

/// The file (optional) with the environment's variables put over it, as
/// the file's shape: what [`load`] and [`load_database_url`] both start
/// from. The environment's problems are added to `problems`.
fn read(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Result<File, SettingsError> {
    let table: toml::Table = match file {
        None => toml::Table::new(),
        Some(path) => match std::fs::read_to_string(path) {
            Err(e) => {
                return Err(SettingsError::new(vec![format!(
                    "cannot read {}: {e}",
                    path.display()
                )]));
            }
            // Parsed as `File` first for errors that point at the line.
            Ok(text) => match toml::from_str::<File>(&text).and_then(|_| text.parse()) {
                Ok(t) => t,
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
    match toml::Value::Table(overlay_env(table, env, problems)).try_into() {
        Ok(f) => Ok(f),
        Err(e) => {
            problems.push(format!(
                "the settings are not valid: {}",
                e.to_string().trim()
            ));
            Err(SettingsError::new(std::mem::take(problems)))
        }
    }
}

/// `database_url`, or the default, checked.
fn database_url(value: Option<String>, problems: &mut Vec<String>) -> String {
    let database_url = value.unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
    if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
        problems.push(format!(
            "database_url {} is neither sqlite://PATH nor postgres://…",
            crate::store::redact_url(&database_url)
        ));
    }
    database_url
}

/// Where the database is when no setting says.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://rigger.db";

/// Only `database_url`, from the file (optional) and RIGGER_DATABASE_URL
/// (which wins), else the default: for the commands that read the store
/// and need none of the secrets [`load`] insists on. The file must still be
/// one `rigger serve` would read; its other values are not checked.
pub fn load_database_url(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, SettingsError> {
    let name = env_var("", "database_url");
    let only_database_url = |k: &str| if k == name { env(k) } else { None };
    let mut problems = Vec::new();
    let parsed = read(file, &only_database_url, &mut problems)?;
    let url = database_url(parsed.database_url, &mut problems);
    if problems.is_empty() {
        Ok(url)
    } else {
        Err(SettingsError::new(problems))
    }
}

/// Where `[vast]` in a settings file says Vast.ai is: its API key (from
/// `api_key_file`, if the file names one) and URL. Only those two are read,
/// so a command that needs nothing else needs none of serve's other secrets.
pub fn load_vast_access(file: &Path) -> Result<(Option<Secret>, Option<String>), SettingsError> {
    let mut problems = Vec::new();
    let parsed = read(Some(file), &|_| None, &mut problems)?;
    let key = parsed
        .vast
        .api_key_file
        .map(|path| secret(None, Some(path), "the Vast.ai API key", &mut problems));
    if problems.is_empty() {
        Ok((key, parsed.vast.api_url))
    } else {
        Err(SettingsError::new(problems))
    }
}

/// Reads settings from a file (optional) and an environment (a lookup
/// function, so tests pass their own).
pub fn load(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, SettingsError> {
    let mut problems = Vec::new();
    let parsed = read(file, env, &mut problems)?;
    // A `*_file` secret's variable without `_FILE` holds the value itself.
    let direct = |section: &str, file_key: &str| {
        let name = env_var(section, file_key);
        lookup(env, name.strip_suffix("_FILE").unwrap_or(&name)).map(|(_, v)| v)
    };

    let listen = parsed.listen.unwrap_or_else(|| "0.0.0.0:8080".into());
    if listen.parse::<std::net::SocketAddr>().is_err() {
        problems.push(format!(
            "listen = {listen:?} is not an address; write host:port, e.g. 0.0.0.0:8080"
        ));
    }
    let database_url = database_url(parsed.database_url, &mut problems);
    let controller_id = parsed.controller_id.unwrap_or_else(|| "rigger".into());
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
    let public_url = parsed.public_url;

    let g = parsed.github;
    let github = GithubSettings {
        app_id: g.app_id.unwrap_or_else(|| {
            problems.push(
                "github.app_id is missing: the App's id, on its settings page (or RIGGER_GITHUB_APP_ID)"
                    .into(),
            );
            0
        }),
        private_key: secret(
            direct("github", "private_key_file"),
            g.private_key_file,
            "the GitHub App private key: github.private_key_file, RIGGER_GITHUB_PRIVATE_KEY_FILE or RIGGER_GITHUB_PRIVATE_KEY",
            &mut problems,
        ),
        webhook_secrets: secret(
            direct("github", "webhook_secret_file"),
            g.webhook_secret_file,
            "the webhook secret: github.webhook_secret_file, RIGGER_GITHUB_WEBHOOK_SECRET_FILE or RIGGER_GITHUB_WEBHOOK_SECRET",
            &mut problems,
        )
        .expose()
        // Several secrets, one per line (or comma-separated), during a rotation.
        .split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .collect(),
        api_url: g
            .api_url
            .unwrap_or_else(|| "https://api.github.com".into()),
        config_source: g.config_source.unwrap_or(ConfigSource::DefaultBranch),
        runner_scope: g.runner_scope.unwrap_or(RunnerScope::Repository),
        runner_group_id: g.runner_group_id.unwrap_or(1),
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
            direct("vast", "api_key_file"),
            parsed.vast.api_key_file,
            "the Vast.ai API key: vast.api_key_file, RIGGER_VAST_API_KEY_FILE or RIGGER_VAST_API_KEY",
            &mut problems,
        ),
        api_url: parsed
            .vast
            .api_url
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
        max_instances: l.max_instances.unwrap_or(20),
        max_instances_per_repo: l.max_instances_per_repo.unwrap_or(10),
        max_dph: l.max_dph.unwrap_or(5.0),
        max_job_cost: l.max_job_cost.unwrap_or(25.0),
        daily_budget: l.daily_budget.unwrap_or(100.0),
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
                "timeouts.{name} ({}) = {text:?} is not a duration; write e.g. \"30s\", \"10m\" or \"6h\"",
                env_var("timeouts", name)
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
    fn the_database_url_alone_needs_no_secret() {
        assert_eq!(
            load_database_url(None, &env(&[])).unwrap(),
            DEFAULT_DATABASE_URL
        );
        let dir = std::env::temp_dir().join(format!("rigger-settings-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rigger.toml");
        std::fs::write(
            &file,
            "database_url = \"sqlite:///var/lib/rigger/rigger.db\"\n[github]\napp_id = 5\n",
        )
        .unwrap();
        // No GitHub key, no Vast.ai key, and a variable serve would refuse:
        // none of it is this command's business.
        let no_secrets = env(&[("RIGGER_LIMITS_MAX_DPH", "cheap")]);
        assert_eq!(
            load_database_url(Some(&file), &no_secrets).unwrap(),
            "sqlite:///var/lib/rigger/rigger.db"
        );
        assert!(load(Some(&file), &no_secrets).is_err());
        let url = load_database_url(
            Some(&file),
            &env(&[("RIGGER_DATABASE_URL", "postgres://db/rigger")]),
        )
        .unwrap();
        assert_eq!(url, "postgres://db/rigger", "the environment wins");
        let err = load_database_url(None, &env(&[("RIGGER_DATABASE_URL", "mysql://u:pw@h/db")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("neither sqlite://PATH nor postgres"), "{err}");
        assert!(!err.contains(":pw@"), "password leaked: {err}");
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
    fn every_key_has_one_variable_and_no_two_share_one() {
        let keys = keys();
        assert!(keys.contains(&("github", "app_id")));
        assert!(keys.contains(&("", "listen")));
        assert!(keys.contains(&("runner", "sha256")));
        assert!(
            !keys.contains(&("", "github")),
            "a section is not a key: {keys:?}"
        );
        let mut names = env_vars();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "two settings share a variable");
        assert!(names.contains(&"RIGGER_TIMEOUTS_IDLE".to_string()));
        assert!(names.contains(&"RIGGER_GITHUB_PRIVATE_KEY".to_string()));
    }

    #[test]
    fn any_key_comes_from_its_variable_typed_as_in_the_file() {
        let mut pairs = MINIMAL.to_vec();
        pairs.extend([
            ("RIGGER_TIMEOUTS_IDLE", "15m"),
            ("RIGGER_LIMITS_DEFAULT_JOB_MINUTES", "45"),
            ("RIGGER_LIMITS_MAX_DPH", "2"),
            // A string setting that looks like a number stays a string.
            ("RIGGER_RUNNER_VERSION", "2.331"),
            ("RIGGER_CONTROLLER_ID", "123"),
            ("RIGGER_GITHUB_CONFIG_SOURCE", "head_commit"),
        ]);
        let sum = "ab".repeat(32);
        let table = format!("{{ x64 = \"{sum}\" }}");
        pairs.push(("RIGGER_RUNNER_SHA256", &table));
        let s = load(None, &env(&pairs)).unwrap();
        assert_eq!(s.timeouts.idle, Duration::from_secs(900));
        assert_eq!(s.limits.default_job_minutes, 45);
        assert_eq!(s.limits.max_dph, 2.0);
        assert_eq!(s.runner.version, "2.331");
        assert_eq!(s.controller_id, "123");
        assert_eq!(s.github.config_source, ConfigSource::HeadCommit);
        assert_eq!(s.runner.sha256["x64"], sum);
    }

    #[test]
    fn a_bad_variable_is_named_with_what_it_should_hold() {
        let mut pairs = MINIMAL.to_vec();
        pairs.extend([
            ("RIGGER_LIMITS_MAX_DPH", "cheap"),
            ("RIGGER_TIMEOUTS_BOOTSTRAP", "soon"),
            ("RIGGER_GITHUB_CONFIG_SOURCE", "fork"),
            ("RIGGER_RUNNER_SHA256", "{ x64 = \"short\" }"),
        ]);
        let err = load(None, &env(&pairs)).unwrap_err().to_string();
        for expected in [
            "RIGGER_LIMITS_MAX_DPH=\"cheap\" is not valid for limits.max_dph",
            "timeouts.bootstrap (RIGGER_TIMEOUTS_BOOTSTRAP) = \"soon\" is not a duration",
            "RIGGER_GITHUB_CONFIG_SOURCE=\"fork\" is not valid for github.config_source",
            "runner.sha256.x64 is not a SHA-256",
        ] {
            assert!(err.contains(expected), "{expected:?} not in:\n{err}");
        }
    }

    #[test]
    fn the_old_names_still_work_and_the_rule_wins() {
        let mut pairs = MINIMAL.to_vec();
        pairs.extend([
            ("RIGGER_MAX_DPH", "1.5"),
            ("RIGGER_MAX_INSTANCES", "3"),
            ("RIGGER_LIMITS_MAX_INSTANCES", "4"),
            ("RIGGER_CONFIG_SOURCE", "head_commit"),
        ]);
        let s = load(None, &env(&pairs)).unwrap();
        assert_eq!(s.limits.max_dph, 1.5);
        assert_eq!(s.limits.max_instances, 4);
        assert_eq!(s.github.config_source, ConfigSource::HeadCommit);
        let s = load(
            None,
            &env(&[
                ("RIGGER_GITHUB_APP_ID", "1"),
                ("RIGGER_GITHUB_PRIVATE_KEY", "k"),
                ("RIGGER_GITHUB_WEBHOOK_SECRET", "new"),
                ("RIGGER_WEBHOOK_SECRET", "old"),
                ("RIGGER_VAST_API_KEY", "v"),
            ]),
        )
        .unwrap();
        assert_eq!(s.github.webhook_secrets, vec![Secret::new("new")]);
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
                "expected `repository` or `organization`",
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
                "RIGGER_GITHUB_RUNNER_GROUP_ID=\"default\" is not valid for github.runner_group_id",
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
