//! Queue workers: claim a job, run it, record the outcome. While a job runs, its worker renews
//! the claim, so that only a dead worker's jobs are taken over by others. On shutdown a worker
//! stops claiming, finishes the job it holds, then exits; whatever is still held when the grace
//! period ends is given back to the queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ragplane_telemetry::propagation;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::app::App;
use crate::error::Error;
use crate::ingest::pipeline::ingest_document;
use crate::metadata::DocumentStatus;
use crate::metrics;
use crate::queue::{FailOutcome, Job, Task, DOCUMENTS, QUEUES};

/// Running workers: their tasks and their names (for giving jobs back).
pub struct Workers {
    /// The worker tasks (and the queue metrics refresher).
    pub set: JoinSet<()>,
    /// Worker names, as recorded on the jobs they claim.
    pub names: Vec<String>,
}

impl Workers {
    /// Waits up to `grace` for the workers to finish the jobs they hold (after `shutdown` has
    /// fired), then gives back whatever is still held so another worker runs it at once.
    pub async fn drain(mut self, app: &App, grace: Duration) {
        let finished = tokio::time::timeout(grace, async {
            while self.set.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if finished {
            return;
        }
        tracing::warn!(
            ?grace,
            "workers did not finish within the grace period; giving their jobs back"
        );
        self.set.abort_all();
        for name in &self.names {
            match app.queue.release(name).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(worker = %name, jobs = n, "gave jobs back to the queue"),
                Err(e) => {
                    tracing::warn!(worker = %name, error = %e, "failed to give jobs back; they are reclaimed after the visibility timeout")
                }
            }
        }
    }
}

/// Starts `concurrency` workers on the `documents` queue; they stop when `shutdown` fires.
pub fn spawn_workers(app: Arc<App>, concurrency: usize, shutdown: CancellationToken) -> Workers {
    spawn_queue_workers(app, &[DOCUMENTS.to_string()], concurrency, shutdown)
}

/// Starts `concurrency` workers, each taking jobs from `queues` in turn; they stop claiming
/// when `shutdown` fires and return once the job they hold is done.
pub fn spawn_queue_workers(
    app: Arc<App>,
    queues: &[String],
    concurrency: usize,
    shutdown: CancellationToken,
) -> Workers {
    let stable = app.config.workers.instance.clone();
    let instance = stable
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    let mut set = JoinSet::new();
    let mut names = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let worker = format!("{instance}-{i}");
        names.push(worker.clone());
        set.spawn(run_worker(
            app.clone(),
            queues.to_vec(),
            worker,
            stable.is_some(),
            shutdown.clone(),
        ));
    }
    set.spawn(sweep(app.clone(), shutdown.clone()));
    set.spawn(refresh_queue_metrics(app, shutdown));
    Workers { set, names }
}

/// Gives back the jobs an earlier, crashed process left claimed under `worker`'s name. Failing
/// that, they are taken over after the visibility timeout, as any dead worker's.
async fn requeue_left_claims(app: &App, worker: &str) {
    match app.queue.recover(worker).await {
        Ok(0) => {}
        Ok(jobs) => tracing::warn!(
            worker,
            jobs,
            "requeued jobs an earlier process of this name left running (it crashed or was killed)"
        ),
        Err(e) => tracing::warn!(
            worker,
            error = %e,
            "failed to requeue jobs an earlier process of this name may have left; they are \
             taken over after the visibility timeout"
        ),
    }
}

async fn run_worker(
    app: Arc<App>,
    queues: Vec<String>,
    worker: String,
    stable_name: bool,
    shutdown: CancellationToken,
) {
    if stable_name {
        requeue_left_claims(&app, &worker).await;
    }
    let poll = Duration::from_millis(app.config.workers.poll_interval_ms);
    let mut next = 0;
    while !shutdown.is_cancelled() {
        // Try each queue once, starting after the one served last, so none starves.
        let mut claimed = None;
        let mut failed = false;
        for k in 0..queues.len() {
            let q = &queues[(next + k) % queues.len()];
            match app.queue.claim(q, &worker).await {
                Ok(Some(job)) => {
                    next = (next + k + 1) % queues.len();
                    claimed = Some(job);
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, worker, queue = %q, "failed to claim a job");
                    failed = true;
                }
            }
        }
        match claimed {
            Some(job) => run_guarded(&app, job, &worker).await,
            None => {
                let wait = if failed { poll * 4 } else { poll };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => {}
                }
            }
        }
    }
    tracing::debug!(worker, "worker stopped");
}

