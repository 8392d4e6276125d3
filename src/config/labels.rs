//! How a job's `runs-on` labels pick a runner definition.
//!
//! - A `runs-on` label is split at its first `--`: what follows is a suffix
//!   (usually `${{ github.run_id }}`) that makes the runner unique to one run
//!   and is ignored for matching.
//! - A job is rigger's when at least one suffix-stripped label starts with
//!   `cirun-`.
//! - A definition matches when the job's suffix-stripped labels, less
//!   GitHub's implicit ones (`self-hosted`, OS, architecture), are all among
//!   the definition's labels. Labels compare case-insensitively, as on GitHub.
//! - Several matches: the first definition in file order wins.

use std::collections::HashSet;

use super::model::RunnerDef;

/// The prefix that marks a label as Cirun's (and so rigger's).
pub const PREFIX: &str = "cirun-";

/// Labels GitHub gives every self-hosted runner, which a job may list
/// without a definition naming them.
pub const IMPLICIT: &[&str] = &[
    "self-hosted",
    "linux",
    "windows",
    "macos",
    "x64",
    "arm",
    "arm64",
];

/// `cirun-gpu--123` → `cirun-gpu`; a label without `--` is returned whole.
pub fn strip_suffix(label: &str) -> &str {
    match label.find("--") {
        Some(i) => &label[..i],
        None => label,
    }
}

pub fn is_implicit(label: &str) -> bool {
    IMPLICIT.iter().any(|i| i.eq_ignore_ascii_case(label))
}

/// Whether a job with these `runs-on` labels is for rigger at all.
pub fn is_rigger_job<S: AsRef<str>>(job_labels: &[S]) -> bool {
    job_labels
        .iter()
        .any(|l| has_prefix(strip_suffix(l.as_ref())))
}

/// Whether a label starts with `cirun-`, in any case.
pub fn has_prefix(label: &str) -> bool {
    crate::text::starts_with_ignore_ascii_case(label, PREFIX)
}

/// Whether a definition with `def_labels` can serve a job with `job_labels`.
pub fn matches<S: AsRef<str>, T: AsRef<str>>(def_labels: &[S], job_labels: &[T]) -> bool {
    has_all(def_labels, &wanted(job_labels))
}

/// Whether a runner registered for a job with `have` labels can run a job
/// with `want` labels: each of `want`, as it is (suffix and all), is among
/// `have`, case-insensitively, as GitHub matches them. A runner also
/// carries its definition's labels, so this may say no where GitHub would
/// say yes; never the other way.
pub fn runner_for_covers<S: AsRef<str>, T: AsRef<str>>(have: &[S], want: &[T]) -> bool {
    want.iter().all(|w| {
        have.iter()
            .any(|h| h.as_ref().eq_ignore_ascii_case(w.as_ref()))
    })
}

/// The labels a definition must have for a job: suffix-stripped, without
/// the implicit ones, each once (case-insensitively). Worked out once per
/// job, not once per definition: a label can be as long as the job's
/// workflow makes it.
fn wanted<T: AsRef<str>>(job_labels: &[T]) -> Vec<&str> {
    let mut seen = HashSet::new();
    job_labels
        .iter()
        .map(|l| strip_suffix(l.as_ref()))
        .filter(|l| !is_implicit(l))
        .filter(|l| seen.insert(l.to_ascii_lowercase()))
        .collect()
}

fn has_all<S: AsRef<str>>(def_labels: &[S], wanted: &[&str]) -> bool {
    wanted.iter().all(|l| {
        def_labels
            .iter()
            .any(|d| d.as_ref().eq_ignore_ascii_case(l))
    })
}

/// The definition a job gets: the first, in file order, that matches.
/// `None` when the job is not rigger's or nothing matches.
pub fn select<'a, S: AsRef<str>>(defs: &'a [RunnerDef], job_labels: &[S]) -> Option<&'a RunnerDef> {
    if !is_rigger_job(job_labels) {
        return None;
    }
    let wanted = wanted(job_labels);
    defs.iter().find(|d| has_all(&d.labels, &wanted))
}

