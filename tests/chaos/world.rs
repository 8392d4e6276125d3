//! The soak's world: the simulated GitHub and Vast.ai in this process,
//! served over real HTTP on OS-chosen ports on the real clock (rigger runs
//! as separate processes, which only the real clock can share), with their
//! fault knobs on; and `rigger serve` processes on one database, started,
//! killed -9 and started again.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rigger::engine::ports::SystemClock;
use rigger::settings::Secret;
use rigger::sim::github::liveness::Liveness;
use rigger::sim::github::{SimGithub, SimGithubConfig, WebhookFaults};
use rigger::sim::vast::{Faults, Limits, SimConfig, SimVast};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::Knobs;

pub const WEBHOOK_SECRET: &str = "chaos-webhook-s3cret";
pub const VAST_KEY: &str = "chaos-vast-key-5ecret";
pub const CONTROLLER: &str = "chaos";
pub const REPO: &str = "acme/ml";
const CIRUN: &str = include_str!("../../examples/.cirun.yml");

/// Vast.ai's documented limits, ten times faster: the soak's jobs last
/// seconds, not minutes, so its rentals come ten times as thick; rigger
/// keeps to the same figures (RIGGER_VAST_RATE_LIMITS).
pub const LIMITS_TENTH: &str = "documented,search_per_minute=100,create_interval_s=0.45,\
create_penalty_s=1.2,show_interval_s=0.2,list_interval_s=0.1,destroy_interval_s=0.3";

/// Where rigger's database is.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(std::path::PathBuf),
    /// A URL whose connections use the soak's own schema, and that schema.
    Postgres {
        url: String,
        schema: String,
    },
}

impl Database {
    pub fn url(&self) -> String {
        match self {
            Database::Sqlite(p) => format!("sqlite://{}", p.display()),
            Database::Postgres { url, .. } => url.clone(),
        }
    }
}

