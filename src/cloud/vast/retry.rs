//! How hard the Vast.ai client tries: attempts, timeouts, and the backoff
//! between retries.

use std::time::Duration;

/// How hard to try before giving up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based), given `unit`, a
    /// uniform draw in [0, 1]: exponential backoff with *equal* jitter, not
    /// full jitter. The ceiling is base × 2ⁿ capped at `max_delay`, and the
    /// wait is uniform in [ceiling/2, ceiling]. Half the wait is fixed so
    /// that waits grow with the attempt (attempt n+1 never waits less than
    /// attempt n, until the cap); the random half spreads the retries of
    /// many callers so they do not hit Vast.ai's rate limit together.
    pub fn backoff_at(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_delay);
        // A NaN draw (clamp keeps NaN) waits the longest, as no entropy does.
        let unit = if unit.is_nan() {
            1.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        // `mul_f64` panics on a product no Duration holds (a ceiling near
        // Duration::MAX rounds up past it): the ceiling is then the wait.
        Duration::try_from_secs_f64(ceiling.as_secs_f64() * (0.5 + unit / 2.0)).unwrap_or(ceiling)
    }

    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let mut b = [0u8; 4];
        let unit = match getrandom::fill(&mut b) {
            Ok(()) => f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX),
            // No entropy: wait the longest, which is always safe.
            Err(_) => 1.0,
        };
        self.backoff_at(attempt, unit)
    }
}
