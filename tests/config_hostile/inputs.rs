//! Hostile config files, each at most [`MAX_INPUT`] bytes (but the one that
//! is over the file limit on purpose): every one once crashed, hung or
//! exhausted rigger, or is of a kind that could. Shared by
//! `tests/config_hostile.rs` (the parsers, measured) and
//! `tests/cli_validate.rs` (`rigger validate` on each, as a file).

/// Most bytes of one hostile input: what an attacker's push costs nothing to
/// make, and what a bounded parser must answer quickly.
pub const MAX_INPUT: usize = 64 * 1024;

/// One hostile file: a name that tells its kind (`*.cirun.yml`,
/// `*.cirun.global.yml`, `*.access.yml`) and its text.
pub struct Hostile {
    pub file: &'static str,
    pub text: String,
}

/// Every hostile file, for the tests that check them all alike.
pub fn all() -> Vec<Hostile> {
    let h = |file, text| Hostile { file, text };
    vec![
        h("alias_bomb.cirun.yml", alias_bomb()),
        h("alias_fan.cirun.yml", alias_fan()),
        h("deep_block_seq.cirun.yml", deep_block_sequence(7000)),
        h("deep_block_map.cirun.yml", deep_block_mapping()),
        h("deep_flow_map.cirun.yml", deep_flow_mapping()),
        h("deep_flow_mixed.cirun.yml", deep_flow_mixed()),
        h("fallback_product.cirun.yml", fallback_product()),
        h("shared_label.cirun.yml", runners_sharing_a_label(700)),
        h("chained_labels.cirun.yml", chained_labels()),
        h("unknown_keys.cirun.yml", unknown_keys()),
        h("unknown_gpus.cirun.yml", unknown_gpus()),
        h("unknown_clouds.cirun.yml", unknown_clouds()),
        h("gpu_memory.cirun.yml", gpu_memory_overflow()),
        h("umlaut_label.cirun.yml", umlaut_label()),
        h("too_large.cirun.yml", too_large()),
        h("long_scalars.cirun.yml", long_scalars()),
        h("aliased_long_scalar.cirun.yml", aliased_long_scalar()),
        h("many_documents.cirun.yml", many_documents()),
        h("huge_numbers.cirun.yml", huge_numbers()),
        h("colon_repairs.cirun.yml", colon_repairs()),
        h("many_keys.cirun.yml", many_keys()),
        h("duplicate_keys.cirun.yml", duplicate_keys()),
        h("wide_list.cirun.yml", wide_list()),
        h("self_alias.cirun.yml", self_alias()),
        h("org_alias_bomb.cirun.global.yml", alias_bomb()),
        h("org_deep.cirun.global.yml", deep_block_sequence(7000)),
        h("unknown_ids.access.yml", unknown_policy_ids()),
        h("duplicate_ids.access.yml", duplicate_policy_ids()),
        h("deep.access.yml", deep_access()),
        h("version.access.yml", "version: 1e30\npolicies: []\n".into()),
    ]
}

fn runner_head(name: &str) -> String {
    format!("  - name: {name}\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n")
}

/// Nine levels of nine aliases: 9^10 nodes once expanded (3.8 GB in 4 s).
pub fn alias_bomb() -> String {
    let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        let items = [prev.as_str(); 9].join(", ");
        s.push_str(&format!("a{i}: &a{i} [{items}]\n"));
    }
    s.push_str("runners: []\n");
    s
}

/// One anchor of 2,000 values, then aliases of it: the budget runs out at
/// an alias, not at the anchor.
pub fn alias_fan() -> String {
    let values = vec!["x"; 2000].join(", ");
    let aliases = vec!["*big"; 2000].join(", ");
    format!("big: &big [{values}]\nfan: [{aliases}]\nrunners: []\n")
}

/// `depth` block sequences, one inside the other, under `extra_config`
/// (7,000 in 14 KB once overflowed a 2 MiB stack and aborted).
pub fn deep_block_sequence(depth: usize) -> String {
    format!(
        "runners:\n  - name: r\n    cloud: aws\n    labels: [cirun-r]\n    extra_config:\n      BlockDeviceMappings:\n        {}x\n",
        "- ".repeat(depth)
    )
}

/// Block mappings nested by indentation, as deep as 64 KB allows.
pub fn deep_block_mapping() -> String {
    let mut s = String::from("runners:\n");
    let mut depth = 1;
    while s.len() + 2 * depth + 4 < MAX_INPUT {
        s.push_str(&" ".repeat(2 * depth));
        s.push_str("a:\n");
        depth += 1;
    }
    s
}

