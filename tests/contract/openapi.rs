//! A small OpenAPI 3.0/3.1 and JSON Schema validator, ours, on `serde_json`
//! only: enough of both to hold the simulated GitHub and rigger to GitHub's
//! published description (`@octokit/openapi`, `@octokit/openapi-webhooks`).
//!
//! - A request is matched to a path template and method (the most specific
//!   template wins: literal segments beat parameters, left to right; a last
//!   `{path}` parameter may span several segments, as the contents API's does).
//! - Path and query parameters with schemas are checked (their text read as
//!   the schema's type), required query parameters must be there and unknown
//!   ones are reported; the request body is checked against
//!   `requestBody.content["application/json"].schema`, the response body
//!   against `responses[status]` (else `default`): its `content` for the
//!   media type the request asked for (`Accept:
//!   application/vnd.github.object+json` is the `application/vnd.github.object`
//!   entry, where the operation lists one), else `application/json`, as
//!   GitHub answers a media type an operation does not have with its JSON
//!   default. An error status the
//!   operation does not list (GitHub answers 404, 403, 429 or 5xx to any
//!   call) or lists without a body is held to GitHub's `basic-error`.
//! - Schemas: `$ref` (`#/…` in the same document), `type` (one or a list),
//!   `nullable`, `properties`, `required`, `additionalProperties`, `items`,
//!   `enum`, `const`, `oneOf` (exactly one), `anyOf`, `allOf`,
//!   `minimum`/`maximum` (and the exclusive forms of 3.0 and 3.1),
//!   `minLength`/`maxLength`, `minItems`/`maxItems`, `format` `date-time`
//!   and `uri` loosely. Not `pattern`: no regular-expression crate is a
//!   dependency of rigger's, and the descriptions' patterns are few.
//!
//! Violations are plain lines, e.g. `POST /repos/{owner}/{repo}/check-runs
//! response 201: $.output.annotations_count: required property missing`.

// The test binaries that use this module use some of it, not all.
#![allow(dead_code)]

use serde_json::{Map, Value};

/// How deep `$ref`s and nested schemas may go before the validator stops
/// (the descriptions' schemas are recursive in places).
const MAX_DEPTH: usize = 96;

/// A parsed description (a REST one, or a webhooks one).
pub struct Spec {
    doc: Value,
    templates: Vec<Template>,
}

struct Template {
    raw: String,
    segs: Vec<Seg>,
}

enum Seg {
    Lit(String),
    Param(String),
}

/// Path parameters by name, as sent.
type PathParams = Vec<(String, String)>;

/// An operation a request matched.
pub struct Matched<'a> {
    pub template: &'a str,
    pub operation: &'a Value,
    path_item: &'a Value,
    pub params: PathParams,
}

/// One request and its answer, as the contract test has them.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub request_body: Option<&'a Value>,
    pub status: u16,
    pub response_body: Option<&'a Value>,
    /// The request's `Accept` (`None`: GitHub's default JSON).
    pub accept: Option<&'a str>,
}

