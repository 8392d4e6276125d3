//! "Did you mean …?" for misspelled keys, clouds and GPU models.

/// The candidates closest to `input` by edit distance, best first, at most
/// `limit` of them, and only those close enough to be a plausible typo.
/// `key` normalises both sides before comparing (case, separators).
pub fn nearest(
    input: &str,
    candidates: &[&str],
    limit: usize,
    key: impl Fn(&str) -> String,
) -> Vec<String> {
    let wanted = key(input);
    // A typo changes a few characters; beyond a third of the word it is a
    // different word and a suggestion would only mislead.
    let threshold = (wanted.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .iter()
        .map(|c| (edit_distance(&wanted, &key(c)), *c))
        .filter(|(d, c)| *d <= threshold || (wanted.len() >= 3 && key(c).starts_with(&wanted)))
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

/// Levenshtein distance over characters, with adjacent transpositions
/// counted as one edit (`isntance` is one slip away from `instance`).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
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
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
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
}
