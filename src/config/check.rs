//! Checks a YAML tree against the key tables in `keys.rs`: types, ranges,
//! required keys, legacy keys and unknown keys (with the nearest known one).

use super::diagnostics::{Diagnostic, Diagnostics, Severity};
use super::keys::{self, Bound, Key, Status, Ty};
use super::suggest::nearest_key_for;
use super::yaml::{Kind, Node, Scalar};
use crate::text::for_log;

/// How loudly to report what is wrong in one part of a file.
#[derive(Debug, Clone, Copy)]
pub struct Strictness {
    /// For a value of the wrong type or out of range, or a missing key.
    pub problems: Severity,
    /// For a key nobody documents.
    pub unknown: Severity,
}

impl Strictness {
    pub const STRICT: Strictness = Strictness {
        problems: Severity::Error,
        unknown: Severity::Error,
    };
    /// For runners rigger does not provision: Cirun decides what they mean,
    /// so rigger only warns, and never blocks the file's Vast.ai runners.
    pub const ADVISORY: Strictness = Strictness {
        problems: Severity::Warning,
        unknown: Severity::Warning,
    };
    /// Top-level keys: a wrong type is an error, an unknown key a warning
    /// (Cirun ignores unknown keys; a misspelled `runners` is caught as missing).
    pub const TOP: Strictness = Strictness {
        problems: Severity::Error,
        unknown: Severity::Warning,
    };
}

pub struct Checker<'a> {
    pub diags: &'a mut Diagnostics,
    pub strictness: Strictness,
}