/// The labels to register a runner with, so that GitHub hands it the job it
/// was made for: the definition's labels, the job's full (suffixed) labels,
/// and the implicit ones, without duplicates (compared case-insensitively,
/// in one pass).
pub fn registration_labels<S: AsRef<str>>(
    def_labels: &[String],
    job_labels: &[S],
    os: &str,
    arch: &str,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut add = |l: &str| {
        if !l.is_empty() && seen.insert(l.to_ascii_lowercase()) {
            out.push(l.to_string());
        }
    };
    for l in ["self-hosted", os, arch] {
        add(l);
    }
    for l in def_labels {
        add(l);
    }
    for l in job_labels {
        add(l.as_ref());
    }
    out
}

/// Labels shared by two definitions that a job could ask for and get the
/// first one only: shared labels that start with `cirun-`.
pub fn overlap(a: &[String], b: &[String]) -> Vec<String> {
    a.iter()
        .filter(|l| has_prefix(l) && b.iter().any(|m| m.eq_ignore_ascii_case(l)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn suffix_is_split_at_the_first_double_dash() {
        assert_eq!(strip_suffix("cirun-x--123"), "cirun-x");
        assert_eq!(strip_suffix("cirun-x--12-456"), "cirun-x");
        assert_eq!(strip_suffix("cirun-x--a--b"), "cirun-x");
        assert_eq!(strip_suffix("cirun-gpu-large"), "cirun-gpu-large");
        assert_eq!(strip_suffix("gpu"), "gpu");
    }

    #[test]
    fn rigger_jobs_have_a_cirun_label() {
        assert!(is_rigger_job(&["self-hosted", "cirun-x"]));
        assert!(is_rigger_job(&["cirun-x--123"]));
        assert!(is_rigger_job(&["Cirun-X--123"]));
        assert!(!is_rigger_job(&["self-hosted", "gpu"]));
        assert!(!is_rigger_job(&["ubuntu-latest"]));
        // The prefix must survive suffix stripping.
        assert!(!is_rigger_job(&["gpu--cirun-x"]));
        assert!(!is_rigger_job::<&str>(&[]));
        // A multi-byte character where the prefix would end (it once panicked).
        assert!(!is_rigger_job(&["cirunü"]));
        assert!(!is_rigger_job(&["ciruü--1", "ü"]));
    }

    #[test]
    fn subset_matching_ignores_implicit_labels() {
        let def = s(&["cirun-gpu", "linux", "x64"]);
        assert!(matches(&def, &["self-hosted", "cirun-gpu"]));
        assert!(matches(&def, &["cirun-gpu--123"]));
        assert!(matches(&def, &["cirun-gpu--12-456", "linux", "X64"]));
        assert!(matches(&def, &["CIRUN-GPU"]));
        assert!(!matches(&def, &["cirun-gpu", "cirun-big"]));
        assert!(!matches(&def, &["cirun-gpu-large"]));
        // Implicit labels need not be in the definition.
        assert!(matches(
            &s(&["cirun-gpu"]),
            &["self-hosted", "linux", "cirun-gpu"]
        ));
    }

    #[test]
    fn labels_without_the_prefix_are_extra_labels() {
        // conda-forge: `runs-on: ['cirun-openstack-cpu-small--…', 'linux', 'x64']`.
        let def = s(&["cirun-openstack-cpu-small", "gpu-extra"]);
        assert!(matches(
            &def,
            &["cirun-openstack-cpu-small--99", "gpu-extra"]
        ));
        assert!(!matches(&def, &["cirun-openstack-cpu-small--99", "other"]));
    }

    #[test]
    fn registration_keeps_the_suffixed_label() {
        let got = registration_labels(
            &s(&["cirun-gpu", "Linux"]),
            &["self-hosted", "cirun-gpu--42"],
            "linux",
            "x64",
        );
        assert_eq!(
            got,
            s(&["self-hosted", "linux", "x64", "cirun-gpu", "cirun-gpu--42"])
        );
    }

    #[test]
    fn overlap_is_shared_cirun_labels() {
        assert_eq!(
            overlap(
                &s(&["cirun-gpu", "linux"]),
                &s(&["CIRUN-GPU", "linux", "cirun-big"])
            ),
            s(&["cirun-gpu"])
        );
        assert!(overlap(&s(&["cirun-a"]), &s(&["cirun-b"])).is_empty());
    }
}
