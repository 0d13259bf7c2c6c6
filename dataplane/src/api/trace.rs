//! The span of each HTTP request (tower-http's `TraceLayer`): named after the route
//! (`POST /v1/query`), carrying the request id and, when traces are on, the trace id, so that
//! every log line of the request names both. An incoming W3C `traceparent` makes the request
//! part of the caller's trace.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::Response;
use ragplane_telemetry::propagation;
use ragplane_telemetry::OpenTelemetrySpanExt;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;
use tracing::field::Empty;
use tracing::Span;

type MakeSpan = fn(&Request) -> Span;
type OnResponse = fn(&Response<axum::body::Body>, Duration, &Span);

/// The layer; it must sit inside [`super::request_id::assign`], whose scope gives the id
/// ([`super::request_id::current`]).
pub fn layer(
) -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, MakeSpan, (), OnResponse, (), (), ()> {
    TraceLayer::new_for_http()
        .make_span_with(make_span as MakeSpan)
        .on_request(())
        .on_response(on_response as OnResponse)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// Routes of probes and scrapes: many, fast and of no interest in a trace, so their spans are
/// at debug level (traced only with a `debug` filter).
const SERVICE_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

fn make_span(req: &Request) -> Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let id = super::request_id::current();
    macro_rules! request_span {
        ($level:expr) => {
            tracing::span!(
                $level,
                "http.request",
                otel.name = %format_args!("{} {route}", req.method()),
                otel.kind = "server",
                request_id = id.as_deref(),
                trace_id = Empty,
                otel.status_code = Empty,
            )
        };
    }
    let span = if SERVICE_ROUTES.contains(&route) {
        request_span!(tracing::Level::DEBUG)
    } else {
        request_span!(tracing::Level::INFO)
    };
    if span.is_disabled() {
        return span;
    }
    propagation::set_parent(&span, propagation::extract(req.headers()));
    let traced = propagation::trace_id_setting(&span, || {
        [
            ("http.request.method", req.method().to_string()),
            ("http.route", route.to_owned()),
            ("url.path", req.uri().path().to_owned()),
        ]
    });
    if let Some(t) = traced {
        span.record("trace_id", t);
    }
    span
}

fn on_response(resp: &Response<axum::body::Body>, _latency: Duration, span: &Span) {
    let status = resp.status();
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}
