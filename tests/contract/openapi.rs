//! A small OpenAPI 3.0/3.1 and JSON Schema validator, ours, on `serde_json`
//! (and `serde_yaml` to read a YAML description into the same values):
//! enough of both to hold the simulated GitHub and Vast.ai, and rigger, to
//! their published descriptions (`@octokit/openapi`,
//! `@octokit/openapi-webhooks`; Vast.ai's `openapi.yaml`).
//!
//! - A request is matched to a path template and method (the most specific
//!   template wins: literal segments beat parameters, left to right; a last
//!   `{path}` parameter may span several segments, as the contents API's does;
//!   a trailing slash, as Vast.ai's clients send, is no segment).
//! - Path, query and (when the call gives its headers) header parameters
//!   are checked: their text read as the schema's type, or, for a parameter
//!   described by `content: application/json`, parsed as JSON; required ones
//!   must be there and unknown query parameters are reported. With headers,
//!   `security` too (HTTP bearer, API keys in a header). The request body is
//!   checked against `requestBody.content["application/json"].schema`, the
//!   response against `responses[status]` (else `default`): the answer's
//!   `Content-Type` (when given) must be one the response lists, and its body
//!   is checked against the `content` for the media type the request asked
//!   for (`Accept: application/vnd.github.object+json` is the
//!   `application/vnd.github.object` entry, where the operation lists one),
//!   else `application/json`, as GitHub answers a media type an operation
//!   does not have with its JSON default. An error status the operation does
//!   not list (or lists without a body) is held to the description's
//!   `basic-error` where it has one (GitHub answers 404, 403, 429 or 5xx to
//!   any call), and is a violation where it does not (Vast.ai's).
//! - Schemas (`schema.rs`): `$ref` (`#/…` in the same document), `type` (one
//!   or a list), `nullable`, `properties`, `required`, `additionalProperties`,
//!   `items`, `enum`, `const`, `oneOf` (exactly one), `anyOf`, `allOf`,
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

use super::schema::types_of;

/// How deep `$ref`s and nested schemas may go before the validator stops
/// (the descriptions' schemas are recursive in places).
pub(super) const MAX_DEPTH: usize = 96;

/// A parsed description (a REST one, or a webhooks one).
pub struct Spec {
    doc: Value,
    templates: Vec<Template>,
    /// What violations call the description (its `info.title`).
    title: String,
    /// The schema an error status the operation does not list is held to
    /// (`None`: such a status is a violation). GitHub's `basic-error`, as
    /// GitHub answers any call with errors it does not list per operation.
    error_schema: Option<String>,
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
    /// The request's headers, names in any case (`None`: header parameters
    /// and `security` are not checked).
    pub headers: Option<&'a [(String, String)]>,
    /// The answer's `Content-Type` (`None`: not checked).
    pub response_type: Option<&'a str>,
}

