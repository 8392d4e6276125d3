//! `/sim/...`: the simulator's own control surface.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::http::{error, json_response};
use super::{Faults, HostStatus, Limits, Phase, SimVast};

/// `/sim/...`: inspect and steer the simulator (not part of Vast.ai's API).
pub(super) fn control(sim: &SimVast, method: &Method, seg: &[&str], body: &[u8]) -> Response {
    let now = sim.now();
    match (method, seg) {
        (&Method::GET, ["state"]) => {
            let w = sim.world();
            let instances: Vec<Value> = w
                .instances
                .values()
                .map(|i| {
                    // Its times too, so a soak can tell what rigger did
                    // from what the host did (died, was stuck).
                    json!({"id": i.id, "label": i.label, "phase": i.phase,
                                 "gpu_name": i.offer.get("gpu_name"), "cost": i.cost_at(now),
                                 "created_ms": i.created_ms, "running_ms": i.running_ms,
                                 "ended_ms": i.ended_ms, "destroyed_ms": i.destroyed_ms,
                                 "dies": i.dies, "stuck": i.stuck})
                })
                .collect();
            json_response(
                StatusCode::OK,
                json!({"offers": w.offers.len(), "instances": instances, "ledger": w.ledger,
                       "spend": w.spend(now), "faults": w.faults, "requests": w.requests,
                       "limits": w.limits, "refused": w.limiter.refused}),
            )
        }
        (&Method::POST, ["faults"]) => {
            let text = String::from_utf8_lossy(body);
            match text.trim().parse::<Faults>() {
                Ok(f) => {
                    sim.set_faults(f);
                    json_response(StatusCode::OK, json!({"success": true}))
                }
                Err(e) => error(StatusCode::BAD_REQUEST, "invalid_args", &e),
            }
        }
        (&Method::POST, ["limits"]) => {
            let text = String::from_utf8_lossy(body);
            match text.trim().parse::<Limits>() {
                Ok(l) => {
                    sim.set_limits(l);
                    json_response(StatusCode::OK, json!({"success": true}))
                }
                Err(e) => error(StatusCode::BAD_REQUEST, "invalid_args", &e),
            }
        }
        (&Method::POST, ["instances", id, "exit"]) => {
            let code = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("exit_code").and_then(Value::as_i64))
                .unwrap_or(0) as i32;
            match id.parse::<i64>() {
                Ok(id) if sim.exit(id, code) => {
                    json_response(StatusCode::OK, json!({"success": true}))
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no running instance with that id",
                ),
            }
        }
        (&Method::POST, ["instances", id, "die"]) => {
            let mut w = sim.world();
            match id
                .parse::<i64>()
                .ok()
                .and_then(|id| w.instances.get_mut(&id))
            {
                Some(i) if i.phase != Phase::Destroyed => {
                    i.phase = Phase::Offline;
                    i.ended_ms = Some(now);
                    json_response(StatusCode::OK, json!({"success": true}))
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no live instance with that id",
                ),
            }
        }
        (&Method::POST, ["instances", id, "host"]) => {
            // `{"status": "unknown", "for_s": 300}`: for good without `for_s`.
            let v = serde_json::from_slice::<Value>(body).unwrap_or_default();
            let status = v
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .parse::<HostStatus>();
            let for_ms = v.get("for_s").and_then(Value::as_i64).map(|s| s * 1000);
            match (status, id.parse::<i64>()) {
                (Err(e), _) => error(StatusCode::BAD_REQUEST, "invalid_args", &e),
                (Ok(st), Ok(id)) if sim.host_goes(id, st, for_ms) => {
                    json_response(StatusCode::OK, json!({"success": true}))
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no live instance with that id",
                ),
            }
        }
        (&Method::POST, ["instances", id, "outbid"]) => {
            // `{"price": 0.9}`: someone bids that for the machine.
            let price = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("price").and_then(Value::as_f64));
            match (price, id.parse::<i64>()) {
                (Some(p), Ok(id)) if sim.outbid(id, p) => {
                    json_response(StatusCode::OK, json!({"success": true}))
                }
                (None, _) => error(StatusCode::BAD_REQUEST, "invalid_args", "price is required"),
                _ => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no running interruptible instance with that id bidding below that",
                ),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "unknown /sim endpoint"),
    }
}
