//! The config files, read with the contents API as GitHub documents it.
//!
//! `GET /repos/{o}/{r}/contents/{path}` hands over files of up to 1 MB
//! with its default media type; a larger one (up to 100 MB) only with the
//! `raw` or `object` media types, and with `object` as an empty `content`
//! and `encoding: none`. rigger asks for `object`: a file over 1 MB is over
//! rigger's own 1 MiB config budget too, so it is reported as a config
//! error at once (never fetched, never retried), instead of the default
//! media type's `403 too_large`, which is no answer to wait out.
//!
//! A 404 is "no such file" (the engine looks once more, later, in case a
//! push has not reached every replica yet). The org's files are read from
//! its `.cirun` repository; when they are absent, rigger finds out whether
//! that repository may exist unseen: an installation on selected
//! repositories that does not include it answers 404 as if it did not
//! exist. That answer (`repository_selection`) is kept [`SELECTION_TTL_MS`].

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use reqwest::Method;
use serde_json::Value;

use super::client::{GithubClient, query};
use crate::engine::ports::{ConfigFile, ConfigFiles, GithubError, RepoRef};

/// How long an installation's `repository_selection` is reused.
pub const SELECTION_TTL_MS: i64 = 10 * 60_000;

/// The media type that answers for files of 1 to 100 MB too.
const OBJECT: &str = "application/vnd.github.object+json";

/// What the contents API said of one path.
#[derive(Debug, Clone, PartialEq)]
pub enum FileAnswer {
    Text(String),
    /// No such file (or a directory) at that ref.
    Missing,
    /// A file GitHub hands over only raw: over 1 MB.
    TooLarge {
        bytes: Option<u64>,
    },
}

/// Whether each installation covers all its account's repositories.
#[derive(Debug, Default)]
pub struct SelectionCache {
    all: Mutex<HashMap<i64, (i64, bool)>>,
}

impl GithubClient {
    /// A file at a ref (`None`: the default branch).
    pub async fn file(
        &self,
        installation_id: i64,
        repo: &str,
        path: &str,
        git_ref: Option<&str>,
    ) -> Result<FileAnswer, GithubError> {
        let q = git_ref
            .map(|r| format!("?ref={}", query(r)))
            .unwrap_or_default();
        let url = format!("/repos/{repo}/contents/{path}{q}");
        let answer = self
            .auth()
            .send_accepting(installation_id, Method::GET, &url, None, OBJECT)
            .await?;
        if answer.is_not_found() {
            return Ok(FileAnswer::Missing);
        }
        read_file(&answer.body, repo, path)
    }

    /// The three files for a job: its repository's `.cirun.yml` at
    /// `git_ref`, and the org's from its `.cirun` repository's default
    /// branch, whatever the job's commit.
    pub(super) async fn read_config_files(
        &self,
        repo: &RepoRef,
        git_ref: Option<&str>,
    ) -> Result<ConfigFiles, GithubError> {
        let i = repo.installation_id;
        let org_repo = format!("{}/.cirun", repo.owner());
        let mut files = ConfigFiles::default();
        let answers = [
            (
                ConfigFile::Repo,
                self.file(i, &repo.repo, ".cirun.yml", git_ref).await?,
            ),
            (
                ConfigFile::Org,
                self.file(i, &org_repo, ".cirun.global.yml", None).await?,
            ),
            (
                ConfigFile::Access,
                self.file(i, &org_repo, ".access.yml", None).await?,
            ),
        ];
        for (which, answer) in answers {
            let text = match answer {
                FileAnswer::Text(t) => Some(t),
                FileAnswer::Missing => None,
                FileAnswer::TooLarge { .. } => {
                    files.too_large.push(which);
                    None
                }
            };
            match which {
                ConfigFile::Repo => files.repo = text,
                ConfigFile::Org => files.org = text,
                ConfigFile::Access => files.access = text,
            }
        }
        let org_absent = files.org.is_none()
            && files.access.is_none()
            && !files.too_large.iter().any(|f| *f != ConfigFile::Repo);
        if org_absent && repo.repo != org_repo && !self.absence_is_real(i, &org_repo).await? {
            files.org_unreadable = Some(format!(
                "rigger cannot see {org_repo}: the App is installed on selected repositories of {owner} only, and GitHub answers for a repository outside them as for one that does not exist. If {owner} keeps its org-wide .cirun.global.yml or .access.yml in {org_repo}, add that repository to the App's installation ({owner}'s settings → GitHub Apps → Configure → Repository access); until then they are not read.",
                owner = repo.owner()
            ));
        }
        Ok(files)
    }

    /// Whether the org's `.cirun` repository, answering 404, truly does not
    /// exist: it is visible (and has no such files), or the installation
    /// covers all the account's repositories.
    async fn absence_is_real(&self, i: i64, org_repo: &str) -> Result<bool, GithubError> {
        let now = self.auth().now_ms();
        let cached = self
            .selection()
            .all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&i)
            .filter(|(at, _)| now - at < SELECTION_TTL_MS)
            .map(|(_, all)| *all);
        let all = match cached {
            Some(all) => all,
            None => {
                let v = self
                    .call(
                        i,
                        Method::GET,
                        "/installation/repositories?per_page=1",
                        None,
                    )
                    .await?
                    .json()?;
                let all = v["repository_selection"].as_str() != Some("selected");
                self.selection()
                    .all
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(i, (now, all));
                all
            }
        };
        if all {
            return Ok(true);
        }
        // Selected repositories: `.cirun` may be one of them, without the files.
        let seen = self
            .call(i, Method::GET, &format!("/repos/{org_repo}"), None)
            .await?;
        Ok(!seen.is_not_found())
    }
}

/// A contents answer (`object` media type) read as a file's text.
fn read_file(v: &Value, repo: &str, path: &str) -> Result<FileAnswer, GithubError> {
    // A directory answers with its `entries`; a symlink to a file answers
    // as the file.
    if v["type"].as_str() != Some("file") {
        return Ok(FileAnswer::Missing);
    }
    let bytes = v["size"].as_u64();
    if v["encoding"].as_str() == Some("none")
        || bytes.is_some_and(|n| n > crate::config::yaml::MAX_FILE_BYTES as u64)
    {
        return Ok(FileAnswer::TooLarge { bytes });
    }
    // Base64 with embedded newlines.
    let packed: String = v["content"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(packed)
        .map_err(|e| GithubError::Transient(format!("{repo}/{path}: unreadable content: {e}")))?;
    String::from_utf8(bytes)
        .map(FileAnswer::Text)
        .map_err(|_| GithubError::Refused(format!("{repo}/{path} is not UTF-8 text")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn files_over_a_megabyte_are_too_large_not_errors() {
        let big = json!({"type": "file", "encoding": "none", "content": "", "size": 2_000_000});
        assert_eq!(
            read_file(&big, "o/r", ".cirun.yml").unwrap(),
            FileAnswer::TooLarge {
                bytes: Some(2_000_000)
            }
        );
        let small = json!({"type": "file", "encoding": "base64", "content": "cnVu\nbmVyczogW10K\n", "size": 12});
        assert_eq!(
            read_file(&small, "o/r", ".cirun.yml").unwrap(),
            FileAnswer::Text("runners: []\n".into())
        );
        let dir = json!({"type": "dir", "entries": []});
        assert_eq!(
            read_file(&dir, "o/r", ".cirun.yml").unwrap(),
            FileAnswer::Missing
        );
    }
}
