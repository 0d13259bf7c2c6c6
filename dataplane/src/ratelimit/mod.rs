//! Rate limiting with the generic cell rate algorithm (GCRA): the [`RateLimiter`] trait, an
//! in-process limiter, and a Redis limiter whose counts every API instance shares. Requests are
//! limited per tenant, and failed authentications per client address.
//!
//! A tenant may send `burst` requests at once and `requests_per_second` sustained. A refused
//! request learns how long to wait, which the API returns as `Retry-After` with a 429.

mod memory;
mod redis;
mod tokens;

use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::MemoryLimiter;
pub use self::redis::RedisLimiter;
pub use self::tokens::TokenBudget;

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Within the limit.
    Allow,
    /// Over the limit; the key may try again after this long.
    Limit {
        /// Time until the next request would be allowed.
        retry_after: Duration,
    },
}

/// Where an API key's request counts are kept.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `key`. An error means the backend could not decide; the caller
    /// applies the configured fail-open or fail-closed behaviour.
    async fn check(&self, key: &str) -> Result<Decision, String>;
}

/// The GCRA parameters: the emission interval T (time per request at the sustained rate) and
/// the tolerance τ = (burst - 1)·T.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// Time per request at the sustained rate.
    pub interval: Duration,
    /// Requests allowed at once.
    pub burst: u32,
}

impl Quota {
    /// `requests_per_second` sustained, `burst` at once (both at least 1 after validation).
    pub fn new(requests_per_second: f64, burst: u32) -> Self {
        let rps = if requests_per_second.is_finite() && requests_per_second > 0.0 {
            requests_per_second
        } else {
            1.0
        };
        Self {
            interval: Duration::from_secs_f64(1.0 / rps),
            burst: burst.max(1),
        }
    }

    /// τ: how far ahead of real time a key's theoretical arrival time may run.
    pub fn tolerance(&self) -> Duration {
        self.interval * (self.burst - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The behaviour every limiter must show, given a fresh key.
    pub(crate) async fn allows_the_burst_then_limits(limiter: &dyn RateLimiter, key: &str) {
        for i in 0..5 {
            assert_eq!(
                limiter.check(key).await.unwrap(),
                Decision::Allow,
                "request {i} is within the burst of 5"
            );
        }
        match limiter.check(key).await.unwrap() {
            Decision::Limit { retry_after } => assert!(
                retry_after > Duration::ZERO && retry_after <= Duration::from_millis(100),
                "at 10/s the next slot is at most 100 ms away, got {retry_after:?}"
            ),
            Decision::Allow => panic!("the sixth request exceeds the burst"),
        }
        assert_eq!(
            limiter.check("another-key").await.unwrap(),
            Decision::Allow,
            "keys are limited separately"
        );
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(
            limiter.check(key).await.unwrap(),
            Decision::Allow,
            "one interval later a request is allowed again"
        );
    }

    #[tokio::test]
    async fn memory_limiter_follows_gcra() {
        allows_the_burst_then_limits(&MemoryLimiter::new(Quota::new(10.0, 5)), "k").await;
    }

    #[tokio::test]
    async fn redis_limiter_follows_gcra() {
        let Some(r) = crate::testing::test_redis("redis rate limiter") else {
            return;
        };
        let limiter = RedisLimiter::new(r, Quota::new(10.0, 5), Duration::from_secs(1));
        allows_the_burst_then_limits(&limiter, "k").await;
    }

    #[tokio::test]
    async fn redis_limiter_reports_an_unreachable_server() {
        let cfg = ragplane_config::RedisConfig {
            url: ragplane_config::Secret::new("redis://127.0.0.1:1"),
            connect_timeout_ms: 200,
            ..ragplane_config::RedisConfig::default()
        };
        let r = crate::redis_conn::Redis::connect(&cfg).unwrap();
        let limiter = RedisLimiter::new(r, Quota::new(10.0, 5), Duration::from_millis(300));
        assert!(limiter.check("k").await.is_err());
    }

    #[test]
    fn quota_tolerance_is_burst_minus_one_intervals() {
        let q = Quota::new(4.0, 3);
        assert_eq!(q.interval, Duration::from_millis(250));
        assert_eq!(q.tolerance(), Duration::from_millis(500));
    }
}