/// `{a: {a: {a: …`, the flow form.
pub fn deep_flow_mapping() -> String {
    let n = (MAX_INPUT - 64) / 5;
    format!("runners: {}x{}\n", "{a: ".repeat(n), "}".repeat(n))
}

/// `[{a: [{a: …`, flow sequences and mappings alternating.
pub fn deep_flow_mixed() -> String {
    let n = (MAX_INPUT - 64) / 8;
    format!("runners: {}x{}\n", "[{a: ".repeat(n), "}]".repeat(n))
}

/// Fallback lists of 60, 61, 62 and 63 items: 14.3 million candidates.
pub fn fallback_product() -> String {
    let list = |n: usize, item: &str| format!("[{}]", vec![item; n].join(", "));
    format!(
        "runners:\n  - name: r\n    cloud: vast_ai\n    labels: [cirun-r]\n    instance_type: {}\n    machine_image: {}\n    region: {}\n    preemptible: {}\n",
        list(60, "1xRTX_4090"),
        list(61, "nvidia/cuda:12.4.1-base-ubuntu22.04"),
        list(62, "US"),
        list(63, "true"),
    )
}

/// `n` runners with one label (1,800 once made 1.6 million warnings).
pub fn runners_sharing_a_label(n: usize) -> String {
    let mut s = String::from("runners:\n");
    for i in 0..n {
        s.push_str(&format!(
            "  - name: r{i}\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-x]\n"
        ));
    }
    s
}

/// Runner i has labels i and i+1: every runner overlaps the one before.
pub fn chained_labels() -> String {
    let mut s = String::from("runners:\n");
    let mut i = 0;
    while s.len() < MAX_INPUT - 200 {
        s.push_str(&format!(
            "{}    labels: [cirun-{i}, cirun-{}]\n",
            runner_head(&format!("r{i}")),
            i + 1
        ));
        i += 1;
    }
    s
}

/// Thousands of misspelled keys, each worth a "did you mean".
pub fn unknown_keys() -> String {
    let mut s = format!("runners:\n{}    labels: [cirun-r]\n", runner_head("r"));
    let mut i = 0;
    while s.len() < MAX_INPUT - 64 {
        s.push_str(&format!("    instance_typ{i}: x\n"));
        i += 1;
    }
    s
}

/// Thousands of unknown GPU models in one fallback list.
pub fn unknown_gpus() -> String {
    let mut s = String::from(
        "runners:\n  - name: r\n    cloud: vast_ai\n    labels: [cirun-r]\n    instance_type:\n",
    );
    let mut i = 0;
    while s.len() < MAX_INPUT - 64 {
        s.push_str(&format!("      - 1xRTX_40{i}\n"));
        i += 1;
    }
    s
}

/// Thousands of runners with a misspelled cloud.
pub fn unknown_clouds() -> String {
    let mut s = String::from("runners:\n");
    let mut i = 0;
    while s.len() < MAX_INPUT - 64 {
        s.push_str(&format!("  - name: r{i}\n    cloud: vastai{i}\n"));
        i += 1;
    }
    s
}

/// 4294968 GB × 1000 × 97 overflowed a u32.
pub fn gpu_memory_overflow() -> String {
    "runners:\n  - name: r\n    cloud: vast_ai\n    instance_type: 1xA100_4294968GB\n    labels: [cirun-r]\n".into()
}

/// A 31-byte file whose label once panicked label matching.
pub fn umlaut_label() -> String {
    "runners:\n  - labels: [cirunü]\n".into()
}

