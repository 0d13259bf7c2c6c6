//! Redis settings: one connection shared by the Redis queue, the second cache layer and the
//! shared rate limiter, plus the settings of each of those.

use serde::{Deserialize, Serialize};

use crate::Secret;

/// Connection to Redis. Present when any Redis-backed feature is selected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Connection URL: `redis://host:port/db`, `rediss://host:port/db` for TLS (the server's
    /// certificate is verified, against `ca_file` or the system's roots), or `unix://` for a
    /// socket. A `Secret`: it may hold the password, and never appears in a debug print.
    pub url: Secret,
    /// PEM file of the certificate authorities that sign a `rediss://` server's certificate,
    /// trusted instead of the system's roots (a private CA, as managed Redis services and
    /// in-cluster operators issue).
    pub ca_file: Option<std::path::PathBuf>,
    /// Password, when not in the URL (the operator fills it from a Secret).
    pub password: Option<Secret>,
    /// Prefix of every key ragplane writes, so that several deployments can share a server.
    pub key_prefix: String,
    /// Milliseconds to wait for a connection.
    pub connect_timeout_ms: u64,
    /// Milliseconds a cache or rate-limit command may take before it counts as failed.
    pub command_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("redis://127.0.0.1:6379"),
            ca_file: None,
            password: None,
            key_prefix: "ragplane".into(),
            connect_timeout_ms: 2_000,
            command_timeout_ms: 250,
        }
    }
}

/// Settings of a durable job queue (SQLite or Redis Streams).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JobQueueSettings {
    /// Seconds a claimed job stays invisible before another worker may reclaim it. A worker
    /// renews the claim of the job it runs, so only a dead worker's jobs are reclaimed.
    pub visibility_timeout_secs: u64,
    /// Attempts before a job is dead-lettered with its last error.
    pub max_attempts: u32,
    /// Base of the exponential retry backoff, in milliseconds.
    pub retry_backoff_ms: u64,
}

impl Default for JobQueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout_secs: 300,
            max_attempts: 5,
            retry_backoff_ms: 500,
        }
    }
}

/// Where API keys' rate limits are counted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitBackend {
    /// In this process only.
    #[default]
    Memory,
    /// In Redis, shared by every API instance.
    Redis,
}

/// What to do with a request when the rate limiter's backend cannot be reached.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Let the request through.
    #[default]
    Open,
    /// Refuse it with 503.
    Closed,
}

/// Per-API-key rate limiting (generic cell rate algorithm).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Limit requests per tenant (all its keys share one budget).
    pub enabled: bool,
    /// Sustained requests per second allowed per tenant.
    pub requests_per_second: f64,
    /// Requests a tenant may send at once above the sustained rate.
    pub burst: u32,
    /// Where the counts live.
    pub backend: RateLimitBackend,
    /// Behaviour when the backend is unreachable.
    pub on_backend_error: FailMode,
    /// LLM tokens (prompt and completion) a tenant may use per minute, a minute's worth at
    /// once; 0 (the default) sets no quota. Counted where `backend` says, whether or not
    /// `enabled` limits requests too.
    pub llm_tokens_per_minute: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            requests_per_second: 50.0,
            burst: 100,
            backend: RateLimitBackend::Memory,
            on_backend_error: FailMode::Open,
            llm_tokens_per_minute: 0,
        }
    }
}
