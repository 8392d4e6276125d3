//! One value of a `vast_ai` runner (`instance_type`, `machine_image`,
//! `region`, `extra_config.min_cuda`): through the catalog and version
//! parsers directly, and written into a `.cirun.yml` (quoted, and as
//! written when it fits on one line) that is parsed and searched for as
//! the engine would.
//!
//! Input: the value.

use rigger::cloud::CudaVersion;
use rigger::cloud::vast::gpus;
use rigger::cloud::vast::query::{filter_for, search_body};
use rigger::config::model::Origin;
use rigger::config::parse::parse_cirun;

use super::runtime::on_worker_stack;

pub fn check(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    on_worker_stack(|| {
        directly(value);
        let quoted = yaml_quoted(value);
        in_a_file(&quoted);
        if !value.contains(['\n', '\r']) {
            in_a_file(value);
        }
    });
}

fn directly(value: &str) {
    let _ = gpus::normalise(value);
    let _ = gpus::resolve(value);
    if let Some((count, model)) = value.split_once(['x', 'X']) {
        let _ = (count.parse::<u32>(), gpus::resolve(model));
    }
    if let Some(v) = CudaVersion::parse(value) {
        assert_eq!(CudaVersion::from_vast(v.to_vast()), v.min(cap(v)));
    }
    let _ = CudaVersion::from_image(value);
}

/// `to_vast` caps a minor version of 18 or more at `major.99`.
fn cap(v: CudaVersion) -> CudaVersion {
    CudaVersion {
        major: v.major,
        minor: v.minor.min(18),
    }
}

/// The value in each of the places a runner takes one.
fn in_a_file(value: &str) {
    let runner = |key_lines: &str| {
        format!(
            "runners:\n  - name: fuzz\n    cloud: vast_ai\n    labels: [cirun-fuzz]\n{key_lines}"
        )
    };
    let files = [
        runner(&format!(
            "    instance_type: {value}\n    extra_config:\n      min_gpu_ram: 24\n"
        )),
        runner(&format!(
            "    instance_type: 1xRTX_4090\n    machine_image: {value}\n"
        )),
        runner(&format!(
            "    instance_type: 1xRTX_4090\n    region: {value}\n"
        )),
        runner(&format!(
            "    instance_type: 1xRTX_4090\n    extra_config:\n      min_cuda: {value}\n"
        )),
    ];
    for text in files {
        let (config, _) = parse_cirun(&text, Origin::Repository);
        let Some(config) = config else { continue };
        for v in config.runners.iter().filter_map(|r| r.vast.as_ref()) {
            for c in &v.candidates {
                assert!(c.gpu_count >= 1, "{} GPUs from {value:?}", c.gpu_count);
                let _ = c.describe(&v.extra);
                let _ = search_body(&filter_for(c, &v.extra, v.cpu_arch, None));
            }
        }
    }
}

/// A YAML double-quoted scalar holding exactly `value`.
fn yaml_quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // YAML's printable set; everything else escaped.
            '\u{20}'..='\u{7e}' | '\u{85}' | '\u{a0}'..='\u{fffd}' | '\u{10000}'.. => out.push(c),
            _ if u32::from(c) <= 0xffff => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            _ => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out.push('"');
    out
}
