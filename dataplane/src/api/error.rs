//! The one place where errors become HTTP responses: domain error → `{error, type, request_id}`
//! JSON → status code, with `Retry-After` on 429 and 503. A server error's detail is logged under
//! the request id and replaced by a generic message. Extractor rejections (bad JSON, body too
//! large, wrong content type) are mapped here too, so every error body has the same shape.

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The JSON body of every error response.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Human-readable message naming what was wrong. For a server error (5xx) it is generic:
    /// the detail, which may name internal hosts or queries, goes to the log under
    /// `request_id`.
    pub error: String,
    /// Machine-readable kind, for example `invalid_request` or `not_found`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request's id (also in the `x-request-id` header), to find its log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ErrorBody {
    /// What the client of request `request_id` is told about `e`: the message itself for a
    /// client error; for a server error a generic one, the detail being logged here.
    pub fn of(e: &Error, request_id: Option<String>) -> Self {
        let (status, kind, retry_after) = classify(e);
        let error = if status.is_server_error() {
            let id = request_id.as_deref().unwrap_or("none");
            tracing::error!(request_id = id, error = %e, status = status.as_u16(), "request failed");
            match retry_after {
                Some(secs) => format!(
                    "the service is temporarily unavailable; retry in {secs} s (request id {id})"
                ),
                None => format!("internal error (request id {id})"),
            }
        } else {
            e.to_string()
        };
        Self {
            error,
            kind: kind.to_string(),
            request_id,
        }
    }
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// Status, type label and Retry-After of an error.
pub fn classify(e: &Error) -> (StatusCode, &'static str, Option<u64>) {
    match e {
        Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", None),
        Error::Conflict { .. } => (StatusCode::CONFLICT, "conflict", None),
        Error::ModelMismatch(_) | Error::OutdatedModel(_) => {
            (StatusCode::CONFLICT, "model_mismatch", None)
        }
        Error::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", None),
        Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
        Error::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None),
        Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None),
        Error::UnsupportedMediaType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
        Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
        Error::Overloaded {
            retry_after_secs, ..
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            Some(*retry_after_secs),
        ),
        Error::RateLimited {
            retry_after_secs, ..
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            Some(*retry_after_secs),
        ),
        Error::Unavailable {
            retry_after_secs, ..
        } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Some(*retry_after_secs),
        ),
        Error::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad_gateway", None),
        Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, retry_after) = classify(&self.0);
        let body = ErrorBody::of(&self.0, super::request_id::current());
        super::recent_errors::record(super::recent_errors::RecentError {
            at: crate::metadata::now_rfc3339(),
            status: status.as_u16(),
            kind: body.kind.clone(),
            error: body.error.clone(),
            request_id: body.request_id.clone(),
        });
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Maps a rejection's status to the matching domain error.
fn from_status(status: StatusCode, message: String) -> Error {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge(message),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType(message),
        StatusCode::UNPROCESSABLE_ENTITY => Error::Invalid {
            field: "body".into(),
            message,
        },
        _ => Error::BadRequest(message),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        Self(from_status(r.status(), r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self(Error::invalid("query string", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self(Error::BadRequest(r.body_text()))
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(r: MultipartRejection) -> Self {
        Self(from_status(r.status(), r.body_text()))
    }
}

impl From<MultipartError> for ApiError {
    fn from(r: MultipartError) -> Self {
        Self(from_status(
            r.status(),
            format!("failed to read multipart body: {}", r.body_text()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_and_unavailable_carry_retry_after() {
        let r = ApiError(Error::Overloaded {
            message: "busy".into(),
            retry_after_secs: 3,
        })
        .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        let r = ApiError(Error::Unavailable {
            message: "down".into(),
            retry_after_secs: 7,
        })
        .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
    }
}
