//! `/v1/chat/completions` in OpenAI's wire format, answered with retrieval: existing OpenAI
//! clients point their base URL at ragplane and name a collection as the `model`.
//!
//! - The collection is `collection` when given (an extra body field), else `model`.
//! - The last `user` message is the question searched for; earlier messages are kept as the
//!   conversation, and `system` messages are appended to ragplane's instructions.
//! - Beyond OpenAI's fields, responses carry `sources`: the retrieved chunks the answer cites,
//!   each with its `number`. When streaming, they come on the chunk with `finish_reason`.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorBody};
use super::search::{cited_sources, error_body, logged};
use super::{ApiJson, AppState, Auth};
use crate::app::query_log::PendingQuery;
use crate::app::{AnswerOptions, SearchRequest, StartedAnswer};
use crate::error::Error;
use crate::generate::{next_chunk, prompt, ChatMessage, Chunk, Usage};

/// A chat completion request (the OpenAI fields ragplane uses; others are ignored).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatCompletionRequest {
    /// The collection to answer from, unless `collection` is given. Echoed in the response.
    pub model: String,
    /// The conversation; the last `user` message is the question.
    pub messages: Vec<InputMessage>,
    /// Answer as Server-Sent Events of `chat.completion.chunk` objects.
    #[serde(default)]
    pub stream: bool,
    /// `{"include_usage": true}` adds a last chunk with the token counts.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub stream_options: Option<Value>,
    /// Largest number of tokens to generate: at least 1 and at most the server's
    /// `generation.max_tokens_limit` (4096 unless set); `generation.max_tokens` when omitted.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
    /// Newer name of `max_tokens`; wins when both are given.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature, from 0 to 2.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f32>,
    /// ragplane extension: the collection to answer from (overrides `model`).
    #[serde(default)]
    pub collection: Option<String>,
    /// ragplane extension: chunks to retrieve (default 5).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// ragplane extension: retrieval mode, `dense`, `keyword` or `hybrid` (default: the
    /// server's `search.default_mode`).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "hybrid")]
    pub mode: Option<crate::app::SearchMode>,
    /// ragplane extension: how `hybrid` mode fuses its two lists.
    #[serde(default)]
    pub fusion: Option<crate::app::FusionRequest>,
    /// ragplane extension: retrieve only chunks of documents whose metadata matches, as in
    /// `/v1/search`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Map<String, Value>>,
    /// ragplane extension: retrieve only chunks of these documents.
    #[serde(default)]
    pub document_ids: Option<Vec<String>>,
    /// ragplane extension: `document` retrieves at most one chunk per document.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "document")]
    pub group_by: Option<crate::app::GroupBy>,
    /// ragplane extension: drop retrieved chunks scoring below this.
    #[serde(default)]
    pub min_score: Option<f32>,
    /// ragplane extension: rerank the retrieved chunks (default: whenever a reranker is
    /// configured).
    #[serde(default)]
    pub rerank: Option<bool>,
}

/// One message of the conversation; `content` is a string or a list of `{type: "text", text}`
/// parts.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InputMessage {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// The text, or text parts.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub content: Value,
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The question, the retrieval request and the conversation before it. A `max_tokens` above
/// `max_tokens_limit` (the server's `generation.max_tokens_limit`) is refused.
fn interpret(
    req: &ChatCompletionRequest,
    max_tokens_limit: u32,
) -> Result<(SearchRequest, AnswerOptions), Error> {
    let (field, max_tokens) = match req.max_completion_tokens {
        Some(n) => ("max_completion_tokens", Some(n)),
        None => ("max_tokens", req.max_tokens),
    };
    match max_tokens {
        Some(0) => return Err(Error::invalid(field, "must be at least 1")),
        Some(n) if n > max_tokens_limit => {
            return Err(Error::invalid(
                field,
                format!(
                    "must be at most {max_tokens_limit} (this server's generation.max_tokens_limit)"
                ),
            ))
        }
        _ => {}
    }
    if req.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(Error::invalid("temperature", "must be between 0 and 2"));
    }
    let collection = req.collection.clone().unwrap_or_else(|| req.model.clone());
    let last_user = req
        .messages
        .iter()
        .rposition(|m| m.role == "user")
        .ok_or_else(|| Error::invalid("messages", "must contain a user message"))?;
    let question = text_of(&req.messages[last_user].content);
    let history = req.messages[..last_user]
        .iter()
        .map(|m| {
            let role = if m.role == "developer" {
                "system"
            } else {
                m.role.as_str()
            };
            ChatMessage::new(role, text_of(&m.content))
        })
        .collect();
    let search = SearchRequest {
        collection,
        query: question,
        top_k: req.top_k.unwrap_or(5),
        filter: req.filter.clone(),
        document_ids: req.document_ids.clone(),
        mode: req.mode,
        fusion: req.fusion.clone(),
        group_by: req.group_by,
        min_score: req.min_score,
        rerank: req.rerank,
        stream: false,
        include_prompt: false,
    };
    let options = AnswerOptions {
        history,
        max_tokens,
        temperature: req.temperature,
    };
    Ok((search, options))
}