impl Checker<'_> {
    fn report(&mut self, severity: Severity, node: &Node, message: String, hint: Option<String>) {
        let mut d = Diagnostic::new(severity, node.at, message);
        d.hint = hint;
        self.diags.push(d);
    }

    /// Check a mapping against `table`. Keys in `skip` are left to the caller.
    /// Returns false when `node` is not a mapping at all.
    pub fn object(&mut self, node: &Node, table: &[Key], what: &str, skip: &[&str]) -> bool {
        let Kind::Map(entries) = &node.kind else {
            self.report(
                self.strictness.problems,
                node,
                format!(
                    "{what} must be a mapping of keys to values, found {}",
                    node.describe()
                ),
                Some(format!(
                    "write its keys on their own lines, indented under it, e.g. `{}: …`",
                    keys::names(table)[..table.len().min(3)].join(": …`, `")
                )),
            );
            return false;
        };
        for (k, v) in entries {
            let Some(name) = k.text() else {
                self.report(
                    self.strictness.problems,
                    k,
                    format!("keys in {what} must be plain words, found {}", k.describe()),
                    Some(format!(
                        "known keys here: {}",
                        keys::names(table).join(", ")
                    )),
                );
                continue;
            };
            if skip.contains(&name) {
                continue;
            }
            match keys::find(table, name) {
                Some(spec) => {
                    if let Status::Legacy { warning, hint } = spec.status {
                        self.diags
                            .push(Diagnostic::warning(k.at, warning.to_string()).with_hint(hint));
                    }
                    self.value(v, &spec.ty, &format!("`{name}`"));
                }
                None => self.unknown_key(k, name, table, what),
            }
        }
        for spec in table
            .iter()
            .filter(|s| s.required && !skip.contains(&s.name))
        {
            let present = entries.iter().any(|(k, _)| k.text() == Some(spec.name));
            if !present {
                self.report(
                    self.strictness.problems,
                    node,
                    format!("{what} is missing the required key `{}`", spec.name),
                    Some(format!("add `{}:` — {}", spec.name, spec.doc)),
                );
            }
        }
        true
    }

    fn unknown_key(&mut self, k: &Node, name: &str, table: &[Key], what: &str) {
        let known = keys::names(table);
        let hint = match misplaced(name).map(str::to_string).or_else(|| {
            nearest_key_for(self.diags, name, &known).map(|n| format!("did you mean `{n}`?"))
        }) {
            Some(h) => h,
            None => format!("known keys here: {}", known.join(", ")),
        };
        let consequence = match self.strictness.unknown {
            Severity::Error => "rigger does not know it",
            Severity::Warning => "it has no effect",
        };
        self.report(
            self.strictness.unknown,
            k,
            format!("unknown key `{}` in {what}: {consequence}", for_log(name)),
            Some(hint),
        );
    }

    /// Check one value against a type; reports and returns false on mismatch.
    pub fn value(&mut self, node: &Node, ty: &Ty, what: &str) -> bool {
        match ty {
            Ty::Any => true,
            Ty::Str => match node.scalar() {
                Some(Scalar::Null) | None => self.mismatch(node, ty, what),
                Some(_) => true,
            },
            Ty::Bool => self.boolean(node, what),
            Ty::Num(bound) => self.number(node, *bound, false, what),
            Ty::Int(bound) => self.number(node, *bound, true, what),
            Ty::Enum(words) => self.word(node, words, what),
            Ty::OneOrMany(inner) => match &node.kind {
                Kind::Seq(items) => {
                    if items.is_empty() {
                        self.report(
                            self.strictness.problems,
                            node,
                            format!("{what} is an empty list"),
                            Some("give at least one value, or remove the key".into()),
                        );
                        return false;
                    }
                    every(items.iter().map(|i| self.value(i, inner, what)))
                }
                _ if fits_shape(node, inner) => self.value(node, inner, what),
                _ => self.mismatch(node, ty, what),
            },
            Ty::List(inner) => match &node.kind {
                Kind::Seq(items) => every(
                    items
                        .iter()
                        .map(|i| self.value(i, inner, &format!("an entry of {what}"))),
                ),
                _ => self.mismatch(node, ty, what),
            },
            Ty::Map(inner) => match &node.kind {
                Kind::Map(entries) => every(entries.iter().map(|(k, v)| {
                    let name = k.text().unwrap_or("?");
                    self.value(v, inner, &format!("`{}` in {what}", for_log(name)))
                })),
                _ => self.mismatch(node, ty, what),
            },
            Ty::Object(table) => self.object(node, table, what, &[]),
            Ty::AnyOf(options) => match options.iter().find(|o| fits_shape(node, o)) {
                Some(o) => self.value(node, o, what),
                None => self.mismatch(node, ty, what),
            },
        }
    }

    fn mismatch(&mut self, node: &Node, ty: &Ty, what: &str) -> bool {
        self.report(
            self.strictness.problems,
            node,
            format!("{what} must be {}, found {}", describe(ty), node.describe()),
            Some(example(ty)),
        );
        false
    }

    fn boolean(&mut self, node: &Node, what: &str) -> bool {
        match node.scalar() {
            Some(Scalar::Bool(_)) => true,
            Some(Scalar::Str(s)) if yaml11_bool(s).is_some() => {
                self.diags.push(
                    Diagnostic::warning(
                        node.at,
                        format!("{what} is `{s}`, which YAML 1.2 reads as text, not a boolean"),
                    )
                    .with_hint("write true or false"),
                );
                true
            }
            _ => self.mismatch(node, &Ty::Bool, what),
        }
    }

    fn number(&mut self, node: &Node, bound: Bound, integer: bool, what: &str) -> bool {
        let ty = if integer {
            Ty::Int(bound)
        } else {
            Ty::Num(bound)
        };
        let Some(n) = as_number(node) else {
            return self.mismatch(node, &ty, what);
        };
        if integer && n.fract() != 0.0 {
            return self.mismatch(node, &ty, what);
        }
        let ok = bound.admits(n);
        if !ok {
            self.report(
                self.strictness.problems,
                node,
                format!("{what} must be {}, found {n}", describe(&ty)),
                Some(example(&ty)),
            );
        }
        ok
    }

    fn word(&mut self, node: &Node, words: &'static [&'static str], what: &str) -> bool {
        let Some(text) = node.text().filter(|_| !node.is_null()) else {
            return self.mismatch(node, &Ty::Enum(words), what);
        };
        if words.iter().any(|w| w.eq_ignore_ascii_case(text)) {
            return true;
        }
        let hint = match nearest_key_for(self.diags, text, words) {
            Some(n) => format!("did you mean `{n}`?"),
            None => format!("one of: {}", words.join(", ")),
        };
        self.report(
            self.strictness.problems,
            node,
            format!("{what} cannot be `{}`", for_log(text)),
            Some(hint),
        );
        false
    }
}

/// Whether every check passed, running all of them so that every problem
/// is reported, not just the first.
fn every(results: impl Iterator<Item = bool>) -> bool {
    results.fold(true, |all, ok| all & ok)
}

/// Keys people put in .cirun.yml that belong somewhere else.
fn misplaced(name: &str) -> Option<&'static str> {
    match name {
        "runs-on" => Some(
            "`runs-on` belongs in the workflow file (.github/workflows/*.yml), not in .cirun.yml",
        ),
        "image" => Some("did you mean `machine_image`?"),
        "timeout" | "timeout-minutes" | "idle_timeout" => Some(
            "cap a job's time with `timeout-minutes` in the workflow; on vast_ai, `extra_config.max_runtime` caps the machine's life",
        ),
        "disk_size" => Some("on vast_ai the disk is `extra_config.disk_space` (GB)"),
        _ => None,
    }
}

/// YAML 1.1 booleans that YAML 1.2 (and rigger) read as text.
pub fn yaml11_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "on" | "y" => Some(true),
        "no" | "off" | "n" => Some(false),
        _ => None,
    }
}

/// A whole number that fits a `u32`; `None` for anything else (the checker
/// reports what is wrong with it): never a cast that saturates or wraps.
pub fn as_u32(node: &Node) -> Option<u32> {
    let n = as_number(node)?;
    let whole = n.is_finite() && n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n);
    whole.then_some(n as u32)
}

