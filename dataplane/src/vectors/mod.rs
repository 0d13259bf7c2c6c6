//! Vector index: the [`VectorIndex`] trait and its implementations: embedded (usearch HNSW on
//! local files), Qdrant (gRPC), and PostgreSQL (a shared table with an in-memory HNSW replica
//! per process).
//!
//! Points carry a deterministic id derived from (document, chunk index), so re-running an
//! ingest job overwrites the same points instead of adding duplicates. Every search is
//! filtered by tenant and collection; a document filter narrows it further.

pub mod embedded;
pub mod fusion;
pub mod hnsw;
pub mod postgres;
pub mod qdrant;
mod wal;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use embedded::EmbeddedIndex;
pub use fusion::Fusion;
pub use postgres::PostgresIndex;
pub use qdrant::QdrantIndex;

/// Errors of a vector index backend.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// Reading or writing the index files failed.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Which file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The index library reported an error.
    #[error("vector index error in collection {collection}: {message}")]
    Index {
        /// Collection concerned.
        collection: String,
        /// The library's message.
        message: String,
    },
    /// A vector has the wrong dimension.
    #[error("vector has dimension {got}, collection {collection} expects {expected}")]
    Dimension {
        /// Collection concerned.
        collection: String,
        /// Its dimension.
        expected: usize,
        /// The vector's dimension.
        got: usize,
    },
    /// The backend server cannot be reached (down, restarting, or out of connections); the
    /// same request may succeed later.
    #[error("vector index backend {backend} is unavailable: failed to {action}: {message}")]
    Unavailable {
        /// Which backend (`qdrant`, `postgres`).
        backend: &'static str,
        /// What was being done.
        action: String,
        /// The client's message.
        message: String,
    },
    /// The backend server answered with an error.
    #[error("vector index backend {backend} failed to {action}: {message}")]
    Backend {
        /// Which backend (`qdrant`, `postgres`).
        backend: &'static str,
        /// What was being done.
        action: String,
        /// The server's message.
        message: String,
    },
    /// The backend cannot answer this kind of request.
    #[error("the {backend} vector index does not support {what}")]
    Unsupported {
        /// Which backend.
        backend: &'static str,
        /// What was asked.
        what: &'static str,
    },
    /// A persisted file is damaged beyond the recoverable torn tail.
    #[error("vector index file {path} is corrupt: {message}")]
    Corrupt {
        /// Which file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Maps an I/O error, naming the action and file.
pub(crate) fn io(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> VectorError {
    let path = path.display().to_string();
    move |source| VectorError::Io {
        action,
        path,
        source,
    }
}

/// Result alias for vector index operations.
pub type Result<T, E = VectorError> = std::result::Result<T, E>;

/// What each point carries besides its vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// Tenant that owns the point.
    pub tenant: String,
    /// Collection id.
    pub collection: String,
    /// Document id.
    pub document: String,
    /// Document title, so that search results need no metadata lookup.
    pub title: String,
    /// Chunk index inside the document.
    pub chunk: u32,
    /// The chunk's text.
    pub text: String,
}

impl Payload {
    /// The terms keyword search indexes for this chunk: its document's title and its text,
    /// through the shared analyzer.
    pub fn keyword_terms(&self) -> Vec<String> {
        let mut terms = crate::keyword::english().terms(&self.title);
        terms.extend(crate::keyword::english().terms(&self.text));
        terms
    }
}

/// A point to upsert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Deterministic id; see [`point_id`].
    pub id: u64,
    /// Unit-length embedding.
    pub vector: Vec<f32>,
    /// Payload.
    pub payload: Payload,
    /// The document's client metadata, for backends that filter on it themselves (see
    /// [`VectorIndex::filters_metadata`]); the others resolve metadata filters in the metadata
    /// store, so it is not kept in their logs.
    #[serde(skip, default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Which points a search may return.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this tenant's points (always set by the API).
    pub tenant: String,
    /// Only this collection's points.
    pub collection: String,
    /// When set, only points of these documents.
    pub documents: Option<std::collections::HashSet<String>>,
    /// When set, only points of documents whose metadata passes it; set only for a backend
    /// that [filters metadata](VectorIndex::filters_metadata) itself.
    pub metadata: Option<crate::metadata::filter::MetadataFilter>,
}

