//! Retrieval (`/v1/search`) and retrieval plus generation (`/v1/query`), the latter as one JSON
//! object or, with `"stream": true`, as Server-Sent Events.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Serialize;
use serde_json::json;

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, AppState, Auth};
use crate::app::query_log::PendingQuery;
use crate::app::{AnswerOptions, QueryAnswer, SearchHit, SearchRequest, StartedAnswer};
use crate::generate::{next_chunk, prompt, Chunk, Usage};

/// Result of `/v1/search`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResponse {
    /// Best chunks first.
    pub hits: Vec<SearchHit>,
}

/// A source an answer cites, with the number it has in the prompt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CitedSource {
    /// Its number in the prompt (1-based), as cited in the answer: `[number]`.
    pub number: usize,
    /// The retrieved chunk.
    #[serde(flatten)]
    pub hit: SearchHit,
}

/// The last event of a streamed `/v1/query` (`event: done`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueryDone {
    /// `generated`, or `not_configured` when no generator is set up.
    pub generation: String,
    /// Model that answered.
    pub model: Option<String>,
    /// The whole answer, as streamed.
    pub answer: Option<String>,
    /// Numbers of the sources the answer cites, in first-cited order.
    pub cited: Vec<usize>,
    /// The cited sources (all retrieved sources when generation is not configured).
    pub sources: Vec<CitedSource>,
    /// How many sources were retrieved and put in the prompt.
    pub retrieved: usize,
    /// Token counts reported by the generator.
    pub usage: Option<Usage>,
    /// `stop`, `length`, … as reported by the generator.
    pub finish_reason: Option<String>,
}

/// Returns the chunks nearest to the query.
#[utoipa::path(post, path = "/v1/search", request_body = SearchRequest,
    responses((status = 200, body = SearchResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn search(
    State(app): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<ApiJson<SearchResponse>, ApiError> {
    let mut q = PendingQuery::start("search", &app, &p, &req, super::request_id::current());
    let (hits, searched) = logged(&mut q, app.search_traced(&p, &req).await)?;
    q.retrieved(searched, &hits);
    q.finish();
    Ok(ApiJson(SearchResponse { hits }))
}

/// `r`, with its error written to the query log as `q`'s outcome.
pub(super) fn logged<T>(q: &mut PendingQuery, r: crate::error::Result<T>) -> Result<T, ApiError> {
    r.map_err(|e| {
        q.fail(super::error::classify(&e).1);
        ApiError(e)
    })
}

/// Answers the query from retrieved sources, citing them. Without a configured generator,
/// `answer` is null, `generation` is `not_configured`, and the sources are returned.
///
/// With `"stream": true` the answer is `text/event-stream`: with `"include_prompt": true` first
/// an `event: prompt` with `{"messages": […], "sources": […]}`: the messages as sent to the LLM
/// and every retrieved source, in prompt order; then `event: delta` events
/// with `{"text": …}`, then one `event: done` whose data is [`QueryDone`] (or `event: error` with
/// `{error, type}` if generation fails midway). Errors before the first token are ordinary
/// JSON error responses.
#[utoipa::path(post, path = "/v1/query", request_body = SearchRequest,
    responses((status = 200, body = QueryAnswer, description = "the answer; with stream=true, Server-Sent Events ending with a QueryDone event"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn query(
    State(app): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<Response, ApiError> {
    let mut q = PendingQuery::start("query", &app, &p, &req, super::request_id::current());
    let started = logged(
        &mut q,
        app.start_answer(&p, &req, &AnswerOptions::default()).await,
    )?;
    q.retrieved(started.retrieval, &started.sources);
    if !req.stream {
        let answer = app.finish_answer(started, &mut q).await;
        let answer = logged(&mut q, answer)?;
        q.used(answer.usage.as_ref());
        q.finish();
        return Ok(ApiJson(answer).into_response());
    }
    Ok(Sse::new(query_events(started, q))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The cited sources among `sources`, by number.
pub(super) fn cited_sources(sources: &[SearchHit], cited: &[usize]) -> Vec<CitedSource> {
    cited
        .iter()
        .filter_map(|&n| {
            sources.get(n - 1).map(|h| CitedSource {
                number: n,
                hit: h.clone(),
            })
        })
        .collect()
}

/// An SSE event carrying `data` as JSON.
fn json_event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
}

fn query_events(
    started: StartedAnswer,
    mut q: PendingQuery,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let request_id = super::request_id::current();
    let StartedAnswer {
        sources,
        model,
        prompt: messages,
        tokens,
        ..
    } = started;
    async_stream::stream! {
        q.answering();
        if let Some(messages) = messages {
            yield Ok(json_event("prompt", &json!({ "messages": messages, "sources": sources })));
        }
        let Some(mut tokens) = tokens else {
            q.finish();
            let all: Vec<usize> = (1..=sources.len()).collect();
            yield Ok(json_event("done", &QueryDone {
                generation: "not_configured".into(),
                model: None,
                answer: None,
                cited: Vec::new(),
                sources: cited_sources(&sources, &all),
                retrieved: sources.len(),
                usage: None,
                finish_reason: None,
            }));
            return;
        };
        let mut text = String::new();
        loop {
            match next_chunk(&mut tokens).await {
                Ok(Chunk::Delta(d)) => {
                    text.push_str(&d);
                    q.delta();
                    yield Ok(json_event("delta", &json!({ "text": d })));
                }
                Ok(Chunk::Done(f)) => {
                    let cited = prompt::cited(&text, sources.len());
                    q.used(f.usage.as_ref());
                    q.finish();
                    yield Ok(json_event("done", &QueryDone {
                        generation: "generated".into(),
                        model: Some(if f.model.is_empty() { model.clone() } else { f.model }),
                        answer: Some(std::mem::take(&mut text)),
                        sources: cited_sources(&sources, &cited),
                        cited,
                        retrieved: sources.len(),
                        usage: f.usage,
                        finish_reason: f.finish_reason,
                    }));
                    return;
                }
                Err(e) => {
                    let body = error_body(e, request_id.clone());
                    q.fail(&body.kind);
                    yield Ok(json_event("error", &body));
                    return;
                }
            }
        }
    }
}

/// The `{error, type, request_id}` of a failure after the stream of request `request_id`
/// started (the handler has returned by then, so the id is captured when the stream is made).
pub(super) fn error_body(
    e: crate::generate::GenerateError,
    request_id: Option<String>,
) -> ErrorBody {
    ErrorBody::of(&crate::error::Error::from(e), request_id)
}
