//! Answer generation: the [`Generator`] trait with clients for Ollama's native chat API and
//! the OpenAI-compatible chat completions API, and the prompt that numbers sources.

pub mod ollama;
pub mod openai;
pub mod prompt;

use async_trait::async_trait;
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

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The answer text.
    pub text: String,
    /// Model that answered.
    pub model: String,
    /// Token counts.
    pub usage: Usage,
}

/// Generates a chat answer.
#[async_trait]
pub trait Generator: Send + Sync {
    /// Model name.
    fn model(&self) -> &str;
    /// Answers the conversation.
    async fn generate(&self, messages: &[ChatMessage]) -> Result<Generation>;
}

pub(crate) fn http_client(timeout_secs: u64) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(timeout_secs))
        .build()
        .unwrap_or_default()
}

pub(crate) async fn send_json<T: for<'de> Deserialize<'de>>(
    req: reqwest::RequestBuilder,
    url: &str,
) -> Result<T> {
    let resp = req.send().await.map_err(|e| GenerateError::Unavailable {
        url: url.to_string(),
        message: e.to_string(),
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
    resp.json::<T>()
        .await
        .map_err(|e| GenerateError::Decode(e.to_string()))
}
