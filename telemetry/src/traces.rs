//! The OpenTelemetry pipeline: which endpoint, which sampler, which service name, and the
//! `tracing` layer that feeds it.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use ragplane_config::TracesConfig;
use tracing_opentelemetry::OpenTelemetryLayer;

/// The instrumentation scope of every span.
pub const TRACER_NAME: &str = "ragplane";

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    /// A setting (from the configuration or the environment) is wrong.
    #[error("{field}: {message}")]
    Setting {
        /// The setting, as a dotted path or an environment variable.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The exporter could not be built.
    #[error("the OTLP trace exporter could not be built: {0}")]
    Exporter(String),
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The endpoint to export to, and where it came from; `None` when traces are off.
fn endpoint(cfg: &TracesConfig) -> Option<(String, &'static str)> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    if let Some(e) = &cfg.endpoint {
        return Some((e.clone(), "telemetry.traces.endpoint"));
    }
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        if let Some(e) = env(var) {
            return Some((e, var));
        }
    }
    None
}

fn setting(field: impl Into<String>, message: impl Into<String>) -> TracesError {
    TracesError::Setting {
        field: field.into(),
        message: message.into(),
    }
}

/// The settings to use, checked; `Ok(None)` when traces are off.
fn resolve(cfg: &TracesConfig) -> Result<Option<(String, TracesConfig)>, TracesError> {
    let Some((url, from)) = endpoint(cfg) else {
        return Ok(None);
    };
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = env(var) {
            if p != "grpc" {
                return Err(setting(
                    var,
                    format!("only \"grpc\" is supported (OTLP/gRPC, port 4317), got {p:?}"),
                ));
            }
            break;
        }
    }
    let resolved = TracesConfig {
        endpoint: Some(url.clone()),
        ..cfg.clone()
    };
    // A wrong endpoint is named where it came from (the setting or the variable).
    let problems = resolved.problems();
    let first = problems
        .iter()
        .find(|(f, _)| *f == "telemetry.traces.endpoint")
        .map(|(_, m)| (from, m))
        .or_else(|| problems.first().map(|(f, m)| (*f, m)));
    if let Some((field, message)) = first {
        return Err(setting(field, message.clone()));
    }
    Ok(Some((url, resolved)))
}

/// The tracer provider, exporting in batches from its own thread; `None` when traces are off.
pub(crate) fn provider(
    program: &'static str,
    cfg: &TracesConfig,
) -> Result<Option<SdkTracerProvider>, TracesError> {
    let Some((url, cfg)) = resolve(cfg)? else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(url)
        .build()
        .map_err(|e| TracesError::Exporter(e.to_string()))?;
    // The default resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    let mut resource = Resource::builder();
    if let Some(name) = cfg.service_name.clone() {
        resource = resource.with_service_name(name);
    } else if env("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(program);
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource);
    // Without a ratio here, the SDK reads OTEL_TRACES_SAMPLER(_ARG), and records everything
    // when they are unset.
    if let Some(r) = cfg.sample_ratio {
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            r,
        ))));
    }
    Ok(Some(builder.build()))
}

/// The layer that turns `tracing` spans into OpenTelemetry spans of `provider`.
pub(crate) fn layer<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    // Each of the options turned off here costs time on every poll of every instrumented
    // future (a clock read, a thread-local context swap) or an attribute on every span, for
    // nothing a trace reader uses: spans carry their own timing, and the context
    // propagation here reads the span's context directly.
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(TRACER_NAME))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(endpoint: Option<&str>, ratio: Option<f64>) -> TracesConfig {
        TracesConfig {
            endpoint: endpoint.map(str::to_owned),
            sample_ratio: ratio,
            service_name: None,
        }
    }

    // The OTEL_* variables are not set in the test environment; the tests that read them
    // set nothing process-wide, so they cannot disturb each other.

    #[test]
    fn off_without_an_endpoint() {
        if endpoint(&cfg(None, None)).is_some() {
            eprintln!("SKIPPED: an OTEL_EXPORTER_OTLP_* endpoint is set in this environment");
            return;
        }
        assert!(resolve(&cfg(None, None)).unwrap().is_none());
    }

    #[test]
    fn a_bad_endpoint_or_ratio_is_named() {
        let e = resolve(&cfg(Some("jaeger:4317"), None)).unwrap_err();
        assert!(
            e.to_string().starts_with("telemetry.traces.endpoint: "),
            "{e}"
        );
        let e = resolve(&cfg(Some("http://jaeger:4317"), Some(1.5))).unwrap_err();
        assert!(
            e.to_string().starts_with("telemetry.traces.sample_ratio: "),
            "{e}"
        );
        let (url, _) = resolve(&cfg(Some("http://127.0.0.1:4317"), Some(0.25)))
            .unwrap()
            .unwrap();
        assert_eq!(url, "http://127.0.0.1:4317");
    }
}
