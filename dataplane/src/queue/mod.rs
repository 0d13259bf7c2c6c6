//! Job queues: the [`JobQueue`] trait, the durable SQLite implementation of the embedded data
//! plane and the Redis Streams implementation shared by many processes.
//!
//! Delivery is at least once. A claimed job is invisible for the visibility timeout; if its
//! worker dies, the job becomes claimable again when the lease runs out. A failed attempt is
//! retried with exponential backoff until `max_attempts`, after which the job is dead-lettered
//! with its last error. Only the holder of the current attempt (its worker and attempt number,
//! a fencing token) can complete or fail a job: a worker whose claim expired cannot overwrite
//! what the newer attempt records.

#[cfg(test)]
pub(crate) mod conformance;
pub mod redis;
pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::redis::RedisQueue;
pub use sqlite::SqliteQueue;

/// The queue that carries document ingestion jobs.
pub const DOCUMENTS: &str = "documents";

/// Every queue this build knows; metrics report each, empty ones included, and workers accept
/// only these names. Ingestion is the only queued work: embedding and generation are requests
/// to model servers, which scale as ModelPools.
pub const QUEUES: &[&str] = &[DOCUMENTS];

/// Milliseconds since the Unix epoch, the queues' clock for run-at times.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The queues' clock `delay` from now.
pub(crate) fn ms_after(delay: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2))
}

/// Exponential backoff for attempt `attempt` (1-based), capped at five minutes.
pub fn backoff_for(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(16))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(Duration::from_secs(300))
}

/// What becomes of a failed attempt, the `attempts`-th, of a job allowed `max_attempts`: retried
/// after the backoff (and when), or dead-lettered now.
pub(crate) fn after_failure(
    attempts: i64,
    max_attempts: u32,
    backoff: Duration,
    retryable: bool,
) -> (FailOutcome, i64) {
    if retryable && attempts < i64::from(max_attempts) {
        let delay = backoff_for(backoff, u32::try_from(attempts).unwrap_or(u32::MAX));
        (FailOutcome::Retrying, ms_after(delay))
    } else {
        (FailOutcome::Dead, now_ms())
    }
}

/// Refuses a queue name this build does not know.
pub fn known_queue(queue: &str) -> Result<()> {
    if QUEUES.contains(&queue) {
        Ok(())
    } else {
        Err(QueueError::UnknownQueue(queue.to_string()))
    }
}

/// Errors of a queue backend.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database failed.
    #[error("failed to {action}: {source}")]
    Database {
        /// What was being done.
        action: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// Redis failed or could not be reached.
    #[error("failed to {action}: {source}")]
    Redis {
        /// What was being done.
        action: &'static str,
        /// The client's error.
        source: ::redis::RedisError,
    },
    /// A job's payload could not be encoded or decoded.
    #[error("failed to encode job payload: {0}")]
    Payload(#[from] serde_json::Error),
    /// The queue name is not one this build knows.
    #[error("unknown queue {0:?} (the only queue is documents)")]
    UnknownQueue(String),
    /// No job has this id.
    #[error("job {0:?} not found")]
    UnknownJob(String),
}

/// Result alias for queue operations.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting to be claimed (possibly after a failed attempt).
    Queued,
    /// Claimed by a worker.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Out of attempts; kept with its last error.
    Dead,
}

impl JobStatus {
    /// The stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
        }
    }

    /// Parses the stored text form.
    pub fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "dead" => Self::Dead,
            _ => Self::Queued,
        }
    }
}

/// What a job asks a worker to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    /// Parse, chunk, embed and index a document (replacing its previous points).
    IngestDocument {
        /// Document id.
        document_id: String,
        /// W3C `traceparent` of the request that queued the job, so that the worker's spans
        /// join its trace; absent when traces are off.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        traceparent: Option<String>,
        /// When an in-place reindex queued the job: the encoded probe of the embedding model
        /// whose vectors it replaces. A worker still on that model (a rollout not yet done)
        /// leaves the job to one with the new model instead of failing it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces_probe: Option<String>,
    },
}

