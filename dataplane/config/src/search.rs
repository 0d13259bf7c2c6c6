//! Retrieval settings: the default search mode and how hybrid search fuses its two lists.

use serde::{Deserialize, Serialize};

use crate::validate::Checker;

/// Which retrievers answer a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// Nearest neighbours of the query's embedding.
    Dense,
    /// BM25 over the analysed chunk text.
    Keyword,
    /// Both, fused.
    Hybrid,
}

impl SearchMode {
    /// The mode's name, as in requests and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Keyword => "keyword",
            Self::Hybrid => "hybrid",
        }
    }
}

/// How hybrid search fuses its dense and keyword lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionMethod {
    /// Reciprocal rank fusion.
    #[default]
    Rrf,
    /// Distribution-based score fusion.
    Dbsf,
}

/// `[search]`: retrieval defaults; a request may override each.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Mode of a request that names none.
    pub default_mode: SearchMode,
    /// Fusion method of a hybrid request that names none.
    pub fusion: FusionMethod,
    /// Reciprocal rank fusion's rank constant `k`.
    pub rrf_k: f32,
    /// Results each retriever contributes to a hybrid search before fusion (raised to the
    /// request's `top_k` when smaller).
    pub hybrid_candidates: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            default_mode: SearchMode::Hybrid,
            fusion: FusionMethod::Rrf,
            rrf_k: 60.0,
            hybrid_candidates: 50,
        }
    }
}

impl SearchConfig {
    pub(crate) fn validate(&self, c: &mut Checker) {
        c.check(
            self.rrf_k.is_finite() && self.rrf_k >= 0.0,
            "search.rrf_k",
            "must be a number of at least 0",
        );
        c.check(
            (1..=10_000).contains(&self.hybrid_candidates),
            "search.hybrid_candidates",
            "must be between 1 and 10000",
        );
    }
}

/// `[rerank]`: a cross-encoder that re-scores the best retrieved chunks. Present means
/// enabled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RerankConfig {
    /// The rerank endpoint, for example `http://reranker:8080/v1/rerank` (Cohere and Jina
    /// format) or `http://tei:8080/rerank` (text-embeddings-inference).
    pub url: String,
    /// What the endpoint speaks.
    pub protocol: RerankProtocol,
    /// Model name sent with each request (Cohere and Jina format; ignored by TEI).
    pub model: Option<String>,
    /// Bearer token for the endpoint.
    pub api_key: Option<crate::Secret>,
    /// Retrieved chunks re-scored per search (raised to the request's `top_k`).
    pub candidates: usize,
    /// Milliseconds allowed for one rerank call.
    pub timeout_ms: u64,
    /// When the endpoint fails: `open` serves the retrieval order, `closed` fails the search
    /// with 503.
    pub on_error: crate::FailMode,
}

/// Wire format of a rerank endpoint.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RerankProtocol {
    /// `{model, query, documents, top_n}` → `{results: [{index, relevance_score}]}` (Cohere,
    /// Jina, and servers that copy them).
    #[default]
    Cohere,
    /// `{query, texts}` → `[{index, score}]` (Hugging Face text-embeddings-inference).
    Tei,
}

impl Default for RerankConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            protocol: RerankProtocol::Cohere,
            model: None,
            api_key: None,
            candidates: 50,
            timeout_ms: 5000,
            on_error: crate::FailMode::Open,
        }
    }
}

impl RerankConfig {
    pub(crate) fn validate(&self, c: &mut Checker) {
        c.check(
            self.url.starts_with("http://") || self.url.starts_with("https://"),
            "rerank.url",
            "must be an http:// or https:// URL",
        );
        c.check(
            (1..=1000).contains(&self.candidates),
            "rerank.candidates",
            "must be between 1 and 1000",
        );
        c.check(
            self.timeout_ms >= 1,
            "rerank.timeout_ms",
            "must be at least 1",
        );
    }
}
