//! How the simulated Vast.ai reads a search query as the real one does:
//! `{column: {op: value}}` with numeric strings compared as numbers, the
//! CLI's aliases, and the server's virtual columns (reference §3.2–§3.5, §13).

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

/// Keys that steer the search instead of filtering.
const CONTROL: &[&str] = &[
    "order",
    "type",
    "limit",
    "allocated_storage",
    "disable_bundling",
    "select_cols",
];

/// A parsed search.
#[derive(Debug, Clone)]
pub struct Search {
    pub conditions: Vec<(String, String, Value)>,
    pub order: Vec<(String, bool)>,
    pub limit: usize,
    /// GB of storage priced into `dph_total`.
    pub storage_gb: f64,
    pub bid: bool,
}

/// The columns the server works out for each search rather than stores:
/// `duration` (seconds from now until the host's `end_date`) and
/// `dph_total` (the price with the storage asked about, or the minimum bid).
#[derive(Debug, Clone, Copy, Default)]
pub struct Computed {
    /// The server's clock, Unix seconds.
    pub now_s: Option<f64>,
    pub dph_total: Option<f64>,
}

/// Why a query cannot be run (400 `invalid_args`).
#[derive(Debug, Clone, PartialEq)]
pub struct BadQuery(pub String);

/// The offer limit when the query gives none.
pub const DEFAULT_LIMIT: usize = 64;

fn alias(key: &str) -> &str {
    match key {
        "cuda_vers" => "cuda_max_good",
        "dph" | "dphtotal" => "dph_total",
        "reliability2" => "reliability",
        "gpu_totalram" => "gpu_total_ram",
        "driver_version" => "driver_vers",
        "ubuntu_version" => "os_version",
        "display_active" => "gpu_display_active",
        "dlperf_usd" => "dlperf_per_dphtotal",
        "flops_usd" => "flops_per_dphtotal",
        other => other,
    }
}

pub fn parse(q: &Map<String, Value>) -> Result<Search, BadQuery> {
    let mut s = Search {
        conditions: Vec::new(),
        order: Vec::new(),
        limit: DEFAULT_LIMIT,
        storage_gb: 5.0,
        bid: false,
    };
    for (key, cond) in q {
        match key.as_str() {
            "order" => {
                for item in cond.as_array().into_iter().flatten() {
                    let col = item.get(0).and_then(Value::as_str).unwrap_or("score");
                    let desc = item.get(1).and_then(Value::as_str) == Some("desc");
                    s.order.push((alias(col).to_string(), desc));
                }
            }
            "type" => {
                s.bid = match cond.as_str() {
                    Some("bid" | "interruptible") => true,
                    Some("on-demand" | "ondemand" | "reserved") | None => false,
                    Some(other) => return Err(BadQuery(format!("invalid type `{other}`"))),
                };
            }
            "limit" => {
                s.limit = number(cond).map_or(DEFAULT_LIMIT, |n| n.max(0.0) as usize);
            }
            "allocated_storage" => {
                if let Some(gb) = number(cond) {
                    s.storage_gb = gb;
                    s.conditions
                        .push(("disk_space".into(), "gte".into(), Value::from(gb)));
                }
            }
            k if CONTROL.contains(&k) => {}
            k => {
                let Some(ops) = cond.as_object() else {
                    return Err(BadQuery(format!(
                        "`{k}` must be an object such as {{\"eq\": …}}"
                    )));
                };
                for (op, v) in ops {
                    if !["eq", "neq", "gt", "gte", "lt", "lte", "in", "notin", "nin"]
                        .contains(&op.as_str())
                    {
                        return Err(BadQuery(format!("unknown operator `{op}` on `{k}`")));
                    }
                    s.conditions
                        .push((alias(k).to_string(), op.clone(), v.clone()));
                }
            }
        }
    }
    if s.order.is_empty() {
        s.order.push(("score".into(), true));
    }
    // A conjunction holds in any order; testing the conditions that reject
    // most offers first makes a search of a large market several times
    // faster (most offers fail on the GPU model alone).
    s.conditions.sort_by_key(|(col, _, _)| selectivity(col));
    Ok(s)
}

/// How early a column is tested: the most selective first.
fn selectivity(col: &str) -> u8 {
    match col {
        "gpu_name" => 0,
        "num_gpus" => 1,
        "geolocation" => 2,
        "gpu_ram" | "cpu_arch" | "vms_enabled" => 3,
        _ => 4,
    }
}

