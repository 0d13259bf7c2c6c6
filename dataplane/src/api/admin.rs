//! Tenant and API key management (admin keys only).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, AppState, Auth};
use crate::app::IssuedKey;
use crate::metadata::Tenant;

/// Body of `POST /v1/tenants`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique name: 1-64 of a-z, 0-9, '-', '_'.
    pub name: String,
}

/// Body of `POST /v1/tenants/{tenant}/keys`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label for the key.
    #[serde(default)]
    pub name: Option<String>,
    /// Whether the key may manage tenants and keys.
    #[serde(default)]
    pub admin: bool,
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
    responses((status = 201, body = IssuedKey), (status = 404, body = ErrorBody)))]
pub async fn issue_key(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, ApiJson<IssuedKey>), ApiError> {
    let name = body.name.unwrap_or_else(|| "key".into());
    Ok((
        StatusCode::CREATED,
        ApiJson(app.issue_key(&p, &tenant, &name, body.admin).await?),
    ))
}
