//! Tenant and API key management: tenants for cluster-admin keys; a tenant's keys (list, issue,
//! revoke, rotate) for its tenant-admin keys and for cluster-admin keys. Also this process's log
//! filter, for cluster-admin keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, AppState, Auth};
use crate::app::{App, IssuedKey, KeyRequest};
use crate::error::Error;
use crate::metadata::{ApiKey, Scope, Tenant};

/// Body of `POST /v1/tenants`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique name: 1-64 of a-z, 0-9, '-', '_'.
    pub name: String,
}

/// The longest `expires_in_secs` a key may ask for: 100 years.
const MAX_KEY_LIFETIME_SECS: i64 = 100 * 366 * 24 * 3600;

/// Body of `POST /v1/tenants/{tenant}/keys`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label for the key (default `key`).
    #[serde(default)]
    pub name: Option<String>,
    /// What the key may do (default `read-write`).
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Older form of `"scope": "cluster-admin"`.
    #[serde(default)]
    pub admin: bool,
    /// When the key stops working (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Seconds from now after which the key stops working (instead of `expires_at`), at most
    /// 100 years.
    #[serde(default)]
    #[schema(maximum = 3_162_240_000_u64)]
    pub expires_in_secs: Option<u64>,
}

impl CreateKey {
    fn request(self) -> Result<KeyRequest, Error> {
        let scope = match (self.scope, self.admin) {
            (Some(s), false) => s,
            (None, true) => Scope::ClusterAdmin,
            (None, false) => Scope::ReadWrite,
            (Some(_), true) => {
                return Err(Error::invalid(
                    "admin",
                    "give either scope or admin, not both",
                ))
            }
        };
        let expires_at = match (self.expires_at, self.expires_in_secs) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "expires_at",
                    "give either expires_at or expires_in_secs, not both",
                ))
            }
            (Some(at), None) => Some(
                chrono::DateTime::parse_from_rfc3339(&at)
                    .map_err(|e| {
                        Error::invalid("expires_at", format!("not an RFC 3339 time: {e}"))
                    })?
                    .with_timezone(&chrono::Utc),
            ),
            (None, Some(secs)) => Some(
                i64::try_from(secs)
                    .ok()
                    .filter(|s| *s <= MAX_KEY_LIFETIME_SECS)
                    .and_then(chrono::Duration::try_seconds)
                    .and_then(|d| chrono::Utc::now().checked_add_signed(d))
                    .ok_or_else(|| {
                        Error::invalid(
                            "expires_in_secs",
                            format!("must be at most {MAX_KEY_LIFETIME_SECS} (100 years)"),
                        )
                    })?,
            ),
            (None, None) => None,
        };
        Ok(KeyRequest {
            name: self.name.unwrap_or_else(|| "key".into()),
            scope,
            expires_at,
        })
    }
}

/// Body of `POST /v1/tenants/{tenant}/keys/{id}/rotate`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// Seconds the old key keeps working, so clients can switch (default 0: revoked at once;
    /// at most 30 days).
    #[serde(default)]
    #[schema(maximum = 2_592_000_u64)]
    pub grace_secs: u64,
}

/// Creates a tenant.
#[utoipa::path(post, path = "/v1/tenants", request_body = CreateTenant,
    responses((status = 201, body = Tenant), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_tenant(
    State(app): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<(StatusCode, ApiJson<Tenant>), ApiError> {
    Ok((
        StatusCode::CREATED,
        ApiJson(app.create_tenant(&p, &body.name).await?),
    ))
}

/// Deletes a tenant with all its collections, documents, points, originals, cached results
/// and keys.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn delete_tenant(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_tenant(&p, &tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists tenants.
#[utoipa::path(get, path = "/v1/tenants", responses((status = 200, body = Vec<Tenant>)))]
pub async fn list_tenants(
    State(app): State<AppState>,
    Auth(p): Auth,
) -> Result<ApiJson<Vec<Tenant>>, ApiError> {
    Ok(ApiJson(app.list_tenants(&p).await?))
}

/// Issues an API key for a tenant; the key is shown only in this response.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/keys", request_body = CreateKey,
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 201, body = IssuedKey), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn issue_key(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, ApiJson<IssuedKey>), ApiError> {
    let request = body.request()?;
    Ok((
        StatusCode::CREATED,
        ApiJson(app.issue_key(&p, &tenant, request).await?),
    ))
}

/// Lists a tenant's keys, revoked ones included; never the keys themselves.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/keys",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Vec<ApiKey>), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_keys(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(tenant): Path<String>,
) -> Result<ApiJson<Vec<ApiKey>>, ApiError> {
    Ok(ApiJson(app.list_keys(&p, &tenant).await?))
}

