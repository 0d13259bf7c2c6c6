//! Ollama as a remote embedder: `POST {base}/api/embed` with a batch of texts.

use std::time::Duration;

use async_trait::async_trait;
use ragplane_config::OllamaEmbeddingConfig;
use serde::Deserialize;
use serde_json::json;

use super::{EmbedError, Embedder, Priority, Result};

/// Embeds through an Ollama server; vectors are L2-normalised here, whatever the server does.
pub struct OllamaEmbedder {
    client: reqwest::Client,
    url: String,
    config: OllamaEmbeddingConfig,
}

impl OllamaEmbedder {
    /// Client for `config`'s server.
    pub fn new(config: &OllamaEmbeddingConfig) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(config.timeout_secs))
            .build()
            .unwrap_or_default();
        Self {
            client,
            url: format!("{}/api/embed", config.url.trim_end_matches('/')),
            config: config.clone(),
        }
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let at = |what: String| format!("Ollama at {}: {what}", self.url);
        let rejected = |what: String| EmbedError::RemoteRejected(at(what));
        let resp = self
            .client
            .post(&self.url)
            .headers(ragplane_telemetry::propagation::headers())
            .json(&json!({
                "model": self.config.model,
                "input": texts,
                "truncate": true,
                "dimensions": self.config.dimension,
            }))
            .send()
            .await
            .map_err(|e| EmbedError::RemoteUnavailable(at(format!("failed to send: {e}"))))?;
        let status = resp.status();
        if !status.is_success() {
            let body: String = resp
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            let what = at(format!("answered {status}: {body}"));
            return Err(match super::RemoteStatus::of(status) {
                super::RemoteStatus::Overloaded => EmbedError::RemoteOverloaded(what),
                super::RemoteStatus::Failed => EmbedError::RemoteUnavailable(what),
                super::RemoteStatus::Rejected => EmbedError::RemoteRejected(what),
            });
        }
        let r: EmbedResponse = resp.json().await.map_err(|e| {
            EmbedError::RemoteUnavailable(at(format!("failed to read the answer: {e}")))
        })?;
        if r.embeddings.len() != texts.len() {
            return Err(rejected(format!(
                "{} vectors for {} texts",
                r.embeddings.len(),
                texts.len()
            )));
        }
        r.embeddings
            .into_iter()
            .map(|mut v| {
                if v.len() != self.config.dimension {
                    return Err(rejected(format!(
                        "a vector of dimension {}, configured {} (embedding.ollama.dimension)",
                        v.len(),
                        self.config.dimension
                    )));
                }
                normalise(&mut v);
                Ok(v)
            })
            .collect()
    }
}

#[derive(Deserialize)]
struct EmbedResponse {
    embeddings: Vec<Vec<f32>>,
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[async_trait]
impl Embedder for OllamaEmbedder {
    fn model(&self) -> &str {
        &self.config.model
    }

    fn dimension(&self) -> usize {
        self.config.dimension
    }

    /// Ollama has no request classes; its own queue serves requests in arrival order.
    async fn embed_as(&self, texts: Vec<String>, _priority: Priority) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.config.max_batch.max(1)) {
            out.extend(self.embed_batch(batch).await?);
        }
        Ok(out)
    }
}
