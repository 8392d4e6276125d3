//! The engine's ports for the checks that run the engine on what arrives
//! (deliveries, callbacks): a market with no offer and a GitHub that
//! refuses to register runners, so that nothing is ever rented, and a
//! record of what the engine destroyed and deleted.

use std::sync::{Arc, Mutex};

use rigger::config::model::VastRunner;
use rigger::engine::Engine;
use rigger::engine::ports::{
    CheckRun, CheckTarget, Cloud, CloudError, ConfigFiles, Github, GithubError, GroupAccess,
    JitRunner, LaunchSpec, ManualClock, OfferSearch, RepoRef, RunOrigin, RunnerArch, RunnerListing,
    RunnerRelease,
};
use rigger::engine::reconcile::{CloudView, GithubJobStatus, GithubJobView};
use rigger::metrics::Metrics;
use rigger::settings::{self, Settings};
use rigger::store::Store;

/// What the engine asked the world to remove.
#[derive(Debug, Clone, Default)]
pub struct Removed(Arc<Mutex<Vec<String>>>);

impl Removed {
    fn push(&self, what: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(what);
    }

    pub fn list(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub struct NoMarket(pub Removed);

impl Cloud for NoMarket {
    async fn search(&self, _: &VastRunner, _: f64) -> Result<OfferSearch, CloudError> {
        Ok(OfferSearch::NoMatch {
            diagnosis: "no offers in the fuzz world".into(),
        })
    }

    async fn create(&self, _: &LaunchSpec) -> Result<String, CloudError> {
        Err(CloudError::Invalid(
            "nothing is rented in the fuzz world".into(),
        ))
    }

    async fn find(&self, _: &str) -> Result<Option<CloudView>, CloudError> {
        Ok(None)
    }

    async fn list(&self, _: &str) -> Result<Vec<CloudView>, CloudError> {
        Ok(Vec::new())
    }

    async fn destroy(&self, provider_id: &str) -> Result<(), CloudError> {
        self.0.push(format!("instance {provider_id}"));
        Ok(())
    }

    async fn logs(&self, _: &str) -> Result<String, CloudError> {
        Ok(String::new())
    }
}

pub struct ClosedGithub(pub Removed);

impl Github for ClosedGithub {
    /// The example `.cirun.yml`, so that a job's labels pick a definition.
    async fn config_files(&self, _: &RepoRef, _: Option<&str>) -> Result<ConfigFiles, GithubError> {
        Ok(ConfigFiles {
            repo: Some(include_str!("../../examples/.cirun.yml").to_string()),
            ..ConfigFiles::default()
        })
    }

    async fn create_jit_runner(
        &self,
        _: &RepoRef,
        _: &str,
        _: &[String],
    ) -> Result<JitRunner, GithubError> {
        Err(GithubError::Refused("no runners in the fuzz world".into()))
    }

    async fn delete_runner(&self, _: &RepoRef, runner_id: i64) -> Result<(), GithubError> {
        self.0.push(format!("runner {runner_id}"));
        Ok(())
    }

    async fn list_runners(&self, _: &str, _: &[RepoRef]) -> RunnerListing {
        RunnerListing::default()
    }

    async fn get_job(&self, _: &RepoRef, job_id: i64) -> Result<GithubJobView, GithubError> {
        Ok(GithubJobView {
            job_id,
            status: GithubJobStatus::Queued,
            conclusion: None,
            runner_name: None,
        })
    }

    async fn check_run(
        &self,
        _: &RepoRef,
        _: &CheckTarget,
        _: Option<i64>,
        _: &CheckRun,
    ) -> Result<i64, GithubError> {
        Ok(1)
    }

    async fn teams_of(
        &self,
        _: &RepoRef,
        _: &str,
        _: &[String],
    ) -> Result<Vec<String>, GithubError> {
        Ok(Vec::new())
    }

    async fn run_origin(&self, _: &RepoRef, _: i64) -> Result<RunOrigin, GithubError> {
        Ok(RunOrigin::default())
    }

    async fn role_of(&self, _: &RepoRef, _: &str) -> Result<Option<String>, GithubError> {
        Ok(None)
    }

    async fn hook_deliveries(
        &self,
        _: Option<&str>,
    ) -> Result<rigger::engine::ports::HookDeliveryPage, GithubError> {
        Ok(Default::default())
    }

    async fn redeliver(&self, _: i64) -> Result<(), GithubError> {
        Ok(())
    }

    async fn cancel_run(
        &self,
        _: &RepoRef,
        _: i64,
    ) -> Result<rigger::engine::ports::RunCancel, GithubError> {
        Ok(rigger::engine::ports::RunCancel::AlreadyOver)
    }

    fn forget_installation(&self, _: i64) {}

    async fn runner_group_access(&self, _: &RepoRef) -> Result<GroupAccess, GithubError> {
        Ok(GroupAccess::Serves)
    }

    async fn runner_release(
        &self,
        _: &RepoRef,
        _: RunnerArch,
        _: Option<&str>,
    ) -> Result<Option<RunnerRelease>, GithubError> {
        Ok(None)
    }
}

pub type FuzzEngine = Engine<NoMarket, ClosedGithub>;

/// rigger's settings for the fuzz world, from the environment alone.
pub fn settings() -> Settings {
    let env = |name: &str| {
        let value = match name {
            "RIGGER_GITHUB_APP_ID" => "1",
            "RIGGER_GITHUB_PRIVATE_KEY" => "-----BEGIN PRIVATE KEY-----fuzz",
            "RIGGER_WEBHOOK_SECRET" => "fuzz-webhook-secret",
            "RIGGER_VAST_API_KEY" => "fuzz-vast-key",
            "RIGGER_CONTROLLER_ID" => "fuzz",
            _ => return None,
        };
        Some(value.to_string())
    };
    settings::load(None, &env).expect("the fuzz world's settings are valid")
}

/// A fresh in-memory store and an engine on it, at a fixed time.
pub async fn engine(clock: ManualClock) -> (Arc<FuzzEngine>, Removed) {
    let store = Store::connect("sqlite::memory:")
        .await
        .expect("an in-memory SQLite store");
    let removed = Removed::default();
    let engine = Engine::new(
        store,
        NoMarket(removed.clone()),
        ClosedGithub(removed.clone()),
        Arc::new(settings()),
        Arc::new(clock),
        Arc::new(Metrics::new()),
    );
    (Arc::new(engine), removed)
}
