//! The `tracing` layer that feeds the OpenTelemetry pipeline: tracing-opentelemetry's layer,
//! wrapped so that it does only what a trace reader uses.
//!
//! Every request pays for this layer, so the wrapper cuts what tracing-opentelemetry would
//! otherwise do on each one:
//! - **Spans end when they close**, not at their last exit. A span is entered and left on
//!   every poll of its future (and, for a request, of its response body); each exit would
//!   lock the span and read the clock to move its end time. A span closes when its last
//!   handle is dropped, right after that last poll for an instrumented future, or when a
//!   response body has been written; a span held longer (a stream's) ends when it is let go.
//! - **Only warnings and errors become span events.** Lines below `warn` (the query log among
//!   them) stay in the log: what they say of a request is on its spans already. The level is
//!   checked here rather than through a per-layer filter, which would make the registry track
//!   each span's filter state for every layer.
//! - **Fields that exist for the log lines stay out of the span**: `trace_id` is the span's
//!   own trace id, which every exported span carries anyway.

use std::any::TypeId;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::TRACER_NAME;

/// Span fields that are for log lines only.
const LOG_ONLY_FIELDS: &[&str] = &["trace_id"];

/// The layer that turns `tracing` spans into OpenTelemetry spans of `provider`, and warnings
/// and errors logged inside a span into events of that span.
pub(crate) fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    // Each option turned off costs time on every poll of every instrumented future (a clock
    // read, a thread-local context swap) or an attribute on every span, for nothing a trace
    // reader uses: spans carry their own timing, the context propagation here reads the
    // span's context directly, and the module path says nothing the span's name does not.
    SpanLayer(
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(TRACER_NAME))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false),
    )
}

/// tracing-opentelemetry's layer, minus what the module docs list.
struct SpanLayer<S>(OpenTelemetryLayer<S, SdkTracer>);

/// Whether an event becomes a span event: warnings and errors only.
fn is_span_event(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::WARN
}

/// Whether a record sets anything other than [`LOG_ONLY_FIELDS`].
fn records_for_the_span(values: &Record<'_>) -> bool {
    struct Other(bool);
    impl Visit for Other {
        fn record_debug(&mut self, field: &Field, _: &dyn std::fmt::Debug) {
            self.0 |= !LOG_ONLY_FIELDS.contains(&field.name());
        }
    }
    let mut other = Other(false);
    values.record(&mut other);
    other.0
}

impl<S> Layer<S> for SpanLayer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.0.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if records_for_the_span(values) {
            self.0.on_record(id, values, ctx);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.0.on_follows_from(id, follows, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if is_span_event(event.metadata()) {
            self.0.on_event(event, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.0.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx);
    }

    // Entering and leaving are left out on purpose: see the module docs.

    // SAFETY: the pointer returned for `Self` is to `self`; every other type is answered by
    // the wrapped layer, whose own `downcast_raw` upholds the contract (it is how
    // `OpenTelemetrySpanExt` finds the span's context).
    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else {
            // SAFETY: forwarded as is; see above.
            unsafe { self.0.downcast_raw(id) }
        }
    }
}

/// Runs `f` under this layer alone (for this thread only), every trace sampled and exported to
/// memory, and returns what `f` returned with the spans it finished.
#[cfg(test)]
pub(crate) fn recorded<T>(f: impl FnOnce() -> T) -> (T, Vec<opentelemetry_sdk::trace::SpanData>) {
    recorded_with(opentelemetry_sdk::trace::Sampler::AlwaysOn, f)
}

/// [`recorded`], with `sampler` deciding which traces are sampled.
#[cfg(test)]
pub(crate) fn recorded_with<T>(
    sampler: opentelemetry_sdk::trace::Sampler,
    f: impl FnOnce() -> T,
) -> (T, Vec<opentelemetry_sdk::trace::SpanData>) {
    use tracing_subscriber::layer::SubscriberExt;
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .with_sampler(sampler)
        .build();
    let subscriber = tracing_subscriber::registry().with(layer(&provider));
    let out = tracing::subscriber::with_default(subscriber, f);
    (out, exporter.get_finished_spans().unwrap())
}

#[cfg(test)]
mod tests {
    use crate::OpenTelemetrySpanExt;

    fn recorded(f: impl FnOnce()) -> Vec<opentelemetry_sdk::trace::SpanData> {
        super::recorded(f).1
    }

    #[test]
    fn spans_take_warnings_and_errors_but_not_info_lines() {
        let spans = recorded(|| {
            let span = tracing::info_span!("request");
            let _entered = span.enter();
            tracing::info!("query");
            tracing::warn!("slow");
            tracing::error!("failed");
        });
        assert_eq!(spans.len(), 1, "{spans:#?}");
        assert_eq!(spans[0].name, "request");
        let events: Vec<String> = spans[0].events.iter().map(|e| e.name.to_string()).collect();
        assert_eq!(events, ["slow", "failed"]);
    }

    #[test]
    fn log_only_fields_stay_out_and_the_rest_is_recorded() {
        let spans = recorded(|| {
            let span = tracing::info_span!(
                "request",
                request_id = "r-1",
                trace_id = tracing::field::Empty,
                cache = tracing::field::Empty,
            );
            span.record("trace_id", "0af7651916cd43dd8448eb211c80319c");
            span.record("cache", "hit");
            span.set_attribute("http.route", "/v1/search");
        });
        assert_eq!(spans.len(), 1, "{spans:#?}");
        let keys: Vec<&str> = spans[0]
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        for key in ["request_id", "cache", "http.route"] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        for key in ["trace_id", "target", "code.file.path", "thread.id"] {
            assert!(!keys.contains(&key), "{key} exported: {keys:?}");
        }
    }

    #[test]
    fn a_span_ends_when_it_closes_and_contains_its_children() {
        let spans = recorded(|| {
            let parent = tracing::info_span!("parent");
            {
                let _in_parent = parent.enter();
                let child = tracing::info_span!("child");
                let _in_child = child.enter();
            }
            // Held after its last exit: it ends when it is let go.
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(parent);
        });
        let [child, parent] = &spans[..] else {
            panic!("two spans, the child first: {spans:#?}");
        };
        assert_eq!(
            (child.name.as_ref(), parent.name.as_ref()),
            ("child", "parent")
        );
        assert_eq!(child.parent_span_id, parent.span_context.span_id());
        assert!(parent.start_time <= child.start_time && child.end_time <= parent.end_time);
        let held = parent.end_time.duration_since(child.end_time).unwrap();
        assert!(held >= std::time::Duration::from_millis(20), "{held:?}");
    }
}
