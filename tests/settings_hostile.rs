//! Absurd and hostile settings: every value out of its range is refused at
//! start-up naming the key, where the value came from and what is
//! allowed; no rigger.toml (deeply nested, huge, endless, not text) panics,
//! hangs or exhausts the loader; and `rigger serve` exits with the message.
//!
//! The binary's allocator counts each thread's live bytes, so that one
//! test can measure what the loader costs while others run beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rigger::settings::{
    self, DurationError, MAX_FILE_BYTES, ReadError, Settings, SettingsError, SettingsFile, Sources,
};

// ---- a per-thread counting allocator ----

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: a thread being torn down has no counters left.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn size(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(size(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        note(-size(layout.size()));
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            note(size(new_size) - size(layout.size()));
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---- helpers ----

const PATH: &str = "/etc/rigger/rigger.toml";

const MINIMAL: &[(&str, &str)] = &[
    ("RIGGER_GITHUB_APP_ID", "123"),
    ("RIGGER_GITHUB_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----x"),
    ("RIGGER_WEBHOOK_SECRET", "hook-secret"),
    ("RIGGER_VAST_API_KEY", "vast-key-123"),
];

fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    MINIMAL
        .iter()
        .chain(pairs)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// No secret file exists: the settings under test name none they need.
fn no_files(_: &Path) -> Result<String, ReadError> {
    Err(ReadError::Io(std::io::ErrorKind::NotFound.into()))
}

/// The pure loader on `text` (as rigger.toml at [`PATH`]) and `env` on top
/// of the minimal secrets.
fn load(text: Option<&str>, env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let env = env_of(env);
    settings::from_sources(&Sources {
        file: text.map(|text| SettingsFile {
            path: Path::new(PATH),
            text,
        }),
        env: &|k| env.get(k).cloned(),
        read_file: &no_files,
    })
}

/// An error lists its problems one to a line, none with a control
/// character (a newline inside one, an escape sequence for the terminal).
fn assert_well_formed(err: &str) {
    let mut lines = err.lines();
    assert_eq!(
        lines.next(),
        Some("rigger's settings need fixing:"),
        "{err}"
    );
    for line in lines {
        assert!(
            line.starts_with("  - "),
            "not a problem of its own: {line:?}"
        );
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.chars().count() < 1000, "{} characters", line.len());
    }
}

fn refused(text: Option<&str>, env: &[(&str, &str)]) -> String {
    refused_without(text, env, "")
}

/// [`refused`] with the minimal variable `unset` left out, so the file's
/// value for its key is the one read.
fn refused_without(text: Option<&str>, env: &[(&str, &str)], unset: &str) -> String {
    let env: Vec<(&str, &str)> = MINIMAL
        .iter()
        .map(|(k, v)| (*k, if *k == unset { "" } else { *v }))
        .chain(env.iter().copied())
        .collect();
    match load(text, &env) {
        Ok(s) => panic!("accepted {text:?} {env:?}: {s:?}"),
        Err(e) => {
            let err = e.to_string();
            assert_well_formed(&err);
            err
        }
    }
}

/// `key = value` in its section, as a file holds it.
fn file_with(section: &str, key: &str, value: &str) -> String {
    if section.is_empty() {
        format!("{key} = {value}\n")
    } else {
        format!("[{section}]\n{key} = {value}\n")
    }
}

fn dotted(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// One absurd value, as TOML in the file, and what the message must say
/// about it.
struct Absurd {
    section: &'static str,
    key: &'static str,
    toml: &'static str,
    says: &'static str,
}

impl Absurd {
    /// The value as its variable holds it: a string without its quotes,
    /// anything else as written.
    fn var(&self) -> &'static str {
        self.toml
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(self.toml)
    }
}

const fn absurd(
    section: &'static str,
    key: &'static str,
    toml: &'static str,
    says: &'static str,
) -> Absurd {
    Absurd {
        section,
        key,
        toml,
        says,
    }
}

const ABSURD: &[Absurd] = &[
    // Durations: one that used to wrap negative and fail every job at
    // once, ones whose arithmetic overflows, and ones merely out of range.
    absurd(
        "timeouts",
        "queue",
        "\"10000000000000000\"",
        "is out of range: write 1m to 7d",
    ),
    absurd(
        "timeouts",
        "queue",
        "\"18446744073709551615d\"",
        "is out of range: write 1m to 7d",
    ),
    absurd(
        "timeouts",
        "idle",
        "\"99999999999999999999999\"",
        "is out of range: write 1m to 1d",
    ),
    absurd(
        "timeouts",
        "reconcile_interval",
        "\"0s\"",
        "is out of range: write 1s to 1h",
    ),
    absurd(
        "timeouts",
        "reconcile_interval",
        "\"2h\"",
        "is out of range: write 1s to 1h",
    ),
    absurd(
        "timeouts",
        "create",
        "\"0\"",
        "is out of range: write 1s to 1h",
    ),
    absurd(
        "timeouts",
        "bootstrap",
        "\"30s\"",
        "is out of range: write 1m to 1d",
    ),
    absurd(
        "timeouts",
        "job_quiet",
        "\"5s\"",
        "is out of range: write 10s to 1d",
    ),
    absurd(
        "timeouts",
        "max_lifetime",
        "\"8d\"",
        "is out of range: write 1m to 7d",
    ),
    absurd("timeouts", "idle", "\"-5m\"", "is not a duration"),
    absurd("timeouts", "queue", "\"1.5h\"", "is not a duration"),
    // Counts.
    absurd(
        "limits",
        "max_instances",
        "0",
        "is out of range: allowed are 1 to 100000",
    ),
    absurd(
        "limits",
        "max_instances",
        "-1",
        "is out of range: allowed are 1 to 100000",
    ),
    absurd(
        "limits",
        "max_instances",
        "4294967296",
        "is out of range: allowed are 1 to 100000",
    ),
    absurd(
        "limits",
        "max_instances_per_repo",
        "9223372036854775807",
        "is out of range: allowed are 1 to 100000",
    ),
    absurd(
        "limits",
        "default_job_minutes",
        "0",
        "is out of range: allowed are 1 to 7200",
    ),
    absurd(
        "limits",
        "default_job_minutes",
        "7201",
        "is out of range: allowed are 1 to 7200",
    ),
    // Money: NaN and infinity would make every comparison false and the
    // limit vanish.
    absurd(
        "limits",
        "max_dph",
        "nan",
        "= NaN is not allowed: write an amount above 0 and at most 1000",
    ),
    absurd("limits", "max_dph", "inf", "= inf is not allowed"),
    absurd("limits", "max_dph", "-inf", "= -inf is not allowed"),
    absurd("limits", "max_dph", "-1.0", "= -1.0 is not allowed"),
    absurd("limits", "max_dph", "0", "= 0.0 is not allowed"),
    absurd("limits", "max_dph", "1e300", "= 1e300 is not allowed"),
    absurd(
        "limits",
        "max_job_cost",
        "nan",
        "is not allowed: write an amount above 0 and at most 100000",
    ),
    absurd(
        "limits",
        "daily_budget",
        "inf",
        "is not allowed: write an amount above 0 and at most 1000000",
    ),
    // Ids.
    absurd("github", "app_id", "0", "is not an App id"),
    absurd("github", "app_id", "-5", "is not an App id"),
    absurd(
        "github",
        "runner_group_id",
        "-1",
        "is not a runner group id",
    ),
    // Addresses and URLs.
    absurd("", "listen", "\"0.0.0.0:99999\"", "is not an address"),
    absurd("", "listen", "\"localhost:8080\"", "is not an address"),
    absurd(
        "",
        "public_url",
        "\"http://\"",
        "is not an http:// or https:// URL with a host",
    ),
    absurd(
        "",
        "public_url",
        "\"https://rigger.example.com/?x=1\"",
        "has a ?query or #fragment",
    ),
    absurd(
        "github",
        "api_url",
        "\"javascript:alert(1)\"",
        "is not an http:// or https:// URL with a host",
    ),
    absurd(
        "github",
        "api_url",
        "\"https://api.git hub.com\"",
        "has a space or a control character",
    ),
    absurd(
        "vast",
        "api_url",
        "\"ftp://console.vast.ai\"",
        "is not an http:// or https:// URL",
    ),
    absurd(
        "",
        "database_url",
        "\"mysql://h/db\"",
        "is neither sqlite://PATH nor postgres",
    ),
    absurd("", "controller_id", "\"UPPER\"", "must be 1–20 characters"),
    // The runner release.
    absurd(
        "runner",
        "version",
        "\"2.330.0; rm -rf /\"",
        "is not a release version",
    ),
    absurd(
        "runner",
        "url_template",
        "\"file:///tmp/{arch}.tgz\"",
        "URL with a host, once {version} and {arch} are filled in",
    ),
    absurd(
        "runner",
        "preinstalled_path",
        "\"actions-runner\"",
        "must be an absolute path",
    ),
    absurd(
        "runner",
        "sha256",
        "{ x86_64 = \"ab\" }",
        "names an architecture rigger does not run: write x64 or arm64",
    ),
];

#[test]
fn every_absurd_value_is_refused_naming_the_key_where_it_came_from_and_what_is_allowed() {
    for case in ABSURD {
        let key = dotted(case.section, case.key);
        let var = settings::env_var(case.section, case.key);

        let text = file_with(case.section, case.key, case.toml);
        let err = refused_without(Some(&text), &[], &var);
        for says in [format!("{key} ({PATH}) = "), case.says.to_string()] {
            assert!(err.contains(&says), "in the file, {says:?} not in:\n{err}");
        }

        let err = refused(None, &[(&var, case.var())]);
        for says in [format!("{key} ({var}) = "), case.says.to_string()] {
            assert!(err.contains(&says), "from {var}, {says:?} not in:\n{err}");
        }
    }
}

#[test]
fn every_range_is_given_with_its_reason() {
    let err = refused(None, &[("RIGGER_TIMEOUTS_RECONCILE_INTERVAL", "0s")]);
    assert!(err.contains("rate limits"), "{err}");
    let err = refused(None, &[("RIGGER_LIMITS_MAX_DPH", "nan")]);
    assert!(err.contains("$/hour for one machine"), "{err}");
}

#[test]
fn the_values_at_the_ends_of_each_range_are_accepted() {
    let s = load(
        Some(
            "[timeouts]\nreconcile_interval = \"1s\"\ncreate = \"1h\"\nbootstrap = \"1m\"\nidle = \"1d\"\n\
             job_quiet = \"10s\"\nmax_lifetime = \"7d\"\nqueue = \"168h\"\n\
             [limits]\nmax_instances = 100000\nmax_instances_per_repo = 1\nmax_dph = 1000\n\
             max_job_cost = 0.01\ndaily_budget = 1e6\ndefault_job_minutes = 7200\n",
        ),
        &[("RIGGER_LISTEN", "127.0.0.1:0")],
    )
    .unwrap();
    assert_eq!(s.timeouts.queue, Duration::from_secs(7 * 86_400));
    assert_eq!(s.timeouts.reconcile_interval, Duration::from_secs(1));
    assert_eq!(s.limits.max_instances, 100_000);
    assert_eq!(s.limits.daily_budget, 1e6);
    assert_eq!(s.listen, "127.0.0.1:0");
}

#[test]
fn all_problems_are_reported_together() {
    let text = "listen = [1, 2]\ncontroller_id = \"Has Spaces\"\nnot_a_setting = 1\n\
                [limits]\nmax_instances = \"many\"\nmax_dph = nan\n\
                [timeouts]\nqueue = \"10000000000000000\"\nidle = 600\n\
                [github]\napp_id = \"one\"\n";
    let err = refused(
        Some(text),
        &[
            ("RIGGER_TIMEOUTS_CREATE", "forever"),
            ("RIGGER_LIMITS_DAILY_BUDGET", "inf"),
            ("RIGGER_GITHUB_APP_ID", ""),
        ],
    );
    for says in [
        // Of the wrong kind in the file, each named.
        "listen (/etc/rigger/rigger.toml): invalid type: sequence",
        "not_a_setting (/etc/rigger/rigger.toml): unknown field `not_a_setting`",
        "limits.max_instances (/etc/rigger/rigger.toml): invalid type: string \"many\"",
        "timeouts.idle (/etc/rigger/rigger.toml): invalid type: integer `600`, expected a string",
        "github.app_id (/etc/rigger/rigger.toml): invalid type: string \"one\"",
        // Of the right kind but absurd.
        "controller_id (/etc/rigger/rigger.toml) = \"Has Spaces\"",
        "limits.max_dph (/etc/rigger/rigger.toml) = NaN",
        "timeouts.queue (/etc/rigger/rigger.toml) = \"10000000000000000\" is out of range",
        // From the environment.
        "timeouts.create (RIGGER_TIMEOUTS_CREATE) = \"forever\" is not a duration",
        "limits.daily_budget (RIGGER_LIMITS_DAILY_BUDGET) = inf is not allowed",
    ] {
        assert!(err.contains(says), "{says:?} not in:\n{err}");
    }
    // An app id of the wrong kind is not also called missing.
    assert!(!err.contains("github.app_id is missing"), "{err}");
}

#[test]
fn a_garbage_file_lists_the_first_problems_and_counts_the_rest() {
    let text: String = (0..1000).map(|i| format!("junk_{i} = {i}\n")).collect();
    let err = refused(Some(&text), &[]);
    assert_eq!(
        err.lines().filter(|l| l.contains("unknown field")).count(),
        40
    );
    assert!(err.contains("… and 960 more"), "{err}");
}

#[test]
fn durations_overflow_into_an_error_never_a_wrapped_value() {
    assert_eq!(
        settings::duration_from("18446744073709551615d"),
        Err(DurationError::TooLong)
    );
    assert_eq!(
        settings::duration_from("99999999999999999999999"),
        Err(DurationError::TooLong)
    );
    assert_eq!(
        settings::duration_from("10000000000000000"),
        Ok(Duration::from_secs(10_000_000_000_000_000))
    );
    assert_eq!(
        settings::duration_from("+5s"),
        Err(DurationError::NotADuration)
    );
    assert_eq!(
        settings::duration_from("ü5s"),
        Err(DurationError::NotADuration)
    );
    assert_eq!(
        settings::duration_from("5ü"),
        Err(DurationError::NotADuration)
    );
    assert_eq!(
        settings::duration_from(""),
        Err(DurationError::NotADuration)
    );
    assert_eq!(settings::parse_duration("18446744073709551615d"), None);
}

// ---- hostile rigger.toml ----

/// `f` on a thread with a 2 MiB stack (what a small container's main
/// thread may have), with the CPU time and the most bytes it had live.
fn measured<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (T, Duration, usize) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let start = (cpu_time(), Instant::now());
            LIVE.with(|l| l.set(0));
            PEAK.with(|p| p.set(0));
            let out = f();
            let peak = usize::try_from(PEAK.with(Cell::get)).unwrap_or(0);
            let spent = match (start.0, cpu_time()) {
                (Some(a), Some(b)) => b.saturating_sub(a),
                // No per-thread CPU clock here: wall time, which only
                // overstates it.
                _ => start.1.elapsed(),
            };
            (out, spent, peak)
        })
        .unwrap()
        .join()
        .expect("the loader panicked or overflowed its stack")
}

