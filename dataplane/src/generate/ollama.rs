//! Client for Ollama's native chat API: `POST {base}/api/chat`.

use async_trait::async_trait;
use ragplane_config::GeneratorEndpoint;
use serde::Deserialize;
use serde_json::json;

use super::{http_client, send_json, ChatMessage, Generation, Generator, Result, Usage};

/// An Ollama server.
pub struct OllamaGenerator {
    client: reqwest::Client,
    url: String,
    endpoint: GeneratorEndpoint,
}

impl OllamaGenerator {
    /// Client for `endpoint`; its URL is the server root, for example `http://host:11434`.
    pub fn new(endpoint: GeneratorEndpoint) -> Self {
        let url = format!("{}/api/chat", endpoint.url.trim_end_matches('/'));
        Self {
            client: http_client(endpoint.timeout_secs),
            url,
            endpoint,
        }
    }
}

#[derive(Deserialize)]
struct ChatResponse {
    model: Option<String>,
    message: ChatMessage,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    eval_count: u64,
}

#[async_trait]
impl Generator for OllamaGenerator {
    fn model(&self) -> &str {
        &self.endpoint.model
    }

    async fn generate(&self, messages: &[ChatMessage]) -> Result<Generation> {
        let req = self.client.post(&self.url).json(&json!({
            "model": self.endpoint.model,
            "messages": messages,
            "stream": false,
            "options": { "num_predict": self.endpoint.max_tokens },
        }));
        let r: ChatResponse = send_json(req, &self.url).await?;
        Ok(Generation {
            text: r.message.content,
            model: r.model.unwrap_or_else(|| self.endpoint.model.clone()),
            usage: Usage {
                prompt_tokens: r.prompt_eval_count,
                completion_tokens: r.eval_count,
            },
        })
    }
}
