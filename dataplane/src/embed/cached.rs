//! The embedding cache in front of any [`Embedder`]: texts seen before skip inference.

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::{Embedder, Priority, Result};
use crate::cache::{pack_f32, unpack_f32, Cache};

/// Wraps an embedder with a cache keyed by model and text hash.
pub struct CachedEmbedder {
    inner: Arc<dyn Embedder>,
    cache: Option<Arc<dyn Cache>>,
}

impl CachedEmbedder {
    /// Caches vectors in `cache`; `None` passes everything through.
    pub fn new(inner: Arc<dyn Embedder>, cache: Option<Arc<dyn Cache>>) -> Self {
        Self { inner, cache }
    }

    fn key(&self, text: &str) -> String {
        let digest = Sha256::digest(text.as_bytes());
        format!("emb:{}:{}", self.inner.model(), hex::encode(digest))
    }
}

#[async_trait]
impl Embedder for CachedEmbedder {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    async fn embed_as(&self, texts: Vec<String>, priority: Priority) -> Result<Vec<Vec<f32>>> {
        let Some(cache) = &self.cache else {
            return self.inner.embed_as(texts, priority).await;
        };
        let keys: Vec<String> = texts.iter().map(|t| self.key(t)).collect();
        let span = tracing::info_span!(
            "cache.get",
            cache = "embeddings",
            keys = keys.len(),
            hits = tracing::field::Empty,
        );
        let mut out: Vec<Option<Vec<f32>>> = cache
            .get_many(&keys)
            .instrument(span.clone())
            .await
            .into_iter()
            .map(|hit| {
                hit.and_then(|b| unpack_f32(&b))
                    .filter(|v| v.len() == self.dimension())
            })
            .collect();
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        span.record("hits", texts.len() - missing.len());
        if !missing.is_empty() {
            let todo: Vec<String> = missing.iter().map(|&i| texts[i].clone()).collect();
            let vectors = self.inner.embed_as(todo, priority).await?;
            let mut fill = Vec::with_capacity(missing.len());
            for (&i, v) in missing.iter().zip(vectors) {
                fill.push((keys[i].clone(), pack_f32(&v)));
                out[i] = Some(v);
            }
            cache.put_many(fill).await;
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }
}
