//! One Redis connection per process, shared by the Redis queue, the second cache layer and the
//! shared rate limiter.
//!
//! The connection is a [`ConnectionManager`]: multiplexed, so concurrent commands share it,
//! and reconnecting by itself after Redis restarts. It is created lazily, so a process starts
//! even while Redis is away; each command then fails fast (the response timeout) until Redis is
//! back, and every caller decides what a failure means (a cache miss, a fail-open rate limit, a
//! 503).

use std::time::Duration;

use ragplane_config::RedisConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::IntoConnectionInfo;

/// A shared Redis connection and the key prefix of this deployment.
#[derive(Clone)]
pub struct Redis {
    /// The connection; clones share it.
    pub conn: ConnectionManager,
    prefix: String,
}

impl Redis {
    /// Prepares the connection (it is opened on first use). Fails only on a malformed URL.
    pub fn connect(cfg: &RedisConfig) -> redis::RedisResult<Self> {
        let mut info = cfg.url.as_str().into_connection_info()?;
        if let Some(password) = &cfg.password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)))
            .set_response_timeout(Some(Duration::from_millis(
                cfg.command_timeout_ms.max(1_000),
            )))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(Self {
            conn: ConnectionManager::new_lazy_with_config(client, manager)?,
            prefix: cfg.key_prefix.clone(),
        })
    }

    /// `<prefix>:<rest>`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }
}
