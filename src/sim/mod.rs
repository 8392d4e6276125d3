//! The simulated world: a Vast.ai and (later) a GitHub served over real HTTP
//! on loopback, so `rigger demo`, `rigger sim` and the tests run the real
//! clients against them. Everything random comes from a seed.

pub mod github;
pub mod machine;
pub mod vast;

/// SplitMix64: tiny, fast and good enough to generate markets and faults
/// reproducibly from a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + self.unit() * (hi - lo)
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An index drawn with the given weights.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// Where rigger finds the simulated world.
pub struct SimWorld<'a> {
    /// Folder for rigger's SQLite database and settings file.
    pub dir: &'a std::path::Path,
    pub github: &'a github::SimGithub,
    pub vast_url: &'a str,
    pub vast_api_key: &'a str,
    pub webhook_secret: &'a str,
    pub controller_id: &'a str,
}

/// rigger's settings for the simulated world: SQLite in `dir`, the
/// simulated App and Vast.ai account, the runner release left to its
/// default (the current one the simulated GitHub's downloads list names);
/// `extra` RIGGER_* variables on top.
pub fn rigger_settings(
    w: &SimWorld<'_>,
    extra: &[(&str, &str)],
) -> Result<crate::settings::Settings, crate::settings::SettingsError> {
    let toml = w.dir.join("rigger.toml");
    // No runner release pinned: rigger asks the simulated GitHub's runner
    // downloads list, as a default deployment asks GitHub's.
    let text = "[runner]\n";
    if let Err(e) = std::fs::write(&toml, text) {
        tracing::warn!(error = %e, "cannot write the simulated world's rigger.toml");
    }
    let mut env: std::collections::BTreeMap<String, String> = [
        ("RIGGER_LISTEN", "127.0.0.1:0".to_string()),
        (
            "RIGGER_DATABASE_URL",
            format!("sqlite://{}", w.dir.join("rigger.db").display()),
        ),
        ("RIGGER_CONTROLLER_ID", w.controller_id.to_string()),
        ("RIGGER_WEBHOOK_SECRET", w.webhook_secret.to_string()),
        ("RIGGER_GITHUB_APP_ID", w.github.app_id().to_string()),
        (
            "RIGGER_GITHUB_PRIVATE_KEY",
            w.github.private_key_pem().expose().to_string(),
        ),
        ("RIGGER_GITHUB_API_URL", w.github.public_url()),
        ("RIGGER_VAST_API_KEY", w.vast_api_key.to_string()),
        ("RIGGER_VAST_API_URL", w.vast_url.to_string()),
        // Vast.ai's documented rate limits, as the simulated Vast.ai keeps
        // them (`SimConfig::default()`) and as `rigger serve` does unless
        // told otherwise: RIGGER_VAST_RATE_LIMITS is not set here.
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    crate::settings::load(Some(&toml), &|k| env.get(k).cloned())
}
