//! In-process queue workers: claim a job, run it, record the outcome. On shutdown a worker
//! stops claiming, finishes the job it holds, then exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::error::Error;
use crate::ingest::pipeline::ingest_document;
use crate::metadata::DocumentStatus;
use crate::metrics;
use crate::queue::{FailOutcome, Job, Task, DOCUMENTS, QUEUES};

/// Starts `concurrency` workers on the `documents` queue; they stop when `shutdown` fires.
pub fn spawn_workers(
    app: Arc<App>,
    concurrency: usize,
    shutdown: CancellationToken,
) -> JoinSet<()> {
    let instance = uuid::Uuid::new_v4().simple().to_string();
    let mut set = JoinSet::new();
    for i in 0..concurrency {
        let worker = format!("{}-{i}", &instance[..12]);
        set.spawn(run_worker(app.clone(), worker, shutdown.clone()));
    }
    set.spawn(refresh_queue_metrics(app, shutdown));
    set
}

async fn run_worker(app: Arc<App>, worker: String, shutdown: CancellationToken) {
    let poll = Duration::from_millis(app.config.workers.poll_interval_ms);
    while !shutdown.is_cancelled() {
        match app.queue.claim(DOCUMENTS, &worker).await {
            Ok(Some(job)) => run_job(&app, job).await,
            Ok(None) => {
                tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    () = shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, worker, "failed to claim a job");
                tokio::time::sleep(poll * 4).await;
            }
        }
    }
    tracing::debug!(worker, "worker stopped");
}

/// Runs one claimed job and records its outcome; a failure that is final marks the document
/// `failed` with the reason.
pub async fn run_job(app: &App, job: Job) {
    let started = Instant::now();
    let result = match &job.task {
        Some(Task::IngestDocument { document_id }) => ingest_document(app, document_id).await,
        None => Err(Error::invalid(
            "payload",
            format!("job {} has an unreadable payload", job.id),
        )),
    };
    metrics::JOB_DURATION
        .with_label_values(&[&job.queue])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(chunks) => {
            metrics::JOBS
                .with_label_values(&[&job.queue, "succeeded"])
                .inc();
            tracing::info!(job = %job.id, document = ?job.document_id, chunks, "job succeeded");
            if let Err(e) = app.queue.complete(&job.id).await {
                tracing::warn!(job = %job.id, error = %e, "failed to mark job complete; it will run again");
            }
        }
        Err(e) => {
            let message = e.to_string();
            let outcome = app.queue.fail(&job.id, &message, e.is_retryable()).await;
            let label = match outcome {
                Ok(FailOutcome::Retrying) => "retrying",
                Ok(FailOutcome::Dead) => "dead",
                Err(_) => "error",
            };
            metrics::JOBS.with_label_values(&[&job.queue, label]).inc();
            tracing::warn!(job = %job.id, error = %message, outcome = label, "job failed");
            if let (Ok(FailOutcome::Dead), Some(doc)) = (outcome, &job.document_id) {
                if let Err(e) = app
                    .metadata
                    .set_document_status(doc, DocumentStatus::Failed, Some(&message), 0)
                    .await
                {
                    tracing::error!(document = %doc, error = %e, "failed to mark document failed");
                }
            }
        }
    }
}

/// Re-queues documents left without a live job by a crash between storing and enqueueing.
pub async fn requeue_orphans(app: &App) -> crate::error::Result<usize> {
    let orphans = app.metadata.orphaned_documents().await?;
    for d in &orphans {
        app.enqueue_ingest(&d.tenant_id, &d.id).await?;
    }
    if !orphans.is_empty() {
        tracing::warn!(count = orphans.len(), "re-queued documents that had no job");
    }
    Ok(orphans.len())
}

async fn refresh_queue_metrics(app: Arc<App>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        if let Ok(stats) = app.queue.stats().await {
            metrics::QUEUE_DEPTH.reset();
            metrics::QUEUE_IN_FLIGHT.reset();
            metrics::QUEUE_DEAD.reset();
            for &q in QUEUES {
                let s = stats
                    .iter()
                    .find(|s| s.queue == q)
                    .cloned()
                    .unwrap_or_default();
                metrics::QUEUE_DEPTH
                    .with_label_values(&[q])
                    .set(s.waiting + s.in_flight);
                metrics::QUEUE_IN_FLIGHT
                    .with_label_values(&[q])
                    .set(s.in_flight);
                metrics::QUEUE_DEAD.with_label_values(&[q]).set(s.dead);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = shutdown.cancelled() => {}
        }
    }
}
