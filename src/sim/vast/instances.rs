//! Renting, managing and listing instances: `PUT /api/v0/asks/{id}/`,
//! `PUT`/`DELETE /api/v0/instances/{id}/` and `GET /api/v1/instances/`.

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::hosts::BidError;
use super::http::{error, json_response, query_param};
use super::world::RentError;
use super::{Phase, Rental, SimVast, filter};

fn env_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect(),
        // The OpenAPI types env as a docker-style string: `-e K=V -p 80:80`.
        Some(Value::String(s)) => {
            let mut out = Vec::new();
            let mut words = s.split_whitespace();
            while let Some(w) = words.next() {
                match (w, words.next()) {
                    ("-e", Some(kv)) => {
                        if let Some((k, v)) = kv.split_once('=') {
                            out.push((k.to_string(), v.trim_matches('"').to_string()));
                        }
                    }
                    ("-p", Some(p)) => out.push((format!("-p {p}"), "1".to_string())),
                    _ => {}
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// `env`'s limits in Vast.ai's OpenAPI (`x-input-validation`: `max_length`
/// 256, `max_total_length` 32768). Which length the first means is not said:
/// the simulator takes the stricter reading, the whole `KEY=value`.
const ENV_ENTRY_MAX: usize = 256;
const ENV_TOTAL_MAX: usize = 32_768;

/// Why Vast.ai would refuse `env`, counted over its documented type, the
/// Docker-flag string (`-e KEY=value …`; a map is counted as that string).
/// The error is not documented: the answer takes the common shape
/// (rate-limits-and-errors), `400 invalid_args`.
fn env_refusal(env: Option<&Value>, pairs: &[(String, String)]) -> Option<String> {
    let entry = |k: &str, v: &str| k.chars().count() + 1 + v.chars().count();
    if let Some((k, v)) = pairs.iter().find(|(k, v)| entry(k, v) > ENV_ENTRY_MAX) {
        return Some(format!(
            "env variable {k} is {} characters; the limit is {ENV_ENTRY_MAX}",
            entry(k, v)
        ));
    }
    let total = match env {
        Some(Value::String(s)) => s.chars().count(),
        _ => {
            pairs.iter().map(|(k, v)| 3 + entry(k, v)).sum::<usize>()
                + pairs.len().saturating_sub(1)
        }
    };
    (total > ENV_TOTAL_MAX)
        .then(|| format!("env is {total} characters in all; the limit is {ENV_TOTAL_MAX}"))
}

pub(super) fn create(sim: &SimVast, id: &str, body: &Value, now: i64) -> Response {
    let Ok(offer_id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "the offer id must be a number",
        );
    };
    let str_of = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let image = str_of("image").unwrap_or_default();
    let rental = Rental {
        vm: body.get("vm") == Some(&Value::Bool(true)),
        disk_gb: body.get("disk").and_then(filter::number).unwrap_or(10.0),
        label: str_of("label"),
        env: env_pairs(body.get("env")),
        onstart: str_of("onstart"),
        args: body
            .get("args")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        runtype: str_of("runtype").unwrap_or_else(|| "ssh".to_string()),
        bid: body.get("price").and_then(filter::number),
        image,
    };
    if let Some(l) = &rental.label
        && l.len() > 256
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "label is longer than 256 characters",
        );
    }
    if let Some(why) = env_refusal(body.get("env"), &rental.env) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            &format!("Invalid args: {why}"),
        );
    }
    let cancel_unavail = body.get("cancel_unavail") == Some(&Value::Bool(true));
    let mut w = sim.world();
    let f = w.faults.clone();
    let mut draw = |rate: f64| rate > 0.0 && w.rng.chance(rate);
    let ambiguous = draw(f.ambiguous_create_rate);
    let cut = draw(f.cut_create_rate);
    let garbled = draw(f.garbled_create_rate);
    let gone_as_200 = draw(f.gone_as_200_rate);
    match w.rent(offer_id, rental, now) {
        Ok(_) if ambiguous => error(
            StatusCode::BAD_GATEWAY,
            "server_error",
            "upstream timed out (injected fault)",
        ),
        Ok((id, key)) => {
            let answer = json!({"success": true, "new_contract": id, "instance_api_key": key});
            if cut {
                cut_off(&answer.to_string())
            } else if garbled {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html><body>upstream connect error (injected fault)</body></html>",
                )
                    .into_response()
            } else {
                json_response(StatusCode::OK, answer)
            }
        }
        // Seen from the real API (reference §4.3): the refusal in a 200.
        Err(RentError::NoSuchAsk) if gone_as_200 => json_response(
            StatusCode::OK,
            json!({"success": false, "error": "no_such_ask", "ask_id": offer_id,
                   "msg": format!("error 404/3603: no_such_ask Instance type by id {offer_id} is not available.")}),
        ),
        Err(RentError::NoSuchAsk) if cancel_unavail => error(
            StatusCode::GONE,
            "no_such_ask",
            &format!(
                "error 410/3907: no_such_ask Instance type {offer_id} is no longer available."
            ),
        ),
        // The real 404 says `invalid_args` and names `no_such_ask` only in
        // its message (reference §4.3).
        Err(RentError::NoSuchAsk) => error(
            StatusCode::NOT_FOUND,
            "invalid_args",
            &format!(
                "error 404/3603: no_such_ask Instance type by id {offer_id} is not available."
            ),
        ),
        Err(RentError::NoSshKeyForVm) => error(
            StatusCode::BAD_REQUEST,
            "no_ssh_key_for_vm",
            "A VM needs an SSH key on the account; add one first.",
        ),
        Err(RentError::InvalidPrice(why)) => error(
            StatusCode::BAD_REQUEST,
            "invalid_price",
            &format!("error 400/3470: {why}"),
        ),
        Err(RentError::Invalid(why)) => error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            &format!("Invalid args: {why}"),
        ),
    }
}

