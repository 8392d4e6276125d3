//! rigger's own settings: `rigger.toml`, overridden by `RIGGER_*` environment
//! variables (so a container runs with no file at all), validated at
//! start-up with errors that say what to fix. Every key has a variable by
//! one rule, `RIGGER_<KEY>` / `RIGGER_<SECTION>_<KEY>` ([`env_var`]), found
//! from the sections' own structs, so a new key needs no code to get one. Secrets are read from files or
//! the environment into [`Secret`], which never prints its value. Every
//! number and duration has a range (`range.rs`), checked with the rest;
//! files are read to a bound, and [`from_sources`] is the one pure entry point.

mod range;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::text::{LOG_CHARS, clip, for_log};

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
    /// When rigger gives up on a job (config error, denied, no capacity in
    /// time…), cancel its workflow run rather than leave the job queued on
    /// GitHub for 24 h. Needs the App permission Actions: write. Off by default.
    pub cancel_runs_on_give_up: bool,
    /// The share of GitHub's secondary limits on writes rigger keeps to,
    /// in percent (see `github::pace`).
    pub pace_percent: u32,
    /// GitHub's secondary limits on content-generating requests: 80 a
    /// minute and 500 an hour on github.com; a GitHub Enterprise Server's
    /// administrator may set others.
    pub content_per_minute: u32,
    pub content_per_hour: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VastSettings {
    pub api_key: Secret,
    pub api_url: String,
    /// The rate limits rigger keeps to (`rate_limits`; Vast.ai's documented
    /// figures unless changed).
    pub rate_limits: crate::cloud::vast::limit::RateLimits,
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
    /// How long an online machine's host may be unreachable on Vast.ai
    /// (`unknown`, `offline`, `frozen`) before the machine is given up.
    pub unreachable: Duration,
    pub max_lifetime: Duration,
    /// How long a job may wait for capacity: GitHub's own queue limit.
    pub queue: Duration,
    /// The wait before trying again a destroy Vast.ai refused; it doubles
    /// with each refusal in a row, up to `destroy_retry_max`. A rate
    /// limit's own wait is kept to instead.
    pub destroy_retry: Duration,
    pub destroy_retry_max: Duration,
    /// The shortest wait before a job that found no machine (nothing on
    /// the market fits, every offer was taken, an error) is tried again;
    /// the wait grows with how long the job has waited (half of it),
    /// up to `provision_retry_max`. A rate limit's own wait is kept to.
    pub provision_retry: Duration,
    pub provision_retry_max: Duration,
}

/// Which actions/runner release the machines run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerVersion {
    /// `latest` (the default): the release GitHub's runner downloads list
    /// names, with the URL and SHA-256 it gives. GitHub lists only its
    /// current release; it tells an older runner to update itself when it
    /// connects, and gives no jobs to one 30 days behind a release.
    Current,
    /// This release (`2.330.0`), verified by the SHA-256 GitHub computed
    /// for the release asset (its `digest`) or by `runner.sha256`.
    Pinned(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunnerSettings {
    pub version: RunnerVersion,
    /// A mirror: `{version}` and `{arch}` (x64, arm64) are filled in.
    /// `None`: the file URL GitHub names for the release.
    pub url_template: Option<String>,
    /// SHA-256 of the pinned release's tarball per architecture; where one
    /// is missing, rigger uses the one GitHub publishes.
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

/// Most problems one error lists: a file of garbage has thousands, and the
/// first few already say it is the wrong file.
const MAX_LISTED: usize = 40;

impl SettingsError {
    fn new(problems: Vec<String>) -> SettingsError {
        let mut list: Vec<String> = problems
            .iter()
            .take(MAX_LISTED)
            .map(|p| format!("  - {p}"))
            .collect();
        if let Some(more) = problems.len().checked_sub(MAX_LISTED).filter(|n| *n > 0) {
            list.push(format!("  - … and {more} more"));
        }
        SettingsError {
            problems: format!("rigger's settings need fixing:\n{}", list.join("\n")),
        }
    }
}

/// Most bytes of rigger.toml read. The example that documents every
/// setting is 5 KiB, so a file fifty times larger is not a settings file;
/// and parsing costs memory in proportion to the text (up to some 90 bytes
/// per byte for a long array), so a multi-GB file must never reach the parser.
pub const MAX_FILE_BYTES: usize = 256 * 1024;

/// Most bytes of a secret file: a 4096-bit PEM key is some 3 KiB.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Longest URL or path setting: longer is a paste gone wrong, not an address.
const MAX_URL_CHARS: usize = 4096;

/// Most webhook secrets at once: every delivery is checked against each.
const MAX_WEBHOOK_SECRETS: usize = 10;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is larger than {} KiB", .0 / 1024)]
    TooLarge(usize),
    #[error("it is not UTF-8 text")]
    NotText,
}

/// A file's text, refused when it is larger than `max` bytes. At most
/// `max + 1` bytes are read, so a huge file (or `/dev/zero`) costs no
/// more than a small one.
pub fn read_bounded(path: &Path, max: usize) -> Result<String, ReadError> {
    let mut bytes = Vec::new();
    let most = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    std::fs::File::open(path)?
        .take(most)
        .read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(ReadError::TooLarge(max));
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotText)
}

