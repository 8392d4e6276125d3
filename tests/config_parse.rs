//! `.cirun.yml` parsing: every key and form, the errors a person makes (each
//! at its exact line and column), and the real-world corpus.

use std::path::{Path, PathBuf};

use rigger::cloud::vast::gpus::GpuChoice;
use rigger::config::model::{Idle, Location, MachineImage};
use rigger::config::schema::{SchemaFile, generate};
use rigger::config::{
    CirunConfig, Cloud, Diagnostic, FileKind, Origin, VastRunner, parse::parse_cirun, parse_file,
};
use serde_json::Value;

/// Parse, checking what every diagnostic must have: a hint that says what
/// to do (issue 2 §4).
fn parse(text: &str) -> (Option<CirunConfig>, Vec<Diagnostic>) {
    let (c, d) = parse_cirun(text, Origin::Repository);
    for diag in d.items() {
        assert_hinted(diag);
    }
    (c, d.items().to_vec())
}

fn assert_hinted(d: &Diagnostic) {
    let hint = d.hint.as_deref().unwrap_or_default();
    assert!(hint.trim().len() >= 10, "no useful hint: {d:#?}");
}

/// The hint of the one diagnostic whose message contains `needle`.
fn hint_of<'a>(d: &'a [Diagnostic], needle: &str) -> &'a str {
    let found: Vec<_> = d.iter().filter(|d| d.message.contains(needle)).collect();
    assert_eq!(found.len(), 1, "{needle}: {d:#?}");
    found[0].hint.as_deref().unwrap_or_default()
}

/// Parse a file that must have no error; returns it and its warnings.
fn ok(text: &str) -> (CirunConfig, Vec<Diagnostic>) {
    let (c, d) = parse(text);
    let errors: Vec<_> = d.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:#?}");
    (c.expect("a config"), d)
}

fn vast(text: &str) -> VastRunner {
    let (c, _) = ok(text);
    c.runners[0].vast.clone().expect("a vast runner")
}

/// The single error a text produces, checked for its place.
fn error_at(text: &str, line: usize, column: usize) -> Diagnostic {
    let (_, d) = parse(text);
    let errors: Vec<_> = d.into_iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "expected one error: {errors:#?}");
    assert_eq!(
        errors[0].location,
        Location { line, column },
        "{:#?}",
        errors[0]
    );
    errors[0].clone()
}

fn runner(body: &str) -> String {
    format!("runners:\n  - name: r\n    cloud: vast_ai\n    labels: [cirun-r]\n{body}")
}

// ---- keys and forms ----

#[test]
fn instance_type_resolves_count_and_model() {
    let v = vast(&runner("    instance_type: 2xRTX_4090\n"));
    let c = &v.candidates[0];
    assert_eq!(c.gpu_count, 2);
    assert_eq!(
        c.gpu,
        GpuChoice::Models {
            vast_names: vec!["RTX 4090"],
            min_vram_gb: None
        }
    );
    assert_eq!(c.instance_type, "2xRTX_4090");
}

#[test]
fn instance_type_aliases_and_memory_suffix() {
    let v = vast(&runner(
        "    instance_type: [4xA100_SXM, 8xA100_SXM4_80GB, 2xH100]\n",
    ));
    let names: Vec<_> = v
        .candidates
        .iter()
        .map(|c| match &c.gpu {
            GpuChoice::Models {
                vast_names,
                min_vram_gb,
            } => (c.gpu_count, vast_names.clone(), *min_vram_gb),
            GpuChoice::Any => panic!(),
        })
        .collect();
    assert_eq!(names[0], (4, vec!["A100 SXM4", "A100 SXM"], None));
    assert_eq!(names[1], (8, vec!["A100 SXM4"], Some(80)));
    assert_eq!(
        names[2],
        (2, vec!["H100 SXM", "H100 PCIE", "H100 NVL"], None)
    );
}

#[test]
fn any_gpu_with_min_gpu_ram() {
    let v = vast(&runner(
        "    instance_type: 1xANY\n    extra_config:\n      min_gpu_ram: 24\n",
    ));
    assert_eq!(v.candidates[0].gpu, GpuChoice::Any);
    assert_eq!(v.extra.min_gpu_ram_gb, Some(24.0));
}

#[test]
fn any_gpu_without_min_gpu_ram_is_an_error() {
    let e = error_at(&runner("    instance_type: 1xANY\n"), 5, 20);
    assert!(e.message.contains("min_gpu_ram"), "{}", e.message);
}

