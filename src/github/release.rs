//! actions/runner release files as GitHub describes them, in rigger's types.
//!
//! Two answers name a release file:
//! - the runner downloads list (`GET /repos/{o}/{r}/actions/runners/downloads`,
//!   or `GET /orgs/{org}/actions/runners/downloads` for organization
//!   runners: the repository one needs Administration, which an App that
//!   registers organization runners has no reason to hold). It names only
//!   GitHub's *current* release: per OS and architecture a `filename`
//!   (`actions-runner-linux-x64-2.331.0.tar.gz`, the version in it), a
//!   `download_url` and, usually, a `sha256_checksum`;
//! - a release of the public `actions/runner` repository
//!   (`GET /repos/actions/runner/releases/tags/v{version}`, readable with
//!   any installation token), whose `assets` each have a `name`, a
//!   `browser_download_url` and the `digest` GitHub computed at upload
//!   (`sha256:<hex>`; `null` for assets uploaded before GitHub computed
//!   digests).

use serde_json::Value;

use crate::engine::ports::{RunnerArch, RunnerRelease, Sha256Hex, runner_filename};

/// The downloads list of a repository (`owner/name`) or an organization.
pub fn downloads_path(scope: &str, organization: bool) -> String {
    if organization {
        format!("/orgs/{scope}/actions/runners/downloads")
    } else {
        format!("/repos/{scope}/actions/runners/downloads")
    }
}

/// The `actions/runner` release of `version` (its tag is `v{version}`).
pub fn release_path(version: &str) -> String {
    format!("/repos/actions/runner/releases/tags/v{version}")
}

/// The Linux file for `arch` a downloads list names, with its version read
/// from the file name; `None` when it names none (or not as GitHub names
/// release files, so no version can be read).
pub fn current_in_downloads(list: &Value, arch: RunnerArch) -> Option<RunnerRelease> {
    let file = list.as_array()?.iter().find(|d| {
        d.get("os").and_then(Value::as_str) == Some("linux")
            && d.get("architecture").and_then(Value::as_str) == Some(arch.as_str())
    })?;
    let filename = file.get("filename").and_then(Value::as_str)?;
    let version = version_in_filename(filename, arch)?;
    let url = file.get("download_url").and_then(Value::as_str)?;
    Some(RunnerRelease {
        version,
        arch,
        url: url.to_string(),
        sha256: file
            .get("sha256_checksum")
            .and_then(Value::as_str)
            .and_then(Sha256Hex::parse),
    })
}

/// The release's Linux asset for `arch`, verified by its `digest`;
/// `None` when the release has no such asset.
pub fn asset_in_release(release: &Value, version: &str, arch: RunnerArch) -> Option<RunnerRelease> {
    let name = runner_filename(version, arch);
    let asset = release
        .get("assets")?
        .as_array()?
        .iter()
        .find(|a| a.get("name").and_then(Value::as_str) == Some(name.as_str()))?;
    let url = asset.get("browser_download_url").and_then(Value::as_str)?;
    Some(RunnerRelease {
        version: version.to_string(),
        arch,
        url: url.to_string(),
        sha256: asset
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|d| d.strip_prefix("sha256:"))
            .and_then(Sha256Hex::parse),
    })
}

/// `2.331.0` from `actions-runner-linux-x64-2.331.0.tar.gz`.
fn version_in_filename(filename: &str, arch: RunnerArch) -> Option<String> {
    let version = filename
        .strip_prefix(&format!("actions-runner-linux-{arch}-"))?
        .strip_suffix(".tar.gz")?;
    let ok = !version.is_empty()
        && version.len() <= 64
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
    ok.then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_downloads_list_names_the_current_release_for_the_arch() {
        let sum = "AB".repeat(32);
        let list = json!([
            {"os": "osx", "architecture": "x64", "filename": "actions-runner-osx-x64-2.331.0.tar.gz",
             "download_url": "https://x/osx", "sha256_checksum": "0".repeat(64)},
            {"os": "linux", "architecture": "arm64", "filename": "actions-runner-linux-arm64-2.331.0.tar.gz",
             "download_url": "https://x/arm64", "sha256_checksum": "1".repeat(64)},
            {"os": "linux", "architecture": "x64", "filename": "actions-runner-linux-x64-2.331.0.tar.gz",
             "download_url": "https://x/x64", "sha256_checksum": sum},
        ]);
        let x64 = current_in_downloads(&list, RunnerArch::X64).unwrap();
        assert_eq!(x64.version, "2.331.0");
        assert_eq!(x64.url, "https://x/x64");
        assert_eq!(x64.sha256, Sha256Hex::parse(&"ab".repeat(32)));
        assert_eq!(x64.filename(), "actions-runner-linux-x64-2.331.0.tar.gz");
        let arm = current_in_downloads(&list, RunnerArch::Arm64).unwrap();
        assert_eq!(arm.url, "https://x/arm64");
    }

    #[test]
    fn a_list_without_a_checksum_or_the_file_says_so() {
        // GitHub's documented example has no sha256_checksum at all.
        let list = json!([{"os": "linux", "architecture": "x64",
            "filename": "actions-runner-linux-x64-2.164.0.tar.gz", "download_url": "https://x/a"},
            {"os": "linux", "architecture": "arm64", "filename": "b.tar.gz", "download_url": "https://x/b",
             "sha256_checksum": "xyz"}]);
        let x64 = current_in_downloads(&list, RunnerArch::X64).unwrap();
        assert_eq!((x64.version.as_str(), x64.sha256), ("2.164.0", None));
        assert_eq!(
            current_in_downloads(&list, RunnerArch::Arm64),
            None,
            "no version in its name"
        );
        assert_eq!(
            current_in_downloads(&json!({"message": "x"}), RunnerArch::X64),
            None
        );
    }

    #[test]
    fn a_release_asset_is_verified_by_its_digest() {
        let release = json!({"tag_name": "v2.330.0", "assets": [
            {"name": "actions-runner-linux-arm64-2.330.0.tar.gz", "browser_download_url": "https://x/arm",
             "digest": format!("sha256:{}", "C".repeat(64))},
            {"name": "actions-runner-linux-x64-2.330.0.tar.gz", "browser_download_url": "https://x/x64",
             "digest": null},
        ]});
        let arm = asset_in_release(&release, "2.330.0", RunnerArch::Arm64).unwrap();
        assert_eq!(arm.url, "https://x/arm");
        assert_eq!(arm.sha256, Sha256Hex::parse(&"c".repeat(64)));
        let x64 = asset_in_release(&release, "2.330.0", RunnerArch::X64).unwrap();
        assert_eq!(
            x64.sha256, None,
            "an asset from before GitHub computed digests"
        );
        assert_eq!(asset_in_release(&release, "2.329.0", RunnerArch::X64), None);
    }
}
