//! `.cirun.yml`, `.cirun.global.yml` and `.access.yml`: read as `rigger
//! validate` reads a file (parse, render the diagnostics, describe each
//! candidate, JSON) and as the engine reads what GitHub sent (the three
//! files merged, the access rules, the search each candidate sends, the
//! machine's bootstrap), on a tokio worker's stack.

use std::path::Path;

use rigger::bootstrap::{self, BootstrapSpec};
use rigger::cloud::vast::query::{broad_filter, filter_for, search_body};
use rigger::config::model::{CirunConfig, RunnerDef};
use rigger::config::{FileKind, access, labels, parse_file};
use rigger::engine::offers::{diagnose, estimate_for};
use rigger::engine::policy::{self, JobFacts};
use rigger::engine::ports::ConfigFiles;
use rigger::engine::provision::parse_config_files;
use rigger::settings::Secret;

use super::runtime::on_worker_stack;

/// An org `.cirun.global.yml` for the access target to guard, so that its
/// rules meet definitions they can name.
const ORG_FOR_ACCESS: &str = "runners:
  - name: gpu
    cloud: vast_ai
    instance_type: 1xRTX_4090
    labels: [cirun-gpu]
  - name: big
    cloud: vast_ai
    instance_type: 8xH100
    labels: [cirun-big]
";

pub fn cirun_yml(data: &[u8]) {
    check(data, FileKind::Repository);
}

pub fn cirun_global_yml(data: &[u8]) {
    check(data, FileKind::Organization);
}

pub fn access_yml(data: &[u8]) {
    check(data, FileKind::Access);
}

fn check(data: &[u8], kind: FileKind) {
    // Neither reader gets further with bytes that are not UTF-8: `validate`
    // reads files with `read_to_string`, the GitHub client refuses them.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    on_worker_stack(|| {
        as_validate_reads(text, kind);
        as_the_engine_reads(text, kind);
    });
}

fn file_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Repository => ".cirun.yml",
        FileKind::Organization => ".cirun/.cirun.global.yml",
        FileKind::Access => ".cirun/.access.yml",
    }
}

/// What `rigger validate FILE` and `--json` do with it.
fn as_validate_reads(text: &str, kind: FileKind) {
    let parsed = parse_file(Path::new(file_name(kind)), text, kind);
    let _ = parsed.render();
    // Every diagnostic points into the file (at worst just after its last
    // line break, for what is missing at the end), so the caret lands on
    // the text it is about.
    let lines = yaml_lines(text);
    for d in parsed.diagnostics.items() {
        assert!(
            d.location.line <= lines,
            "diagnostic at line {} of a {lines}-line file: {}",
            d.location.line,
            d.message
        );
    }
    let _ = serde_json::to_string(&parsed.diagnostics).expect("diagnostics serialise");
    if let Some(config) = &parsed.config {
        describe_runners(config);
    }
    if let Some(a) = &parsed.access {
        let _ = serde_json::to_string(a).expect("an access config serialises");
        let org = parse_file(Path::new("org"), ORG_FOR_ACCESS, FileKind::Organization);
        let runners = org.config.map(|c| c.runners).unwrap_or_default();
        let _ = access::check_resources(a, &runners).render("access", text);
    }
}

/// Lines as YAML counts them (`\r\n`, `\n` and a lone `\r` each end one),
/// the one after the last line break included.
fn yaml_lines(text: &str) -> usize {
    text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1
}

fn describe_runners(config: &CirunConfig) {
    for r in &config.runners {
        if let Some(v) = &r.vast {
            for c in &v.candidates {
                let _ = c.describe(&v.extra);
                let _ = serde_json::to_value(c).expect("a candidate serialises");
            }
            let _ = serde_json::to_value(&v.extra).expect("extra_config serialises");
        }
    }
}

/// What the engine does with the files GitHub sent for a job.
fn as_the_engine_reads(text: &str, kind: FileKind) {
    let text = Some(text.to_string());
    let files = match kind {
        FileKind::Repository => ConfigFiles {
            repo: text,
            ..ConfigFiles::default()
        },
        FileKind::Organization => ConfigFiles {
            org: text,
            ..ConfigFiles::default()
        },
        FileKind::Access => ConfigFiles {
            org: Some(ORG_FOR_ACCESS.to_string()),
            access: text,
            ..ConfigFiles::default()
        },
    };
    let loaded = parse_config_files(&files);
    let Some(config) = &loaded.config else {
        return;
    };
    for def in &config.runners {
        select_serves(&config.runners, def);
        let access = loaded.access.as_ref();
        let _ = policy::teams_to_check(def, access);
        for pull_request in [false, true] {
            let facts = JobFacts {
                repo: "octo/ml".into(),
                pull_request,
                actor: "octocat".into(),
                actor_teams: vec!["gpu-users".into()],
                actor_role: Some("write".into()),
            };
            let _ = policy::check_access(def, access, &facts);
        }
        search_and_boot(def, config);
    }
}

/// A job asking for exactly a definition's labels gets a definition: that
/// one, or one before it with the same labels (the first match wins).
fn select_serves(runners: &[RunnerDef], def: &RunnerDef) {
    // A label with `--` is refused by the checks, and `--` starts the suffix.
    if !labels::is_rigger_job(&def.labels) || def.labels.iter().any(|l| l.contains("--")) {
        return;
    }
    let chosen = labels::select(runners, &def.labels);
    assert!(
        chosen.is_some(),
        "a job asking for {:?} gets no runner, yet `{}` has those labels",
        def.labels,
        def.name
    );
}

/// The searches the provisioner sends for each candidate, the diagnosis of
/// an empty market, and the bootstrap each machine would get.
fn search_and_boot(def: &RunnerDef, config: &CirunConfig) {
    let Some(v) = &def.vast else { return };
    for c in &v.candidates {
        let filter = filter_for(c, &v.extra, v.cpu_arch, None);
        let _ = search_body(&filter);
        let _ = search_body(&broad_filter(&filter));
        let estimate = estimate_for(c, &v.extra, 1.0);
        let _ = diagnose(&filter, &estimate, &[]);
    }
    let rendered = bootstrap::render(&BootstrapSpec {
        vm: v.extra.vm,
        vast_url: "https://console.vast.ai".into(),
        runner_url: "https://example.invalid/runner-{arch}.tar.gz".into(),
        runner_arch: "x64".into(),
        runner_sha256: None,
        allow_unverified: false,
        preinstalled_runner: None,
        gpu_count: v.candidates.first().map_or(1, |c| c.gpu_count),
        gpu_models: vec!["RTX 4090".into()],
        idle_timeout_secs: 600,
        jit_config: Secret::new("jit"),
        setup_info: config.setup_info.clone(),
        env_vars: v.extra.env_vars.clone(),
        callback: None,
    });
    let _ = format!("{rendered:?}");
}