/// rigger.toml's text and the path its messages name.
#[derive(Debug, Clone, Copy)]
pub struct SettingsFile<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

/// Everything settings are made of. [`from_sources`] reads nothing else:
/// a test or a fuzz target passes its own text, environment and files.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// rigger.toml, if there is one.
    pub file: Option<SettingsFile<'a>>,
    /// The environment's variables.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Reads a file a `*_file` setting names (a secret); [`load`] passes
    /// [`read_bounded`] at [`MAX_SECRET_BYTES`].
    pub read_file: &'a dyn Fn(&Path) -> Result<String, ReadError>,
}

fn read_secret_file(path: &Path) -> Result<String, ReadError> {
    read_bounded(path, MAX_SECRET_BYTES)
}

/// rigger.toml's text, read as [`load`] and its siblings read it.
fn read_settings_file(path: &Path) -> Result<String, SettingsError> {
    read_bounded(path, MAX_FILE_BYTES).map_err(|e| {
        SettingsError::new(vec![match e {
            ReadError::TooLarge(_) => too_large(path),
            e => format!("cannot read {}: {e}", shown_path(path)),
        }])
    })
}

fn too_large(path: &Path) -> String {
    format!(
        "{} is larger than {} KiB, and rigger's settings take a few KiB (examples/rigger.toml documents them all): is it the right file?",
        shown_path(path),
        MAX_FILE_BYTES / 1024
    )
}

/// A path as a message shows it: cut, since a path may come from the file.
fn shown_path(path: &Path) -> String {
    printable(&for_log(&path.display().to_string()))
}

/// Untrusted text as a message shows it: cut and quoted.
fn quoted(text: &str) -> String {
    format!("{:?}", for_log(text))
}

/// An error from the TOML crate as a message shows it: on one line (it
/// puts "in `key`" on a line of its own), and cut, since it may hold the
/// offending value; twice the usual length leaves room for its "expected
/// one of …" list.
fn toml_message(e: &str) -> String {
    let one_line = e
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    printable(&clip(&one_line, 2 * LOG_CHARS))
}

/// `s` with each control character (a newline, an escape sequence for the
/// terminal) replaced, for text from outside that is shown unquoted.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// `section.key` as messages name a setting (`key` at the top level).
fn dotted(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
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
    /// Any integer, so that a wrong one is refused by the range check with
    /// a message that says what is allowed.
    app_id: Option<i64>,
    private_key_file: Option<PathBuf>,
    webhook_secret_file: Option<PathBuf>,
    api_url: Option<String>,
    config_source: Option<ConfigSource>,
    runner_scope: Option<RunnerScope>,
    runner_group_id: Option<i64>,
    cancel_runs_on_give_up: Option<bool>,
    pace_percent: Option<i64>,
    content_per_minute: Option<i64>,
    content_per_hour: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VastFile {
    api_key_file: Option<PathBuf>,
    api_url: Option<String>,
    rate_limits: Option<String>,
}

/// Counts as any integer (TOML's are `i64`): the range check, not the
/// type, says what is allowed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_instances: Option<i64>,
    max_instances_per_repo: Option<i64>,
    max_dph: Option<f64>,
    max_job_cost: Option<f64>,
    daily_budget: Option<f64>,
    default_job_minutes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsFile {
    reconcile_interval: Option<String>,
    create: Option<String>,
    bootstrap: Option<String>,
    idle: Option<String>,
    job_quiet: Option<String>,
    unreachable: Option<String>,
    max_lifetime: Option<String>,
    queue: Option<String>,
    destroy_retry: Option<String>,
    destroy_retry_max: Option<String>,
    provision_retry: Option<String>,
    provision_retry_max: Option<String>,
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
                .map_err(|e| toml_message(&e.to_string()))
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

/// Where each setting's value came from, for the messages that name it.
#[derive(Debug, Default)]
struct Origins {
    /// rigger.toml's path, as shown.
    file: Option<String>,
    /// `section.key` → the variable that set it (which wins over the file).
    vars: BTreeMap<String, String>,
    /// `section.key` whose value in the file was refused and left out, so
    /// that it is not also called missing.
    rejected: BTreeSet<String>,
}

impl Origins {
    fn of(&self, section: &str, key: &str) -> &str {
        match self.vars.get(&dotted(section, key)) {
            Some(var) => var,
            None => self.file.as_deref().unwrap_or("the default"),
        }
    }

    fn rejected(&self, section: &str, key: &str) -> bool {
        self.rejected.contains(&dotted(section, key))
    }
}

/// The file's table with every value of the wrong kind (or under a key
/// that is no setting) reported and left out, key by key, so that one
/// mistake does not hide the others.
fn keep_valid(
    table: toml::Table,
    origins: &mut Origins,
    problems: &mut Vec<String>,
) -> toml::Table {
    let (sections, top): (toml::Table, toml::Table) =
        table.into_iter().partition(|(name, value)| {
            value.is_table()
                && SECTIONS
                    .iter()
                    .any(|s| !s.name.is_empty() && s.name == name)
        });
    let mut kept = keep_valid_in(&SECTIONS[0], top, origins, problems);
    for (name, value) in sections {
        let (Some(section), toml::Value::Table(inner)) =
            (SECTIONS.iter().find(|s| s.name == name), value)
        else {
            continue;
        };
        let inner = keep_valid_in(section, inner, origins, problems);
        kept.insert(name, toml::Value::Table(inner));
    }
    kept
}

fn keep_valid_in(
    section: &Section,
    table: toml::Table,
    origins: &mut Origins,
    problems: &mut Vec<String>,
) -> toml::Table {
    let file = origins.file.clone().unwrap_or_default();
    table
        .into_iter()
        .filter(|(key, value)| {
            let alone = toml::Table::from_iter([(key.clone(), value.clone())]);
            let Err(e) = (section.check)(alone) else {
                return true;
            };
            let name = dotted(section.name, key);
            problems.push(format!("{} ({file}): {e}", printable(&for_log(&name))));
            origins.rejected.insert(name);
            false
        })
        .collect()
}

/// The table with every variable that is set put in place of its key. A
/// value is taken as a string when the key accepts one, and otherwise as
/// TOML (`5`, `2.5`, `true`, `{ x64 = "…" }`), so it is checked exactly as
/// the same value in the file would be.
fn overlay_env(
    mut table: toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
    origins: &mut Origins,
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
            problems.push(format!(
                "{name}={} is not valid for {}: {error}",
                quoted(&text),
                dotted(section, key)
            ));
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
                // Not a table: already reported and left out by `keep_valid`.
                _ => continue,
            }
        };
        target.insert(key.to_string(), value);
        origins.vars.insert(dotted(section, key), name);
    }
    table
}

