//! GitHub App authentication: the App's JWT (RS256, signed with its private
//! key) for app-level calls, and installation tokens, cached until shortly
//! before they expire, for everything else. Time comes from the injected
//! clock, so expiry is tested without waiting.
//!
//! A token GitHub no longer accepts (401: revoked, or the installation's
//! tokens were reset) is dropped from the cache and the call is made once
//! more with a freshly minted one: the one retry cannot loop, and without
//! it every call of the installation would fail until the cached token's
//! hour was up. Tokens are opaque: GitHub's `ghs_` tokens are no fixed
//! length (the stateless kind runs to some 520 characters).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::http::{Answer, Api, Auth, Failed};
use crate::engine::ports::{Clock, GithubError};
use crate::settings::Secret;

/// A token this close to its expiry is replaced before use.
pub const REFRESH_BEFORE_MS: i64 = 5 * 60 * 1000;

#[derive(Serialize, Deserialize)]
pub struct Claims {
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

pub struct AppAuth {
    app_id: u64,
    key: EncodingKey,
    api: Api,
    clock: Arc<dyn Clock>,
    tokens: Mutex<HashMap<i64, (Secret, i64)>>,
    /// Installation tokens minted (for tests and metrics).
    minted: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for AppAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppAuth")
            .field("app_id", &self.app_id)
            .finish()
    }
}