impl Task {
    fn kind(&self) -> &'static str {
        match self {
            Self::IngestDocument { .. } => "ingest_document",
        }
    }

    fn document_id(&self) -> Option<&str> {
        match self {
            Self::IngestDocument { document_id, .. } => Some(document_id),
        }
    }

    /// The probe of the model an in-place reindex replaces ([`Task::IngestDocument`]).
    pub fn replaces_probe(&self) -> Option<&str> {
        match self {
            Self::IngestDocument { replaces_probe, .. } => replaces_probe.as_deref(),
        }
    }

    /// The `traceparent` of the request that queued the job.
    pub fn traceparent(&self) -> Option<&str> {
        match self {
            Self::IngestDocument { traceparent, .. } => traceparent.as_deref(),
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// Tenant the job works for.
    #[serde(skip)]
    pub tenant_id: String,
    /// Queue name.
    pub queue: String,
    /// Kind of task.
    pub kind: String,
    /// Document the job concerns, if any.
    pub document_id: Option<String>,
    /// Current state.
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: i64,
    /// Attempts allowed before dead-lettering.
    pub max_attempts: i64,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// The task.
    #[serde(skip)]
    #[schema(ignore)]
    pub task: Option<Task>,
}

/// Per-queue counts for metrics and autoscaling.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Waiting to be claimed.
    pub waiting: i64,
    /// Claimed and unfinished.
    pub in_flight: i64,
    /// Dead-lettered.
    pub dead: i64,
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Queued again for a later attempt.
    Retrying,
    /// Out of attempts (or not retryable): dead-lettered.
    Dead,
}

/// A durable job queue.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Adds a job for `tenant_id` to `queue`.
    async fn enqueue(&self, tenant_id: &str, queue: &str, task: Task) -> Result<Job>;
    /// Claims the oldest runnable job of `queue` for `worker`, if any.
    async fn claim(&self, queue: &str, worker: &str) -> Result<Option<Job>>;
    /// Marks `job` done, if `worker` still holds the attempt it claimed (`job.attempts`);
    /// `false` when the claim expired and the job went to another attempt, which then decides.
    async fn complete(&self, job: &Job, worker: &str) -> Result<bool>;
    /// Records a failed attempt of `job` (retried with backoff unless out of attempts or not
    /// retryable), if `worker` still holds that attempt; `None` when it does not.
    async fn fail(
        &self,
        job: &Job,
        worker: &str,
        error: &str,
        retryable: bool,
    ) -> Result<Option<FailOutcome>>;
    /// Gives `job` back, to be claimed by any worker after `delay`, the attempt not counted, if
    /// `worker` still holds that attempt (`false` when it does not); `reason` becomes its last
    /// error. For work this worker cannot do but another can (it runs the embedding model a
    /// collection is switching away from).
    async fn defer(&self, job: &Job, worker: &str, reason: &str, delay: Duration) -> Result<bool>;
    /// Gives claimed jobs back at once (graceful shutdown of `worker`), the attempt not counted.
    async fn release(&self, worker: &str) -> Result<u64>;
    /// Gives back at once the jobs still claimed under `worker`'s name by an earlier process
    /// of that name that crashed, instead of after the visibility timeout; the attempt counts,
    /// so a job that keeps crashing its worker runs out of attempts.
    async fn recover(&self, worker: &str) -> Result<u64>;
    /// Forgets the workers a queue keeps a record of (Redis: the consumers of its group) that
    /// hold no job and have not asked for one for `idle`; returns how many. Under autoscaling
    /// pods come and go, each with worker names of its own.
    async fn forget_idle_workers(&self, idle: Duration) -> Result<u64> {
        let _ = idle;
        Ok(0)
    }
    /// Extends `worker`'s claim on a running job by a visibility timeout; `false` when the
    /// worker no longer holds it.
    async fn renew(&self, job_id: &str, worker: &str) -> Result<bool>;
    /// Whether the document has a queued or running job.
    async fn has_live_job(&self, document_id: &str) -> Result<bool>;
    /// Reads a job.
    async fn get(&self, job_id: &str) -> Result<Option<Job>>;
    /// Counts per queue.
    async fn stats(&self) -> Result<Vec<QueueStats>>;
}