pub struct World {
    pub dir: std::path::PathBuf,
    pub github: SimGithub,
    pub vast: SimVast,
    pub github_url: String,
    pub vast_url: String,
    pub db: Database,
    /// The standing Vast.ai faults.
    pub faults: Faults,
    pub http: reqwest::Client,
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

/// A port the OS says is free now: the simulated GitHub must know
/// rigger's webhook URL before rigger starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl World {
    pub async fn new(
        name: &str,
        k: &Knobs,
        db: impl FnOnce(&std::path::Path) -> Database,
    ) -> World {
        let dir = std::env::temp_dir().join(format!("rigger-chaos-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let clock = Arc::new(SystemClock);
        let github = SimGithub::new(
            SimGithubConfig {
                seed: k.seed,
                webhook_secret: Secret::new(WEBHOOK_SECRET),
                // GitHub sends from many workers, in no promised order.
                deliveries_in_flight: 8,
                ..SimGithubConfig::default()
            },
            clock.clone(),
        )
        .unwrap();
        // GitHub's limits, ten times as high as Vast.ai's are: the soak's
        // jobs come ten times as thick as a real hour's (rigger is told
        // the same figures; its pace keeps to 90 % of them).
        github.set_content_limit_figures(800, 5_000);
        github.set_hourly_limit(None, 50_000);
        github.add_repo(REPO, &[(".cirun.yml", CIRUN)]);
        github.set_role(REPO, "octocat", "write");
        github.set_webhook_faults(WebhookFaults {
            loss_rate: k.webhook_loss,
            duplicate_rate: k.webhook_duplicate,
            reorder: true,
            late_rate: 0.0,
        });
        // GitHub's ten minutes before a silent runner's job fails, at the
        // soak's pace (jobs of seconds): thirty seconds.
        github.set_liveness(Liveness {
            offline_after_ms: 15_000,
            lost_after_ms: 30_000,
        });
        let faults = Faults {
            error_rate: k.vast_error_rate,
            rate_limit_burst: 0,
            steal_rate: 0.3,
            // Another renter's rental lasts about as long as the soak's.
            steal_hold_ms: 30_000,
            ambiguous_create_rate: 0.05,
            die_rate: 0.04,
            stuck_rate: 0.03,
            ..Faults::default()
        };
        let vast = SimVast::new(
            SimConfig {
                seed: k.seed,
                // Enough 1× RTX 4090s in the US (about 75) for the soak's
                // jobs side by side; 2,000 offers hold 25, and a soak on
                // those measures the market running out, not rigger.
                offers: 6000,
                boot_delay_ms: 2_000,
                faults: faults.clone(),
                api_key: VAST_KEY.into(),
                limits: LIMITS_TENTH.parse::<Limits>().unwrap(),
            },
            clock,
        );
        let (gl, github_url) = listener().await;
        let (vl, vast_url) = listener().await;
        tokio::spawn(github.clone().serve(gl));
        tokio::spawn(vast.clone().serve(vl));
        let db = db(&dir);
        World {
            dir,
            github,
            vast,
            github_url,
            vast_url,
            db,
            faults,
            http: reqwest::Client::new(),
        }
    }

    /// The next `n` destroys are refused (`success: false`), besides the
    /// standing faults.
    pub fn refuse_some_destroys(&self, n: u32) {
        self.vast.set_faults(Faults {
            refuse_destroys: n,
            ..self.faults.clone()
        });
    }

    /// A burst of 429s on the next `n` requests, besides the standing faults.
    pub fn rate_limit_burst(&self, n: u32) {
        self.vast.set_faults(Faults {
            rate_limit_burst: n,
            ..self.faults.clone()
        });
    }

    pub async fn github_state(&self) -> Value {
        self.get(format!("{}/sim/state", self.github_url)).await
    }

    pub async fn vast_state(&self) -> Value {
        self.get(format!("{}/sim/state", self.vast_url)).await
    }

    async fn get(&self, url: String) -> Value {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Start one `rigger serve` on the soak's database, its output (at
    /// trace) appended to `log`.
    pub fn serve(&self, port: u16, log: &std::path::Path, replicas: u32) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let pem = self.dir.join("app.pem");
        if !pem.exists() {
            std::fs::write(&pem, self.github.private_key_pem().expose()).unwrap();
        }
        let limits = format!("{LIMITS_TENTH},replicas={replicas}");
        Command::new(env!("CARGO_BIN_EXE_rigger"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "trace")
            .env("RUST_BACKTRACE", "1")
            .env("RIGGER_LISTEN", format!("127.0.0.1:{port}"))
            .env("RIGGER_DATABASE_URL", self.db.url())
            .env("RIGGER_CONTROLLER_ID", CONTROLLER)
            .env("RIGGER_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("RIGGER_GITHUB_APP_ID", self.github.app_id().to_string())
            .env("RIGGER_GITHUB_PRIVATE_KEY_FILE", pem.display().to_string())
            .env("RIGGER_GITHUB_API_URL", &self.github_url)
            .env("RIGGER_VAST_API_URL", &self.vast_url)
            .env("RIGGER_VAST_API_KEY", VAST_KEY)
            .env("RIGGER_VAST_RATE_LIMITS", limits)
            // Short timeouts, so the reconciler's rules act within the run
            // (each at its setting's floor, or near it).
            .env("RIGGER_TIMEOUTS_RECONCILE_INTERVAL", "2s")
            .env("RIGGER_TIMEOUTS_CREATE", "15s")
            .env("RIGGER_TIMEOUTS_BOOTSTRAP", "60s")
            .env("RIGGER_TIMEOUTS_IDLE", "60s")
            .env("RIGGER_TIMEOUTS_JOB_QUIET", "10s")
            .env("RIGGER_TIMEOUTS_UNREACHABLE", "60s")
            .env("RIGGER_GITHUB_CONTENT_PER_MINUTE", "800")
            .env("RIGGER_GITHUB_CONTENT_PER_HOUR", "5000")
            .env("RIGGER_TIMEOUTS_PROVISION_RETRY", "2s")
            .env("RIGGER_TIMEOUTS_PROVISION_RETRY_MAX", "30s")
            .env("RIGGER_MAX_INSTANCES", "80")
            .env("RIGGER_MAX_INSTANCES_PER_REPO", "80")
            .env("RIGGER_DAILY_BUDGET", "10000")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Wait (real time) until rigger on `port` says it is ready.
    pub async fn ready(&self, port: u16) {
        let url = format!("http://127.0.0.1:{port}/readyz");
        for _ in 0..300 {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("rigger serve on {port} did not become ready within 30 s");
    }
}

/// `kill -9`: no chance to finish anything.
pub async fn kill_9(child: &mut Child) {
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
