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