/// This thread's CPU time, where Linux says it (`schedstat`, in ns).
fn cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn load_owned(text: String, env: Vec<(String, String)>) -> Result<Settings, SettingsError> {
    let env: HashMap<String, String> = MINIMAL
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(env)
        .collect();
    settings::from_sources(&Sources {
        file: Some(SettingsFile {
            path: Path::new(PATH),
            text: &text,
        }),
        env: &|k| env.get(k).cloned(),
        read_file: &no_files,
    })
}

/// Texts built to hurt a parser: deep nesting of every kind, long keys,
/// many tables, huge strings and numbers, each some `n` bytes.
fn hostile_texts(n: usize) -> Vec<(&'static str, String)> {
    let times = |s: &str| s.repeat(n / s.len());
    // At most `n` bytes, cut by characters.
    let fit = |s: String| -> String {
        s.char_indices()
            .take_while(|(i, c)| i + c.len_utf8() <= n)
            .map(|(_, c)| c)
            .collect()
    };
    let texts = vec![
        ("[[[[ headers", times("[")),
        ("open arrays", format!("a = {}", times("["))),
        (
            "closed arrays",
            format!("a = {}{}", "[".repeat(n / 2), "]".repeat(n / 2)),
        ),
        ("inline tables", format!("a = {}", times("{b="))),
        ("dotted key", format!("{}=1", times("a."))),
        ("dotted header", format!("[{}]", times("a."))),
        (
            "many tables",
            (0..n / 8).map(|i| format!("[t{i}]\n")).collect(),
        ),
        ("arrays of tables", times("[[t]]\n")),
        ("long array", format!("a = [{}]", times("1,"))),
        (
            "huge string",
            format!("controller_id = \"{}\"", "x".repeat(n)),
        ),
        ("huge key", format!("{} = 1", "k".repeat(n))),
        (
            "huge integer",
            format!("[limits]\nmax_instances = {}", "9".repeat(n)),
        ),
        (
            "huge float",
            format!("[limits]\nmax_dph = 1e{}", "9".repeat(n)),
        ),
        ("one long line", format!("a = 1 {}", "y".repeat(n))),
        ("garbage", times("\u{0}\u{7f}ü\"'\\")),
        ("many sums", {
            let sums: String = (0..n / 12).map(|i| format!("a{i}=\"\",")).collect();
            format!("[runner]\nsha256 = {{{}}}", sums.trim_end_matches(','))
        }),
        ("comments", times("# ü a comment\n")),
    ];
    texts.into_iter().map(|(name, t)| (name, fit(t))).collect()
}

