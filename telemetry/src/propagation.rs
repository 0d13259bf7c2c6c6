//! W3C trace context in and out: a `traceparent` read from an HTTP request or a queued job
//! becomes a span's parent, and the current span's context is written into outgoing requests
//! and new jobs. With traces off every function here is a cheap no-op: nothing is extracted
//! and nothing is written.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether traces are on in this process; everything here is a no-op while they are off.
static ON: AtomicBool = AtomicBool::new(false);

/// Installs the W3C trace-context propagator process-wide and turns propagation on
/// ([`crate::init`] does when traces are on).
pub fn install() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    ON.store(true, Ordering::Release);
}

/// Whether traces are on in this process.
pub(crate) fn on() -> bool {
    ON.load(Ordering::Acquire)
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// One `traceparent` value as a carrier.
struct Single<'a>(&'a str);

impl Extractor for Single<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// The caller's trace context from request headers (empty when there is none, or traces are
/// off).
pub fn extract(headers: &HeaderMap) -> Context {
    if !on() {
        return Context::new();
    }
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)))
}

/// Makes `cx` the parent of `span` when it carries a valid remote span context.
pub fn set_parent(span: &tracing::Span, cx: Context) {
    if cx.span().span_context().is_valid() {
        // Fails only for a span that is not recorded (filtered out, or traces off).
        let _ = span.set_parent(cx);
    }
}

/// Writes the current span's context into outgoing request headers.
pub fn inject(headers: &mut HeaderMap) {
    if !on() {
        return;
    }
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut HeadersMut(headers));
        });
    }
}

/// Headers that carry the current span's context to a server this process calls (empty when
/// traces are off).
pub fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    inject(&mut h);
    h
}

/// The current span's `traceparent`, to store with work handed to another process; `None`
/// when traces are off or the span is not sampled.
pub fn traceparent() -> Option<String> {
    if !on() {
        return None;
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut headers = HeaderMap::new();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeadersMut(&mut headers));
    });
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The context a stored `traceparent` stands for.
pub fn from_traceparent(traceparent: &str) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&Single(traceparent)))
}

/// The current span's trace id in hex, for log lines and exemplars; `None` when traces are
/// off.
pub fn trace_id() -> Option<String> {
    trace_id_of(&tracing::Span::current())
}

/// `span`'s trace id in hex; `None` when traces are off.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    trace_id_setting(span, || [])
}

/// The current span's trace, as an exemplar sees it.
#[derive(Debug)]
pub(crate) enum CurrentTrace {
    /// Traces are off, or there is no span.
    None,
    /// A trace the sampler left out: exported nowhere, so nothing to link to.
    Unsampled,
    /// A sampled trace, by its id in hex.
    Sampled(String),
}

/// The current span's trace; its id is written out only when it is sampled.
pub(crate) fn current_trace() -> CurrentTrace {
    let sampled = with_otel_span(&tracing::Span::current(), |otel| {
        let sc = otel.span_context();
        sc.is_sampled().then(|| sc.trace_id().to_string())
    });
    match sampled {
        None => CurrentTrace::None,
        Some(None) => CurrentTrace::Unsampled,
        Some(Some(id)) => CurrentTrace::Sampled(id),
    }
}

/// `f` applied to `span`'s OpenTelemetry span; `None` when traces are off or the span has no
/// valid context.
fn with_otel_span<T>(
    span: &tracing::Span,
    f: impl FnOnce(&opentelemetry::trace::SpanRef<'_>) -> T,
) -> Option<T> {
    if !on() {
        return None;
    }
    let cx = span.context();
    let otel = cx.span();
    otel.span_context().is_valid().then(|| f(&otel))
}

/// `span`'s trace id in hex, with `attributes` set on its OpenTelemetry span in one step; `None`
/// when traces are off.
///
/// Reading the trace id starts the OpenTelemetry span, so the attributes go to it directly,
/// under one lock, instead of one [`OpenTelemetrySpanExt::set_attribute`] each (every one of
/// which looks the span up again). They are built only for a span that records: a trace the
/// sampler left out still has its id (for the log lines and the traces downstream), but its
/// spans keep no attributes.
pub fn trace_id_setting<const N: usize>(
    span: &tracing::Span,
    attributes: impl FnOnce() -> [(&'static str, String); N],
) -> Option<String> {
    with_otel_span(span, |otel| {
        if N > 0 && otel.is_recording() {
            otel.set_attributes(
                attributes()
                    .into_iter()
                    .map(|(k, v)| opentelemetry::KeyValue::new(k, v)),
            );
        }
        otel.span_context().trace_id().to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_through_headers_and_text() {
        install();
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static(tp));
        let cx = extract(&h);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        let again = from_traceparent(tp);
        assert_eq!(again.span().span_context(), &sc);
        assert!(!from_traceparent("00-garbage")
            .span()
            .span_context()
            .is_valid());
    }

    #[test]
    fn the_trace_id_comes_with_the_attributes_set_on_the_span() {
        install();
        let (id, spans) = crate::traces::recorded(|| {
            let span = tracing::info_span!("request");
            trace_id_setting(&span, || [("http.route", "/v1/search".to_owned())])
        });
        let id = id.expect("a trace id while traces are on");
        assert_eq!(spans.len(), 1, "{spans:#?}");
        assert_eq!(spans[0].span_context.trace_id().to_string(), id);
        let route = spans[0]
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "http.route")
            .map(|kv| kv.value.to_string());
        assert_eq!(route.as_deref(), Some("/v1/search"), "{spans:#?}");
    }

    #[test]
    fn a_trace_left_out_by_the_sampler_has_an_id_but_its_attributes_are_not_built() {
        install();
        let (id, spans) =
            crate::traces::recorded_with(opentelemetry_sdk::trace::Sampler::AlwaysOff, || {
                let span = tracing::info_span!("request");
                trace_id_setting(&span, || -> [(&str, String); 1] {
                    panic!("attributes built for a span that is not recorded")
                })
            });
        let id = id.expect("a trace id for an unsampled trace");
        assert_eq!(id.len(), 32, "{id}");
        assert_ne!(id, "0".repeat(32));
        assert!(spans.is_empty(), "{spans:#?}");
    }
}
