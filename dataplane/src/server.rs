//! `ragplane serve`: builds the application, prints the first admin key, starts the workers and
//! serves HTTP until SIGINT or SIGTERM, then drains requests and jobs and flushes the index.

use std::sync::Arc;
use std::time::Duration;

use ragplane_config::Config;
use tokio_util::sync::CancellationToken;

use crate::app::App;

/// Runs the server until a shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let workers_enabled = config.workers.enabled;
    let concurrency = config.workers.concurrency;
    let app = Arc::new(App::build(config).await?);
    if let Some(key) = app.bootstrap_admin_key().await? {
        // Printed once, on stdout, so scripts can capture it; only its hash is stored.
        println!("admin API key (shown once, store it now): {key}");
    }
    if app.config.auth.disabled {
        tracing::warn!(
            "authentication is disabled: every request acts as the default tenant's admin"
        );
    }
    let shutdown = CancellationToken::new();
    let mut workers = None;
    if workers_enabled {
        crate::worker::requeue_orphans(&app).await?;
        workers = Some(crate::worker::spawn_workers(
            app.clone(),
            concurrency,
            shutdown.clone(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("failed to listen on {listen}: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "ragplane listening");
    let router = crate::api::router(app.clone());
    let signal = shutdown.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: draining requests and jobs");
            signal.cancel();
        })
        .await?;
    if let Some(mut set) = workers {
        // Workers finish the job they hold; whatever is still running at the deadline is
        // abandoned and will be re-queued on the next start.
        if tokio::time::timeout(grace, async { while set.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!("workers did not finish within the grace period");
        }
    }
    app.vectors.flush().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