impl Filter {
    /// The collection the filter selects.
    pub fn key(&self) -> CollectionKey {
        CollectionKey {
            tenant: self.tenant.clone(),
            collection: self.collection.clone(),
        }
    }

    /// Whether `p` passes the filter.
    pub fn matches(&self, p: &Payload) -> bool {
        p.tenant == self.tenant
            && p.collection == self.collection
            && self
                .documents
                .as_ref()
                .is_none_or(|d| d.contains(&p.document))
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Point id.
    pub id: u64,
    /// The score results are ranked by: the cosine similarity in a dense search, the BM25
    /// score in a keyword search, the fused score in a hybrid one.
    pub score: f32,
    /// Cosine similarity to the query, when the dense search found this point.
    pub dense: Option<f32>,
    /// BM25 score, when the keyword search found this point.
    pub keyword: Option<f32>,
    /// The reranker's score, when the hits were reranked.
    pub rerank: Option<f32>,
    /// The point's payload.
    pub payload: Payload,
}

impl Hit {
    /// A hit of a dense search.
    pub fn dense(id: u64, score: f32, payload: Payload) -> Self {
        Self {
            id,
            score,
            dense: Some(score),
            keyword: None,
            rerank: None,
            payload,
        }
    }

    /// A hit of a keyword search.
    pub fn keyword(id: u64, score: f32, payload: Payload) -> Self {
        Self {
            id,
            score,
            dense: None,
            keyword: Some(score),
            rerank: None,
            payload,
        }
    }
}

/// A hybrid request: a dense and a keyword search of `candidates` points each, fused into
/// the best `k`.
#[derive(Debug, Clone)]
pub struct HybridQuery {
    /// The query's embedding.
    pub vector: Vec<f32>,
    /// The query's distinct analysed terms.
    pub terms: Vec<String>,
    /// Results wanted.
    pub k: usize,
    /// How many results each search contributes before fusion (at least `k`).
    pub candidates: usize,
    /// How the two lists are fused.
    pub fusion: Fusion,
}

/// Identifies a collection inside the index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CollectionKey {
    /// Owning tenant.
    pub tenant: String,
    /// Collection id.
    pub collection: String,
}

