//! The OpenTelemetry pipeline: which endpoint, which sampler, which service name, and the
//! `tracing` layer that feeds it.

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use ragplane_config::{OtlpProtocol, TracesConfig};

use crate::otlp_http::ExportClient;

mod layer;
pub(crate) use layer::layer;
#[cfg(test)]
pub(crate) use layer::{recorded, recorded_with};

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

/// The transport: the setting, else the standard variables, else gRPC.
fn protocol(cfg: &TracesConfig) -> Result<OtlpProtocol, TracesError> {
    if let Some(p) = cfg.protocol {
        return Ok(p);
    }
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = env(var) {
            return p.parse().map_err(|m: String| setting(var, m));
        }
    }
    Ok(OtlpProtocol::Grpc)
}

/// Where OTLP/HTTP posts spans. The generic `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL that
/// gets the signal's path, as the specification says; the traces variable is taken as it is;
/// the setting gets the path only when it has none.
fn http_traces_url(url: &str, from: &str) -> String {
    let base = url.trim_end_matches('/');
    let has_path = base
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    match from {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => format!("{base}/v1/traces"),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => url.to_owned(),
        _ if has_path => url.to_owned(),
        _ => format!("{base}/v1/traces"),
    }
}

fn setting(field: impl Into<String>, message: impl Into<String>) -> TracesError {
    TracesError::Setting {
        field: field.into(),
        message: message.into(),
    }
}

/// The settings to use, checked, with the URL to export to; `Ok(None)` when traces are off.
fn resolve(cfg: &TracesConfig) -> Result<Option<(String, TracesConfig)>, TracesError> {
    let Some((url, from)) = endpoint(cfg) else {
        return Ok(None);
    };
    let protocol = protocol(cfg)?;
    let resolved = TracesConfig {
        endpoint: Some(url.clone()),
        protocol: Some(protocol),
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
    let url = match protocol {
        OtlpProtocol::Grpc => url,
        OtlpProtocol::HttpProtobuf => http_traces_url(&url, from),
    };
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
    let exporter = match cfg.protocol.unwrap_or_default() {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_http_client(
                ExportClient::new().map_err(|e| TracesError::Exporter(e.to_string()))?,
            )
            .with_endpoint(url)
            .build(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(endpoint: Option<&str>, ratio: Option<f64>) -> TracesConfig {
        TracesConfig {
            endpoint: endpoint.map(str::to_owned),
            sample_ratio: ratio,
            ..TracesConfig::default()
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

    #[test]
    fn http_posts_to_the_traces_path() {
        let http = TracesConfig {
            protocol: Some(OtlpProtocol::HttpProtobuf),
            ..cfg(Some("http://collector:4318"), None)
        };
        let (url, resolved) = resolve(&http).unwrap().unwrap();
        assert_eq!(url, "http://collector:4318/v1/traces");
        assert_eq!(resolved.protocol, Some(OtlpProtocol::HttpProtobuf));
        // A setting with a path is taken as it is.
        let proxied = TracesConfig {
            endpoint: Some("https://gateway.example/otlp/v1/traces".into()),
            ..http
        };
        assert_eq!(
            resolve(&proxied).unwrap().unwrap().0,
            "https://gateway.example/otlp/v1/traces"
        );
        // The generic variable is a base; the traces variable is the whole URL.
        assert_eq!(
            http_traces_url("http://c:4318/", "OTEL_EXPORTER_OTLP_ENDPOINT"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            "http://c:4318"
        );
        // gRPC keeps the endpoint as given.
        let grpc = TracesConfig {
            protocol: Some(OtlpProtocol::Grpc),
            ..cfg(Some("http://collector:4317"), None)
        };
        assert_eq!(resolve(&grpc).unwrap().unwrap().0, "http://collector:4317");
    }

    #[test]
    fn an_unknown_protocol_is_refused_with_the_choices() {
        let e = "http/json".parse::<OtlpProtocol>().unwrap_err();
        assert!(
            e.contains("\"grpc\"") && e.contains("\"http/protobuf\""),
            "{e}"
        );
        assert!(e.contains("\"http/json\""), "{e}");
        assert_eq!(
            "http/protobuf".parse::<OtlpProtocol>(),
            Ok(OtlpProtocol::HttpProtobuf)
        );
    }
}
