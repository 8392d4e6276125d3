//! The simulated actions/runner releases, as GitHub serves them: a
//! *current* release and an older one, each with its own tarball and
//! checksum (`runner::tarball`).
//! - The runner downloads lists (`GET /repos/{o}/{r}/actions/runners/downloads`
//!   and `GET /orgs/{org}/actions/runners/downloads`) name the current
//!   release only, with `download_url` and `sha256_checksum`. The
//!   repository one needs the Administration permission: an installation
//!   made without it (an App for organization runners needs only
//!   Self-hosted runners) is answered 403 "Resource not accessible by
//!   integration". The organization one needs the organization's
//!   installation.
//! - `GET /repos/actions/runner/releases/tags/v{version}`: any installation
//!   token reads it (a public repository); its assets carry GitHub's
//!   `digest` (`sha256:…`) and a `browser_download_url`; an unknown tag is 404.
//! - `GET /_runner/download/actions-runner-linux-{x64,arm64}-{version}.tar.gz`
//!   serves each release's tarball (no auth, as GitHub's release downloads).

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::http::{gh_error, json_response};
use super::{SimGithub, runner, world};

/// The release the simulated GitHub calls current.
pub const CURRENT: &str = "2.331.0";
/// An older release, still downloadable, that a deployment may pin.
pub const PREVIOUS: &str = "2.330.0";

/// One release: its tarball (for every architecture) and that tarball's SHA-256.
#[derive(Clone)]
pub struct Release {
    pub version: String,
    pub tarball: Vec<u8>,
    pub sha256: String,
    /// Its asset ids start here (one per architecture).
    pub id: i64,
}

/// The releases, which is current, and which installations lack
/// Administration.
pub struct Releases {
    by_version: BTreeMap<String, Release>,
    current: String,
    without_administration: BTreeSet<i64>,
}

impl Default for Releases {
    fn default() -> Self {
        let mut by_version = BTreeMap::new();
        for (i, v) in [PREVIOUS, CURRENT].into_iter().enumerate() {
            let (tarball, sha256) = runner::tarball(v);
            let release = Release {
                version: v.to_string(),
                tarball,
                sha256,
                id: 9_000_000 + 100 * i as i64,
            };
            by_version.insert(v.to_string(), release);
        }
        Releases {
            by_version,
            current: CURRENT.to_string(),
            without_administration: BTreeSet::new(),
        }
    }
}

impl Releases {
    pub fn get(&self, version: &str) -> Option<&Release> {
        self.by_version.get(version)
    }

    pub fn current(&self) -> &Release {
        &self.by_version[&self.current]
    }
}

fn file_name(arch: &str, version: &str) -> String {
    format!("actions-runner-linux-{arch}-{version}.tar.gz")
}

impl SimGithub {
    fn releases(&self) -> std::sync::MutexGuard<'_, Releases> {
        self.0.releases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current runner release: (version, SHA-256 of its tarball).
    pub fn current_runner_release(&self) -> (String, String) {
        let r = self.releases();
        let c = r.current();
        (c.version.clone(), c.sha256.clone())
    }

    /// A release's tarball SHA-256, if the simulated GitHub has it.
    pub fn runner_release_sha256(&self, version: &str) -> Option<String> {
        self.releases().get(version).map(|r| r.sha256.clone())
    }

    /// The owner's installation was granted no Administration permission
    /// (as an App for organization runners needs none).
    pub fn without_administration(&self, owner: &str) {
        let inst = self.installation_of(owner);
        self.releases().without_administration.insert(inst);
    }

    /// Requests for one release file, by its name.
    pub fn runner_downloads(&self, file: &str) -> u64 {
        self.world()
            .requests
            .get(&format!("GET /_runner/download/{file}"))
            .copied()
            .unwrap_or(0)
    }
}

/// The Linux files of `release`, as a downloads list names them.
fn downloads(api: &str, release: &Release) -> Value {
    let files: Vec<Value> = runner::ARCHES
        .iter()
        .map(|arch| {
            let filename = file_name(arch, &release.version);
            json!({
                "os": "linux",
                "architecture": arch,
                "download_url": format!("{api}/_runner/download/{filename}"),
                "filename": filename,
                "sha256_checksum": release.sha256,
            })
        })
        .collect();
    Value::Array(files)
}

