//! From a YAML tree to the model, reporting every problem on the way.
//!
//! Severity follows one rule: a mistake that would make rigger rent the wrong
//! machine, or never rent one, is an error in a `vast_ai` runner; in a runner
//! for another cloud (which Cirun, not rigger, provisions) it is a warning,
//! so it never blocks the file's Vast.ai runners.

use std::collections::HashMap;

use super::check::{Checker, Strictness, as_bool, as_u32};
use super::diagnostics::{Diagnostic, Diagnostics, Severity};
use super::fallback;
use super::keys::{self, Key};
use super::labels;
use super::model::*;
use super::vast;
use super::yaml::{self, Kind, Node};
use crate::text::for_log;

/// More candidates than this is almost certainly a mistake in list lengths.
const MANY_CANDIDATES: usize = 100;

/// The keys whose lists make a runner's fallback candidates, in the order
/// `fallback::expand` takes their lengths.
const FALLBACK_KEYS: [&str; 4] = ["instance_type", "machine_image", "region", "preemptible"];

/// Parse a `.cirun.yml` or `.cirun.global.yml`. The config is `None` only
/// when the text is not a YAML mapping at all; otherwise it holds every
/// runner that could be read, and `VastRunner`s only for runners without errors.
pub fn parse_cirun(text: &str, origin: Origin) -> (Option<CirunConfig>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let config = read_root(text, &mut diags, "a .cirun.yml").and_then(|root| {
        let mut checker = Checker {
            diags: &mut diags,
            strictness: Strictness::TOP,
        };
        if !checker.object(&root, keys::TOP, "the file", &["runners"]) {
            return None;
        }
        Some(read_config(&root, origin, &mut diags))
    });
    diags.sort();
    (config, diags)
}

/// The document's root node, or an error saying why there is none.
pub(super) fn read_root(text: &str, diags: &mut Diagnostics, what: &str) -> Option<Node> {
    let root = yaml::parse(text, diags);
    match root {
        Some(r) if !r.is_null() => Some(r),
        _ => {
            if diags.errors() == 0 {
                diags.push(
                    Diagnostic::error(
                        Location { line: 1, column: 1 },
                        "the file is empty".to_string(),
                    )
                    .with_hint(format!(
                        "{what} needs a `runners:` list; see examples/.cirun.yml"
                    )),
                );
            }
            None
        }
    }
}

fn read_config(root: &Node, origin: Origin, diags: &mut Diagnostics) -> CirunConfig {
    let mut runners = Vec::new();
    match get(root, "runners") {
        Some(Node {
            kind: Kind::Seq(items),
            at,
        }) => {
            if items.is_empty() {
                diags.push(
                    Diagnostic::warning(
                        *at,
                        "`runners` is empty: no job can get a runner from this file".into(),
                    )
                    .with_hint(
                        "add a runner under `runners:`, e.g. `- name: gpu`, `cloud: vast_ai`, \
                         `instance_type: 1xRTX_4090`, `labels: [cirun-gpu]` (see examples/.cirun.yml)",
                    ),
                );
            }
            for (i, item) in items.iter().enumerate() {
                if let Some(r) = read_runner(item, i, origin, diags) {
                    runners.push(r);
                }
            }
        }
        Some(other) => diags.push(
            Diagnostic::error(
                other.at,
                format!(
                    "`runners` must be a list of runner definitions, found {}",
                    other.describe()
                ),
            )
            .with_hint("start each runner with `- name: …` on its own line under `runners:`"),
        ),
        None => {
            // Reported as a missing required key by the checker.
            diags.push(
                Diagnostic::error(root.at, "the file has no `runners:`".into())
                    .with_hint("list runner definitions under `runners:`; see examples/.cirun.yml"),
            );
        }
    }
    warn_overlapping_labels(&runners, diags);
    CirunConfig {
        runners,
        setup_info: read_setup_info(get(root, "setup_info")),
        run_only_when_triggered_by: get(root, "run_only_when_triggered_by")
            .and_then(Node::text)
            .map(str::to_string),
    }
}

fn read_setup_info(node: Option<&Node>) -> Vec<SetupInfo> {
    items(node)
        .into_iter()
        .filter_map(|n| {
            Some(SetupInfo {
                group: get(n, "group")?.text()?.to_string(),
                detail: get(n, "detail")?.text()?.to_string(),
            })
        })
        .collect()
}

