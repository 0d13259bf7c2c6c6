//! The long-running processes. `ragplane serve` builds the application, prints the first admin
//! key, starts the workers (unless disabled; then it still exports the queue's depth) and serves
//! HTTP until SIGINT or SIGTERM, then
//! drains requests and jobs and flushes the index. `ragplane worker` runs only queue workers,
//! with `/healthz`, `/readyz` and `/metrics` for its probes and scraping; on SIGTERM it stops
//! claiming, finishes the jobs it holds, and exits.

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
    refuse_a_key_that_could_not_be_handed_over(&app).await?;
    if let Some(key) = app.bootstrap_admin_key().await? {
        reveal_admin_key(&app.config.data_dir, &key)?;
    }
    if app.config.auth.disabled {
        tracing::warn!(
            "authentication is disabled: every request acts as the default tenant's admin"
        );
    }
    let shutdown = CancellationToken::new();
    let usage = tokio::spawn(app.clone().keep_usage(shutdown.clone()));
    let mut workers = None;
    if workers_enabled {
        crate::worker::recover(&app, true).await?;
        workers = Some(crate::worker::spawn_workers(
            app.clone(),
            concurrency,
            shutdown.clone(),
        ));
    } else {
        // The API exports the shared queue's depth too, so that a worker pool scaled to zero
        // (which exports nothing) can be scaled up from it.
        tokio::spawn(crate::worker::refresh_queue_metrics(
            app.clone(),
            shutdown.clone(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("failed to listen on {listen}: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "ragplane listening");
    let router = crate::api::router(app.clone());
    let signal = shutdown.clone();
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: draining requests and jobs");
        signal.cancel();
    })
    .await?;
    if let Some(w) = workers {
        w.drain(&app, grace).await;
    }
    // Its last write of the usage counters.
    let _ = usage.await;
    app.vectors.flush().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Runs queue workers on `queues` until a shutdown signal, serving the service endpoints on
/// `config.server.listen`.
pub async fn run_workers(config: Config, queues: Vec<String>) -> anyhow::Result<()> {
    for q in &queues {
        anyhow::ensure!(
            crate::queue::QUEUES.contains(&q.as_str()),
            "--queues: unknown queue {q:?} (known: {})",
            crate::queue::QUEUES.join(", ")
        );
    }
    let listen = config.server.listen;
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let concurrency = config.workers.concurrency;
    let app = Arc::new(App::build(config).await?);
    let shutdown = CancellationToken::new();
    crate::worker::recover(&app, true).await?;
    let workers =
        crate::worker::spawn_queue_workers(app.clone(), &queues, concurrency, shutdown.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("failed to listen on {listen}: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, ?queues, concurrency, "ragplane worker running");
    let signal = shutdown.clone();
    axum::serve(listener, crate::api::service_router(app.clone()))
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: no new jobs; finishing the jobs in hand");
            signal.cancel();
        })
        .await?;
    workers.drain(&app, grace).await;
    app.vectors.flush().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
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

/// Fails before any key is stored when one would be generated but could not be written: not
/// on a terminal, and `<data_dir>/admin-key` already there (it is never overwritten). Storing
/// first would leave an admin key that nobody holds, and no later start would make another.
async fn refuse_a_key_that_could_not_be_handed_over(app: &App) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let path = admin_key_path(&app.config.data_dir);
    if app.config.auth.admin_key.is_none()
        && !std::io::stdout().is_terminal()
        && path.exists()
        && app.metadata.count_admin_keys().await? == 0
    {
        anyhow::bail!(
            "there is no admin key yet, and the one to be generated cannot be written to {}: \
             that file exists (from an earlier data directory?). Keep the key it holds if you \
             still need it, remove the file, and start again; or give a key with --admin-key",
            path.display()
        );
    }
    Ok(())
}

/// Hands a generated admin key to the person starting the server, once; only its hash is
/// stored. On a terminal it is printed. Anywhere else (a log collector, a CI job, a pod's log)
/// it is written to `<data_dir>/admin-key`, readable by its owner only (0600), and the log says
/// where.
fn reveal_admin_key(data_dir: &std::path::Path, key: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        println!("admin API key (shown once, store it now): {key}");
        return Ok(());
    }
    let path = write_admin_key(data_dir, key)?;
    tracing::warn!(
        path = %path.display(),
        "generated an admin API key; it is in this file (mode 0600), not in the log: read it, store it, delete the file"
    );
    Ok(())
}

/// Where a generated admin key is handed over when stdout is not a terminal.
fn admin_key_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("admin-key")
}

/// Writes `key` to `<data_dir>/admin-key` with mode 0600, replacing nothing: an existing file is
/// an error, not overwritten.
pub fn write_admin_key(
    data_dir: &std::path::Path,
    key: &str,
) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(data_dir)?;
    let path = admin_key_path(data_dir);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("failed to write the admin key to {}: {e}", path.display()))?;
    writeln!(f, "{key}")?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_admin_key_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = super::write_admin_key(dir.path(), "rp_secret").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "rp_secret\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(super::write_admin_key(dir.path(), "rp_other").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "rp_secret\n");
    }
}
