//! The shared limiter: GCRA in a Lua script, one key per API key, on Redis's own clock so that
//! instances with skewed clocks agree.

use async_trait::async_trait;
use redis::Script;

use super::{Decision, Quota, RateLimiter};
use crate::redis_conn::Redis;

/// KEYS[1]: the key's theoretical arrival time (µs). ARGV: interval and tolerance (µs).
/// Returns 0 when allowed, else the microseconds to wait.
const GCRA: &str = r"
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local ahead = tat - now
if ahead > tolerance then return ahead - tolerance end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
";

/// Per-key limits shared by every instance through Redis.
pub struct RedisLimiter {
    redis: Redis,
    quota: Quota,
    script: Script,
    deadline: std::time::Duration,
}

impl RedisLimiter {
    /// A limiter enforcing `quota`, each check bounded by `deadline`.
    pub fn new(redis: Redis, quota: Quota, deadline: std::time::Duration) -> Self {
        Self {
            redis,
            quota,
            script: Script::new(GCRA),
            deadline,
        }
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, key: &str) -> Result<Decision, String> {
        let mut conn = self.redis.conn.clone();
        let mut invocation = self.script.key(self.redis.key(&format!("ratelimit:{key}")));
        invocation
            .arg(micros(self.quota.interval))
            .arg(micros(self.quota.tolerance()));
        let wait: i64 = tokio::time::timeout(self.deadline, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| format!("Redis gave no answer within {:?}", self.deadline))?
            .map_err(|e| e.to_string())?;
        Ok(if wait <= 0 {
            Decision::Allow
        } else {
            Decision::Limit {
                retry_after: std::time::Duration::from_micros(wait.unsigned_abs()),
            }
        })
    }
}
