//! JSON Schema, as OpenAPI 3.0 and 3.1 use it: the checks of one value
//! against one schema (see `openapi.rs` for the keywords).

use serde_json::{Map, Value};

use super::openapi::{MAX_DEPTH, Spec};

impl Spec {
    /// Check `v` against `schema`; violations go to `out` as `at: what`.
    pub fn validate(
        &self,
        schema: &Value,
        v: &Value,
        at: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        let schema = self.resolve(schema);
        let Some(s) = schema.as_object() else {
            if schema == &Value::Bool(false) {
                out.push(format!("{at}: nothing is allowed here"));
            }
            return;
        };
        if v.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        for sub in s
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.validate(sub, v, at, depth + 1, out);
        }
        if let Some(alts) = s.get("anyOf").and_then(Value::as_array) {
            self.alternatives(alts, v, at, depth, false, out);
        }
        if let Some(alts) = s.get("oneOf").and_then(Value::as_array) {
            self.alternatives(alts, v, at, depth, true, out);
        }
        let types = types_of(schema);
        if !types.is_empty() && !types.iter().any(|t| is_type(v, t)) {
            out.push(format!(
                "{at}: {} where {} is required",
                kind(v),
                types.join(" or ")
            ));
            return;
        }
        if let Some(allowed) = s.get("enum").and_then(Value::as_array)
            && !allowed.iter().any(|a| same(a, v))
        {
            out.push(format!(
                "{at}: {} is not one of {}",
                short(v),
                short(&Value::Array(allowed.clone()))
            ));
        }
        if let Some(c) = s.get("const")
            && !same(c, v)
        {
            out.push(format!("{at}: {} where {} is required", short(v), short(c)));
        }
        match v {
            Value::Object(o) => self.object(s, o, at, depth, out),
            Value::Array(items) => {
                if let Some(n) = s.get("minItems").and_then(Value::as_u64)
                    && (items.len() as u64) < n
                {
                    out.push(format!(
                        "{at}: {} items, at least {n} required",
                        items.len()
                    ));
                }
                if let Some(n) = s.get("maxItems").and_then(Value::as_u64)
                    && items.len() as u64 > n
                {
                    out.push(format!("{at}: {} items, at most {n} allowed", items.len()));
                }
                if let Some(item) = s.get("items") {
                    for (i, x) in items.iter().enumerate() {
                        self.validate(item, x, &format!("{at}[{i}]"), depth + 1, out);
                    }
                }
            }
            Value::String(text) => {
                let len = text.chars().count() as u64;
                if let Some(n) = s.get("minLength").and_then(Value::as_u64)
                    && len < n
                {
                    out.push(format!("{at}: {len} characters, at least {n} required"));
                }
                if let Some(n) = s.get("maxLength").and_then(Value::as_u64)
                    && len > n
                {
                    out.push(format!("{at}: {len} characters, at most {n} allowed"));
                }
                match s.get("format").and_then(Value::as_str) {
                    Some("date-time") if !is_date_time(text) => {
                        out.push(format!("{at}: {} is not a date-time", short(v)))
                    }
                    Some("uri") if !is_uri(text) => {
                        out.push(format!("{at}: {} is not a URI", short(v)))
                    }
                    _ => {}
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(0.0);
                let bound = |k: &str| s.get(k).and_then(Value::as_f64);
                let flag = |k: &str| s.get(k) == Some(&Value::Bool(true));
                if let Some(min) = bound("minimum")
                    && (flag("exclusiveMinimum") && x <= min || x < min)
                {
                    out.push(format!("{at}: {n} is below the minimum {min}"));
                }
                if let Some(max) = bound("maximum")
                    && (flag("exclusiveMaximum") && x >= max || x > max)
                {
                    out.push(format!("{at}: {n} is above the maximum {max}"));
                }
                if let Some(min) = bound("exclusiveMinimum")
                    && x <= min
                {
                    out.push(format!("{at}: {n} is not above {min}"));
                }
                if let Some(max) = bound("exclusiveMaximum")
                    && x >= max
                {
                    out.push(format!("{at}: {n} is not below {max}"));
                }
            }
            _ => {}
        }
    }

    fn object(
        &self,
        s: &Map<String, Value>,
        o: &Map<String, Value>,
        at: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) {
        let props = s.get("properties").and_then(Value::as_object);
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str()
                && !o.contains_key(r)
            {
                out.push(format!("{}: required property missing", child(at, r)));
            }
        }
        for (k, x) in o {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => self.validate(sub, x, &child(at, k), depth + 1, out),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        out.push(format!("{}: property not allowed here", child(at, k)))
                    }
                    Some(sub @ Value::Object(_)) => {
                        self.validate(sub, x, &child(at, k), depth + 1, out)
                    }
                    _ => {}
                },
            }
        }
    }

    /// `anyOf` (at least one matches) or `oneOf` (exactly one).
    fn alternatives(
        &self,
        alts: &[Value],
        v: &Value,
        at: &str,
        depth: usize,
        exactly_one: bool,
        out: &mut Vec<String>,
    ) {
        let mut best: Option<Vec<String>> = None;
        let mut matched = 0;
        for alt in alts {
            let mut errs = Vec::new();
            self.validate(alt, v, at, depth + 1, &mut errs);
            if errs.is_empty() {
                matched += 1;
            } else if best.as_ref().is_none_or(|b| errs.len() < b.len()) {
                best = Some(errs);
            }
        }
        if matched == 0 {
            let closest = best
                .and_then(|b| b.into_iter().next())
                .map(|e| format!(" (the closest fails: {e})"))
                .unwrap_or_default();
            out.push(format!(
                "{at}: matches none of the {} alternatives{closest}",
                alts.len()
            ));
        } else if exactly_one && matched > 1 {
            out.push(format!(
                "{at}: matches {matched} of the oneOf alternatives, exactly one is allowed"
            ));
        }
    }
}

/// The types a schema allows (`type` as one name or a list).
pub(super) fn types_of(schema: &Value) -> Vec<&str> {
    let mut t: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !t.is_empty() && schema["nullable"] == true {
        t.push("null");
    }
    t
}

pub(super) fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|x| x.fract() == 0.0),
        _ => true,
    }
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Equal as JSON values (1 and 1.0 are the same number).
pub(super) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A value for a message: at most 80 characters of its JSON.
pub(super) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// RFC 3339, loosely: `YYYY-MM-DDTHH:MM:SS`, then fractions and an offset
/// (`Z` or `±HH:MM`).
pub(super) fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let base = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !base {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    matches!(rest, "Z" | "z")
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':'
            && rest[1..3]
                .bytes()
                .chain(rest[4..].bytes())
                .all(|c| c.is_ascii_digit()))
}

/// A URI, loosely: a scheme (a letter, then letters, digits, `+-.`), a
/// colon, something after it, no spaces.
pub(super) fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut c = scheme.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|x| x.is_ascii_alphanumeric() || "+-.".contains(x))
        && !rest.is_empty()
        && !s.contains(char::is_whitespace)
}

/// `at.key`, or `at["key"]` for a key that is not a plain name.
pub(super) fn child(at: &str, key: &str) -> String {
    if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{at}.{key}")
    } else {
        format!("{at}[{key:?}]")
    }
}
