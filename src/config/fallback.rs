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

/// For lists of these lengths (1 for a single value), the indices into each
/// list, one tuple per candidate, in the order to try them.
pub fn expand(lengths: &[usize]) -> Vec<Vec<usize>> {
    // Distinct list lengths (> 1), in the order their first key appears.
    let mut groups: Vec<usize> = Vec::new();
    for &len in lengths {
        if len > 1 && !groups.contains(&len) {
            groups.push(len);
        }
    }
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
                return out;
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

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn single_values_give_one_candidate() {
        assert_eq!(expand(&[1, 1, 1, 1]), vec![vec![0, 0, 0, 0]]);
    }

    #[test]
    fn equal_lengths_zip() {
        assert_eq!(
            expand(&[2, 2, 1, 2]),
            vec![vec![0, 0, 0, 0], vec![1, 1, 0, 1]]
        );
    }

    #[test]
    fn scalars_broadcast_against_a_list() {
        assert_eq!(
            expand(&[1, 1, 1, 2]),
            vec![vec![0, 0, 0, 0], vec![0, 0, 0, 1]]
        );
    }

    #[test]
    fn unequal_lengths_multiply_earlier_key_slowest() {
        let got = expand(&[3, 1, 2, 1]);
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
        let got = expand(&[2, 2, 3, 1]);
        assert_eq!(got.len(), 6);
        assert!(got.iter().all(|c| c[0] == c[1]));
        assert_eq!(got[3], vec![1, 1, 0, 0]);
    }

    #[test]
    fn the_real_wasi_image_shape() {
        // labring-actions/wasi-image: 3 instance types × 13 zones.
        assert_eq!(expand(&[3, 1, 13, 1]).len(), 39);
    }
}
