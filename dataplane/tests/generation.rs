//! The generation tier.
//!
//! - Pool behaviour (failover before the first token, ejection, readmission, timeouts) against
//!   stand-in servers whose faults the test controls.
//! - The HTTP surface (`/v1/query` streaming, `/v1/chat/completions`) in-process.
//! - Real LLM servers started by `scripts/services/llm.sh`: both protocols streaming, the
//!   official `openai` Python client against ragplane, and the fault tests (a server killed
//!   under load, every server down). These skip with a printed reason when the servers are
//!   not there, unless `RAGPLANE_REQUIRE_SERVICES=1`.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use futures::StreamExt;
use http_body_util::BodyExt;
use ragplane::app::App;
use ragplane::generate::pool::{GeneratorPool, Protocol};
use ragplane::generate::{ChatMessage, ChatRequest, Chunk, GenerateError, Generator};
use ragplane_config::{Config, GenerationConfig, GeneratorEndpoint};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const ADMIN: &str = "rp_test_admin_key_0123456789";

// ---------------------------------------------------------------------------------------------
// A stand-in OpenAI-protocol server with switchable faults.

const OK: u8 = 0;
/// Answers 500 to everything, probes included.
const FAIL: u8 = 1;
/// Accepts the request and sends nothing for 30 s.
const HANG: u8 = 2;
/// Sends one token, then drops the connection.
const BREAK_MIDWAY: u8 = 3;

#[derive(Clone)]
struct Stub {
    url: String,
    mode: Arc<AtomicU8>,
    chats: Arc<AtomicUsize>,
}

impl Stub {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
    fn chats(&self) -> usize {
        self.chats.load(Ordering::SeqCst)
    }
}

async fn stub() -> Stub {
    let mode = Arc::new(AtomicU8::new(OK));
    let chats = Arc::new(AtomicUsize::new(0));
    let (m1, m2, c) = (mode.clone(), mode.clone(), chats.clone());
    let chat = move |axum::Json(body): axum::Json<Value>| {
        let (mode, chats) = (m1.clone(), c.clone());
        async move {
            chats.fetch_add(1, Ordering::SeqCst);
            match mode.load(Ordering::SeqCst) {
                FAIL => return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
                HANG => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return (StatusCode::INTERNAL_SERVER_ERROR, "late").into_response();
                }
                _ => {}
            }
            let midway = mode.load(Ordering::SeqCst) == BREAK_MIDWAY;
            let model = body["model"].clone();
            let s = async_stream::stream! {
                for (i, p) in ["Twenty-two ", "miles ", "[1]."].into_iter().enumerate() {
                    if midway && i == 1 {
                        yield Err(std::io::Error::other("server died"));
                        return;
                    }
                    let c = json!({ "model": model, "choices": [{ "index": 0, "delta": { "content": p } }] });
                    yield Ok::<_, std::io::Error>(format!("data: {c}\n\n"));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let fin = json!({ "model": model, "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }],
                                  "usage": { "prompt_tokens": 40, "completion_tokens": 3 } });
                yield Ok(format!("data: {fin}\n\ndata: [DONE]\n\n"));
            };
            axum::response::Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(s))
                .unwrap()
        }
    };
    let models = move || {
        let mode = m2.clone();
        async move {
            if mode.load(Ordering::SeqCst) == FAIL {
                (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
            } else {
                axum::Json(json!({ "object": "list", "data": [] })).into_response()
            }
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route("/v1/models", axum::routing::get(models));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Stub {
        url: format!("http://{addr}/v1"),
        mode,
        chats,
    }
}

use axum::response::IntoResponse;

fn pool_config(urls: &[&str]) -> GeneratorEndpoint {
    let mut c = GeneratorEndpoint::new("", "stub-model");
    c.urls = urls.iter().map(|u| u.to_string()).collect();
    c.timeout_secs = 20;
    c.pool.first_token_timeout_secs = 1;
    c.pool.probe_interval_ms = 200;
    c.pool.connect_timeout_ms = 500;
    c
}

fn question() -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::new("user", "how far?")])
}

async fn answer(pool: &GeneratorPool) -> Result<String, GenerateError> {
    Ok(pool.generate(&question()).await?.text)
}

async fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_before_the_first_token_are_retried_and_the_server_ejected_then_readmitted() {
    let (bad, good) = (stub().await, stub().await);
    bad.set(FAIL);
    let mut cfg = pool_config(&[&bad.url, &good.url]);
    cfg.pool.probe_interval_ms = 60_000; // only the first probe, at start, until we shorten it
    let pool = GeneratorPool::new(Protocol::OpenAi, &cfg);
    for _ in 0..12 {
        assert_eq!(answer(&pool).await.unwrap(), "Twenty-two miles [1].");
    }
    let st = pool.status();
    assert!(!st[0].healthy, "{st:?}");
    assert!(st[1].healthy, "{st:?}");
    assert!(
        bad.chats() <= 3,
        "an ejected server gets no more requests: {}",
        bad.chats()
    );
    assert_eq!(good.chats(), 12);
    let metrics = ragplane::metrics::render();
    assert!(
        metrics.contains(&format!(
            "ragplane_llm_errors_total{{endpoint=\"{}\",stage=\"request\"}}",
            bad.url
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "ragplane_llm_endpoint_healthy{{endpoint=\"{}\"}} 0",
        bad.url
    )));

    // Recovered: the probes let it back in.
    bad.set(OK);
    let pool = GeneratorPool::new(Protocol::OpenAi, &pool_config(&[&bad.url, &good.url]));
    // Start from an ejected state by failing it first.
    bad.set(FAIL);
    wait_until("ejected by probes", Duration::from_secs(5), || {
        !pool.status()[0].healthy
    })
    .await;
    bad.set(OK);
    let took = wait_until("readmitted", Duration::from_secs(5), || {
        pool.status()[0].healthy
    })
    .await;
    eprintln!("readmitted {took:?} after recovering");
    let before = bad.chats();
    for _ in 0..6 {
        answer(&pool).await.unwrap();
    }
    assert!(bad.chats() > before, "a readmitted server gets traffic again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_sends_no_first_token_in_time_is_skipped() {
    let (slow, good) = (stub().await, stub().await);
    slow.set(HANG);
    let pool = GeneratorPool::new(Protocol::OpenAi, &pool_config(&[&slow.url, &good.url]));
    for _ in 0..2 {
        let t = Instant::now();
        assert_eq!(answer(&pool).await.unwrap(), "Twenty-two miles [1].");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    assert!(slow.chats() >= 1, "the slow server was tried");
    let metrics = ragplane::metrics::render();
    assert!(metrics.contains(&format!(
        "ragplane_llm_errors_total{{endpoint=\"{}\",stage=\"first_token\"}}",
        slow.url
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_first_token_ends_the_stream_with_an_error() {
    let s = stub().await;
    s.set(BREAK_MIDWAY);
    let pool = GeneratorPool::new(Protocol::OpenAi, &pool_config(&[&s.url]));
    let mut stream = pool.stream(&question()).await.unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        Chunk::Delta("Twenty-two ".into())
    );
    assert!(matches!(stream.next().await, Some(Err(_))));
    assert_eq!(s.chats(), 1, "not retried once tokens were delivered");
    drop(stream);
    assert_eq!(pool.status()[0].outstanding, 0, "the slot is freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_server_down_the_pool_refuses_at_once() {
    let urls = [
        format!("http://127.0.0.1:{}/v1", free_port()),
        format!("http://127.0.0.1:{}/v1", free_port()),
    ];
    let mut cfg = pool_config(&[&urls[0], &urls[1]]);
    cfg.pool.probe_interval_ms = 100;
    let pool = GeneratorPool::new(Protocol::OpenAi, &cfg);
    // Before the probes notice, a request fails on both (connection refused) — still an error.
    assert!(answer(&pool).await.is_err());
    wait_until("both ejected", Duration::from_secs(5), || {
        pool.status().iter().all(|s| !s.healthy)
    })
    .await;
    let t = Instant::now();
    let err = answer(&pool).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(100), "{:?}", t.elapsed());
    assert!(
        matches!(err, GenerateError::NoHealthyEndpoint { count: 2, .. }),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// The HTTP surface, in-process.

struct Env {
    _dir: tempfile::TempDir,
    router: Router,
    shutdown: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn env(generation: GenerationConfig) -> Option<Env> {
    let model = ragplane::testing::model_files()?;
    let dir = tempfile::tempdir().unwrap();
    let mut config: Config = ragplane::testing::config_in(dir.path(), &model, ADMIN);
    config.generation = generation;
    let app = Arc::new(App::build(config).await.expect("app builds"));
    app.bootstrap_admin_key().await.unwrap();
    let shutdown = CancellationToken::new();
    let workers = ragplane::worker::spawn_workers(app.clone(), 1, shutdown.clone());
    std::mem::forget(workers); // they stop on `shutdown`
    let router = ragplane::api::router(app);
    let e = Env {
        _dir: dir,
        router,
        shutdown,
    };
    e.call(
        Method::POST,
        "/v1/collections",
        Some(json!({ "name": "docs" })),
    )
    .await;
    let up = e
        .call(
            Method::POST,
            "/v1/collections/docs/documents",
            Some(json!({ "title": "light", "text":
                "The lamp of Skerry Point is visible from 22 nautical miles." })),
        )
        .await;
    assert_eq!(up.0, StatusCode::ACCEPTED, "{up:?}");
    let id = up.1["document"]["id"].as_str().unwrap().to_string();
    for _ in 0..600 {
        let d = e
            .call(
                Method::GET,
                &format!("/v1/collections/docs/documents/{id}"),
                None,
            )
            .await;
        if d.1["status"] == "indexed" {
            return Some(e);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("document never indexed");
}

impl Env {
    async fn raw(&self, method: Method, uri: &str, body: Option<Value>) -> axum::response::Response {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.router
            .clone()
            .oneshot(b.body(body).unwrap())
            .await
            .unwrap()
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let r = self.raw(method, uri, body).await;
        let status = r.status();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, v)
    }

    /// Posts and reads the body as Server-Sent Events: (event name, data) pairs.
    async fn events(&self, uri: &str, body: Value) -> (StatusCode, Vec<(String, String)>) {
        let r = self.raw(Method::POST, uri, Some(body)).await;
        let status = r.status();
        if status == StatusCode::OK {
            assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
        }
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        (status, parse_sse(&String::from_utf8_lossy(&bytes)))
    }
}

fn parse_sse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut name = String::from("message");
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event:") {
                name = n.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        if !data.is_empty() {
            out.push((name, data.join("\n")));
        }
    }
    out
}

fn openai(urls: &[&str]) -> GenerationConfig {
    GenerationConfig::Openai(pool_config(urls))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_streams_token_deltas_then_the_cited_sources_and_usage() {
    let s = stub().await;
    let Some(e) = env(openai(&[&s.url])).await else {
        return;
    };
    let (status, events) = e
        .events(
            "/v1/query",
            json!({ "collection": "docs", "query": "how far is the lamp visible?", "stream": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{events:?}");
    let (last, deltas) = events.split_last().unwrap();
    assert!(deltas.iter().all(|(n, _)| n == "delta"), "{events:?}");
    let text: String = deltas
        .iter()
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, "Twenty-two miles [1].");
    assert_eq!(last.0, "done");
    let done: Value = serde_json::from_str(&last.1).unwrap();
    assert_eq!(done["generation"], "generated");
    assert_eq!(done["answer"], text);
    assert_eq!(done["cited"], json!([1]));
    assert_eq!(done["sources"][0]["number"], 1);
    assert!(done["sources"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Skerry Point"));
    assert_eq!(done["usage"]["completion_tokens"], 3);
    assert_eq!(done["finish_reason"], "stop");

    // The non-streaming form gives the same answer.
    let (status, q) = e
        .call(
            Method::POST,
            "/v1/query",
            Some(json!({ "collection": "docs", "query": "how far is the lamp visible?" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(q["answer"], text);
    assert_eq!(q["cited"], json!([1]));

    // A failure midway ends the stream with an error event.
    s.set(BREAK_MIDWAY);
    let (status, events) = e
        .events(
            "/v1/query",
            json!({ "collection": "docs", "query": "how far?", "stream": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events.first().unwrap().0, "delta");
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error", "{events:?}");
    assert_eq!(serde_json::from_str::<Value>(data).unwrap()["type"], "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_answer_in_openai_format_from_the_named_collection() {
    let s = stub().await;
    let Some(e) = env(openai(&[&s.url])).await else {
        return;
    };
    let (status, c) = e
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({ "model": "docs", "messages": [
                { "role": "system", "content": "Be brief." },
                { "role": "user", "content": "how far is the lamp visible?" }] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c:?}");
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["model"], "docs");
    assert_eq!(c["choices"][0]["message"]["role"], "assistant");
    assert_eq!(c["choices"][0]["message"]["content"], "Twenty-two miles [1].");
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    assert_eq!(c["usage"]["total_tokens"], 43);
    assert_eq!(c["sources"][0]["number"], 1);

    let (status, events) = e
        .events(
            "/v1/chat/completions",
            json!({ "model": "ignored", "collection": "docs", "stream": true,
                    "stream_options": { "include_usage": true },
                    "messages": [{ "role": "user", "content": [{ "type": "text", "text": "how far?" }] }] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{events:?}");
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Twenty-two miles [1].");
    let fin = &chunks[chunks.len() - 2];
    assert_eq!(fin["choices"][0]["finish_reason"], "stop");
    assert_eq!(fin["sources"][0]["number"], 1);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);

    let (status, _) = e
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({ "model": "nope", "messages": [{ "role": "user", "content": "x" }] })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown collection");
    let (status, _) = e
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({ "model": "docs", "messages": [{ "role": "assistant", "content": "x" }] })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no user message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_server_down_queries_get_503_and_retry_after_quickly() {
    let dead = [
        format!("http://127.0.0.1:{}/v1", free_port()),
        format!("http://127.0.0.1:{}/v1", free_port()),
    ];
    let mut cfg = pool_config(&[&dead[0], &dead[1]]);
    cfg.pool.probe_interval_ms = 100;
    cfg.pool.eject_after_failures = 1;
    let Some(e) = env(GenerationConfig::Openai(cfg)).await else {
        return;
    };
    assert_all_down_is_fast(&e).await;
}

async fn assert_all_down_is_fast(e: &Env) {
    for uri in ["/v1/query", "/v1/chat/completions"] {
        let body = if uri == "/v1/query" {
            json!({ "collection": "docs", "query": "how far?", "stream": true })
        } else {
            json!({ "model": "docs", "messages": [{ "role": "user", "content": "how far?" }] })
        };
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let t = Instant::now();
            let r = e.raw(Method::POST, uri, Some(body.clone())).await;
            worst = worst.max(t.elapsed());
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{uri}");
            assert!(r.headers().contains_key(header::RETRY_AFTER), "{uri}");
        }
        eprintln!("{uri}: 503 in at most {worst:?}");
        assert!(worst < Duration::from_millis(100), "{uri}: {worst:?}");
    }
}