/// `runner.version` for the release GitHub's downloads list names (the default).
pub const RUNNER_VERSION_LATEST: &str = "latest";
/// Where images that ship a runner usually have it (`/actions-runner/run.sh`).
pub const RUNNER_PREINSTALLED_PATH: &str = "/actions-runner";

/// The file's shape, and where each of its values came from.
struct Parsed {
    file: File,
    origins: Origins,
}

/// The file (optional) with the environment's variables put over it, as
/// the file's shape: what [`from_sources`] and [`load_database_url`] both
/// start from. Problems of values of the wrong kind are added to
/// `problems` (and the values left out); only a file that is not TOML at
/// all, or too large to be one, stops here.
fn read(sources: &Sources<'_>, problems: &mut Vec<String>) -> Result<Parsed, SettingsError> {
    let mut origins = Origins {
        file: sources.file.map(|f| shown_path(f.path)),
        ..Origins::default()
    };
    let table = match sources.file {
        None => toml::Table::new(),
        Some(file) if file.text.len() > MAX_FILE_BYTES => {
            return Err(SettingsError::new(vec![too_large(file.path)]));
        }
        Some(file) => match file.text.parse::<toml::Table>() {
            Ok(table) => keep_valid(table, &mut origins, problems),
            Err(e) => {
                // The variables' own problems are worth knowing too.
                problems.push(syntax_problem(file, &e));
                overlay_env(toml::Table::new(), sources.env, &mut origins, problems);
                return Err(SettingsError::new(std::mem::take(problems)));
            }
        },
    };
    let table = overlay_env(table, sources.env, &mut origins, problems);
    match toml::Value::Table(table).try_into() {
        Ok(file) => Ok(Parsed { file, origins }),
        // Each value was checked alone above: only a bug gets here.
        Err(e) => {
            problems.push(format!(
                "the settings are not valid: {}",
                toml_message(&e.to_string())
            ));
            Err(SettingsError::new(std::mem::take(problems)))
        }
    }
}

