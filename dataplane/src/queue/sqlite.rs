//! The durable queue of the embedded data plane: a `jobs` table in the SQLite metadata database.
//!
//! Claiming is one `UPDATE … RETURNING` statement, so two workers can never hold the same job.
//! The embedded queue serves one process: on open it gives back every job that an earlier,
//! crashed process had claimed, instead of waiting for their leases to run out.

use std::time::Duration;

use async_trait::async_trait;
use ragplane_config::SqliteQueueConfig;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Row, Sqlite, SqlitePool};

use super::{
    after_failure, known_queue, ms_after, now_ms, FailOutcome, Job, JobQueue, JobStatus,
    QueueError, QueueStats, Result, Task,
};
use crate::metadata::now_rfc3339;

/// SQLite-backed [`JobQueue`].
#[derive(Clone)]
pub struct SqliteQueue {
    pool: SqlitePool,
    visibility: Duration,
    max_attempts: u32,
    backoff: Duration,
}

fn db(action: &'static str) -> impl FnOnce(sqlx::Error) -> QueueError {
    move |source| QueueError::Database { action, source }
}

fn job_from_row(row: &sqlx::sqlite::SqliteRow) -> std::result::Result<Job, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let payload: String = row.try_get("payload")?;
    Ok(Job {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        queue: row.try_get("queue")?,
        kind: row.try_get("kind")?,
        document_id: row.try_get("document_id")?,
        status: JobStatus::parse(&status),
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        task: serde_json::from_str(&payload).ok(),
    })
}

impl SqliteQueue {
    /// Uses the metadata database's pool; gives back jobs claimed by earlier processes.
    pub async fn open(pool: SqlitePool, cfg: &SqliteQueueConfig) -> Result<Self> {
        let q = Self {
            pool,
            visibility: Duration::from_secs(cfg.visibility_timeout_secs),
            max_attempts: cfg.max_attempts,
            backoff: Duration::from_millis(cfg.retry_backoff_ms),
        };
        let recovered = sqlx::query(
            "UPDATE jobs SET status = 'queued', lease_until = NULL, worker = NULL, run_at = ?, updated_at = ? \
             WHERE status = 'running'",
        )
        .bind(now_ms())
        .bind(now_rfc3339())
        .execute(&q.pool)
        .await
        .map_err(db("recover abandoned jobs"))?
        .rows_affected();
        if recovered > 0 {
            tracing::warn!(
                recovered,
                "requeued jobs left running by an earlier process"
            );
        }
        Ok(q)
    }
}

/// An UPDATE of the attempt of a job that a worker holds: the `SET` items `$set` (their `?`
/// bound first), then the lease cleared and the time; [`SqliteQueue::on_held`] binds the rest.
macro_rules! update_held {
    ($set:literal) => {
        concat!(
            "UPDATE jobs SET ",
            $set,
            ", lease_until = NULL, updated_at = ? \
             WHERE id = ? AND status = 'running' AND worker = ? AND attempts = ?"
        )
    };
}

impl SqliteQueue {
    /// Runs `update`, an [`update_held!`] with its own values bound, on the attempt of `job`
    /// that `worker` claimed; whether the worker still held it.
    async fn on_held<'q>(
        &self,
        update: Query<'q, Sqlite, SqliteArguments<'q>>,
        job: &'q Job,
        worker: &'q str,
        action: &'static str,
    ) -> Result<bool> {
        let r = update
            .bind(now_rfc3339())
            .bind(&job.id)
            .bind(worker)
            .bind(job.attempts)
            .execute(&self.pool)
            .await
            .map_err(db(action))?;
        Ok(r.rows_affected() > 0)
    }

    /// Puts `worker`'s running jobs back in the queue, their attempt count set to `attempts`
    /// (an SQL expression).
    async fn give_back(&self, worker: &str, attempts: &str) -> Result<u64> {
        let r = sqlx::query(&format!(
            "UPDATE jobs SET status = 'queued', attempts = {attempts}, lease_until = NULL, \
             worker = NULL, updated_at = ? WHERE status = 'running' AND worker = ?"
        ))
        .bind(now_rfc3339())
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(db("give jobs back"))?;
        Ok(r.rows_affected())
    }
}

#[async_trait]
impl JobQueue for SqliteQueue {
    async fn enqueue(&self, tenant_id: &str, queue: &str, task: Task) -> Result<Job> {
        known_queue(queue)?;
        let now = now_rfc3339();
        let job = Job {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: tenant_id.to_string(),
            queue: queue.to_string(),
            kind: task.kind().to_string(),
            document_id: task.document_id().map(str::to_string),
            status: JobStatus::Queued,
            attempts: 0,
            max_attempts: i64::from(self.max_attempts),
            last_error: None,
            created_at: now.clone(),
            updated_at: now.clone(),
            task: Some(task.clone()),
        };
        sqlx::query(
            "INSERT INTO jobs (id, tenant_id, queue, kind, document_id, payload, status, attempts, max_attempts, \
             run_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)",
        )
        .bind(&job.id)
        .bind(tenant_id)
        .bind(queue)
        .bind(&job.kind)
        .bind(&job.document_id)
        .bind(serde_json::to_string(&task)?)
        .bind(job.max_attempts)
        .bind(now_ms())
        .bind(&now)
        .bind(&now)
        .execute(&self.pool)
        .await
        .map_err(db("enqueue job"))?;
        Ok(job)
    }

