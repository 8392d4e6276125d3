//! The repository's config files as one job may use them: from the default
//! branch or, where allowed, its head commit; merged with the org's; cached.
//! A file GitHub would not hand over (over its 1 MB limit) is a config
//! error in that file; a `.cirun` repository the App cannot see is said,
//! not silently taken as none.

use std::path::Path;
use std::sync::Arc;

use crate::config::access::AccessConfig;
use crate::config::model::CirunConfig;
use crate::config::{FileKind, org, parse_file};
use crate::engine::Engine;
use crate::engine::policy::{self, ConfigRef};
use crate::engine::ports::{Cloud, ConfigFile, ConfigFiles, Github, GithubError, RepoRef};
use crate::store::JobRow;

/// A repository's config as read for one commit.
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    /// The repository's runners, then the org's.
    pub config: Option<CirunConfig>,
    pub access: Option<AccessConfig>,
    /// The errors in the files, as `file:line:col: message` lines.
    pub errors: Vec<String>,
    /// The repository has no `.cirun.yml` at that revision (GitHub said
    /// 404: perhaps a push that has not reached every replica yet).
    pub repo_missing: bool,
    /// What the user should know about files rigger could not read (the
    /// org's `.cirun` repository outside the App's installation).
    pub notes: Vec<String>,
}

/// Fresh default-branch configs are read again after this long.
const DEFAULT_BRANCH_TTL_MS: i64 = 60_000;

impl<C: Cloud, G: Github> Engine<C, G> {
    /// Read (or reuse) the config for the revision this job is allowed to use.
    pub(super) async fn load_config(
        &self,
        repo: &RepoRef,
        job: &JobRow,
    ) -> Result<Arc<LoadedConfig>, GithubError> {
        let git_ref = self.config_revision(job);
        let key = config_key(repo, &git_ref);
        let now = self.now();
        if let Some((at, cached)) = self
            .config_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            let fresh = git_ref.is_some() || now - at < DEFAULT_BRANCH_TTL_MS;
            if fresh {
                return Ok(cached.clone());
            }
        }
        let files = self.github.config_files(repo, git_ref.as_deref()).await?;
        let loaded = Arc::new(parse_config_files(&files));
        let mut cache = self.config_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 1000 {
            cache.clear();
        }
        cache.insert(key, (now, loaded.clone()));
        Ok(loaded)
    }

    /// The revision a job's `.cirun.yml` is read at: its commit, or the
    /// default branch (`None`), as `github.config_source` says.
    fn config_revision(&self, job: &JobRow) -> Option<String> {
        match policy::config_ref(
            self.settings.github.config_source,
            job.is_fork,
            &job.head_sha,
        ) {
            ConfigRef::DefaultBranch => None,
            ConfigRef::Commit(sha) => Some(sha),
        }
    }

    /// Forget what was read for this job's revision: the next attempt asks
    /// GitHub again (a file missing right after a push may appear).
    pub(super) fn forget_config(&self, repo: &RepoRef, job: &JobRow) {
        let git_ref = self.config_revision(job);
        self.config_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&config_key(repo, &git_ref));
    }
}

fn config_key(repo: &RepoRef, git_ref: &Option<String>) -> (String, String) {
    (repo.repo.clone(), git_ref.clone().unwrap_or_default())
}

/// Parse the three files and merge them by the documented rule.
pub fn parse_config_files(files: &ConfigFiles) -> LoadedConfig {
    let mut errors = Vec::new();
    // GitHub's contents API hands over files of up to 1 MB: one it would
    // not is an error in that file, as rigger's own budget (1 MiB) says.
    for (which, name) in [
        (ConfigFile::Repo, ".cirun.yml"),
        (ConfigFile::Org, ".cirun/.cirun.global.yml"),
        (ConfigFile::Access, ".cirun/.access.yml"),
    ] {
        if files.too_large.contains(&which) {
            let d = crate::config::yaml::too_large(None);
            errors.push(format!(
                "{name}:{}:{}: {} (GitHub's contents API serves files of up to 1 MB)",
                d.location.line, d.location.column, d.message
            ));
        }
    }
    let mut parsed = |name: &str, text: &Option<String>, kind: FileKind| {
        let text = text.as_ref()?;
        let p = parse_file(Path::new(name), text, kind);
        for d in p.diagnostics.items().iter().filter(|d| d.is_error()) {
            errors.push(format!(
                "{name}:{}:{}: {}",
                d.location.line, d.location.column, d.message
            ));
        }
        Some(p)
    };
    let repo = parsed(".cirun.yml", &files.repo, FileKind::Repository);
    let org = parsed(
        ".cirun/.cirun.global.yml",
        &files.org,
        FileKind::Organization,
    );
    let access = parsed(".cirun/.access.yml", &files.access, FileKind::Access);
    let repo_config = repo.and_then(|p| p.config);
    let org_config = org.and_then(|p| p.config);
    let config = (repo_config.is_some() || org_config.is_some())
        .then(|| org::merge(repo_config.as_ref(), org_config.as_ref()));
    LoadedConfig {
        config,
        access: access.and_then(|p| p.access),
        errors,
        repo_missing: files.repo.is_none() && !files.too_large.contains(&ConfigFile::Repo),
        notes: files.org_unreadable.iter().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_merge_and_report_errors() {
        let files = ConfigFiles {
            repo: Some("runners:\n  - name: a\n    cloud: vast_ai\n    instance_type: 0xRTX_4090\n    labels: [cirun-a]\n".into()),
            org: Some("runners:\n  - name: b\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-b]\n".into()),
            access: None,
            ..ConfigFiles::default()
        };
        let loaded = parse_config_files(&files);
        let names: Vec<_> = loaded
            .config
            .as_ref()
            .unwrap()
            .runners
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(loaded.errors.len(), 1);
        assert!(
            loaded.errors[0].starts_with(".cirun.yml:4:20: "),
            "{:?}",
            loaded.errors
        );
        assert!(parse_config_files(&ConfigFiles::default()).config.is_none());
    }

    #[test]
    fn a_file_github_would_not_hand_over_is_an_error_in_it() {
        let files = ConfigFiles {
            too_large: vec![ConfigFile::Repo],
            ..ConfigFiles::default()
        };
        let loaded = parse_config_files(&files);
        assert!(loaded.config.is_none());
        assert!(!loaded.repo_missing, "it exists");
        assert_eq!(loaded.errors.len(), 1);
        assert!(
            loaded.errors[0].starts_with(".cirun.yml:1:1: the file is over 1048576 bytes"),
            "{:?}",
            loaded.errors
        );
        assert!(parse_config_files(&ConfigFiles::default()).repo_missing);
    }
}
