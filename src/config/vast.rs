//! The `vast_ai` part of a runner: its fallback lists (GPUs, images,
//! regions) checked value by value, `extra_config`, and the images a VM or a
//! container may run.

use super::check::{as_bool, as_number, as_u32};
use super::countries;
use super::diagnostics::{Diagnostic, Diagnostics};
use super::model::*;
use super::parse::get;
use super::yaml::{Kind, Node};
use crate::bootstrap;
use crate::cloud::vast::gpus::{self, GpuChoice, GpuError, GpuVendor};
use crate::text::for_log;

/// One checked value of a fallback list, or `None` where it had an error.
type Checked<T> = Vec<Option<T>>;

pub(super) fn read_vast(
    node: &Node,
    what: &str,
    lists: &[Vec<&Node>; 4],
    tuples: &[Vec<usize>],
    extra_node: Option<&Node>,
    diags: &mut Diagnostics,
) -> Option<VastRunner> {
    let extra = read_vast_extra(extra_node, diags);
    if lists[0].is_empty() {
        diags.push(
            Diagnostic::error(node.at, format!("{what} has no `instance_type`"))
                .with_hint("say which GPUs it needs, e.g. `instance_type: 1xRTX_4090`"),
        );
        return None;
    }
    let gpus: Checked<(String, u32, GpuChoice)> = lists[0]
        .iter()
        .map(|n| read_instance_type(n, &extra, diags))
        .collect();
    let images: Checked<(String, bool)> = if lists[1].is_empty() {
        vec![default_image(node, &extra, diags)]
    } else {
        lists[1]
            .iter()
            .map(|n| read_vast_image(n, &extra, diags))
            .collect()
    };
    let regions: Checked<String> = lists[2].iter().map(|n| read_region(n, diags)).collect();
    let candidates = tuples
        .iter()
        .map(|t| {
            let (instance_type, gpu_count, gpu) = gpus.get(t[0])?.clone()?;
            let (image, image_is_default) = images.get(t[1])?.clone()?;
            let region = match lists[2].is_empty() {
                true => None,
                false => Some(regions.get(t[2])?.clone()?),
            };
            let min_cuda = CudaVersion::from_image(&image).max(extra.min_cuda);
            Some(VastCandidate {
                instance_type,
                gpu_count,
                gpu,
                image,
                image_is_default,
                region,
                preemptible: lists[3].get(t[3]).and_then(|n| as_bool(n)).unwrap_or(false),
                min_cuda,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(VastRunner {
        candidates,
        extra,
        cpu_arch: "amd64",
    })
}

fn read_vast_extra(node: Option<&Node>, diags: &mut Diagnostics) -> VastExtra {
    let mut extra = VastExtra::default();
    let Some(node) = node else { return extra };
    let num = |k| get(node, k).and_then(as_number);
    if let Some(n) = get(node, "disk_space")
        && let Some(v) = as_number(n)
    {
        check_disk(n, v, diags);
        extra.disk_space_gb = v;
    }
    extra.min_ram_gb = num("min_ram");
    extra.vm = get(node, "vm").and_then(as_bool).unwrap_or(false);
    extra.max_dph = num("max_dph");
    extra.max_cost = num("max_cost");
    if let Some(v) = num("min_reliability") {
        extra.min_reliability = v;
    }
    if let Some(v) = num("min_inet_down") {
        extra.min_inet_down = v;
    }
    if let Some(v) = get(node, "verified").and_then(as_bool) {
        extra.verified = v;
    }
    if let Some(v) = get(node, "max_runtime").and_then(as_u32) {
        extra.max_runtime_minutes = v;
    }
    extra.min_gpu_ram_gb = num("min_gpu_ram");
    if let Some(n) = get(node, "min_cuda").filter(|n| !n.is_null()) {
        let text = n.text().unwrap_or_default();
        extra.min_cuda = CudaVersion::parse(text);
        if extra.min_cuda.is_none() {
            diags.push(
                Diagnostic::error(n.at, format!("`min_cuda` cannot be `{}`", for_log(text)))
                    .with_hint("a CUDA version such as `12.4` (quote it: `\"12.10\"`)"),
            );
        }
    }
    if let Some(
        env @ Node {
            kind: Kind::Map(vars),
            ..
        },
    ) = get(node, "env_vars")
    {
        for (k, v) in vars {
            let (Some(name), Some(value)) = (k.text(), v.text()) else {
                continue;
            };
            check_env_name(k, name, diags);
            check_env_length(v, name, value, diags);
            extra.env_vars.insert(name.to_string(), value.to_string());
        }
        check_env_total(env, &extra.env_vars, diags);
    }
    extra
}

/// Vast.ai's smallest disk for an instance (`disk` `min` in its OpenAPI).
pub const MIN_DISK_GB: f64 = 8.0;

fn check_disk(at: &Node, gb: f64, diags: &mut Diagnostics) {
    // Zero, negative and absurd sizes are already reported as out of range.
    if gb > 0.0 && gb < MIN_DISK_GB {
        diags.push(
            Diagnostic::error(
                at.at,
                format!("`disk_space` is {gb} GB; Vast.ai rents no less than {MIN_DISK_GB} GB"),
            )
            .with_hint("ask for at least 8 (rigger's default is 30)"),
        );
    }
}

/// One variable within Vast.ai's limit on one (`KEY=value`, see `bootstrap`).
fn check_env_length(at: &Node, name: &str, value: &str, diags: &mut Diagnostics) {
    let len = bootstrap::entry_len(name, value);
    if len > bootstrap::ENV_ENTRY_LIMIT {
        diags.push(
            Diagnostic::error(
                at.at,
                format!(
                    "`{}` is {len} characters as `{}=…`; Vast.ai takes at most {} for one variable",
                    for_log(name),
                    for_log(name),
                    bootstrap::ENV_ENTRY_LIMIT
                ),
            )
            .with_hint("shorten it, or have the job fetch long values itself"),
        );
    }
}

/// All of them within what Vast.ai's limit on the whole environment leaves
/// beside rigger's own variables.
fn check_env_total(
    at: &Node,
    vars: &std::collections::BTreeMap<String, String>,
    diags: &mut Diagnostics,
) {
    let total = bootstrap::env_total(vars);
    let budget = bootstrap::user_env_budget();
    if total > budget {
        diags.push(
            Diagnostic::error(
                at.at,
                format!(
                    "`env_vars` take {total} characters; beside rigger's own variables Vast.ai's \
                     limit of {} on the environment leaves {budget}",
                    bootstrap::ENV_TOTAL_LIMIT
                ),
            )
            .with_hint("pass fewer or shorter variables; large settings belong in the repository"),
        );
    }
}

fn check_env_name(at: &Node, name: &str, diags: &mut Diagnostics) {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        diags.push(
            Diagnostic::error(
                at.at,
                format!(
                    "`{}` is not a valid environment variable name",
                    for_log(name)
                ),
            )
            .with_hint("use letters, digits and `_`, not starting with a digit"),
        );
    }
    let upper = name.to_ascii_uppercase();
    if ["TOKEN", "SECRET", "PASSWORD", "API_KEY", "PRIVATE_KEY"]
        .iter()
        .any(|s| upper.contains(s))
    {
        diags.push(
            Diagnostic::warning(
                at.at,
                format!("`{}` looks like a secret: env_vars are visible to the host of the rented machine", for_log(name)),
            )
            .with_hint("pass secrets to the job through GitHub secrets, never through .cirun.yml"),
        );
    }
}

/// `2xRTX_4090` → ("2xRTX_4090", 2, RTX 4090).
fn read_instance_type(
    node: &Node,
    extra: &VastExtra,
    diags: &mut Diagnostics,
) -> Option<(String, u32, GpuChoice)> {
    let text = node.text()?.trim();
    let shown = for_log(text);
    let Some((count, model)) = text
        .split_once(['x', 'X'])
        .filter(|(count, model)| !count.is_empty() && !model.is_empty())
        .filter(|(count, _)| count.bytes().all(|b| b.is_ascii_digit()))
    else {
        let probably = if gpus::resolve(text).is_ok() {
            format!("; here probably `1x{shown}`")
        } else {
            String::new()
        };
        diags.push(
            Diagnostic::error(
                node.at,
                format!("`instance_type` on vast_ai must be `{{count}}x{{GPU}}`, found `{shown}`"),
            )
            .with_hint(format!(
                "for example `1xRTX_4090`, `4xA100_SXM` or `1xANY`{probably}"
            )),
        );
        return None;
    };
    let model_shown = for_log(model);
    // All digits, so a failed parse means too many of them.
    let count = count.parse::<u32>().unwrap_or(u32::MAX);
    if count == 0 {
        diags.push(
            Diagnostic::error(node.at, format!("`{shown}` asks for 0 GPUs"))
                .with_hint(format!("ask for at least one: `1x{model_shown}`")),
        );
        return None;
    }
    if count > gpus::MAX_GPU_COUNT {
        diags.push(
            Diagnostic::error(
                node.at,
                format!(
                    "`{shown}` asks for more GPUs than any Vast.ai host has (at most {})",
                    gpus::MAX_GPU_COUNT
                ),
            )
            .with_hint(format!(
                "the largest hosts carry 8 to 16 GPUs, e.g. `8x{model_shown}`"
            )),
        );
        return None;
    }
    let choice = match gpus::resolve(model) {
        Ok(c) => c,
        Err(GpuError::Unknown) => {
            let near = match diags.may_suggest() {
                true => gpus::suggestions(model),
                false => Vec::new(),
            };
            let hint = if near.is_empty() {
                "see the GPU models in the README, or use `1xANY` with `extra_config.min_gpu_ram`"
                    .to_string()
            } else {
                format!("did you mean {}?", near.join(", "))
            };
            diags.push(
                Diagnostic::error(
                    node.at,
                    format!("unknown GPU model `{model_shown}` in `{shown}`"),
                )
                .with_hint(hint),
            );
            return None;
        }
        Err(too_much @ GpuError::TooMuchMemory { .. }) => {
            diags.push(
                Diagnostic::error(node.at, format!("{too_much}, in `{shown}`")).with_hint(
                    "write the memory per GPU in GB, such as `1xA100_SXM4_80GB`; \
                     or leave it out to take any memory size of that model",
                ),
            );
            return None;
        }
    };
    if choice.vendor() == Some(GpuVendor::Amd) {
        // Listed on Vast.ai, but no runner could start there: the machine
        // checks its GPUs with nvidia-smi before it registers.
        diags.push(
            Diagnostic::error(
                node.at,
                format!(
                    "`{model_shown}` in `{shown}` is an AMD GPU; rigger's runners need NVIDIA GPUs"
                ),
            )
            .with_hint(
                "each machine checks its GPUs with nvidia-smi before its runner starts, \
                 and an AMD host has none; pick an NVIDIA model",
            ),
        );
        return None;
    }
    if choice == GpuChoice::Any && extra.min_gpu_ram_gb.is_none() {
        diags.push(
            Diagnostic::error(
                node.at,
                format!("`{shown}` needs `extra_config.min_gpu_ram` to say how much GPU memory the job needs"),
            )
            .with_hint("for example `min_gpu_ram: 24` (GB per GPU); rigger then rents the cheapest GPU that fits"),
        );
        return None;
    }
    Some((text.to_string(), count, choice))
}

fn is_vm_image(image: &str) -> bool {
    image
        .strip_prefix("docker.io/")
        .unwrap_or(image)
        .starts_with("vastai/kvm")
}

/// Vast.ai starts a container instead of a VM unless the image is registry-qualified.
fn qualify_vm_image(image: &str) -> String {
    if image.starts_with("docker.io/") {
        image.to_string()
    } else {
        format!("docker.io/{image}")
    }
}

const VM_IMAGE_EXAMPLE: &str = "docker.io/vastai/kvm:ubuntu_cli_22.04-2025-11-21";

fn default_image(
    node: &Node,
    extra: &VastExtra,
    diags: &mut Diagnostics,
) -> Option<(String, bool)> {
    if extra.vm {
        diags.push(
            Diagnostic::error(
                node.at,
                "VM mode (`extra_config.vm: true`) needs a `machine_image`".into(),
            )
            .with_hint(format!(
                "use a Vast.ai VM image, e.g. `machine_image: {VM_IMAGE_EXAMPLE}`"
            )),
        );
        return None;
    }
    Some((DEFAULT_VAST_IMAGE.to_string(), true))
}

fn read_vast_image(
    node: &Node,
    extra: &VastExtra,
    diags: &mut Diagnostics,
) -> Option<(String, bool)> {
    let Some(image) = node.text().filter(|_| !node.is_null()) else {
        diags.push(
            Diagnostic::error(
                node.at,
                "a vast_ai `machine_image` is a Docker image name".into(),
            )
            .with_hint("for example `nvidia/cuda:12.4.1-base-ubuntu22.04`"),
        );
        return None;
    };
    let image = image.trim();
    let shown = for_log(image);
    if extra.vm && !is_vm_image(image) {
        diags.push(
            Diagnostic::error(node.at, format!("VM mode needs a Vast.ai VM image, not `{shown}`"))
                .with_hint(format!(
                    "use `{VM_IMAGE_EXAMPLE}`, or set `extra_config.vm: false` to run `{shown}` as a container"
                )),
        );
        return None;
    }
    if !extra.vm && is_vm_image(image) {
        diags.push(
            Diagnostic::error(
                node.at,
                format!("`{shown}` is a Vast.ai VM image, but the runner is in container mode"),
            )
            .with_hint("set `extra_config.vm: true` to boot it as a VM"),
        );
        return None;
    }
    let image = if extra.vm {
        qualify_vm_image(image)
    } else {
        image.to_string()
    };
    Some((image, false))
}

fn read_region(node: &Node, diags: &mut Diagnostics) -> Option<String> {
    let text = node.text()?.trim();
    if countries::is_country_code(text) {
        return Some(text.to_ascii_uppercase());
    }
    let hint = match countries::common_mistake(text) {
        Some(fix) => format!("did you mean {fix}?"),
        None => "use a two-letter country code such as US, CA, DE or GB; a list is tried in order"
            .into(),
    };
    diags.push(
        Diagnostic::error(
            node.at,
            format!(
                "`region` on vast_ai is a country code; `{}` is not one",
                for_log(text)
            ),
        )
        .with_hint(hint),
    );
    None
}
