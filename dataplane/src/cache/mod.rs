//! Caches: the [`Cache`] trait for byte values, the in-process layer (L1), the Redis layer
//! shared by every instance (L2), and the two stacked.
//!
//! Keys are built by the callers and always carry everything that makes a value valid: the
//! model for embeddings; the tenant, collection and collection version for search results. A
//! cache is therefore invalidated by bumping the version, never by scanning keys.
//!
//! Each layer counts its own hits and misses in `ragplane_cache_requests_total{cache,layer}`.

pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use moka::sync::Cache as Moka;

pub use self::redis::RedisCache;
use crate::metrics;

/// A best-effort byte cache: failures are misses, never errors.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The value under `key`, if cached.
    async fn get(&self, key: &str) -> Option<Bytes>;
    /// Caches `value` under `key`.
    async fn put(&self, key: &str, value: Bytes);
    /// The values under `keys`, in order.
    async fn get_many(&self, keys: &[String]) -> Vec<Option<Bytes>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await);
        }
        out
    }
    /// Caches each value under its key.
    async fn put_many(&self, entries: Vec<(String, Bytes)>) {
        for (k, v) in entries {
            self.put(&k, v).await;
        }
    }
    /// Drops every entry whose key starts with `prefix` (a deleted tenant's, say).
    async fn delete_prefix(&self, prefix: &str);
}

/// In-process cache with a capacity (in entries) and a time to live.
pub struct MemoryCache {
    name: &'static str,
    inner: Moka<Arc<str>, Bytes>,
}