/// Where in the file TOML stopped making sense: line, column and the text
/// around it, by characters. The crate's own rendering quotes the whole
/// line, which for a one-line file of a megabyte is the whole file.
fn syntax_problem(file: SettingsFile<'_>, e: &toml::de::Error) -> String {
    let path = shown_path(file.path);
    let message = for_log(e.message().trim());
    let Some(span) = e.span() else {
        return format!("{path} is not valid TOML: {message}");
    };
    let (mut line, mut column, mut line_start) = (1usize, 1usize, 0usize);
    for (i, c) in file
        .text
        .char_indices()
        .take_while(|(i, _)| *i < span.start)
    {
        if c == '\n' {
            (line, column, line_start) = (line + 1, 1, i + 1);
        } else {
            column += 1;
        }
    }
    let this_line = file.text.get(line_start..).unwrap_or_default();
    let this_line = this_line.lines().next().unwrap_or_default();
    // Some 30 characters either side of the column.
    let from = column.saturating_sub(31);
    let near: String = this_line.chars().skip(from).collect();
    let lead = if from > 0 { "…" } else { "" };
    format!(
        "{path} is not valid TOML at line {line}, column {column}: {}, at {lead}{:?}",
        printable(&message),
        clip(&near, 60)
    )
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
    let text = file.map(read_settings_file).transpose()?;
    let name = env_var("", "database_url");
    let only_database_url = |k: &str| if k == name { env(k) } else { None };
    let sources = Sources {
        file: file
            .zip(text.as_deref())
            .map(|(path, text)| SettingsFile { path, text }),
        env: &only_database_url,
        read_file: &read_secret_file,
    };
    let mut problems = Vec::new();
    let parsed = read(&sources, &mut problems)?;
    let mut check = Checks::new(&sources, &parsed.origins, problems);
    let url = check.database_url(parsed.file.database_url);
    check.finish(url)
}

/// Where `[vast]` in a settings file says Vast.ai is: its API key (from
/// `api_key_file`, if the file names one) and URL. Only those two are read,
/// so a command that needs nothing else needs none of serve's other secrets.
pub fn load_vast_access(file: &Path) -> Result<(Option<Secret>, Option<String>), SettingsError> {
    let text = read_settings_file(file)?;
    let sources = Sources {
        file: Some(SettingsFile {
            path: file,
            text: &text,
        }),
        env: &|_| None,
        read_file: &read_secret_file,
    };
    let mut problems = Vec::new();
    let parsed = read(&sources, &mut problems)?;
    let mut check = Checks::new(&sources, &parsed.origins, problems);
    let key = parsed.file.vast.api_key_file.map(|path| {
        check.secret(
            None,
            ("vast", "api_key_file"),
            Some(path),
            "the Vast.ai API key",
        )
    });
    check.finish((key, parsed.file.vast.api_url))
}

