//! Who may rent what, and how much: pure decisions the provisioner takes
//! before spending anything. A refusal says which rule refused and the
//! numbers, for the check run on the job's commit.

use crate::config::access::{AccessConfig, Policy};
use crate::config::model::{Origin, RunnerDef};
use crate::settings::{ConfigSource, LimitSettings};

/// Which revision of `.cirun.yml` decides a job's machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigRef {
    DefaultBranch,
    Commit(String),
}

/// The default branch unless settings allow the head commit; never the head
/// commit of a fork, which would let anyone choose what rigger rents.
pub fn config_ref(source: ConfigSource, job_is_fork: bool, head_sha: &str) -> ConfigRef {
    match source {
        ConfigSource::HeadCommit if !job_is_fork => ConfigRef::Commit(head_sha.to_string()),
        _ => ConfigRef::DefaultBranch,
    }
}

/// What is known of the job and its actor when access is checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFacts {
    /// `owner/name`.
    pub repo: String,
    /// The run was triggered by a pull request.
    pub pull_request: bool,
    pub actor: String,
    /// Of the teams asked about ([`teams_to_check`]), those the actor is in.
    pub actor_teams: Vec<String>,
    /// The role GitHub granted the actor on the repository (`admin`,
    /// `maintain`, `write`, `triage`, `read`); a public repository's
    /// `read` for everyone is no grant.
    pub actor_role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Allowed,
    Denied(String),
}

/// The policies guarding an org-level definition. Repository definitions are
/// the repository's own choice and are not subject to `.access.yml`.
fn guarding<'a>(def: &RunnerDef, access: Option<&'a AccessConfig>) -> Vec<&'a Policy> {
    match (def.origin, access) {
        (Origin::Organization, Some(a)) => a.policies_for(&def.name),
        _ => Vec::new(),
    }
}

/// The team slugs whose membership decides this job (ask GitHub only these).
pub fn teams_to_check(def: &RunnerDef, access: Option<&AccessConfig>) -> Vec<String> {
    let mut teams: Vec<String> = guarding(def, access)
        .iter()
        .flat_map(|p| p.teams.iter().cloned())
        .collect();
    teams.sort();
    teams.dedup();
    teams
}

/// Whether the repository's policies let this job use the definition: any
/// one guarding policy must match the repository, allow pull requests if the
/// job comes from one, and list the actor's team, a role the actor's is at
/// least, or the login (a policy listing none of those grants the whole
/// repository).
pub fn check_access(def: &RunnerDef, access: Option<&AccessConfig>, facts: &JobFacts) -> Access {
    let policies = guarding(def, access);
    if policies.is_empty() {
        return Access::Allowed;
    }
    let mut reasons = Vec::new();
    for p in &policies {
        match policy_allows(p, facts) {
            Ok(()) => return Access::Allowed,
            Err(why) => reasons.push(format!("policy `{}`: {why}", p.id)),
        }
    }
    Access::Denied(format!(
        "`{actor}` may not use the org runner `{}` ({}). To allow it, add `{actor}` to one of \
         the policy's teams, make them a collaborator with one of its roles (reading a public \
         repository is no role), or list them under `users` in .cirun/.access.yml",
        def.name,
        reasons.join("; "),
        actor = facts.actor,
    ))
}

fn policy_allows(p: &Policy, f: &JobFacts) -> Result<(), String> {
    if let Some(repo) = &p.repo {
        let name = f.repo.rsplit('/').next().unwrap_or(&f.repo);
        if !(repo.eq_ignore_ascii_case(&f.repo) || repo.eq_ignore_ascii_case(name)) {
            return Err(format!("it is for repository `{repo}`"));
        }
    }
    if f.pull_request && !p.pull_request {
        return Err("pull requests are not allowed".into());
    }
    let open = p.teams.is_empty() && p.roles.is_empty() && p.users.is_empty();
    let by_user = p.users.iter().any(|u| u.eq_ignore_ascii_case(&f.actor));
    let by_team = p
        .teams
        .iter()
        .any(|t| f.actor_teams.iter().any(|m| m.eq_ignore_ascii_case(t)));
    let by_role = f.actor_role.as_ref().is_some_and(|r| p.admits_role(r));
    if open || by_user || by_team || by_role {
        Ok(())
    } else {
        Err("the actor is not in its teams, roles or users".into())
    }
}

/// What is running and spent, when a new machine is considered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub live_instances: u32,
    pub live_instances_for_repo: u32,
    /// Recorded in the ledger since the start of the UTC day.
    pub spent_today: f64,
    /// What the live instances have cost so far today.
    pub running_today: f64,
}

/// Why rigger will not rent this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal(pub String);

