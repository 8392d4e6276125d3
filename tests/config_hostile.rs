//! Hostile config files never stop rigger: every parser answers an input of
//! at most 64 KB (a result, or diagnostics) within a time and a memory
//! bound, on a thread with the 2 MiB stack of a tokio worker, where the
//! engine parses the files it fetches.
//!
//! The bounds are properties of the code (the work is bounded), not
//! benchmarks: a debug build answers each input in milliseconds, and the
//! bounds are a hundred times that. Time is the thread's CPU time, so a
//! loaded machine does not fail a test; memory is the peak of the bytes the
//! thread holds, counted by the allocator in `support/bounded.rs`.

#[path = "support/bounded.rs"]
mod bounded;
#[path = "config_hostile/inputs.rs"]
mod inputs;

use bounded::bounded;

use std::path::Path;

use rigger::cloud::vast::gpus;
use rigger::config::diagnostics::{Diagnostics, MAX_SHOWN, MAX_SUGGESTIONS};
use rigger::config::yaml::{MAX_DEPTH, MAX_FILE_BYTES};
use rigger::config::{Diagnostic, FileKind, ParsedFile, labels, parse_file};
use rigger::engine::ports::ConfigFiles;
use rigger::engine::provision::parse_config_files;

/// What a parse answered, kept small enough to leave the worker.
#[derive(Debug)]
struct Answer {
    runners: usize,
    /// Runners rigger would rent machines for.
    provisioned: usize,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<Diagnostic>,
}

impl Answer {
    fn of(p: &ParsedFile) -> Answer {
        Answer {
            runners: p.config.as_ref().map_or(0, |c| c.runners.len()),
            provisioned: p
                .config
                .as_ref()
                .map_or(0, |c| c.runners.iter().filter(|r| r.vast.is_some()).count()),
            errors: p.diagnostics.errors(),
            warnings: p.diagnostics.warnings(),
            diagnostics: p.diagnostics.items().to_vec(),
        }
    }

    /// The one diagnostic whose message contains `needle`.
    fn one(&self, needle: &str) -> &Diagnostic {
        let found: Vec<_> = self
            .diagnostics
            .iter()
            .filter(|d| d.message.contains(needle))
            .collect();
        assert_eq!(found.len(), 1, "{needle}: {self:#?}");
        found[0]
    }

    fn only_error(&self) -> &Diagnostic {
        let errors: Vec<_> = self.diagnostics.iter().filter(|d| d.is_error()).collect();
        assert_eq!(errors.len(), 1, "{self:#?}");
        errors[0]
    }
}

fn kind_of(file: &str) -> FileKind {
    FileKind::from_path(Path::new(file))
}

/// Parse `text` as `file` would be, within the bounds.
fn parse(file: &'static str, text: String) -> Answer {
    bounded(file, move || {
        Answer::of(&parse_file(Path::new(file), &text, kind_of(file)))
    })
}

// ---- every input alike ----

#[test]
fn every_hostile_file_is_answered_within_bounds_with_bounded_output() {
    for h in inputs::all() {
        assert!(
            h.text.len() <= inputs::MAX_INPUT || h.file == "too_large.cirun.yml",
            "{} is {} bytes",
            h.file,
            h.text.len()
        );
        let a = parse(h.file, h.text);
        assert!(a.diagnostics.len() <= MAX_SHOWN + 1, "{}: {a:#?}", h.file);
        for d in &a.diagnostics {
            assert!(d.hint.as_deref().is_some_and(|h| h.len() >= 10), "{d:#?}");
            assert!(d.message.chars().count() <= 1000, "{}", h.file);
        }
    }
}

