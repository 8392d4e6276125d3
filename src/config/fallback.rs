//! How Cirun's fallback lists become the ordered candidates to try.
//!
//! `instance_type`, `machine_image`, `region` and `preemptible` may each be a
//! value or a list. Cirun documents only equal-length lists, zipped
//! position by position; real files also broadcast a single value against a
//! list, and some mix lists of different lengths (3 instance types × 13 zones).
//!
//! rigger's rule, which covers all three:
//! 1. a single value (or an absent key) applies to every candidate;
//! 2. lists of the same length are zipped, position by position;
//! 3. groups of lists with different lengths are combined as a product, the
//!    group holding the earlier key (in the order above) varying slowest.
//!
//! So `instance_type: [a, b, c]` with 13 zones tries a in all 13 zones, then
//! b, then c — 39 candidates — and `preemptible: [true, false]` with two
//! instance types tries a/spot then b/on-demand, exactly as Cirun's docs say.

/// Most candidates one runner may have. Each is a search of Vast.ai's
/// market while a job waits; the most any real file makes is 39
/// (labring-actions/wasi-image: 3 instance types × 13 zones), and 256 leaves
/// room for six times that.
pub const MAX_CANDIDATES: usize = 256;

/// Lists whose lengths make more candidates than [`MAX_CANDIDATES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the lists would make {would_make} fallback candidates; rigger tries at most {MAX_CANDIDATES}"
)]
pub struct TooManyCandidates {
    /// The product of the distinct list lengths (saturated at `u128::MAX`).
    pub would_make: u128,
}

/// How many candidates lists of these lengths make, counted without
/// making them: the product of the distinct lengths above 1.
pub fn count(lengths: &[usize]) -> u128 {
    groups(lengths)
        .iter()
        .fold(1u128, |n, &len| n.saturating_mul(len as u128))
}

/// For lists of these lengths (1 for a single value), the indices into each
/// list, one tuple per candidate, in the order to try them; an error, before
/// any is made, when there would be more than [`MAX_CANDIDATES`].
pub fn expand(lengths: &[usize]) -> Result<Vec<Vec<usize>>, TooManyCandidates> {
    let would_make = count(lengths);
    if would_make > MAX_CANDIDATES as u128 {
        return Err(TooManyCandidates { would_make });
    }
    let groups = groups(lengths);
    let mut out = Vec::new();
    let mut counters = vec![0usize; groups.len()];
    loop {
        out.push(
            lengths
                .iter()
                .map(|&len| match groups.iter().position(|&g| g == len) {
                    Some(gi) if len > 1 => counters[gi],
                    _ => 0,
                })
                .collect(),
        );
        // Advance the odometer: the last group turns fastest.
        let mut g = groups.len();
        loop {
            if g == 0 {
                return Ok(out);
            }
            g -= 1;
            counters[g] += 1;
            if counters[g] < groups[g] {
                break;
            }
            counters[g] = 0;
        }
    }
}

/// Distinct list lengths (> 1), in the order their first key appears.
fn groups(lengths: &[usize]) -> Vec<usize> {
    let mut groups: Vec<usize> = Vec::new();
    for &len in lengths {
        if len > 1 && !groups.contains(&len) {
            groups.push(len);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(lengths: &[usize]) -> Vec<Vec<usize>> {
        expand(lengths).expect("within the limit")
    }

    #[test]
    fn single_values_give_one_candidate() {
        assert_eq!(ok(&[1, 1, 1, 1]), vec![vec![0, 0, 0, 0]]);
    }

    #[test]
    fn equal_lengths_zip() {
        assert_eq!(ok(&[2, 2, 1, 2]), vec![vec![0, 0, 0, 0], vec![1, 1, 0, 1]]);
    }

    #[test]
    fn scalars_broadcast_against_a_list() {
        assert_eq!(ok(&[1, 1, 1, 2]), vec![vec![0, 0, 0, 0], vec![0, 0, 0, 1]]);
    }

    #[test]
    fn unequal_lengths_multiply_earlier_key_slowest() {
        let got = ok(&[3, 1, 2, 1]);
        assert_eq!(
            got,
            vec![
                vec![0, 0, 0, 0],
                vec![0, 0, 1, 0],
                vec![1, 0, 0, 0],
                vec![1, 0, 1, 0],
                vec![2, 0, 0, 0],
                vec![2, 0, 1, 0],
            ]
        );
    }

    #[test]
    fn zipped_groups_multiply_with_other_groups() {
        // instance_type and machine_image zip (2), region (3) multiplies.
        let got = ok(&[2, 2, 3, 1]);
        assert_eq!(got.len(), 6);
        assert!(got.iter().all(|c| c[0] == c[1]));
        assert_eq!(got[3], vec![1, 1, 0, 0]);
    }

    #[test]
    fn the_real_wasi_image_shape() {
        // labring-actions/wasi-image: 3 instance types × 13 zones.
        assert_eq!(ok(&[3, 1, 13, 1]).len(), 39);
    }

    #[test]
    fn too_many_candidates_are_refused_before_any_is_made() {
        // 60 × 61 × 62 × 63 = 14,295,960: once built in full, then warned about.
        let err = expand(&[60, 61, 62, 63]).unwrap_err();
        assert_eq!(err.would_make, 14_295_960);
        assert!(err.to_string().contains("14295960"), "{err}");
        assert_eq!(ok(&[16, 16, 16, 16]).len(), 16, "equal lengths zip");
        assert_eq!(ok(&[2, 128, 1, 1]).len(), MAX_CANDIDATES);
        assert!(expand(&[2, 129, 1, 1]).is_err());
        // Lengths whose product passes u64 saturate instead of overflowing.
        let huge = [usize::MAX, usize::MAX - 1, usize::MAX - 2, usize::MAX - 3];
        assert_eq!(count(&huge), u128::MAX);
    }
}
