//! Text embeddings: the [`Embedder`] trait, the ONNX Runtime backend, Ollama as a remote
//! backend and the caching wrapper.

mod cached;
pub mod device;
pub mod identity;
pub mod ollama;
pub mod onnx;
pub mod pooling;
pub mod remote;
pub mod tokenizer;

use async_trait::async_trait;

pub use cached::CachedEmbedder;

/// Errors of an embedding backend.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The inference queue is full; the caller should retry later.
    #[error("failed to embed: the inference queue is full ({capacity} requests waiting)")]
    Overloaded {
        /// Queue capacity that was reached.
        capacity: usize,
    },
    /// The model files or runtime could not be loaded.
    #[error("failed to load the embedding model: {0}")]
    Load(String),
    /// Tokenisation failed.
    #[error("failed to tokenize input: {0}")]
    Tokenize(String),
    /// ONNX Runtime failed while running the model.
    #[error("failed to run the embedding model: {0}")]
    Inference(String),
    /// The inference threads are gone (shutdown).
    #[error("failed to embed: the inference threads have stopped")]
    Stopped,
    /// Every remote embedding server tried was overloaded (answered 429).
    #[error("failed to embed: every embedding server tried is overloaded: {0}")]
    RemoteOverloaded(String),
    /// No remote embedding server could be reached, or each one failed.
    #[error("failed to embed: no embedding server answered: {0}")]
    RemoteUnavailable(String),
    /// A remote embedding server refused the request (a 4xx other than 429), or answered
    /// with vectors that cannot be used (another count or dimension). Trying again as it is
    /// will not help: the request, the server or the configuration has to change.
    #[error("failed to embed: {0}")]
    RemoteRejected(String),
}

/// What an unsuccessful HTTP status from a remote embedding server (`ragplane embed-server`,
/// an OpenAI-protocol server, Ollama) means for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoteStatus {
    /// 429: the server is busy; another one, or a later try, may take it.
    Overloaded,
    /// 408 or 5xx: this server failed; another one, or a later try, may succeed.
    Failed,
    /// Any other 4xx: the server refuses the request itself, as any other server would.
    Rejected,
}

impl RemoteStatus {
    /// The meaning of `status`, which is not a success.
    pub(crate) fn of(status: reqwest::StatusCode) -> Self {
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Self::Overloaded
        } else if status.is_server_error() || status == reqwest::StatusCode::REQUEST_TIMEOUT {
            Self::Failed
        } else {
            Self::Rejected
        }
    }
}

/// Result alias for embedding operations.
pub type Result<T, E = EmbedError> = std::result::Result<T, E>;

/// Whose work an embedding request is. Interactive requests (a query waiting for its answer)
/// are served before bulk ones (ingestion), so a large ingestion does not starve queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// A caller is waiting: queries, the embedding server's clients by default.
    Interactive,
    /// Throughput work that may wait: document ingestion.
    Bulk,
}

impl Priority {
    /// The metric label and wire name: `interactive` or `bulk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Bulk => "bulk",
        }
    }

    /// Parses the wire name; anything but `bulk` is interactive.
    pub fn from_wire(value: &str) -> Self {
        if value.eq_ignore_ascii_case("bulk") {
            Self::Bulk
        } else {
            Self::Interactive
        }
    }
}

/// Turns texts into L2-normalised vectors.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Name of the model, used in cache keys and reported by the API.
    fn model(&self) -> &str;
    /// Dimension of every returned vector.
    fn dimension(&self) -> usize;
    /// Embeds `texts` as work of class `priority`, returning one vector per text in order.
    async fn embed_as(&self, texts: Vec<String>, priority: Priority) -> Result<Vec<Vec<f32>>>;
    /// Embeds `texts` for a waiting caller ([`Priority::Interactive`]).
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        self.embed_as(texts, Priority::Interactive).await
    }
    /// Embeds one text for a waiting caller.
    async fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        Ok(self
            .embed(vec![text.to_string()])
            .await?
            .pop()
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::RemoteStatus;
    use reqwest::StatusCode;

    #[test]
    fn a_remote_servers_status_is_busy_failed_or_a_refusal() {
        let of = |code: u16| RemoteStatus::of(StatusCode::from_u16(code).unwrap());
        assert_eq!(of(429), RemoteStatus::Overloaded);
        for code in [408, 500, 502, 503, 504] {
            assert_eq!(of(code), RemoteStatus::Failed, "{code}");
        }
        for code in [400, 401, 404, 413, 422] {
            assert_eq!(of(code), RemoteStatus::Rejected, "{code}");
        }
    }
}
