//! Client for Ollama's native chat API: `POST {base}/api/chat` with `"stream": true`, whose
//! answer is newline-delimited JSON, one object per token and a last one with `"done": true`.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::{
    http_client, lines, send, ChatRequest, Chunk, Finish, GenerateError, Generator, Result,
    TokenStream, Usage,
};

/// One Ollama server.
pub struct OllamaGenerator {
    client: reqwest::Client,
    base: String,
    chat_url: String,
    model: String,
    max_tokens: u32,
}

impl OllamaGenerator {
    /// Client for the server at `base` (its root, for example `http://host:11434`).
    pub fn new(
        base: &str,
        model: &str,
        max_tokens: u32,
        connect_timeout: Duration,
        total: Duration,
    ) -> Self {
        let base = base.trim_end_matches('/').to_string();
        Self {
            client: http_client(connect_timeout, total),
            chat_url: format!("{base}/api/chat"),
            base,
            model: model.to_string(),
            max_tokens,
        }
    }
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    message: Option<LineMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    eval_count: u64,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct LineMessage {
    #[serde(default)]
    content: String,
}

/// Turns one NDJSON line into chunks (none for lines that carry nothing, such as empty
/// deltas).
fn parse_line(line: &str, url: &str) -> Vec<Result<Chunk>> {
    if line.trim().is_empty() {
        return Vec::new();
    }
    let l: Line = match serde_json::from_str(line) {
        Ok(l) => l,
        Err(e) => {
            return vec![Err(GenerateError::Decode(format!(
                "{e} in line {:?}",
                line.chars().take(200).collect::<String>()
            )))]
        }
    };
    if let Some(error) = l.error {
        return vec![Err(GenerateError::Status {
            url: url.to_string(),
            status: 500,
            body: error,
        })];
    }
    let mut out = Vec::new();
    // The last line normally has empty content; a server that puts text there (an answer
    // that was not streamed) still gets it delivered, before the end.
    if let Some(m) = l.message.filter(|m| !m.content.is_empty()) {
        out.push(Ok(Chunk::Delta(m.content)));
    }
    if l.done {
        out.push(Ok(Chunk::Done(Finish {
            model: l.model.unwrap_or_default(),
            usage: Some(Usage {
                prompt_tokens: l.prompt_eval_count,
                completion_tokens: l.eval_count,
            }),
            finish_reason: l.done_reason,
        })));
    }
    out
}

#[async_trait]
impl Generator for OllamaGenerator {
    fn model(&self) -> &str {
        &self.model
    }

    async fn stream(&self, request: &ChatRequest) -> Result<TokenStream> {
        let mut options = json!({ "num_predict": request.max_tokens.unwrap_or(self.max_tokens) });
        if let Some(t) = request.temperature {
            options["temperature"] = json!(t);
        }
        let req = self
            .client
            .post(&self.chat_url)
            .headers(ragplane_telemetry::propagation::headers())
            .json(&json!({
                "model": self.model,
                "messages": request.messages,
                "stream": true,
                "options": options,
            }));
        let resp = send(req, &self.chat_url).await?;
        let url = self.chat_url.clone();
        let model = self.model.clone();
        let chunks = lines(resp, url.clone())
            .flat_map(move |l| {
                futures::stream::iter(match l {
                    Ok(l) => parse_line(&l, &url),
                    Err(e) => vec![Err(e)],
                })
            })
            .map(move |c| match c {
                Ok(Chunk::Done(mut f)) if f.model.is_empty() => {
                    f.model = model.clone();
                    Ok(Chunk::Done(f))
                }
                other => other,
            });
        Ok(Box::pin(chunks))
    }

    async fn probe(&self) -> Result<()> {
        let url = format!("{}/api/version", self.base);
        send(self.client.get(&url), &url).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_deltas_and_a_final_chunk() {
        let u = "http://x/api/chat";
        let one = |l: &str| {
            let mut v = parse_line(l, u);
            assert!(v.len() <= 1, "{v:?}");
            v.pop()
        };
        assert_eq!(
            one(r#"{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}"#)
                .unwrap()
                .unwrap(),
            Chunk::Delta("Hi".into())
        );
        assert!(
            one(r#"{"model":"m","message":{"role":"assistant","content":""},"done":false}"#)
                .is_none()
        );
        let Chunk::Done(f) = one(
            r#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"length","prompt_eval_count":7,"eval_count":3}"#,
        )
        .unwrap()
        .unwrap() else {
            panic!("expected the final chunk")
        };
        assert_eq!(f.usage.unwrap().completion_tokens, 3);
        assert_eq!(f.finish_reason.as_deref(), Some("length"));
        assert!(matches!(
            one(r#"{"error":"model not found"}"#),
            Some(Err(GenerateError::Status { .. }))
        ));
        assert!(matches!(
            one("not json"),
            Some(Err(GenerateError::Decode(_)))
        ));
        let whole = parse_line(
            r#"{"model":"m","message":{"role":"assistant","content":"All"},"done":true}"#,
            u,
        );
        assert_eq!(
            whole.len(),
            2,
            "text on the last line is delivered before the end"
        );
    }
}
