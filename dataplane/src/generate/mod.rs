//! Answer generation: the [`Generator`] trait, streaming clients for Ollama's native chat API
//! (newline-delimited JSON) and the OpenAI-compatible chat completions API (Server-Sent
//! Events), the [`pool::GeneratorPool`] that spreads requests over several servers with health
//! checks and failover, and the prompt that numbers sources.

pub mod ollama;
pub mod openai;
pub mod pool;
pub mod prompt;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

/// Errors of a generation backend.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The server could not be reached or timed out.
    #[error("failed to reach the generation server at {url}: {message}")]
    Unavailable {
        /// Server URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// The server answered with an error status.
    #[error("generation server at {url} answered {status}: {body}")]
    Status {
        /// Server URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The answer could not be decoded.
    #[error("failed to decode the generation server's answer: {0}")]
    Decode(String),
    /// No first token arrived in time.
    #[error("generation server at {url} sent no token within {secs} s")]
    FirstTokenTimeout {
        /// Server URL.
        url: String,
        /// The limit.
        secs: u64,
    },
    /// The whole generation took too long.
    #[error("generation at {url} did not finish within {secs} s")]
    Timeout {
        /// Server URL.
        url: String,
        /// The limit.
        secs: u64,
    },
    /// Every server of the pool is out of rotation.
    #[error(
        "failed to generate: no healthy generation server (all {count} are failing health checks)"
    )]
    NoHealthyEndpoint {
        /// Servers in the pool.
        count: usize,
        /// Suggested wait before retrying.
        retry_after_secs: u64,
    },
    /// Every healthy server is at its concurrency cap.
    #[error("failed to generate: every healthy generation server is at its limit of {cap} concurrent requests")]
    Busy {
        /// The per-server cap.
        cap: usize,
        /// Suggested wait before retrying.
        retry_after_secs: u64,
    },
}

impl GenerateError {
    /// Whether the server itself is at fault (counts towards ejecting it), as opposed to a
    /// request it rightly refused.
    pub fn is_server_fault(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::Unavailable { .. }
            | Self::Decode(_)
            | Self::FirstTokenTimeout { .. }
            | Self::Timeout { .. } => true,
            Self::NoHealthyEndpoint { .. } | Self::Busy { .. } => false,
        }
    }
}

/// Result alias for generation.
pub type Result<T, E = GenerateError> = std::result::Result<T, E>;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Token counts of a generation, as reported by the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
}

/// A chat request: the conversation and per-request overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// The conversation, system prompt first.
    pub messages: Vec<ChatMessage>,
    /// Largest number of tokens to generate; the configured limit when `None`.
    pub max_tokens: Option<u32>,
    /// Sampling temperature; the server's default when `None`.
    pub temperature: Option<f32>,
}

impl ChatRequest {
    /// A request for `messages` with the configured limits.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }
}

/// How a generation ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Finish {
    /// Model that answered.
    pub model: String,
    /// Token counts, when the server reported them.
    pub usage: Option<Usage>,
    /// `stop`, `length`, … as reported by the server.
    pub finish_reason: Option<String>,
}

/// One piece of a streamed generation.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// Generated text (usually one token).
    Delta(String),
    /// The end of the generation; nothing follows.
    Done(Finish),
}

/// A streamed generation: deltas, then one [`Chunk::Done`]. An `Err` ends it.
pub type TokenStream = Pin<Box<dyn Stream<Item = Result<Chunk>> + Send>>;

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The answer text.
    pub text: String,
    /// Model that answered.
    pub model: String,
    /// Token counts.
    pub usage: Usage,
    /// `stop`, `length`, … as reported by the server.
    pub finish_reason: Option<String>,
}

/// Generates chat answers, streamed token by token.
#[async_trait]
pub trait Generator: Send + Sync {
    /// Model name.
    fn model(&self) -> &str;

    /// Starts a generation; the stream yields the tokens as the server produces them.
    async fn stream(&self, request: &ChatRequest) -> Result<TokenStream>;

