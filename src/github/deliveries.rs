//! The App's webhook deliveries (App JWT): `GET /app/hook/deliveries`, one
//! page of up to 100 attempts, newest first, with the cursor of the next
//! page read from its `Link` header (kept as a cursor, not a URL, so the
//! engine can store where a scan got to), and
//! `POST /app/hook/deliveries/{id}/attempts`, a redelivery. The list is
//! not filtered with `status=failure`: that filter selects status codes
//! 400–599, and a delivery that got no answer at all (rigger down, a
//! timeout) has status code 0 — the very deliveries that need redelivering.

use octocrab::Page;
use reqwest::Method;
use serde_json::Value;

use super::client::GithubClient;
use super::http::{Auth, Failed};
use crate::engine::ports::{GithubError, HookDelivery, HookDeliveryPage};

/// Deliveries per page: GitHub's most.
pub const PER_PAGE: usize = 100;

/// A cursor as GitHub hands them out (`v1_…`): anything else is not sent.
fn cursor_ok(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 200
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.~".contains(&b))
}

/// The `cursor` query value of a `Link: rel="next"` URL.
fn cursor_of(next: &str) -> Option<String> {
    let query = next.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("cursor="))
        .filter(|c| cursor_ok(c))
        .map(str::to_string)
}

fn delivery(v: &Value) -> Option<HookDelivery> {
    let at = v.get("delivered_at")?.as_str()?;
    Some(HookDelivery {
        id: v.get("id")?.as_i64()?,
        guid: v.get("guid")?.as_str()?.to_string(),
        event: v.get("event")?.as_str()?.to_string(),
        ok: v.get("status").and_then(Value::as_str) == Some("OK"),
        redelivery: v
            .get("redelivery")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        delivered_at_ms: chrono::DateTime::parse_from_rfc3339(at)
            .ok()?
            .timestamp_millis(),
    })
}

impl GithubClient {
    /// One page of the App's deliveries from `cursor` (`None`: the newest).
    pub async fn list_hook_deliveries(
        &self,
        cursor: Option<&str>,
    ) -> Result<HookDeliveryPage, GithubError> {
        let mut path = format!("/app/hook/deliveries?per_page={PER_PAGE}");
        if let Some(c) = cursor {
            if !cursor_ok(c) {
                return Err(GithubError::Refused(format!(
                    "a webhook-deliveries cursor GitHub would not have given: {}",
                    crate::text::for_log(c)
                )));
            }
            path.push_str(&format!("&cursor={c}"));
        }
        let jwt = self.auth().jwt()?;
        let Some(mut page) = self
            .auth()
            .api()
            .octo_get::<Page<Value>>(Auth::Bearer(&jwt), &path)
            .await
            .map_err(Failed::into_error)?
        else {
            return Ok(HookDeliveryPage::default());
        };
        let next_cursor = page.next.as_ref().and_then(|u| cursor_of(&u.to_string()));
        Ok(HookDeliveryPage {
            // An item without the fields rigger reads is skipped, not fatal.
            deliveries: page.take_items().iter().filter_map(delivery).collect(),
            next_cursor,
        })
    }

    /// Ask GitHub to deliver one attempt's event again.
    pub async fn redeliver_hook_delivery(&self, delivery_id: i64) -> Result<(), GithubError> {
        let jwt = self.auth().jwt()?;
        let answer = self
            .auth()
            .api()
            .send(
                Method::POST,
                &format!("/app/hook/deliveries/{delivery_id}/attempts"),
                Auth::Bearer(&jwt),
                None,
            )
            .await?;
        answer.json().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_cursor_is_read_from_the_link() {
        assert_eq!(
            cursor_of(
                "https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12077215967"
            ),
            Some("v1_12077215967".into())
        );
        assert_eq!(
            cursor_of("https://api.github.com/app/hook/deliveries?per_page=2"),
            None
        );
        assert_eq!(
            cursor_of("https://x/app/hook/deliveries?cursor=a%26b"),
            None
        );
        assert!(!cursor_ok("v1_1&status=failure"));
    }
}
