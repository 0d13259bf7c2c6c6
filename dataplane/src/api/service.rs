//! Service endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

use super::error::ApiError;
use super::AppState;

/// Liveness: the process is serving HTTP.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the model is loaded (the server only listens after that) and the stores answer.
pub async fn readyz(State(app): State<AppState>) -> Result<&'static str, ApiError> {
    app.ready().await.map_err(|e| {
        ApiError(crate::error::Error::Unavailable {
            message: format!("not ready: {e}"),
            retry_after_secs: 2,
        })
    })?;
    Ok("ready")
}

/// OpenMetrics text exposition (with trace exemplars on the latency histograms when traces
/// are on).
pub async fn metrics() -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            ragplane_telemetry::metrics::CONTENT_TYPE,
        )],
        crate::metrics::render(),
    )
}

/// The OpenAPI 3 document.
pub async fn openapi_json() -> impl IntoResponse {
    axum::Json(super::openapi())
}