fn read_runner(
    node: &Node,
    index: usize,
    origin: Origin,
    diags: &mut Diagnostics,
) -> Option<RunnerDef> {
    if !matches!(node.kind, Kind::Map(_)) {
        diags.push(
            Diagnostic::error(
                node.at,
                format!(
                    "each runner must be a mapping with `name`, `cloud`, `instance_type`…, found {}",
                    node.describe()
                ),
            )
            .with_hint("write the runner's keys indented under its `- name: …` line"),
        );
        return None;
    }
    let errors_before = diags.errors();
    let name = get(node, "name")
        .and_then(Node::text)
        .map(str::to_string)
        .unwrap_or_else(|| format!("#{}", index + 1));
    let what = format!("runner `{}`", for_log(&name));
    let cloud = read_cloud(node, &what, diags);
    let strictness = match cloud {
        Some(Cloud::VastAi) => Strictness::STRICT,
        _ => Strictness::ADVISORY,
    };
    let severity = strictness.problems;
    let mut checker = Checker { diags, strictness };
    checker.object(node, keys::RUNNER, &what, &["cloud", "extra_config"]);
    let extra_node = get(node, "extra_config");
    if let Some(extra) = extra_node {
        let table = extra_table(cloud);
        checker.object(extra, &table, &format!("`extra_config` of {what}"), &[]);
    }

    let labels = read_labels(node, &what, severity, diags);
    let idle = read_idle(get(node, "idle"), cloud, severity, diags);

    let lists = FALLBACK_KEYS.map(|key| items(get(node, key)));
    let lengths: Vec<usize> = lists.iter().map(|l| l.len().max(1)).collect();
    let tuples = match fallback::expand(&lengths) {
        Ok(t) => t,
        Err(too_many) => {
            diags.push(too_many_candidates(
                node, &what, &lengths, &too_many, severity,
            ));
            Vec::new()
        }
    };
    if tuples.len() > MANY_CANDIDATES {
        diags.push(
            Diagnostic::warning(
                node.at,
                format!(
                    "{what} expands to {} fallback candidates; each is tried in turn",
                    tuples.len()
                ),
            )
            .with_hint(
                "lists of equal length zip; lists of different lengths multiply (see README)",
            ),
        );
    }
    let candidates = tuples
        .iter()
        .map(|t| Candidate {
            instance_type: lists[0]
                .get(t[0])
                .and_then(|n| n.text())
                .map(str::to_string),
            machine_image: lists[1].get(t[1]).and_then(|n| image_of(n)),
            region: lists[2]
                .get(t[2])
                .and_then(|n| n.text())
                .map(str::to_string),
            preemptible: lists[3].get(t[3]).and_then(|n| as_bool(n)).unwrap_or(false),
        })
        .collect();

    let mut vast = None;
    if cloud == Some(Cloud::VastAi) {
        if let Some(gpu) = get(node, "gpu") {
            diags.push(
                Diagnostic::warning(
                    gpu.at,
                    "`gpu` is not used on vast_ai: the GPUs come from `instance_type`".into(),
                )
                .with_hint("remove it, and write the GPU as `instance_type: 1xRTX_4090`"),
            );
        }
        vast = vast::read_vast(node, &what, &lists, &tuples, extra_node, diags);
    }
    if diags.errors() > errors_before {
        vast = None;
    }
    if let Some(v) = &mut vast {
        v.cpu_arch = super::model::cpu_arch_for(&labels);
    }

    Some(RunnerDef {
        name,
        cloud: cloud.unwrap_or(Cloud::Aws),
        origin,
        location: node.at,
        labels,
        candidates,
        gpu: get(node, "gpu").and_then(Node::text).map(str::to_string),
        idle,
        extra_config: extra_node.map(Node::to_value),
        vast,
    })
    .filter(|_| cloud.is_some())
}