/// Revokes a key; it stops working within `auth.key_cache_secs`.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/keys/{id}",
    params(("tenant" = String, Path, description = "Tenant name"), ("id" = String, Path, description = "Key id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    app.revoke_key(&p, &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a key by a new one with the same name, scope and expiry; the old one keeps working
/// for `grace_secs`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/keys/{id}/rotate", request_body = RotateKey,
    params(("tenant" = String, Path, description = "Tenant name"), ("id" = String, Path, description = "Key id")),
    responses((status = 201, body = IssuedKey), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate_key(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path((tenant, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, ApiJson<IssuedKey>), ApiError> {
    // The body is optional: none means no grace.
    let body: RotateKey = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKey::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Error::invalid("body", e.to_string()))?
    };
    let grace = std::time::Duration::from_secs(body.grace_secs);
    Ok((
        StatusCode::CREATED,
        ApiJson(app.rotate_key(&p, &tenant, &id, grace).await?),
    ))
}

/// Body of `PUT /v1/admin/log-filter`, and the answer of both log-filter routes.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogFilter {
    /// A filter in `tracing-subscriber` EnvFilter syntax, for example `info,ragplane=debug`.
    #[schema(min_length = 1, max_length = 1024)]
    pub filter: String,
}

/// The log filter in force in this process.
#[utoipa::path(get, path = "/v1/admin/log-filter",
    responses((status = 200, body = LogFilter), (status = 403, body = ErrorBody)))]
pub async fn get_log_filter(Auth(p): Auth) -> Result<ApiJson<LogFilter>, ApiError> {
    App::require(&p, Scope::ClusterAdmin)?;
    Ok(ApiJson(LogFilter {
        filter: ragplane_telemetry::filter().unwrap_or_default(),
    }))
}

/// Changes the log filter of this process, at once and until the next change or restart. Each
/// instance has its own: behind a load balancer, change every pod (or send them SIGHUP after
/// changing `telemetry.log_filter`).
#[utoipa::path(put, path = "/v1/admin/log-filter", request_body = LogFilter,
    responses((status = 200, body = LogFilter), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn set_log_filter(
    Auth(p): Auth,
    ApiJson(body): ApiJson<LogFilter>,
) -> Result<ApiJson<LogFilter>, ApiError> {
    App::require(&p, Scope::ClusterAdmin)?;
    if body.filter.trim().is_empty() || body.filter.len() > 1024 {
        return Err(Error::invalid("filter", "must be 1 to 1024 characters").into());
    }
    ragplane_telemetry::set_filter(&body.filter).map_err(|e| match e {
        ragplane_telemetry::FilterError::Invalid(_) => Error::invalid("filter", e.to_string()),
        other => Error::Internal(other.to_string()),
    })?;
    Ok(ApiJson(body))
}

/// The last error responses this process sent (at most 50, newest first), for the console's
/// health page. Each instance keeps its own.
#[utoipa::path(get, path = "/v1/admin/errors",
    responses((status = 200, body = Vec<super::recent_errors::RecentError>), (status = 403, body = ErrorBody)))]
pub async fn recent_errors(
    Auth(p): Auth,
) -> Result<ApiJson<Vec<super::recent_errors::RecentError>>, ApiError> {
    App::require(&p, Scope::ClusterAdmin)?;
    Ok(ApiJson(super::recent_errors::newest_first()))
}
