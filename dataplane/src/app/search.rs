//! Retrieval and answers: searching a collection (through the result cache) and generating an
//! answer from the retrieved sources.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use ragplane_telemetry::OpenTelemetrySpanExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::query_log::PendingQuery;
use super::{App, Principal};
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::generate::{prompt, ChatMessage, ChatRequest, TokenStream, Usage};
use crate::keyword;
use crate::metadata::filter::MetadataFilter;
use crate::metadata::{ChunkProvenance, Collection};
use crate::vectors::fusion::FusionMethod;
use crate::vectors::{Filter, Fusion, Hit, HybridQuery};
pub use ragplane_config::SearchMode;

/// One retrieved chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    /// The score hits are ranked by: the cosine similarity in `dense` mode, the BM25 score in
    /// `keyword` mode, the fused score in `hybrid` mode.
    pub score: f32,
    /// Cosine similarity to the query; `null` when the dense search did not return this chunk.
    #[serde(default)]
    pub dense_score: Option<f32>,
    /// BM25 score; `null` when the keyword search did not return this chunk.
    #[serde(default)]
    pub keyword_score: Option<f32>,
    /// The reranker's score, which `score` then equals; `null` when not reranked.
    #[serde(default)]
    pub rerank_score: Option<f32>,
    /// Document id.
    pub document_id: String,
    /// Document title.
    pub title: String,
    /// Chunk index in the document.
    pub chunk: u32,
    /// Chunk text.
    pub text: String,
    /// Where the chunk comes from: character offsets in the document's extracted text, the PDF
    /// page and the heading path; `null` for chunks indexed before this was recorded.
    #[serde(default)]
    pub provenance: Option<ChunkProvenance>,
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
    /// `dense`, `keyword` or `hybrid`; the server's `search.default_mode` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "hybrid")]
    pub mode: Option<SearchMode>,
    /// How `hybrid` mode fuses its two lists; the server's `[search]` settings when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<FusionRequest>,
    /// `document`: return at most one chunk per document (its best), and `top_k` documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "document")]
    pub group_by: Option<GroupBy>,
    /// Drop hits whose `score` is below this (the score of the request's mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
    /// Rerank the retrieved chunks with the configured reranker (default: whenever one is
    /// configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank: Option<bool>,
    /// `/v1/query` only: answer as Server-Sent Events (token deltas, then a final event with
    /// the cited sources and usage) instead of one JSON object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// `/v1/query` only: also return `prompt`, the exact messages sent to the LLM.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_prompt: bool,
}

fn default_top_k() -> usize {
    5
}

/// How hits are collapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One hit per document.
    Document,
}

/// A query as the retrievers take it: its embedding (empty in keyword mode) and its distinct
/// analysed terms (empty in dense mode).
struct Analysed {
    vector: Vec<f32>,
    terms: Vec<String>,
}

/// Largest number of chunks one grouped search looks at to find `top_k` documents.
const MAX_GROUP_SCAN: usize = 10_000;

/// Fusion settings of one hybrid request; each absent field takes the server's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FusionRequest {
    /// `rrf` (reciprocal rank fusion) or `dbsf` (distribution-based score fusion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "rrf")]
    pub method: Option<FusionMethod>,
    /// RRF's rank constant (at least 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<f32>,
    /// Weight of the dense list (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense_weight: Option<f32>,
    /// Weight of the keyword list (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword_weight: Option<f32>,
    /// Results each list contributes before fusion (at least `top_k`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<usize>,
}

/// Largest `fusion.candidates` accepted.
pub const MAX_FUSION_CANDIDATES: usize = 10_000;

impl From<Hit> for SearchHit {
    fn from(h: Hit) -> Self {
        Self {
            score: h.score,
            dense_score: h.dense,
            keyword_score: h.keyword,
            rerank_score: h.rerank,
            document_id: h.payload.document,
            title: h.payload.title,
            chunk: h.payload.chunk,
            text: h.payload.text,
            provenance: None,
        }
    }
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
    /// The messages sent to the model (`include_prompt: true` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Vec<ChatMessage>>,
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
    /// The retrieval's mode and cache outcome, for the query log.
    pub retrieval: Searched,
    /// Model that answers.
    pub model: String,
    /// The messages sent to the model, when the request asked for them.
    pub prompt: Option<Vec<ChatMessage>>,
    /// The tokens; `None` when generation is not configured.
    pub tokens: Option<TokenStream>,
}