#[test]
fn hostile_files_are_refused_with_a_short_message() {
    for (name, text) in hostile_texts(MAX_FILE_BYTES) {
        assert!(text.len() <= MAX_FILE_BYTES, "{name}");
        let (answer, spent, peak) = measured(move || load_owned(text, Vec::new()).map(drop));
        println!("{name}: {spent:?}, {} KiB", peak / 1024);
        if name == "comments" {
            assert!(answer.is_ok(), "{name}: {answer:?}");
            continue;
        }
        let err = answer.expect_err(name).to_string();
        assert!(
            err.len() < 16 * 1024,
            "{name}: a {} byte message",
            err.len()
        );
        assert_well_formed(&err);
    }
    let err = refused(Some(&format!("a = {}", "[".repeat(100_000))), &[]);
    assert!(
        err.contains("/etc/rigger/rigger.toml is not valid TOML at line 1, column"),
        "{err}"
    );
}

#[test]
fn a_file_larger_than_the_bound_is_refused_before_it_is_parsed() {
    let comment = "# a line of comment that says nothing at all, again\n";
    let mut text = comment.repeat(MAX_FILE_BYTES / comment.len());
    text.push_str(&"#".repeat(MAX_FILE_BYTES - text.len() - 1));
    text.push('\n');
    assert_eq!(text.len(), MAX_FILE_BYTES);
    assert!(load(Some(&text), &[]).is_ok(), "exactly the bound is read");
    text.push('\n');
    let err = refused(Some(&text), &[]);
    assert!(
        err.contains("/etc/rigger/rigger.toml is larger than 256 KiB"),
        "{err}"
    );
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rigger-hostile-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 4 GiB file that takes no disk (sparse): only its first bytes are read.
fn huge_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("huge.toml");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    path
}