#[test]
fn vast_extra_config_every_key() {
    let v = vast(&runner(
        "    instance_type: 1xRTX_4090
    extra_config:
      disk_space: 80
      min_ram: 32
      vm: false
      max_dph: 0.9
      max_cost: 4
      min_reliability: 0.99
      min_inet_down: 500
      verified: false
      env_vars:
        FOO: bar
        N: 1
      max_runtime: 90
      min_gpu_ram: 20
      min_cuda: \"12.6\"
",
    ));
    let e = &v.extra;
    assert_eq!(e.disk_space_gb, 80.0);
    assert_eq!(e.min_ram_gb, Some(32.0));
    assert!(!e.vm);
    assert_eq!(e.max_dph, Some(0.9));
    assert_eq!(e.max_cost, Some(4.0));
    assert_eq!(e.min_reliability, 0.99);
    assert_eq!(e.min_inet_down, 500.0);
    assert!(!e.verified);
    assert_eq!(e.env_vars.get("FOO").map(String::as_str), Some("bar"));
    assert_eq!(e.env_vars.get("N").map(String::as_str), Some("1"));
    assert_eq!(e.max_runtime_minutes, 90);
    assert_eq!(e.min_gpu_ram_gb, Some(20.0));
    assert_eq!(e.min_cuda.unwrap().to_string(), "12.6");
    // Higher than the default image's 12.4, so min_cuda decides.
    assert_eq!(v.candidates[0].min_cuda.unwrap().to_string(), "12.6");
}

#[test]
fn vast_defaults() {
    let v = vast(&runner("    instance_type: 1xRTX_4090\n"));
    let e = &v.extra;
    assert_eq!(e.disk_space_gb, 30.0);
    assert_eq!(e.min_reliability, 0.95);
    assert_eq!(e.min_inet_down, 100.0);
    assert!(e.verified);
    assert!(!e.vm);
    assert_eq!(e.max_runtime_minutes, 360);
    assert_eq!(e.min_ram_gb, None);
    let c = &v.candidates[0];
    assert!(c.image_is_default);
    assert_eq!(c.image, "nvidia/cuda:12.4.1-base-ubuntu22.04");
    assert_eq!(c.min_cuda.unwrap().to_string(), "12.4");
    assert_eq!(c.region, None);
    assert!(!c.preemptible);
}

#[test]
fn cuda_requirement_is_the_higher_of_image_and_min_cuda() {
    let v = vast(&runner(
        "    instance_type: 1xRTX_4090\n    machine_image: nvidia/cuda:12.6.0-base-ubuntu22.04\n    extra_config:\n      min_cuda: 12.1\n",
    ));
    assert_eq!(v.candidates[0].min_cuda.unwrap().to_string(), "12.6");
}

#[test]
fn vm_mode_qualifies_the_image() {
    let v = vast(&runner(
        "    instance_type: 1xRTX_3090\n    machine_image: vastai/kvm:ubuntu_cli_22.04-2025-11-21\n    extra_config:\n      vm: true\n",
    ));
    assert!(v.extra.vm);
    assert_eq!(
        v.candidates[0].image,
        "docker.io/vastai/kvm:ubuntu_cli_22.04-2025-11-21"
    );
}

#[test]
fn fallback_lists_zip_broadcast_and_multiply() {
    // Equal lengths zip; the scalar image broadcasts.
    let v = vast(&runner(
        "    instance_type: [1xRTX_4090, 1xRTX_3090]\n    machine_image: nvidia/cuda:12.0.0-base-ubuntu22.04\n    region: [US, CA]\n    preemptible: [true, false]\n",
    ));
    let got: Vec<_> = v
        .candidates
        .iter()
        .map(|c| (c.instance_type.as_str(), c.region.as_deref(), c.preemptible))
        .collect();
    assert_eq!(
        got,
        vec![
            ("1xRTX_4090", Some("US"), true),
            ("1xRTX_3090", Some("CA"), false)
        ]
    );
    // Unequal lengths multiply, the earlier key slowest.
    let v = vast(&runner(
        "    instance_type: [1xRTX_4090, 1xRTX_3090]\n    region: [US, CA, DE]\n",
    ));
    let got: Vec<_> = v
        .candidates
        .iter()
        .map(|c| format!("{}@{}", c.instance_type, c.region.as_deref().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            "1xRTX_4090@US",
            "1xRTX_4090@CA",
            "1xRTX_4090@DE",
            "1xRTX_3090@US",
            "1xRTX_3090@CA",
            "1xRTX_3090@DE"
        ]
    );
}

#[test]
fn regions_are_upper_cased_country_codes() {
    let v = vast(&runner("    instance_type: 1xRTX_4090\n    region: de\n"));
    assert_eq!(v.candidates[0].region.as_deref(), Some("DE"));
}