/// Runs a job so that a panic inside it fails that attempt instead of ending the worker: the
/// worker lives on to claim the next job, and the attempt is recorded as a retryable failure
/// (the job is dead-lettered once out of attempts, as any other).
async fn run_guarded(app: &App, job: Job, worker: &str) {
    use futures::FutureExt;
    let attempt = job.clone();
    let outcome = std::panic::AssertUnwindSafe(run_job_renewing(app, job, worker))
        .catch_unwind()
        .await;
    if let Err(panic) = outcome {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        metrics::JOBS
            .with_label_values(&[&attempt.queue, "panicked"])
            .inc();
        tracing::error!(job = %attempt.id, worker, panic = %what, "a job panicked; the worker goes on");
        if let Err(e) = app
            .queue
            .fail(
                &attempt,
                worker,
                &format!("the worker panicked: {what}"),
                true,
            )
            .await
        {
            tracing::warn!(job = %attempt.id, error = %e, "failed to record the panic; the claim runs out instead");
        }
    }
}

/// Runs a job while renewing `worker`'s claim on it every third of the visibility timeout.
async fn run_job_renewing(app: &App, job: Job, worker: &str) {
    let every = Duration::from_secs(app.config.queue.settings().visibility_timeout_secs.max(3)) / 3;
    let job_id = job.id.clone();
    let renew = async {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            match app.queue.renew(&job_id, worker).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(job = %job_id, worker, "lost the claim on a running job; another worker may run it too")
                }
                Err(e) => {
                    tracing::warn!(job = %job_id, error = %e, "failed to renew a job's claim")
                }
            }
        }
    };
    tokio::select! {
        () = run_job(app, job, worker) => {}
        () = renew => {}
    }
}

/// How long after it was queued a job that needs the embedding model its collection is
/// switching to waits for a worker running that model; past it, a worker still on the old
/// model fails it (the document is `failed` with the reason).
pub const OUTDATED_MODEL_WAIT: Duration = Duration::from_secs(15 * 60);

/// When a job left by a worker on the old model may be claimed again.
const OUTDATED_MODEL_RETRY: Duration = Duration::from_secs(5);

/// Runs one job that `worker` claimed and records its outcome; a failure that is final marks
/// the document `failed` with the reason. An attempt past `workers.max_job_seconds` is
/// abandoned as a retryable failure. When the claim expired meanwhile and the job went to
/// another attempt, this attempt's outcome is dropped: the newer one decides.
pub async fn run_job(app: &App, job: Job, worker: &str) {
    // The job joins the trace of the request that queued it, and its log lines (its outcome's
    // among them) carry that trace's id, as the request's lines do.
    let span = tracing::info_span!(
        "job",
        otel.kind = "consumer",
        job = %job.id,
        queue = %job.queue,
        kind = %job.kind,
        attempt = job.attempts,
        trace_id = tracing::field::Empty,
    );
    if let Some(tp) = job.task.as_ref().and_then(Task::traceparent) {
        propagation::set_parent(&span, propagation::from_traceparent(tp));
    }
    if let Some(t) = propagation::trace_id_of(&span) {
        span.record("trace_id", t);
    }
    attempt_and_record(app, job, worker).instrument(span).await;
}

