//! The in-process limiter, on the `governor` crate's keyed GCRA.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota as GovernorQuota};

use super::{Decision, Quota, RateLimiter};

/// Keys whose state is dropped once idle are swept every this many checks.
const SWEEP_EVERY: u64 = 4096;

/// Per-key limits counted in this process only.
pub struct MemoryLimiter {
    inner: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl MemoryLimiter {
    /// A limiter enforcing `quota` per key.
    pub fn new(quota: Quota) -> Self {
        let burst = NonZeroU32::new(quota.burst).unwrap_or(NonZeroU32::MIN);
        let q = GovernorQuota::with_period(quota.interval)
            .unwrap_or_else(|| GovernorQuota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            inner: governor::RateLimiter::keyed(q),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn check(&self, key: &str) -> Result<Decision, String> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.inner.retain_recent();
        }
        Ok(match self.inner.check_key(&key.to_string()) {
            Ok(()) => Decision::Allow,
            Err(not_until) => Decision::Limit {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        })
    }
}
