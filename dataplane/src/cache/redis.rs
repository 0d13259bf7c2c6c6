//! The second cache layer: Redis, shared by every instance.
//!
//! Values are stored with a time to live (`SET … PX`). Every command has a short deadline; a
//! Redis that is slow, down or returning errors makes the lookup a miss and the write a no-op.
//! Such failures are logged (at most once per ten seconds per cache) and counted in
//! `ragplane_cache_errors_total`, and never reach the client.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::Cache;
use crate::metrics;
use crate::redis_conn::Redis;

/// Redis-backed [`Cache`] (layer `l2`).
pub struct RedisCache {
    redis: Redis,
    name: &'static str,
    ttl: Duration,
    deadline: Duration,
    last_warning: AtomicI64,
}

impl RedisCache {
    /// Cache `name` (also part of its keys), entries living `ttl`, commands bounded by
    /// `deadline`.
    pub fn new(redis: Redis, name: &'static str, ttl: Duration, deadline: Duration) -> Self {
        Self {
            redis,
            name,
            ttl,
            deadline,
            last_warning: AtomicI64::new(0),
        }
    }

    fn key(&self, key: &str) -> String {
        self.redis.key(&format!("cache:{}:{key}", self.name))
    }

    /// Runs `cmd` within the deadline; a failure is counted, logged and returned as `None`.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        let mut conn = self.redis.conn.clone();
        let error = match tokio::time::timeout(self.deadline, cmd.query_async::<T>(&mut conn)).await
        {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no reply within {:?}", self.deadline),
        };
        metrics::CACHE_ERRORS.with_label_values(&[self.name]).inc();
        let now = chrono::Utc::now().timestamp();
        let last = self.last_warning.load(Ordering::Relaxed);
        if now - last >= 10
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(cache = self.name, %error, "Redis cache unavailable; serving without it");
        }
        None
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn delete_prefix(&self, prefix: &str) {
        // SCAN in pages, unlinking each page's keys: no KEYS, so Redis never blocks on it.
        let pattern = format!("{}*", glob_escape(&self.key(prefix)));
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500);
            let Some((next, keys)) = self.run::<(u64, Vec<String>)>(&scan).await else {
                return;
            };
            if !keys.is_empty() {
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(keys);
                let _: Option<i64> = self.run(&unlink).await;
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }

    async fn get(&self, key: &str) -> Option<Bytes> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        let v: Option<Vec<u8>> = self.run(&cmd).await.flatten();
        metrics::cache_lookup(
            self.name,
            "l2",
            usize::from(v.is_some()),
            usize::from(v.is_none()),
        );
        v.map(Bytes::from)
    }

    async fn put(&self, key: &str, value: Bytes) {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value.as_ref())
            .arg("PX")
            .arg(self.ttl_ms());
        let _: Option<()> = self.run(&cmd).await;
    }

    async fn get_many(&self, keys: &[String]) -> Vec<Option<Bytes>> {
        if keys.is_empty() {
            return Vec::new();
        }
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(self.key(k));
        }
        let found: Vec<Option<Vec<u8>>> = self
            .run(&cmd)
            .await
            .filter(|v: &Vec<Option<Vec<u8>>>| v.len() == keys.len())
            .unwrap_or_else(|| vec![None; keys.len()]);
        let hits = found.iter().filter(|v| v.is_some()).count();
        metrics::cache_lookup(self.name, "l2", hits, keys.len() - hits);
        found.into_iter().map(|v| v.map(Bytes::from)).collect()
    }

    async fn put_many(&self, entries: Vec<(String, Bytes)>) {
        if entries.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (k, v) in &entries {
            pipe.cmd("SET")
                .arg(self.key(k))
                .arg(v.as_ref())
                .arg("PX")
                .arg(self.ttl_ms())
                .ignore();
        }
        let mut conn = self.redis.conn.clone();
        if let Ok(Err(e)) | Err(e) =
            tokio::time::timeout(self.deadline, pipe.query_async::<()>(&mut conn))
                .await
                .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "timed out")))
        {
            metrics::CACHE_ERRORS.with_label_values(&[self.name]).inc();
            tracing::debug!(cache = self.name, error = %e, "Redis cache write failed");
        }
    }
}

/// `s` with Redis glob characters escaped, to match literally in `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