impl AppAuth {
    /// `private_key_pem`: the App's key as GitHub hands it out (PKCS#1 or PKCS#8 PEM).
    pub fn new(
        app_id: u64,
        private_key_pem: &Secret,
        api: Api,
        clock: Arc<dyn Clock>,
    ) -> Result<AppAuth, GithubError> {
        let key = EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes()).map_err(|_| {
            // The key's contents never go into the message.
            GithubError::Refused(
                "the GitHub App private key is not an RSA key in PEM form: download a new one \
                 from the App's settings page"
                    .into(),
            )
        })?;
        Ok(AppAuth {
            app_id,
            key,
            api,
            clock,
            tokens: Mutex::new(HashMap::new()),
            minted: Default::default(),
        })
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The injected clock's time (for the client's caches).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A JWT for app-level calls: issued 60 s in the past (clock drift),
    /// expiring in 9 minutes (GitHub allows at most 10).
    pub fn jwt(&self) -> Result<Secret, GithubError> {
        let now = self.clock.now_ms() / 1000;
        let claims = Claims {
            iat: now - 60,
            exp: now + 9 * 60,
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(Secret::new)
            .map_err(|e| GithubError::Refused(format!("cannot sign the App JWT: {e}")))
    }

    /// How many installation tokens were minted so far.
    pub fn tokens_minted(&self) -> u64 {
        self.minted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A token for an installation, from the cache while it has more than
    /// five minutes left.
    pub async fn installation_token(&self, installation_id: i64) -> Result<Secret, GithubError> {
        let now = self.clock.now_ms();
        if let Some((token, expires)) = self.cache().get(&installation_id)
            && *expires - now > REFRESH_BEFORE_MS
        {
            return Ok(token.clone());
        }
        #[derive(Deserialize)]
        struct Minted {
            token: String,
            expires_at: String,
        }
        let jwt = self.jwt()?;
        let v = self
            .api
            .send(
                reqwest::Method::POST,
                &format!("/app/installations/{installation_id}/access_tokens"),
                Auth::Bearer(&jwt),
                Some(serde_json::json!({})),
            )
            .await?
            .json()?;
        let m: Minted = serde_json::from_value(v).map_err(|e| {
            GithubError::Transient(format!("unreadable installation token answer: {e}"))
        })?;
        let expires = chrono::DateTime::parse_from_rfc3339(&m.expires_at)
            .map(|t| t.timestamp_millis())
            // An unreadable expiry: assume GitHub's one hour.
            .unwrap_or(now + 3_600_000);
        let token = Secret::new(m.token);
        self.minted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.cache()
            .insert(installation_id, (token.clone(), expires));
        Ok(token)
    }

    /// Drop an installation's cached token (the App was uninstalled or
    /// suspended there): the next call mints a new one, or fails.
    pub fn forget(&self, installation_id: i64) {
        self.cache().remove(&installation_id);
    }

    /// Forget an installation's token if it is still `token` (a call that
    /// raced this one may have cached a fresh one already).
    fn drop_token(&self, installation_id: i64, token: &Secret) {
        let mut cache = self.cache();
        if cache
            .get(&installation_id)
            .is_some_and(|(t, _)| t.expose() == token.expose())
        {
            cache.remove(&installation_id);
            self.api
                .stats
                .tokens_dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                installation_id,
                "GitHub no longer accepts the installation token: minting a new one"
            );
        }
    }

    /// A request with the installation's token, on its rate-limit budget; a
    /// 401 drops the token and the request is made once more with a new one.
    pub async fn send_as(
        &self,
        installation_id: i64,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Answer, GithubError> {
        self.send_accepting(installation_id, method, path, body, super::http::ACCEPT)
            .await
    }

    /// As [`AppAuth::send_as`], asking for `accept` (one of GitHub's custom
    /// media types, say).
    pub async fn send_accepting(
        &self,
        installation_id: i64,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        accept: &str,
    ) -> Result<Answer, GithubError> {
        let mut last = None;
        for _ in 0..2 {
            let token = self.installation_token(installation_id).await?;
            match self
                .api
                .try_send(
                    method.clone(),
                    path,
                    Auth::Installation(installation_id, &token),
                    body.clone(),
                    accept,
                )
                .await
            {
                Err(Failed::Unauthorized(e)) => {
                    self.drop_token(installation_id, &token);
                    last = Some(e);
                }
                other => return other.map_err(Failed::into_error),
            }
        }
        Err(last.unwrap_or_else(|| GithubError::Refused(format!("{method} {path}: 401"))))
    }

    /// A GET through octocrab with the installation's token (see
    /// [`Api::octo_get`]); a 401 as in [`AppAuth::send_as`].
    pub async fn octo_get_as<T: octocrab::FromResponse>(
        &self,
        installation_id: i64,
        path: &str,
    ) -> Result<Option<T>, GithubError> {
        let mut last = None;
        for _ in 0..2 {
            let token = self.installation_token(installation_id).await?;
            match self
                .api
                .octo_get(Auth::Installation(installation_id, &token), path)
                .await
            {
                Err(Failed::Unauthorized(e)) => {
                    self.drop_token(installation_id, &token);
                    last = Some(e);
                }
                other => return other.map_err(Failed::into_error),
            }
        }
        Err(last.unwrap_or_else(|| GithubError::Refused(format!("GET {path}: 401"))))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Secret, i64)>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The installation that covers a repository (`owner/name`).
    pub async fn installation_for(&self, repo: &str) -> Result<i64, GithubError> {
        let jwt = self.jwt()?;
        let v = self
            .api
            .send(
                reqwest::Method::GET,
                &format!("/repos/{repo}/installation"),
                Auth::Bearer(&jwt),
                None,
            )
            .await?
            .json()?;
        v.get("id")
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| GithubError::Transient("installation answer without an id".into()))
    }

    /// Every installation of the App: `(id, account login)`.
    pub async fn installations(&self) -> Result<Vec<(i64, String)>, GithubError> {
        let jwt = self.jwt()?;
        let mut out = Vec::new();
        for page in 1..=50 {
            let v = self
                .api
                .send(
                    reqwest::Method::GET,
                    &format!("/app/installations?per_page=100&page={page}"),
                    Auth::Bearer(&jwt),
                    None,
                )
                .await?
                .json()?;
            let list = v.as_array().cloned().unwrap_or_default();
            let n = list.len();
            out.extend(list.iter().filter_map(|i| {
                Some((
                    i.get("id")?.as_i64()?,
                    i.pointer("/account/login")?.as_str()?.to_string(),
                ))
            }));
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }
}
