//! The validator's own tests.

use super::*;
use crate::contract::schema::{is_date_time, is_uri};
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
            headers: None,
            response_type: None,
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
    let gone = json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"});
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
        vec!["PUT /repos/a/b/check-runs: no such operation in the description"]
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
            headers: None,
            response_type: None,
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

/// A Vast.ai-like description, in YAML: a bearer scheme, a JSON query
/// parameter, no `basic-error`.
const VAST_LIKE: &str = r#"
openapi: 3.1.0
info: {title: Vast-like API}
security: [{BearerAuth: []}]
components:
  securitySchemes:
    BearerAuth: {type: http, scheme: bearer}
paths:
  /api/v1/instances:
    get:
      parameters:
        - name: select_filters
          in: query
          content:
            application/json:
              schema: {type: object, additionalProperties: {type: object}}
        - {name: X-Trace, in: header, required: true, schema: {type: string}}
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema: {type: object, properties: {next_token: {type: [string, 'null']}}}
"#;

#[test]
fn a_yaml_description_with_security_json_parameters_and_no_error_fallback() {
    let path = std::env::temp_dir().join(format!("rigger-openapi-{}.yaml", std::process::id()));
    std::fs::write(&path, VAST_LIKE).unwrap();
    let spec = Spec::from_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let good = h(&[("authorization", "Bearer k"), ("x-trace", "1")]);
    let call = |query: &[(String, String)],
                headers: &[(String, String)],
                status: u16,
                response_type: Option<&str>| {
        spec.check_call(&Call {
            method: "GET",
            path: "/api/v1/instances/",
            query,
            request_body: None,
            status,
            response_body: Some(&json!({"next_token": null})),
            accept: None,
            headers: Some(headers),
            response_type,
        })
    };
    let q = |v: &str| vec![("select_filters".to_string(), v.to_string())];
    let json = Some("application/json; charset=utf-8");
    assert!(call(&q(r#"{"label": {"eq": "x"}}"#), &good, 200, json).is_empty());
    let what = "GET /api/v1/instances";
    assert_eq!(
        call(&q(r#"{"label": "x"}"#), &good, 200, json),
        vec![format!(
            "{what} request: parameter `select_filters`.label: a string where object is required"
        )]
    );
    assert_eq!(
        call(
            &q("label=x"),
            &h(&[("authorization", "Bearer ")]),
            200,
            json
        )[..2],
        [
            format!(
                "{what} request: parameter `select_filters`: \"label=x\" is not JSON (expected value at line 1 column 1)"
            ),
            format!("{what} request: parameter `X-Trace`: required, not sent"),
        ]
    );
    assert_eq!(
        call(&[], &h(&[("x-trace", "1")]), 200, json),
        vec![format!(
            "{what} request: security: BearerAuth required, not sent"
        )]
    );
    assert_eq!(
        call(&[], &good, 200, Some("text/plain")),
        vec![format!(
            "{what} response 200: answered text/plain, the operation documents application/json"
        )]
    );
    // No `basic-error` to fall back on: an unlisted error is a violation.
    assert_eq!(
        call(&[], &good, 429, Some("text/plain")),
        vec![format!(
            "{what} response 429: not a status this operation answers"
        )]
    );
    assert_eq!(
        spec.check_call(&Call {
            method: "POST",
            path: "/api/v1/instances",
            query: &[],
            request_body: None,
            status: 200,
            response_body: None,
            accept: None,
            headers: None,
            response_type: None,
        }),
        vec!["POST /api/v1/instances: no such operation in Vast-like API"]
    );
}
