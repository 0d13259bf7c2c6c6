//! The shared queue of the scale-out data plane: Redis Streams, one consumer group per queue.
//!
//! Keys (all under the configured prefix):
//! - `queue:<name>`: the stream; each entry carries one job id. The consumer group `workers`
//!   delivers every entry to one worker; an entry stays in the group's pending list until it is
//!   acknowledged, and is deleted when its job leaves the queue, so the stream's length is the
//!   number of waiting plus in-flight jobs.
//! - `queue:<name>:delayed`: a sorted set of job ids waiting out their retry backoff, scored by
//!   the time they become runnable; a claim moves the due ones back into the stream.
//! - `queue:<name>:dead`: the dead-letter stream, each entry a job id and its last error.
//! - `job:<id>`: a hash with the job's record, the source of truth for its state.
//! - `document-job:<id>`: the live job of a document, for finding documents left without one.
//!
//! Every state change is one Lua script, so it is atomic. A worker that dies leaves its entry
//! pending; after the visibility timeout another worker takes it over with `XAUTOCLAIM`. A
//! running job's worker renews its claim, so only a dead worker's jobs are taken over.

use std::time::Duration;

use async_trait::async_trait;
use ragplane_config::JobQueueSettings;
use redis::{Script, Value};

use super::{
    after_failure, known_queue, ms_after, now_ms, FailOutcome, Job, JobQueue, JobStatus,
    QueueError, QueueStats, Result, Task, QUEUES,
};
use crate::metadata::now_rfc3339;
use crate::redis_conn::Redis;

/// The consumer group of every queue.
const GROUP: &str = "workers";
/// How long finished job records are kept.
const FINISHED_RETENTION_SECS: u64 = 7 * 24 * 3600;
/// Entries kept in a dead-letter stream (approximately).
const DEAD_LETTER_MAX: u64 = 100_000;

/// Moves due retries into the stream, then takes over an abandoned entry or reads a new one,
/// and starts an attempt of its job.
const CLAIM: &str = r"
local stream, delayed = KEYS[1], KEYS[2]
local group, worker, now_ms, idle_ms, job_prefix, now =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now_ms, 'LIMIT', 0, 100)
for _, id in ipairs(due) do
  redis.call('ZREM', delayed, id)
  redis.call('XADD', stream, '*', 'job', id)
end
for _ = 1, 20 do
  local entry = nil
  local taken = redis.call('XAUTOCLAIM', stream, group, worker, idle_ms, '0-0', 'COUNT', 1)
  if taken[2][1] then
    entry = taken[2][1]
  else
    local read = redis.call('XREADGROUP', 'GROUP', group, worker, 'COUNT', 1, 'STREAMS', stream, '>')
    if not read then return false end
    entry = read[1][2][1]
  end
  local eid, jid = entry[1], entry[2][2]
  local key = job_prefix .. jid
  local status = redis.call('HGET', key, 'status')
  if status ~= 'queued' and status ~= 'running' then
    redis.call('XACK', stream, group, eid)
    redis.call('XDEL', stream, eid)
  else
    redis.call('HSET', key, 'status', 'running', 'worker', worker, 'entry', eid, 'updated_at', now)
    redis.call('HINCRBY', key, 'attempts', 1)
    return redis.call('HGETALL', key)
  end
end
return false
";

/// Finishes a job: succeeded, retrying (back into the delayed set), deferred (the same, the
/// attempt not counted) or dead; only for the worker holding the attempt it names, else
/// `not_held` and nothing changes.
const FINISH: &str = r"
local stream, delayed, dead, key, docjob = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, outcome, err, run_at, now, retention, dead_max, jid, worker, attempt =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local held = redis.call('HMGET', key, 'status', 'worker', 'attempts')
if held[1] ~= 'running' or held[2] ~= worker or held[3] ~= attempt then
  return 'not_held'