/// A number written as a number or as a numeric string (`"40"`).
pub fn as_number(node: &Node) -> Option<f64> {
    match node.scalar()? {
        Scalar::Int(i) => Some(i as f64),
        Scalar::Float(f) => Some(f),
        Scalar::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean, accepting YAML 1.1 spellings (already warned about).
pub fn as_bool(node: &Node) -> Option<bool> {
    match node.scalar()? {
        Scalar::Bool(b) => Some(b),
        Scalar::Str(s) => yaml11_bool(s),
        _ => None,
    }
}

/// Whether a node has the outer shape of a type (scalar, list or mapping).
fn fits_shape(node: &Node, ty: &Ty) -> bool {
    match (&node.kind, ty) {
        (_, Ty::Any) => true,
        (Kind::Seq(_), Ty::List(_) | Ty::OneOrMany(_)) => true,
        (Kind::Map(_), Ty::Object(_) | Ty::Map(_)) => true,
        (Kind::Scalar { .. }, Ty::Str | Ty::Bool | Ty::Num(_) | Ty::Int(_) | Ty::Enum(_)) => true,
        (_, Ty::AnyOf(options)) => options.iter().any(|o| fits_shape(node, o)),
        (Kind::Scalar { .. } | Kind::Map(_), Ty::OneOrMany(inner)) => fits_shape(node, inner),
        _ => false,
    }
}

/// What to write instead of a value of the wrong type or out of range.
pub fn example(ty: &Ty) -> String {
    match ty {
        Ty::Str => "write it as text, e.g. `value` (quote it if it starts with a digit or a \
                    special character: `\"value\"`)"
            .into(),
        Ty::Bool => "write `true` or `false` (without quotes)".into(),
        Ty::Num(b) | Ty::Int(b) => {
            let integer = matches!(ty, Ty::Int(_));
            let e = match (integer, b.zero, b.max) {
                (_, _, Some(max)) if max <= 1.0 => "0.95",
                (true, true, _) => "0",
                (true, false, _) => "2",
                (false, true, _) => "0.5",
                (false, false, _) => "30",
            };
            format!(
                "write {}, e.g. `{e}`, without a unit (the unit is fixed by the key)",
                range(*b, integer)
            )
        }
        Ty::Enum(words) => format!("write one of: {}", words.join(", ")),
        Ty::OneOrMany(inner) => format!(
            "write one value, or a list of them in order of preference: `[a, b]`; {}",
            example(inner)
        ),
        Ty::List(inner) => format!(
            "write a list: `[a, b]`, or one `- item` per line; for each item, {}",
            example(inner).trim_start_matches("write ")
        ),
        Ty::Map(_) | Ty::Object(_) => {
            "write `key: value` lines indented under the key, one per line".into()
        }
        Ty::AnyOf(options) => options
            .iter()
            .map(example)
            .collect::<Vec<_>>()
            .join("; or "),
        Ty::Any => "any value is accepted".into(),
    }
}

/// What a hint asks for: "a whole number of 1 or more", "a number above 0,
/// at most 20000".
fn range(b: Bound, integer: bool) -> String {
    let noun = if integer { "whole number" } else { "number" };
    match (b.zero, integer, b.max) {
        (true, _, Some(max)) => format!("a {noun} from 0 to {max}"),
        (true, _, None) => format!("a {noun} of 0 or more"),
        (false, true, Some(max)) => format!("a whole number from 1 to {max}"),
        (false, true, None) => "a whole number of 1 or more".into(),
        (false, false, Some(max)) => format!("a number above 0, at most {max}"),
        (false, false, None) => "a number above 0".into(),
    }
}

/// A type in words: "a positive number", "a string or a list of strings".
pub fn describe(ty: &Ty) -> String {
    match ty {
        Ty::Str => "a string".into(),
        Ty::Bool => "true or false".into(),
        Ty::Num(b) | Ty::Int(b) => {
            let noun = if matches!(ty, Ty::Int(_)) {
                "whole number"
            } else {
                "number"
            };
            match (b.zero, b.max) {
                (false, None) => format!("a positive {noun}"),
                (false, Some(max)) => format!("a positive {noun} of at most {max}"),
                (true, None) => format!("a {noun} of 0 or more"),
                (true, Some(max)) => format!("a {noun} from 0 to {max}"),
            }
        }
        Ty::Enum(words) => format!("one of {}", words.join(", ")),
        Ty::OneOrMany(inner) => {
            let one = describe(inner);
            let plural = one
                .strip_prefix("a ")
                .map(|s| format!("{s}s"))
                .unwrap_or(one.clone());
            format!("{one} or a list of {plural}")
        }
        Ty::List(inner) => {
            let one = describe(inner);
            format!("a list of {}", one.strip_prefix("a ").unwrap_or(&one))
        }
        Ty::Map(_) | Ty::Object(_) => "a mapping".into(),
        Ty::AnyOf(options) => options
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
            .join(" or "),
        Ty::Any => "any value".into(),
    }
}
