//! Caches: the [`Cache`] trait for byte values and its in-process implementation.
//!
//! Keys are built by the callers and always carry everything that makes a value valid: the
//! model for embeddings; the tenant, collection and collection version for search results. A
//! cache is therefore invalidated by bumping the version, never by scanning keys.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use moka::sync::Cache as Moka;

/// A best-effort byte cache: failures are misses, never errors.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The value under `key`, if cached.
    async fn get(&self, key: &str) -> Option<Bytes>;
    /// Caches `value` under `key`.
    async fn put(&self, key: &str, value: Bytes);
    /// Layer name for metrics (`l1`, `l2`).
    fn layer(&self) -> &'static str;
}

/// In-process cache with a capacity (in entries) and a time to live.
pub struct MemoryCache {
    inner: Moka<Arc<str>, Bytes>,
}

impl MemoryCache {
    /// Holds up to `capacity` entries, each for at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            inner: Moka::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Option<Bytes> {
        self.inner.get(key)
    }

    async fn put(&self, key: &str, value: Bytes) {
        self.inner.insert(Arc::from(key), value);
    }

    fn layer(&self) -> &'static str {
        "l1"
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
        let c = MemoryCache::new(10, Duration::from_millis(50));
        c.put("k", Bytes::from_static(b"v")).await;
        assert_eq!(c.get("k").await, Some(Bytes::from_static(b"v")));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(c.get("k").await, None);
    }

    #[test]
    fn f32_packing_round_trips() {
        let v = vec![0.5, -1.25, f32::MIN_POSITIVE];
        assert_eq!(unpack_f32(&pack_f32(&v)).unwrap(), v);
        assert!(unpack_f32(&[1, 2, 3]).is_none());
    }
}
