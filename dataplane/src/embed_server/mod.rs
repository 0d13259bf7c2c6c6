//! `ragplane embed-server`: the embedding model behind HTTP, for GPU nodes.
//!
//! ```text
//!   HTTP (axum)                       embed::onnx (shared with the local embedder)
//!   POST /v1/embeddings  ─┐
//!   POST /v1/embed       ─┼─▶ OnnxEmbedder ─▶ bounded queue ─▶ one inference thread per session
//!   GET  /info, /v1/models│      (full: 429 + Retry-After)     and device: cuda:0, cuda:1, … or cpu;
//!   GET  /healthz /readyz │                                    each drains the queue and cuts
//!   GET  /metrics        ─┘                                    batches by padded tokens
//! ```
//!
//! Devices come from [`crate::embed::device::plan_devices`]: every GPU the CUDA driver lists (or
//! those picked with `devices`), else the CPU with the reason logged. A GPU whose session cannot
//! be created (an ONNX Runtime without the CUDA provider, missing cuDNN) is left out, and with no
//! GPU left the CPU serves, unless `require_gpu` is set. The server binds only after the model is loaded, so a
//! listening server is a ready one.

mod http;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ragplane_config::{Config, EmbedServerConfig, DEFAULT_GPU_MAX_BATCH_TOKENS};
use tokio::net::TcpListener;

use crate::embed::device::{plan_devices, DevicePlan};
use crate::embed::onnx::OnnxEmbedder;
use crate::metrics;

/// What every handler shares.
pub struct ServerState {
    embedder: OnnxEmbedder,
    plan: DevicePlan,
    model: String,
    dimension: usize,
    max_batch_tokens: usize,
    queue_capacity: usize,
    max_inputs: usize,
}

/// A loaded model, ready to be served.
pub struct EmbedServer {
    state: Arc<ServerState>,
    config: EmbedServerConfig,
}

impl EmbedServer {
    /// Finds the devices and loads one session per device (off the async runtime).
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        config.validate()?;
        metrics::init();
        let server = config.embed_server.clone();
        let mut ecfg = config.embedding.clone();
        let (embedder, plan, ecfg) = tokio::task::spawn_blocking(move || {
            let plan = plan_devices(&server.devices, server.require_gpu)?;
            if let Some(why) = &plan.cpu_reason {
                tracing::warn!(reason = %why, "embedding on the CPU");
            }
            let on_gpu = plan.devices.iter().any(|d| d.is_gpu());
            ecfg.sessions = server.sessions_per_device;
            ecfg.queue_capacity = server.queue_capacity;
            ecfg.max_batch_tokens = server.max_batch_tokens.unwrap_or(if on_gpu {
                DEFAULT_GPU_MAX_BATCH_TOKENS
            } else {
                ecfg.max_batch_tokens
            });
            if on_gpu {
                // A GPU batch takes milliseconds; small bulk batches would only waste it.
                ecfg.bulk_batch_tokens = ecfg.max_batch_tokens;
            }
            let (embedder, used) = OnnxEmbedder::start_on(&ecfg, &plan, server.require_gpu)?;
            anyhow::Ok((embedder, used, ecfg))
        })
        .await
        .context("model loading panicked")??;
        let s = &config.embed_server;
        let max_batch_tokens = ecfg.max_batch_tokens;
        Ok(Self {
            state: Arc::new(ServerState {
                embedder,
                plan,
                model: config.embedding.model_name.clone(),
                dimension: config.embedding.dimension,
                max_batch_tokens,
                queue_capacity: s.queue_capacity,
                max_inputs: s.max_inputs_per_request,
            }),
            config: s.clone(),
        })
    }

    /// The devices the sessions run on, and why the CPU was used if it was.
    pub fn devices(&self) -> &DevicePlan {
        &self.state.plan
    }

    /// The HTTP routes with their middleware.
    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone(), &self.config)
    }

    /// Serves on `listener` until `shutdown` completes, then drains in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let rate = tokio::spawn(track_rate());
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        rate.abort();
        result.context("failed to serve HTTP")
    }
}

/// Updates `ragplane_embed_embeddings_per_second` from the embeddings counter every 5 s.
async fn track_rate() {
    const PERIOD: Duration = Duration::from_secs(5);
    let mut last = metrics::EMBEDDINGS_TOTAL.get();
    let mut tick = tokio::time::interval(PERIOD);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = metrics::EMBEDDINGS_TOTAL.get();
        let per_sec = (now.saturating_sub(last)) / PERIOD.as_secs();
        metrics::EMBEDDINGS_PER_SECOND.set(i64::try_from(per_sec).unwrap_or(i64::MAX));
        last = now;
    }
}

/// Runs `ragplane embed-server` until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.embed_server.listen;
    let grace = Duration::from_secs(config.embed_server.shutdown_grace_secs);
    let server = EmbedServer::start(&config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("failed to listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let devices: Vec<String> = server
        .devices()
        .devices
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(%addr, devices = %devices.join(", "), "embed-server listening");
    // On stdout, so that scripts and tests started with port 0 can find the port.
    println!("embed-server listening on http://{addr}");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    crate::server::wait_for_signal().await;
    tracing::info!("shutting down: draining requests");
    let _ = tx.send(());
    match tokio::time::timeout(grace, serving).await {
        Ok(joined) => joined.context("the HTTP server task failed")??,
        Err(_) => tracing::warn!("requests did not finish within the grace period"),
    }
    tracing::info!("stopped");
    Ok(())
}