/// The error for fallback lists whose lengths multiply past the limit.
fn too_many_candidates(
    node: &Node,
    what: &str,
    lengths: &[usize],
    too_many: &fallback::TooManyCandidates,
    severity: Severity,
) -> Diagnostic {
    let sizes: Vec<String> = FALLBACK_KEYS
        .iter()
        .zip(lengths)
        .filter(|(_, len)| **len > 1)
        .map(|(key, len)| format!("{key} {len}"))
        .collect();
    Diagnostic::new(
        severity,
        node.at,
        format!(
            "{what}: its lists would make {} fallback candidates ({}); rigger tries at most {}",
            too_many.would_make,
            sizes.join(" × "),
            fallback::MAX_CANDIDATES
        ),
    )
    .with_hint(
        "lists of equal length zip position by position and lists of different lengths \
         multiply: make the lists the same length, or shorten them",
    )
}

fn read_cloud(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<Cloud> {
    let Some(cloud_node) = get(node, "cloud") else {
        diags.push(
            Diagnostic::error(node.at, format!("{what} has no `cloud`"))
                .with_hint("add `cloud: vast_ai` for a Vast.ai GPU runner"),
        );
        return None;
    };
    let text = cloud_node.text().filter(|_| !cloud_node.is_null());
    let cloud = text.and_then(Cloud::parse);
    if cloud.is_none() {
        let shown = text.unwrap_or("");
        let hint = match super::suggest::nearest_key_for(diags, shown, keys::CLOUDS) {
            Some(n) => format!("did you mean `{n}`?"),
            None => format!(
                "rigger provisions `vast_ai`; Cirun also knows {}",
                keys::CLOUDS.join(", ")
            ),
        };
        diags.push(
            Diagnostic::error(
                cloud_node.at,
                format!("unsupported cloud `{}` in {what}", for_log(shown)),
            )
            .with_hint(hint),
        );
    } else if cloud != Some(Cloud::VastAi) {
        diags.push(
            Diagnostic::warning(
                cloud_node.at,
                format!(
                    "{what} is for `{}`: not provisioned by rigger (checked as far as Cirun documents it)",
                    text.unwrap_or_default()
                ),
            )
            .with_hint(
                "Cirun (or another controller) must serve its jobs; for rigger to rent a GPU \
                 for them, write `cloud: vast_ai` with an `instance_type` such as `1xRTX_4090`",
            ),
        );
    }
    cloud
}

fn extra_table(cloud: Option<Cloud>) -> Vec<Key> {
    let specific: &[Key] = match cloud {
        Some(Cloud::VastAi) => return keys::EXTRA_VAST.to_vec(),
        Some(Cloud::Aws) => keys::EXTRA_AWS,
        Some(Cloud::Gcp) => keys::EXTRA_GCP,
        Some(Cloud::Azure) => keys::EXTRA_AZURE,
        Some(Cloud::OnPrem) => keys::EXTRA_ON_PREM,
        _ => &[],
    };
    [keys::EXTRA_GENERAL, specific].concat()
}

fn read_labels(
    node: &Node,
    what: &str,
    severity: Severity,
    diags: &mut Diagnostics,
) -> Vec<String> {
    let labels_node = get(node, "labels");
    if let Some(
        n @ Node {
            kind: Kind::Scalar { .. },
            ..
        },
    ) = labels_node
        && !n.is_null()
    {
        diags.push(
            Diagnostic::warning(
                n.at,
                "`labels` is a single string; write it as a list".into(),
            )
            .with_hint(format!(
                "labels:\n  - {}",
                for_log(n.text().unwrap_or_default())
            )),
        );
    }
    let labels: Vec<String> = items(labels_node)
        .iter()
        .filter_map(|n| n.text().filter(|_| !n.is_null()).map(str::to_string))
        .collect();
    if labels.is_empty() {
        diags.push(
            Diagnostic::new(
                severity,
                node.at,
                format!("{what} has no labels, so no job can ever match it"),
            )
            .with_hint("add `labels: [cirun-<something>]` and use it in `runs-on`"),
        );
        return labels;
    }
    if !labels::is_rigger_job(&labels) {
        diags.push(
            Diagnostic::new(
                severity,
                labels_node.map_or(node.at, |n| n.at),
                format!("none of the labels of {what} starts with `cirun-`"),
            )
            .with_hint(
                "a job is rigger's (and Cirun's) only when a `runs-on` label starts with `cirun-`; \
                 rename one, e.g. `cirun-gpu`",
            ),
        );
    }
    for n in items(labels_node) {
        if let Some(l) = n.text().filter(|l| l.contains("--")) {
            diags.push(
                Diagnostic::new(
                    severity,
                    n.at,
                    format!(
                        "label `{}` contains `--`, so no job can match it",
                        for_log(l)
                    ),
                )
                .with_hint(format!(
                    "everything after `--` in `runs-on` is a per-run suffix ignored when matching; \
                     name the label `{}` and write `runs-on: {}--${{{{ github.run_id }}}}`",
                    labels::strip_suffix(l),
                    labels::strip_suffix(l)
                )),
            );
        }
    }
    labels
}

fn read_idle(
    node: Option<&Node>,
    cloud: Option<Cloud>,
    severity: Severity,
    diags: &mut Diagnostics,
) -> Option<Idle> {
    let node = node?;
    let schedule = get(node, "schedule");
    let usage = get(node, "usage_based");
    if schedule.is_some() && usage.is_some() {
        diags.push(
            Diagnostic::new(
                severity,
                node.at,
                "`idle` holds both `schedule` and `usage_based`; use one of them".into(),
            )
            .with_hint("Cirun does not support mixing the two in one runner"),
        );
    }
    if cloud == Some(Cloud::VastAi) {
        diags.push(
            Diagnostic::warning(
                node.at,
                "rigger does not keep idle pools yet: jobs get machines on demand".into(),
            )
            .with_hint("remove `idle` to silence this; an idle GPU is billed every second"),
        );
    }
    if let Some(s) = schedule {
        let windows = items(Some(s))
            .into_iter()
            .filter_map(|w| {
                let text = |k| get(w, k).and_then(Node::text).map(str::to_string);
                let window = IdleWindow {
                    day: text("day")?,
                    time: text("time")?,
                    timezone: text("timezone")?,
                    replicas: get(w, "replicas").and_then(as_u32)?,
                };
                check_window(w, &window, severity, diags);
                Some(window)
            })
            .collect();
        return Some(Idle::Schedule(windows));
    }
    if let Some(u) = usage {
        return Some(Idle::UsageBased {
            replicas: get(u, "replicas").and_then(as_u32).unwrap_or(0),
            duration_minutes: get(u, "duration").and_then(as_u32).unwrap_or(0),
        });
    }
    get(node, "replicas").and_then(as_u32).map(Idle::Replicas)
}

fn check_window(node: &Node, w: &IdleWindow, severity: Severity, diags: &mut Diagnostics) {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let day_ok = w
        .day
        .split('-')
        .all(|d| DAYS.contains(&d.to_ascii_lowercase().as_str()));
    if !day_ok {
        let at = get(node, "day").map_or(node.at, |n| n.at);
        diags.push(
            Diagnostic::new(
                severity,
                at,
                format!("`day` cannot be `{}`", for_log(&w.day)),
            )
            .with_hint("a day (`mon`…`sun`) or a range such as `mon-fri`"),
        );
    }
    let hours: Vec<Option<u32>> = w.time.split('-').map(|h| h.trim().parse().ok()).collect();
    let time_ok = matches!(hours.as_slice(), [Some(a), Some(b)] if a < b && *b <= 24);
    if !time_ok {
        let at = get(node, "time").map_or(node.at, |n| n.at);
        diags.push(
            Diagnostic::new(
                severity,
                at,
                format!("`time` cannot be `{}`", for_log(&w.time)),
            )
            .with_hint("a 24-hour range such as `9-17`"),
        );
    }
}
// ---- helpers ----

/// Runners that share `cirun-` labels with an earlier runner: a job asking
/// only for a shared label always gets the earliest runner that has it.
///
/// Linear in the labels, not quadratic in the runners: each label is
/// charged to the first runner that has it, and the runners sharing the same
/// labels with the same earlier runner make one warning (1,800 runners with
/// one label once made 1.6 million).
fn warn_overlapping_labels(runners: &[RunnerDef], diags: &mut Diagnostics) {
    let mut first_with: HashMap<String, usize> = HashMap::new();
    let mut overlaps: Vec<Overlap> = Vec::new();
    let mut index: HashMap<(usize, Vec<String>), usize> = HashMap::new();
    for (j, runner) in runners.iter().enumerate() {
        // The earlier runners this one shares labels with, and the labels.
        let mut shared: Vec<(usize, Vec<String>)> = Vec::new();
        for label in runner.labels.iter().filter(|l| labels::has_prefix(l)) {
            let key = label.to_ascii_lowercase();
            match first_with.get(&key) {
                None => {
                    first_with.insert(key, j);
                }
                Some(&i) if i == j => {}
                Some(&i) => match shared.iter_mut().find(|(e, _)| *e == i) {
                    Some((_, keys)) if !keys.contains(&key) => keys.push(key),
                    Some(_) => {}
                    None => shared.push((i, vec![key])),
                },
            }
        }
        for (earlier, mut keys) in shared {
            keys.sort();
            let n = *index.entry((earlier, keys.clone())).or_insert_with(|| {
                overlaps.push(Overlap {
                    earlier,
                    keys,
                    later: Vec::new(),
                });
                overlaps.len() - 1
            });
            overlaps[n].later.push(j);
        }
    }
    for o in overlaps {
        diags.push(o.warning(runners));
    }
}

/// Later runners sharing the same labels with the same earlier runner.
struct Overlap {
    earlier: usize,
    /// The shared labels, lower-cased and sorted.
    keys: Vec<String>,
    later: Vec<usize>,
}

impl Overlap {
    /// Most later runners a warning names; the rest are counted.
    const NAMED: usize = 3;

    fn warning(&self, runners: &[RunnerDef]) -> Diagnostic {
        let earlier = &runners[self.earlier];
        // The labels as the earlier runner spells them.
        let shared: Vec<String> = earlier
            .labels
            .iter()
            .filter(|l| self.keys.contains(&l.to_ascii_lowercase()))
            .map(|l| for_log(l).into_owned())
            .collect();
        let mut named: Vec<String> = self
            .later
            .iter()
            .take(Self::NAMED)
            .map(|&i| format!("`{}`", for_log(&runners[i].name)))
            .collect();
        let who = match self.later.len() {
            1 => format!("runner {} shares", named[0]),
            n if n <= Self::NAMED => {
                let last = named.pop().unwrap_or_default();
                format!("runners {} and {last} share", named.join(", "))
            }
            n => format!(
                "runners {} and {} more share",
                named.join(", "),
                n - Self::NAMED
            ),
        };
        let name = for_log(&earlier.name);
        Diagnostic::warning(
            runners[self.later[0]].location,
            format!(
                "{who} {} with runner `{name}` (line {}): a job asking only for {} always gets `{name}`, the first in the file",
                plural_labels(&shared),
                earlier.location.line,
                if shared.len() == 1 { "it" } else { "them" },
            ),
        )
        .with_hint("give each runner a label of its own; to try alternatives, use fallback lists in one runner")
    }
}

fn plural_labels(labels: &[String]) -> String {
    let quoted: Vec<String> = labels.iter().map(|l| format!("`{l}`")).collect();
    match quoted.len() {
        1 => format!("label {}", quoted[0]),
        _ => format!("labels {}", quoted.join(", ")),
    }
}

/// The value of `key` in a mapping node.
pub(super) fn get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.kind {
        Kind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.text() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// A value-or-list as a list; nothing for an absent or null key.
pub(super) fn items(node: Option<&Node>) -> Vec<&Node> {
    match node {
        None => Vec::new(),
        Some(n) if n.is_null() => Vec::new(),
        Some(Node {
            kind: Kind::Seq(v), ..
        }) => v.iter().collect(),
        Some(n) => vec![n],
    }
}

fn image_of(node: &Node) -> Option<MachineImage> {
    match &node.kind {
        Kind::Map(_) => {
            let text = |k| get(node, k).and_then(Node::text).map(str::to_string);
            Some(MachineImage::Azure {
                publisher: text("publisher")?,
                offer: text("offer")?,
                sku: text("sku")?,
                version: text("version").unwrap_or_else(|| "latest".into()),
            })
        }
        _ => node
            .text()
            .filter(|_| !node.is_null())
            .map(|t| MachineImage::Name(t.to_string())),
    }
}
