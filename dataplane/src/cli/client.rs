//! A small HTTP client for the ragplane API, used by the CLI commands.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::SearchArgs;

/// When a busy server was last reported (Unix seconds), to say so at most every 30 s.
static LAST_BUSY_NOTICE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// How long one request may wait out a busy server in all before its error is reported.
pub const MAX_BUSY_WAIT: Duration = Duration::from_secs(600);

/// The `error` of an error body, else the body itself.
fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| text.to_string())
}

/// Connection flags shared by the client commands.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Base URL of the ragplane API.
    #[arg(long, env = "RAGPLANE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key.
    #[arg(long, env = "RAGPLANE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// A connection to a ragplane server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    /// Connects (lazily) to the server named by `conn`.
    pub fn new(conn: &ConnArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Self {
            http,
            base: conn.url.trim_end_matches('/').to_string(),
            key: conn.api_key.clone(),
        })
    }

    /// A request to `path` (relative to the base URL) with the API key.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    /// Sends and decodes, turning error responses into errors carrying the server's message.
    /// A 429 or 503 with Retry-After is waited out and the request sent again (see
    /// [`Client::send_with`]) when the request can be copied; a streamed body cannot.
    pub async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let mut first = Some(req);
        let template = first.as_ref().and_then(reqwest::RequestBuilder::try_clone);
        self.send_with(|| {
            first.take().or_else(|| {
                template
                    .as_ref()
                    .and_then(reqwest::RequestBuilder::try_clone)
            })
        })
        .await
    }

    /// Sends the request `make` builds, and again while the server answers 429 or 503 with
    /// Retry-After (the server is busy: an ingest backlog, a rate limit, a restart), waiting
    /// what it asks, up to [`MAX_BUSY_WAIT`] in all. `make` returns `None` when it cannot build
    /// another copy.
    pub async fn send_with<T: DeserializeOwned>(
        &self,
        mut make: impl FnMut() -> Option<reqwest::RequestBuilder>,
    ) -> anyhow::Result<T> {
        let started = std::time::Instant::now();
        let mut req = make().context("no request to send")?;
        loop {
            let resp = req
                .send()
                .await
                .with_context(|| format!("failed to reach ragplane at {}", self.base))?;
            let status = resp.status();
            let wait = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.clamp(1, 60)));
            let text = resp.text().await.unwrap_or_default();
            let busy = status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::SERVICE_UNAVAILABLE;
            if let (true, Some(wait)) = (busy, wait) {
                if started.elapsed() + wait <= MAX_BUSY_WAIT {
                    if let Some(next) = make() {
                        // Many uploads in flight would each say so: once every 30 s is enough.
                        let now = chrono::Utc::now().timestamp();
                        if now - LAST_BUSY_NOTICE.swap(now, std::sync::atomic::Ordering::Relaxed)
                            >= 30
                        {
                            eprintln!(
                                "server busy ({status}: {}); waiting as it asks and retrying",
                                error_message(&text)
                            );
                        }
                        tokio::time::sleep(wait).await;
                        req = next;
                        continue;
                    }
                }
            }
            if !status.is_success() {
                bail!("server answered {status}: {}", error_message(&text));
            }
            // An answer without a body (204) reads as JSON null.
            let json = if text.trim().is_empty() {
                "null"
            } else {
                &text
            };
            return serde_json::from_str(json)
                .with_context(|| format!("failed to decode the server's answer: {text}"));
        }
    }

    /// Creates the collection unless it exists.
    pub async fn ensure_collection(&self, name: &str) -> anyhow::Result<()> {
        let exists = self
            .request(reqwest::Method::GET, &format!("/v1/collections/{name}"))
            .send()
            .await;
        if exists.as_ref().is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        let _: Value = self
            .send(
                self.request(reqwest::Method::POST, "/v1/collections")
                    .json(&json!({ "name": name })),
            )
            .await?;
        Ok(())
    }
}

/// `ragplane search` / `ragplane query`.
pub async fn search(args: SearchArgs, generate: bool) -> anyhow::Result<()> {
    let client = Client::new(&args.conn)?;
    let mut body =
        json!({ "collection": args.collection, "query": args.text.join(" "), "top_k": args.top_k });
    if let Some(mode) = &args.mode {
        body["mode"] = json!(mode);
    }
    let path = if generate { "/v1/query" } else { "/v1/search" };
    let v: Value = client
        .send(client.request(reqwest::Method::POST, path).json(&body))
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let hits = if generate { &v["sources"] } else { &v["hits"] };
    if generate {
        match v["answer"].as_str() {
            Some(a) => println!("{a}\n"),
            None => println!("(generation is not configured; showing the retrieved sources)\n"),
        }
    }
    for (i, h) in hits.as_array().into_iter().flatten().enumerate() {
        let text = h["text"].as_str().unwrap_or("").replace('\n', " ");
        let short: String = text.chars().take(160).collect();
        let part = |name: &str, key: &str| {
            h[key]
                .as_f64()
                .map(|v| format!("  {name} {v:.3}"))
                .unwrap_or_default()
        };
        println!(
            "[{}] {:.3}  {}  (chunk {}{}{})\n    {short}",
            i + 1,
            h["score"].as_f64().unwrap_or(0.0),
            h["title"].as_str().unwrap_or(""),
            h["chunk"],
            part("dense", "dense_score"),
            part("keyword", "keyword_score"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;

    use super::*;

    /// A server that is busy (429, Retry-After: 1) for its first `busy` requests.
    async fn busy_server(busy: usize) -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let app = axum::Router::new().route(
            "/v1/thing",
            axum::routing::post(move || {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < busy {
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            [(header::RETRY_AFTER, "1")],
                            axum::Json(json!({"error": "backlog", "type": "overloaded"})),
                        )
                            .into_response()
                    } else {
                        axum::Json(json!({"ok": n})).into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, calls)
    }

    #[tokio::test]
    async fn a_busy_server_is_waited_out() {
        let (url, calls) = busy_server(2).await;
        let client = Client::new(&ConnArgs { url, api_key: None }).unwrap();
        let started = std::time::Instant::now();
        let v: Value = client
            .send(
                client
                    .request(reqwest::Method::POST, "/v1/thing")
                    .json(&json!({"a": 1})),
            )
            .await
            .unwrap();
        assert_eq!(v["ok"], 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_copied_is_not_retried() {
        let (url, calls) = busy_server(1).await;
        let client = Client::new(&ConnArgs { url, api_key: None }).unwrap();
        let mut once = Some(client.request(reqwest::Method::POST, "/v1/thing"));
        let err = client.send_with::<Value>(|| once.take()).await.unwrap_err();
        assert!(
            err.to_string().contains("429") && err.to_string().contains("backlog"),
            "{err}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
