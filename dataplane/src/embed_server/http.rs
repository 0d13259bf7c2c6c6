//! The embed-server's HTTP surface: OpenAI's `/v1/embeddings`, the native `/v1/embed`, and the
//! service endpoints. Errors go through [`crate::api::error`], like the main API's.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use ragplane_config::EmbedServerConfig;
use serde::{Deserialize, Serialize};

use super::ServerState;
use crate::api::error::ApiError;
use crate::api::ApiJson;
use crate::embed::remote::{
    encode_vectors, COUNT_HEADER, DIMENSION_HEADER, NATIVE_PATH, PRIORITY_HEADER,
};
use crate::embed::Priority;
use crate::error::Error;

type AppState = Arc<ServerState>;

pub(super) fn router(state: AppState, cfg: &EmbedServerConfig) -> Router {
    let routes = Router::new()
        .route("/v1/embeddings", post(openai_embeddings))
        .route(NATIVE_PATH, post(native_embed))
        .route("/v1/models", get(models))
        .route("/info", get(info))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::api::service_metrics))
        .method_not_allowed_fallback(crate::api::method_not_allowed)
        .fallback(crate::api::not_found)
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            crate::api::TimeLimit {
                limit: Duration::from_secs(cfg.request_timeout_secs),
                setting: "embed_server.request_timeout_secs",
            },
            crate::api::time_limit,
        ));
    crate::api::instrument(routes).with_state(state)
}

/// Checks the number of inputs against the limits.
fn check_inputs(state: &ServerState, field: &str, n: usize) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError(Error::invalid(
            field,
            "must hold at least one text",
        )));
    }
    if n > state.max_inputs {
        return Err(ApiError(Error::TooLarge(format!(
            "{n} texts in {field}; at most {} per request (embed_server.max_inputs_per_request)",
            state.max_inputs
        ))));
    }
    Ok(())
}

/// OpenAI's `input`: one string or an array of strings (token arrays are not accepted).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
    #[allow(dead_code)] // Only matched, to answer with a clear message.
    Other(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct OpenAiRequest {
    input: Input,
    #[serde(default)]
    #[allow(dead_code)] // Accepted for compatibility; this server serves one model.
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    #[allow(dead_code)] // Accepted for compatibility.
    user: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct OpenAiEmbedding {
    object: &'static str,
    index: usize,
    embedding: EmbeddingValue,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Serialize)]
struct OpenAiResponse {
    object: &'static str,
    data: Vec<OpenAiEmbedding>,
    model: String,
    usage: Usage,
}

/// The request's class from the priority header; without one it is interactive.
fn priority(headers: &HeaderMap) -> Priority {
    headers
        .get(PRIORITY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map_or(Priority::Interactive, Priority::from_wire)
}

/// `POST /v1/embeddings`, OpenAI's wire format.
async fn openai_embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<OpenAiRequest>,
) -> Result<Response, ApiError> {
    let texts = match req.input {
        Input::One(s) => vec![s],
        Input::Many(v) => v,
        Input::Other(_) => {
            return Err(ApiError(Error::invalid(
                "input",
                "must be a string or an array of strings (token arrays are not supported)",
            )))
        }
    };
    check_inputs(&state, "input", texts.len())?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError(Error::invalid(
                "encoding_format",
                format!("must be \"float\" or \"base64\", got {other:?}"),
            )))
        }
    };
    if let Some(d) = req.dimensions {
        if d != state.dimension {
            return Err(ApiError(Error::invalid(
                "dimensions",
                format!("this model only returns {} dimensions", state.dimension),
            )));
        }
    }
    let out = state
        .embedder
        .embed_counted(texts, priority(&headers))
        .await
        .map_err(|e| ApiError(e.into()))?;
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| OpenAiEmbedding {
            object: "embedding",
            index,
            embedding: if base64 {
                EmbeddingValue::Base64(
                    base64::engine::general_purpose::STANDARD.encode(encode_vectors(&[v])),
                )
            } else {
                EmbeddingValue::Float(v)
            },
        })
        .collect();
    Ok(axum::Json(OpenAiResponse {
        object: "list",
        data,
        model: state.model.clone(),
        usage: Usage {
            prompt_tokens: out.tokens,
            total_tokens: out.tokens,
        },
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeRequest {
    inputs: Vec<String>,
}

/// `POST /v1/embed`: little-endian f32 vectors back to back, or a JSON array of arrays when
/// the client accepts only JSON.
async fn native_embed(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NativeRequest>,
) -> Result<Response, ApiError> {
    check_inputs(&state, "inputs", req.inputs.len())?;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("octet-stream"));
    let out = state
        .embedder
        .embed_counted(req.inputs, priority(&headers))
        .await
        .map_err(|e| ApiError(e.into()))?;
    let count = out.vectors.len();
    let mut resp = if wants_json {
        axum::Json(out.vectors).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            encode_vectors(&out.vectors),
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(DIMENSION_HEADER, HeaderValue::from(state.dimension));
    h.insert(COUNT_HEADER, HeaderValue::from(count));
    h.insert("x-ragplane-tokens", HeaderValue::from(out.tokens));
    Ok(resp)
}

/// `GET /v1/models`, so that OpenAI clients can list the one model.
async fn models(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "object": "list",
        "data": [{ "id": state.model, "object": "model", "owned_by": "ragplane" }],
    }))
}

/// Description of a running embed-server, from `GET /info`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Info {
    /// Model name.
    pub model: String,
    /// Vector dimension.
    pub dimension: usize,
    /// Devices with sessions: `cpu` or `cuda:N`.
    pub devices: Vec<String>,
    /// Device names, in the order of `devices`.
    pub device_names: Vec<String>,
    /// Why the CPU is used, when it is.
    pub cpu_reason: Option<String>,
    /// Padded-token cap per model run.
    pub max_batch_tokens: usize,
    /// Requests that may wait before 429.
    pub queue_capacity: usize,
    /// Most texts per request.
    pub max_inputs_per_request: usize,
}

async fn info(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(Info {
        model: state.model.clone(),
        dimension: state.dimension,
        devices: state.plan.devices.iter().map(|d| d.label()).collect(),
        device_names: state.plan.devices.iter().map(ToString::to_string).collect(),
        cpu_reason: state.plan.cpu_reason.clone(),
        max_batch_tokens: state.max_batch_tokens,
        queue_capacity: state.queue_capacity,
        max_inputs_per_request: state.max_inputs,
    })
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready while the inference threads take requests (the server binds only after loading).
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if state.embedder.is_running() {
        Ok("ready")
    } else {
        Err(ApiError(Error::Unavailable {
            message: "not ready: the inference threads have stopped".into(),
            retry_after_secs: 5,
        }))
    }
}