/// A release as `GET /repos/{o}/{r}/releases/tags/{tag}` answers.
fn release_json(api: &str, r: &Release) -> Value {
    let base = format!("{api}/repos/actions/runner/releases/{}", r.id);
    let author = world::account_json("github-actions[bot]", 41_898_282, api);
    let at = "2026-11-20T12:00:00Z";
    let assets: Vec<Value> = runner::ARCHES
        .iter()
        .enumerate()
        .map(|(i, arch)| {
            let name = file_name(arch, &r.version);
            let id = r.id + 1 + i as i64;
            json!({
                "url": format!("{api}/repos/actions/runner/releases/assets/{id}"),
                "browser_download_url": format!("{api}/_runner/download/{name}"),
                "id": id, "node_id": format!("RA_{id}"), "name": name, "label": "",
                "state": "uploaded", "content_type": "application/gzip",
                "size": r.tarball.len(), "digest": format!("sha256:{}", r.sha256),
                "download_count": 0, "created_at": at, "updated_at": at, "uploader": author,
            })
        })
        .collect();
    json!({
        "url": base, "html_url": format!("https://github.com/actions/runner/releases/tag/v{}", r.version),
        "assets_url": format!("{base}/assets"),
        "upload_url": format!("https://uploads.github.com/repos/actions/runner/releases/{}/assets{{?name,label}}", r.id),
        "tarball_url": format!("{api}/repos/actions/runner/tarball/v{}", r.version),
        "zipball_url": format!("{api}/repos/actions/runner/zipball/v{}", r.version),
        "id": r.id, "node_id": format!("RE_{}", r.id), "tag_name": format!("v{}", r.version),
        "target_commitish": "main", "name": format!("v{}", r.version), "body": "",
        "draft": false, "prerelease": false, "created_at": at, "published_at": at,
        "author": author, "assets": assets,
    })
}

/// The calls of an installation token about runner releases, or `None`
/// for any other call.
pub(super) fn route(sim: &SimGithub, inst: i64, method: &Method, seg: &[&str]) -> Option<Response> {
    if method != Method::GET {
        return None;
    }
    let api = sim.public_url();
    match seg {
        ["repos", "actions", "runner", "releases", "tags", tag] => {
            let releases = sim.releases();
            Some(match tag.strip_prefix('v').and_then(|v| releases.get(v)) {
                Some(r) => json_response(StatusCode::OK, release_json(&api, r)),
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            })
        }
        ["repos", o, r, "actions", "runners", "downloads"] => {
            let theirs = sim
                .world()
                .repos
                .get(&format!("{o}/{r}"))
                .is_some_and(|repo| repo.installation == inst);
            let releases = sim.releases();
            Some(if !theirs {
                gh_error(StatusCode::NOT_FOUND, "Not Found")
            } else if releases.without_administration.contains(&inst) {
                gh_error(
                    StatusCode::FORBIDDEN,
                    "Resource not accessible by integration",
                )
            } else {
                json_response(StatusCode::OK, downloads(&api, releases.current()))
            })
        }
        ["orgs", org, "actions", "runners", "downloads"] => {
            let theirs = sim
                .world()
                .org_installations
                .get(&inst)
                .is_some_and(|o| o == org);
            Some(if theirs {
                json_response(StatusCode::OK, downloads(&api, sim.releases().current()))
            } else {
                gh_error(StatusCode::NOT_FOUND, "Not Found")
            })
        }
        _ => None,
    }
}

/// `GET /_runner/download/{file}`: a release's tarball.
pub(super) fn download(sim: &SimGithub, file: &str) -> Response {
    *sim.world()
        .requests
        .entry(format!("GET /_runner/download/{file}"))
        .or_default() += 1;
    let releases = sim.releases();
    let found = releases.by_version.values().find(|r| {
        runner::ARCHES
            .iter()
            .any(|a| file_name(a, &r.version) == file)
    });
    match found {
        Some(r) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/gzip")],
            r.tarball.clone(),
        )
            .into_response(),
        None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_release_differs_from_the_older_one() {
        let r = Releases::default();
        let (old, new) = (r.get(PREVIOUS).unwrap(), r.current());
        assert_eq!(new.version, CURRENT);
        assert_ne!(old.sha256, new.sha256);
        let list = downloads("http://gh", new);
        assert_eq!(list[0]["filename"], file_name("x64", CURRENT));
        assert_eq!(list[0]["sha256_checksum"], new.sha256.as_str());
        let rel = release_json("http://gh", old);
        assert_eq!(rel["tag_name"], format!("v{PREVIOUS}"));
        assert_eq!(rel["assets"][0]["digest"], format!("sha256:{}", old.sha256));
        assert_eq!(
            rel["assets"][0]["browser_download_url"],
            format!("http://gh/_runner/download/{}", file_name("x64", PREVIOUS))
        );
    }
}