/// Reads settings from a file (optional) and an environment (a lookup
/// function, so tests pass their own); the secrets' files are read at most
/// [`MAX_SECRET_BYTES`] each.
pub fn load(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, SettingsError> {
    let text = file.map(read_settings_file).transpose()?;
    from_sources(&Sources {
        file: file
            .zip(text.as_deref())
            .map(|(path, text)| SettingsFile { path, text }),
        env,
        read_file: &read_secret_file,
    })
}

/// The settings, or every problem with them at once, from nothing but
/// `sources`: the one entry point every loader (and a fuzz target) goes
/// through. No input panics it; any text of at most [`MAX_FILE_BYTES`] is
/// answered in time and memory proportional to it.
pub fn from_sources(sources: &Sources<'_>) -> Result<Settings, SettingsError> {
    let mut problems = Vec::new();
    let parsed = read(sources, &mut problems)?;
    let mut check = Checks::new(sources, &parsed.origins, problems);
    let p = parsed.file;

    let listen = p.listen.unwrap_or_else(|| "0.0.0.0:8080".into());
    if listen.parse::<std::net::SocketAddr>().is_err() {
        check.refuse(
            ("", "listen"),
            quoted(&listen),
            "is not an address; write IP:port, e.g. 0.0.0.0:8080 (port 0: one the system picks)",
        );
    }
    let database_url = check.database_url(p.database_url);
    let controller_id = p.controller_id.unwrap_or_else(|| "rigger".into());
    let id_ok = !controller_id.is_empty()
        && controller_id.len() <= MAX_CONTROLLER_ID
        && controller_id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !id_ok {
        check.refuse(
            ("", "controller_id"),
            quoted(&controller_id),
            format!("must be 1–{MAX_CONTROLLER_ID} characters of a-z, 0-9 and -: it goes into every Vast.ai label and runner name"),
        );
    }
    if let Some(url) = &p.public_url {
        check.url(("", "public_url"), url);
        if url.contains(['?', '#']) {
            check.refuse(
                ("", "public_url"),
                quoted(url),
                "has a ?query or #fragment: rigger adds /callback/… to it",
            );
        }
    }

    let github = check.github(p.github);
    let vast = VastSettings {
        api_key: check.secret(
            check.direct("vast", "api_key_file"),
            ("vast", "api_key_file"),
            p.vast.api_key_file,
            "the Vast.ai API key: vast.api_key_file, RIGGER_VAST_API_KEY_FILE or RIGGER_VAST_API_KEY",
        ),
        api_url: p.vast.api_url.unwrap_or_else(|| "https://console.vast.ai".into()),
        rate_limits: match p.vast.rate_limits.as_deref().map(str::parse) {
            None => Default::default(),
            Some(Ok(l)) => l,
            Some(Err(why)) => {
                check.refuse(
                    ("vast", "rate_limits"),
                    quoted(p.vast.rate_limits.as_deref().unwrap_or_default()),
                    format!(
                        "is not a rate-limit setting: {}",
                        why.chars().take(200).collect::<String>().escape_debug()
                    ),
                );
                Default::default()
            }
        },
    };
    check.url(("vast", "api_url"), &vast.api_url);

    let l = p.limits;
    let limits = LimitSettings {
        max_instances: check.count("max_instances", l.max_instances, &range::MAX_INSTANCES),
        max_instances_per_repo: check.count(
            "max_instances_per_repo",
            l.max_instances_per_repo,
            &range::MAX_INSTANCES_PER_REPO,
        ),
        max_dph: check.money("max_dph", l.max_dph, &range::MAX_DPH),
        max_job_cost: check.money("max_job_cost", l.max_job_cost, &range::MAX_JOB_COST),
        daily_budget: check.money("daily_budget", l.daily_budget, &range::DAILY_BUDGET),
        default_job_minutes: check.count(
            "default_job_minutes",
            l.default_job_minutes,
            &range::DEFAULT_JOB_MINUTES,
        ),
    };

    let t = p.timeouts;
    let timeouts = Timeouts {
        reconcile_interval: check.duration(
            "reconcile_interval",
            t.reconcile_interval,
            &range::RECONCILE_INTERVAL,
        ),
        create: check.duration("create", t.create, &range::CREATE),
        bootstrap: check.duration("bootstrap", t.bootstrap, &range::BOOTSTRAP),
        idle: check.duration("idle", t.idle, &range::IDLE),
        job_quiet: check.duration("job_quiet", t.job_quiet, &range::JOB_QUIET),
        unreachable: check.duration("unreachable", t.unreachable, &range::UNREACHABLE),
        max_lifetime: check.duration("max_lifetime", t.max_lifetime, &range::MAX_LIFETIME),
        queue: check.duration("queue", t.queue, &range::QUEUE),
        destroy_retry: check.duration("destroy_retry", t.destroy_retry, &range::DESTROY_RETRY),
        destroy_retry_max: check.duration(
            "destroy_retry_max",
            t.destroy_retry_max,
            &range::DESTROY_RETRY_MAX,
        ),
        provision_retry: check.duration(
            "provision_retry",
            t.provision_retry,
            &range::PROVISION_RETRY,
        ),
        provision_retry_max: check.duration(
            "provision_retry_max",
            t.provision_retry_max,
            &range::PROVISION_RETRY_MAX,
        ),
    };
    if timeouts.destroy_retry_max < timeouts.destroy_retry {
        check.refuse(
            ("timeouts", "destroy_retry_max"),
            quoted(&range::show(timeouts.destroy_retry_max)),
            format!(
                "is shorter than timeouts.destroy_retry ({}): the backoff starts there and grows up to this",
                range::show(timeouts.destroy_retry)
            ),
        );
    }
    if timeouts.provision_retry_max < timeouts.provision_retry {
        check.refuse(
            ("timeouts", "provision_retry_max"),
            quoted(&range::show(timeouts.provision_retry_max)),
            format!(
                "is shorter than timeouts.provision_retry ({}): the wait starts there and grows up to this",
                range::show(timeouts.provision_retry)
            ),
        );
    }

    let runner = check.runner(p.runner);
    check.finish(Settings {
        listen,
        database_url,
        controller_id,
        public_url: p.public_url,
        github,
        vast,
        limits,
        timeouts,
        runner,
    })
}

/// The checks of values already of the right kind. Each problem names the
/// key, where its value came from (a variable, or the file) and what is
/// allowed; all of them are collected before any is reported.
struct Checks<'a> {
    sources: &'a Sources<'a>,
    origins: &'a Origins,
    problems: Vec<String>,
}

