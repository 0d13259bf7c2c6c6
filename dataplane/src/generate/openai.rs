//! Client for OpenAI-compatible servers: `POST {base}/chat/completions`.

use async_trait::async_trait;
use ragplane_config::GeneratorEndpoint;
use serde::Deserialize;
use serde_json::json;

use super::{
    http_client, send_json, ChatMessage, GenerateError, Generation, Generator, Result, Usage,
};

/// An OpenAI-compatible chat server (vLLM, llama.cpp, Ollama's `/v1`, …).
pub struct OpenAiGenerator {
    client: reqwest::Client,
    url: String,
    endpoint: GeneratorEndpoint,
}

impl OpenAiGenerator {
    /// Client for `endpoint`; its URL is the API base, for example `http://host:8000/v1`.
    pub fn new(endpoint: GeneratorEndpoint) -> Self {
        let url = format!("{}/chat/completions", endpoint.url.trim_end_matches('/'));
        Self {
            client: http_client(endpoint.timeout_secs),
            url,
            endpoint,
        }
    }
}

#[derive(Deserialize)]
struct Completion {
    model: Option<String>,
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChatMessage,
}

#[async_trait]
impl Generator for OpenAiGenerator {
    fn model(&self) -> &str {
        &self.endpoint.model
    }

    async fn generate(&self, messages: &[ChatMessage]) -> Result<Generation> {
        let mut req = self.client.post(&self.url).json(&json!({
            "model": self.endpoint.model,
            "messages": messages,
            "max_tokens": self.endpoint.max_tokens,
            "stream": false,
        }));
        if let Some(key) = &self.endpoint.api_key {
            req = req.bearer_auth(key.expose());
        }
        let c: Completion = send_json(req, &self.url).await?;
        let choice = c
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| GenerateError::Decode("no choices".into()))?;
        Ok(Generation {
            text: choice.message.content,
            model: c.model.unwrap_or_else(|| self.endpoint.model.clone()),
            usage: c.usage.unwrap_or_default(),
        })
    }
}
