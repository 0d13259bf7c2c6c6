//! Retrieval (`/v1/search`) and retrieval plus generation (`/v1/query`).

use axum::extract::State;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, AppState, Auth};
use crate::app::{QueryAnswer, SearchHit, SearchRequest};

/// Result of `/v1/search`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResponse {
    /// Best chunks first.
    pub hits: Vec<SearchHit>,
}

/// Returns the chunks nearest to the query.
#[utoipa::path(post, path = "/v1/search", request_body = SearchRequest,
    responses((status = 200, body = SearchResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn search(
    State(app): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<ApiJson<SearchResponse>, ApiError> {
    Ok(ApiJson(SearchResponse {
        hits: app.search(&p, &req).await?,
    }))
}

/// Answers the query from retrieved sources, citing them. Without a configured generator,
/// `answer` is null, `generation` is `not_configured`, and the sources are returned.
#[utoipa::path(post, path = "/v1/query", request_body = SearchRequest,
    responses((status = 200, body = QueryAnswer), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn query(
    State(app): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<ApiJson<QueryAnswer>, ApiError> {
    Ok(ApiJson(app.query(&p, &req).await?))
}
