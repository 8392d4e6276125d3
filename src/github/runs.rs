//! Workflow runs: cancelling one (`POST /repos/{o}/{r}/actions/runs/{id}/cancel`,
//! needs the App permission Actions: write). GitHub answers 202 and
//! cancels the run's unfinished jobs; 409 when the run is already over; 403
//! when the App lacks the permission.

use reqwest::Method;

use super::client::GithubClient;
use crate::engine::ports::{GithubError, RepoRef, RunCancel};

impl GithubClient {
    pub async fn cancel_workflow_run(
        &self,
        repo: &RepoRef,
        run_id: i64,
    ) -> Result<RunCancel, GithubError> {
        let path = format!("/repos/{}/actions/runs/{run_id}/cancel", repo.repo);
        match self
            .call(repo.installation_id, Method::POST, &path, None)
            .await
        {
            Ok(answer) => answer.json().map(|_| RunCancel::Cancelled),
            // `Api` words a refusal "… GitHub answered {status}: …"; the two
            // statuses this call expects are told apart here.
            Err(GithubError::Refused(why)) if why.contains("answered 409") => {
                Ok(RunCancel::AlreadyOver)
            }
            Err(GithubError::Refused(why)) if why.contains("answered 403") => {
                Ok(RunCancel::NotPermitted)
            }
            Err(e) => Err(e),
        }
    }
}