/// One byte over the limit on files.
pub fn too_large() -> String {
    let mut s = format!("runners:\n{}    labels: [cirun-r]\n", runner_head("r"));
    let limit = rigger::config::yaml::MAX_FILE_BYTES;
    while s.len() <= limit {
        s.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    s.truncate(limit + 1);
    s
}

/// One long scalar in every place that quotes a value in a message.
pub fn long_scalars() -> String {
    // YAML allows implicit keys of at most 1024 characters.
    let long = "ü".repeat(1000);
    format!(
        "runners:\n  - name: {long}\n    cloud: vast_ai{long}\n    instance_type: 1x{long}\n    labels: [{long}--{long}]\n    region: {long}\n    {long}: 1\n    extra_config:\n      env_vars: {{{long}: x}}\n      min_cuda: {long}\n  - name: b\n    cloud: vast_ai\n    instance_type: {long}x{long}\n    machine_image: vastai/kvm{long}\n    labels: [cirun-b]\n"
    )
}

/// A 30 KB scalar repeated by aliases: few nodes, many bytes.
pub fn aliased_long_scalar() -> String {
    let long = "y".repeat(30_000);
    let aliases = vec!["*s"; 1000].join(", ");
    format!("s: &s {long}\nmany: [{aliases}]\nrunners: []\n")
}

/// Sixteen thousand `---` lines.
pub fn many_documents() -> String {
    format!(
        "runners: []\n{}",
        "---\nrunners: []\n".repeat(MAX_INPUT / 20)
    )
}

/// Numbers no machine has, written every way YAML and Rust read numbers.
pub fn huge_numbers() -> String {
    // First, so that its error is among those shown.
    let mut s = format!(
        "runners:\n  - name: big\n    cloud: vast_ai\n    instance_type: {}xRTX_4090\n    labels: [cirun-big]\n",
        "9".repeat(40)
    );
    let values = [
        "99999999999999999999999999",
        "-99999999999999999999999999",
        "1e400",
        "-1e400",
        ".inf",
        "-.inf",
        ".nan",
        "\"NaN\"",
        "\"inf\"",
        "4294967296",
        "18446744073709551616",
        "-0",
        "0x7fffffff",
        "1_000",
    ];
    for (i, v) in values.iter().enumerate() {
        s.push_str(&format!(
            "{}    labels: [cirun-{i}]\n    extra_config:\n      disk_space: {v}\n      min_ram: {v}\n      max_dph: {v}\n      max_cost: {v}\n      min_reliability: {v}\n      min_inet_down: {v}\n      max_runtime: {v}\n      min_gpu_ram: {v}\n",
            runner_head(&format!("r{i}"))
        ));
        s.push_str(&format!(
            "  - name: idle{i}\n    cloud: on_prem\n    labels: [cirun-idle{i}]\n    idle:\n      usage_based: {{trigger: runner_allocated, replicas: {v}, duration: {v}}}\n"
        ));
    }
    s
}

/// Hundreds of `key: text: with a colon` lines, each repaired by
/// reading the file once more.
pub fn colon_repairs() -> String {
    let mut s = String::from("runners: []\nsetup_info:\n");
    while s.len() < MAX_INPUT - 128 {
        s.push_str("  - group: G\n    detail: see link: https://cirun.io\n");
    }
    s
}

/// One mapping with thousands of distinct keys.
pub fn many_keys() -> String {
    let mut s = format!(
        "runners:\n{}    labels: [cirun-r]\n    extra_config:\n      env_vars:\n",
        runner_head("r")
    );
    let mut i = 0;
    while s.len() < MAX_INPUT - 64 {
        s.push_str(&format!("        V{i}: x\n"));
        i += 1;
    }
    s
}

/// One mapping with one key thousands of times.
pub fn duplicate_keys() -> String {
    let mut s = format!("runners:\n{}    labels: [cirun-r]\n", runner_head("r"));
    while s.len() < MAX_INPUT - 64 {
        s.push_str("    region: US\n");
    }
    s
}

/// One list of thirty thousand values.
pub fn wide_list() -> String {
    let n = (MAX_INPUT - 256) / 2;
    format!(
        "runners:\n  - name: r\n    cloud: aws\n    labels: [cirun-r]\n    region: [{}]\n",
        vec!["a"; n].join(",")
    )
}

/// An alias inside the node it names.
pub fn self_alias() -> String {
    "a: &a [1, *a]\nrunners: []\n".into()
}

/// Thousands of policies, and a rule naming thousands that are not there.
pub fn unknown_policy_ids() -> String {
    let n = 2000;
    let mut s = String::from("policies:\n");
    for i in 0..n {
        s.push_str(&format!("  - id: policy-{i}\n"));
    }
    let unknown: Vec<String> = (0..n).map(|i| format!("polcy-{i}")).collect();
    s.push_str(&format!(
        "access_control:\n  - resource: r\n    policies: [{}]\n",
        unknown.join(", ")
    ));
    s
}

/// One policy id thousands of times.
pub fn duplicate_policy_ids() -> String {
    let mut s = String::from("policies:\n");
    while s.len() < MAX_INPUT - 32 {
        s.push_str("  - id: same\n");
    }
    s
}

/// An `.access.yml` nested deeper than any walk should go.
pub fn deep_access() -> String {
    format!(
        "policies:\n  - id: p\n    teams:\n      {}x\n",
        "- ".repeat(7000)
    )
}