/// How a search went, besides its hits: for the query log.
#[derive(Debug, Clone, Copy)]
pub struct Searched {
    /// The mode it ran in.
    pub mode: SearchMode,
    /// Whether the result cache served it.
    pub cache: super::query_log::CacheOutcome,
}

impl App {
    /// Retrieval in the request's mode (dense, keyword or both fused), through the result
    /// cache.
    pub async fn search(&self, p: &Principal, req: &SearchRequest) -> Result<Vec<SearchHit>> {
        Ok(self.search_traced(p, req).await?.0)
    }

    /// [`App::search`], also saying in which mode it ran and whether the cache served it.
    ///
    /// A search the result cache serves has no span of its own: it is a few microseconds of
    /// work, less than a span costs to record and export, so the request's span says
    /// `cache = hit` instead. A search that runs has a `search` span.
    pub async fn search_traced(
        &self,
        p: &Principal,
        req: &SearchRequest,
    ) -> Result<(Vec<SearchHit>, Searched)> {
        use super::query_log::CacheOutcome;
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
        if req.min_score.is_some_and(|m| !m.is_finite()) {
            return Err(Error::invalid("min_score", "must be a finite number"));
        }
        let metadata_filter = match &req.filter {
            Some(f) => MetadataFilter::parse(f).map_err(|e| Error::invalid("filter", e))?,
            None => MetadataFilter::default(),
        };
        let mode = self.search_mode(req).await?;
        let fusion = self.fusion(req)?;
        let c = self.collection(p, &req.collection).await?;
        let embedder = match mode {
            SearchMode::Keyword => None,
            _ => Some(self.query_embedder(&c).await?),
        };
        let cache_key = self
            .results
            .as_ref()
            .map(|_| result_cache_key(&c, req, mode, &fusion));
        let mut searched = Searched {
            mode,
            cache: CacheOutcome::Off,
        };
        if let (Some(cache), Some(key)) = (&self.results, &cache_key) {
            let hit = cache
                .get(key)
                .await
                .and_then(|b| serde_json::from_slice::<Vec<SearchHit>>(&b).ok());
            if let Some(hits) = hit {
                searched.cache = CacheOutcome::Hit;
                tracing::Span::current().set_attribute("cache", "hit");
                return Ok((hits, searched));
            }
            searched.cache = CacheOutcome::Miss;
        }
        let span = tracing::info_span!(
            "search",
            collection = %req.collection,
            k = req.top_k,
            mode = mode.as_str(),
            cache = searched.cache.as_str(),
            hits = tracing::field::Empty,
        );
        let hits = self
            .run_search(req, &c, mode, fusion, embedder, metadata_filter)
            .instrument(span.clone())
            .await?;
        span.record("hits", hits.len());
        if let (Some(cache), Some(key)) = (&self.results, &cache_key) {
            if let Ok(b) = serde_json::to_vec(&hits) {
                cache.put(key, Bytes::from(b)).await;
            }
        }
        Ok((hits, searched))
    }