#[test]
fn the_engine_reads_hostile_files_within_bounds() {
    // What a push of all three files costs the engine: parse, merge
    // (which clones every runner), error lines, and dropping it all.
    let files = ConfigFiles {
        repo: Some(inputs::deep_block_sequence(MAX_DEPTH - 4)),
        org: Some(inputs::runners_sharing_a_label(1800)),
        access: Some(inputs::unknown_policy_ids()),
        ..ConfigFiles::default()
    };
    let (runners, errors) = bounded("engine", move || {
        let loaded = parse_config_files(&files);
        let runners = loaded.config.as_ref().map_or(0, |c| c.runners.len());
        (runners, loaded.errors.len())
    });
    assert_eq!(runners, 1801);
    // The access file's first errors and the line that sums up the rest.
    assert_eq!(errors, MAX_SHOWN + 1);
    for text in [inputs::alias_bomb(), inputs::deep_block_sequence(7000)] {
        let files = ConfigFiles {
            repo: Some(text.clone()),
            org: Some(text),
            access: Some(inputs::deep_access()),
            ..ConfigFiles::default()
        };
        let errors = bounded("engine", move || parse_config_files(&files).errors);
        assert_eq!(errors.len(), 3, "{errors:#?}");
    }
}

// ---- YAML ----

#[test]
fn an_alias_bomb_is_one_error_and_stops() {
    let a = parse("bomb.cirun.yml", inputs::alias_bomb());
    let e = a.only_error();
    assert!(e.message.contains("more than 50000 YAML nodes"), "{e:#?}");
    assert!(e.message.contains("stops reading here"), "{e:#?}");
    assert_eq!(a.diagnostics.len(), 1);
    assert!(inputs::alias_bomb().len() < 600);
}

#[test]
fn the_alias_that_passes_the_budget_is_named_at_its_place() {
    let text = inputs::alias_fan();
    let a = parse("fan.cirun.yml", text.clone());
    let e = a.only_error();
    assert!(e.message.starts_with("this alias"), "{e:#?}");
    assert!(e.hint.as_deref().unwrap().contains("`*name`"));
    // Line 2, on an alias: `fan: [*big, *big, …`.
    assert_eq!(e.location.line, 2);
    let line = text.lines().nth(1).unwrap();
    let at: String = line.chars().skip(e.location.column - 1).take(4).collect();
    assert_eq!(at, "*big");
}

#[test]
fn an_alias_of_a_long_scalar_is_charged_its_bytes() {
    let a = parse("long.cirun.yml", inputs::aliased_long_scalar());
    let e = a.only_error();
    assert!(e.message.contains("bytes of text"), "{e:#?}");
}

#[test]
fn an_alias_inside_its_own_anchor_is_an_error() {
    let a = parse("self.cirun.yml", inputs::self_alias());
    assert!(
        a.only_error()
            .message
            .contains("refers to the node it is in")
    );
}

#[test]
fn deep_nesting_stops_at_the_limit_in_every_form() {
    for (file, text) in [
        ("seq.cirun.yml", inputs::deep_block_sequence(7000)),
        ("map.cirun.yml", inputs::deep_block_mapping()),
        ("flow.cirun.yml", inputs::deep_flow_mapping()),
        ("org.cirun.global.yml", inputs::deep_block_sequence(7000)),
        ("deep.access.yml", inputs::deep_access()),
    ] {
        let a = parse(file, text);
        let e = a.only_error();
        assert!(
            e.message
                .contains(&format!("more than {MAX_DEPTH} levels deep")),
            "{file}: {e:#?}"
        );
    }
    // In a flow sequence every entry may be the key of a mapping, so the
    // parser reads ahead before rigger sees a level: its own bound (255
    // levels) answers first.
    let a = parse("mixed.cirun.yml", inputs::deep_flow_mixed());
    let e = a.only_error();
    assert_eq!(e.message, "not valid YAML: recursion limit exceeded");
    assert!(e.hint.as_deref().unwrap().contains("nest"), "{e:#?}");
}