impl<'a> Checks<'a> {
    fn new(sources: &'a Sources<'a>, origins: &'a Origins, problems: Vec<String>) -> Checks<'a> {
        Checks {
            sources,
            origins,
            problems,
        }
    }

    fn finish<T>(self, value: T) -> Result<T, SettingsError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(SettingsError::new(self.problems))
        }
    }

    /// `key (where) = value what`.
    fn refuse(
        &mut self,
        (section, key): (&str, &str),
        value: impl fmt::Display,
        what: impl fmt::Display,
    ) {
        self.problems.push(format!(
            "{} ({}) = {value} {what}",
            dotted(section, key),
            self.origins.of(section, key)
        ));
    }

    fn database_url(&mut self, value: Option<String>) -> String {
        let url = value.unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        let shown = || quoted(&crate::store::redact_url(&url));
        if !(url.starts_with("sqlite:") || url.starts_with("postgres")) {
            let value = shown();
            self.refuse(
                ("", "database_url"),
                value,
                "is neither sqlite://PATH nor postgres://…",
            );
        } else if url.chars().count() > MAX_URL_CHARS {
            let value = shown();
            self.refuse(
                ("", "database_url"),
                value,
                format!("is longer than {MAX_URL_CHARS} characters"),
            );
        }
        url
    }

    /// An http(s) address rigger or a machine calls.
    fn url(&mut self, at: (&str, &str), url: &str) {
        if let Some(why) = url_problem(url) {
            self.refuse(at, quoted(url), why);
        }
    }

    /// A `*_file` secret's variable without `_FILE`: the secret itself.
    fn direct(&self, section: &str, file_key: &str) -> Option<String> {
        let name = env_var(section, file_key);
        lookup(
            self.sources.env,
            name.strip_suffix("_FILE").unwrap_or(&name),
        )
        .map(|(_, v)| v)
    }

    /// A secret given directly (environment) or as a file path; the error
    /// names where it can come from and never holds the value.
    fn secret(
        &mut self,
        direct: Option<String>,
        (section, key): (&str, &str),
        file: Option<PathBuf>,
        what: &str,
    ) -> Secret {
        if let Some(v) = direct {
            return Secret::new(v.trim().to_string());
        }
        let problem = match file {
            Some(path) => match (self.sources.read_file)(&path) {
                Ok(v) if !v.trim().is_empty() => return Secret::new(v.trim().to_string()),
                Ok(_) => format!("{} is empty; it should hold {what}", shown_path(&path)),
                Err(e) => format!(
                    "cannot read {} ({e}); it should hold {what}",
                    shown_path(&path)
                ),
            },
            // Present but of the wrong kind: that is already said.
            None if self.origins.rejected(section, key) => return Secret::new(""),
            None => format!("missing {what}"),
        };
        self.problems.push(problem);
        Secret::new("")
    }

    fn github(&mut self, g: GithubFile) -> GithubSettings {
        let app_id = match g.app_id {
            None if !self.origins.rejected("github", "app_id") => {
                self.problems.push(
                    "github.app_id is missing: the App's id, on its settings page (or RIGGER_GITHUB_APP_ID)"
                        .into(),
                );
                0
            }
            None => 0,
            Some(id) => u64::try_from(id)
                .ok()
                .filter(|id| *id > 0)
                .unwrap_or_else(|| {
                    self.refuse(
                        ("github", "app_id"),
                        id,
                        "is not an App id: it is the positive number on the App's settings page",
                    );
                    0
                }),
        };
        let private_key = self.secret(
            self.direct("github", "private_key_file"),
            ("github", "private_key_file"),
            g.private_key_file,
            "the GitHub App private key: github.private_key_file, RIGGER_GITHUB_PRIVATE_KEY_FILE or RIGGER_GITHUB_PRIVATE_KEY",
        );
        let webhook_secrets: Vec<Secret> = self
            .secret(
                self.direct("github", "webhook_secret_file"),
                ("github", "webhook_secret_file"),
                g.webhook_secret_file,
                "the webhook secret: github.webhook_secret_file, RIGGER_GITHUB_WEBHOOK_SECRET_FILE or RIGGER_GITHUB_WEBHOOK_SECRET",
            )
            .expose()
            // Several secrets, one per line (or comma-separated), during a rotation.
            .split(['\n', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect();
        if webhook_secrets.len() > MAX_WEBHOOK_SECRETS {
            self.problems.push(format!(
                "the webhook secret holds {} secrets (one per line or comma-separated): a rotation needs two or three, and every delivery is checked against each, so at most {MAX_WEBHOOK_SECRETS} are allowed",
                webhook_secrets.len()
            ));
        }
        let mut github = GithubSettings {
            app_id,
            private_key,
            webhook_secrets,
            api_url: g.api_url.unwrap_or_else(|| "https://api.github.com".into()),
            config_source: g.config_source.unwrap_or(ConfigSource::DefaultBranch),
            runner_scope: g.runner_scope.unwrap_or(RunnerScope::Repository),
            runner_group_id: g.runner_group_id.unwrap_or(1),
            cancel_runs_on_give_up: g.cancel_runs_on_give_up.unwrap_or(false),
            pace_percent: 0,
            content_per_minute: 0,
            content_per_hour: 0,
        };
        for (key, value, rule, into) in [
            (
                "content_per_minute",
                g.content_per_minute,
                &range::CONTENT_PER_MINUTE,
                &mut github.content_per_minute,
            ),
            (
                "content_per_hour",
                g.content_per_hour,
                &range::CONTENT_PER_HOUR,
                &mut github.content_per_hour,
            ),
        ] {
            let n = value.unwrap_or(rule.default);
            if rule.admits(n) {
                *into = u32::try_from(n).unwrap_or_default();
            } else {
                self.refuse(
                    ("github", key),
                    n,
                    format!(
                        "is out of range: allowed are {} to {}; {}",
                        rule.min, rule.max, rule.why
                    ),
                );
            }
        }
        let pace = g.pace_percent.unwrap_or(range::PACE_PERCENT.default);
        if range::PACE_PERCENT.admits(pace) {
            github.pace_percent = u32::try_from(pace).unwrap_or_default();
        } else {
            self.refuse(
                ("github", "pace_percent"),
                pace,
                format!(
                    "is out of range: allowed are {} to {}; {}",
                    range::PACE_PERCENT.min,
                    range::PACE_PERCENT.max,
                    range::PACE_PERCENT.why
                ),
            );
        }
        self.url(("github", "api_url"), &github.api_url);
        let group = ("github", "runner_group_id");
        if github.runner_group_id < 1 {
            self.refuse(
                group,
                github.runner_group_id,
                "is not a runner group id: 1 is the default group; \
                 find others under the organization's Settings → Actions → Runner groups",
            );
        } else if github.runner_scope == RunnerScope::Repository && github.runner_group_id != 1 {
            self.refuse(
                group,
                github.runner_group_id,
                "needs github.runner_scope = \"organization\": \
                 a repository has only the default runner group (1)",
            );
        }
        github
    }

    /// A `[limits]` count, within its rule.
    fn count(&mut self, key: &str, value: Option<i64>, rule: &range::Rule<i64>) -> u32 {
        let n = value.unwrap_or(rule.default);
        if rule.admits(n) {
            return u32::try_from(n).unwrap_or_default();
        }
        self.refuse(
            ("limits", key),
            n,
            format!(
                "is out of range: allowed are {} to {}; {}",
                rule.min, rule.max, rule.why
            ),
        );
        u32::try_from(rule.default).unwrap_or_default()
    }

    /// A `[limits]` amount of money, within its rule.
    fn money(&mut self, key: &str, value: Option<f64>, rule: &range::Money) -> f64 {
        let amount = value.unwrap_or(rule.default);
        if !rule.admits(amount) {
            // `{:?}`: 1e300 stays short, NaN and inf say what they are.
            self.refuse(
                ("limits", key),
                format!("{amount:?}"),
                format!(
                    "is not allowed: write an amount above 0 and at most {}; {}",
                    rule.max, rule.why
                ),
            );
        }
        amount
    }

    /// A `[timeouts]` duration, within its rule.
    fn duration(
        &mut self,
        key: &str,
        value: Option<String>,
        rule: &range::Rule<Duration>,
    ) -> Duration {
        let Some(text) = value else {
            return rule.default;
        };
        let at = ("timeouts", key);
        match duration_from(&text) {
            Ok(d) if rule.admits(d) => return d,
            Err(DurationError::NotADuration) => self.refuse(
                at,
                quoted(&text),
                "is not a duration; write e.g. \"30s\", \"10m\" or \"6h\"",
            ),
            Ok(_) | Err(DurationError::TooLong) => self.refuse(
                at,
                quoted(&text),
                format!(
                    "is out of range: write {} to {}; {}",
                    range::show(rule.min),
                    range::show(rule.max),
                    rule.why
                ),
            ),
        }
        rule.default
    }

    fn runner(&mut self, r: RunnerFile) -> RunnerSettings {
        let version = r.version.unwrap_or_else(|| RUNNER_VERSION_LATEST.into());
        let version_ok = (1..=64).contains(&version.len())
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
        if !version_ok {
            self.refuse(
                ("runner", "version"),
                quoted(&version),
                "is not a release version such as 2.330.0 (at most 64 of 0-9, a-z, ., -, + and _), or \"latest\": it goes into the download URL",
            );
        }
        let runner = RunnerSettings {
            version: if version.eq_ignore_ascii_case(RUNNER_VERSION_LATEST) {
                RunnerVersion::Current
            } else {
                RunnerVersion::Pinned(version.trim_start_matches('v').to_string())
            },
            url_template: r.url_template,
            sha256: r.sha256.unwrap_or_default(),
            preinstalled_path: r
                .preinstalled_path
                .unwrap_or_else(|| RUNNER_PREINSTALLED_PATH.into()),
            allow_unverified: r.allow_unverified.unwrap_or(false),
        };
        // Checked as a machine fills it in.
        if let Some(template) = &runner.url_template {
            let example = template
                .replace("{version}", "2.330.0")
                .replace("{arch}", "x64");
            if let Some(why) = url_problem(&example) {
                self.refuse(
                    ("runner", "url_template"),
                    quoted(template),
                    format!("{why}, once {{version}} and {{arch}} are filled in"),
                );
            }
        }
        // A checksum is of one release's file; the current release changes.
        if runner.version == RunnerVersion::Current && !runner.sha256.is_empty() {
            self.refuse(
                ("runner", "sha256"),
                "{ … }",
                "is the checksum of one release, but runner.version is \"latest\" (the default), which changes: \
                 pin the release these checksums are of, e.g. runner.version = \"2.330.0\" (rigger's default before it \
                 followed GitHub's current release), or remove runner.sha256 to use the checksum GitHub publishes",
            );
        }
        let sums = ("runner", "sha256");
        for (arch, sum) in &runner.sha256 {
            if !matches!(arch.as_str(), "x64" | "arm64") {
                self.refuse(
                    sums,
                    format!("{{ {} = … }}", quoted(arch)),
                    "names an architecture rigger does not run: write x64 or arm64",
                );
            } else if sum.len() != 64 || !sum.chars().all(|c| c.is_ascii_hexdigit()) {
                self.refuse(
                    sums,
                    format!("{{ {arch} = {} }}", quoted(sum)),
                    format!("is not a SHA-256: runner.sha256.{arch} must be 64 hex digits"),
                );
            }
        }
        let path = &runner.preinstalled_path;
        let path_ok = path.is_empty()
            || (path.starts_with('/')
                && path.chars().count() <= MAX_URL_CHARS
                && !path.chars().any(char::is_control));
        if !path_ok {
            self.refuse(
                ("runner", "preinstalled_path"),
                quoted(path),
                format!("must be an absolute path on the machine (at most {MAX_URL_CHARS} characters), or \"\" for none"),
            );
        }
        runner
    }
}

/// Why `url` is not an http(s) address rigger or a machine can call, if it is not.
fn url_problem(url: &str) -> Option<String> {
    if url.chars().count() > MAX_URL_CHARS {
        return Some(format!("is longer than {MAX_URL_CHARS} characters"));
    }
    // The URL parser drops tabs and newlines silently: refuse them first.
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("has a space or a control character in it".into());
    }
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => None,
        _ => Some("is not an http:// or https:// URL with a host".into()),
    }
}

