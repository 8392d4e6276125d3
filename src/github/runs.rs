//! Workflow runs: cancelling one (`POST /repos/{o}/{r}/actions/runs/{id}/cancel`,
//! needs the App permission Actions: write). GitHub answers 202 and
//! cancels the run's unfinished jobs; 409 when the run is already over; 403
//! when the App lacks the permission.

use reqwest::Method;

use super::client::GithubClient;
use super::http::Auth;
use crate::engine::ports::{GithubError, RepoRef, RunCancel};

impl GithubClient {
    pub async fn cancel_workflow_run(
        &self,
        repo: &RepoRef,
        run_id: i64,
    ) -> Result<RunCancel, GithubError> {
        let token = self.auth().installation_token(repo.installation_id).await?;
        let path = format!("/repos/{}/actions/runs/{run_id}/cancel", repo.repo);
        match self
            .auth()
            .api()
            .send(Method::POST, &path, Auth::Bearer(&token), None)
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