end
local eid = redis.call('HGET', key, 'entry')
if eid then
  redis.call('XACK', stream, group, eid)
  redis.call('XDEL', stream, eid)
end
redis.call('HDEL', key, 'entry', 'worker')
if outcome == 'retrying' or outcome == 'deferred' then
  if outcome == 'deferred' then redis.call('HINCRBY', key, 'attempts', -1) end
  redis.call('HSET', key, 'status', 'queued', 'last_error', err, 'updated_at', now)
  redis.call('ZADD', delayed, run_at, jid)
  return outcome
end
redis.call('HSET', key, 'status', outcome, 'updated_at', now)
if outcome == 'dead' then
  redis.call('HSET', key, 'last_error', err)
  redis.call('XADD', dead, 'MAXLEN', '~', dead_max, '*', 'job', jid, 'error', err)
else
  redis.call('HDEL', key, 'last_error')
end
redis.call('EXPIRE', key, retention)
if redis.call('GET', docjob) == jid then redis.call('DEL', docjob) end
return outcome
";

/// Gives a worker's entries back, re-added at the end of the stream: a stopping worker's with
/// the attempt not counted (ARGV[5] `1`), a crashed predecessor's with it counted (`0`).
const RELEASE: &str = r"
local stream, group, worker, job_prefix, now, refund =
  KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local pending = redis.call('XPENDING', stream, group, '-', '+', 1000, worker)
local n = 0
for _, p in ipairs(pending) do
  local eid = p[1]
  local entry = redis.call('XRANGE', stream, eid, eid)
  redis.call('XACK', stream, group, eid)
  redis.call('XDEL', stream, eid)
  if entry[1] then
    local jid = entry[1][2][2]
    local key = job_prefix .. jid
    if redis.call('HGET', key, 'status') == 'running' then
      redis.call('XADD', stream, '*', 'job', jid)
      redis.call('HSET', key, 'status', 'queued', 'updated_at', now)
      redis.call('HDEL', key, 'entry', 'worker')
      if refund == '1' and tonumber(redis.call('HGET', key, 'attempts')) > 0 then
        redis.call('HINCRBY', key, 'attempts', -1)
      end
      n = n + 1
    end
  end
end
return n
";

/// Deletes a worker from the consumer group if it holds no entry (checked in the same step, so
/// an entry it has just claimed is never dropped with it).
const FORGET: &str = r"
local stream, group, worker = KEYS[1], ARGV[1], ARGV[2]
if #redis.call('XPENDING', stream, group, '-', '+', 1, worker) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', stream, group, worker)
return 1
";

/// Resets the idle time of a running job's entry, if `worker` still holds it.
const RENEW: &str = r"
local stream, key, group, worker = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
if redis.call('HGET', key, 'worker') ~= worker then return 0 end
local eid = redis.call('HGET', key, 'entry')
if not eid then return 0 end
return #redis.call('XCLAIM', stream, group, worker, 0, eid, 'JUSTID')
";

/// Redis Streams [`JobQueue`], shared by every API instance and worker.
#[derive(Clone)]
pub struct RedisQueue {
    redis: Redis,
    settings: JobQueueSettings,
    claim: Script,
    finish: Script,
    release: Script,
    renew: Script,
    forget: Script,
}

fn redis_err(action: &'static str) -> impl FnOnce(redis::RedisError) -> QueueError {
    move |source| QueueError::Redis { action, source }
}

impl RedisQueue {
    /// Gives `worker`'s claimed jobs back to their queues ([`RELEASE`]).
    async fn give_back(&self, worker: &str, refund: bool) -> Result<u64> {
        let mut total = 0;
        for q in QUEUES {
            let mut conn = self.redis.conn.clone();
            let n: u64 = self
                .release
                .key(self.stream(q))
                .arg(GROUP)
                .arg(worker)
                .arg(self.job_prefix())
                .arg(now_rfc3339())
                .arg(if refund { "1" } else { "0" })
                .invoke_async(&mut conn)
                .await
                .map_err(redis_err(if refund {
                    "release jobs"
                } else {
                    "recover jobs"
                }))?;
            total += n;
        }
        Ok(total)
    }