/// Why a duration setting's text is not a duration rigger can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("not a duration such as 30s, 10m, 6h or 1d")]
    NotADuration,
    /// More seconds than a `u64` counts: out of every range.
    #[error("too long to count")]
    TooLong,
}

/// `30s`, `10m`, `6h`, `1d`, or a bare number of seconds; the arithmetic
/// is checked, so `10000000000000000d` is too long, never a wrapped value.
pub fn duration_from(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    // A byte index of an ASCII letter: always a character boundary.
    let (number, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let number = number.trim();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DurationError::NotADuration);
    }
    let unit: u64 = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(DurationError::NotADuration),
    };
    // Only digits: parsing fails only on overflow.
    let n: u64 = number.parse().map_err(|_| DurationError::TooLong)?;
    n.checked_mul(unit)
        .map(Duration::from_secs)
        .ok_or(DurationError::TooLong)
}

/// [`duration_from`], for callers that need only whether it is one.
pub fn parse_duration(text: &str) -> Option<Duration> {
    duration_from(text).ok()
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
            "listen (RIGGER_LISTEN) = \"nowhere\" is not an address",
            "controller_id (RIGGER_CONTROLLER_ID) = \"Has Spaces\" must be",
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
        assert_eq!(s.runner.version, RunnerVersion::Pinned("2.331".into()));
        assert_eq!(s.controller_id, "123");
        assert_eq!(s.github.config_source, ConfigSource::HeadCommit);
        assert_eq!(s.runner.sha256["x64"], sum);
    }

    #[test]
    fn the_runner_release_is_githubs_current_one_unless_pinned() {
        let s = load(None, &env(MINIMAL)).unwrap();
        assert_eq!(s.runner.version, RunnerVersion::Current);
        assert_eq!(s.runner.url_template, None, "GitHub's own file URL");
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("RIGGER_RUNNER_VERSION", "v2.330.0"));
        let s = load(None, &env(&pairs)).unwrap();
        assert_eq!(s.runner.version, RunnerVersion::Pinned("2.330.0".into()));
        // A checksum without a pinned release would check a file that changes.
        let sum = format!("{{ x64 = \"{}\" }}", "ab".repeat(32));
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("RIGGER_RUNNER_SHA256", &sum));
        let err = load(None, &env(&pairs)).unwrap_err().to_string();
        assert!(
            err.contains(
                "runner.sha256 (RIGGER_RUNNER_SHA256) = { … } is the checksum of one release"
            ) && err.contains("runner.version = \"2.330.0\""),
            "{err}"
        );
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
            "{ x64 = \"short\" } is not a SHA-256: runner.sha256.x64 must be 64 hex digits",
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
        // Checked arithmetic: `n * 86_400` once overflowed (and wrapped in release builds).
        assert_eq!(parse_duration("213503982334602d"), None);
        assert_eq!(
            parse_duration("213503982334601d"),
            Some(Duration::from_secs(213_503_982_334_601 * 86_400))
        );
        assert_eq!(
            duration_from("99999999999999999999"),
            Err(DurationError::TooLong)
        );
    }
}
