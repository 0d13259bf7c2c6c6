//! Reranking: a cross-encoder re-scores the best retrieved chunks against the query, reading
//! query and chunk together, which ranks more precisely than comparing two embeddings.
//!
//! The stage sits behind [`Reranker`]. [`remote::RemoteReranker`] calls a rerank endpoint in the
//! Cohere/Jina or text-embeddings-inference wire format. No cross-encoder model is packaged in
//! any registry these machines reach, so no in-process ONNX cross-encoder is built, and the
//! client is tested against a stand-in server only (see docs/retrieval-quality.md).

pub mod remote;

use async_trait::async_trait;

/// Why a rerank call failed.
#[derive(Debug, thiserror::Error)]
pub enum RerankError {
    /// The endpoint cannot be reached, timed out, or answered with a server error.
    #[error("rerank endpoint {url} is unavailable: {message}")]
    Unavailable {
        /// The endpoint.
        url: String,
        /// What happened.
        message: String,
    },
    /// The endpoint answered something that is not a rerank result for this request.
    #[error("rerank endpoint {url} answered unexpectedly: {message}")]
    Protocol {
        /// The endpoint.
        url: String,
        /// What was wrong.
        message: String,
    },
}

/// Scores documents against a query.
#[async_trait]
pub trait Reranker: Send + Sync {
    /// The relevance of each document to `query`, in the documents' order; higher is more
    /// relevant.
    async fn score(&self, query: &str, documents: Vec<String>) -> Result<Vec<f32>, RerankError>;
}
