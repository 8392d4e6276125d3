//! How long a job will run: the median of the last completed jobs of the
//! same repository and runner definition, normalised to a reference GPU
//! (RTX 3090 = 1.0), so an offer on a faster GPU is credited with finishing
//! sooner. With no history, the configured default.

use crate::cloud::vast::gpus;

/// How many past jobs to look at.
pub const HISTORY: i64 = 20;

/// Expected hours on the reference GPU, from `(seconds, gpu_name)` history.
pub fn expected_reference_hours(history: &[(i64, String)], default_minutes: u32) -> f64 {
    let mut normalised: Vec<f64> = history
        .iter()
        .filter(|(seconds, _)| *seconds > 0)
        .filter_map(|(seconds, gpu)| {
            // A job that took 1 h on a GPU twice as fast as the reference
            // would take 2 h on the reference.
            let speed = gpus::by_vast_name(gpu)?.relative_speed?;
            Some(*seconds as f64 / 3600.0 * speed)
        })
        .collect();
    if normalised.is_empty() {
        return f64::from(default_minutes) / 60.0;
    }
    normalised.sort_by(f64::total_cmp);
    let mid = normalised.len() / 2;
    if normalised.len() % 2 == 1 {
        normalised[mid]
    } else {
        (normalised[mid - 1] + normalised[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(items: &[(i64, &str)]) -> Vec<(i64, String)> {
        items.iter().map(|(s, g)| (*s, g.to_string())).collect()
    }

    #[test]
    fn no_history_gives_the_default() {
        assert_eq!(expected_reference_hours(&[], 30), 0.5);
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
    fn unknown_gpus_do_not_count() {
        assert_eq!(
            expected_reference_hours(&h(&[(3600, "Mystery GPU")]), 45),
            0.75
        );
    }
}