/// A 200 whose body stops half-way: the headers promise the whole answer,
/// the connection drops after part of it (what a client sees when a proxy
/// or the network fails mid-answer).
fn cut_off(answer: &str) -> Response {
    // Leading whitespace (valid JSON) makes the part sent larger than
    // hyper's write buffer, so the head and the first part go out before
    // the body ends short; a small body would be dropped with its head.
    let pad = " ".repeat(1 << 20);
    let mut sent = pad.clone().into_bytes();
    sent.extend_from_slice(&answer.as_bytes()[..answer.len() / 2]);
    // A streamed body has no known length, so hyper sends the promised
    // Content-Length and ends the connection when the stream ends short.
    let body = axum::body::Body::from_stream(axum::body::Body::from(sent).into_data_stream());
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from(pad.len() + answer.len()),
    );
    // Sent as it is, not compressed: compressing would end the stream
    // cleanly and hide the cut.
    h.insert(
        header::CONTENT_ENCODING,
        header::HeaderValue::from_static("identity"),
    );
    r
}

pub(super) fn manage(sim: &SimVast, id: &str, body: &Value, now: i64) -> Response {
    let Some(id) = id.parse::<i64>().ok() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "invalid instance_id",
        );
    };
    let mut w = sim.world();
    if w.live(id).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "no_such_instance",
            &format!("Instance {id} not found."),
        );
    }
    if let Some(label) = body.get("label") {
        let label = label.as_str().unwrap_or_default().to_string();
        if label.len() > 1024 {
            return error(
                StatusCode::BAD_REQUEST,
                "label_too_long",
                "Please limit label length to 1024 characters, ideally less than 128.",
            );
        }
        if let Some(i) = w.instances.get_mut(&id) {
            i.label = Some(label.clone());
        }
        return json_response(
            StatusCode::OK,
            json!({"success": true, "msg": format!("label for {id} set to '{label}'")}),
        );
    }
    match body.get("state").and_then(Value::as_str) {
        Some("stopped") => {
            w.exit(id, 143, now);
            json_response(StatusCode::OK, json!({"success": true}))
        }
        Some("running") => json_response(StatusCode::OK, json!({"success": true})),
        _ => error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "expected `label` or `state`",
        ),
    }
}

