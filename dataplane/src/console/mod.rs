//! The web console at `/ui`: a small script application, embedded in the binary
//! ([`assets`]), that signs in with an API key ([`session`]) and then uses the same `/v1` API
//! as every other client, with the session cookie standing in for the key. Nothing here
//! widens what a key may do: each request is authorised as the key that signed in.

mod assets;
mod session;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::routing::get;
use axum::Router;

use crate::api::AppState;
use crate::error::{Error, Result};

/// The session cookie's name.
pub const COOKIE: &str = "ragplane_session";

/// The header a session's state-changing requests carry its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// `/ui` (the page), `/ui/assets/…` and `/ui/session`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(assets::page))
        .route("/ui/", get(assets::page))
        .route("/ui/assets/{*file}", get(assets::asset))
        .route(
            "/ui/session",
            get(session::current)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(axum::middleware::map_response(hardened))
}

/// The security headers of every console response: scripts, styles and connections only from
/// this origin, no framing, no referrer, no type sniffing.
async fn hardened(mut resp: axum::response::Response) -> axum::response::Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The session token in the request's cookie, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// Refuses (403) a state-changing request whose `x-csrf-token` is not its session's.
pub fn check_csrf(headers: &HeaderMap, expected: &str) -> Result<()> {
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Compared in constant time, so the answer's timing says nothing about the token.
    if bool::from(subtle::ConstantTimeEq::ct_eq(
        given.as_bytes(),
        expected.as_bytes(),
    )) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "a console session's {CSRF_HEADER} header is missing or wrong; reload the console"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ragplane_session=tok ; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("tok"));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("ragplane_sessionx=1"),
        );
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn csrf_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(check_csrf(&h, "abc").is_err());
        h.insert(CSRF_HEADER, HeaderValue::from_static("abd"));
        assert!(check_csrf(&h, "abc").is_err());
        h.insert(CSRF_HEADER, HeaderValue::from_static("abc"));
        assert!(check_csrf(&h, "abc").is_ok());
    }
}
