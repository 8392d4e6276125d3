//! Text from outside — labels, file contents, error bodies — is cut by
//! characters, never by bytes: a byte index can fall inside a multi-byte
//! character and panic. Every place that shortens or compares a prefix of
//! untrusted text goes through here.

use std::borrow::Cow;

/// Most characters of one piece of untrusted input a log line or an error
/// message carries.
pub const LOG_CHARS: usize = 200;

/// `s` cut to at most `max` characters, with `…` in place of what was cut.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
            Cow::Owned(format!("{}…", &s[..end]))
        }
    }
}

/// `s` cut to [`LOG_CHARS`] characters: for untrusted text in a log line.
pub fn for_log(s: &str) -> Cow<'_, str> {
    clip(s, LOG_CHARS)
}

/// Whether `s` starts with the ASCII `prefix`, ignoring ASCII case, without
/// slicing `s` at a byte that may not be a character boundary.
pub fn starts_with_ignore_ascii_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_by_characters() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("exactly", 7), "exactly");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("üüüüüü", 3), "üü…");
        assert_eq!(clip("日本語のラベル", 5).chars().count(), 5);
        assert_eq!(clip("abc", 0), "…");
    }

    #[test]
    fn prefixes_never_cut_a_character() {
        assert!(starts_with_ignore_ascii_case("Cirun-gpu", "cirun-"));
        assert!(!starts_with_ignore_ascii_case("cirunü", "cirun-"));
        assert!(!starts_with_ignore_ascii_case("ciruü", "cirun-"));
        assert!(!starts_with_ignore_ascii_case("ü", "cirun-"));
        assert!(!starts_with_ignore_ascii_case("", "cirun-"));
    }
}