#[test]
fn machine_image_forms_for_other_clouds() {
    let (c, _) = ok("runners:
  - name: az
    cloud: azure
    instance_type: Standard_D4s_v3
    machine_image:
      publisher: MicrosoftWindowsDesktop
      offer: Windows-11
      sku: win11-22h2-pro
      version: latest
    labels: [cirun-az]
  - name: list
    cloud: aws
    instance_type: t3.large
    machine_image: [ami-1, ami-2]
    labels: [cirun-list]
");
    assert_eq!(
        c.runners[0].candidates[0].machine_image,
        Some(MachineImage::Azure {
            publisher: "MicrosoftWindowsDesktop".into(),
            offer: "Windows-11".into(),
            sku: "win11-22h2-pro".into(),
            version: "latest".into()
        })
    );
    assert_eq!(c.runners[1].candidates.len(), 2);
    assert_eq!(c.runners[1].cloud, Cloud::Aws);
    assert!(c.runners[1].vast.is_none());
}

#[test]
fn every_cirun_cloud_is_accepted_and_only_vast_is_provisioned() {
    for (spelling, cloud) in Cloud::SPELLINGS {
        let text = format!(
            "runners:\n  - name: r\n    cloud: {spelling}\n    instance_type: 1xRTX_4090\n    labels: [cirun-r]\n"
        );
        let (c, d) = ok(&text);
        assert_eq!(c.runners[0].cloud, *cloud);
        assert_eq!(c.runners[0].vast.is_some(), *cloud == Cloud::VastAi);
        let not_ours = d
            .iter()
            .any(|d| d.message.contains("not provisioned by rigger"));
        assert_eq!(not_ours, *cloud != Cloud::VastAi, "{spelling}");
    }
}

#[test]
fn other_clouds_never_block_vast_runners() {
    let text = "runners:
  - name: broken-aws
    cloud: aws
    instance_type: [t3.large]
    preemptible: maybe
    imagee: ami-1
  - name: gpu
    cloud: vast_ai
    instance_type: 1xRTX_4090
    labels: [cirun-gpu]
";
    let (c, d) = ok(text);
    assert!(d.iter().any(|d| d.message.contains("`preemptible`")));
    assert!(d.iter().any(|d| d.message.contains("unknown key `imagee`")));
    assert!(c.runners[1].vast.is_some());
}

#[test]
fn legacy_keys_warn() {
    let (_, d) = ok("run_only_when_triggered_by: core
runners:
  - name: r
    cloud: aws
    workflow: .github/workflows/ci.yml
    count: 1
    labels: [cirun-r]
");
    let messages: Vec<_> = d.iter().map(|d| d.message.as_str()).collect();
    assert!(messages.iter().any(|m| m.contains(".access.yml")));
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`workflow` has no effect"))
    );
    assert!(messages.iter().any(|m| m.contains("`count` was removed")));
    // Each says what to do instead.
    assert!(hint_of(&d, "run_only_when_triggered_by").contains("`policies:` in `.access.yml`"));
    assert!(hint_of(&d, "`workflow` has no effect").contains("label"));
    assert!(hint_of(&d, "`count` was removed").contains("remove `count:`"));
    assert!(hint_of(&d, "not provisioned by rigger").contains("`cloud: vast_ai`"));
}

#[test]
fn an_empty_runners_list_says_what_to_add() {
    let (_, d) = ok("runners: []\n");
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].location,
        Location {
            line: 1,
            column: 10
        }
    );
    assert!(hint_of(&d, "`runners` is empty").contains("- name:"));
}

