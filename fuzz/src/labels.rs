//! Labels: a job's `runs-on` (from a webhook, so anyone who can push a
//! workflow writes them) against runner definitions' labels, through every
//! function of `config::labels`, compared with the rule as the README
//! states it; and the names rigger reads back from Vast.ai and GitHub.
//!
//! Input: one label a line; the job's labels, an empty line, the
//! definition's labels.

use std::sync::OnceLock;

use rigger::config::model::{RunnerDef, cpu_arch_for};
use rigger::config::{labels, parse_repo_file};
use rigger::engine::names;

/// The example `.cirun.yml`'s runners, parsed once.
pub fn example_runners() -> &'static [RunnerDef] {
    static RUNNERS: OnceLock<Vec<RunnerDef>> = OnceLock::new();
    RUNNERS.get_or_init(|| {
        let text = include_str!("../../examples/.cirun.yml");
        let parsed = parse_repo_file(std::path::Path::new(".cirun.yml"), text);
        parsed.config.map(|c| c.runners).unwrap_or_default()
    })
}

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let job: Vec<String> = lines
        .by_ref()
        .take_while(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let def: Vec<String> = lines.map(str::to_string).collect();
    for l in job.iter().chain(&def) {
        suffix(l);
        rigger_names(l);
    }
    assert_eq!(
        labels::is_rigger_job(&job),
        job.iter().any(|l| is_cirun(labels::strip_suffix(l))),
        "is_rigger_job({job:?})"
    );
    assert_eq!(
        labels::matches(&def, &job),
        matches_as_documented(&def, &job),
        "matches({def:?}, {job:?})"
    );
    registration(&def, &job);
    for shared in labels::overlap(&def, &job) {
        assert!(is_cirun(&shared) && contains(&def, &shared) && contains(&job, &shared));
    }
    if let Some(chosen) = labels::select(example_runners(), &job) {
        assert!(labels::matches(&chosen.labels, &job));
    }
    let _ = cpu_arch_for(&def);
}

/// The suffix is what follows the first `--`; what is left is a prefix.
fn suffix(label: &str) {
    let stripped = labels::strip_suffix(label);
    assert!(label.starts_with(stripped) && !stripped.contains("--"));
}

fn is_cirun(label: &str) -> bool {
    label.to_ascii_lowercase().starts_with(labels::PREFIX)
}

fn contains(list: &[String], label: &str) -> bool {
    list.iter().any(|l| l.eq_ignore_ascii_case(label))
}

/// The README's rule: every suffix-stripped job label that is not one of
/// GitHub's implicit labels is one of the definition's, ignoring case.
fn matches_as_documented(def: &[String], job: &[String]) -> bool {
    job.iter()
        .map(|l| labels::strip_suffix(l))
        .filter(|l| !labels::IMPLICIT.iter().any(|i| i.eq_ignore_ascii_case(l)))
        .all(|l| contains(def, l))
}

/// GitHub gives a job to a runner holding all its labels: the registration
/// must hold every one of the job's (suffix and all), once.
fn registration(def: &[String], job: &[String]) {
    let registered = labels::registration_labels(def, job, "linux", "x64");
    for l in job.iter().chain(def).filter(|l| !l.is_empty()) {
        assert!(
            contains(&registered, l),
            "{l:?} missing from {registered:?}"
        );
    }
    for (i, l) in registered.iter().enumerate() {
        assert!(
            !contains(&registered[..i], l),
            "{l:?} twice in {registered:?}"
        );
    }
}

/// Vast.ai labels and runner names are read back from the APIs: rigger
/// claims only what it made (I1), whatever the text.
fn rigger_names(text: &str) {
    for controller in ["prod", "ci-2"] {
        if let Some((job, instance)) = names::parse_label(controller, text) {
            assert!(text.starts_with(&names::label_prefix(controller)));
            let _ = names::instance_label(controller, job, &instance);
        }
        if names::is_our_runner(controller, text) {
            assert!(text.starts_with(&names::runner_prefix(controller)));
        }
    }
}
