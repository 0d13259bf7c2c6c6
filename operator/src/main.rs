//! `ragplane-operator`: reconciles RagCluster, ModelPool and Collection resources.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use ragplane_config::{LogFormat, OtlpProtocol, TracesConfig};
use ragplane_operator::context::Context;
use ragplane_operator::http::Health;
use ragplane_operator::leader::{Candidate, LeaseConfig};
use ragplane_operator::metrics::Metrics;
use ragplane_operator::{autoscale, collection, model_pool, rag_cluster};

/// Command-line flags; each can also be set from its environment variable.
#[derive(Debug, Parser)]
#[command(name = "ragplane-operator", version, about)]
struct Args {
    /// Namespaces to watch, comma-separated; every namespace when none is given.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// One more namespace to watch (the single-namespace form of `--namespaces`).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Reconcile only while holding the leader Lease.
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "ragplane-operator")]
    lease_name: String,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Seconds a Lease renewal lasts.
    #[arg(long, env = "LEASE_DURATION_SECS", default_value_t = 15)]
    lease_duration_secs: u64,
    /// Identity in the Lease; the pod name in a cluster.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Data-plane image repository; the tag is the RagCluster's version.
    #[arg(
        long,
        env = "RAGPLANE_IMAGE",
        default_value = "ghcr.io/ragplane/ragplane"
    )]
    default_image: String,
    /// Data-plane version of new RagClusters that set no `version`; an existing cluster keeps
    /// the version it runs until its spec names another.
    #[arg(long, env = "RAGPLANE_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    data_plane_version: String,
    /// Seconds one reconcile may run before it is dropped and retried: a hung API server or
    /// Qdrant call then delays an object by this much, not until the connection dies.
    #[arg(long, env = "RECONCILE_TIMEOUT_SECS", default_value_t = 30)]
    reconcile_timeout_secs: u64,
    /// Prometheus base URL of autoscaling rules in resources that set no `prometheusUrl`.
    #[arg(long, env = "PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// Log filter in EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info,kube=warn")]
    log_filter: String,
    /// Log format: `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// OTLP endpoint for traces (one span per reconcile); `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// and the other standard `OTEL_*` variables work too. No traces when unset.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// OTLP transport, `grpc` or `http/protobuf`; `OTEL_EXPORTER_OTLP_PROTOCOL` when unset,
    /// else `grpc`.
    #[arg(long)]
    otlp_protocol: Option<OtlpProtocol>,
}

/// The namespaces to watch, without repeats; `[None]` means every namespace.
fn watch_scopes(args: &Args) -> Vec<Option<String>> {
    let mut names: Vec<String> = Vec::new();
    for ns in args.namespaces.iter().chain(&args.namespace) {
        let ns = ns.trim();
        if !ns.is_empty() && !names.iter().any(|n| n == ns) {
            names.push(ns.to_string());
        }
    }
    if names.is_empty() {
        vec![None]
    } else {
        names.into_iter().map(Some).collect()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::EnvFilter::try_new(&args.log_filter).context("invalid log filter")?;
    let format: LogFormat = args
        .log_format
        .parse()
        .map_err(|e| anyhow::anyhow!("--log-format {e}"))?;
    let traces = TracesConfig {
        endpoint: args.otlp_endpoint.clone(),
        protocol: args.otlp_protocol,
        ..TracesConfig::default()
    };
    let telemetry =
        ragplane_telemetry::init("ragplane-operator", format, &args.log_filter, &traces)
            .context("traces")?;

    let metrics = Metrics::new();
    let health = Health {
        metrics: metrics.clone(),
        ready: Arc::new(AtomicBool::new(false)),
        leader: Arc::new(AtomicBool::new(false)),
    };
    let server = tokio::spawn(ragplane_operator::http::serve(
        args.metrics_addr,
        health.clone(),
    ));

    let client = kube::Client::try_default()
        .await
        .context("failed to create a Kubernetes client")?;
    let version = client
        .apiserver_version()
        .await
        .context("failed to reach the API server")?;
    tracing::info!(version = %version.git_version, "connected to the API server");
    health.ready.store(true, Ordering::Relaxed);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = {
        let rx = stop_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    };

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let mut candidate = None;
    if args.leader_elect {
        let config = LeaseConfig {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            duration: Duration::from_secs(args.lease_duration_secs),
        };
        tracing::info!(
            identity,
            lease = args.lease_name,
            "waiting to become leader"
        );
        // Its own client, whose requests end within the grace period: a renewal that hangs
        // past the Lease's expiry counts as failed.
        let mut lease_client = kube::Config::infer()
            .await
            .context("failed to read the Kubernetes client configuration")?;
        lease_client.connect_timeout = Some(config.request_timeout());
        lease_client.read_timeout = Some(config.request_timeout());
        lease_client.write_timeout = Some(config.request_timeout());
        let lease_client =
            kube::Client::try_from(lease_client).context("failed to create the Lease client")?;
        let mut c = Candidate::start(lease_client, &config).await?;
        let mut stop = stop_rx.clone();
        tokio::select! {
            r = c.acquired() => r?,
            _ = stop.wait_for(|s| *s) => {
                c.release().await?;
                return Ok(());
            }
        }
        tracing::info!(identity, "became leader");
        candidate = Some(c);
    }
    health.leader.store(true, Ordering::Relaxed);

    let ctx = Arc::new(
        Context::new(
            client,
            metrics,
            ragplane_operator::context::DataPlaneDefaults {
                image: args.default_image.clone(),
                version: args.data_plane_version.clone(),
            },
        )
        .with_reconcile_timeout(Duration::from_secs(args.reconcile_timeout_secs.max(1))),
    );
    // One set of controllers per watched namespace, so that a namespaced Role is enough; one
    // set over all namespaces when none is named.
    let controllers = futures::future::join_all(watch_scopes(&args).into_iter().map(|ns| {
        tracing::info!(namespace = ns.as_deref().unwrap_or("<all>"), "watching");
        futures::future::join4(
            rag_cluster::run(ctx.clone(), ns.clone(), stopped()),
            model_pool::run(ctx.clone(), ns.clone(), stopped()),
            collection::run(ctx.clone(), ns.clone(), stopped()),
            autoscale::runner::run(ctx.clone(), ns, args.prometheus_url.clone(), stopped()),
        )
    }));
    let lost = async {
        match candidate.as_mut() {
            Some(c) => c.lost().await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        _ = controllers => Ok(()),
        e = lost => Err(anyhow::Error::new(e)),
        r = server => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("the metrics server failed")),
            Err(e) => Err(anyhow::Error::new(e).context("the metrics server panicked")),
        },
    };
    if let Some(c) = candidate {
        if let Err(e) = c.release().await {
            tracing::warn!(error = %e, "failed to release the leader Lease");
        }
    }
    tracing::info!("stopped");
    telemetry.shutdown();
    result
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "ragplane-operator".into())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(argv: &[&str]) -> Vec<Option<String>> {
        let args =
            Args::try_parse_from(std::iter::once("ragplane-operator").chain(argv.iter().copied()))
                .unwrap();
        watch_scopes(&args)
    }

    #[test]
    fn no_namespace_watches_all() {
        assert_eq!(scopes(&[]), [None]);
    }

    #[test]
    fn listed_namespaces_are_watched_once_each() {
        assert_eq!(
            scopes(&["--namespaces", "a,b", "--namespace", "a"]),
            [Some("a".to_string()), Some("b".to_string())]
        );
    }
}