    /// Uses `redis`; creates each known queue's stream and consumer group if missing.
    pub async fn open(redis: Redis, settings: &JobQueueSettings) -> Result<Self> {
        let q = Self {
            redis,
            settings: settings.clone(),
            claim: Script::new(CLAIM),
            finish: Script::new(FINISH),
            release: Script::new(RELEASE),
            renew: Script::new(RENEW),
            forget: Script::new(FORGET),
        };
        q.create_groups().await?;
        Ok(q)
    }

    async fn create_groups(&self) -> Result<()> {
        let mut conn = self.redis.conn.clone();
        for q in QUEUES {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.stream(q))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(redis_err("create the consumer group")(e)),
            }
        }
        Ok(())
    }

    fn stream(&self, queue: &str) -> String {
        self.redis.key(&format!("queue:{queue}"))
    }

    fn delayed(&self, queue: &str) -> String {
        self.redis.key(&format!("queue:{queue}:delayed"))
    }

    fn dead(&self, queue: &str) -> String {
        self.redis.key(&format!("queue:{queue}:dead"))
    }

    fn job_prefix(&self) -> String {
        self.redis.key("job:")
    }

    fn doc_prefix(&self) -> String {
        self.redis.key("document-job:")
    }

    /// Runs a claim, re-creating the consumer groups once if Redis lost them (a restart
    /// without persistence).
    async fn run_claim(&self, queue: &str, worker: &str) -> Result<Value> {
        for retry in [true, false] {
            let mut conn = self.redis.conn.clone();
            let r: redis::RedisResult<Value> = self
                .claim
                .key(self.stream(queue))
                .key(self.delayed(queue))
                .arg(GROUP)
                .arg(worker)
                .arg(now_ms())
                .arg(self.settings.visibility_timeout_secs.saturating_mul(1000))
                .arg(self.job_prefix())
                .arg(now_rfc3339())
                .invoke_async(&mut conn)
                .await;
            match r {
                Err(e) if retry && e.to_string().contains("NOGROUP") => {
                    self.create_groups().await?
                }
                other => return other.map_err(redis_err("claim a job")),
            }
        }
        Err(QueueError::UnknownQueue(queue.to_string()))
    }

    /// Runs [`FINISH`] for the attempt of `job` that `worker` claimed; `false` when that
    /// attempt is no longer the job's current one.
    async fn finish(
        &self,
        job: &Job,
        worker: &str,
        outcome: &str,
        error: &str,
        run_at: i64,
    ) -> Result<bool> {
        let job_id = job.id.as_str();
        // One round trip for both: the job's queue and its document.
        let mut conn = self.redis.conn.clone();
        let (queue, doc): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(format!("{}{job_id}", self.job_prefix()))
            .arg("queue")
            .arg("document_id")
            .query_async(&mut conn)
            .await
            .map_err(redis_err("read a job"))?;
        let queue = queue.ok_or_else(|| QueueError::UnknownJob(job_id.to_string()))?;
        let done: String = self
            .finish
            .key(self.stream(&queue))
            .key(self.delayed(&queue))
            .key(self.dead(&queue))
            .key(format!("{}{job_id}", self.job_prefix()))
            .key(format!("{}{}", self.doc_prefix(), doc.unwrap_or_default()))
            .arg(GROUP)
            .arg(outcome)
            .arg(error)
            .arg(run_at)
            .arg(now_rfc3339())
            .arg(FINISHED_RETENTION_SECS)
            .arg(DEAD_LETTER_MAX)
            .arg(job_id)
            .arg(worker)
            .arg(job.attempts)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("record a job's outcome"))?;
        Ok(done != "not_held")
    }

    async fn field(&self, job_id: &str, field: &str) -> Result<Option<String>> {
        let mut conn = self.redis.conn.clone();
        redis::cmd("HGET")
            .arg(format!("{}{job_id}", self.job_prefix()))
            .arg(field)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("read a job"))
    }

    async fn queue_of(&self, job_id: &str) -> Result<String> {
        self.field(job_id, "queue")
            .await?
            .ok_or_else(|| QueueError::UnknownJob(job_id.to_string()))
    }

    async fn live_job(&self, document_id: &str) -> Result<bool> {
        let mut conn = self.redis.conn.clone();
        let job: Option<String> = redis::cmd("GET")
            .arg(format!("{}{document_id}", self.doc_prefix()))
            .query_async(&mut conn)
            .await
            .map_err(redis_err("read a document's job"))?;
        Ok(match job {
            Some(id) => matches!(
                self.field(&id, "status").await?.as_deref(),
                Some("queued" | "running")
            ),
            None => false,
        })
    }
}

