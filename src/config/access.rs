//! The org's `.cirun/.access.yml`: which repositories, teams, roles and users
//! may use which org-level runner definitions. Parsed and checked here; the
//! engine enforces it. A policy's `roles` are GitHub's base roles, each
//! admitting itself and the roles above it ([`Policy::admits_role`]).

use crate::text::for_log;
use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::check::{Checker, Strictness, as_bool, as_number, as_u32};
use super::diagnostics::{Diagnostic, Diagnostics};
use super::keys;
use super::model::{Location, RunnerDef};
use super::parse::{get, items, read_root};
use super::suggest::nearest_key_for;
use super::yaml::Node;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessConfig {
    pub version: u32,
    pub policies: Vec<Policy>,
    pub access_control: Vec<AccessRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub id: String,
    pub location: Location,
    /// Repository name within the org, or `owner/name`.
    pub repo: Option<String>,
    pub teams: Vec<String>,
    pub roles: Vec<String>,
    pub users: Vec<String>,
    /// Remote allow-list rigger does not fetch (so it grants nobody).
    pub users_from_json: Option<String>,
    /// Whether jobs from pull requests may use the resource.
    pub pull_request: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessRule {
    /// A runner definition name from `.cirun.global.yml`.
    pub resource: String,
    pub location: Location,
    pub policies: Vec<String>,
}

impl Policy {
    /// Whether a user with `role` on the repository (the role GitHub
    /// granted: a collaborator's, a team's or the organization's, never
    /// the `read` everyone has on a public repository) meets the policy's
    /// `roles`: a listed role admits that role and every higher one, so
    /// `roles: [read]` means "collaborators with at least read", and an
    /// admin passes `roles: [write]`.
    pub fn admits_role(&self, role: &str) -> bool {
        let Some(have) = role_rank(role) else {
            return false;
        };
        self.roles
            .iter()
            .filter_map(|want| role_rank(want))
            .any(|want| have >= want)
    }
}

/// A base role's place among GitHub's five (read 0 … admin 4); `None` for
/// anything else.
fn role_rank(role: &str) -> Option<usize> {
    keys::ROLES
        .iter()
        .rev()
        .position(|r| r.eq_ignore_ascii_case(role))
}

impl AccessConfig {
    /// The policies guarding a runner definition; empty when none does.
    pub fn policies_for(&self, resource: &str) -> Vec<&Policy> {
        self.access_control
            .iter()
            .filter(|r| r.resource == resource)
            .flat_map(|r| r.policies.iter())
            .filter_map(|id| self.policies.iter().find(|p| &p.id == id))
            .collect()
    }
}

pub fn parse_access(text: &str) -> (Option<AccessConfig>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let config = read_root(text, &mut diags, "an .access.yml").and_then(|root| {
        let mut checker = Checker {
            diags: &mut diags,
            strictness: Strictness::STRICT,
        };
        if !checker.object(&root, keys::ACCESS_TOP, "the file", &[]) {
            return None;
        }
        Some(read_access(&root, &mut diags))
    });
    diags.sort();
    (config, diags)
}

fn strings(node: Option<&Node>) -> Vec<String> {
    items(node)
        .iter()
        .filter_map(|n| n.text().map(str::to_string))
        .collect()
}

fn read_access(root: &Node, diags: &mut Diagnostics) -> AccessConfig {
    // Compared as written: a cast of `1e20` to u32 would read as another version.
    let written = get(root, "version").and_then(as_number);
    if let (Some(v), Some(n)) = (get(root, "version"), written)
        && n != 1.0
    {
        diags.push(
            Diagnostic::error(
                v.at,
                format!(
                    "unknown `.access.yml` version {}",
                    for_log(v.text().unwrap_or_default())
                ),
            )
            .with_hint("rigger reads version 1"),
        );
    }
    let version = get(root, "version").and_then(as_u32).unwrap_or(1);
    let mut policies: Vec<Policy> = Vec::new();
    // Each id and the line it is first on: a duplicate is found without
    // comparing every policy with every other.
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for n in items(get(root, "policies")) {
        let Some(id_node) = get(n, "id") else {
            continue;
        };
        let id = id_node.text().unwrap_or_default().to_string();
        if let Some(line) = first_line.get(&id) {
            diags.push(
                Diagnostic::error(
                    id_node.at,
                    format!(
                        "policy id `{}` is used twice (first on line {line})",
                        for_log(&id)
                    ),
                )
                .with_hint("give each policy a unique `id`"),
            );
            continue;
        }
        first_line.insert(id.clone(), n.at.line);
        let users_from_json = get(n, "users_from_json")
            .and_then(Node::text)
            .map(str::to_string);
        if let (Some(url), Some(at)) = (&users_from_json, get(n, "users_from_json")) {
            diags.push(
                Diagnostic::warning(
                    at.at,
                    format!(
                        "rigger does not fetch `users_from_json` ({}): the users listed there are not granted access",
                        for_log(url)
                    ),
                )
                .with_hint("list the logins under `users`, or grant a team"),
            );
        }
        policies.push(Policy {
            id,
            location: n.at,
            repo: get(n, "repo").and_then(Node::text).map(str::to_string),
            teams: strings(get(n, "teams")),
            roles: strings(get(n, "roles"))
                .into_iter()
                .map(|r| r.to_ascii_lowercase())
                .collect(),
            users: strings(get(n, "users")),
            users_from_json,
            pull_request: get(n, "pull_request").and_then(as_bool).unwrap_or(false),
        });
    }
    let ids: Vec<&str> = policies.iter().map(|p| p.id.as_str()).collect();
    let known: HashSet<&str> = ids.iter().copied().collect();
    let mut access_control = Vec::new();
    for n in items(get(root, "access_control")) {
        let Some(resource) = get(n, "resource").and_then(Node::text) else {
            continue;
        };
        for p in items(get(n, "policies")) {
            let Some(id) = p.text() else { continue };
            if !known.contains(id) {
                let hint = match nearest_key_for(diags, id, &ids) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "define it under `policies:`".to_string(),
                };
                diags.push(
                    Diagnostic::error(p.at, format!("no policy has the id `{}`", for_log(id)))
                        .with_hint(hint),
                );
            }
        }
        access_control.push(AccessRule {
            resource: resource.to_string(),
            location: n.at,
            policies: strings(get(n, "policies")),
        });
    }
    AccessConfig {
        version,
        policies,
        access_control,
    }
}

