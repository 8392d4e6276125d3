//! `PUT /api/v0/search/asks/`: offers matched, priced and ordered as the
//! real API does.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::http::{error, json_response};
use super::{SimVast, filter};

pub(super) fn search(sim: &SimVast, q: &Value) -> Response {
    let Some(obj) = q.as_object() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "the query must be a JSON object",
        );
    };
    let s = match filter::parse(obj) {
        Ok(s) => s,
        Err(filter::BadQuery(why)) => return error(StatusCode::BAD_REQUEST, "invalid_args", &why),
    };
    let now_s = sim.now() as f64 / 1000.0;
    let w = sim.world();
    // Price every candidate first: `dph_total` is a column a search may
    // filter on, not only order by. Rank references; copy only the offers
    // answered.
    let mut found: Vec<(&Map<String, Value>, Value)> = w
        .offers
        .candidates(&s)
        .filter_map(|o| {
            let price = dph_total(o, &s);
            let computed = filter::Computed {
                now_s: Some(now_s),
                dph_total: Some(price),
            };
            filter::matches(o, &s, &computed).then(|| (o, json!(price)))
        })
        .collect();
    filter::sort_by_columns(&mut found, &s.order, column_of);
    found.truncate(s.limit);
    let found: Vec<Map<String, Value>> = found
        .into_iter()
        .map(|(o, _)| priced(o, &s, now_s))
        .collect();
    drop(w);
    json_response(StatusCode::OK, json!({"offers": found}))
}

/// A column of a priced offer: `dph_total` as priced for this search.
fn column_of<'a>(item: &'a (&Map<String, Value>, Value), col: &str) -> Option<&'a Value> {
    if col == "dph_total" {
        Some(&item.1)
    } else {
        item.0.get(col)
    }
}

/// $/hour for the storage asked about; for bids, the minimum bid as the
/// GPU's price.
fn dph_total(o: &Map<String, Value>, s: &filter::Search) -> f64 {
    let base = o.get("dph_base").and_then(Value::as_f64).unwrap_or(0.0);
    let min_bid = o.get("min_bid").and_then(Value::as_f64).unwrap_or(base);
    let storage =
        o.get("storage_cost").and_then(Value::as_f64).unwrap_or(0.0) * s.storage_gb / 720.0;
    let gpu = if s.bid { min_bid } else { base };
    ((gpu + storage) * 1e6).round() / 1e6
}

/// An offer with `dph_total` for the storage asked about, and for bids the
/// minimum bid as its price. It also carries `duration`, the seconds left until the host's listing
/// ends, as the real API reports it.
fn priced(o: &Map<String, Value>, s: &filter::Search, now_s: f64) -> Map<String, Value> {
    let total = dph_total(o, s);
    let left = o
        .get("end_date")
        .and_then(Value::as_f64)
        .map(|end| ((end - now_s) * 100.0).round() / 100.0);
    let mut o = o.clone();
    o.insert("dph_total".into(), json!(total));
    if let Some(left) = left {
        o.insert("duration".into(), json!(left));
    }
    o.insert("is_bid".into(), json!(s.bid));
    o
}
