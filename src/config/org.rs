//! Merging the org's `.cirun/.cirun.global.yml` into a repository's `.cirun.yml`.
//!
//! The rule:
//! - runners: the repository's definitions first, then the org's, each in
//!   file order. Matching takes the first definition that fits, so a
//!   repository can override an org runner by defining the same labels;
//! - setup_info: the org's groups, then the repository's;
//! - `run_only_when_triggered_by` (removed from Cirun, kept for messages):
//!   the org's value wins, as Cirun documented.

use super::model::CirunConfig;

pub fn merge(repo: Option<&CirunConfig>, org: Option<&CirunConfig>) -> CirunConfig {
    let mut merged = CirunConfig {
        runners: Vec::new(),
        setup_info: Vec::new(),
        run_only_when_triggered_by: None,
    };
    if let Some(org) = org {
        merged.setup_info.extend(org.setup_info.iter().cloned());
    }
    if let Some(repo) = repo {
        merged.runners.extend(repo.runners.iter().cloned());
        merged.setup_info.extend(repo.setup_info.iter().cloned());
        merged.run_only_when_triggered_by = repo.run_only_when_triggered_by.clone();
    }
    if let Some(org) = org {
        merged.runners.extend(org.runners.iter().cloned());
        if org.run_only_when_triggered_by.is_some() {
            merged.run_only_when_triggered_by = org.run_only_when_triggered_by.clone();
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Origin;
    use crate::config::parse::parse_cirun;

    fn cfg(text: &str, origin: Origin) -> CirunConfig {
        let (c, d) = parse_cirun(text, origin);
        assert_eq!(d.errors(), 0, "{d:?}");
        c.unwrap()
    }

    #[test]
    fn repository_runners_come_first() {
        let repo = cfg(
            "runners:\n  - name: mine\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-gpu]\nsetup_info:\n  - group: R\n    detail: r\n",
            Origin::Repository,
        );
        let org = cfg(
            "runners:\n  - name: shared\n    cloud: vast_ai\n    instance_type: 1xRTX_3090\n    labels: [cirun-gpu, cirun-org]\nsetup_info:\n  - group: O\n    detail: o\nrun_only_when_triggered_by: core\n",
            Origin::Organization,
        );
        let merged = merge(Some(&repo), Some(&org));
        let names: Vec<_> = merged.runners.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["mine", "shared"]);
        assert_eq!(merged.runners[1].origin, Origin::Organization);
        let groups: Vec<_> = merged.setup_info.iter().map(|s| s.group.as_str()).collect();
        assert_eq!(groups, vec!["O", "R"]);
        assert_eq!(merged.run_only_when_triggered_by.as_deref(), Some("core"));
        let picked = crate::config::labels::select(&merged.runners, &["cirun-gpu--1"]).unwrap();
        assert_eq!(picked.name, "mine");
        let picked = crate::config::labels::select(&merged.runners, &["cirun-org--1"]).unwrap();
        assert_eq!(picked.name, "shared");
    }

    #[test]
    fn either_side_may_be_missing() {
        let org = cfg(
            "runners:\n  - name: shared\n    cloud: vast_ai\n    instance_type: 1xRTX_3090\n    labels: [cirun-x]\n",
            Origin::Organization,
        );
        assert_eq!(merge(None, Some(&org)).runners.len(), 1);
        assert_eq!(merge(Some(&org), None).runners.len(), 1);
        assert!(merge(None, None).runners.is_empty());
    }
}
