//! The HTTP API (axum): routes under `/v1`, service endpoints, and the middleware that bounds
//! concurrency and body size and records request metrics.

mod admin;
mod chat;
mod collections;
mod documents;
pub mod error;
pub mod http_metrics;
pub mod recent_errors;
pub mod request_id;
mod search;
mod service;
pub mod trace;
mod usage;

use http_metrics::record_metrics;
pub(crate) use service::metrics as service_metrics;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use utoipa::OpenApi;

use crate::app::{App, Principal};
use crate::error::Error;
use error::ApiError;

/// Shared state of every handler.
pub type AppState = Arc<App>;

/// JSON body extractor whose rejections become `{error, type}` responses.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The authenticated caller: from `Authorization: Bearer <key>`, or else from the web
/// console's session cookie. A session's requests other than GET, HEAD, OPTIONS and TRACE must
/// also carry its CSRF token in `x-csrf-token`.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let client = ClientAddr::of(parts);
        if bearer.is_none() && !app.config.auth.disabled {
            if let Some(token) = crate::console::session_cookie(&parts.headers) {
                let (principal, csrf) = app.session(token, client).await?;
                if !parts.method.is_safe() {
                    crate::console::check_csrf(&parts.headers, &csrf)?;
                }
                return Ok(Self(principal));
            }
        }
        Ok(Self(app.authenticate_from(bearer, client).await?))
    }
}

/// The client's address: the peer when the server was started with connect info (absent
/// in-process).
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl ClientAddr {
    fn of(parts: &Parts) -> Option<std::net::IpAddr> {
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Self::of(parts)))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ragplane", description = "Retrieval-augmented generation API"),
    paths(
        admin::create_tenant, admin::list_tenants, admin::delete_tenant, admin::issue_key,
        admin::list_keys,
        admin::revoke_key, admin::rotate_key, admin::get_log_filter, admin::set_log_filter,
        admin::recent_errors, usage::usage,
        collections::create, collections::list, collections::get_one, collections::delete,
        collections::reindex,
        documents::upload, documents::list, documents::get_one, documents::delete, documents::reindex,
        documents::job, search::search, search::query, chat::completions,
    ),
    components(schemas(error::ErrorBody, search::QueryDone, search::CitedSource)),
    modifiers(&BearerAuth, &CommonErrors),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The error responses any operation may give, added to each where its own annotation does
/// not list them: a malformed body (400), no or a bad key (401), a scope that does not allow it
/// (403), a body over the limit (413), a wrong content type (415, operations with a body), an
/// invalid field (422), a rate limit or backlog (429), and a dependency down, the concurrency
/// limit or the request timeout (503).
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let has_body = op.request_body.is_some();
                let mut codes = vec![
                    ("400", "malformed request"),
                    ("401", "missing, unknown, revoked or expired API key"),
                    ("403", "the key's scope does not allow this"),
                    ("422", "a field is invalid"),
                    ("429", "rate limited or overloaded; see Retry-After"),
                    ("503", "temporarily unavailable; see Retry-After"),
                ];
                if has_body {
                    codes.push(("413", "body too large"));
                    codes.push(("415", "unsupported content type"));
                }
                for (code, description) in codes {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Builds the router with all middleware.
pub fn router(app: AppState) -> Router {
    let limits = app.config.limits.clone();
    let v1 = Router::new()
        .route(
            "/tenants",
            post(admin::create_tenant).get(admin::list_tenants),
        )
        .route("/tenants/{tenant}", delete(admin::delete_tenant))
        .route(
            "/admin/log-filter",
            get(admin::get_log_filter).put(admin::set_log_filter),
        )
        .route("/admin/errors", get(admin::recent_errors))
        .route("/usage", get(usage::usage))
        .route(
            "/tenants/{tenant}/keys",
            post(admin::issue_key).get(admin::list_keys),
        )
        .route("/tenants/{tenant}/keys/{id}", delete(admin::revoke_key))
        .route(
            "/tenants/{tenant}/keys/{id}/rotate",
            post(admin::rotate_key),
        )
        .route(
            "/collections",
            post(collections::create).get(collections::list),
        )
        .route(
            "/collections/{collection}",
            get(collections::get_one).delete(collections::delete),
        )
        .route(
            "/collections/{collection}/reindex",
            post(collections::reindex),
        )
        .route(
            "/collections/{collection}/documents",
            post(documents::upload).get(documents::list),
        )
        .route(
            "/collections/{collection}/documents/{document}",
            get(documents::get_one).delete(documents::delete),
        )
        .route(
            "/collections/{collection}/documents/{document}/reindex",
            post(documents::reindex),
        )
        .route("/jobs/{job}", get(documents::job))
        .route("/search", post(search::search))
        .route("/query", post(search::query))
        .route("/chat/completions", post(chat::completions))
        .fallback(not_found);
    // Probes and scrapes bypass load shedding and the request timeout: a saturated pod must
    // still answer its kubelet and Prometheus, or it would be restarted for being busy.
    let mut traffic = Router::new()
        .nest("/v1", v1)
        .route("/openapi.json", get(service::openapi_json));
    if app.config.console.enabled {
        traffic = traffic.merge(crate::console::router());
    }
    let traffic = traffic
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_requests)),
            shed_load,
        ))
        .layer(middleware::from_fn_with_state(
            TimeLimit {
                limit: Duration::from_secs(limits.request_timeout_secs),
                setting: "limits.request_timeout_secs",
            },
            time_limit,
        ));
    instrument(service_routes().merge(traffic).fallback(not_found))
        .layer(cors(&app.config.server.cors_allowed_origins))
        .with_state(app)
}

