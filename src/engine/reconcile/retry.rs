//! When a destroy that did not go through is tried again: the one place
//! that decides it, for the reconciler's rule 9 (which retries) and its
//! loop (which wakes for the soonest retry rather than the next tick).
//!
//! A refused destroy leaves a machine billing after its job, so the first
//! retry comes within seconds; repeated refusals back off, doubling up to
//! a cap, so that a Vast.ai outage is not hammered. A rate-limit answer
//! names its own wait (Vast.ai's interval for the endpoint, or rigger's
//! limiter's slot), and that wait is kept to exactly: sooner would be
//! refused again, later leaves the machine billing for nothing.

use std::time::Duration;

use super::plan::Limits;
use crate::engine::ports::CloudError;
use crate::engine::state::InstanceState;
use crate::store::InstanceRow;

/// The least wait before a retry, whatever the hint: a hint of 0 must not
/// turn the reconciler into a busy loop.
const LEAST_WAIT_MS: i64 = 1_000;

/// How long to wait after the `refusals`-th destroy call in a row did not
/// go through (1 for the first), given why.
pub fn destroy_backoff_ms(refusals: i64, why: &CloudError, limits: &Limits) -> i64 {
    if let CloudError::RateLimited { retry_after_ms } = why {
        return (*retry_after_ms).max(LEAST_WAIT_MS);
    }
    let doublings = u32::try_from((refusals - 1).clamp(0, 30)).unwrap_or(30);
    limits
        .destroy_retry_ms
        .saturating_mul(1_i64 << doublings)
        .min(limits.destroy_retry_max_ms)
        .max(LEAST_WAIT_MS)
}

/// When the destroy of this machine is next due, if it is being destroyed:
/// the time its last refusal set, else (it was never refused, or the
/// process stopped before the answer was recorded) the first backoff after
/// the call.
pub fn destroy_due_at(i: &InstanceRow, limits: &Limits) -> Option<i64> {
    if i.state != InstanceState::Destroying {
        return None;
    }
    Some(
        i.destroy_due_at.unwrap_or_else(|| {
            i.destroy_called_at.unwrap_or(i.updated_at) + limits.destroy_retry_ms
        }),
    )
}

/// How long the reconcile loop sleeps before its next pass: until the next
/// interval (`until_tick`) or the soonest retry due, whichever is first,
/// and at least a second.
pub fn next_pass_in(until_tick: Duration, now: i64, soonest_due: Option<i64>) -> Duration {
    let least = Duration::from_millis(LEAST_WAIT_MS as u64);
    let wait = match soonest_due {
        Some(due) => {
            let until_due = Duration::from_millis(u64::try_from(due - now).unwrap_or(0));
            until_tick.min(until_due)
        }
        None => until_tick,
    };
    wait.max(least)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            destroy_retry_ms: 5_000,
            destroy_retry_max_ms: 30_000,
            ..Limits::default()
        }
    }

    #[test]
    fn refusals_back_off_from_seconds_doubling_up_to_the_cap() {
        let down = CloudError::Transient("HTTP 503".into());
        let waits: Vec<i64> = (1..=6)
            .map(|n| destroy_backoff_ms(n, &down, &limits()))
            .collect();
        assert_eq!(waits, [5_000, 10_000, 20_000, 30_000, 30_000, 30_000]);
        // Many refusals never overflow.
        assert_eq!(destroy_backoff_ms(1_000, &down, &limits()), 30_000);
    }

    #[test]
    fn a_rate_limit_is_waited_out_exactly_as_long_as_it_says() {
        let l = limits();
        let limited = |ms| CloudError::RateLimited { retry_after_ms: ms };
        assert_eq!(destroy_backoff_ms(1, &limited(2_000), &l), 2_000);
        // Later refusals do not stretch it: the answer names the wait.
        assert_eq!(destroy_backoff_ms(5, &limited(3_000), &l), 3_000);
        // A hint longer than the cap is kept to: sooner is refused again.
        assert_eq!(destroy_backoff_ms(1, &limited(90_000), &l), 90_000);
        assert_eq!(destroy_backoff_ms(1, &limited(0), &l), 1_000);
    }

    #[test]
    fn the_loop_wakes_for_the_soonest_retry_not_the_next_tick() {
        let tick = Duration::from_secs(30);
        assert_eq!(next_pass_in(tick, 100_000, None), tick);
        assert_eq!(
            next_pass_in(tick, 100_000, Some(105_000)),
            Duration::from_secs(5)
        );
        assert_eq!(next_pass_in(tick, 100_000, Some(200_000)), tick);
        // Already due: a second, not a busy loop.
        assert_eq!(
            next_pass_in(tick, 100_000, Some(90_000)),
            Duration::from_secs(1)
        );
    }
}
