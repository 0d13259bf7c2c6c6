//! `/ui/session`: sign in with an API key (the session cookie is set: HttpOnly,
//! SameSite=Strict, expiring with the session), read the current session, sign out.
//!
//! Sign-in takes JSON only, which a page on another site cannot send without a CORS preflight
//! that this server does not grant, and a request a browser marks as cross-site is refused
//! outright; every other state-changing request carries the session's CSRF token.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{check_csrf, session_cookie, COOKIE};
use crate::api::error::ApiError;
use crate::api::{ApiJson, AppState, ClientAddr};
use crate::app::{App, Principal};
use crate::error::Error;
use crate::metadata::Scope;

/// Body of `POST /ui/session`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The API key.
    pub key: String,
}

/// Who the console acts as.
#[derive(Debug, Serialize)]
pub struct SessionInfo {
    /// Tenant name.
    pub tenant: String,
    /// The key's scope.
    pub scope: Scope,
    /// The key's id (absent when authentication is off).
    pub key_id: Option<String>,
    /// The token to send in `x-csrf-token` (absent when authentication is off).
    pub csrf_token: Option<String>,
    /// When the session ends (RFC 3339; only in the sign-in answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Authentication is off: no sign-in is needed or possible.
    pub auth_disabled: bool,
}

async fn info(
    app: &App,
    p: &Principal,
    csrf_token: Option<String>,
    expires_at: Option<String>,
) -> Result<SessionInfo, ApiError> {
    let tenant = app
        .metadata
        .tenant_by_id(&p.tenant_id)
        .await
        .map_err(Error::from)?
        .map_or_else(|| p.tenant_id.clone(), |t| t.name);
    Ok(SessionInfo {
        tenant,
        scope: p.scope,
        key_id: p.key_id.clone(),
        csrf_token,
        expires_at,
        auth_disabled: app.config.auth.disabled,
    })
}

/// Whether the request's `Host` names this machine's loopback interface.
fn loopback_host(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
}

/// The `Set-Cookie` value of session `token`, lasting `max_age` seconds (0 deletes it).
fn cookie(
    app: &App,
    headers: &HeaderMap,
    token: &str,
    max_age: i64,
) -> Result<HeaderValue, ApiError> {
    let secure = app
        .config
        .console
        .secure_cookie
        .unwrap_or_else(|| !loopback_host(headers));
    let value = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&value)
        .map_err(|e| ApiError(Error::Internal(format!("session cookie: {e}"))))
}

/// Refuses a request the browser says came from another site.
fn same_site(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("cross-site") => Err(ApiError(Error::Forbidden(
            "console sign-in from another site is refused".into(),
        ))),
        _ => Ok(()),
    }
}

/// `POST /ui/session`: signs in with `{"key": …}`.
pub async fn sign_in(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    same_site(&headers)?;
    let key = body.key.trim();
    if key.is_empty() {
        return Err(Error::invalid("key", "enter an API key").into());
    }
    let s = app.sign_in(key, client).await?;
    let max_age = (s.expires_at - chrono::Utc::now()).num_seconds().max(0);
    let set = cookie(&app, &headers, &s.token, max_age)?;
    let expires = s
        .expires_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = info(&app, &s.principal, Some(s.csrf_token), Some(expires)).await?;
    let mut resp = (StatusCode::CREATED, ApiJson(body)).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /ui/session`: who the session acts as, and its CSRF token; 401 when signed out.
pub async fn current(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (p, csrf) = if app.config.auth.disabled {
        (app.authenticate(None).await?, None)
    } else {
        let token = session_cookie(&headers)
            .ok_or_else(|| Error::Unauthorized("not signed in to the console".into()))?;
        let (p, csrf) = app.session(token, client).await?;
        (p, Some(csrf))
    };
    let mut resp = ApiJson(info(&app, &p, csrf, None).await?).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `DELETE /ui/session`: signs out (with the session's CSRF token) and deletes the cookie.
pub async fn sign_out(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = session_cookie(&headers) {
        match app.session(token, client).await {
            Ok((_, csrf)) => {
                check_csrf(&headers, &csrf)?;
                app.sign_out(token).await?;
            }
            // Already ended: deleting the cookie is all that is left to do.
            Err(Error::Unauthorized(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie(&app, &headers, "", 0)?);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &'static str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_static(h));
        m
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(loopback_host(&host("127.0.0.1:8080")));
        assert!(loopback_host(&host("localhost")));
        assert!(loopback_host(&host("[::1]:80")));
        assert!(!loopback_host(&host("rag.example.com")));
        assert!(!loopback_host(&host("10.0.0.1:8080")));
    }
}
