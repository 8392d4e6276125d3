//! The soak's machines: a stand-in for the bootstrap script and the runner
//! that does with a booted instance what they do (src/bootstrap/bootstrap.sh,
//! the simulated actions/runner's `run.sh`), on the real clock, cheaply
//! enough for a hundred machines on two cores. It redeems the JIT config
//! rigger put in the instance's environment (`RIGGER_JIT_0`, …); polls for a
//! job, giving up after `RIGGER_IDLE_TIMEOUT` seconds; runs the job for its
//! duration, renewing its lock each half second, and stops when GitHub
//! says the job ended (cancelled); reports the job's end; and destroys its
//! own machine with the per-instance key Vast.ai injects
//! (`CONTAINER_API_KEY`), with the script's retries. A machine whose host
//! died, or that rigger destroyed, just stops: its runner goes silent, as a
//! dead machine's does.

use std::collections::BTreeMap;
use std::time::Duration;

use rigger::sim::github::SimGithub;
use rigger::sim::vast::{Booted, Phase, SimVast};

const STEP: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Machines {
    pub github: SimGithub,
    pub vast: SimVast,
    pub vast_url: String,
    pub http: reqwest::Client,
}

impl Machines {
    /// Install as the simulated Vast.ai's boot seam.
    pub fn install(self) {
        let vast = self.vast.clone();
        let rt = tokio::runtime::Handle::current();
        vast.on_boot(std::sync::Arc::new(move |b| {
            let m = self.clone();
            rt.spawn(async move { m.run(b).await });
        }));
    }

    /// Whether the machine still runs: not destroyed, its host not dead.
    fn alive(&self, id: i64) -> bool {
        matches!(self.vast.phase(id), Some(Phase::Running))
    }

    async fn run(self, b: Booted) {
        let env: BTreeMap<String, String> = b.env.iter().cloned().collect();
        let jit: String = (0..)
            .map_while(|i| env.get(&format!("RIGGER_JIT_{i}")).cloned())
            .collect();
        let idle_s: u64 = env
            .get("RIGGER_IDLE_TIMEOUT")
            .and_then(|s| s.parse().ok())
            .unwrap_or(600);
        let code = match self.runner(b.id, &jit, idle_s).await {
            Some(code) => code,
            // Dead or destroyed: nothing on it runs any more.
            None => return,
        };
        self.destroy_self(&env).await;
        self.vast.exit(b.id, code);
    }

    /// The runner's life; `None` when the machine died under it.
    async fn runner(&self, id: i64, jit: &str, idle_s: u64) -> Option<i32> {
        let Some(runner) = self.github.connect_runner(jit) else {
            // The JIT config was refused: the bootstrap reports a failure.
            return Some(1);
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(idle_s);
        let job = loop {
            if !self.alive(id) {
                return None;
            }
            if let Some(job) = self.github.take_job(runner) {
                break job;
            }
            if tokio::time::Instant::now() >= deadline {
                // No job in time: stopped, and (no job ran) a failure.
                return Some(1);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let j = self.github.job(job)?;
        let end = tokio::time::Instant::now() + Duration::from_millis(j.duration_ms as u64);
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(STEP)).await;
            if !self.alive(id) {
                return None;
            }
            if !self.github.runner_heartbeat(runner) {
                // GitHub ended the job (cancelled): the runner exits.
                return Some(0);
            }
        }
        self.github.finish_job(job, &j.planned_conclusion);
        Some(0)
    }

    /// `DELETE /api/v0/instances/{id}/` with the per-instance key, six
    /// tries a second apart more each time, as the bootstrap script does.
    async fn destroy_self(&self, env: &BTreeMap<String, String>) {
        let (Some(cid), Some(key)) = (env.get("CONTAINER_ID"), env.get("CONTAINER_API_KEY")) else {
            return;
        };
        for i in 1..=6u64 {
            let r = self
                .http
                .delete(format!("{}/api/v0/instances/{cid}/", self.vast_url))
                .bearer_auth(key)
                .json(&serde_json::json!({}))
                .send()
                .await;
            // `curl -f`: any 2xx is done, even a refusal Vast.ai answers
            // 200 with `success: false` (rigger's reconciler sees to those).
            if r.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_secs(i)).await;
        }
    }
}
