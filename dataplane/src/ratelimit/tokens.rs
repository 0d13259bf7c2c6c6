//! Per-tenant quotas on LLM tokens: GCRA with a cost, charged after each generation.
//!
//! A tenant may use `tokens_per_minute` sustained and a minute's worth at once. The quota is
//! post-paid: before a generation the tenant must be within its allowance (else 429 with the
//! time until it is), and when the generation ends its real prompt and completion tokens are
//! charged. One generation may therefore overshoot by its own size; the next one waits for it.
//! The counts live in process, or in Redis for every instance to share.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::Script;

use crate::redis_conn::Redis;

/// KEYS[1]: the tenant's theoretical arrival time (µs, Redis clock). ARGV: the interval per
/// token and the tolerance (µs), and the cost in tokens (0 only looks). Returns the µs to wait
/// before the tenant is within its allowance (0: within it now).
const GCRA_COST: &str = r"
local interval, tolerance, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if cost > 0 then
  tat = tat + cost * interval
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
local ahead = tat - now
if ahead > tolerance then return ahead - tolerance end
return 0
";

/// Where the token counts live.
enum Store {
    /// This process only: each tenant's theoretical arrival time, from `start`.
    Memory {
        start: Instant,
        tat: Mutex<HashMap<String, Duration>>,
    },
    /// Redis, shared.
    Redis {
        redis: Redis,
        script: Script,
        deadline: Duration,
    },
}

/// The LLM token quota of every tenant.
pub struct TokenBudget {
    interval: Duration,
    tolerance: Duration,
    store: Store,
}

impl TokenBudget {
    fn with(tokens_per_minute: u64, store: Store) -> Self {
        let per_minute = tokens_per_minute.max(1);
        let interval = Duration::from_secs(60) / u32::try_from(per_minute).unwrap_or(u32::MAX);
        Self {
            interval,
            tolerance: interval * u32::try_from(per_minute - 1).unwrap_or(u32::MAX),
            store,
        }
    }

    /// Counts kept in this process.
    pub fn memory(tokens_per_minute: u64) -> Self {
        Self::with(
            tokens_per_minute,
            Store::Memory {
                start: Instant::now(),
                tat: Mutex::new(HashMap::new()),
            },
        )
    }

    /// Counts shared through Redis, each command bounded by `deadline`.
    pub fn redis(tokens_per_minute: u64, redis: Redis, deadline: Duration) -> Self {
        Self::with(
            tokens_per_minute,
            Store::Redis {
                redis,
                script: Script::new(GCRA_COST),
                deadline,
            },
        )
    }

    /// Charges `cost` tokens to `tenant` (0 only looks), and returns how long until it is
    /// within its allowance again (zero when it is now).
    pub async fn charge(&self, tenant: &str, cost: u64) -> Result<Duration, String> {
        match &self.store {
            Store::Memory { start, tat } => {
                let now = start.elapsed();
                let mut map = tat.lock().unwrap_or_else(|e| e.into_inner());
                let mut t = map.get(tenant).copied().unwrap_or(now).max(now);
                if cost > 0 {
                    t += self.interval * u32::try_from(cost).unwrap_or(u32::MAX);
                    map.insert(tenant.to_string(), t);
                }
                if map.len() > 100_000 {
                    // Tenants back within their allowance carry no state worth keeping.
                    map.retain(|_, v| *v > now);
                }
                Ok((t - now).saturating_sub(self.tolerance))
            }
            Store::Redis {
                redis,
                script,
                deadline,
            } => {
                let mut conn = redis.conn.clone();
                let mut call = script.key(redis.key(&format!("llm-tokens:{tenant}")));
                call.arg(micros(self.interval))
                    .arg(micros(self.tolerance))
                    .arg(cost);
                let wait: i64 = tokio::time::timeout(*deadline, call.invoke_async(&mut conn))
                    .await
                    .map_err(|_| format!("Redis gave no answer within {deadline:?}"))?
                    .map_err(|e| e.to_string())?;
                Ok(Duration::from_micros(wait.unsigned_abs()))
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The behaviour of either store, for a fresh tenant and 60 tokens a minute (one a second).
    pub(crate) async fn spends_then_waits(budget: &TokenBudget, tenant: &str) {
        assert_eq!(budget.charge(tenant, 0).await.unwrap(), Duration::ZERO);
        // A minute's worth at once is within the allowance...
        assert_eq!(budget.charge(tenant, 59).await.unwrap(), Duration::ZERO);
        // ...and going past it is charged, then waited for: about 30 s for 30 tokens over.
        let wait = budget.charge(tenant, 31).await.unwrap();
        assert!(
            (29..=31).contains(&wait.as_secs()),
            "30 tokens over at one a second: {wait:?}"
        );
        let look = budget.charge(tenant, 0).await.unwrap();
        assert!(look > Duration::from_secs(28) && look <= wait, "{look:?}");
        assert_eq!(budget.charge("another", 0).await.unwrap(), Duration::ZERO);
    }

    #[tokio::test]
    async fn memory_budget_spends_then_waits() {
        spends_then_waits(&TokenBudget::memory(60), "t").await;
    }

    #[tokio::test]
    async fn redis_budget_spends_then_waits() {
        let Some(url) =
            crate::testing::service_env("RAGPLANE_TEST_REDIS_URL", "redis token budget")
        else {
            return;
        };
        let cfg = ragplane_config::RedisConfig {
            url: url.clone().into(),
            key_prefix: format!("tokens-test-{}", uuid::Uuid::new_v4().simple()),
            ..ragplane_config::RedisConfig::default()
        };
        let redis = Redis::connect(&cfg).unwrap();
        spends_then_waits(&TokenBudget::redis(60, redis, Duration::from_secs(2)), "t").await;
    }
}