/// [`run_job`] inside the job's span: one attempt, then its outcome in the queue.
async fn attempt_and_record(app: &App, job: Job, worker: &str) {
    let started = Instant::now();
    let limit = Duration::from_secs(app.config.workers.max_job_seconds.max(1));
    let result = tokio::time::timeout(limit, attempt(app, &job))
        .await
        .unwrap_or_else(|_| {
            Err(Error::Internal(format!(
                "abandoned after workers.max_job_seconds ({} s)",
                limit.as_secs()
            )))
        });
    metrics::JOB_DURATION
        .with_label_values(&[&job.queue])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(chunks) => match app.queue.complete(&job, worker).await {
            Ok(true) => {
                metrics::JOBS
                    .with_label_values(&[&job.queue, "succeeded"])
                    .inc();
                tracing::info!(job = %job.id, document = ?job.document_id, chunks, "job succeeded");
            }
            Ok(false) => not_held(&job, worker),
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "failed to mark job complete; it will run again");
            }
        },
        // A worker on the model its collection is switching from, as during a rollout: the
        // job waits for a worker with the new model, the attempt not counted, for a while.
        Err(Error::OutdatedModel(reason)) if !older_than(&job.created_at, OUTDATED_MODEL_WAIT) => {
            let reason = format!("{reason}; left to a worker with the new model");
            match app
                .queue
                .defer(&job, worker, &reason, OUTDATED_MODEL_RETRY)
                .await
            {
                Ok(true) => {
                    metrics::JOBS
                        .with_label_values(&[&job.queue, "deferred"])
                        .inc();
                    tracing::info!(job = %job.id, worker, reason, "job left to a worker with the new model");
                }
                Ok(false) => not_held(&job, worker),
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "failed to give a job back; its claim runs out instead");
                }
            }
        }
        Err(e) => {
            let message = match &e {
                Error::OutdatedModel(reason) => format!(
                    "{reason}; no worker with the new model took the job within {} minutes",
                    OUTDATED_MODEL_WAIT.as_secs() / 60
                ),
                _ => e.to_string(),
            };
            let outcome = app
                .queue
                .fail(&job, worker, &message, e.is_retryable())
                .await;
            let label = match outcome {
                Ok(Some(FailOutcome::Retrying)) => "retrying",
                Ok(Some(FailOutcome::Dead)) => "dead",
                Ok(None) => return not_held(&job, worker),
                Err(_) => "error",
            };
            metrics::JOBS.with_label_values(&[&job.queue, label]).inc();
            tracing::warn!(job = %job.id, error = %message, outcome = label, "job failed");
            if let (Ok(Some(FailOutcome::Dead)), Some(doc)) = (outcome, &job.document_id) {
                if let Err(e) = app
                    .metadata
                    .set_document_status(doc, DocumentStatus::Failed, Some(&message), 0)
                    .await
                {
                    tracing::error!(document = %doc, error = %e, "failed to mark document failed");
                } else if let Ok(Some(d)) = app.metadata.document(doc).await {
                    // It may have been the last document its collection's model switch
                    // waited for.
                    app.settle_switch(&d.collection_id).await;
                }
            }
        }
    }
}

fn not_held(job: &Job, worker: &str) {
    metrics::JOBS
        .with_label_values(&[&job.queue, "superseded"])
        .inc();
    tracing::warn!(
        job = %job.id,
        worker,
        attempt = job.attempts,
        "the claim on this attempt expired and another attempt holds the job; its outcome is dropped"
    );
}

/// One attempt at a job's task.
async fn attempt(app: &App, job: &Job) -> crate::error::Result<usize> {
    match &job.task {
        // Every allowed attempt was started and the last one's worker died (or was killed)
        // while running it: a job that kills its workers must not kill them forever.
        _ if job.attempts > job.max_attempts => Err(Error::invalid(
            "job",
            format!(
                "abandoned: the workers running its {} attempts stopped before finishing",
                job.max_attempts
            ),
        )),
        Some(task @ Task::IngestDocument { document_id, .. }) => {
            ingest_document(app, document_id, task.replaces_probe()).await
        }
        None => Err(Error::invalid(
            "payload",
            format!("job {} has an unreadable payload", job.id),
        )),
    }
}

