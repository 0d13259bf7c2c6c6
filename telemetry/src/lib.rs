//! Logging and traces for both ragplane programs.
//!
//! [`init`] installs one `tracing` subscriber: log lines on stderr (text or JSON) behind a
//! filter that can change while the process runs ([`set_filter`]), and, when traces are on,
//! an OpenTelemetry layer that exports every span the filter lets through over OTLP (gRPC, or
//! HTTP with protobuf bodies).
//! [`metrics`] holds the metric types both programs record into, whose latencies name their
//! trace as exemplar. [`propagation`] carries W3C `traceparent` headers in and out: HTTP
//! requests, queued jobs and calls to other services.
//!
//! Traces are off unless an endpoint is configured (`[telemetry.traces]`) or set in the
//! standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` variables;
//! `OTEL_SDK_DISABLED=true` turns them off whatever is set.

pub mod metrics;
mod otlp_http;
pub mod propagation;
#[cfg(feature = "testing")]
pub mod testing;
mod traces;

use std::sync::{Mutex, OnceLock};

use ragplane_config::{LogFormat, TracesConfig};
use tracing_subscriber::EnvFilter;

pub use traces::{TracesError, TRACER_NAME};
pub use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Replaces the installed subscriber's filter.
type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// The installed subscriber's reload hook, and the filter in force.
static INSTALLED: OnceLock<(Reload, Mutex<String>)> = OnceLock::new();

/// Keeps the trace pipeline alive; dropping it (or [`Telemetry::shutdown`]) exports the spans
/// still buffered.
#[must_use = "dropping the guard stops the trace export"]
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn traces_on(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is buffered and stops the export.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                tracing::warn!(error = %e, "traces: the last spans could not be exported");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs the subscriber: `format` on stderr, filtered by `filter` (EnvFilter syntax; `info`
/// when it does not parse), and traces as `traces` and the `OTEL_*` variables say, named
/// `program` unless a service name is set. A second call installs nothing and returns a guard
/// with traces off.
///
/// Must run inside a Tokio runtime when traces are on: the gRPC exporter's connection lives
/// on it.
pub fn init(
    program: &'static str,
    format: LogFormat,
    filter: &str,
    traces: &TracesConfig,
) -> Result<Telemetry, TracesError> {
    let (parsed, text) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, filter.to_owned()),
        Err(_) => (EnvFilter::new("info"), "info".to_owned()),
    };
    let provider = traces::provider(program, traces)?;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter_layer, handle) = tracing_subscriber::reload::Layer::new(parsed);
    let reload: Reload = Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()));
    // Colours only on a terminal: in a file or a container's log they are escape codes to
    // strip, and writing them costs every line.
    // A log line that cannot be written (a full disk under a redirected stderr) is dropped.
    // With internal errors on, tracing-subscriber would report it with `eprintln!`, which
    // panics when stderr fails too, and take down whatever task was logging (a worker).
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false);
    let registry = tracing_subscriber::registry().with(filter_layer);
    let installed = match format {
        LogFormat::Json => registry
            .with(lines.json())
            .with(provider.as_ref().map(traces::layer))
            .try_init(),
        LogFormat::Text => registry
            .with(lines)
            .with(provider.as_ref().map(traces::layer))
            .try_init(),
    };
    if installed.is_err() {
        if let Some(p) = provider {
            let _ = p.shutdown();
        }
        return Ok(Telemetry::default());
    }
    let _ = INSTALLED.set((reload, Mutex::new(text)));
    if provider.is_some() {
        propagation::install();
    }
    Ok(Telemetry { provider })
}

/// The filter in force; `None` before [`init`].
pub fn filter() -> Option<String> {
    INSTALLED
        .get()
        .map(|(_, f)| f.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

/// Why a filter could not be set.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The text is not EnvFilter syntax.
    #[error("not a log filter ({0}); use EnvFilter syntax such as \"info,ragplane=debug\"")]
    Invalid(String),
    /// No subscriber of this module is installed.
    #[error("logging was not set up by this process")]
    NotInstalled,
    /// The subscriber refused the new filter.
    #[error("the log filter could not be replaced: {0}")]
    Reload(String),
}

/// Replaces the filter in force with `filter`. Spans the new filter drops are no longer
/// exported either.
pub fn set_filter(filter: &str) -> Result<(), FilterError> {
    let parsed = EnvFilter::try_new(filter).map_err(|e| FilterError::Invalid(e.to_string()))?;
    let (reload, current) = INSTALLED.get().ok_or(FilterError::NotInstalled)?;
    reload(parsed).map_err(FilterError::Reload)?;
    *current.lock().unwrap_or_else(|e| e.into_inner()) = filter.to_owned();
    tracing::info!(filter, "log filter changed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_filter_is_refused_before_anything_changes() {
        let err = set_filter("ragplane=[loud").unwrap_err();
        assert!(matches!(err, FilterError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("EnvFilter syntax"), "{err}");
    }
}
