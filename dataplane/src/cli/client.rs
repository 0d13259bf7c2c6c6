//! A small HTTP client for the ragplane API, used by the CLI commands.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::SearchArgs;

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
    pub async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("failed to reach ragplane at {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(text);
            bail!("server answered {status}: {message}");
        }
        serde_json::from_str(&text)
            .with_context(|| format!("failed to decode the server's answer: {text}"))
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