#[test]
fn nesting_at_the_limit_is_read_walked_and_dropped_on_a_worker_stack() {
    // Four levels hold `BlockDeviceMappings`' lists (the file, `runners`,
    // the runner, `extra_config`): the file is exactly as deep as allowed,
    // and `extra_config` is kept as a serde_yaml value.
    let depth = MAX_DEPTH - 4;
    let a = parse("limit.cirun.yml", inputs::deep_block_sequence(depth));
    assert_eq!(a.errors, 0, "{a:#?}");
    assert_eq!(a.runners, 1);
    let a = parse("over.cirun.yml", inputs::deep_block_sequence(depth + 1));
    assert!(a.only_error().message.contains("levels deep"));
}

#[test]
fn a_file_over_the_limit_is_refused_before_it_is_read() {
    let a = parse("too_large.cirun.yml", inputs::too_large());
    let e = a.only_error();
    assert_eq!(
        e.message,
        format!(
            "the file is {} bytes; rigger reads config files of at most {MAX_FILE_BYTES} bytes (1 MiB), as GitHub serves them",
            MAX_FILE_BYTES + 1
        )
    );
    // At the limit it is read.
    let mut at_limit = inputs::too_large();
    at_limit.truncate(MAX_FILE_BYTES - 1);
    at_limit.push('\n');
    let a = parse("too_large.cirun.yml", at_limit);
    assert_eq!(a.errors, 0, "{a:#?}");
    assert_eq!(a.runners, 1);
}

#[test]
fn many_documents_are_one_error() {
    let a = parse("docs.cirun.yml", inputs::many_documents());
    assert_eq!(a.only_error().location.line, 2);
    assert_eq!(a.runners, 0);
}

#[test]
fn colon_repairs_are_bounded() {
    let a = parse("colons.cirun.yml", inputs::colon_repairs());
    assert!(a.warnings >= 1, "{a:#?}");
    assert!(a.only_error().message.contains("too many unquoted values"));
}

#[test]
fn thousands_of_keys_and_duplicates_are_found_in_linear_time() {
    let a = parse("keys.cirun.yml", inputs::many_keys());
    // Read in linear time; the one finding is real: Vast.ai could never
    // take that many variables.
    assert_eq!(a.errors, 1, "{a:#?}");
    assert!(
        a.diagnostics[0].message.starts_with("`env_vars` take "),
        "{a:#?}"
    );
    let text = inputs::duplicate_keys();
    let copies = text.matches("    region: US\n").count();
    let a = parse("dups.cirun.yml", text);
    assert_eq!(a.errors, copies - 1);
    assert_eq!(a.diagnostics.len(), MAX_SHOWN + 1);
    let summary = a.diagnostics.last().unwrap();
    assert_eq!(
        summary.message,
        format!(
            "… and {} more problems not shown ({} errors, 0 warnings)",
            copies - 1 - MAX_SHOWN,
            copies - 1 - MAX_SHOWN
        )
    );
}

#[test]
fn a_wide_list_is_read() {
    let a = parse("wide.cirun.yml", inputs::wide_list());
    assert_eq!(a.runners, 1);
    assert!(a.errors == 0, "{a:#?}");
}

// ---- fallback lists ----

#[test]
fn fallback_lists_that_multiply_past_the_limit_are_refused_before_expanding() {
    let a = parse("fallback.cirun.yml", inputs::fallback_product());
    let e = a.only_error();
    assert_eq!(
        e.message,
        "runner `r`: its lists would make 14295960 fallback candidates (instance_type 60 × \
         machine_image 61 × region 62 × preemptible 63); rigger tries at most 256"
    );
}

// ---- warnings and suggestions ----

#[test]
fn runners_sharing_a_label_make_one_warning() {
    let a = parse("shared.cirun.yml", inputs::runners_sharing_a_label(1800));
    assert_eq!(a.runners, 1800);
    assert_eq!((a.errors, a.warnings), (0, 1), "{a:#?}");
    assert_eq!(
        a.one("share").message,
        "runners `r1`, `r2`, `r3` and 1796 more share label `cirun-x` with runner `r0` (line 2): \
         a job asking only for it always gets `r0`, the first in the file"
    );
}