/// The layers every HTTP server of this binary puts around its routes, innermost first: a
/// panicking handler answered with a 500; the request metrics, outside everything that can
/// answer in a handler's place (a panic, a time limit, shed load), so that they count what the
/// client got, and a request they see dropped unanswered is one its client left; the request's
/// span; and its request id, which the span takes.
pub(crate) fn instrument<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError(Error::Internal("the request handler panicked".into())).into_response()
        }))
        .layer(middleware::from_fn(record_metrics))
        .layer(trace::layer())
        .layer(middleware::from_fn(request_id::assign))
}

/// CORS for the configured origins: none by default, so no CORS header is ever sent and
/// browsers keep other sites' pages from calling the API with a user's key.
fn cors(
    origins: &[String],
) -> tower::util::Either<tower_http::cors::CorsLayer, tower::layer::util::Identity> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return tower::util::Either::Right(tower::layer::util::Identity::new());
    }
    let allowed: Vec<axum::http::HeaderValue> = origins
        .iter()
        .filter_map(|o| axum::http::HeaderValue::from_str(o).ok())
        .collect();
    tower::util::Either::Left(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([
                axum::http::Method::GET,
                axum::http::Method::POST,
                axum::http::Method::PUT,
                axum::http::Method::PATCH,
                axum::http::Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                request_id::HEADER.clone(),
            ])
            .expose_headers([header::RETRY_AFTER, request_id::HEADER.clone()])
            .max_age(Duration::from_secs(600)),
    )
}

/// How long a request may run, and the setting that says so (named in the 503).
#[derive(Clone, Copy)]
pub(crate) struct TimeLimit {
    /// The limit.
    pub limit: Duration,
    /// Its configuration key.
    pub setting: &'static str,
}

/// Answers 503 with Retry-After when a request runs past its [`TimeLimit`].
pub(crate) async fn time_limit(State(t): State<TimeLimit>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(t.limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError(Error::Unavailable {
            message: format!(
                "the request ran past {} ({} s)",
                t.setting,
                t.limit.as_secs()
            ),
            retry_after_secs: 1,
        })
        .into_response(),
    }
}

/// The service endpoints alone (`/healthz`, `/readyz`, `/metrics`), for worker processes.
pub fn service_router(app: AppState) -> Router {
    service_routes().fallback(not_found).with_state(app)
}

/// `/healthz`, `/readyz` and `/metrics`, without any limit in front of them.
fn service_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(service::metrics))
        .method_not_allowed_fallback(method_not_allowed)
}

/// The answer to a path no route has.
pub(crate) async fn not_found() -> ApiError {
    ApiError(Error::not_found("route", "this path"))
}

/// The answer to a method a route does not take (axum adds the `Allow` header).
pub(crate) async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError(Error::MethodNotAllowed(format!(
        "{method} is not allowed on this path (the Allow header lists the methods it takes)"
    )))
}

/// Answers 503 with Retry-After at once when every request slot is taken, instead of queueing.
async fn shed_load(
    State(slots): State<Arc<tokio::sync::Semaphore>>,
    req: Request,
    next: Next,
) -> Response {
    match slots.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiError(Error::Unavailable {
            message: "the server is at its concurrent request limit; retry shortly".into(),
            retry_after_secs: 1,
        })
        .into_response(),
    }
}
