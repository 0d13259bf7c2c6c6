//! The web console's sign-ins. Signing in with an API key stores a session under the hash of a
//! random token, which only the browser's cookie holds. A session acts as its key: revoking or
//! expiring the key ends it, and the tenant's rate limit applies as to the key. Each session
//! has a second random token that its state-changing requests must carry (CSRF protection).

use chrono::{DateTime, Utc};

use super::{hash_key, App, Principal};
use crate::error::{Error, Result};
use crate::metadata::{parse_rfc3339, ConsoleSession};

/// A new console session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The cookie's value; not stored anywhere else.
    pub token: String,
    /// The token state-changing requests carry in `x-csrf-token`.
    pub csrf_token: String,
    /// Who signed in.
    pub principal: Principal,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
}

/// A random token of 43 alphanumeric characters (over 250 bits).
fn random_token() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 43)
}

impl App {
    /// Signs in with `key` from `client`: the key is checked as a bearer key would be (failed
    /// attempts count towards blocking the address), then a session is stored. Expired
    /// sessions are purged on the way.
    pub async fn sign_in(&self, key: &str, client: Option<std::net::IpAddr>) -> Result<SignedIn> {
        if self.config.auth.disabled {
            return Err(Error::invalid(
                "key",
                "authentication is off (auth.disabled): the console needs no sign-in",
            ));
        }
        let principal = self.authenticate_from(Some(key), client).await?;
        let now = Utc::now();
        let now_text = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let minutes = i64::try_from(self.config.console.session_minutes).unwrap_or(i64::MAX);
        let expires_at = now + chrono::Duration::minutes(minutes);
        let purged = self.metadata.purge_console_sessions(&now_text).await?;
        if purged > 0 {
            tracing::debug!(purged, "purged expired console sessions");
        }
        let token = random_token();
        let csrf_token = random_token();
        self.metadata
            .create_console_session(&ConsoleSession {
                token_hash: hash_key(&token),
                key_hash: hash_key(key),
                csrf_token: csrf_token.clone(),
                created_at: now_text,
                expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
            .await?;
        Ok(SignedIn {
            token,
            csrf_token,
            principal,
            expires_at,
        })
    }

    /// The principal of the console session whose cookie holds `token`, and the session's CSRF
    /// token: 401 when the session is unknown, ended or expired, or its key no longer works.
    pub async fn session(
        &self,
        token: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<(Principal, String)> {
        self.guarded(client, async {
            let ended = || {
                Error::Unauthorized(
                    "the console session has ended or expired; sign in again".into(),
                )
            };
            let s = self
                .metadata
                .console_session(&hash_key(token))
                .await?
                .ok_or_else(ended)?;
            if parse_rfc3339(&s.expires_at).is_none_or(|t| t <= Utc::now()) {
                return Err(ended());
            }
            let principal = self.resolve_hash(s.key_hash).await?;
            Ok((principal, s.csrf_token))
        })
        .await
    }

    /// Ends the console session whose cookie holds `token` (nothing happens if there is none).
    pub async fn sign_out(&self, token: &str) -> Result<()> {
        Ok(self
            .metadata
            .delete_console_session(&hash_key(token))
            .await?)
    }
}