/// Stores vectors with payloads and answers filtered nearest-neighbour queries.
#[async_trait]
pub trait VectorIndex: Send + Sync {
    /// Creates the collection if it does not exist yet.
    async fn ensure_collection(&self, key: &CollectionKey, dimension: usize) -> Result<()>;
    /// Removes the collection and all its points.
    async fn drop_collection(&self, key: &CollectionKey) -> Result<()>;
    /// Inserts or replaces points by id.
    async fn upsert(&self, key: &CollectionKey, points: Vec<Point>) -> Result<()>;
    /// Removes every point of `document`; returns how many were removed.
    async fn delete_document(&self, key: &CollectionKey, document: &str) -> Result<u64> {
        self.delete_chunks_from(key, document, 0).await
    }
    /// Removes the points of `document` whose chunk index is `first` or more: what a document
    /// re-indexed into fewer chunks leaves behind. Returns how many were removed.
    async fn delete_chunks_from(
        &self,
        key: &CollectionKey,
        document: &str,
        first: u32,
    ) -> Result<u64>;
    /// The `k` nearest points to `query` that pass `filter`, best first.
    async fn search(&self, query: Vec<f32>, k: usize, filter: Filter) -> Result<Vec<Hit>>;
    /// The `k` best points by BM25 for the distinct analysed query `terms` (see
    /// [`crate::keyword::Analyzer::query_terms`]) that pass `filter`, best first. Points sharing
    /// no term with the query are not returned.
    async fn keyword_search(
        &self,
        terms: Vec<String>,
        k: usize,
        filter: Filter,
    ) -> Result<Vec<Hit>>;
    /// Whether the backend applies `filter` as [`Filter::metadata`] itself, on the points' copy
    /// of their document's metadata. When it does not, the metadata store resolves the filter
    /// into [`Filter::documents`].
    fn filters_metadata(&self, filter: &crate::metadata::filter::MetadataFilter) -> bool {
        let _ = filter;
        false
    }
    /// Whether [`VectorIndex::keyword_search`] (and so hybrid search) is available; a backend
    /// may first read what that depends on (a request that names no mode is answered by dense
    /// search when it is not), and fails as a search would when it cannot.
    async fn supports_keyword(&self) -> Result<bool> {
        Ok(true)
    }
    /// Dense and keyword search fused. By default both searches run here, concurrently, and
    /// are fused in this process; a backend that can fuse on its server overrides this.
    async fn hybrid_search(&self, query: HybridQuery, filter: Filter) -> Result<Vec<Hit>> {
        use tracing::Instrument;
        let candidates = query.candidates.max(query.k);
        let (dense, keyword) = futures::try_join!(
            self.search(query.vector, candidates, filter.clone())
                .instrument(tracing::info_span!("vector.dense", candidates)),
            self.keyword_search(query.terms, candidates, filter)
                .instrument(tracing::info_span!("vector.keyword", candidates)),
        )?;
        let _fusion = tracing::info_span!(
            "fusion",
            method = ?query.fusion.method,
            dense = dense.len(),
            keyword = keyword.len()
        )
        .entered();
        Ok(query.fusion.fuse(dense, keyword, query.k))
    }
    /// The live average chunk length, in analysed terms, that keyword search normalises
    /// against; `None` where the backend has no live statistic (Qdrant uses a setting).
    async fn keyword_average_terms(&self, key: &CollectionKey) -> Result<Option<f32>> {
        let _ = key;
        Ok(None)
    }
    /// Number of points in the collection, or of one document when given.
    async fn count(&self, key: &CollectionKey, document: Option<&str>) -> Result<u64>;
    /// Persists everything in memory so that the next open is fast.
    async fn flush(&self) -> Result<()>;
}

/// Opens the vector index that `config` selects.
pub async fn open(config: &ragplane_config::Config) -> Result<std::sync::Arc<dyn VectorIndex>> {
    use ragplane_config::VectorIndexConfig;
    Ok(match &config.vectors {
        VectorIndexConfig::Embedded(c) => {
            std::sync::Arc::new(EmbeddedIndex::open(config.vectors_dir(), c.clone()).await?)
        }
        VectorIndexConfig::Qdrant(c) => {
            let idx = QdrantIndex::open(c.clone())?;
            idx.inspect().await;
            std::sync::Arc::new(idx)
        }
        VectorIndexConfig::Postgres(c) => {
            std::sync::Arc::new(PostgresIndex::open(c.clone()).await?)
        }
    })
}

/// The id of a document's chunk: stable across retries, so upserts are idempotent.
pub fn point_id(document: &str, chunk: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(document.as_bytes());
    h.update(chunk.to_le_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    // Keep the top bit clear so ids stay valid for stores that use signed 64-bit integers.
    u64::from_le_bytes(bytes) & (u64::MAX >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_are_deterministic_and_distinct() {
        assert_eq!(point_id("doc-a", 3), point_id("doc-a", 3));
        assert_ne!(point_id("doc-a", 3), point_id("doc-a", 4));
        assert_ne!(point_id("doc-a", 3), point_id("doc-b", 3));
        assert!(point_id("doc-a", 3) < 1 << 63);
    }
}
