//! Settings of Ollama as a remote embedder (`[embedding.ollama]`).

use serde::{Deserialize, Serialize};

/// Embeddings from an Ollama server's `/api/embed` instead of the in-process ONNX model. The
/// local tokenizer still sizes chunks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OllamaEmbeddingConfig {
    /// Server root, for example `http://127.0.0.1:11434`.
    pub url: String,
    /// Model name on the server, for example `nomic-embed-text`.
    pub model: String,
    /// Dimension of the model's vectors, sent as Ollama's `dimensions` (a model may shorten
    /// its vectors to it); answers of another length are refused.
    pub dimension: usize,
    /// Texts sent in one request.
    #[serde(default = "default_batch")]
    pub max_batch: usize,
    /// Seconds allowed for one request.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_batch() -> usize {
    64
}

fn default_timeout() -> u64 {
    60
}

impl OllamaEmbeddingConfig {
    /// The problems of these settings, as (dotted path, message).
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            out.push(("embedding.ollama.url", "must be an http:// or https:// URL"));
        }
        if self.model.is_empty() {
            out.push(("embedding.ollama.model", "must not be empty"));
        }
        if self.dimension == 0 {
            out.push(("embedding.ollama.dimension", "must be at least 1"));
        }
        if self.max_batch == 0 {
            out.push(("embedding.ollama.max_batch", "must be at least 1"));
        }
        if self.timeout_secs == 0 {
            out.push(("embedding.ollama.timeout_secs", "must be at least 1"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn parses_and_validates() {
        let c: Config = toml::from_str(
            "[embedding.ollama]\nurl = \"http://127.0.0.1:11434\"\nmodel = \"nomic-embed-text\"\ndimension = 768",
        )
        .unwrap();
        let o = c.embedding.ollama.as_ref().unwrap();
        assert_eq!((o.max_batch, o.timeout_secs), (64, 60));
        c.validate().unwrap();
        let mut bad = c.clone();
        if let Some(o) = bad.embedding.ollama.as_mut() {
            o.url = "x".into();
        }
        assert_eq!(
            bad.validate().unwrap_err().0[0].field,
            "embedding.ollama.url"
        );
    }
}