impl Spec {
    /// A description in JSON, or in YAML (a `.yaml`/`.yml` file), read into
    /// the same JSON values.
    pub fn from_file(path: &std::path::Path) -> Result<Spec, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let yaml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        let doc: Value = if yaml {
            serde_yaml::from_slice(&text)
                .map_err(|e| format!("{} is not YAML: {e}", path.display()))?
        } else {
            serde_json::from_slice(&text)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))?
        };
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
        let title = doc["info"]["title"]
            .as_str()
            .unwrap_or("the description")
            .to_string();
        let error_schema = doc
            .pointer(BASIC_ERROR.trim_start_matches('#'))
            .map(|_| BASIC_ERROR.to_string());
        Spec {
            doc,
            templates,
            title,
            error_schema,
        }
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
                "{} {}: no such operation in {}",
                call.method, call.path, self.title
            )];
        };
        let what = format!("{} {}", call.method, m.template);
        let mut out = Vec::new();
        self.check_parameters(&m, call, &what, &mut out);
        if let Some(headers) = call.headers {
            self.check_security(&m, headers, &what, &mut out);
        }
        self.check_request_body(&m, call, &what, &mut out);
        self.check_response(&m, call, &what, &mut out);
        out
    }

    /// The operation's parameters: the path item's, overridden by the
    /// operation's.
    fn parameters<'a>(&'a self, m: &Matched<'a>) -> Vec<&'a Value> {
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
        params
    }

    /// Path, query and (when the call has them) header parameters: required
    /// ones sent, each as its schema says, no query parameter the operation
    /// does not take.
    fn check_parameters(
        &self,
        m: &Matched<'_>,
        call: &Call<'_>,
        what: &str,
        out: &mut Vec<String>,
    ) {
        let params = self.parameters(m);
        for p in &params {
            let name = p["name"].as_str().unwrap_or_default();
            let sent = match p["in"].as_str() {
                Some("path") => m.params.iter().find(|(k, _)| k == name).map(|(_, v)| v),
                Some("query") => call.query.iter().find(|(k, _)| k == name).map(|(_, v)| v),
                Some("header") => match call.headers {
                    Some(h) => h
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v),
                    None => continue,
                },
                _ => continue,
            };
            let Some(text) = sent else {
                if p["required"] == true {
                    out.push(format!(
                        "{what} request: parameter `{name}`: required, not sent"
                    ));
                }
                continue;
            };
            // A parameter is described by a schema, or by `content` (one
            // media type: its text is, say, JSON).
            let (schema, v) = match p["content"]["application/json"]["schema"] {
                Value::Null => (&p["schema"], self.typed(&p["schema"], text)),
                ref s => match serde_json::from_str::<Value>(text) {
                    Ok(v) => (s, v),
                    Err(e) => {
                        out.push(format!(
                            "{what} request: parameter `{name}`: {text:?} is not JSON ({e})"
                        ));
                        continue;
                    }
                },
            };
            if schema.is_null() {
                continue;
            }
            let mut errs = Vec::new();
            self.validate(schema, &v, &format!("parameter `{name}`"), 0, &mut errs);
            out.extend(errs.into_iter().map(|e| format!("{what} request: {e}")));
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
    }

    /// The operation's `security` (else the document's): one of its
    /// alternatives must be met. Understood: HTTP `bearer` (an
    /// `Authorization: Bearer <credential>` header) and `apiKey` in a header
    /// or the query; an empty alternative (`{}`) is no credential at all.
    fn check_security(
        &self,
        m: &Matched<'_>,
        headers: &[(String, String)],
        what: &str,
        out: &mut Vec<String>,
    ) {
        let required = match &m.operation["security"] {
            Value::Null => &self.doc["security"],
            s => s,
        };
        let Some(alternatives) = required.as_array().filter(|a| !a.is_empty()) else {
            return;
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let met = |scheme_name: &str| {
            let scheme = self.resolve(&self.doc["components"]["securitySchemes"][scheme_name]);
            match (scheme["type"].as_str(), scheme["in"].as_str()) {
                (Some("http"), _)
                    if scheme["scheme"]
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case("bearer")) =>
                {
                    header("authorization")
                        .and_then(|a| a.strip_prefix("Bearer "))
                        .is_some_and(|cred| !cred.trim().is_empty())
                }
                (Some("apiKey"), Some("header")) => {
                    header(scheme["name"].as_str().unwrap_or_default()).is_some()
                }
                // A query key is checked as a query parameter; other kinds
                // (OAuth, cookies) are not this validator's to judge.
                _ => true,
            }
        };
        let ok = alternatives.iter().any(|alt| {
            alt.as_object()
                .is_some_and(|schemes| schemes.keys().all(|s| met(s)))
        });
        if !ok {
            let names: Vec<String> = alternatives
                .iter()
                .filter_map(Value::as_object)
                .map(|s| s.keys().cloned().collect::<Vec<_>>().join(" and "))
                .collect();
            out.push(format!(
                "{what} request: security: {} required, not sent",
                names.join(" or ")
            ));
        }
    }

    fn check_request_body(
        &self,
        m: &Matched<'_>,
        call: &Call<'_>,
        what: &str,
        out: &mut Vec<String>,
    ) {
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
    }

    /// The answer against `responses[status]` (else `default`; else, for an
    /// error, the description's error schema when it has one).
    fn check_response(&self, m: &Matched<'_>, call: &Call<'_>, what: &str, out: &mut Vec<String>) {
        let status = call.status.to_string();
        let responses = &m.operation["responses"];
        let unlisted = Value::Null;
        let documented = if !responses[&status].is_null() {
            &responses[&status]
        } else if !responses["default"].is_null() {
            &responses["default"]
        } else if call.status >= 400 && self.error_schema.is_some() {
            // A service that answers any call with an error it does not list
            // per operation (GitHub: 404, 403, 429, 5xx): its error body.
            &unlisted
        } else {
            out.push(format!(
                "{what} response {status}: not a status this operation answers"
            ));
            return;
        };
        let documented = self.resolve(documented);
        let content = &documented["content"];
        let what = format!("{what} response {status}");
        if let Some(sent) = call.response_type
            && let Some(listed) = content.as_object()
        {
            let sent = sent.split(';').next().unwrap_or_default().trim();
            if !listed.keys().any(|k| k.eq_ignore_ascii_case(sent)) {
                let listed: Vec<&str> = listed.keys().map(String::as_str).collect();
                out.push(format!(
                    "{what}: answered {sent}, the operation documents {}",
                    listed.join(" or ")
                ));
                return;
            }
        }
        let media = call
            .accept
            .and_then(|a| media_type(content, a))
            .unwrap_or("application/json");
        let mut schema = &content[media]["schema"];
        let fallback = self.error_schema.as_deref().map(json_ref);
        if schema.is_null()
            && call.status >= 400
            && let Some(f) = &fallback
        {
            schema = f;
        }
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

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(Map::is_empty)
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
#[path = "openapi_tests.rs"]
mod tests;