/// Warnings for rules about runner definitions the org config does not have.
pub fn check_resources(access: &AccessConfig, org_runners: &[RunnerDef]) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let names: Vec<&str> = org_runners.iter().map(|r| r.name.as_str()).collect();
    let known: HashSet<&str> = names.iter().copied().collect();
    for rule in &access.access_control {
        if !known.contains(rule.resource.as_str()) {
            let hint = match nearest_key_for(&mut diags, &rule.resource, &names) {
                Some(n) => format!("did you mean `{n}`?"),
                None => "resources are runner names from .cirun.global.yml".to_string(),
            };
            diags.push(
                Diagnostic::warning(
                    rule.location,
                    format!(
                        "no runner named `{}` in .cirun.global.yml: this rule guards nothing",
                        for_log(&rule.resource)
                    ),
                )
                .with_hint(hint),
            );
        }
    }
    diags
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
version: 1
policies:
  - id: gpu-team
    repo: ml
    teams: [core]
    roles: [Admin, write]
    pull_request: false
  - id: bots
    users: [octocat]
    users_from_json: https://example.invalid/users.json
    pull_request: true
access_control:
  - resource: gpu-runner
    policies: [gpu-team, bots]
";

    #[test]
    fn reads_policies_and_rules() {
        let (cfg, diags) = parse_access(SAMPLE);
        let cfg = cfg.unwrap();
        assert_eq!(diags.errors(), 0, "{diags:?}");
        assert_eq!(diags.warnings(), 1, "users_from_json is not fetched");
        assert_eq!(cfg.policies.len(), 2);
        assert_eq!(cfg.policies[0].roles, vec!["admin", "write"]);
        assert!(cfg.policies[1].pull_request);
        let guards: Vec<&str> = cfg
            .policies_for("gpu-runner")
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(guards, vec!["gpu-team", "bots"]);
        assert!(cfg.policies_for("other").is_empty());
    }

    #[test]
    fn a_role_admits_itself_and_every_higher_role() {
        let (cfg, _) = parse_access(
            "policies:\n  - id: readers\n    roles: [read]\n  - id: writers\n    roles: [Write]\n",
        );
        let cfg = cfg.unwrap();
        let (readers, writers) = (&cfg.policies[0], &cfg.policies[1]);
        for role in ["read", "triage", "write", "maintain", "admin"] {
            assert!(readers.admits_role(role), "{role} is at least read");
        }
        for role in ["read", "triage"] {
            assert!(!writers.admits_role(role), "{role} is below write");
        }
        for role in ["write", "maintain", "ADMIN"] {
            assert!(writers.admits_role(role), "{role} is at least write");
        }
        for role in ["none", "", "security-manager"] {
            assert!(!readers.admits_role(role), "{role:?} is no base role");
        }
    }

    #[test]
    fn unknown_policy_ids_and_duplicates_are_errors() {
        let text = "policies:\n  - id: a\n  - id: a\naccess_control:\n  - resource: r\n    policies: [b]\n";
        let (_, diags) = parse_access(text);
        let errors: Vec<_> = diags.items().iter().filter(|d| d.is_error()).collect();
        assert_eq!(errors.len(), 2, "{diags:?}");
        assert_eq!(errors[0].location, Location { line: 3, column: 9 });
        assert_eq!(
            errors[1].location,
            Location {
                line: 6,
                column: 16
            }
        );
    }

    #[test]
    fn bad_roles_are_errors_with_a_hint() {
        let (_, diags) = parse_access("policies:\n  - id: a\n    roles: [writer]\n");
        let e = &diags.items()[0];
        assert!(e.is_error());
        assert_eq!(e.hint.as_deref(), Some("did you mean `write`?"));
    }
}
