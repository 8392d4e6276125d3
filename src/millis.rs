//! Durations as the milliseconds the clock and the store count in (`i64`
//! since the Unix epoch). `as_millis() as i64` wraps a long enough
//! duration to a negative number, which turns "wait 300 million years"
//! into "already overdue"; these conversions saturate instead, so a
//! duration too long to count is simply never reached.

use std::time::Duration;

/// `d` in whole milliseconds, at most `i64::MAX` (some 292 million years).
pub fn of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The clock reading `d` after `now_ms`: the end of time rather than a
/// wrap into the past.
pub fn after(now_ms: i64, d: Duration) -> i64 {
    now_ms.saturating_add(of(d))
}

/// How long ago `then_ms` was at `now_ms`; a stored time far in the past
/// (or future) saturates instead of overflowing the subtraction.
pub fn since(now_ms: i64, then_ms: i64) -> i64 {
    now_ms.saturating_sub(then_ms)
}

/// A count of milliseconds as a wait: a negative count is no wait at all.
pub fn to_duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The longest wait rigger takes from a server's advice (`Retry-After`,
/// `X-RateLimit-Reset`): a day. GitHub's limits reset within the hour and
/// Vast.ai's within minutes; anything longer is a broken or hostile answer,
/// and rigger looks again in a day rather than never (or overflowing its
/// clock, as `now + i64::MAX` would).
pub const MAX_ADVISED_WAIT_SECS: i64 = 86_400;

/// A server's advised wait of `secs` seconds as milliseconds: at least
/// `min_secs`, at most [`MAX_ADVISED_WAIT_SECS`].
pub fn advised_wait_ms(secs: f64, min_secs: f64) -> i64 {
    let secs = if secs.is_nan() { min_secs } else { secs };
    let secs = secs.clamp(min_secs, MAX_ADVISED_WAIT_SECS as f64);
    (secs * 1000.0).ceil() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_to_wait_is_kept_within_a_day() {
        assert_eq!(advised_wait_ms(2.5, 0.0), 2_500);
        assert_eq!(advised_wait_ms(-5.0, 1.0), 1_000);
        assert_eq!(advised_wait_ms(1e308, 0.0), 86_400_000);
        assert_eq!(advised_wait_ms(f64::INFINITY, 0.0), 86_400_000);
        assert_eq!(advised_wait_ms(f64::NAN, 1.0), 1_000);
        assert_eq!(advised_wait_ms(i64::MAX as f64, 1.0), 86_400_000);
    }

    #[test]
    fn durations_too_long_to_count_saturate() {
        assert_eq!(of(Duration::from_millis(1_500)), 1_500);
        assert_eq!(of(Duration::from_secs(u64::MAX)), i64::MAX);
        assert_eq!(of(Duration::MAX), i64::MAX);
        // The value that used to wrap negative through `as i64`.
        let queue = Duration::from_secs(10_000_000_000_000_000);
        assert!(of(queue) > 0);
    }

    #[test]
    fn clock_arithmetic_never_wraps() {
        assert_eq!(after(1_000, Duration::from_secs(2)), 3_000);
        assert_eq!(after(1_000, Duration::MAX), i64::MAX);
        assert_eq!(after(i64::MAX - 1, Duration::from_millis(5)), i64::MAX);
        assert_eq!(since(5_000, 2_000), 3_000);
        assert_eq!(since(0, i64::MIN), i64::MAX);
        assert_eq!(since(i64::MIN, 1), i64::MIN);
    }

    #[test]
    fn a_negative_wait_is_none() {
        assert_eq!(to_duration(250), Duration::from_millis(250));
        assert_eq!(to_duration(0), Duration::ZERO);
        assert_eq!(to_duration(-5), Duration::ZERO);
        assert_eq!(to_duration(i64::MIN), Duration::ZERO);
        assert_eq!(
            to_duration(i64::MAX),
            Duration::from_millis(9_223_372_036_854_775_807)
        );
    }
}