/// Limits are enforced before renting, never after.
pub fn check_limits(
    limits: &LimitSettings,
    repo: &str,
    dph: f64,
    estimated_cost: f64,
    usage: &Usage,
) -> Result<(), Refusal> {
    if usage.live_instances >= limits.max_instances {
        return Err(Refusal(format!(
            "{} machines are running, the most rigger may run at once (limits.max_instances)",
            usage.live_instances
        )));
    }
    if usage.live_instances_for_repo >= limits.max_instances_per_repo {
        return Err(Refusal(format!(
            "{repo} already has {} machines running, its limit (limits.max_instances_per_repo)",
            usage.live_instances_for_repo
        )));
    }
    if dph > limits.max_dph {
        return Err(Refusal(format!(
            "the cheapest fitting offer costs ${dph:.2}/h, above the ${:.2}/h limit (limits.max_dph)",
            limits.max_dph
        )));
    }
    if estimated_cost > limits.max_job_cost {
        return Err(Refusal(format!(
            "the job would cost about ${estimated_cost:.2}, above the ${:.2} limit per job (limits.max_job_cost)",
            limits.max_job_cost
        )));
    }
    let committed = usage.spent_today + usage.running_today + estimated_cost;
    if committed > limits.daily_budget {
        return Err(Refusal(format!(
            "today's budget of ${:.2} would be exceeded: ${:.2} spent, ${:.2} running, ${estimated_cost:.2} for this job (limits.daily_budget)",
            limits.daily_budget, usage.spent_today, usage.running_today
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::access::parse_access;
    use crate::config::parse::parse_cirun;

    fn org_def(name: &str) -> RunnerDef {
        let text = format!(
            "runners:\n  - name: {name}\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-{name}]\n"
        );
        parse_cirun(&text, Origin::Organization).0.unwrap().runners[0].clone()
    }

    fn access() -> AccessConfig {
        parse_access(
            "policies:
  - id: ml-team
    repo: ml
    teams: [gpu-users]
    pull_request: false
  - id: maintainers
    repo: octo/ml
    roles: [admin, maintain]
    pull_request: true
  - id: bot
    repo: ml
    users: [release-bot]
  - id: open-repo
    repo: docs
access_control:
  - resource: gpu
    policies: [ml-team, maintainers, bot]
  - resource: docs-gpu
    policies: [open-repo]
",
        )
        .0
        .unwrap()
    }

    fn facts(actor: &str, teams: &[&str], role: Option<&str>, pr: bool) -> JobFacts {
        JobFacts {
            repo: "octo/ml".into(),
            pull_request: pr,
            actor: actor.into(),
            actor_teams: teams.iter().map(|t| t.to_string()).collect(),
            actor_role: role.map(str::to_string),
        }
    }

    #[test]
    fn forks_never_choose_the_config() {
        assert_eq!(
            config_ref(ConfigSource::HeadCommit, false, "abc"),
            ConfigRef::Commit("abc".into())
        );
        assert_eq!(
            config_ref(ConfigSource::HeadCommit, true, "abc"),
            ConfigRef::DefaultBranch
        );
        assert_eq!(
            config_ref(ConfigSource::DefaultBranch, false, "abc"),
            ConfigRef::DefaultBranch
        );
    }

    #[test]
    fn team_role_and_user_grant() {
        let a = access();
        let def = org_def("gpu");
        assert_eq!(teams_to_check(&def, Some(&a)), vec!["gpu-users"]);
        let ok = |f: JobFacts| check_access(&def, Some(&a), &f) == Access::Allowed;
        assert!(ok(facts("alice", &["gpu-users"], None, false)));
        assert!(ok(facts("bob", &[], Some("maintain"), false)));
        assert!(ok(facts("release-bot", &[], None, false)));
        assert!(!ok(facts("mallory", &[], Some("write"), false)));
    }

    #[test]
    fn pull_requests_need_a_policy_that_allows_them() {
        let a = access();
        let def = org_def("gpu");
        // alice's team policy forbids pull requests; no other policy lists her.
        match check_access(&def, Some(&a), &facts("alice", &["gpu-users"], None, true)) {
            Access::Denied(why) => {
                assert!(
                    why.contains("policy `ml-team`: pull requests are not allowed"),
                    "{why}"
                )
            }
            Access::Allowed => panic!("allowed"),
        }
        // A maintainer's policy allows them.
        assert_eq!(
            check_access(&def, Some(&a), &facts("bob", &[], Some("admin"), true)),
            Access::Allowed
        );
    }

    #[test]
    fn policies_are_per_repository() {
        let a = access();
        let def = org_def("docs-gpu");
        assert!(matches!(
            check_access(&def, Some(&a), &facts("alice", &[], None, false)),
            Access::Denied(_)
        ));
        let mut f = facts("anyone", &[], None, false);
        f.repo = "octo/docs".into();
        assert_eq!(check_access(&def, Some(&a), &f), Access::Allowed);
    }

    #[test]
    fn unguarded_and_repository_runners_are_allowed() {
        let a = access();
        assert_eq!(
            check_access(&org_def("other"), Some(&a), &facts("x", &[], None, true)),
            Access::Allowed
        );
        let mut repo_def = org_def("gpu");
        repo_def.origin = Origin::Repository;
        assert_eq!(
            check_access(&repo_def, Some(&a), &facts("x", &[], None, true)),
            Access::Allowed
        );
    }

    fn limits() -> LimitSettings {
        LimitSettings {
            max_instances: 3,
            max_instances_per_repo: 2,
            max_dph: 1.0,
            max_job_cost: 5.0,
            daily_budget: 20.0,
            default_job_minutes: 30,
        }
    }

    #[test]
    fn limits_refuse_with_numbers() {
        let l = limits();
        let u = Usage::default();
        assert!(check_limits(&l, "o/r", 0.5, 1.0, &u).is_ok());
        let refuse =
            |dph, cost, usage: &Usage| check_limits(&l, "o/r", dph, cost, usage).unwrap_err().0;
        assert!(refuse(1.5, 1.0, &u).contains("$1.50/h, above the $1.00/h limit"));
        assert!(refuse(0.5, 6.0, &u).contains("about $6.00, above the $5.00 limit per job"));
        let busy = Usage {
            live_instances: 3,
            ..Default::default()
        };
        assert!(refuse(0.5, 1.0, &busy).contains("limits.max_instances"));
        let repo_busy = Usage {
            live_instances_for_repo: 2,
            ..Default::default()
        };
        assert!(refuse(0.5, 1.0, &repo_busy).contains("o/r already has 2 machines"));
        let spent = Usage {
            spent_today: 15.0,
            running_today: 4.5,
            ..Default::default()
        };
        let why = refuse(0.5, 1.0, &spent);
        assert!(
            why.contains("$15.00 spent, $4.50 running, $1.00 for this job"),
            "{why}"
        );
    }
}