    async fn claim(&self, queue: &str, worker: &str) -> Result<Option<Job>> {
        known_queue(queue)?;
        let now = now_ms();
        let lease = now + i64::try_from(self.visibility.as_millis()).unwrap_or(i64::MAX / 2);
        let row = sqlx::query(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_until = ?, worker = ?, updated_at = ? \
             WHERE id = (SELECT id FROM jobs WHERE queue = ? AND \
                ((status = 'queued' AND run_at <= ?) OR (status = 'running' AND lease_until < ?)) \
                ORDER BY run_at, id LIMIT 1) \
             RETURNING *",
        )
        .bind(lease)
        .bind(worker)
        .bind(now_rfc3339())
        .bind(queue)
        .bind(now)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("claim job"))?;
        row.as_ref()
            .map(job_from_row)
            .transpose()
            .map_err(db("decode job"))
    }

    async fn complete(&self, job: &Job, worker: &str) -> Result<bool> {
        let update = sqlx::query(update_held!("status = 'succeeded', last_error = NULL"));
        self.on_held(update, job, worker, "complete job").await
    }

    async fn fail(
        &self,
        job: &Job,
        worker: &str,
        error: &str,
        retryable: bool,
    ) -> Result<Option<FailOutcome>> {
        let (outcome, run_at) =
            after_failure(job.attempts, self.max_attempts, self.backoff, retryable);
        let status = match outcome {
            FailOutcome::Retrying => "queued",
            FailOutcome::Dead => "dead",
        };
        let update = sqlx::query(update_held!(
            "status = ?, run_at = ?, worker = NULL, last_error = ?"
        ))
        .bind(status)
        .bind(run_at)
        .bind(error);
        let held = self
            .on_held(update, job, worker, "record job failure")
            .await?;
        Ok(held.then_some(outcome))
    }

    async fn defer(&self, job: &Job, worker: &str, reason: &str, delay: Duration) -> Result<bool> {
        let run_at = ms_after(delay);
        let update = sqlx::query(update_held!(
            "status = 'queued', attempts = MAX(attempts - 1, 0), run_at = ?, worker = NULL, \
             last_error = ?"
        ))
        .bind(run_at)
        .bind(reason);
        self.on_held(update, job, worker, "defer job").await
    }

    async fn release(&self, worker: &str) -> Result<u64> {
        // A released attempt did not fail, so it does not count against the job, and the job
        // keeps its place in the queue.
        self.give_back(worker, "MAX(attempts - 1, 0)").await
    }

    async fn recover(&self, worker: &str) -> Result<u64> {
        self.give_back(worker, "attempts").await
    }

    async fn renew(&self, job_id: &str, worker: &str) -> Result<bool> {
        let lease = ms_after(self.visibility);
        let r = sqlx::query(
            "UPDATE jobs SET lease_until = ? WHERE id = ? AND worker = ? AND status = 'running'",
        )
        .bind(lease)
        .bind(job_id)
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(db("renew job lease"))?;
        Ok(r.rows_affected() > 0)
    }

    async fn has_live_job(&self, document_id: &str) -> Result<bool> {
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM jobs WHERE document_id = ? AND status IN ('queued', 'running') LIMIT 1",
        )
        .bind(document_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("find a document's job"))?;
        Ok(live.is_some())
    }

    async fn get(&self, job_id: &str) -> Result<Option<Job>> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read job"))?;
        row.as_ref()
            .map(job_from_row)
            .transpose()
            .map_err(db("decode job"))
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        let rows = sqlx::query(
            "SELECT queue, \
               SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END) AS waiting, \
               SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS in_flight, \
               SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END) AS dead \
             FROM jobs WHERE status IN ('queued', 'running', 'dead') GROUP BY queue",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("count jobs"))?;
        rows.iter()
            .map(|r| {
                Ok(QueueStats {
                    queue: r.try_get("queue")?,
                    waiting: r.try_get("waiting")?,
                    in_flight: r.try_get("in_flight")?,
                    dead: r.try_get("dead")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(db("decode job counts"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{MetadataStore, SqliteStore};
    use crate::queue::{backoff_for, conformance};

    async fn queue(
        max_attempts: u32,
        visibility_secs: u64,
    ) -> (tempfile::TempDir, SqliteStore, SqliteQueue) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).await.unwrap();
        store.migrate().await.unwrap();
        let cfg = SqliteQueueConfig {
            max_attempts,
            visibility_timeout_secs: visibility_secs,
            retry_backoff_ms: 0,
        };
        let q = SqliteQueue::open(store.pool().clone(), &cfg).await.unwrap();
        (dir, store, q)
    }

    #[tokio::test]
    async fn conforms_to_the_queue_contract() {
        let (_d1, _s1, short) = queue(2, 0).await;
        let (_d2, _s2, long) = queue(2, 60).await;
        conformance::run_all(&long, &short).await;
    }

    #[tokio::test]
    async fn reopening_requeues_jobs_of_a_crashed_process() {
        let (_d, store, q) = queue(3, 3600).await;
        let a = q
            .enqueue("t", "documents", conformance::task("a"))
            .await
            .unwrap();
        let b = q
            .enqueue("t", "documents", conformance::task("b"))
            .await
            .unwrap();
        q.claim("documents", "w1").await.unwrap().unwrap();
        // Simulate a crash: a new queue on the same database takes the job back.
        let q2 = SqliteQueue::open(store.pool().clone(), &SqliteQueueConfig::default())
            .await
            .unwrap();
        let ids: Vec<String> = [
            q2.claim("documents", "w").await.unwrap(),
            q2.claim("documents", "w").await.unwrap(),
        ]
        .into_iter()
        .map(|j| j.unwrap().id)
        .collect();
        assert!(ids.contains(&a.id) && ids.contains(&b.id));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(500);
        assert_eq!(backoff_for(base, 1), Duration::from_millis(500));
        assert_eq!(backoff_for(base, 3), Duration::from_millis(2000));
        assert_eq!(backoff_for(base, 40), Duration::from_secs(300));
    }
}
