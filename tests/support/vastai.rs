//! The real `vastai` 1.9.1 CLI, run hermetically against a simulated
//! Vast.ai (`tests/vastai_cli.rs`, `tests/vast_contract.rs`).

use std::path::PathBuf;

use rigger::engine::ports::ManualClock;
use serde_json::Value;

pub struct Cli {
    pub bin: PathBuf,
    pub url: String,
    pub home: PathBuf,
    /// The simulator's clock: a person at the terminal takes a few seconds
    /// between commands, so each command comes 6 s after the last (more
    /// than any documented interval, and within search's 10 a minute).
    pub clock: ManualClock,
}

impl Cli {
    /// Run `vastai --url URL --api-key KEY ARGS…` hermetically: `VAST_URL`
    /// too (the CLI's import-time GPU-name probe ignores `--url`), no update
    /// check, and its config and caches in a temporary directory.
    pub async fn run(&self, args: &[&str]) -> (String, String) {
        self.clock.advance_ms(6_000);
        let out = tokio::process::Command::new(&self.bin)
            .args(["--url", &self.url, "--api-key", "sim-vast-key"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("VAST_URL", &self.url)
            .env("VASTAI_NO_UPDATE_CHECK", "1")
            .env("CI", "1")
            .env("XDG_CONFIG_HOME", self.home.join("cfg"))
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("XDG_STATE_HOME", self.home.join("state"))
            .env("XDG_DATA_HOME", self.home.join("data"))
            .env("NO_PROXY", "*")
            .output()
            .await
            .expect("vastai runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (stdout, stderr)
    }

    pub async fn json(&self, args: &[&str]) -> Value {
        let (out, err) = self.run(args).await;
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?}: {e}\nstdout: {out}\nstderr: {err}"))
    }
}
