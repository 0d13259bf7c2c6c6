//! The structured query log: one line per search, query or chat completion, under the tracing
//! target `ragplane::query_log` (with `telemetry.log_format = "json"`, one JSON object per line).
//!
//! Fields: `query_id` (the request id, also in the `x-request-id` header), `kind` (`search`,
//! `query`, `chat`), `tenant`, `collection`, `mode`, `latency_ms`, `hits`, `documents`
//! (distinct documents among the hits), `cache` (`hit`, `miss` or `off`: the result cache),
//! `prompt_tokens` and `completion_tokens` (answers only, as the generator reported them),
//! `outcome` and, for a failure, `error` (the error body's `type`).
//!
//! Every query writes its line exactly once, however it ends ([`PendingQuery`]):
//! - `ok`: answered; a streamed answer is logged when its stream ends, with the tokens it used;
//! - `error`: the query failed (`error` says how), before its answer or midway through a
//!   streamed one;
//! - `abandoned`: the client went away first, and the handler or the answer's stream was
//!   dropped with it. The line has what was known by then: no `cache` or `hits` if the
//!   retrieval had not finished, and for an answer cut off midway the deltas generated so far
//!   (sent, when streamed) as `completion_tokens` (the count [`crate::generate::collect`] uses
//!   when a server reports none).
//!
//! A query is also counted in the usage figures ([`super::usage`]) when its results reached the
//! client (an `ok` line, or a streamed answer whose stream had begun, however it ended), or when
//! the model had generated for it before its client went away: leaving does not make the
//! tokens free, so hanging up before the end cannot get round a token quota.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use super::search::{SearchHit, Searched};
use super::{App, Principal, SearchMode, SearchRequest};

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

/// A query under way, from the handler's start to its line in the log.
///
/// It writes the line once: through [`PendingQuery::finish`] or [`PendingQuery::fail`], or,
/// when it is dropped before either (its future or stream dropped because the client went
/// away), with the outcome `abandoned`, inside the request's span.
pub struct PendingQuery {
    app: Arc<App>,
    kind: &'static str,
    principal: Principal,
    collection: String,
    /// The mode asked for until the retrieval ran, then the one it ran in.
    mode: Option<SearchMode>,
    started: Instant,
    query_id: Option<String>,
    /// The request's span, for the line of a query dropped outside it.
    span: tracing::Span,
    cache: Option<CacheOutcome>,
    hits: usize,
    documents: usize,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    /// Whether it counts in the usage figures (see the module docs).
    counted: bool,
    logged: bool,
}

impl PendingQuery {
    /// The query of request `query_id` that `p` asked of `req.collection`, starting now.
    pub fn start(
        kind: &'static str,
        app: &Arc<App>,
        p: &Principal,
        req: &SearchRequest,
        query_id: Option<String>,
    ) -> Self {
        Self {
            app: app.clone(),
            kind,
            principal: p.clone(),
            collection: req.collection.clone(),
            mode: req.mode,
            started: Instant::now(),
            query_id,
            span: tracing::Span::current(),
            cache: None,
            hits: 0,
            documents: 0,
            prompt_tokens: None,
            completion_tokens: None,
            counted: false,
            logged: false,
        }
    }

    /// The retrieval went as `searched` and returned `hits` (or gave them to the model).
    pub fn retrieved(&mut self, searched: Searched, hits: &[SearchHit]) {
        let documents: HashSet<&str> = hits.iter().map(|h| h.document_id.as_str()).collect();
        self.mode = Some(searched.mode);
        self.cache = Some(searched.cache);
        self.hits = hits.len();
        self.documents = documents.len();
    }

    /// The generator's token counts, where it reported them.
    pub fn used(&mut self, usage: Option<&crate::generate::Usage>) {
        if let Some(u) = usage {
            self.prompt_tokens = Some(u.prompt_tokens);
            self.completion_tokens = Some(u.completion_tokens);
        }
    }

    /// The answer has one more delta: sent to the client when streamed, received from the
    /// model otherwise. The deltas stand for its completion tokens until the generator reports
    /// its own.
    pub fn delta(&mut self) {
        self.completion_tokens = Some(self.completion_tokens.unwrap_or(0) + 1);
    }

    /// The results started to reach the client (a streamed answer's first event).
    pub fn answering(&mut self) {
        self.counted = true;
    }

    /// Logs it as answered.
    pub fn finish(&mut self) {
        self.counted = true;
        self.emit("ok", None);
    }

    /// Logs it as failed, with the error's `kind`.
    pub fn fail(&mut self, kind: &str) {
        self.emit("error", Some(kind));
    }

    /// Writes the line, unless it was written already, and counts the query in the usage
    /// figures where it counts.
    fn emit(&mut self, outcome: &str, error: Option<&str>) {
        if std::mem::replace(&mut self.logged, true) {
            return;
        }
        if self.counted {
            let tokens = self.prompt_tokens.unwrap_or(0) + self.completion_tokens.unwrap_or(0);
            self.app
                .usage
                .record(&self.principal, &self.collection, tokens);
        }
        tracing::info!(
            target: "ragplane::query_log",
            query_id = self.query_id.as_deref().unwrap_or(""),
            kind = self.kind,
            tenant = %self.principal.tenant_id,
            collection = %self.collection,
            mode = self.mode.map(SearchMode::as_str),
            latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            hits = self.hits,
            documents = self.documents,
            cache = self.cache.map(CacheOutcome::as_str),
            prompt_tokens = self.prompt_tokens,
            completion_tokens = self.completion_tokens,
            outcome,
            error,
            "query"
        );
    }
}

impl Drop for PendingQuery {
    fn drop(&mut self) {
        if !self.logged {
            // Dropped futures and streams are not polled, so their span is not entered.
            let span = self.span.clone();
            let _in_request = span.enter();
            // The tokens generated for a client that left are spent all the same.
            self.counted |= self.completion_tokens.is_some_and(|t| t > 0);
            self.emit("abandoned", None);
        }
    }
}