#[test]
fn a_multi_gigabyte_or_endless_file_is_refused_in_a_moment() {
    let dir = temp_dir("huge");
    let env = env_of(&[]);
    let mut files = vec![huge_file(&dir)];
    if cfg!(unix) {
        files.push("/dev/zero".into());
    }
    for file in files {
        let started = Instant::now();
        let err = settings::load(Some(&file), &|k| env.get(k).cloned())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{} is larger than 256 KiB", file.display())),
            "{err}"
        );
        // Reading 4 GiB would take seconds at best; the bound is 256 KiB.
        assert!(started.elapsed() < Duration::from_secs(5), "{file:?}");
        let err = settings::load_database_url(Some(&file), &|_| None).unwrap_err();
        assert!(err.to_string().contains("larger than 256 KiB"), "{err}");
    }
    let not_text = dir.join("binary.toml");
    std::fs::write(&not_text, [b'a', b' ', b'=', b' ', 0xff, 0xfe]).unwrap();
    let err = settings::load(Some(&not_text), &|k| env.get(k).cloned()).unwrap_err();
    assert!(err.to_string().contains("it is not UTF-8 text"), "{err}");
}

#[test]
fn secret_files_are_read_to_a_bound_and_never_shown() {
    let dir = temp_dir("secrets");
    let many = dir.join("webhook-secrets");
    let secrets: Vec<String> = (0..11).map(|i| format!("rotating-secret-{i}")).collect();
    std::fs::write(&many, secrets.join("\n")).unwrap();
    let mut pairs = vec![("RIGGER_GITHUB_WEBHOOK_SECRET_FILE", many.to_str().unwrap())];
    if cfg!(unix) {
        pairs.push(("RIGGER_GITHUB_PRIVATE_KEY_FILE", "/dev/zero"));
    }
    let env: HashMap<String, String> = env_of(&[])
        .into_iter()
        .filter(|(k, _)| k != "RIGGER_WEBHOOK_SECRET" && k != "RIGGER_GITHUB_PRIVATE_KEY")
        .chain(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let err = settings::load(None, &|k| env.get(k).cloned())
        .unwrap_err()
        .to_string();
    assert!(err.contains("the webhook secret holds 11 secrets"), "{err}");
    assert!(!err.contains("rotating-secret"), "a secret leaked: {err}");
    if cfg!(unix) {
        assert!(
            err.contains("cannot read /dev/zero (it is larger than 64 KiB)"),
            "{err}"
        );
    }
}

/// A small deterministic generator (xorshift): the same cases every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

const PIECES: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    "\"",
    "'",
    "\"\"\"",
    ".",
    ",",
    "\n",
    "#",
    "\\",
    "ü",
    "9",
    "1e999",
    "nan",
    "inf",
    "-",
    "true",
    "timeouts",
    "limits",
    "queue",
    "max_dph",
    "\"10000000000000000\"",
    "x = 1\n",
    "[runner]\n",
    "sha256 = {",
    "\u{0}",
    "\r\n",
];

