//! Spans recorded in memory, for tests that check what a process traces: [`record`] installs
//! the same layer as [`crate::init`] (all spans at info and above), with an in-memory
//! exporter in place of OTLP.

use std::collections::BTreeMap;

use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

/// One finished span, flattened for assertions.
#[derive(Debug, Clone)]
pub struct RecordedSpan {
    /// The span's name.
    pub name: String,
    /// Trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// The parent's span id, hex (`0000000000000000` for a root).
    pub parent_span_id: String,
    /// Attributes, their values as text.
    pub attributes: BTreeMap<String, String>,
    /// Whether the span ended in error.
    pub error: bool,
    /// The names of the span's events (the log lines attached to it).
    pub events: Vec<String>,
}

impl RecordedSpan {
    /// An attribute's value, if set.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The recording pipeline; keep it for the whole test.
pub struct Recorder {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder that no subscriber feeds yet: add [`Recorder::layer`] to one, for example
    /// one that is the default of a single thread only.
    pub fn new() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        Self { exporter, provider }
    }

    /// The layer of [`crate::init`], exporting to this recorder.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        crate::traces::layer(&self.provider)
    }

    /// Every span finished so far.
    pub fn spans(&self) -> Vec<RecordedSpan> {
        let _ = self.provider.force_flush();
        self.exporter
            .get_finished_spans()
            .unwrap_or_default()
            .into_iter()
            .map(|s| RecordedSpan {
                name: s.name.to_string(),
                trace_id: s.span_context.trace_id().to_string(),
                span_id: s.span_context.span_id().to_string(),
                parent_span_id: s.parent_span_id.to_string(),
                attributes: s
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.as_str().to_owned(), kv.value.as_str().into_owned()))
                    .collect(),
                error: matches!(s.status, opentelemetry::trace::Status::Error { .. }),
                events: s.events.iter().map(|e| e.name.to_string()).collect(),
            })
            .collect()
    }

    /// The finished spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<RecordedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }
}

/// Installs the recording subscriber as the process-wide default. Panics when another is
/// installed already: give such a test a test binary of its own.
pub fn record() -> Recorder {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let recorder = Recorder::new();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(recorder.layer())
        .try_init()
        .unwrap_or_else(|e| panic!("a subscriber is installed already: {e}"));
    crate::propagation::install();
    recorder
}