/// Builds a [`Job`] from a job hash given as a flat field/value list.
fn job_from_fields(values: Vec<(String, String)>) -> Job {
    let mut job = Job {
        id: String::new(),
        tenant_id: String::new(),
        queue: String::new(),
        kind: String::new(),
        document_id: None,
        status: JobStatus::Queued,
        attempts: 0,
        max_attempts: 0,
        last_error: None,
        created_at: String::new(),
        updated_at: String::new(),
        task: None,
    };
    for (k, v) in values {
        match k.as_str() {
            "id" => job.id = v,
            "tenant_id" => job.tenant_id = v,
            "queue" => job.queue = v,
            "kind" => job.kind = v,
            "document_id" => job.document_id = Some(v),
            "status" => job.status = JobStatus::parse(&v),
            "attempts" => job.attempts = v.parse().unwrap_or(0),
            "max_attempts" => job.max_attempts = v.parse().unwrap_or(0),
            "last_error" => job.last_error = Some(v),
            "created_at" => job.created_at = v,
            "updated_at" => job.updated_at = v,
            "payload" => job.task = serde_json::from_str(&v).ok(),
            _ => {}
        }
    }
    job
}

fn pairs(value: Value) -> Result<Vec<(String, String)>> {
    redis::from_redis_value(value).map_err(|e| redis_err("decode a job")(e.into()))
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn enqueue(&self, tenant_id: &str, queue: &str, task: Task) -> Result<Job> {
        known_queue(queue)?;
        let now = now_rfc3339();
        let id = uuid::Uuid::now_v7().to_string();
        let payload = serde_json::to_string(&task)?;
        let mut fields: Vec<(&str, String)> = vec![
            ("id", id.clone()),
            ("tenant_id", tenant_id.to_string()),
            ("queue", queue.to_string()),
            ("kind", task.kind().to_string()),
            ("payload", payload),
            ("status", "queued".into()),
            ("attempts", "0".into()),
            ("max_attempts", self.settings.max_attempts.to_string()),
            ("created_at", now.clone()),
            ("updated_at", now),
        ];
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(doc) = task.document_id() {
            fields.push(("document_id", doc.to_string()));
            pipe.cmd("SET")
                .arg(format!("{}{doc}", self.doc_prefix()))
                .arg(&id)
                .ignore();
        }
        pipe.cmd("HSET")
            .arg(format!("{}{id}", self.job_prefix()))
            .arg(&fields)
            .ignore();
        pipe.cmd("XADD")
            .arg(self.stream(queue))
            .arg("*")
            .arg("job")
            .arg(&id)
            .ignore();
        let mut conn = self.redis.conn.clone();
        let () = pipe
            .query_async(&mut conn)
            .await
            .map_err(redis_err("enqueue a job"))?;
        self.get(&id)
            .await?
            .ok_or_else(|| QueueError::UnknownJob(id.clone()))
    }

    async fn claim(&self, queue: &str, worker: &str) -> Result<Option<Job>> {
        known_queue(queue)?;
        match self.run_claim(queue, worker).await? {
            Value::Nil | Value::Boolean(false) => Ok(None),
            v @ (Value::Array(_) | Value::Map(_)) => Ok(Some(job_from_fields(pairs(v)?))),
            other => Err(QueueError::Redis {
                action: "claim a job",
                source: redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "unexpected claim reply",
                    format!("{other:?}"),
                )),
            }),
        }
    }

    async fn complete(&self, job: &Job, worker: &str) -> Result<bool> {
        self.finish(job, worker, "succeeded", "", 0).await
    }

    async fn fail(
        &self,
        job: &Job,
        worker: &str,
        error: &str,
        retryable: bool,
    ) -> Result<Option<FailOutcome>> {
        let (outcome, run_at) = after_failure(
            job.attempts,
            self.settings.max_attempts,
            Duration::from_millis(self.settings.retry_backoff_ms),
            retryable,
        );
        let (label, run_at) = match outcome {
            FailOutcome::Retrying => ("retrying", run_at),
            FailOutcome::Dead => ("dead", 0),
        };
        let held = self.finish(job, worker, label, error, run_at).await?;
        Ok(held.then_some(outcome))
    }

    async fn defer(&self, job: &Job, worker: &str, reason: &str, delay: Duration) -> Result<bool> {
        let run_at = ms_after(delay);
        self.finish(job, worker, "deferred", reason, run_at).await
    }

    async fn release(&self, worker: &str) -> Result<u64> {
        self.give_back(worker, true).await
    }

    async fn recover(&self, worker: &str) -> Result<u64> {
        self.give_back(worker, false).await
    }

    async fn forget_idle_workers(&self, idle: Duration) -> Result<u64> {
        let idle_ms = usize::try_from(idle.as_millis()).unwrap_or(usize::MAX);
        let mut forgotten = 0;
        for q in QUEUES {
            let mut conn = self.redis.conn.clone();
            let stream = self.stream(q);
            let info: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&stream)
                .arg(GROUP)
                .query_async(&mut conn)
                .await
                .map_err(redis_err("list the workers of a queue"))?;
            for c in info
                .consumers
                .iter()
                .filter(|c| c.pending == 0 && c.idle >= idle_ms)
            {
                let n: u64 = self
                    .forget
                    .key(&stream)
                    .arg(GROUP)
                    .arg(&c.name)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(redis_err("forget an idle worker"))?;
                forgotten += n;
            }
        }
        Ok(forgotten)
    }

    async fn renew(&self, job_id: &str, worker: &str) -> Result<bool> {
        let queue = self.queue_of(job_id).await?;
        let mut conn = self.redis.conn.clone();
        let n: i64 = self
            .renew
            .key(self.stream(&queue))
            .key(format!("{}{job_id}", self.job_prefix()))
            .arg(GROUP)
            .arg(worker)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("renew a job's claim"))?;
        Ok(n > 0)
    }

    async fn has_live_job(&self, document_id: &str) -> Result<bool> {
        self.live_job(document_id).await
    }

    async fn get(&self, job_id: &str) -> Result<Option<Job>> {
        let mut conn = self.redis.conn.clone();
        let v: Value = redis::cmd("HGETALL")
            .arg(format!("{}{job_id}", self.job_prefix()))
            .query_async(&mut conn)
            .await
            .map_err(redis_err("read a job"))?;
        let fields = pairs(v)?;
        Ok((!fields.is_empty()).then(|| job_from_fields(fields)))
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        let mut pipe = redis::pipe();
        for q in QUEUES {
            pipe.cmd("XLEN").arg(self.stream(q));
            pipe.cmd("XPENDING").arg(self.stream(q)).arg(GROUP);
            pipe.cmd("ZCARD").arg(self.delayed(q));
            pipe.cmd("XLEN").arg(self.dead(q));
        }
        let mut conn = self.redis.conn.clone();
        let replies: Vec<Value> = pipe
            .query_async(&mut conn)
            .await
            .map_err(redis_err("count jobs"))?;
        let int = |v: &Value| -> i64 {
            match v {
                Value::Int(n) => *n,
                _ => 0,
            }
        };
        let mut out = Vec::new();
        for (q, r) in QUEUES.iter().zip(replies.chunks(4)) {
            let [len, pending, delayed, dead] = r else {
                continue;
            };
            // XPENDING's summary starts with the number of pending entries.
            let in_flight = match pending {
                Value::Array(items) => items.first().map_or(0, int),
                _ => 0,
            };
            let s = QueueStats {
                queue: (*q).to_string(),
                waiting: (int(len) - in_flight).max(0) + int(delayed),
                in_flight,
                dead: int(dead),
            };
            if s.waiting + s.in_flight + s.dead > 0 {
                out.push(s);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::conformance;

    async fn queue(redis: &Redis, visibility_secs: u64) -> RedisQueue {
        let settings = JobQueueSettings {
            max_attempts: 2,
            visibility_timeout_secs: visibility_secs,
            retry_backoff_ms: 0,
        };
        RedisQueue::open(redis.clone(), &settings).await.unwrap()
    }

    #[tokio::test]
    async fn conforms_to_the_queue_contract() {
        let (Some(a), Some(b)) = (
            crate::testing::test_redis("redis queue contract"),
            crate::testing::test_redis("redis queue contract"),
        ) else {
            return;
        };
        conformance::run_all(&queue(&a, 60).await, &queue(&b, 0).await).await;
    }

    /// The names of the consumers of the documents queue's group.
    async fn consumers(r: &Redis) -> Vec<String> {
        let mut conn = r.conn.clone();
        let info: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(r.key("queue:documents"))
            .arg(GROUP)
            .query_async(&mut conn)
            .await
            .unwrap();
        info.consumers.into_iter().map(|c| c.name).collect()
    }

    #[tokio::test]
    async fn idle_workers_are_forgotten_and_holders_kept() {
        let Some(r) = crate::testing::test_redis("redis queue idle workers") else {
            return;
        };
        let q = queue(&r, 60).await;
        let job = q
            .enqueue("t", "documents", conformance::task("i1"))
            .await
            .unwrap();
        q.enqueue("t", "documents", conformance::task("i2"))
            .await
            .unwrap();
        let held = q.claim("documents", "holder").await.unwrap().unwrap();
        assert_eq!(held.id, job.id);
        // A worker that ran a job and then found none.
        let done = q.claim("documents", "idle").await.unwrap().unwrap();
        assert!(q.complete(&done, "idle").await.unwrap());
        assert!(q.claim("documents", "idle").await.unwrap().is_none());
        let mut names = consumers(&r).await;
        names.sort();
        assert_eq!(names, ["holder", "idle"]);
        // Not idle long enough: nobody goes.
        assert_eq!(
            q.forget_idle_workers(Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            q.forget_idle_workers(Duration::from_millis(10))
                .await
                .unwrap(),
            1
        );
        assert_eq!(consumers(&r).await, ["holder"]);
        // The holder keeps its job.
        assert!(q.renew(&job.id, "holder").await.unwrap());
        assert!(q.complete(&held, "holder").await.unwrap());
    }

    #[tokio::test]
    async fn lost_consumer_groups_are_recreated() {
        let Some(r) = crate::testing::test_redis("redis queue group recreation") else {
            return;
        };
        let q = queue(&r, 60).await;
        let mut conn = r.conn.clone();
        let () = redis::cmd("DEL")
            .arg(r.key("queue:documents"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let job = q
            .enqueue("t", "documents", conformance::task("g1"))
            .await
            .unwrap();
        assert_eq!(q.claim("documents", "w").await.unwrap().unwrap().id, job.id);
    }
}