const VARS: &[&str] = &[
    "RIGGER_TIMEOUTS_QUEUE",
    "RIGGER_LIMITS_MAX_DPH",
    "RIGGER_LIMITS_MAX_INSTANCES",
    "RIGGER_LISTEN",
    "RIGGER_PUBLIC_URL",
    "RIGGER_RUNNER_SHA256",
    "RIGGER_GITHUB_APP_ID",
];

/// Values of every TOML kind, and the absurd ones of each.
const VALUES: &[&str] = &[
    "\"10000000000000000\"",
    "\"99999999999999999999d\"",
    "\"0s\"",
    "\"24h\"",
    "\"1d\"",
    "nan",
    "-inf",
    "1e308",
    "-0.0",
    "9223372036854775807",
    "-9223372036854775808",
    "0x7fffffff",
    "0o777",
    "1_000",
    "0",
    "\"\"",
    "\"ü\"",
    "\"\\u0000\"",
    "[]",
    "[[]]",
    "{}",
    "{ x64 = 1 }",
    "{ arm64 = \"ab\" }",
    "true",
    "1979-05-27T07:32:00Z",
    "\"http://\"",
    "\"https://h/?q\"",
    "'''multi\nline'''",
    "\"127.0.0.1:0\"",
    "\"/relative\"",
];

