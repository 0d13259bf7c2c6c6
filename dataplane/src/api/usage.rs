//! `GET /v1/usage`: the caller's tenant's queries and LLM tokens over the last hour or day, per
//! minute or hour, and per key and collection.

use axum::extract::{Query, State};
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, AppState, Auth};
use crate::app::usage::{UsageReport, UsageWindow};

/// Query string of `GET /v1/usage`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// `hour` (per minute, the default) or `day` (per hour).
    pub window: Option<UsageWindow>,
}

/// The tenant's usage: searches, queries and chat completions, and the LLM tokens they used,
/// per minute over the last hour or per hour over the last day, with totals per key and per
/// collection. Other instances' counts appear within `console.usage_flush_secs`.
#[utoipa::path(get, path = "/v1/usage", params(UsageParams),
    responses((status = 200, body = UsageReport), (status = 422, body = ErrorBody)))]
pub async fn usage(
    State(app): State<AppState>,
    Auth(p): Auth,
    params: Result<Query<UsageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<ApiJson<UsageReport>, ApiError> {
    let Query(params) = params?;
    let report = app
        .usage_report(&p, params.window.unwrap_or(UsageWindow::Hour))
        .await?;
    Ok(ApiJson(report))
}