impl MemoryCache {
    /// Cache `name` (for metrics), holding up to `capacity` entries, each for at most `ttl`.
    pub fn new(name: &'static str, capacity: u64, ttl: Duration) -> Self {
        Self {
            name,
            inner: Moka::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Option<Bytes> {
        let v = self.inner.get(key);
        metrics::cache_lookup(
            self.name,
            "l1",
            usize::from(v.is_some()),
            usize::from(v.is_none()),
        );
        v
    }

    async fn put(&self, key: &str, value: Bytes) {
        self.inner.insert(Arc::from(key), value);
    }

    async fn delete_prefix(&self, prefix: &str) {
        let prefix = prefix.to_string();
        if let Err(e) = self
            .inner
            .invalidate_entries_if(move |k, _| k.starts_with(prefix.as_str()))
        {
            tracing::warn!(cache = self.name, error = %e, "failed to drop cache entries");
        }
    }
}

/// An in-process layer over a shared one: reads try L1, then L2 (filling L1 on an L2 hit);
/// writes go to both.
pub struct TieredCache {
    l1: Arc<dyn Cache>,
    l2: Arc<dyn Cache>,
}

impl TieredCache {
    /// Stacks `l1` over `l2`.
    pub fn new(l1: Arc<dyn Cache>, l2: Arc<dyn Cache>) -> Self {
        Self { l1, l2 }
    }
}

#[async_trait]
impl Cache for TieredCache {
    async fn get(&self, key: &str) -> Option<Bytes> {
        if let Some(v) = self.l1.get(key).await {
            return Some(v);
        }
        let v = self.l2.get(key).await?;
        self.l1.put(key, v.clone()).await;
        Some(v)
    }

    async fn put(&self, key: &str, value: Bytes) {
        self.l1.put(key, value.clone()).await;
        self.l2.put(key, value).await;
    }

    async fn get_many(&self, keys: &[String]) -> Vec<Option<Bytes>> {
        let mut out = self.l1.get_many(keys).await;
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        if missing.is_empty() {
            return out;
        }
        let wanted: Vec<String> = missing.iter().map(|&i| keys[i].clone()).collect();
        let found = self.l2.get_many(&wanted).await;
        let mut fill = Vec::new();
        for (&i, v) in missing.iter().zip(found) {
            if let Some(v) = v {
                fill.push((keys[i].clone(), v.clone()));
                out[i] = Some(v);
            }
        }
        self.l1.put_many(fill).await;
        out
    }

    async fn put_many(&self, entries: Vec<(String, Bytes)>) {
        self.l1.put_many(entries.clone()).await;
        self.l2.put_many(entries).await;
    }

    async fn delete_prefix(&self, prefix: &str) {
        self.l2.delete_prefix(prefix).await;
        self.l1.delete_prefix(prefix).await;
    }
}

/// Packs f32 values little-endian.
pub fn pack_f32(v: &[f32]) -> Bytes {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(out)
}

/// Unpacks little-endian f32 values; `None` when the length is not a multiple of 4.
pub fn unpack_f32(b: &[u8]) -> Option<Vec<f32>> {
    if b.len() % 4 != 0 {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_cache_round_trip_and_ttl() {
        let c = MemoryCache::new("test", 10, Duration::from_millis(50));
        c.put("k", Bytes::from_static(b"v")).await;
        assert_eq!(c.get("k").await, Some(Bytes::from_static(b"v")));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(c.get("k").await, None);
    }

    #[tokio::test]
    async fn tiered_cache_fills_l1_from_l2_and_shares_l2() {
        let Some(r) = crate::testing::test_redis("tiered cache") else {
            return;
        };
        let ttl = Duration::from_secs(60);
        let l2 = || -> Arc<dyn Cache> {
            Arc::new(RedisCache::new(r.clone(), "t", ttl, Duration::from_secs(1)))
        };
        let a = TieredCache::new(Arc::new(MemoryCache::new("t", 10, ttl)), l2());
        let b_l1: Arc<dyn Cache> = Arc::new(MemoryCache::new("t", 10, ttl));
        let b = TieredCache::new(b_l1.clone(), l2());
        a.put("k", Bytes::from_static(b"v")).await;
        assert_eq!(b_l1.get("k").await, None);
        assert_eq!(
            b.get("k").await,
            Some(Bytes::from_static(b"v")),
            "instance b reads a's write through L2"
        );
        assert_eq!(
            b_l1.get("k").await,
            Some(Bytes::from_static(b"v")),
            "and keeps it in its L1"
        );
        a.put_many(vec![
            ("x".into(), Bytes::from_static(b"1")),
            ("y".into(), Bytes::from_static(b"2")),
        ])
        .await;
        let got = b.get_many(&["x".into(), "nope".into(), "y".into()]).await;
        assert_eq!(
            got,
            vec![
                Some(Bytes::from_static(b"1")),
                None,
                Some(Bytes::from_static(b"2"))
            ]
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_a_miss_not_an_error() {
        let cfg = ragplane_config::RedisConfig {
            url: ragplane_config::Secret::new("redis://127.0.0.1:1"),
            connect_timeout_ms: 100,
            ..ragplane_config::RedisConfig::default()
        };
        let r = crate::redis_conn::Redis::connect(&cfg).unwrap();
        let ttl = Duration::from_secs(60);
        let c = TieredCache::new(
            Arc::new(MemoryCache::new("t", 10, ttl)),
            Arc::new(RedisCache::new(r, "t", ttl, Duration::from_millis(200))),
        );
        let before = metrics::CACHE_ERRORS.with_label_values(&["t"]).get();
        c.put("k", Bytes::from_static(b"v")).await;
        assert_eq!(
            c.get("k").await,
            Some(Bytes::from_static(b"v")),
            "L1 still serves"
        );
        assert_eq!(c.get("other").await, None);
        assert!(metrics::CACHE_ERRORS.with_label_values(&["t"]).get() >= before + 2);
    }

    #[test]
    fn f32_packing_round_trips() {
        let v = vec![0.5, -1.25, f32::MIN_POSITIVE];
        assert_eq!(unpack_f32(&pack_f32(&v)).unwrap(), v);
        assert!(unpack_f32(&[1, 2, 3]).is_none());
    }
}
