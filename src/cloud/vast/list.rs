//! Listing instances: every page of `GET /api/v1/instances/` (optionally
//! narrowed by `select_filters`), each taking the listing's slot in the rate
//! limit, with other tools' unreadable rows skipped rather than failing it.

use reqwest::Method;
use serde_json::Value;

use super::client::{Repeat, VastClient};
use super::wire::parse_instance;
use crate::cloud::{ProviderError, ProviderInstance};

impl VastClient {
    /// Every page of `GET /api/v1/instances/` (with `select_filters` when
    /// given), keeping the instances whose label starts with `label_prefix`.
    /// Each page takes the listing's slot in the rate limit (`call_with`).
    pub(super) async fn list_where(
        &self,
        select_filters: Option<Value>,
        label_prefix: &str,
    ) -> Result<Vec<ProviderInstance>, ProviderError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = vec![
                ("limit", PAGE.to_string()),
                ("order_by", r#"[{"col":"id","dir":"asc"}]"#.to_string()),
            ];
            if let Some(f) = &select_filters {
                q.push(("select_filters", f.to_string()));
            }
            if let Some(t) = &token {
                q.push(("after_token", t.clone()));
            }
            let v = self
                .call(Method::GET, "/api/v1/instances/", &q, None, Repeat::Safe)
                .await?;
            let rows = v
                .get("instances")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let (mine, skipped) = read_rows(rows, label_prefix)?;
            out.extend(mine);
            self.skipped_rows(skipped);
            match v.get("next_token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
        Err(ProviderError::Transient(format!(
            "Vast.ai kept paginating past {MAX_PAGES} pages of instances"
        )))
    }

    /// Count rows of other tools' instances that could not be read; warn
    /// the first time only (every listing would repeat it).
    fn skipped_rows(&self, n: u64) {
        if n == 0 {
            return;
        }
        let before = self
            .unreadable
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if before == 0 {
            tracing::warn!(
                skipped = n,
                "Vast.ai listed instances rigger cannot read and that are not rigger's: skipped \
                 (warned once; the count is in `unreadable_rows`)"
            );
        }
    }

    /// Rows of other tools' instances skipped as unreadable, in all listings so far.
    pub fn unreadable_rows(&self) -> u64 {
        self.unreadable.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A page's rows: the instances labelled `label_prefix…`, and how many
/// unreadable rows were skipped. An unreadable row whose label is ours still
/// fails the listing: skipping it would make a live machine look gone.
fn read_rows(
    rows: Vec<Value>,
    label_prefix: &str,
) -> Result<(Vec<ProviderInstance>, u64), ProviderError> {
    let mut mine = Vec::new();
    let mut skipped = 0;
    for row in rows {
        let label = row.get("label").and_then(Value::as_str).map(str::to_string);
        match parse_instance(row) {
            Ok(i) if i.label.starts_with(label_prefix) => mine.push(i),
            Ok(_) => {}
            Err(e) if label.is_some_and(|l| l.starts_with(label_prefix)) => return Err(e),
            Err(_) => skipped += 1,
        }
    }
    Ok((mine, skipped))
}

/// Pages of `GET /api/v1/instances/` hold at most this many.
const PAGE: u32 = 25;
/// A bound on pages, so a server that never ends its pages cannot hang us.
const MAX_PAGES: usize = 400;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_unreadable_row_of_another_tool_is_skipped_and_one_of_ours_fails() {
        let good = json!({"id": 1, "label": "rigger:c:1:a", "actual_status": "running"});
        let foreign = json!({"id": 2, "label": "their-job", "num_gpus": "two"});
        let nameless = json!({"id": "x"});
        let (mine, skipped) =
            read_rows(vec![good.clone(), foreign, nameless], "rigger:c:").unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].id, "1");
        assert_eq!(skipped, 2);
        let ours_broken = json!({"id": 3, "label": "rigger:c:2:b", "num_gpus": "two"});
        assert!(matches!(
            read_rows(vec![good, ours_broken], "rigger:c:"),
            Err(ProviderError::Transient(_))
        ));
    }
}