/// A JSON number, or a string that reads as one.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_f64().map(|x| x != 0.0),
        _ => None,
    }
}

/// The value of a column on an offer, virtual columns included. Borrowed
/// where it can be: a search tests every condition on every offer.
fn column<'a>(
    offer: &'a Map<String, Value>,
    col: &str,
    computed: &Computed,
) -> Option<Cow<'a, Value>> {
    Some(match col {
        "verified" => Cow::Owned(Value::Bool(
            offer.get("verification").and_then(Value::as_str) == Some("verified"),
        )),
        "datacenter" => Cow::Owned(Value::Bool(
            offer.get("hosting_type").and_then(Value::as_i64) == Some(1),
        )),
        // Matched on the trailing country code.
        "geolocation" => {
            let g = offer.get("geolocation")?.as_str()?.trim();
            Cow::Owned(Value::from(
                g.get(g.len().saturating_sub(2)..).unwrap_or(""),
            ))
        }
        "duration" => match (
            computed.now_s,
            offer.get("end_date").and_then(Value::as_f64),
        ) {
            (Some(now), Some(end)) => Cow::Owned(Value::from(end - now)),
            _ => Cow::Borrowed(offer.get("duration")?),
        },
        "dph_total" => match computed.dph_total {
            Some(price) => Cow::Owned(Value::from(price)),
            None => Cow::Borrowed(offer.get("dph_total")?),
        },
        other => Cow::Borrowed(offer.get(other)?),
    })
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (number(a), number(b))
        && !matches!((a, b), (Value::Bool(_), _) | (_, Value::Bool(_)))
    {
        return x.partial_cmp(&y);
    }
    match (a, b) {
        (Value::Bool(_), _) | (_, Value::Bool(_)) => {
            let (x, y) = (boolean(a)?, boolean(b)?);
            Some(x.cmp(&y))
        }
        (Value::String(x), Value::String(y)) => Some(x.as_str().cmp(y.as_str())),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value, col: &str) -> bool {
    if col == "geolocation"
        && let (Some(x), Some(y)) = (a.as_str(), b.as_str())
    {
        return x.eq_ignore_ascii_case(y);
    }
    compare(a, b) == Some(Ordering::Equal)
}

/// Whether one condition holds. Columns an offer does not have are ignored,
/// as the server ignores unknown fields (the CLI only warns about them).
pub fn holds(offer: &Map<String, Value>, col: &str, op: &str, v: &Value) -> bool {
    holds_with(offer, col, op, v, &Computed::default())
}

/// [`holds`], with the columns a search computes.
fn holds_with(
    offer: &Map<String, Value>,
    col: &str,
    op: &str,
    v: &Value,
    computed: &Computed,
) -> bool {
    let Some(actual) = column(offer, col, computed) else {
        return true;
    };
    let actual = actual.as_ref();
    let list = match v {
        Value::Array(items) => items.as_slice(),
        one => std::slice::from_ref(one),
    };
    match op {
        "eq" => equal(actual, v, col),
        "neq" => !equal(actual, v, col),
        "in" => list.iter().any(|x| equal(actual, x, col)),
        "notin" | "nin" => !list.iter().any(|x| equal(actual, x, col)),
        "gt" => compare(actual, v) == Some(Ordering::Greater),
        "gte" => matches!(
            compare(actual, v),
            Some(Ordering::Greater | Ordering::Equal)
        ),
        "lt" => compare(actual, v) == Some(Ordering::Less),
        "lte" => matches!(compare(actual, v), Some(Ordering::Less | Ordering::Equal)),
        _ => false,
    }
}

/// Whether an offer passes every condition, with the columns the search
/// computed for it.
pub fn matches(offer: &Map<String, Value>, s: &Search, computed: &Computed) -> bool {
    s.conditions
        .iter()
        .all(|(c, op, v)| holds_with(offer, c, op, v, computed))
}

/// Sort by the query's order (numbers as numbers), then by id.
pub fn sort(offers: &mut [Map<String, Value>], order: &[(String, bool)]) {
    sort_by_columns(offers, order, |m, col| m.get(col));
}