#[test]
fn chained_overlaps_are_counted_past_the_cap() {
    let text = inputs::chained_labels();
    let runners = text.matches("  - name: ").count();
    let a = parse("chain.cirun.yml", text);
    assert_eq!(a.runners, runners);
    assert_eq!(a.warnings, runners - 1);
    assert_eq!(a.diagnostics.len(), MAX_SHOWN + 1);
    assert!(
        a.diagnostics[0]
            .message
            .starts_with("runner `r1` shares label `cirun-1` with runner `r0` (line 2)")
    );
}

#[test]
fn thousands_of_unknown_words_get_bounded_suggestions() {
    for (file, text) in [
        ("keys.cirun.yml", inputs::unknown_keys()),
        ("gpus.cirun.yml", inputs::unknown_gpus()),
        ("clouds.cirun.yml", inputs::unknown_clouds()),
        ("ids.access.yml", inputs::unknown_policy_ids()),
    ] {
        let a = parse(file, text);
        assert!(a.errors > MAX_SHOWN, "{file}: {}", a.errors);
        assert!(a.diagnostics[..MAX_SHOWN].iter().all(Diagnostic::is_error));
        // The first ones still say what was probably meant.
        let meant = a
            .diagnostics
            .iter()
            .filter(|d| d.hint.as_deref().unwrap().starts_with("did you mean"))
            .count();
        assert!((1..=MAX_SUGGESTIONS).contains(&meant), "{file}: {meant}");
    }
}

#[test]
fn a_duplicated_policy_id_thousands_of_times_is_linear() {
    let a = parse("dups.access.yml", inputs::duplicate_policy_ids());
    assert!(a.errors > 1000, "{a:#?}");
    assert_eq!(
        a.diagnostics[0].message,
        "policy id `same` is used twice (first on line 2)"
    );
}

#[test]
fn long_values_are_quoted_clipped() {
    let a = parse("long.cirun.yml", inputs::long_scalars());
    assert!(a.errors >= 3 && a.warnings >= 3, "{a:#?}");
    for d in &a.diagnostics {
        assert!(d.message.chars().count() <= 600, "{d:#?}");
    }
}

// ---- numbers ----

#[test]
fn gpu_memory_that_overflowed_a_u32_is_an_error() {
    let a = parse("gpu.cirun.yml", inputs::gpu_memory_overflow());
    let e = a.only_error();
    assert!(
        e.message
            .starts_with("`4294968GB` is more memory than any GPU has: at most 1024 GB per GPU"),
        "{e:#?}"
    );
    assert_eq!((e.location.line, e.location.column), (4, 20));
}

#[test]
fn absurd_numbers_are_errors_not_casts() {
    let a = parse("numbers.cirun.yml", inputs::huge_numbers());
    // 8 numeric keys of 14 vast_ai runners, 2 of 14 idle runners, one
    // instance_type: every value is out of range but `-0`, `1_000` and
    // `0x7fffffff` (text, for YAML 1.2) for some keys.
    assert!(a.errors >= 100, "{}", a.errors);
    assert_eq!(
        a.provisioned, 0,
        "no runner with such a value is rented for"
    );
    let big = a.one("asks for more GPUs than any Vast.ai host has");
    assert!(big.message.contains("at most 64"));
}

#[test]
fn an_access_version_is_compared_as_written() {
    let a = parse("v.access.yml", "version: 1e30\npolicies: []\n".into());
    assert!(a.one("unknown `.access.yml` version 1e30").is_error());
}

// ---- label matching and instance_type strings ----

#[test]
fn the_label_that_once_panicked_is_an_answer() {
    let a = parse("u.cirun.yml", inputs::umlaut_label());
    assert!(a.one("none of the labels").message.contains("`cirun-`"));
    assert!(!labels::is_rigger_job(&["cirunü"]));
}

