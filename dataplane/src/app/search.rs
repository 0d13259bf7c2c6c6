//! Retrieval and answers: searching a collection (through the result cache) and generating an
//! answer from the retrieved sources.

use std::collections::HashSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{validate_metadata, App, Principal};
use crate::error::{Error, Result};
use crate::generate::{prompt, ChatMessage, ChatRequest, TokenStream, Usage};
use crate::metadata::Collection;
use crate::vectors::Filter;

/// One retrieved chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    /// Cosine similarity to the query.
    pub score: f32,
    /// Document id.
    pub document_id: String,
    /// Document title.
    pub title: String,
    /// Chunk index in the document.
    pub chunk: u32,
    /// Chunk text.
    pub text: String,
}

/// A search request, shared by `/v1/search` and `/v1/query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Collection name.
    pub collection: String,
    /// Query text.
    pub query: String,
    /// Number of chunks to return (default 5).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Only chunks of documents whose metadata has all these key/value pairs.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Map<String, serde_json::Value>>,
    /// Only chunks of these documents.
    #[serde(default)]
    pub document_ids: Option<Vec<String>>,
    /// `/v1/query` only: answer as Server-Sent Events (token deltas, then a final event with
    /// the cited sources and usage) instead of one JSON object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

fn default_top_k() -> usize {
    5
}

/// Result of `/v1/query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueryAnswer {
    /// The generated answer; `null` when generation is not configured.
    pub answer: Option<String>,
    /// `generated`, or `not_configured` when no generator is set up (sources only).
    pub generation: String,
    /// Model that answered.
    pub model: Option<String>,
    /// Retrieved sources, numbered from 1 in this order in the prompt.
    pub sources: Vec<SearchHit>,
    /// Numbers (1-based) of the sources the answer cites.
    pub cited: Vec<usize>,
    /// Token counts reported by the generator.
    pub usage: Option<Usage>,
}

/// Per-request settings of an answer beyond the retrieval request.
#[derive(Debug, Clone, Default)]
pub struct AnswerOptions {
    /// Earlier turns of a conversation (OpenAI-style messages), before the question.
    pub history: Vec<ChatMessage>,
    /// Largest number of tokens to generate; the configured limit when `None`.
    pub max_tokens: Option<u32>,
    /// Sampling temperature; the server's default when `None`.
    pub temperature: Option<f32>,
}

/// An answer whose generation has started.
pub struct StartedAnswer {
    /// Retrieved sources, numbered from 1 in this order in the prompt.
    pub sources: Vec<SearchHit>,
    /// Model that answers.
    pub model: String,
    /// The tokens; `None` when generation is not configured.
    pub tokens: Option<TokenStream>,
}

