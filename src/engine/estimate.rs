//! How long a job will run: from the last successful jobs of the same
//! repository and runner definition, normalised to a reference GPU
//! (RTX 3090 = 1.0), so an offer on a faster GPU is credited with finishing
//! sooner. With no history, [`DEFAULT_JOB_MINUTES`] (or the setting).
//!
//! Two figures come out of one history: the median, for ranking offers
//! (the typical run), and a higher percentile, for limit checks (a cost
//! limit must hold for the long runs too, not only the typical one).

use crate::cloud::vast::gpus;

/// How many past jobs to look at.
pub const HISTORY: i64 = 20;

/// Expected job length with no history: one default for `rigger serve`
/// (`limits.default_job_minutes`) and `rigger plan` (`--expected-minutes`),
/// so the same offer shows the same estimate in both.
pub const DEFAULT_JOB_MINUTES: u32 = 30;

/// The percentile of past runs a limit check uses.
pub const LIMIT_PERCENTILE: f64 = 0.9;

/// A past run: how long it took, on which GPU, and whether it succeeded.
/// A run cancelled or failed early says little of how long the job takes
/// when it goes through: it would bias the estimate low.
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    pub seconds: i64,
    pub gpu_name: String,
    pub succeeded: bool,
}

/// Expected hours on the reference GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expected {
    /// The median run: what offers are ranked by.
    pub ranking_hours: f64,
    /// A long run ([`LIMIT_PERCENTILE`]): what limits are checked against.
    pub limit_hours: f64,
}

/// Expected hours on the reference GPU, from past runs. Only successful
/// runs count. A run on a GPU with no speed figure counts as it took (at
/// the reference speed) rather than not at all: its time is a better guess
/// than no history.
pub fn expected(history: &[PastRun], default_minutes: u32) -> Expected {
    let mut normalised: Vec<f64> = history
        .iter()
        .filter(|r| r.succeeded && r.seconds > 0)
        .map(|r| {
            // A job that took 1 h on a GPU twice as fast as the reference
            // would take 2 h on the reference.
            let speed = gpus::by_vast_name(&r.gpu_name)
                .and_then(|g| g.relative_speed)
                .unwrap_or(1.0);
            r.seconds as f64 / 3600.0 * speed
        })
        .collect();
    if normalised.is_empty() {
        let hours = f64::from(default_minutes) / 60.0;
        return Expected {
            ranking_hours: hours,
            limit_hours: hours,
        };
    }
    normalised.sort_by(f64::total_cmp);
    Expected {
        ranking_hours: median(&normalised),
        limit_hours: percentile(&normalised, LIMIT_PERCENTILE),
    }
}

/// Expected hours on the reference GPU for ranking (the median).
pub fn expected_reference_hours(history: &[PastRun], default_minutes: u32) -> f64 {
    expected(history, default_minutes).ranking_hours
}

fn median(sorted: &[f64]) -> f64 {
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The nearest-rank percentile: the smallest value with at least `p` of
/// the runs at or below it.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seconds: i64, gpu: &str) -> PastRun {
        PastRun {
            seconds,
            gpu_name: gpu.into(),
            succeeded: true,
        }
    }

    fn h(items: &[(i64, &str)]) -> Vec<PastRun> {
        items.iter().map(|(s, g)| run(*s, g)).collect()
    }

    #[test]
    fn no_history_gives_the_default() {
        assert_eq!(expected_reference_hours(&[], 30), 0.5);
        assert_eq!(expected(&[], 30).limit_hours, 0.5);
    }

    #[test]
    fn history_is_normalised_by_gpu_speed() {
        // 1 h on an RTX 4090 (1.6×) is 1.6 h on the reference RTX 3090.
        let got = expected_reference_hours(&h(&[(3600, "RTX 4090")]), 30);
        assert!((got - 1.6).abs() < 1e-9, "{got}");
    }

    #[test]
    fn the_median_ignores_one_slow_outlier() {
        let got = expected_reference_hours(
            &h(&[(3600, "RTX 3090"), (3600, "RTX 3090"), (36_000, "RTX 3090")]),
            30,
        );
        assert!((got - 1.0).abs() < 1e-9, "{got}");
        let even = expected_reference_hours(&h(&[(3600, "RTX 3090"), (7200, "RTX 3090")]), 30);
        assert!((even - 1.5).abs() < 1e-9, "{even}");
    }

    #[test]
    fn a_gpu_without_a_speed_figure_counts_at_the_reference_speed() {
        assert_eq!(
            expected_reference_hours(&h(&[(3600, "Mystery GPU")]), 45),
            1.0
        );
    }

    #[test]
    fn runs_cancelled_or_failed_early_do_not_count() {
        let mut history = h(&[(3600, "RTX 3090"), (3600, "RTX 3090"), (3600, "RTX 3090")]);
        for seconds in [60, 90, 120, 30] {
            history.push(PastRun {
                succeeded: false,
                ..run(seconds, "RTX 3090")
            });
        }
        assert_eq!(expected_reference_hours(&history, 30), 1.0);
        // Only failures: as if there were no history.
        history.retain(|r| !r.succeeded);
        assert_eq!(expected_reference_hours(&history, 30), 0.5);
    }

    #[test]
    fn limits_are_checked_against_a_longer_run_than_ranking() {
        // Nine runs of 1 h and one of 5 h.
        let mut history = h(&[(3600, "RTX 3090"); 9]);
        history.push(run(5 * 3600, "RTX 3090"));
        let e = expected(&history, 30);
        assert_eq!(e.ranking_hours, 1.0);
        assert_eq!(e.limit_hours, 1.0, "p90 of ten: the ninth");
        history.push(run(5 * 3600, "RTX 3090"));
        let e = expected(&history, 30);
        assert_eq!(e.ranking_hours, 1.0);
        assert_eq!(e.limit_hours, 5.0);
        assert!(e.limit_hours >= e.ranking_hours);
    }
}