/// Re-queues documents left `queued` or `processing` without a live job for at least
/// `min_age` (a crash between storing an upload and queueing it, or between a job's end and its
/// document's status). The age keeps a document whose job is being queued right now out.
pub async fn requeue_orphans(app: &App, min_age: Duration) -> crate::error::Result<usize> {
    let mut orphans = Vec::new();
    for d in app.metadata.orphaned_documents().await? {
        if older_than(&d.updated_at, min_age) && !app.queue.has_live_job(&d.id).await? {
            orphans.push(d);
        }
    }
    for d in &orphans {
        app.enqueue_ingest(&d.tenant_id, &d.id).await?;
    }
    if !orphans.is_empty() {
        tracing::warn!(count = orphans.len(), "re-queued documents that had no job");
    }
    Ok(orphans.len())
}

/// Finishes deletions left part-way (a document still marked `deleting` after `min_age`).
pub async fn finish_deletions(app: &App, min_age: Duration) -> crate::error::Result<usize> {
    let mut n = 0;
    for d in app.metadata.deleting_documents().await? {
        if !older_than(&d.updated_at, min_age) {
            continue;
        }
        match app.metadata.collection_by_id(&d.collection_id).await? {
            Some(c) => app.finish_document_deletion(&c, &d).await?,
            // Its collection went with its points; only the row is left.
            None => app.metadata.delete_document(&d.id).await?,
        }
        n += 1;
    }
    if n > 0 {
        tracing::warn!(count = n, "finished deleting documents left part-way");
    }
    Ok(n)
}

fn older_than(rfc3339: &str, age: Duration) -> bool {
    crate::metadata::parse_rfc3339(rfc3339).is_none_or(|t| {
        chrono::Utc::now()
            .signed_duration_since(t)
            .to_std()
            .unwrap_or_default()
            >= age
    })
}

/// Completes model switches whose last document was indexed by a process that stopped
/// before it checked; at a process start (`at_start`), also drops the previous generations
/// that switches left behind. A sweep leaves those to the drain of the process that switched.
pub async fn finish_switches(app: &App, at_start: bool) -> crate::error::Result<()> {
    for c in app.metadata.generational_collections(at_start).await? {
        if c.next_probe.is_some() {
            app.advance_switch(&c.id).await?;
        } else if at_start {
            app.drop_previous_generation(&c).await?;
        }
    }
    Ok(())
}

/// Re-queues orphaned documents (a failure is returned: it stops a start), finishes
/// deletions left part-way and model switches left pending (a failure is logged and retried
/// next time). Run when a process starts (`at_start`), before its workers claim, and by the
/// workers' sweep.
pub async fn recover(app: &App, at_start: bool) -> crate::error::Result<()> {
    let age = Duration::from_secs(app.config.workers.orphan_check_secs);
    requeue_orphans(app, age).await?;
    if let Err(e) = finish_deletions(app, age).await {
        tracing::warn!(error = %e, "failed to finish deletions left part-way; the workers retry");
    }
    if let Err(e) = finish_switches(app, at_start).await {
        tracing::warn!(error = %e, "failed to finish model switches left pending; the workers retry");
    }
    Ok(())
}

/// How long a queue worker that holds no job and asks for none is remembered (a polling worker
/// asks every `workers.poll_interval_ms`; one of a pod that is gone never asks again).
const IDLE_WORKER_RETENTION: Duration = Duration::from_secs(3600);

/// Every `workers.orphan_check_secs`: re-queues orphaned documents and finishes deletions
/// left part-way, so that neither waits for the next process start, and forgets queue workers
/// idle for [`IDLE_WORKER_RETENTION`].
async fn sweep(app: Arc<App>, shutdown: CancellationToken) {
    let every = Duration::from_secs(app.config.workers.orphan_check_secs.max(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = recover(&app, false).await {
            tracing::warn!(error = %e, "failed to look for documents without a job");
        }
        match app.queue.forget_idle_workers(IDLE_WORKER_RETENTION).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(workers = n, "forgot queue workers idle for an hour"),
            Err(e) => tracing::warn!(error = %e, "failed to forget idle queue workers"),
        }
    }
}

/// Every 2 s until `shutdown`: the queue gauges (`ragplane_queue_depth`, in flight, dead) from
/// the shared queue's own counts, the same in every process.
pub(crate) async fn refresh_queue_metrics(app: Arc<App>, shutdown: CancellationToken) {
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