impl App {
    /// Retrieval: embeds the query and searches the collection, through the result cache.
    pub async fn search(&self, p: &Principal, req: &SearchRequest) -> Result<Vec<SearchHit>> {
        let limits = &self.config.limits;
        if req.query.trim().is_empty() {
            return Err(Error::invalid("query", "must not be empty"));
        }
        if req.query.len() > limits.max_query_bytes {
            return Err(Error::invalid(
                "query",
                format!("must be at most {} bytes", limits.max_query_bytes),
            ));
        }
        if req.top_k == 0 || req.top_k > limits.max_top_k {
            return Err(Error::invalid(
                "top_k",
                format!("must be between 1 and {}", limits.max_top_k),
            ));
        }
        if let Some(f) = &req.filter {
            validate_metadata(f).map_err(|e| match e {
                Error::Invalid { message, .. } => Error::invalid("filter", message),
                other => other,
            })?;
        }
        let c = self.collection(p, &req.collection).await?;
        let cache_key = self.results.as_ref().map(|_| result_cache_key(&c, req));
        if let (Some(cache), Some(key)) = (&self.results, &cache_key) {
            let hit = cache
                .get(key)
                .await
                .and_then(|b| serde_json::from_slice::<Vec<SearchHit>>(&b).ok());
            if let Some(hits) = hit {
                return Ok(hits);
            }
        }
        let mut documents: Option<HashSet<String>> = req
            .document_ids
            .as_ref()
            .map(|ids| ids.iter().cloned().collect());
        if let Some(f) = req.filter.as_ref().filter(|f| !f.is_empty()) {
            let matching: HashSet<String> = self
                .metadata
                .documents_matching(&c.id, f)
                .await?
                .into_iter()
                .collect();
            documents = Some(match documents {
                Some(d) => d.intersection(&matching).cloned().collect(),
                None => matching,
            });
        }
        if documents.as_ref().is_some_and(HashSet::is_empty) {
            return Ok(Vec::new());
        }
        let vector = self
            .embedder
            .embed(vec![req.query.clone()])
            .await?
            .pop()
            .unwrap_or_default();
        let filter = Filter {
            tenant: c.tenant_id.clone(),
            collection: c.id.clone(),
            documents,
        };
        let hits = self.vectors.search(vector, req.top_k, filter).await?;
        let out: Vec<SearchHit> = hits
            .into_iter()
            .map(|h| SearchHit {
                score: h.score,
                document_id: h.payload.document,
                title: h.payload.title,
                chunk: h.payload.chunk,
                text: h.payload.text,
            })
            .collect();
        if let (Some(cache), Some(key)) = (&self.results, &cache_key) {
            if let Ok(b) = serde_json::to_vec(&out) {
                cache.put(key, Bytes::from(b)).await;
            }
        }
        Ok(out)
    }

    /// Retrieval plus generation. Without a generator, returns the sources and says so.
    pub async fn query(&self, p: &Principal, req: &SearchRequest) -> Result<QueryAnswer> {
        let started = self.start_answer(p, req, &AnswerOptions::default()).await?;
        let Some(tokens) = started.tokens else {
            return Ok(QueryAnswer {
                answer: None,
                generation: "not_configured".into(),
                model: None,
                sources: started.sources,
                cited: Vec::new(),
                usage: None,
            });
        };
        let g = crate::generate::collect(tokens, &started.model).await?;
        let cited = prompt::cited(&g.text, started.sources.len());
        Ok(QueryAnswer {
            answer: Some(g.text),
            generation: "generated".into(),
            model: Some(g.model),
            sources: started.sources,
            cited,
            usage: Some(g.usage),
        })
    }

    /// Retrieves sources for `req.query` and starts generating an answer from them; returns
    /// once the first token has arrived, so failures before it (retried once by the pool)
    /// are still ordinary errors. Refuses at once, before retrieval, when no generation
    /// server is healthy.
    pub async fn start_answer(
        &self,
        p: &Principal,
        req: &SearchRequest,
        options: &AnswerOptions,
    ) -> Result<StartedAnswer> {
        if let Some(g) = &self.generator {
            g.check_available()?;
        }
        let sources = if req.stream {
            // Streaming or not, it is the same retrieval (and the same result-cache entry).
            let plain = SearchRequest {
                stream: false,
                ..req.clone()
            };
            self.search(p, &plain).await?
        } else {
            self.search(p, req).await?
        };
        let Some(generator) = &self.generator else {
            return Ok(StartedAnswer {
                sources,
                model: String::new(),
                tokens: None,
            });
        };
        let texts: Vec<&str> = sources.iter().map(|s| s.text.as_str()).collect();
        let request = ChatRequest {
            messages: prompt::build_chat(&options.history, &req.query, &texts),
            max_tokens: options.max_tokens,
            temperature: options.temperature,
        };
        let tokens = generator.stream(&request).await?;
        Ok(StartedAnswer {
            sources,
            model: generator.model().to_string(),
            tokens: Some(tokens),
        })
    }
}

fn result_cache_key(c: &Collection, req: &SearchRequest) -> String {
    let body = serde_json::to_vec(req).unwrap_or_default();
    format!(
        "res:{}:{}:{}:{}",
        c.tenant_id,
        c.id,
        c.version,
        hex::encode(Sha256::digest(&body))
    )
}