impl Spec {
    pub fn from_file(path: &std::path::Path) -> Result<Spec, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let doc: Value = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        Ok(Spec::new(doc))
    }

    pub fn new(doc: Value) -> Spec {
        let templates = doc["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .keys()
                    .map(|raw| Template {
                        raw: raw.clone(),
                        segs: raw
                            .split('/')
                            .filter(|s| !s.is_empty())
                            .map(
                                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                                    Some(p) => Seg::Param(p.to_string()),
                                    None => Seg::Lit(s.to_string()),
                                },
                            )
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Spec { doc, templates }
    }

    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// The operation `method path` is, if the description has it.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let method = method.to_ascii_lowercase();
        let mut best: Option<(Vec<u8>, &Template, PathParams)> = None;
        for t in &self.templates {
            let Some(params) = t.matches(&segs) else {
                continue;
            };
            if self.doc["paths"][&t.raw][&method].is_null() {
                continue;
            }
            // Literal segments rank above parameters, left to right; an
            // exact segment count above a spanning `{path}`.
            let mut rank: Vec<u8> = t
                .segs
                .iter()
                .map(|s| u8::from(matches!(s, Seg::Lit(_))))
                .collect();
            rank.insert(0, u8::from(t.segs.len() == segs.len()));
            if best.as_ref().is_none_or(|(r, _, _)| rank > *r) {
                best = Some((rank, t, params));
            }
        }
        let (_, t, params) = best?;
        let path_item = &self.doc["paths"][&t.raw];
        Some(Matched {
            template: &t.raw,
            operation: &path_item[&method],
            path_item,
            params,
        })
    }

    /// Every way `call` departs from the description.
    pub fn check_call(&self, call: &Call<'_>) -> Vec<String> {
        let Some(m) = self.find(call.method, call.path) else {
            return vec![format!(
                "{} {}: no such operation in GitHub's REST API",
                call.method, call.path
            )];
        };
        let mut out = Vec::new();
        let what = format!("{} {}", call.method, m.template);
        // Parameters: the path item's, overridden by the operation's.
        let mut params: Vec<&Value> = Vec::new();
        for p in m.operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(m.path_item["parameters"].as_array().into_iter().flatten())
        {
            let p = self.resolve(p);
            if !params
                .iter()
                .any(|q| q["name"] == p["name"] && q["in"] == p["in"])
            {
                params.push(p);
            }
        }
        for p in &params {
            let name = p["name"].as_str().unwrap_or_default();
            let sent = match p["in"].as_str() {
                Some("path") => m.params.iter().find(|(k, _)| k == name).map(|(_, v)| v),
                Some("query") => call.query.iter().find(|(k, _)| k == name).map(|(_, v)| v),
                _ => continue,
            };
            match sent {
                None if p["required"] == true => out.push(format!(
                    "{what} request: parameter `{name}`: required, not sent"
                )),
                None => {}
                Some(text) => {
                    let schema = &p["schema"];
                    if schema.is_null() {
                        continue;
                    }
                    let v = self.typed(schema, text);
                    let mut errs = Vec::new();
                    self.validate(schema, &v, &format!("parameter `{name}`"), 0, &mut errs);
                    out.extend(errs.into_iter().map(|e| format!("{what} request: {e}")));
                }
            }
        }
        for (k, _) in call.query {
            if !params
                .iter()
                .any(|p| p["in"] == "query" && p["name"] == k.as_str())
            {
                out.push(format!(
                    "{what} request: query parameter `{k}`: not a parameter of this operation"
                ));
            }
        }
        // The request body.
        let body = self.resolve(&m.operation["requestBody"]);
        let schema = &body["content"]["application/json"]["schema"];
        match (call.request_body, schema.is_null()) {
            (None, false) if body["required"] == true => out.push(format!(
                "{what} request: a JSON body is required, none sent"
            )),
            (Some(v), false) => {
                let mut errs = Vec::new();
                self.validate(schema, v, "$", 0, &mut errs);
                out.extend(errs.into_iter().map(|e| format!("{what} request: {e}")));
            }
            (Some(v), true) if !v.is_null() && !is_empty_object(v) => out.push(format!(
                "{what} request: a JSON body sent to an operation that takes none"
            )),
            _ => {}
        }
        // The response.
        let status = call.status.to_string();
        let responses = &m.operation["responses"];
        let documented = if !responses[&status].is_null() {
            &responses[&status]
        } else if !responses["default"].is_null() {
            &responses["default"]
        } else if call.status >= 400 {
            // GitHub answers any call with an error it does not list per
            // operation (404 for what is gone, 403/429 for a rate limit,
            // 5xx): its body is GitHub's error, whatever the operation.
            &Value::Null
        } else {
            out.push(format!(
                "{what} response {status}: not a status this operation answers"
            ));
            return out;
        };
        let documented = self.resolve(documented);
        let content = &documented["content"];
        let media = call
            .accept
            .and_then(|a| media_type(content, a))
            .unwrap_or("application/json");
        let mut schema = &content[media]["schema"];
        let basic_error = json_ref(BASIC_ERROR);
        if schema.is_null() && call.status >= 400 && self.pointer(BASIC_ERROR).is_some() {
            schema = &basic_error;
        }
        let what = format!("{what} response {status}");
        match (call.response_body, schema.is_null()) {
            (Some(v), false) => {
                let mut errs = Vec::new();
                self.validate(schema, v, "$", 0, &mut errs);
                out.extend(errs.into_iter().map(|e| format!("{what}: {e}")));
            }
            (None, false) => out.push(format!("{what}: a JSON body is documented, none sent")),
            (Some(_), true) if documented["content"].is_null() => {
                out.push(format!("{what}: a body sent where none is documented"))
            }
            _ => {}
        }
        out
    }

    /// Every way a webhook departs from `webhooks["<event>-<action>"]`
    /// (hyphens for underscores) of a webhooks description: its body, and
    /// the headers the description requires (`None`: not checked).
    pub fn check_webhook(
        &self,
        event: &str,
        headers: Option<&[(String, String)]>,
        body: &Value,
    ) -> Vec<String> {
        let action = body["action"].as_str();
        let key = match action {
            Some(a) => format!("{event}-{a}"),
            None => event.to_string(),
        }
        .replace('_', "-");
        let post = &self.doc["webhooks"][&key]["post"];
        let schema = &post["requestBody"]["content"]["application/json"]["schema"];
        if schema.is_null() {
            return vec![format!(
                "webhook {key}: no such webhook in GitHub's description"
            )];
        }
        let mut errs = Vec::new();
        for p in post["parameters"].as_array().into_iter().flatten() {
            let p = self.resolve(p);
            let (Some(headers), Some("header"), true) =
                (headers, p["in"].as_str(), p["required"] == true)
            else {
                continue;
            };
            let name = p["name"].as_str().unwrap_or_default();
            if !headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty())
            {
                errs.push(format!("header `{name}`: required, not sent"));
            }
        }
        self.validate(schema, body, "$", 0, &mut errs);
        errs.into_iter()
            .map(|e| format!("webhook {key}: {e}"))
            .collect()
    }

    /// What a `$ref` points at (a value without one is itself).
    pub fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        let mut v = v;
        for _ in 0..MAX_DEPTH {
            let Some(r) = v["$ref"].as_str() else {
                return v;
            };
            v = self.pointer(r).unwrap_or(&Value::Null);
        }
        v
    }

    fn pointer(&self, r: &str) -> Option<&Value> {
        let p = r.strip_prefix('#')?;
        self.doc.pointer(p)
    }

    /// A parameter's text as the value its schema describes.
    fn typed(&self, schema: &Value, text: &str) -> Value {
        let schema = self.resolve(schema);
        let types = types_of(schema);
        if types.contains(&"integer")
            && let Ok(n) = text.parse::<i64>()
        {
            return Value::from(n);
        }
        if types.contains(&"number")
            && let Ok(n) = text.parse::<f64>()
        {
            return Value::from(n);
        }
        if types.contains(&"boolean") && (text == "true" || text == "false") {
            return Value::Bool(text == "true");
        }
        if types.contains(&"array") {
            let items = &schema["items"];
            return Value::Array(text.split(',').map(|t| self.typed(items, t)).collect());
        }
        Value::String(text.to_string())
    }

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