/// Columns `select_filters` may use (stored ones only, like the real API).
const STORED: &[&str] = &[
    "id",
    "actual_status",
    "label",
    "gpu_name",
    "verification",
    "machine_id",
    "intended_status",
    "image_uuid",
];

pub(super) fn list_v1(sim: &SimVast, uri: &Uri, now: i64) -> Response {
    let param = |k: &str| query_param(uri, k);
    let limit = match param("limit").and_then(|l| l.parse::<i64>().ok()) {
        None => 25,
        Some(l) if l <= 0 => 5,
        Some(l) => l.min(25),
    } as usize;
    let filters: Map<String, Value> =
        match param("select_filters").map(|f| serde_json::from_str::<Value>(&f)) {
            None => Map::new(),
            Some(Ok(Value::Object(m))) => m,
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "select_filters must be a JSON object",
                );
            }
        };
    for col in filters.keys() {
        if !STORED.contains(&col.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("Error in query parameters: {col} is not a valid search key"),
            );
        }
    }
    let desc = param("order_by")
        .and_then(|o| serde_json::from_str::<Value>(&o).ok())
        .and_then(|o| {
            o.get(0)
                .and_then(|c| c.get("dir"))
                .and_then(Value::as_str)
                .map(|d| d == "desc")
        })
        .unwrap_or(false);
    let after: Option<i64> = match param("after_token") {
        None => None,
        Some(t) => match t.strip_prefix("sim-").and_then(|n| n.parse().ok()) {
            Some(n) => Some(n),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_token",
                    "invalid after_token",
                );
            }
        },
    };
    let select: Option<Vec<String>> = param("select_cols")
        .and_then(|c| serde_json::from_str::<Vec<String>>(&c).ok())
        .filter(|c| !c.iter().any(|x| x == "*"));
    let w = sim.world();
    let mut rows: Vec<Map<String, Value>> = w
        .instances
        .values()
        .filter(|i| i.phase != Phase::Destroyed)
        .filter_map(|i| match w.row(i, now) {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .filter(|row| {
            filters.iter().all(|(col, cond)| {
                cond.as_object()
                    .is_none_or(|ops| ops.iter().all(|(op, v)| filter::holds(row, col, op, v)))
            })
        })
        .collect();
    let mut label_counts = Map::new();
    for r in &rows {
        let l = r
            .get("label")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let n = label_counts.get(&l).and_then(Value::as_u64).unwrap_or(0) + 1;
        label_counts.insert(l, json!(n));
    }
    let total = rows.len();
    if desc {
        rows.reverse();
    }
    let id_of = |r: &Map<String, Value>| r.get("id").and_then(Value::as_i64).unwrap_or(0);
    if let Some(a) = after {
        rows.retain(|r| if desc { id_of(r) < a } else { id_of(r) > a });
    }
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|r| format!("sim-{}", id_of(r)))
    } else {
        None
    };
    let page: Vec<Value> = rows
        .into_iter()
        .map(|r| match &select {
            Some(cols) => Value::Object(
                cols.iter()
                    .map(|c| (c.clone(), r.get(c).cloned().unwrap_or(Value::Null)))
                    .collect(),
            ),
            None => Value::Object(r),
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"success": true, "instances_found": page.len(), "total_instances": total,
               "label_counts": label_counts, "next_token": next, "instances": page}),
    )
}

/// `PUT /api/v0/instances/bid_price/{id}/` (change_bid.yaml).
pub(super) fn change_bid(sim: &SimVast, id: &str, body: &Value, now: i64) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "invalid instance_id",
        );
    };
    if body.get("client_id").and_then(Value::as_str).is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "client_id is required",
        );
    }
    let Some(price) = body.get("price").and_then(filter::number) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "Please set a bid price >= 0.001.",
        );
    };
    match sim.world().change_bid(id, price, now) {
        Ok(()) => json_response(StatusCode::OK, json!({"success": true})),
        Err(BidError::NoSuchInstance) => error(
            StatusCode::NOT_FOUND,
            "no_such_instance",
            "Instance with that ID does not exist.",
        ),
        Err(BidError::Invalid(why)) => error(StatusCode::BAD_REQUEST, "invalid_args", &why),
    }
}