    /// Answers the conversation in one piece.
    async fn generate(&self, request: &ChatRequest) -> Result<Generation> {
        collect(self.stream(request).await?, self.model(), || {}).await
    }

    /// Checks cheaply whether the server answers (used for health probes).
    async fn probe(&self) -> Result<()> {
        Ok(())
    }

    /// Fails at once when generation cannot start now (no healthy server), so a caller can
    /// refuse before doing retrieval.
    fn check_available(&self) -> Result<()> {
        Ok(())
    }
}

/// Reads a stream to its end, calling `on_delta` for each delta as it arrives (so a caller
/// dropped midway knows how much was generated).
pub async fn collect(
    mut stream: TokenStream,
    model: &str,
    mut on_delta: impl FnMut(),
) -> Result<Generation> {
    let mut text = String::new();
    let mut tokens = 0u64;
    loop {
        match next_chunk(&mut stream).await? {
            Chunk::Delta(d) => {
                tokens += 1;
                on_delta();
                text.push_str(&d);
            }
            Chunk::Done(f) => {
                return Ok(Generation {
                    text,
                    model: if f.model.is_empty() {
                        model.to_string()
                    } else {
                        f.model
                    },
                    usage: f.usage.unwrap_or(Usage {
                        prompt_tokens: 0,
                        completion_tokens: tokens,
                    }),
                    finish_reason: f.finish_reason,
                })
            }
        }
    }
}

/// The next chunk of `stream`; one that ends without its [`Chunk::Done`] is an error.
pub async fn next_chunk(stream: &mut TokenStream) -> Result<Chunk> {
    stream.next().await.unwrap_or_else(|| {
        Err(GenerateError::Decode(
            "the stream ended without its final message".into(),
        ))
    })
}

/// An HTTP client that only bounds connecting; the pool enforces the first-token and total
/// deadlines itself, because a streamed body must outlive a per-request timeout.
pub(crate) fn http_client(connect_timeout: Duration, total: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(total)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default()
}

/// Sends `req`, mapping transport errors and error statuses.
pub(crate) async fn send(req: reqwest::RequestBuilder, url: &str) -> Result<reqwest::Response> {
    let resp = req.send().await.map_err(|e| GenerateError::Unavailable {
        url: url.to_string(),
        message: error_chain(&e),
    })?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(GenerateError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        });
    }
    Ok(resp)
}

/// The body of `resp` as lines, split on `\n` with a trailing `\r` removed.
pub(crate) fn lines(
    resp: reqwest::Response,
    url: String,
) -> impl Stream<Item = Result<String>> + Send {
    use tokio::io::AsyncBufReadExt;
    let body = resp
        .bytes_stream()
        .map(|r| r.map_err(std::io::Error::other));
    let reader = tokio_util::io::StreamReader::new(body);
    let lines = reader.lines();
    // The state is `None` after a read error, which ends the stream.
    futures::stream::unfold(Some((lines, url)), |state| async move {
        let (mut lines, url) = state?;
        match lines.next_line().await {
            Ok(Some(mut l)) => {
                if l.ends_with('\r') {
                    l.pop();
                }
                Some((Ok(l), Some((lines, url))))
            }
            Ok(None) => None,
            Err(e) => Some((
                Err(GenerateError::Unavailable {
                    url,
                    message: format!("failed to read the streamed answer: {e}"),
                }),
                None,
            )),
        }
    })
}

/// An error with its sources, so "error sending request" says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_that_ends_without_its_final_message_is_an_error() {
        let mut s: TokenStream = Box::pin(futures::stream::iter(vec![Ok(Chunk::Delta(
            "Twenty".into(),
        ))]));
        assert!(matches!(next_chunk(&mut s).await, Ok(Chunk::Delta(d)) if d == "Twenty"));
        let e = next_chunk(&mut s).await.unwrap_err();
        assert!(e.to_string().contains("without its final message"), "{e}");
    }
}