/// The `content` entry of a response for what `accept` asks for: one of
/// GitHub's custom media types (`application/vnd.github.object+json`, or
/// without `+json`) the operation lists; `None` for anything else (GitHub
/// then answers with its JSON default).
fn media_type<'c>(content: &'c Value, accept: &str) -> Option<&'c str> {
    let listed = content.as_object()?;
    accept
        .split(',')
        .map(|m| m.split(';').next().unwrap_or_default().trim())
        .filter(|m| m.starts_with("application/vnd.github."))
        .find_map(|m| {
            [m, m.strip_suffix("+json").unwrap_or(m)]
                .into_iter()
                .find_map(|k| listed.get_key_value(k).map(|(k, _)| k.as_str()))
        })
}

/// GitHub's error body (`message`, `documentation_url`).
const BASIC_ERROR: &str = "#/components/schemas/basic-error";

fn json_ref(r: &str) -> Value {
    let mut m = Map::new();
    m.insert("$ref".into(), Value::String(r.into()));
    Value::Object(m)
}

fn child(at: &str, key: &str) -> String {
    if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{at}.{key}")
    } else {
        format!("{at}[{key:?}]")
    }
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(Map::is_empty)
}

/// The types a schema allows (`type` as one name or a list).
fn types_of(schema: &Value) -> Vec<&str> {
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

fn is_type(v: &Value, t: &str) -> bool {
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

fn kind(v: &Value) -> &'static str {
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
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A value for a message: at most 80 characters of its JSON.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// RFC 3339, loosely: `YYYY-MM-DDTHH:MM:SS`, then fractions and an offset
/// (`Z` or `±HH:MM`).
fn is_date_time(s: &str) -> bool {
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
fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut c = scheme.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|x| x.is_ascii_alphanumeric() || "+-.".contains(x))
        && !rest.is_empty()
        && !s.contains(char::is_whitespace)
}

impl Template {
    /// The path parameters if `segs` is this template's path.
    fn matches(&self, segs: &[&str]) -> Option<PathParams> {
        let mut params = Vec::new();
        for (i, t) in self.segs.iter().enumerate() {
            let last = i + 1 == self.segs.len();
            match t {
                Seg::Lit(l) => {
                    if segs.get(i) != Some(&l.as_str()) {
                        return None;
                    }
                }
                // The contents API's `{path}` spans the rest of the path.
                Seg::Param(p) if last && p == "path" && segs.len() > self.segs.len() => {
                    params.push((p.clone(), segs[i..].join("/")));
                    return Some(params);
                }
                Seg::Param(p) => {
                    let s = segs.get(i).filter(|s| !s.is_empty())?;
                    params.push((p.clone(), s.to_string()));
                }
            }
        }
        (segs.len() == self.segs.len()).then_some(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(schema: Value, v: Value) -> Vec<String> {
        let spec = Spec::new(json!({"components": {"schemas": {"thing": schema}}}));
        let mut out = Vec::new();
        spec.validate(
            &json!({"$ref": "#/components/schemas/thing"}),
            &v,
            "$",
            0,
            &mut out,
        );
        out
    }

    #[test]
    fn a_schema_rejects_what_it_does_not_describe() {
        let run = json!({
            "type": "object",
            "required": ["id", "output"],
            "additionalProperties": false,
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "status": {"type": "string", "enum": ["queued", "completed"]},
                "name": {"type": "string", "maxLength": 3},
                "output": {"type": "object", "required": ["annotations_count"],
                           "properties": {"annotations_count": {"type": "integer"}}},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 1},
                "url": {"type": "string", "format": "uri"},
                "at": {"type": ["string", "null"], "format": "date-time"},
                "kind": {"const": "run"},
            },
        });
        let bad = errors(
            run.clone(),
            json!({"id": 0, "status": "waiting", "name": "long", "output": {},
                   "tags": ["a", 2], "url": "not a uri", "at": "yesterday",
                   "kind": "walk", "extra": 1}),
        );
        for expected in [
            "$.id: 0 is below the minimum 1",
            "$.status: \"waiting\" is not one of [\"queued\",\"completed\"]",
            "$.name: 4 characters, at most 3 allowed",
            "$.output.annotations_count: required property missing",
            "$.tags: 2 items, at most 1 allowed",
            "$.tags[1]: an integer where string is required",
            "$.url: \"not a uri\" is not a URI",
            "$.at: \"yesterday\" is not a date-time",
            "$.kind: \"walk\" where \"run\" is required",
            "$.extra: property not allowed here",
        ] {
            assert!(
                bad.iter().any(|e| e == expected),
                "{expected:?} not in {bad:#?}"
            );
        }
        assert_eq!(bad.len(), 10, "{bad:#?}");
        assert_eq!(
            errors(run.clone(), json!({"output": {"annotations_count": 0}})),
            vec!["$.id: required property missing"]
        );
        assert_eq!(
            errors(run, json!([])),
            vec!["$: an array where object is required"]
        );
    }

    #[test]
    fn a_schema_accepts_what_it_describes() {
        let schema = json!({
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {"type": "integer"},
                "conclusion": {"type": "string", "nullable": true, "enum": ["success"]},
                "at": {"type": "string", "format": "date-time"},
                "url": {"type": "string", "format": "uri"},
                "size": {"type": "number", "maximum": 2},
                "owner": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/thing"}]},
            },
        });
        for v in [
            json!({"id": 1}),
            json!({"id": 1.0, "conclusion": null, "at": "2026-12-03T13:48:45Z",
                   "url": "https://api.github.com/repos/acme/ml", "size": 1.5}),
            json!({"id": 2, "at": "2026-12-03T13:48:45.123+01:00", "owner": {"id": 3}}),
            json!({"id": 2, "owner": null, "other": [1, 2]}),
        ] {
            assert_eq!(
                errors(schema.clone(), v.clone()),
                Vec::<String>::new(),
                "{v}"
            );
        }
    }

    #[test]
    fn exclusive_bounds_in_both_versions() {
        let v30 = json!({"type": "integer", "minimum": 1, "exclusiveMinimum": true});
        assert_eq!(
            errors(v30.clone(), json!(1)),
            vec!["$: 1 is below the minimum 1"]
        );
        assert!(errors(v30, json!(2)).is_empty());
        let v31 = json!({"type": "number", "exclusiveMaximum": 5});
        assert_eq!(errors(v31.clone(), json!(5)), vec!["$: 5 is not below 5"]);
        assert!(errors(v31, json!(4.5)).is_empty());
        let items =
            json!({"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 2}});
        assert_eq!(
            errors(items.clone(), json!([])),
            vec!["$: 0 items, at least 1 required"]
        );
        assert_eq!(
            errors(items, json!(["x"])),
            vec!["$[0]: 1 characters, at least 2 required"]
        );
    }

    #[test]
    fn alternatives_need_one_or_exactly_one() {
        let one_of = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
        assert!(errors(one_of.clone(), json!(1.5)).is_empty());
        assert_eq!(
            errors(one_of.clone(), json!(1)),
            vec!["$: matches 2 of the oneOf alternatives, exactly one is allowed"]
        );
        let e = errors(one_of, json!("x"));
        assert!(
            e[0].starts_with("$: matches none of the 2 alternatives"),
            "{e:?}"
        );
        let any_of = json!({"anyOf": [{"type": "integer"}, {"type": "number"}]});
        assert!(errors(any_of, json!(1)).is_empty());
        let all_of = json!({"allOf": [{"required": ["a"]}, {"required": ["b"]}]});
        assert_eq!(
            errors(all_of, json!({"a": 1})),
            vec!["$.b: required property missing"]
        );
    }

    fn api() -> Spec {
        Spec::new(json!({
            "paths": {
                "/repos/{owner}/{repo}/actions/runners/{runner_id}": {
                    "delete": {"parameters": [{"name": "runner_id", "in": "path", "required": true,
                                               "schema": {"type": "integer"}}],
                               "responses": {"204": {"description": "gone"}}}},
                "/repos/{owner}/{repo}/actions/runners/downloads": {
                    "get": {"responses": {"200": {"description": "list", "content": {"application/json":
                        {"schema": {"type": "array", "items": {"type": "object", "required": ["os"]}}}}}}}},
                "/repos/{owner}/{repo}/actions/runners": {
                    "get": {"parameters": [{"$ref": "#/components/parameters/per-page"},
                                           {"name": "name", "in": "query", "schema": {"type": "string"}}],
                            "responses": {"200": {"description": "ok"}}}},
                "/repos/{owner}/{repo}/contents/{path}": {
                    "get": {"responses": {"200": {"description": "ok", "content": {
                        "application/vnd.github.object": {"schema": {"type": "object", "required": ["entries"]}},
                        "application/json": {"schema": {"type": "object", "required": ["content"]}}}}}}},
                "/repos/{owner}/{repo}/check-runs": {
                    "post": {"requestBody": {"required": true, "content": {"application/json": {"schema":
                                {"type": "object", "required": ["name", "head_sha"]}}}},
                             "responses": {"201": {"$ref": "#/components/responses/run"}}}},
            },
            "components": {
                "schemas": {"basic-error": {"type": "object", "properties": {"message": {"type": "string"}}}},
                "parameters": {"per-page": {"name": "per_page", "in": "query",
                                            "schema": {"type": "integer", "maximum": 100}}},
                "responses": {"run": {"description": "run", "content": {"application/json": {"schema":
                    {"type": "object", "required": ["id"]}}}}},
            },
        }))
    }

    #[test]
    fn the_most_specific_template_wins() {
        let spec = api();
        let m = spec
            .find("GET", "/repos/acme/ml/actions/runners/downloads")
            .unwrap();
        assert_eq!(
            m.template,
            "/repos/{owner}/{repo}/actions/runners/downloads"
        );
        let m = spec
            .find("DELETE", "/repos/acme/ml/actions/runners/42")
            .unwrap();
        assert_eq!(
            m.template,
            "/repos/{owner}/{repo}/actions/runners/{runner_id}"
        );
        assert_eq!(m.params[2], ("runner_id".to_string(), "42".to_string()));
        let m = spec
            .find("GET", "/repos/acme/.cirun/contents/a/b.yml")
            .unwrap();
        assert_eq!(m.params[2].1, "a/b.yml");
        assert!(
            spec.find("GET", "/repos/acme/ml/actions/runners/42")
                .is_none()
        );
        assert!(spec.find("GET", "/repos/acme").is_none());
    }

    #[test]
    fn calls_are_checked_parameters_bodies_and_answers() {
        let spec = api();
        let call = |method,
                    path,
                    query: &[(String, String)],
                    req: Option<&Value>,
                    status,
                    resp: Option<&Value>| {
            spec.check_call(&Call {
                method,
                path,
                query: &[query].concat(),
                request_body: req,
                status,
                response_body: resp,
                accept: None,
            })
        };
        let q = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert!(
            call(
                "GET",
                "/repos/a/b/actions/runners",
                &[q("per_page", "100"), q("name", "x")],
                None,
                200,
                None
            )
            .is_empty()
        );
        assert_eq!(
            call(
                "GET",
                "/repos/a/b/actions/runners",
                &[q("per_page", "500"), q("page_size", "1")],
                None,
                200,
                None
            ),
            vec![
                "GET /repos/{owner}/{repo}/actions/runners request: parameter `per_page`: 500 is above the maximum 100",
                "GET /repos/{owner}/{repo}/actions/runners request: query parameter `page_size`: not a parameter of this operation",
            ]
        );
        assert_eq!(
            call(
                "DELETE",
                "/repos/a/b/actions/runners/x",
                &[],
                None,
                204,
                None
            ),
            vec![
                "DELETE /repos/{owner}/{repo}/actions/runners/{runner_id} request: parameter `runner_id`: a string where integer is required"
            ]
        );
        let good = json!({"name": "rigger", "head_sha": "abc"});
        assert!(
            call(
                "POST",
                "/repos/a/b/check-runs",
                &[],
                Some(&good),
                201,
                Some(&json!({"id": 1}))
            )
            .is_empty()
        );
        assert_eq!(
            call(
                "POST",
                "/repos/a/b/check-runs",
                &[],
                Some(&json!({"name": "x"})),
                201,
                Some(&json!({}))
            ),
            vec![
                "POST /repos/{owner}/{repo}/check-runs request: $.head_sha: required property missing",
                "POST /repos/{owner}/{repo}/check-runs response 201: $.id: required property missing",
            ]
        );
        assert_eq!(
            call(
                "POST",
                "/repos/a/b/check-runs",
                &[],
                Some(&good),
                200,
                Some(&json!({"id": 1}))
            ),
            vec![
                "POST /repos/{owner}/{repo}/check-runs response 200: not a status this operation answers"
            ]
        );
        assert_eq!(
            call(
                "GET",
                "/repos/a/b/actions/runners/downloads",
                &[],
                None,
                200,
                Some(&json!([{}]))
            ),
            vec![
                "GET /repos/{owner}/{repo}/actions/runners/downloads response 200: $[0].os: required property missing"
            ]
        );
        // An error the operation does not list is GitHub's error body.
        let gone =
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"});
        assert!(
            call(
                "DELETE",
                "/repos/a/b/actions/runners/7",
                &[],
                None,
                404,
                Some(&gone)
            )
            .is_empty()
        );
        assert_eq!(
            call(
                "DELETE",
                "/repos/a/b/actions/runners/7",
                &[],
                None,
                404,
                Some(&json!({"message": 404}))
            ),
            vec![
                "DELETE /repos/{owner}/{repo}/actions/runners/{runner_id} response 404: $.message: an integer where string is required"
            ]
        );
        assert_eq!(
            call("PUT", "/repos/a/b/check-runs", &[], None, 200, None),
            vec!["PUT /repos/a/b/check-runs: no such operation in GitHub's REST API"]
        );
    }

    #[test]
    fn an_answer_is_checked_against_the_media_type_asked_for() {
        let spec = api();
        let get = |accept: Option<&'static str>, body: Value| {
            spec.check_call(&Call {
                method: "GET",
                path: "/repos/a/b/contents/x.yml",
                query: &[],
                request_body: None,
                status: 200,
                response_body: Some(&body),
                accept,
            })
        };
        let object = Some("application/vnd.github.object+json");
        assert!(get(object, json!({"entries": []})).is_empty());
        assert_eq!(
            get(object, json!({"content": ""})),
            vec![
                "GET /repos/{owner}/{repo}/contents/{path} response 200: $.entries: required property missing"
            ]
        );
        assert!(
            get(
                Some("application/vnd.github.object"),
                json!({"entries": []})
            )
            .is_empty()
        );
        // JSON, or a media type the operation does not list: its JSON default.
        for accept in [
            None,
            Some("application/vnd.github+json"),
            Some("application/vnd.github.html+json"),
        ] {
            assert!(get(accept, json!({"content": ""})).is_empty(), "{accept:?}");
            assert_eq!(get(accept, json!({"entries": []})).len(), 1, "{accept:?}");
        }
    }

    #[test]
    fn a_webhook_is_checked_against_its_event_and_action() {
        let spec = Spec::new(json!({"webhooks": {"workflow-job-in-progress": {"post": {
            "parameters": [{"name": "X-GitHub-Hook-ID", "in": "header", "required": true, "schema": {"type": "string"}},
                           {"name": "X-Extra", "in": "header", "schema": {"type": "string"}}],
            "requestBody": {"content": {"application/json": {"schema": {"type": "object", "required": ["workflow_job"]}}}}}}}}));
        let hook = [("x-github-hook-id".to_string(), "7".to_string())];
        let body = json!({"action": "in_progress", "workflow_job": {}});
        assert!(
            spec.check_webhook("workflow_job", Some(&hook), &body)
                .is_empty()
        );
        assert!(spec.check_webhook("workflow_job", None, &body).is_empty());
        assert_eq!(
            spec.check_webhook("workflow_job", Some(&[]), &json!({"action": "in_progress"})),
            vec![
                "webhook workflow-job-in-progress: header `X-GitHub-Hook-ID`: required, not sent",
                "webhook workflow-job-in-progress: $.workflow_job: required property missing",
            ]
        );
        assert_eq!(
            spec.check_webhook("workflow_job", None, &json!({"action": "exploded"})),
            vec!["webhook workflow-job-exploded: no such webhook in GitHub's description"]
        );
    }

    #[test]
    fn date_times_and_uris_loosely() {
        for ok in ["2026-12-03T13:48:45Z", "2026-12-03T13:48:45.5-07:00"] {
            assert!(is_date_time(ok), "{ok}");
        }
        for bad in [
            "2026-12-03",
            "2026-12-03T13:48:45",
            "2026-12-03T13:48:45.Z",
            "today at noon",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
        assert!(is_uri("https://github.com/acme/ml") && is_uri("mailto:a@b"));
        assert!(!is_uri("/repos/acme/ml") && !is_uri("https://a b") && !is_uri("1http://x"));
    }
}
