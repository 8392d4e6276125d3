//! The range every number and duration setting must fall in, its default,
//! and why: a value outside is refused at start-up, never discovered later
//! as every job failing at once or a limit that no longer limits.
//!
//! The bounds are generous on purpose. They are there to catch a typo (a
//! unit left off, a few zeros too many, `nan`), not to second-guess an
//! operator's choice, so each one is well past anything a deployment needs.

use std::time::Duration;

/// An inclusive range, the value used when nothing is set, and the reason
/// for the range as the error message gives it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rule<T> {
    pub default: T,
    pub min: T,
    pub max: T,
    pub why: &'static str,
}

impl<T: PartialOrd + Copy> Rule<T> {
    pub fn admits(&self, value: T) -> bool {
        self.min <= value && value <= self.max
    }
}

/// An amount of money: more than $0 (at $0 nothing is ever rented), at
/// most `max`, and a real number (NaN compares false with everything, so
/// a NaN limit would stop limiting).
#[derive(Debug, Clone, Copy)]
pub(super) struct Money {
    pub default: f64,
    pub max: f64,
    pub why: &'static str,
}

impl Money {
    pub fn admits(&self, value: f64) -> bool {
        value.is_finite() && value > 0.0 && value <= self.max
    }
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

pub(super) const RECONCILE_INTERVAL: Rule<Duration> = Rule {
    default: secs(30),
    min: secs(1),
    max: secs(HOUR),
    why: "each pass calls Vast.ai and GitHub, so more often than every second only spends their rate limits, and less often than hourly leaves a leaked machine running, and paid for, for hours",
};

pub(super) const CREATE: Rule<Duration> = Rule {
    default: secs(5 * MINUTE),
    min: secs(1),
    max: secs(HOUR),
    why: "Vast.ai answers a create call within seconds; one unanswered for an hour was lost, and the machine it may have made must be found before then",
};

pub(super) const BOOTSTRAP: Rule<Duration> = Rule {
    default: secs(20 * MINUTE),
    min: secs(MINUTE),
    max: secs(DAY),
    why: "no machine boots and registers its runner in under a minute, so a shorter timeout destroys every machine before it can work; one not online after a day never will be, and is paid for all that time",
};

pub(super) const UNREACHABLE: Rule<Duration> = Rule {
    default: secs(10 * MINUTE),
    min: secs(MINUTE),
    max: secs(DAY),
    why: "a host's lost heartbeat often comes back within minutes; an unreachable idle machine is paid for while it waits",
};

pub(super) const IDLE: Rule<Duration> = Rule {
    default: secs(10 * MINUTE),
    min: secs(MINUTE),
    max: secs(DAY),
    why: "a runner may wait a minute for GitHub to hand it its job; an idle machine is paid for every hour it waits",
};

pub(super) const JOB_QUIET: Rule<Duration> = Rule {
    default: secs(10 * MINUTE),
    min: secs(10),
    max: secs(DAY),
    why: "each check is a GitHub API call for every quiet job; a job with no news for a day has long been missed",
};

pub(super) const MAX_LIFETIME: Rule<Duration> = Rule {
    default: secs(6 * HOUR),
    min: secs(MINUTE),
    max: secs(7 * DAY),
    why: "a machine needs a minute to boot at all; GitHub ends a job on a self-hosted runner after 5 days, so a machine older than a week serves nothing",
};

pub(super) const QUEUE: Rule<Duration> = Rule {
    default: secs(DAY),
    min: secs(MINUTE),
    max: secs(7 * DAY),
    why: "a job needs a minute for a few tries at renting; GitHub itself cancels a job queued for 24 h, so more than a week is a typo",
};

pub(super) const DESTROY_RETRY: Rule<Duration> = Rule {
    default: secs(5),
    min: secs(1),
    max: secs(10 * MINUTE),
    why: "Vast.ai takes a destroy every few seconds (its limit is one in 3 s); a machine whose destroy was refused bills until the retry",
};

pub(super) const DESTROY_RETRY_MAX: Rule<Duration> = Rule {
    default: secs(30),
    min: secs(1),
    max: secs(HOUR),
    why: "the backoff keeps a failing Vast.ai from being hammered; a machine whose destroy was refused bills until the retry",
};

pub(super) const PROVISION_RETRY: Rule<Duration> = Rule {
    default: secs(15),
    min: secs(1),
    max: secs(10 * MINUTE),
    why: "a job waiting for a GPU is looked at again after this at the soonest; Vast.ai allows 10 searches a minute, shared by all jobs",
};

pub(super) const PROVISION_RETRY_MAX: Rule<Duration> = Rule {
    default: secs(5 * MINUTE),
    min: secs(1),
    max: secs(HOUR),
    why: "a job waiting for a GPU is looked at again at least this often; GitHub cancels a job queued for 24 h",
};

/// The share of GitHub's secondary limits on writes (80 a minute, 500 an
/// hour) rigger keeps to, in percent.
pub(super) const PACE_PERCENT: Rule<i64> = Rule {
    default: 90,
    min: 1,
    max: 100,
    why: "over 100 % rigger would meet GitHub's secondary limits, which GitHub says may get the App banned; at 0 nothing would be written",
};

/// GitHub's secondary limits on content-generating requests (github.com:
/// 80 a minute, 500 an hour).
pub(super) const CONTENT_PER_MINUTE: Rule<i64> = Rule {
    default: 80,
    min: 1,
    max: 100_000,
    why: "github.com allows 80 content-generating requests a minute; change it only for a GitHub Enterprise Server whose administrator set another limit",
};

pub(super) const CONTENT_PER_HOUR: Rule<i64> = Rule {
    default: 500,
    min: 1,
    max: 1_000_000,
    why: "github.com allows 500 content-generating requests an hour; change it only for a GitHub Enterprise Server whose administrator set another limit",
};

pub(super) const MAX_INSTANCES: Rule<i64> = Rule {
    default: 20,
    min: 1,
    max: 100_000,
    why: "at 0 nothing is ever rented; 100000 machines is more than Vast.ai lists in all",
};

pub(super) const MAX_INSTANCES_PER_REPO: Rule<i64> = Rule {
    default: 10,
    ..MAX_INSTANCES
};

pub(super) const DEFAULT_JOB_MINUTES: Rule<i64> = Rule {
    // The one default `rigger plan` shares.
    default: crate::engine::estimate::DEFAULT_JOB_MINUTES as i64,
    min: 1,
    max: 5 * 24 * 60,
    why: "GitHub ends a job on a self-hosted runner after 5 days",
};

pub(super) const MAX_DPH: Money = Money {
    default: 5.0,
    max: 1_000.0,
    why: "$/hour for one machine; Vast.ai's dearest cost tens of dollars an hour",
};

pub(super) const MAX_JOB_COST: Money = Money {
    default: 25.0,
    max: 100_000.0,
    why: "the estimated $ for one job",
};

pub(super) const DAILY_BUDGET: Money = Money {
    default: 100.0,
    max: 1_000_000.0,
    why: "$ per UTC day for all machines together",
};

/// A duration as a setting is written: the largest unit that divides it.
pub(super) fn show(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        _ if s.is_multiple_of(DAY) => format!("{}d", s / DAY),
        _ if s.is_multiple_of(HOUR) => format!("{}h", s / HOUR),
        _ if s.is_multiple_of(MINUTE) => format!("{}m", s / MINUTE),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_within_its_own_range() {
        for rule in [
            RECONCILE_INTERVAL,
            CREATE,
            BOOTSTRAP,
            IDLE,
            UNREACHABLE,
            JOB_QUIET,
            MAX_LIFETIME,
            QUEUE,
            DESTROY_RETRY,
            DESTROY_RETRY_MAX,
            PROVISION_RETRY,
            PROVISION_RETRY_MAX,
        ] {
            assert!(rule.admits(rule.default), "{rule:?}");
        }
        for rule in [
            MAX_INSTANCES,
            MAX_INSTANCES_PER_REPO,
            DEFAULT_JOB_MINUTES,
            CONTENT_PER_MINUTE,
            CONTENT_PER_HOUR,
        ] {
            assert!(rule.admits(rule.default), "{rule:?}");
            // The settings hold counts as u32.
            assert!(u32::try_from(rule.max).is_ok(), "{rule:?}");
        }
        for rule in [MAX_DPH, MAX_JOB_COST, DAILY_BUDGET] {
            assert!(rule.admits(rule.default), "{rule:?}");
        }
    }

    #[test]
    fn money_must_be_a_real_amount_above_zero() {
        for bad in [
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1_000.01,
        ] {
            assert!(!MAX_DPH.admits(bad), "{bad}");
        }
        assert!(MAX_DPH.admits(0.001));
        assert!(MAX_DPH.admits(1_000.0));
    }

    #[test]
    fn durations_show_as_written() {
        assert_eq!(show(secs(30)), "30s");
        assert_eq!(show(secs(90)), "90s");
        assert_eq!(show(secs(600)), "10m");
        assert_eq!(show(secs(HOUR)), "1h");
        assert_eq!(show(secs(7 * DAY)), "7d");
        assert_eq!(show(Duration::ZERO), "0s");
    }
}