/// A variable's value: a few pieces of syntax, or a value of some kind.
fn random_env(rng: &mut Rng) -> Vec<(String, String)> {
    (0..rng.below(3))
        .map(|_| {
            let value: String = match rng.below(2) {
                0 => (0..1 + rng.below(8)).map(|_| rng.pick(PIECES)).collect(),
                _ => rng.pick(VALUES).trim_matches('"').to_string(),
            };
            (rng.pick(VARS).to_string(), value)
        })
        .collect()
}

/// The documented example with its text mangled at random: pieces of TOML
/// syntax put in, text cut out or copied elsewhere.
fn mangled(rng: &mut Rng, example: &str) -> (String, Vec<(String, String)>) {
    let mut chars: Vec<char> = example.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(3) {
            0 => {
                let end = (at + rng.below(50)).min(chars.len());
                chars.drain(at..end);
            }
            1 => {
                // Now and then a long run: deep nesting, long keys.
                let most = if rng.below(10) == 0 { 2000 } else { 3 };
                let piece = rng.pick(PIECES).repeat(1 + rng.below(most));
                chars.splice(at..at, piece.chars());
            }
            _ => {
                // A copy of some of the text elsewhere: keys twice, tables twice.
                let from = rng.below(chars.len() + 1);
                let end = (from + rng.below(400)).min(chars.len());
                let copy: Vec<char> = chars[from..end].to_vec();
                chars.splice(at..at, copy);
            }
        }
    }
    chars.truncate(64 * 1024 / 4);
    (chars.into_iter().collect(), random_env(rng))
}

