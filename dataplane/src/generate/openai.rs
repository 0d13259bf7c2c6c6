//! Client for OpenAI-compatible servers (vLLM, llama.cpp, Ollama's `/v1`, …):
//! `POST {base}/chat/completions` with `"stream": true`, whose answer is Server-Sent Events of
//! `chat.completion.chunk` objects ending with `data: [DONE]`.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ragplane_config::Secret;
use serde::Deserialize;
use serde_json::json;

use super::{
    http_client, lines, send, ChatRequest, Chunk, Finish, GenerateError, Generator, Result,
    TokenStream, Usage,
};

/// One OpenAI-compatible chat server.
pub struct OpenAiGenerator {
    client: reqwest::Client,
    base: String,
    url: String,
    model: String,
    max_tokens: u32,
    api_key: Option<Secret>,
}

impl OpenAiGenerator {
    /// Client for the API at `base` (for example `http://host:8000/v1`).
    pub fn new(
        base: &str,
        model: &str,
        max_tokens: u32,
        api_key: Option<Secret>,
        connect_timeout: Duration,
        total: Duration,
    ) -> Self {
        let base = base.trim_end_matches('/').to_string();
        Self {
            client: http_client(connect_timeout, total),
            url: format!("{base}/chat/completions"),
            base,
            model: model.to_string(),
            max_tokens,
            api_key,
        }
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => req.bearer_auth(k.expose()),
            None => req,
        }
    }
}

#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<StreamChoice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct StreamChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

/// Reassembles Server-Sent Events from lines: `data:` lines accumulate until a blank line.
#[derive(Default)]
struct SseParser {
    data: Vec<String>,
}

impl SseParser {
    /// Feeds one line; returns the event's data when the line ends an event.
    fn line(&mut self, line: &str) -> Option<String> {
        if line.is_empty() {
            return (!self.data.is_empty()).then(|| std::mem::take(&mut self.data).join("\n"));
        }
        if let Some(rest) = line.strip_prefix("data:") {
            self.data
                .push(rest.strip_prefix(' ').unwrap_or(rest).to_string());
        }
        // `event:`, `id:`, `retry:` and comments (`:`) carry nothing we use.
        None
    }
}

/// What the stream's state machine has seen so far.
#[derive(Default)]
struct State {
    model: Option<String>,
    usage: Option<Usage>,
    finish_reason: Option<String>,
}

/// Turns one event's data into chunks.
fn parse_event(data: &str, st: &mut State, url: &str) -> Vec<Result<Chunk>> {
    if data.trim() == "[DONE]" {
        return vec![Ok(Chunk::Done(Finish {
            model: st.model.take().unwrap_or_default(),
            usage: st.usage.take(),
            finish_reason: st.finish_reason.take(),
        }))];
    }
    let c: StreamChunk = match serde_json::from_str(data) {
        Ok(c) => c,
        Err(e) => {
            return vec![Err(GenerateError::Decode(format!(
                "{e} in event {:?}",
                data.chars().take(200).collect::<String>()
            )))]
        }
    };
    if let Some(error) = c.error {
        return vec![Err(GenerateError::Status {
            url: url.to_string(),
            status: 500,
            body: error.to_string(),
        })];
    }
    if c.model.is_some() {
        st.model = c.model;
    }
    if c.usage.is_some() {
        st.usage = c.usage;
    }
    let mut out = Vec::new();
    for choice in c.choices {
        if let Some(text) = choice.delta.and_then(|d| d.content) {
            if !text.is_empty() {
                out.push(Ok(Chunk::Delta(text)));
            }
        }
        if choice.finish_reason.is_some() {
            st.finish_reason = choice.finish_reason;
        }
    }
    out
}

#[async_trait]
impl Generator for OpenAiGenerator {
    fn model(&self) -> &str {
        &self.model
    }

    async fn stream(&self, request: &ChatRequest) -> Result<TokenStream> {
        let mut body = json!({
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens.unwrap_or(self.max_tokens),
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        let resp = send(
            self.authed(self.client.post(&self.url))
                .headers(ragplane_telemetry::propagation::headers())
                .json(&body),
            &self.url,
        )
        .await?;
        let url = self.url.clone();
        let model = self.model.clone();
        let events = lines(resp, url.clone()).scan(
            (SseParser::default(), State::default(), false),
            move |(parser, st, finished), line| {
                let out: Vec<Result<Chunk>> = if *finished {
                    Vec::new()
                } else {
                    match line {
                        Err(e) => vec![Err(e)],
                        Ok(l) => match parser.line(&l) {
                            Some(data) => parse_event(&data, st, &url),
                            None => Vec::new(),
                        },
                    }
                };
                *finished |= out.iter().any(|c| matches!(c, Ok(Chunk::Done(_)) | Err(_)));
                let model = model.clone();
                let out = out.into_iter().map(move |c| match c {
                    Ok(Chunk::Done(mut f)) if f.model.is_empty() => {
                        f.model = model.clone();
                        Ok(Chunk::Done(f))
                    }
                    other => other,
                });
                futures::future::ready(Some(futures::stream::iter(out)))
            },
        );
        Ok(Box::pin(events.flatten()))
    }

    async fn probe(&self) -> Result<()> {
        let url = format!("{}/models", self.base);
        send(self.authed(self.client.get(&url)), &url)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> Vec<Result<Chunk>> {
        let mut p = SseParser::default();
        let mut st = State::default();
        let mut out = Vec::new();
        for l in lines {
            if let Some(d) = p.line(l) {
                out.extend(parse_event(&d, &mut st, "u"));
            }
        }
        out
    }

    #[test]
    fn events_become_deltas_then_a_final_chunk_with_usage() {
        let out = run(&[
            ": keep-alive",
            r#"data: {"model":"g","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            "",
            r#"data: {"model":"g","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            "",
            r#"data: {"model":"g","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
            "",
            r#"data: {"model":"g","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
            "",
            "data: [DONE]",
            "",
        ]);
        let out: Vec<Chunk> = out.into_iter().map(|c| c.unwrap()).collect();
        assert_eq!(out[0], Chunk::Delta("Hel".into()));
        assert_eq!(out[1], Chunk::Delta("lo".into()));
        let Chunk::Done(f) = &out[2] else {
            panic!("{out:?}")
        };
        assert_eq!(f.model, "g");
        assert_eq!(f.finish_reason.as_deref(), Some("stop"));
        assert_eq!(f.usage.unwrap().completion_tokens, 2);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn error_events_and_garbage_are_errors() {
        let out = run(&[r#"data: {"error":{"message":"boom"}}"#, ""]);
        assert!(matches!(out[0], Err(GenerateError::Status { .. })));
        let out = run(&["data: {not json", ""]);
        assert!(matches!(out[0], Err(GenerateError::Decode(_))));
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut p = SseParser::default();
        assert_eq!(p.line("data: a"), None);
        assert_eq!(p.line("data:b"), None);
        assert_eq!(p.line("").as_deref(), Some("a\nb"));
        assert_eq!(p.line(""), None);
    }
}
