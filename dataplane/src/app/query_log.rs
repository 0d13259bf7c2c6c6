//! The structured query log: one line per search, query or chat completion, under the tracing
//! target `ragplane::query_log` (with `telemetry.log_format = "json"`, one JSON object per line).
//!
//! Fields: `query_id` (the request id, also in the `x-request-id` header), `kind` (`search`,
//! `query`, `chat`), `tenant`, `collection`, `mode`, `latency_ms`, `hits`, `documents`
//! (distinct documents among the hits), `cache` (`hit`, `miss` or `off`: the result cache),
//! `prompt_tokens` and `completion_tokens` (answers only, as the generator reported them), and
//! `outcome` (`ok`, or `error` for an answer whose generation failed midway). Each line is
//! also counted in the usage figures ([`super::usage`]). A streamed answer
//! is logged when its stream ends, with the tokens it used.

use std::collections::HashSet;
use std::time::Instant;

use super::search::SearchHit;
use super::SearchMode;

/// Whether the result cache served a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from the cache.
    Hit,
    /// Looked up, not found, computed.
    Miss,
    /// No result cache.
    Off,
}

impl CacheOutcome {
    /// As the query log and the `search` span write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Off => "off",
        }
    }
}

/// What one query did, written to the log by [`QueryRecord::emit`].
#[derive(Debug, Clone)]
pub struct QueryRecord {
    /// `search`, `query` or `chat`.
    pub kind: &'static str,
    /// Who asked.
    pub principal: super::Principal,
    /// Collection name.
    pub collection: String,
    /// Retrieval mode.
    pub mode: SearchMode,
    /// When the request started.
    pub started: Instant,
    /// The result cache's part.
    pub cache: CacheOutcome,
    /// Hits returned (or sources given to the model).
    pub hits: usize,
    /// Distinct documents among them.
    pub documents: usize,
    /// Prompt tokens of the answer.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens of the answer.
    pub completion_tokens: Option<u64>,
}

impl QueryRecord {
    /// A record of `p`'s retrieval from `collection`, which went as `searched` and returned
    /// `hits` (or gave them to the model as sources).
    pub fn new(
        kind: &'static str,
        p: &super::Principal,
        collection: &str,
        searched: super::Searched,
        started: Instant,
        hits: &[SearchHit],
    ) -> Self {
        let documents: HashSet<&str> = hits.iter().map(|h| h.document_id.as_str()).collect();
        Self {
            kind,
            principal: p.clone(),
            collection: collection.to_owned(),
            mode: searched.mode,
            started,
            cache: searched.cache,
            hits: hits.len(),
            documents: documents.len(),
            prompt_tokens: None,
            completion_tokens: None,
        }
    }

    /// Adds the generator's token counts.
    pub fn with_usage(mut self, usage: Option<&crate::generate::Usage>) -> Self {
        self.prompt_tokens = usage.map(|u| u.prompt_tokens);
        self.completion_tokens = usage.map(|u| u.completion_tokens);
        self
    }

    /// Writes the line, with `query_id` and `outcome`, and counts the query in `usage`.
    pub fn emit(&self, usage: &super::usage::UsageMeter, query_id: Option<&str>, outcome: &str) {
        let tokens = self.prompt_tokens.unwrap_or(0) + self.completion_tokens.unwrap_or(0);
        usage.record(&self.principal, &self.collection, tokens);
        tracing::info!(
            target: "ragplane::query_log",
            query_id = query_id.unwrap_or(""),
            kind = self.kind,
            tenant = %self.principal.tenant_id,
            collection = %self.collection,
            mode = self.mode.as_str(),
            latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            hits = self.hits,
            documents = self.documents,
            cache = self.cache.as_str(),
            prompt_tokens = self.prompt_tokens,
            completion_tokens = self.completion_tokens,
            outcome,
            "query"
        );
    }
}