/// The documented example, still TOML, with values of the wrong kind or
/// out of range in place of some of its own, and some lines left out.
fn revalued(rng: &mut Rng, example: &str) -> (String, Vec<(String, String)>) {
    let mut text = String::new();
    for line in example.lines() {
        match (line.split_once(" = "), rng.below(6)) {
            (Some((key, _)), 0) => text.push_str(&format!("{key} = {}\n", rng.pick(VALUES))),
            (Some(_), 1) => {}
            _ => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    (text, random_env(rng))
}

#[test]
fn any_input_up_to_64_kib_is_answered_within_a_second_and_64_mib() {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rigger.toml"))
            .unwrap();
    let mut cases: Vec<(String, Vec<(String, String)>)> = hostile_texts(64 * 1024)
        .into_iter()
        .map(|(_, text)| (text, Vec::new()))
        .collect();
    cases.push((example.clone(), Vec::new()));
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    cases.extend((0..150).map(|_| mangled(&mut rng, &example)));
    cases.extend((0..150).map(|_| revalued(&mut rng, &example)));

    let (mut slowest, mut largest) = (Duration::ZERO, 0usize);
    for (text, env) in cases {
        assert!(text.len() <= 64 * 1024);
        let shown = rigger::text::clip(&text, 300).into_owned();
        let (answer, spent, peak) =
            measured(move || load_owned(text, env).err().map(|e| e.to_string()));
        if let Some(err) = answer {
            assert!(
                err.len() < 64 * 1024,
                "a {} byte message for {shown:?}",
                err.len()
            );
            assert_well_formed(&err);
        }
        assert!(spent < Duration::from_secs(1), "{spent:?} for {shown:?}");
        assert!(peak < 64 << 20, "{peak} bytes for {shown:?}");
        slowest = slowest.max(spent);
        largest = largest.max(peak);
    }
    println!("slowest {slowest:?}, most memory {} KiB", largest / 1024);
}

// ---- rigger serve ----

/// `rigger serve` with nothing but `env` (and `args`): its exit status and
/// what it printed.
fn serve(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rigger"))
        .arg("serve")
        .args(args)
        .env_clear()
        .envs(MINIMAL.iter().copied().chain(env.iter().copied()))
        .output()
        .unwrap();
    let printed =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status, printed)
}

fn assert_refused_at_start(status: std::process::ExitStatus, printed: &str, says: &str) {
    // A code of its own: not killed by a signal, not a panic's 101.
    let code = status.code().expect("exited, not killed");
    assert!(code != 0 && code != 101, "exit code {code}: {printed}");
    assert!(!printed.contains("panicked"), "{printed}");
    assert!(
        printed.contains("rigger's settings need fixing"),
        "{printed}"
    );
    assert!(printed.contains(says), "{says:?} not in: {printed}");
}

#[test]
fn rigger_serve_exits_with_the_message_for_an_absurd_setting() {
    let (status, printed) = serve(&[], &[("RIGGER_TIMEOUTS_QUEUE", "10000000000000000")]);
    assert_refused_at_start(
        status,
        &printed,
        "timeouts.queue (RIGGER_TIMEOUTS_QUEUE) = \"10000000000000000\" is out of range",
    );
    assert!(
        !printed.contains("vast-key-123"),
        "a secret leaked: {printed}"
    );

    let dir = temp_dir("serve");
    let deep = dir.join("deep.toml");
    std::fs::write(&deep, "[".repeat(100_000)).unwrap();
    let (status, printed) = serve(&["--config", deep.to_str().unwrap()], &[]);
    assert_refused_at_start(status, &printed, "is not valid TOML at line 1");
    assert!(printed.len() < 4096, "{} bytes printed", printed.len());

    let huge = huge_file(&dir);
    let (status, printed) = serve(&["--config", huge.to_str().unwrap()], &[]);
    assert_refused_at_start(status, &printed, "is larger than 256 KiB");
}