fn usage_json(u: Option<Usage>) -> Value {
    let u = u.unwrap_or_default();
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// Answers in OpenAI's chat completion format, from the collection named by `model` (or
/// `collection`); see the module docs.
#[utoipa::path(post, path = "/v1/chat/completions", request_body = ChatCompletionRequest,
    responses((status = 200, description = "a chat.completion object; with stream=true, Server-Sent Events of chat.completion.chunk objects ending with [DONE]"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn completions(
    State(app): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    if app.generator.is_none() {
        return Err(Error::Unavailable {
            message: "generation is not configured on this server ([generation] in the config)"
                .into(),
            retry_after_secs: 60,
        }
        .into());
    }
    let limit = app
        .config
        .generation
        .endpoint()
        .map_or(u32::MAX, |ep| ep.max_tokens_limit);
    let (search, options) = interpret(&req, limit)?;
    let mut q = PendingQuery::start("chat", &app, &p, &search, super::request_id::current());
    let started = logged(&mut q, app.start_answer(&p, &search, &options).await)?;
    q.retrieved(started.retrieval, &started.sources);
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    let Some(tokens) = started.tokens else {
        return logged(
            &mut q,
            Err(Error::Internal(
                "generation stopped being configured".into(),
            )),
        );
    };
    if !req.stream {
        let g = crate::generate::collect(tokens, &started.model, || q.delta()).await;
        let g = logged(&mut q, g.map_err(Error::from))?;
        let cited = prompt::cited(&g.text, started.sources.len());
        q.used(Some(&g.usage));
        q.finish();
        return Ok(ApiJson(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": req.model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": g.text },
                "finish_reason": g.finish_reason.unwrap_or_else(|| "stop".into()),
            }],
            "usage": usage_json(Some(g.usage)),
            "sources": cited_sources(&started.sources, &cited),
        }))
        .into_response());
    }
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let events = chunk_events(
        StartedAnswer {
            tokens: Some(tokens),
            ..started
        },
        ChunkHeader {
            id,
            created,
            model: req.model,
        },
        include_usage,
        q,
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

struct ChunkHeader {
    id: String,
    created: i64,
    model: String,
}

impl ChunkHeader {
    fn chunk(&self, delta: Value, finish_reason: Option<String>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
        })
    }
}

fn data(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

fn chunk_events(
    started: StartedAnswer,
    h: ChunkHeader,
    include_usage: bool,
    mut q: PendingQuery,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let StartedAnswer {
        sources, tokens, ..
    } = started;
    let request_id = super::request_id::current();
    async_stream::stream! {
        let Some(mut tokens) = tokens else { return };
        q.answering();
        yield Ok(data(&h.chunk(json!({ "role": "assistant", "content": "" }), None)));
        let mut text = String::new();
        loop {
            match next_chunk(&mut tokens).await {
                Ok(Chunk::Delta(d)) => {
                    text.push_str(&d);
                    q.delta();
                    yield Ok(data(&h.chunk(json!({ "content": d }), None)));
                }
                Ok(Chunk::Done(f)) => {
                    let cited = prompt::cited(&text, sources.len());
                    q.used(f.usage.as_ref());
                    q.finish();
                    let mut last = h.chunk(json!({}), Some(f.finish_reason.unwrap_or_else(|| "stop".into())));
                    last["sources"] = json!(cited_sources(&sources, &cited));
                    yield Ok(data(&last));
                    if include_usage {
                        let mut u = h.chunk(json!({}), None);
                        u["choices"] = json!([]);
                        u["usage"] = usage_json(f.usage);
                        yield Ok(data(&u));
                    }
                    yield Ok(Event::default().data("[DONE]"));
                    return;
                }
                Err(e) => {
                    let b = error_body(e, request_id.clone());
                    q.fail(&b.kind);
                    // OpenAI clients raise on a chunk that carries `error`.
                    yield Ok(data(&json!({ "error": { "message": b.error, "type": b.kind } })));
                    return;
                }
            }
        }
    }
}
