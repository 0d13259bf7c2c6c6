//! One Redis connection per process, shared by the Redis queue, the second cache layer and the
//! shared rate limiter.
//!
//! The connection is a [`ConnectionManager`]: multiplexed, so concurrent commands share it,
//! and reconnecting by itself after Redis restarts. It is created lazily, so a process starts
//! even while Redis is away; each command then fails fast (the response timeout) until Redis is
//! back, and every caller decides what a failure means (a cache miss, a fail-open rate limit, a
//! 503).
//!
//! A `rediss://` URL connects over TLS (rustls) and verifies the server's certificate against
//! `redis.ca_file` when set, else the system's roots.

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
    /// Prepares the connection (it is opened on first use). Fails only on a malformed URL, or
    /// a `ca_file` that cannot be read or holds no certificate.
    pub fn connect(cfg: &RedisConfig) -> redis::RedisResult<Self> {
        let mut info = cfg.url.expose().into_connection_info()?;
        if let Some(password) = &cfg.password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = match &cfg.ca_file {
            None => redis::Client::open(info)?,
            Some(path) => {
                let pem = crate::tls::read_ca_file(path, "redis.ca_file").map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "unusable CA file",
                        e.to_string(),
                    ))
                })?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                redis::Client::build_with_tls(info, certificates)?
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A `rediss://` server whose certificate a private CA signed is reached with that CA as
    /// `ca_file`, and refused against the system's roots; a CA file that is missing or holds
    /// no certificate is an error when the connection is set up, naming the setting.
    #[tokio::test]
    async fn tls_is_verified_against_the_configured_ca() {
        let test = "redis over TLS";
        let Some(url) = crate::testing::service_env("RAGPLANE_TEST_REDIS_TLS_URL", test) else {
            return;
        };
        let ca = crate::testing::service_env("RAGPLANE_TEST_REDIS_TLS_CA", test)
            .expect("recorded with the TLS URL");
        let cfg = |ca_file: Option<std::path::PathBuf>| RedisConfig {
            url: url.clone().into(),
            ca_file,
            key_prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
            ..RedisConfig::default()
        };

        let r = Redis::connect(&cfg(Some(ca.into()))).unwrap();
        let (mut conn, key) = (r.conn.clone(), r.key("tls"));
        let () = redis::cmd("SET")
            .arg(&key)
            .arg("over TLS")
            .query_async(&mut conn)
            .await
            .unwrap();
        let got: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(got, "over TLS");

        // The system's roots do not hold the test CA.
        let mut unverified = Redis::connect(&cfg(None)).unwrap().conn;
        let err = redis::cmd("PING")
            .query_async::<String>(&mut unverified)
            .await
            .expect_err("a server signed by an unknown CA");
        assert!(
            format!("{err:#}").to_lowercase().contains("certificate"),
            "{err:#}"
        );

        let missing = Redis::connect(&cfg(Some("/nonexistent/ca.pem".into())))
            .err()
            .expect("a missing CA file");
        assert!(missing.to_string().contains("redis.ca_file"), "{missing}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let empty = Redis::connect(&cfg(Some(empty)))
            .err()
            .expect("no certificate");
        assert!(empty.to_string().contains("no PEM certificate"), "{empty}");
    }
}