#[test]
fn setup_info_is_kept() {
    let (c, _) = ok("runners: []
setup_info:
  - group: GPU
    detail: >
      Rented on Vast.ai
");
    assert_eq!(c.setup_info[0].group, "GPU");
    assert_eq!(c.setup_info[0].detail, "Rented on Vast.ai\n");
}

#[test]
fn idle_forms() {
    let (c, d) = ok("runners:
  - name: s
    cloud: aws
    labels: [cirun-s]
    idle:
      schedule:
        - day: mon-fri
          time: 9-17
          timezone: Europe/London
          replicas: 2
  - name: u
    cloud: gcp
    labels: [cirun-u]
    idle:
      usage_based:
        trigger: runner_allocated
        replicas: 1
        duration: 30
");
    assert!(matches!(&c.runners[0].idle, Some(Idle::Schedule(w)) if w[0].replicas == 2));
    assert_eq!(
        c.runners[1].idle,
        Some(Idle::UsageBased {
            replicas: 1,
            duration_minutes: 30
        })
    );
    assert!(d.iter().all(|d| !d.message.contains("idle")));
}

#[test]
fn idle_with_both_forms_is_a_problem() {
    let text = runner(
        "    instance_type: 1xRTX_4090\n    idle:\n      schedule: []\n      usage_based: {trigger: runner_allocated, replicas: 1, duration: 5}\n",
    );
    let (_, d) = parse(&text);
    assert!(
        d.iter()
            .any(|d| d.is_error() && d.message.contains("both `schedule` and `usage_based`"))
    );
}

#[test]
fn labels_warnings() {
    let (_, d) = ok("runners:
  - name: a
    cloud: aws
    labels: gpu
  - name: b
    cloud: aws
");
    let messages: Vec<_> = d.iter().map(|d| d.message.as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("single string")));
    assert!(messages.iter().any(|m| m.contains("starts with `cirun-`")));
    assert!(messages.iter().any(|m| m.contains("has no labels")));
}

#[test]
fn overlapping_labels_warn_and_the_first_wins() {
    let (c, d) = ok("runners:
  - name: first
    cloud: vast_ai
    instance_type: 1xRTX_4090
    labels: [cirun-gpu]
  - name: second
    cloud: vast_ai
    instance_type: 1xRTX_3090
    labels: [cirun-gpu, cirun-big]
");
    let w = d
        .iter()
        .find(|d| d.message.contains("shares label `cirun-gpu`"))
        .expect("overlap warning");
    assert_eq!(w.location.line, 6);
    let picked = rigger::config::labels::select(&c.runners, &["cirun-gpu--7"]).unwrap();
    assert_eq!(picked.name, "first");
    let picked =
        rigger::config::labels::select(&c.runners, &["cirun-gpu--7", "cirun-big"]).unwrap();
    assert_eq!(picked.name, "second");
}

#[test]
fn secret_looking_env_vars_warn() {
    let (_, d) = ok(&runner(
        "    instance_type: 1xRTX_4090\n    extra_config:\n      env_vars:\n        HF_TOKEN: x\n",
    ));
    assert!(d.iter().any(|d| d.message.contains("looks like a secret")));
}

// ---- errors, each at its place ----

#[test]
fn broken_yaml() {
    let e = error_at("runners:\n  - name: [a, b\n", 3, 1);
    assert!(e.message.starts_with("not valid YAML"), "{}", e.message);
}

#[test]
fn tab_indentation() {
    let (_, d) = parse("runners:\n\t- name: a\n");
    assert!(d[0].is_error());
    assert!(d[0].hint.as_deref().unwrap_or_default().contains("spaces"));
}

#[test]
fn wrong_type() {
    let e = error_at(
        &runner("    instance_type: 1xRTX_4090\n    preemptible: sometimes\n"),
        6,
        18,
    );
    assert_eq!(
        e.message,
        "`preemptible` must be true or false, found a string"
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("write `true` or `false` (without quotes)")
    );
    let e = error_at(
        &runner("    instance_type: 1xRTX_4090\n    extra_config:\n      min_ram: lots\n"),
        7,
        16,
    );
    assert_eq!(
        e.message,
        "`min_ram` must be a positive number of at most 4096, found a string"
    );
    assert!(
        e.hint
            .unwrap()
            .contains("a number above 0, at most 4096, e.g. `30`")
    );
    let e = error_at(
        &runner("    instance_type: 1xRTX_4090\n    region: {a: b}\n"),
        6,
        13,
    );
    assert!(e.hint.unwrap().contains("`[a, b]`"), "a list, shown how");
}

#[test]
fn a_runner_option_that_is_not_a_mapping() {
    let e = error_at(
        &runner("    instance_type: 1xRTX_4090\n    extra_config: big\n"),
        6,
        19,
    );
    assert!(e.message.contains("must be a mapping"), "{}", e.message);
    assert!(
        e.hint.unwrap().contains("indented under it"),
        "says how to write one"
    );
}

#[test]
fn a_yaml_error_rigger_has_no_advice_for_still_has_a_hint() {
    let e = error_at("runners: @x\n", 1, 10);
    assert!(e.message.contains("unexpected character"), "{}", e.message);
    assert!(e.hint.unwrap().contains("quotes"));
}

#[test]
fn zero_gpus() {
    let e = error_at(&runner("    instance_type: 0xRTX_4090\n"), 5, 20);
    assert!(e.message.contains("0 GPUs"));
    assert_eq!(
        e.hint.as_deref(),
        Some("ask for at least one: `1xRTX_4090`")
    );
}

#[test]
fn instance_type_without_count() {
    let e = error_at(&runner("    instance_type: RTX_4090\n"), 5, 20);
    assert!(e.hint.unwrap().contains("`1xRTX_4090`"));
}

#[test]
fn negative_disk() {
    let e = error_at(
        &runner("    instance_type: 1xRTX_4090\n    extra_config:\n      disk_space: -20\n"),
        7,
        19,
    );
    assert_eq!(
        e.message,
        "`disk_space` must be a positive number of at most 20000, found -20"
    );
    assert_eq!(
        e.hint.as_deref(),
        Some(
            "write a number above 0, at most 20000, e.g. `30`, without a unit (the unit is fixed by the key)"
        )
    );
    let e = error_at(
        &runner("    instance_type: 1xRTX_4090\n    extra_config:\n      min_reliability: 1.5\n"),
        7,
        24,
    );
    assert!(e.hint.unwrap().contains("from 0 to 1, e.g. `0.95`"));
}

#[test]
fn absurd_numbers_are_errors_that_name_the_ceiling() {
    // Each was once accepted: cast to u32 it saturated (`max_runtime`), or
    // it reached Vast.ai's query as a number no host matches.
    for (line, needle) in [
        (
            "disk_space: 1e30",
            "`disk_space` must be a positive number of at most 20000",
        ),
        (
            "min_ram: 99999",
            "`min_ram` must be a positive number of at most 4096",
        ),
        (
            "max_runtime: 1000000000000",
            "`max_runtime` must be a positive whole number of at most 7200",
        ),
        (
            "max_runtime: 4294967296",
            "`max_runtime` must be a positive whole number of at most 7200, found 4294967296",
        ),
        (
            "min_gpu_ram: 1025",
            "`min_gpu_ram` must be a positive number of at most 1024",
        ),
        (
            "max_dph: .inf",
            "`max_dph` must be a positive number of at most 1000",
        ),
        (
            "max_cost: .nan",
            "`max_cost` must be a positive number of at most 100000",
        ),
        (
            "min_inet_down: 1e9",
            "`min_inet_down` must be a number from 0 to 100000",
        ),
        (
            "min_ram: \"1e400\"",
            "`min_ram` must be a positive number of at most 4096",
        ),
    ] {
        let text = runner(&format!(
            "    instance_type: 1xRTX_4090\n    extra_config:\n      {line}\n"
        ));
        let e = error_at(&text, 7, 9 + line.find(':').unwrap());
        assert!(e.message.starts_with(needle), "{line}: {}", e.message);
    }
    let v = vast(&runner(
        "    instance_type: 1xRTX_4090\n    extra_config:\n      max_runtime: 7200\n      min_gpu_ram: 1024\n",
    ));
    assert_eq!(v.extra.max_runtime_minutes, 7200);
}

#[test]
fn absurd_gpu_counts_and_memory_are_errors() {
    let e = error_at(&runner("    instance_type: 65xRTX_4090\n"), 5, 20);
    assert!(e.message.contains("at most 64"), "{}", e.message);
    let e = error_at(
        &runner("    instance_type: 99999999999999999999xRTX_4090\n"),
        5,
        20,
    );
    assert!(e.message.contains("at most 64"), "{}", e.message);
    let e = error_at(&runner("    instance_type: 1xA100_4294968GB\n"), 5, 20);
    assert!(
        e.message
            .starts_with("`4294968GB` is more memory than any GPU has: at most 1024 GB per GPU"),
        "{}",
        e.message
    );
    let v = vast(&runner("    instance_type: 64xA100_SXM4_80GB\n"));
    assert_eq!(v.candidates[0].gpu_count, 64);
}

#[test]
fn vm_runner_without_a_vm_image() {
    let e = error_at(
        &runner(
            "    instance_type: 1xRTX_4090\n    machine_image: nvidia/cuda:12.0.0-base-ubuntu22.04\n    extra_config:\n      vm: true\n",
        ),
        6,
        20,
    );
    assert!(e.message.contains("VM mode needs a Vast.ai VM image"));
    let e = error_at(
        &runner("    instance_type: 1xRTX_4090\n    extra_config:\n      vm: true\n"),
        2,
        5,
    );
    assert!(e.message.contains("needs a `machine_image`"));
}

#[test]
fn vm_image_in_container_mode() {
    let e = error_at(
        &runner("    instance_type: 1xRTX_4090\n    machine_image: vastai/kvm:ubuntu_cli_22.04\n"),
        6,
        20,
    );
    assert!(e.hint.unwrap().contains("vm: true"));
}

#[test]
fn unknown_gpu_model_suggests_the_nearest() {
    let e = error_at(&runner("    instance_type: 1xRTX_4091\n"), 5, 20);
    assert_eq!(e.message, "unknown GPU model `RTX_4091` in `1xRTX_4091`");
    assert!(e.hint.unwrap().contains("RTX_4090"));
}

#[test]
fn region_that_is_not_a_country_code() {
    let e = error_at(
        &runner("    instance_type: 1xRTX_4090\n    region: us-east-1\n"),
        6,
        13,
    );
    assert!(e.message.contains("country code"));
    let e = error_at(
        &runner("    instance_type: 1xRTX_4090\n    region: [US, UK]\n"),
        6,
        18,
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean GB?"));
}

#[test]
fn duplicated_key() {
    let e = error_at(
        &runner("    instance_type: 1xRTX_4090\n    instance_type: 1xRTX_3090\n"),
        6,
        5,
    );
    assert!(e.message.contains("duplicated key `instance_type`"));
    assert!(e.message.contains("line 5"));
}

#[test]
fn empty_file() {
    let e = error_at("", 1, 1);
    assert_eq!(e.message, "the file is empty");
    let e = error_at("# just a comment\n", 1, 1);
    assert_eq!(e.message, "the file is empty");
}

#[test]
fn unknown_key_in_a_vast_runner_is_an_error_with_the_nearest_key() {
    let e = error_at(
        &runner(
            "    instance_type: 1xRTX_4090\n    machine_imgae: nvidia/cuda:12.0.0-base-ubuntu22.04\n",
        ),
        6,
        5,
    );
    assert!(e.message.contains("unknown key `machine_imgae`"));
    assert_eq!(e.hint.as_deref(), Some("did you mean `machine_image`?"));
    let e = error_at(
        &runner("    instance_type: 1xRTX_4090\n    extra_config:\n      diskspace: 40\n"),
        7,
        7,
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `disk_space`?"));
}

#[test]
fn unsupported_cloud() {
    let e = error_at(
        "runners:\n  - name: r\n    cloud: vastai\n    labels: [cirun-r]\n",
        3,
        12,
    );
    assert_eq!(e.message, "unsupported cloud `vastai` in runner `r`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `vast_ai`?"));
}

#[test]
fn label_with_a_suffix_cannot_match() {
    let e = error_at(
        "runners:\n  - name: r\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-r--1]\n",
        5,
        14,
    );
    assert!(e.message.contains("contains `--`"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "runners:
  - name: a
    cloud: vast_ai
    instance_type: 0xRTX_4090
    region: USA
    labels: [cirun-a]
    extra_config:
      disk_space: -1
      min_reliability: 2
      colour: red
";
    let (_, d) = parse(text);
    let lines: Vec<usize> = d
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.location.line)
        .collect();
    assert_eq!(lines, vec![4, 5, 8, 9, 10]);
}

#[test]
fn nothing_panics_on_odd_input() {
    let odd = [
        "runners",
        "runners: 5",
        "- a\n- b\n",
        "runners:\n  - 5\n  - [a]\n  - name:\n",
        "runners:\n  - name: r\n    cloud: vast_ai\n    instance_type: [[1]]\n    labels: [[x]]\n",
        "runners:\n  - name: r\n    cloud: vast_ai\n    instance_type: x\n    region: []\n",
        "runners:\n  - name: r\n    cloud: vast_ai\n    instance_type: 99999999999xA100\n",
        "runners:\n  - name: r\n    cloud: vast_ai\n    instance_type: 1x\n",
        "runners:\n  - name: r\n    cloud: ~\n",
        "runners:\n  - &a {name: r, cloud: aws}\n  - *a\n",
        "? [a]\n: b\n",
        "\u{feff}runners: []\n",
        "runners: !!str x\n",
        "runners:\n  - name: r\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    extra_config:\n      env_vars: [a]\n      min_cuda: abc\n",
    ];
    for text in odd {
        let (_, d) = parse(text);
        // Each odd input is either fine or explained; none panics.
        for diag in &d {
            assert!(diag.location.line >= 1, "{text:?}: {diag:?}");
        }
    }
}

// ---- the schema agrees with validate ----

/// The two kinds of `pattern` `rigger schema` writes: numbers as text, and
/// words in any case (`^([aA][wW][sS]|…)$`).
fn pattern_matches(pattern: &str, text: &str) -> bool {
    if pattern.contains("[0-9]") {
        return text.trim().parse::<f64>().is_ok();
    }
    let inner = pattern
        .strip_prefix("^(")
        .and_then(|p| p.strip_suffix(")$"))
        .unwrap_or_else(|| panic!("pattern {pattern}"));
    inner.split('|').any(|alt| {
        let mut word = String::new();
        let mut chars = alt.chars();
        while let Some(c) = chars.next() {
            match c {
                '[' => {
                    word.push(chars.next().unwrap());
                    chars.next();
                    chars.next();
                }
                '\\' => word.push(chars.next().unwrap()),
                c => word.push(c),
            }
        }
        word == text.to_ascii_lowercase()
    })
}

/// The part of JSON Schema draft-07 that `rigger schema` uses.
fn schema_accepts(schema: &Value, v: &Value) -> bool {
    let Some(s) = schema.as_object() else {
        return true;
    };
    let fits_type = |t: &str| match t {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.as_f64().is_some_and(|n| n.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        other => panic!("type {other}"),
    };
    let ok = |k: &str, check: &dyn Fn(&Value) -> bool| s.get(k).is_none_or(check);
    ok("type", &|t| match t {
        Value::String(t) => fits_type(t),
        Value::Array(ts) => ts.iter().any(|t| fits_type(t.as_str().unwrap())),
        _ => panic!("{t}"),
    }) && ok("enum", &|e| e.as_array().unwrap().contains(v))
        && ok("const", &|c| c == v)
        && ok("pattern", &|p| {
            v.as_str()
                .is_none_or(|t| pattern_matches(p.as_str().unwrap(), t))
        })
        && ok("minimum", &|m| {
            v.as_f64().is_none_or(|n| n >= m.as_f64().unwrap())
        })
        && ok("maximum", &|m| {
            v.as_f64().is_none_or(|n| n <= m.as_f64().unwrap())
        })
        && ok("exclusiveMinimum", &|m| {
            v.as_f64().is_none_or(|n| n > m.as_f64().unwrap())
        })
        && ok("anyOf", &|a| {
            a.as_array().unwrap().iter().any(|o| schema_accepts(o, v))
        })
        && ok("allOf", &|a| {
            a.as_array().unwrap().iter().all(|o| schema_accepts(o, v))
        })
        && ok("if", &|cond| {
            !schema_accepts(cond, v) || s.get("then").is_none_or(|t| schema_accepts(t, v))
        })
        && match v {
            Value::Object(m) => {
                let props = s.get("properties").and_then(Value::as_object);
                ok("required", &|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .all(|k| m.contains_key(k.as_str().unwrap()))
                }) && m.iter().all(|(k, x)| match props.and_then(|p| p.get(k)) {
                    Some(p) => schema_accepts(p, x),
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(b)) => *b,
                        Some(extra) => schema_accepts(extra, x),
                        None => true,
                    },
                })
            }
            Value::Array(items) => {
                ok("minItems", &|n| items.len() as u64 >= n.as_u64().unwrap())
                    && ok("items", &|i| items.iter().all(|x| schema_accepts(i, x)))
            }
            _ => true,
        }
}

fn schema_and_validate(text: &str) -> (bool, bool) {
    let schema = generate(SchemaFile::Cirun);
    let doc: Value = serde_yaml::from_str(text).unwrap();
    let (_, d) = parse(text);
    (
        schema_accepts(&schema, &doc),
        !d.iter().any(|d| d.is_error()),
    )
}

#[test]
fn the_schema_accepts_what_validate_only_warns_about() {
    let text = "fleet: big
run_only_when_triggered_by: core
runners:
  - name: aws
    cloud: aws
    instance_type: [t3.large]
    preemptible: maybe
    imagee: ami-1
  - name: gpu
    cloud: vast_ai
    instance_type: 1xRTX_4090
    labels: [cirun-gpu]
    preemptible: yes
    extra_config:
      disk_space: \"40\"
      verified: off
";
    assert_eq!(schema_and_validate(text), (true, true));
}

#[test]
fn the_schema_rejects_what_validate_rejects_in_a_vast_runner() {
    for body in [
        "    instance_type: 1xRTX_4090\n    gpuu: 1\n",
        "    instance_type: 1xRTX_4090\n    preemptible: maybe\n",
        "    instance_type: 1xRTX_4090\n    extra_config:\n      disk_space: -20\n",
        "    instance_type: 1xRTX_4090\n    extra_config:\n      min_reliabilty: 0.9\n",
        "    extra_config:\n      disk_space: 40\n",
    ] {
        assert_eq!(schema_and_validate(&runner(body)), (false, false), "{body}");
    }
    // A cloud nobody knows is an error for every runner.
    let text = "runners:\n  - name: r\n    cloud: heroku\n    labels: [cirun-r]\n";
    assert_eq!(schema_and_validate(text), (false, false));
}

// ---- examples and the corpus ----

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_example_file_is_clean() {
    let path = manifest_dir().join("examples/.cirun.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = parse_file(&path, &text, FileKind::Repository);
    assert!(parsed.diagnostics.is_empty(), "{}", parsed.render());
    let config = parsed.config.unwrap();
    assert!(config.runners.iter().all(|r| r.vast.is_some()));
    let vm = config.runners.iter().find(|r| r.name == "gpu-vm").unwrap();
    assert!(vm.vast.as_ref().unwrap().extra.vm);
    let any = config
        .runners
        .iter()
        .find(|r| r.name == "gpu-any-24gb")
        .unwrap();
    assert_eq!(any.vast.as_ref().unwrap().candidates[0].gpu, GpuChoice::Any);
}

/// The corpus lives in ../shared, which a fresh clone does not have; `.ci/run`
/// points `RIGGER_CIRUN_CORPUS` at it.
fn corpus() -> Option<PathBuf> {
    match std::env::var_os("RIGGER_CIRUN_CORPUS").map(PathBuf::from) {
        Some(p) if p.join("MANIFEST.tsv").is_file() => Some(p),
        Some(p) => {
            eprintln!(
                "skipping: RIGGER_CIRUN_CORPUS={} has no MANIFEST.tsv",
                p.display()
            );
            None
        }
        None => {
            eprintln!("skipping: RIGGER_CIRUN_CORPUS is not set (.ci/run sets it)");
            None
        }
    }
}

struct Entry {
    file: PathBuf,
    invalid: bool,
}

/// MANIFEST.tsv rows, mapped to the corpus file names
/// (`owner__repo.cirun.yml`, `global/owner__repo<file>`).
fn entries(dir: &Path) -> Vec<Entry> {
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    manifest
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let (repo, path) = (cols[0], cols[1]);
            let stem = repo.replace('/', "__");
            let notes = cols.get(6).copied().unwrap_or_default();
            let file = if path == ".cirun.yml" && !notes.starts_with("org-level") {
                let direct = dir.join(format!("{stem}.cirun.yml"));
                if direct.is_file() {
                    direct
                } else {
                    dir.join("global").join(format!("{stem}{path}"))
                }
            } else {
                dir.join("global").join(format!("{stem}{path}"))
            };
            Entry {
                file,
                invalid: notes.starts_with("INVALID"),
            }
        })
        .collect()
}

#[test]
fn every_usable_corpus_file_validates_without_errors() {
    let Some(dir) = corpus() else { return };
    let entries = entries(&dir);
    assert!(entries.len() >= 100, "only {} entries", entries.len());
    let mut checked = 0;
    let mut invalid = 0;
    for e in &entries {
        let text = std::fs::read_to_string(&e.file)
            .unwrap_or_else(|err| panic!("{}: {err}", e.file.display()));
        let parsed = parse_file(&e.file, &text, FileKind::from_path(&e.file));
        if e.invalid {
            invalid += 1;
            assert!(
                parsed.has_errors(),
                "{} is junk and must be rejected",
                e.file.display()
            );
        } else {
            assert!(!parsed.has_errors(), "{}", parsed.render());
        }
        for d in parsed.diagnostics.items() {
            assert_hinted(d);
        }
        // Whatever validates, the editors' schema accepts too.
        if !parsed.has_errors() && FileKind::from_path(&e.file) != FileKind::Access {
            let doc: Value = serde_yaml::from_str(&text).unwrap_or(Value::Null);
            assert!(
                doc.is_null() || schema_accepts(&generate(SchemaFile::Cirun), &doc),
                "the schema rejects {}",
                e.file.display()
            );
        }
        checked += 1;
    }
    assert_eq!(invalid, 2, "MANIFEST marks two junk files");
    eprintln!("checked {checked} corpus files");
}

#[test]
fn the_corpus_vast_ai_file_resolves() {
    let Some(dir) = corpus() else { return };
    let path = dir.join("PflareProject__PFLARE.cirun.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = parse_file(&path, &text, FileKind::Repository);
    let v = parsed.config.unwrap().runners[0].vast.clone().unwrap();
    assert_eq!(v.candidates[0].gpu_count, 1);
    assert_eq!(
        v.candidates[0].gpu,
        GpuChoice::Models {
            vast_names: vec!["RTX 3060"],
            min_vram_gb: None
        }
    );
    assert_eq!(v.extra.disk_space_gb, 40.0);
    assert_eq!(v.extra.min_ram_gb, Some(16.0));
}