/// Sort anything that can show an offer's columns, by the query's order
/// (numbers as numbers), then by id.
pub fn sort_by_columns<T>(
    items: &mut [T],
    order: &[(String, bool)],
    get: impl for<'a> Fn(&'a T, &str) -> Option<&'a Value>,
) {
    items.sort_by(|a, b| {
        for (col, desc) in order {
            let x = get(a, col).unwrap_or(&Value::Null);
            let y = get(b, col).unwrap_or(&Value::Null);
            let o = compare(x, y).unwrap_or(Ordering::Equal);
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        let id = |t: &T| get(t, "id").and_then(Value::as_i64).unwrap_or(0);
        id(a).cmp(&id(b))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn offer() -> Map<String, Value> {
        json!({"id": 1, "gpu_name": "RTX 4090", "num_gpus": 1, "gpu_ram": 24564,
               "reliability": 0.991, "geolocation": "Texas, US", "verification": "verified",
               "cuda_max_good": 12.4, "rentable": true, "hosting_type": 0, "static_ip": null})
        .as_object()
        .unwrap()
        .clone()
    }

    fn ok(q: Value) -> bool {
        matches(
            &offer(),
            &parse(q.as_object().unwrap()).unwrap(),
            &Computed::default(),
        )
    }

    /// `duration` counts from the server's clock to `end_date`, in seconds;
    /// `dph_total` is the price worked out for this search.
    #[test]
    fn computed_columns_filter_as_the_server_works_them_out() {
        let mut o = offer();
        o.insert("end_date".into(), json!(10_000.0 + 7_200.0));
        let at = |now: f64, price: f64| Computed {
            now_s: Some(now),
            dph_total: Some(price),
        };
        let q = |v: Value| parse(v.as_object().unwrap()).unwrap();
        let six_hours = q(json!({"duration": {"gte": 21_600.0}}));
        assert!(!matches(&o, &six_hours, &at(10_000.0, 0.3)), "2 h left");
        assert!(matches(
            &o,
            &q(json!({"duration": {"gte": "3600"}})),
            &at(10_000.0, 0.3)
        ));
        assert!(!matches(
            &o,
            &q(json!({"duration": {"gte": 3600}})),
            &at(14_000.0, 0.3)
        ));
        let cheap = q(json!({"dph_total": {"lte": "0.5"}}));
        assert!(matches(&o, &cheap, &at(0.0, 0.42)));
        assert!(!matches(&o, &cheap, &at(0.0, 0.51)));
        let arch = q(json!({"gpu_arch": {"eq": "nvidia"}, "cpu_arch": {"in": ["amd64"]}}));
        o.insert("gpu_arch".into(), json!("amd"));
        o.insert("cpu_arch".into(), json!("amd64"));
        assert!(!matches(&o, &arch, &at(0.0, 0.1)));
        o.insert("gpu_arch".into(), json!("nvidia"));
        assert!(matches(&o, &arch, &at(0.0, 0.1)));
    }

    #[test]
    fn numeric_strings_compare_as_numbers() {
        assert!(ok(
            json!({"num_gpus": {"eq": "1"}, "reliability": {"gt": "0.98"}})
        ));
        assert!(ok(
            json!({"gpu_ram": {"gte": 24000.0}, "cuda_max_good": {"gte": "12.0"}})
        ));
        // As strings "9" > "12"; as numbers it is not.
        assert!(!ok(json!({"cuda_max_good": {"gte": "100"}})));
        assert!(ok(json!({"cuda_vers": {"lt": "100"}})), "alias");
    }

    #[test]
    fn names_lists_booleans_and_virtual_columns() {
        assert!(ok(json!({"gpu_name": {"in": ["A100 SXM4", "RTX 4090"]}})));
        assert!(!ok(json!({"gpu_name": {"notin": ["RTX 4090"]}})));
        assert!(ok(
            json!({"rentable": {"eq": true}, "verified": {"eq": "true"}})
        ));
        assert!(ok(json!({"datacenter": {"eq": false}})));
        assert!(ok(json!({"geolocation": {"in": ["US", "CA"]}})));
        assert!(!ok(json!({"geolocation": {"eq": "CA"}})));
        assert!(ok(json!({"static_ip": {"eq": null}})));
        assert!(
            ok(json!({"no_such_column": {"eq": 3}})),
            "unknown columns are ignored"
        );
    }

    #[test]
    fn bad_queries_are_refused() {
        assert!(parse(json!({"num_gpus": 1}).as_object().unwrap()).is_err());
        assert!(parse(json!({"num_gpus": {"like": 1}}).as_object().unwrap()).is_err());
        assert!(parse(json!({"type": "free"}).as_object().unwrap()).is_err());
    }
}