    /// The search itself, past validation and the result cache: the metadata filter, the
    /// query's embedding and terms, retrieval (grouped by document when asked) and each
    /// hit's provenance.
    async fn run_search(
        &self,
        req: &SearchRequest,
        c: &Collection,
        mode: SearchMode,
        fusion: Fusion,
        embedder: Option<&Arc<dyn Embedder>>,
        metadata_filter: MetadataFilter,
    ) -> Result<Vec<SearchHit>> {
        let mut documents: Option<HashSet<String>> = req
            .document_ids
            .as_ref()
            .map(|ids| ids.iter().cloned().collect());
        // A backend that keeps each point's document metadata filters on it in the same
        // query; for the others the metadata store names the matching documents first.
        let pushed_down =
            !metadata_filter.is_empty() && self.vectors.filters_metadata(&metadata_filter);
        if !metadata_filter.is_empty() && !pushed_down {
            let matching: HashSet<String> = self
                .metadata
                .documents_matching(&c.id, &metadata_filter)
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
        let filter = Filter {
            tenant: c.tenant_id.clone(),
            collection: super::key_of(c).collection,
            documents,
            metadata: pushed_down.then_some(metadata_filter),
        };
        crate::metrics::SEARCHES
            .with_label_values(&[mode.as_str()])
            .inc();
        // Embedded and analysed once, however deep a grouped search has to look.
        let query = Analysed {
            vector: match embedder {
                None => Vec::new(),
                Some(e) => e.embed_one(&req.query).await?,
            },
            terms: match mode {
                SearchMode::Dense => Vec::new(),
                _ => keyword::english().query_terms(&req.query),
            },
        };
        let mut hits = match req.group_by {
            None => {
                self.retrieve(req, &query, mode, fusion, req.top_k, filter)
                    .await?
            }
            Some(GroupBy::Document) => {
                // Collapse to each document's best chunk; look deeper while too few documents
                // came back and more chunks may exist.
                let mut depth = (req.top_k * 4).min(MAX_GROUP_SCAN);
                loop {
                    let found = self
                        .retrieve(req, &query, mode, fusion, depth, filter.clone())
                        .await?;
                    let exhausted = found.len() < depth || depth >= MAX_GROUP_SCAN;
                    let mut seen = HashSet::new();
                    let mut best: Vec<Hit> = found
                        .into_iter()
                        .filter(|h| seen.insert(h.payload.document.clone()))
                        .collect();
                    if best.len() >= req.top_k || exhausted {
                        best.truncate(req.top_k);
                        break best;
                    }
                    depth = (depth * 4).min(MAX_GROUP_SCAN);
                }
            }
        };
        if let Some(min) = req.min_score {
            hits.retain(|h| h.score >= min);
        }
        let mut out: Vec<SearchHit> = hits.into_iter().map(SearchHit::from).collect();
        if !out.is_empty() {
            let keys: Vec<(String, u32)> = out
                .iter()
                .map(|h| (h.document_id.clone(), h.chunk))
                .collect();
            let mut found = self.metadata.chunk_provenance(&keys, c.generation).await?;
            for h in &mut out {
                h.provenance = found.remove(&(h.document_id.clone(), h.chunk));
            }
        }
        Ok(out)
    }

    /// The best `k` chunks in `mode`, reranked when the request asks for it.
    async fn retrieve(
        &self,
        req: &SearchRequest,
        query: &Analysed,
        mode: SearchMode,
        fusion: Fusion,
        k: usize,
        filter: Filter,
    ) -> Result<Vec<Hit>> {
        let reranker = match (req.rerank, &self.reranker, &self.config.rerank) {
            (Some(false), _, _) | (None, None, _) => None,
            (_, Some(r), Some(cfg)) => Some((r, cfg)),
            _ => {
                return Err(Error::invalid(
                    "rerank",
                    "no reranker is configured on this server ([rerank])",
                ))
            }
        };
        let Some((reranker, cfg)) = reranker else {
            return self
                .retrieve_ranked(req, query, mode, fusion, k, filter)
                .await;
        };
        let hits = self
            .retrieve_ranked(req, query, mode, fusion, k.max(cfg.candidates), filter)
            .await?;
        let texts: Vec<String> = hits.iter().map(|h| h.payload.text.clone()).collect();
        let _timer = crate::metrics::RERANK_SECONDS.start_timer();
        let span = tracing::info_span!("rerank", candidates = texts.len());
        match reranker.score(&req.query, texts).instrument(span).await {
            Ok(scores) => {
                let mut reranked: Vec<Hit> = hits
                    .into_iter()
                    .zip(scores)
                    .map(|(h, s)| Hit {
                        score: s,
                        rerank: Some(s),
                        ..h
                    })
                    .collect();
                // A stable sort keeps the retrieval order among equal rerank scores.
                reranked.sort_by(|a, b| b.score.total_cmp(&a.score));
                reranked.truncate(k);
                Ok(reranked)
            }
            Err(e) => {
                crate::metrics::RERANK_ERRORS.inc();
                match cfg.on_error {
                    ragplane_config::FailMode::Open => {
                        tracing::warn!(error = %e, "reranking failed; serving the retrieval order");
                        let mut hits = hits;
                        hits.truncate(k);
                        Ok(hits)
                    }
                    ragplane_config::FailMode::Closed => Err(Error::Unavailable {
                        message: e.to_string(),
                        retry_after_secs: 1,
                    }),
                }
            }
        }
    }

    /// The best `k` chunks in `mode`, as the index ranks them.
    async fn retrieve_ranked(
        &self,
        req: &SearchRequest,
        query: &Analysed,
        mode: SearchMode,
        fusion: Fusion,
        k: usize,
        filter: Filter,
    ) -> Result<Vec<Hit>> {
        let span = tracing::info_span!(
            "vector.search",
            backend = self.config.vectors.backend(),
            mode = mode.as_str(),
            k,
            documents = filter.documents.as_ref().map(HashSet::len),
            metadata_filter = filter.metadata.is_some(),
            hits = tracing::field::Empty,
        );
        let hits = async {
            Ok::<_, Error>(match mode {
                SearchMode::Dense => self.vectors.search(query.vector.clone(), k, filter).await?,
                // Only stop words or punctuation: nothing can match.
                SearchMode::Keyword if query.terms.is_empty() => Vec::new(),
                SearchMode::Keyword => {
                    self.vectors
                        .keyword_search(query.terms.clone(), k, filter)
                        .await?
                }
                SearchMode::Hybrid => {
                    let query = HybridQuery {
                        vector: query.vector.clone(),
                        terms: query.terms.clone(),
                        k,
                        candidates: req
                            .fusion
                            .as_ref()
                            .and_then(|f| f.candidates)
                            .unwrap_or(self.config.search.hybrid_candidates)
                            .max(k),
                        fusion,
                    };
                    self.vectors.hybrid_search(query, filter).await?
                }
            })
        }
        .instrument(span.clone())
        .await?;
        span.record("hits", hits.len());
        Ok(hits)
    }

    /// The request's mode, else the configured default; a backend without keyword search
    /// serves requests that name no mode densely.
    async fn search_mode(&self, req: &SearchRequest) -> Result<SearchMode> {
        Ok(match req.mode {
            Some(m) => m,
            None if self.vectors.supports_keyword().await? => self.config.search.default_mode,
            None => SearchMode::Dense,
        })
    }

    /// The request's fusion settings over the configured ones, checked.
    fn fusion(&self, req: &SearchRequest) -> Result<Fusion> {
        let cfg = &self.config.search;
        let f = req.fusion.clone().unwrap_or_default();
        let weight = |field: &str, w: Option<f32>| match w {
            Some(w) if !(w.is_finite() && w >= 0.0) => {
                Err(Error::invalid(field, "must be a number of at least 0"))
            }
            w => Ok(w.unwrap_or(1.0)),
        };
        let fusion = Fusion {
            method: f.method.unwrap_or(cfg.fusion),
            rrf_k: match f.k {
                Some(k) if !(k.is_finite() && k >= 0.0) => {
                    return Err(Error::invalid("fusion.k", "must be a number of at least 0"))
                }
                k => k.unwrap_or(cfg.rrf_k),
            },
            dense_weight: weight("fusion.dense_weight", f.dense_weight)?,
            keyword_weight: weight("fusion.keyword_weight", f.keyword_weight)?,
        };
        if fusion.dense_weight == 0.0 && fusion.keyword_weight == 0.0 {
            return Err(Error::invalid(
                "fusion",
                "dense_weight and keyword_weight must not both be 0",
            ));
        }
        if f.candidates
            .is_some_and(|n| n == 0 || n > MAX_FUSION_CANDIDATES)
        {
            return Err(Error::invalid(
                "fusion.candidates",
                format!("must be between 1 and {MAX_FUSION_CANDIDATES}"),
            ));
        }
        Ok(fusion)
    }

    /// Reads a started answer to its end: the whole answer with its citations (the sources
    /// alone when no generator is set up). Each delta is counted in `q` as it arrives.
    pub async fn finish_answer(
        &self,
        started: StartedAnswer,
        q: &mut PendingQuery,
    ) -> Result<QueryAnswer> {
        let Some(tokens) = started.tokens else {
            return Ok(QueryAnswer {
                answer: None,
                generation: "not_configured".into(),
                model: None,
                sources: started.sources,
                cited: Vec::new(),
                usage: None,
                prompt: None,
            });
        };
        let g = crate::generate::collect(tokens, &started.model, || q.delta()).await?;
        let cited = prompt::cited(&g.text, started.sources.len());
        Ok(QueryAnswer {
            answer: Some(g.text),
            generation: "generated".into(),
            model: Some(g.model),
            sources: started.sources,
            cited,
            usage: Some(g.usage),
            prompt: started.prompt,
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
            self.within_token_quota(&p.tenant_id).await?;
        }
        // Streaming or not, with the prompt or without, it is the same retrieval (and the same
        // result-cache entry).
        let plain = SearchRequest {
            stream: false,
            include_prompt: false,
            ..req.clone()
        };
        let (sources, retrieval) = self.search_traced(p, &plain).await?;
        let Some(generator) = &self.generator else {
            return Ok(StartedAnswer {
                sources,
                retrieval,
                model: String::new(),
                prompt: None,
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
        let prompt = req.include_prompt.then(|| request.messages.clone());
        let tokens = match &self.token_budget {
            Some(budget) => charged(tokens, budget.clone(), p.tenant_id.clone()),
            None => tokens,
        };
        Ok(StartedAnswer {
            sources,
            retrieval,
            model: generator.model().to_string(),
            prompt,
            tokens: Some(tokens),
        })
    }

    /// Refuses with 429 while the tenant is past its LLM token quota. When the quota's store
    /// cannot answer, the generation goes ahead (and is logged): a quota outage must not take
    /// answers down.
    async fn within_token_quota(&self, tenant: &str) -> Result<()> {
        let Some(budget) = &self.token_budget else {
            return Ok(());
        };
        match budget.charge(tenant, 0).await {
            Ok(wait) if wait.is_zero() => Ok(()),
            Ok(wait) => {
                crate::metrics::RATE_LIMITED.inc();
                Err(Error::RateLimited {
                    message: format!(
                        "this tenant used its LLM tokens for now (rate_limit.llm_tokens_per_minute is {})",
                        self.config.rate_limit.llm_tokens_per_minute
                    ),
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
            Err(e) => {
                crate::metrics::RATE_LIMIT_ERRORS.inc();
                tracing::warn!(error = %e, "LLM token quota unavailable; generating anyway");
                Ok(())
            }
        }
    }
}

/// The result-cache key: the collection's version and the request as resolved, so that a
/// changed default mode or fusion setting never serves another mode's results.
fn result_cache_key(
    c: &Collection,
    req: &SearchRequest,
    mode: SearchMode,
    fusion: &Fusion,
) -> String {
    let body = serde_json::to_vec(req).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(&body);
    h.update(format!("{}:{fusion:?}", mode.as_str()).as_bytes());
    format!(
        "res:{}:{}:{}:{}",
        c.tenant_id,
        c.id,
        c.version,
        hex::encode(h.finalize())
    )
}

/// `tokens`, charging the generation's prompt and completion tokens to `tenant` as it ends,
/// before the last chunk goes on (so the next request of the tenant sees the charge). A server
/// that reports no usage is charged one token per streamed delta, and so is a generation that
/// ends without its final message: one that failed midway, or whose client went away (the
/// stream is dropped, and the deltas received by then are charged in the background). Leaving
/// before the end does not make the tokens free.
fn charged(
    tokens: crate::generate::TokenStream,
    budget: std::sync::Arc<crate::ratelimit::TokenBudget>,
    tenant: String,
) -> crate::generate::TokenStream {
    use crate::generate::Chunk;
    use futures::StreamExt;
    Box::pin(async_stream::stream! {
        let mut tokens = tokens;
        let mut charge = Charge { budget, tenant, deltas: 0, settled: false };
        while let Some(chunk) = tokens.next().await {
            match &chunk {
                Ok(Chunk::Delta(_)) => charge.deltas += 1,
                Ok(Chunk::Done(f)) => {
                    let cost = f.usage.map_or(charge.deltas, |u| u.prompt_tokens + u.completion_tokens);
                    charge.settle(cost).await;
                }
                Err(_) => {}
            }
            yield chunk;
        }
    })
}

/// One generation's charge to its tenant's token quota, made once: with the final message's
/// usage, or, when it is dropped unsettled, for the deltas received by then.
struct Charge {
    budget: std::sync::Arc<crate::ratelimit::TokenBudget>,
    tenant: String,
    deltas: u64,
    settled: bool,
}

impl Charge {
    async fn settle(&mut self, cost: u64) {
        // Settled before the await: a drop while charging must not charge twice.
        self.settled = true;
        charge_tokens(&self.budget, &self.tenant, cost).await;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.settled || self.deltas == 0 {
            return;
        }
        let (budget, tenant, cost) = (
            self.budget.clone(),
            std::mem::take(&mut self.tenant),
            self.deltas,
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { charge_tokens(&budget, &tenant, cost).await });
        }
    }
}

async fn charge_tokens(budget: &crate::ratelimit::TokenBudget, tenant: &str, cost: u64) {
    if let Err(e) = budget.charge(tenant, cost).await {
        tracing::warn!(error = %e, cost, "failed to charge LLM tokens to the tenant's quota");
    }
}
