//! "Did you mean …?" for misspelled keys, clouds and GPU models.

use super::diagnostics::Diagnostics;

/// Most characters of an input worth a suggestion: the longest key, cloud
/// or GPU name rigger knows has 28. A longer input is no typo of any of
/// them, and comparing it would only cost time.
pub const MAX_INPUT_CHARS: usize = 64;

/// Most candidates one look-up compares: the fixed tables have a few dozen;
/// lists from a file (policy ids, runner names) are cut here.
pub const MAX_CANDIDATES: usize = 500;

/// The candidates closest to `input` by edit distance, best first, at most
/// `limit` of them, and only those close enough to be a plausible typo.
/// `key` normalises both sides before comparing (case, separators).
///
/// Bounded work: an input over [`MAX_INPUT_CHARS`] gets nothing, at most
/// [`MAX_CANDIDATES`] are compared, and each comparison stops as soon as
/// the distance passes what a typo could be.
pub fn nearest(
    input: &str,
    candidates: &[&str],
    limit: usize,
    key: impl Fn(&str) -> String,
) -> Vec<String> {
    if input.chars().nth(MAX_INPUT_CHARS).is_some() {
        return Vec::new();
    }
    let wanted = key(input);
    let wanted_chars: Vec<char> = wanted.chars().collect();
    // A typo changes a few characters; beyond a third of the word it is a
    // different word and a suggestion would only mislead.
    let threshold = (wanted_chars.len() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .iter()
        .take(MAX_CANDIDATES)
        .filter_map(|c| {
            let k = key(c);
            if wanted.len() >= 3 && k.starts_with(&wanted) {
                // The distance to a word it begins is the letters left.
                return Some((k.chars().count() - wanted_chars.len(), *c));
            }
            let k: Vec<char> = k.chars().take(MAX_INPUT_CHARS + threshold + 1).collect();
            distance_within(&wanted_chars, &k, threshold).map(|d| (d, *c))
        })
        .collect();
    scored.sort_by_key(|(d, _)| *d);
    let mut out: Vec<String> = Vec::new();
    for (_, c) in scored {
        if !out.iter().any(|o| o == c) {
            out.push(c.to_string());
        }
        if out.len() == limit {
            break;
        }
    }
    out
}

/// The nearest key for an unknown mapping key, compared case-insensitively
/// with `-` and `_` treated alike.
pub fn nearest_key(input: &str, known: &[&str]) -> Option<String> {
    nearest(input, known, 1, |s| {
        s.to_ascii_lowercase().replace('-', "_")
    })
    .into_iter()
    .next()
}

/// [`nearest_key`] while the file has look-ups left
/// ([`Diagnostics::may_suggest`]); `None` once it has used them up.
pub fn nearest_key_for(diags: &mut Diagnostics, input: &str, known: &[&str]) -> Option<String> {
    diags
        .may_suggest()
        .then(|| nearest_key(input, known))
        .flatten()
}

/// Levenshtein distance over characters, with adjacent transpositions
/// counted as one edit (`isntance` is one slip away from `instance`).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    distance_within(&a, &b, a.len().max(b.len())).unwrap_or(usize::MAX)
}

/// The edit distance of `a` and `b` if it is at most `max`, else `None`,
/// found without finishing the table once every way is already over `max`.
fn distance_within(a: &[char], b: &[char], max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        // Distances never shrink from one row to the next but one: once
        // two rows are over `max`, so is the answer.
        if cur.iter().min().is_some_and(|&m| m > max) && prev.iter().min().is_some_and(|&m| m > max)
        {
            return None;
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    Some(prev[b.len()]).filter(|&d| d <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("isntance", "instance"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggests_close_keys_only() {
        let known = ["instance_type", "machine_image", "labels", "region"];
        assert_eq!(
            nearest_key("instance-typ", &known).as_deref(),
            Some("instance_type")
        );
        assert_eq!(nearest_key("lables", &known).as_deref(), Some("labels"));
        assert_eq!(nearest_key("zzzzzzzz", &known), None);
    }

    #[test]
    fn bounded_distances_agree_with_the_full_ones() {
        let words = [
            "", "a", "ab", "ba", "abc", "kitten", "sitting", "isntance", "instance",
        ];
        for x in words {
            for y in words {
                let full = edit_distance(x, y);
                let (a, b): (Vec<char>, Vec<char>) = (x.chars().collect(), y.chars().collect());
                for max in 0..6 {
                    let want = (full <= max).then_some(full);
                    assert_eq!(distance_within(&a, &b, max), want, "{x} {y} {max}");
                }
            }
        }
    }

    #[test]
    fn long_inputs_and_long_lists_cost_nothing_unbounded() {
        let known = ["instance_type", "labels"];
        assert_eq!(nearest_key(&"instance_typ".repeat(10_000), &known), None);
        let many: Vec<String> = (0..10_000).map(|i| format!("policy-{i:05}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        // Only the first MAX_CANDIDATES are compared.
        assert_ne!(
            nearest_key("policy-09999", &many).as_deref(),
            Some("policy-09999")
        );
        assert_eq!(
            nearest_key("polcy-00012", &many).as_deref(),
            Some("policy-00012")
        );
    }
}