#[test]
fn label_matching_is_bounded_for_hostile_labels() {
    let text = inputs::runners_sharing_a_label(1800);
    bounded("labels", move || {
        let p = parse_file(Path::new(".cirun.yml"), &text, FileKind::Repository);
        let defs = &p.config.as_ref().unwrap().runners;
        let long = format!("cirun-{}", "ü".repeat(20_000));
        let many: Vec<String> = (0..1000).map(|i| format!("cirun-x--{i}ü")).collect();
        let hostile: Vec<Vec<String>> = vec![
            vec![long.clone()],
            vec![format!("{long}--{long}")],
            vec!["cirunü".into(), "ü--cirun-x".into()],
            many,
            vec!["--".repeat(10_000)],
            vec!["cirun-".into(), "".into()],
        ];
        for job in &hostile {
            let _ = labels::select(defs, job);
            let _ = labels::registration_labels(&defs[0].labels, job, "linux", "x64");
        }
        // A job asking for the shared label gets the first runner.
        let picked = labels::select(defs, &["cirun-x--1"]).map(|d| d.name.clone());
        assert_eq!(picked.as_deref(), Some("r0"));
    });
}

#[test]
fn instance_type_strings_are_bounded() {
    bounded("instance types", || {
        let hostile = [
            "_".repeat(60_000),
            "x".repeat(60_000),
            "9".repeat(60_000),
            format!("RTX_{}", "4090".repeat(10_000)),
            format!("A100_{}GB", "9".repeat(60_000)),
            "ü".repeat(30_000),
            format!("{}GB", "_1".repeat(30_000)),
            "A100_4294968GB".into(),
            "".into(),
        ];
        for model in &hostile {
            let _ = gpus::resolve(model);
            let _ = gpus::suggestions(model);
        }
        assert!(gpus::resolve("A100_4294968GB").is_err());
    });
    let mut text = String::from(
        "runners:\n  - name: r\n    cloud: vast_ai\n    labels: [cirun-r]\n    instance_type:\n",
    );
    for model in ["_", "x", "9", "ü", "X_", "0x"] {
        text.push_str(&format!("      - {}\n", model.repeat(2000)));
    }
    let a = parse("types.cirun.yml", text);
    assert_eq!(a.errors, 6, "{a:#?}");
}

// ---- diagnostics ----

#[test]
fn errors_displace_warnings_when_the_file_is_full() {
    let mut d = Diagnostics::default();
    let at = rigger::config::model::Location { line: 1, column: 1 };
    for _ in 0..MAX_SHOWN + 5 {
        d.push(Diagnostic::warning(at, "w".into()).with_hint("a hint for it"));
    }
    d.push(Diagnostic::error(at, "e".into()).with_hint("a hint for it"));
    assert_eq!((d.errors(), d.warnings()), (1, MAX_SHOWN + 5));
    assert_eq!(d.items().len(), MAX_SHOWN + 1);
    assert!(d.items()[..MAX_SHOWN].iter().any(Diagnostic::is_error));
    let summary = d.items().last().unwrap();
    assert_eq!(
        summary.message,
        "… and 6 more problems not shown (0 errors, 6 warnings)"
    );
    let rendered = d.render("f", "");
    assert!(rendered.ends_with(
        "= hint: rigger reports at most 100 problems per file; fix these and check again\n"
    ));
}

#[test]
fn a_megabyte_line_is_shown_around_its_column() {
    let text = format!("runners: [{}, zz]\n", "a".repeat(100_000));
    let p = bounded("render", move || {
        let p = parse_file(Path::new("x.cirun.yml"), &text, FileKind::Repository);
        p.render()
    });
    assert!(p.len() < 2000, "{}", p.len());
    assert!(p.contains("…aaaa"), "{p}");
}
