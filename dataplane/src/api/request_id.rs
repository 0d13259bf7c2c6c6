//! Request ids: every request gets one (the caller's `x-request-id` when it is a sane token,
//! else a new UUID), echoed in the `x-request-id` response header, carried by the request's span
//! (so every log line of the request, and its trace, name it), and named in every error body.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The header carrying the id both ways.
pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled, if any (outside a request, or in a response body
/// streamed after the handler returned, there is none: capture it in the handler).
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// A caller's id is kept when it is 1–128 characters of `[A-Za-z0-9._:-]`, so that it cannot
/// forge log lines or carry anything but an id.
fn usable(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    ((1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)))
    .then(|| s.to_string())
}

/// Middleware: gives the request its id and runs the rest of the stack with it.
pub async fn assign(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(usable)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let mut resp = CURRENT.scope(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER.clone(), v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_token_like_ids_are_kept() {
        assert_eq!(
            usable(&HeaderValue::from_static("abc-123.x:y_z")).as_deref(),
            Some("abc-123.x:y_z")
        );
        assert_eq!(usable(&HeaderValue::from_static("")), None);
        assert_eq!(usable(&HeaderValue::from_static("a b")), None);
        assert_eq!(usable(&HeaderValue::from_static("a\\nb")), None);
        assert_eq!(
            usable(&HeaderValue::from_str(&"x".repeat(129)).unwrap()),
            None
        );
    }
}
