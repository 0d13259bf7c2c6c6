//! A rerank endpoint over HTTP, in one of two wire formats:
//!
//! - **Cohere** (also Jina's, and many servers copy it): `POST {"model", "query", "documents",
//!   "top_n"}` answers `{"results": [{"index", "relevance_score"}]}`;
//! - **TEI** (Hugging Face text-embeddings-inference): `POST {"query", "texts"}` answers
//!   `[{"index", "score"}]`.
//!
//! Either way the results name documents by index; every document must come back exactly once.

use std::time::Duration;

use async_trait::async_trait;
use ragplane_config::{RerankConfig, RerankProtocol};
use serde::Deserialize;
use serde_json::json;

use super::{RerankError, Reranker};

/// A remote rerank endpoint.
pub struct RemoteReranker {
    client: reqwest::Client,
    cfg: RerankConfig,
}

#[derive(Deserialize)]
struct CohereAnswer {
    results: Vec<CohereResult>,
}

#[derive(Deserialize)]
struct CohereResult {
    index: usize,
    relevance_score: f32,
}

#[derive(Deserialize)]
struct TeiResult {
    index: usize,
    score: f32,
}

impl RemoteReranker {
    /// A client for the configured endpoint.
    pub fn new(cfg: &RerankConfig) -> Result<Self, RerankError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .build()
            .map_err(|e| RerankError::Unavailable {
                url: cfg.url.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            client,
            cfg: cfg.clone(),
        })
    }

    fn protocol_err(&self, message: impl Into<String>) -> RerankError {
        RerankError::Protocol {
            url: self.cfg.url.clone(),
            message: message.into(),
        }
    }
}

#[async_trait]
impl Reranker for RemoteReranker {
    async fn score(&self, query: &str, documents: Vec<String>) -> Result<Vec<f32>, RerankError> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let n = documents.len();
        let body = match self.cfg.protocol {
            RerankProtocol::Cohere => json!({
                "model": self.cfg.model,
                "query": query,
                "documents": documents,
                "top_n": n,
                "return_documents": false,
            }),
            RerankProtocol::Tei => json!({ "query": query, "texts": documents }),
        };
        let mut request = self
            .client
            .post(&self.cfg.url)
            .headers(ragplane_telemetry::propagation::headers())
            .json(&body);
        if let Some(key) = &self.cfg.api_key {
            request = request.bearer_auth(key.expose());
        }
        let unavailable = |message: String| RerankError::Unavailable {
            url: self.cfg.url.clone(),
            message,
        };
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(unavailable(format!("HTTP {status}: {text}")));
        }
        if !status.is_success() {
            return Err(self.protocol_err(format!("HTTP {status}: {text}")));
        }
        let pairs: Vec<(usize, f32)> = match self.cfg.protocol {
            RerankProtocol::Cohere => serde_json::from_str::<CohereAnswer>(&text)
                .map_err(|e| self.protocol_err(format!("{e}: {text}")))?
                .results
                .into_iter()
                .map(|r| (r.index, r.relevance_score))
                .collect(),
            RerankProtocol::Tei => serde_json::from_str::<Vec<TeiResult>>(&text)
                .map_err(|e| self.protocol_err(format!("{e}: {text}")))?
                .into_iter()
                .map(|r| (r.index, r.score))
                .collect(),
        };
        let mut scores: Vec<Option<f32>> = vec![None; n];
        for (index, score) in pairs {
            match scores.get_mut(index) {
                Some(slot @ None) if score.is_finite() => *slot = Some(score),
                Some(Some(_)) => {
                    return Err(self.protocol_err(format!("index {index} scored twice")))
                }
                _ => {
                    return Err(self.protocol_err(format!("index {index} or its score is invalid")))
                }
            }
        }
        scores
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.ok_or_else(|| self.protocol_err(format!("document {i} not scored"))))
            .collect()
    }
}
