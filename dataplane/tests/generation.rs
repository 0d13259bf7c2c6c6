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
/// Sends one token, then nothing for 30 s.
const STALL_MIDWAY: u8 = 4;

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
            let stall = mode.load(Ordering::SeqCst) == STALL_MIDWAY;
            let model = body["model"].clone();
            let s = async_stream::stream! {
                for (i, p) in ["Twenty-two ", "miles ", "[1]."].into_iter().enumerate() {
                    if midway && i == 1 {
                        yield Err(std::io::Error::other("server died"));
                        return;
                    }
                    if stall && i == 1 {
                        tokio::time::sleep(Duration::from_secs(30)).await;
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
    assert!(
        bad.chats() > before,
        "a readmitted server gets traffic again"
    );
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
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert!(
        matches!(err, GenerateError::NoHealthyEndpoint { count: 2, .. }),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// The HTTP surface, in-process.

struct Env {
    _dir: tempfile::TempDir,
    app: Arc<App>,
    router: Router,
    shutdown: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn env(generation: GenerationConfig) -> Option<Env> {
    env_with(generation, |_| {}).await
}

async fn env_with(generation: GenerationConfig, tweak: impl FnOnce(&mut Config)) -> Option<Env> {
    let model = ragplane::testing::model_files()?;
    let dir = tempfile::tempdir().unwrap();
    let mut config: Config = ragplane::testing::config_in(dir.path(), &model, ADMIN);
    config.generation = generation;
    tweak(&mut config);
    let app = Arc::new(App::build(config).await.expect("app builds"));
    app.bootstrap_admin_key().await.unwrap();
    let shutdown = CancellationToken::new();
    let workers = ragplane::worker::spawn_workers(app.clone(), 1, shutdown.clone());
    std::mem::forget(workers); // they stop on `shutdown`
    let router = ragplane::api::router(app.clone());
    let e = Env {
        _dir: dir,
        app,
        router,
        shutdown,
    };
    e.call(
        Method::POST,
        "/v1/collections",
        Some(json!({ "name": "docs" })),
    )
    .await;
    // Two sources, so that a model citing `[2]` cites something real.
    let mut ids = Vec::new();
    for (title, text) in [
        (
            "light",
            "The lamp of Skerry Point is visible from 22 nautical miles.",
        ),
        (
            "orbit",
            "A satellite in low Earth orbit circles the planet in about 90 minutes.",
        ),
    ] {
        let up = e
            .call(
                Method::POST,
                "/v1/collections/docs/documents",
                Some(json!({ "title": title, "text": text })),
            )
            .await;
        assert_eq!(up.0, StatusCode::ACCEPTED, "{up:?}");
        ids.push(up.1["document"]["id"].as_str().unwrap().to_string());
    }
    for id in ids {
        let mut indexed = false;
        for _ in 0..600 {
            let d = e
                .call(
                    Method::GET,
                    &format!("/v1/collections/docs/documents/{id}"),
                    None,
                )
                .await;
            if d.1["status"] == "indexed" {
                indexed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(indexed, "document {id} never indexed");
    }
    Some(e)
}

impl Env {
    async fn raw(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> axum::response::Response {
        self.raw_as(method, uri, body, None).await
    }

    /// [`Env::raw`], as request `request_id` when given.
    async fn raw_as(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        request_id: Option<&str>,
    ) -> axum::response::Response {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
        if let Some(id) = request_id {
            b = b.header("x-request-id", id);
        }
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

/// A cited source that is its plain-text document's only chunk: its provenance spans the
/// whole text, under no heading and on no page.
fn assert_whole_chunk_provenance(source: &Value) {
    let p = &source["provenance"];
    let chars = source["text"].as_str().unwrap_or_default().chars().count();
    assert_eq!(p["start"], 0, "{source}");
    assert_eq!(p["end"].as_u64(), Some(chars as u64), "{source}");
    assert_eq!(p["headings"], json!([]), "{source}");
    assert!(p["page"].is_null(), "{source}");
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
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
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
    // Citations say where each source comes from, as search hits do.
    for source in [&done["sources"][0], &q["sources"][0]] {
        assert_whole_chunk_provenance(source);
    }

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
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap()["type"],
        "unavailable"
    );
}

/// The query log's lines, as JSON, captured from the process's subscriber, which this installs
/// on first use (no other test of this binary installs one).
fn query_log(query_id: &str) -> Vec<Value> {
    static LINES: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
    static INSTALL: std::sync::Once = std::sync::Once::new();
    struct Sink;
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            LINES.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter("off,ragplane::query_log=info,ragplane::api::trace=info")
            .with_writer(|| Sink)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    String::from_utf8_lossy(&LINES.lock().unwrap())
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["fields"]["query_id"] == query_id)
        .collect()
}

/// The one line of `query_id`, waited for (an abandoned query's is written as it is dropped).
async fn query_line(query_id: &str) -> Value {
    query_log(query_id);
    wait_until(
        &format!("the query log line of {query_id}"),
        Duration::from_secs(10),
        || !query_log(query_id).is_empty(),
    )
    .await;
    let lines = query_log(query_id);
    assert_eq!(lines.len(), 1, "one line per query: {lines:#?}");
    lines[0]["fields"].clone()
}

/// Asserts a query log line's kind and outcome, and whether it holds a finished retrieval
/// (hits and the result cache's part) or none (no hits, no `cache`).
fn assert_logged(line: &Value, kind: &str, outcome: &str, retrieved: bool) {
    assert_eq!(
        (line["kind"].as_str(), line["outcome"].as_str()),
        (Some(kind), Some(outcome)),
        "{line}"
    );
    let hits = line["hits"].as_u64().unwrap();
    assert_eq!(
        (hits > 0, line["cache"].is_string()),
        (retrieved, retrieved),
        "{line}"
    );
}

/// The body of streamed answer `r`, read up to its first delta (within 10 s), for a client
/// that then hangs up by dropping it.
async fn first_delta_of(r: axum::response::Response) -> Body {
    let mut body = r.into_body();
    let mut seen = String::new();
    while !seen.contains("event: delta") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a first delta")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    body
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_writes_one_log_line_however_it_ends() {
    query_log("");
    let s = stub().await;
    let Some(e) = env(openai(&[&s.url])).await else {
        return;
    };
    let ask = json!({ "collection": "docs", "query": "how far is the lamp visible?" });
    let usage = || async {
        e.app.usage.flush(e.app.metadata.as_ref()).await.unwrap();
        e.call(Method::GET, "/v1/usage", None).await.1["total"].clone()
    };
    let before = usage().await;

    // Answered.
    let r = e
        .raw_as(Method::POST, "/v1/search", Some(ask.clone()), Some("ql-ok"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let ok = query_line("ql-ok").await;
    assert_logged(&ok, "search", "ok", true);
    assert!(ok["error"].is_null(), "{ok}");

    // Failed before any result: the error's type, nothing retrieved.
    let r = e
        .raw_as(
            Method::POST,
            "/v1/search",
            Some(json!({ "collection": "nowhere", "query": "x" })),
            Some("ql-error"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let failed = query_line("ql-error").await;
    assert_logged(&failed, "search", "error", false);
    assert_eq!(failed["error"], "not_found", "{failed}");

    // A streamed answer whose client leaves after the first delta: abandoned, with its
    // retrieval and the one delta sent, logged inside the request's span.
    s.set(STALL_MIDWAY);
    let mut stream = json!({ "stream": true });
    stream
        .as_object_mut()
        .unwrap()
        .extend(ask.as_object().unwrap().clone());
    let r = e
        .raw_as(
            Method::POST,
            "/v1/query",
            Some(stream),
            Some("ql-left-midway"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = first_delta_of(r).await;
    assert!(
        query_log("ql-left-midway").is_empty(),
        "logged before it ended"
    );
    drop(body);
    let left = query_line("ql-left-midway").await;
    assert_logged(&left, "query", "abandoned", true);
    assert_eq!(left["completion_tokens"], 1, "{left}");
    let line = &query_log("ql-left-midway")[0];
    assert!(
        line["spans"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["request_id"] == "ql-left-midway")),
        "not in the request's span: {line}"
    );

    // A non-streamed answer whose client leaves after the model's first token: abandoned, with
    // its retrieval and the one token generated, which usage counts.
    let asked = s.chats();
    let call = e.raw_as(
        Method::POST,
        "/v1/query",
        Some(ask.clone()),
        Some("ql-left-whole"),
    );
    tokio::select! {
        r = call => panic!("answered while the model stalls: {r:?}"),
        () = async {
            while s.chats() == asked {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // The first token follows the request at once.
            tokio::time::sleep(Duration::from_millis(300)).await;
        } => {}
    }
    let whole = query_line("ql-left-whole").await;
    assert_logged(&whole, "query", "abandoned", true);
    assert_eq!(whole["completion_tokens"], 1, "{whole}");

    // A chat completion whose client leaves while the model has not answered yet.
    s.set(HANG);
    let chat = json!({ "model": "docs", "messages": [{ "role": "user", "content": "how far?" }] });
    let gone = tokio::time::timeout(
        Duration::from_millis(500),
        e.raw_as(
            Method::POST,
            "/v1/chat/completions",
            Some(chat),
            Some("ql-left-early"),
        ),
    )
    .await;
    assert!(gone.is_err(), "answered while the model hangs: {gone:?}");
    let early = query_line("ql-left-early").await;
    assert_logged(&early, "chat", "abandoned", false);
    assert!(early["completion_tokens"].is_null(), "{early}");

    // Usage counts the queries whose results reached the client or that the model generated
    // for: the answered search, the streamed answer with its one delta and the answer left
    // after its first token; not the failure nor the chat left before any token.
    let after = usage().await;
    assert_eq!(
        after["queries"].as_i64().unwrap() - before["queries"].as_i64().unwrap(),
        3,
        "{before} → {after}"
    );
    assert_eq!(
        after["llm_tokens"].as_i64().unwrap() - before["llm_tokens"].as_i64().unwrap(),
        2,
        "{before} → {after}"
    );
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
    assert_eq!(
        c["choices"][0]["message"]["content"],
        "Twenty-two miles [1]."
    );
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    assert_eq!(c["usage"]["total_tokens"], 43);
    assert_eq!(c["sources"][0]["number"], 1);
    assert_whole_chunk_provenance(&c["sources"][0]);

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
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Twenty-two miles [1].");
    let fin = &chunks[chunks.len() - 2];
    assert_eq!(fin["choices"][0]["finish_reason"], "stop");
    assert_eq!(fin["sources"][0]["number"], 1);
    assert_whole_chunk_provenance(&fin["sources"][0]);
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

    // Generation settings out of range are refused, naming the field, before the model is
    // asked; up to generation.max_tokens_limit (4096 by default) is allowed.
    let asked = s.chats();
    for (extra, field) in [
        (json!({ "max_tokens": 0 }), "max_tokens"),
        (json!({ "max_tokens": 4097 }), "max_tokens"),
        (
            json!({ "max_tokens": 8, "max_completion_tokens": 100000 }),
            "max_completion_tokens",
        ),
        (json!({ "temperature": 2.5 }), "temperature"),
        (json!({ "temperature": -0.1 }), "temperature"),
    ] {
        let mut body = json!({ "model": "docs", "messages": [{ "role": "user", "content": "x" }] });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, err) = e
            .call(Method::POST, "/v1/chat/completions", Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{extra}: {err}");
        let message = err["error"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("invalid {field}:")),
            "{extra}: {message}"
        );
    }
    assert_eq!(s.chats(), asked, "refused before the model was asked");
    let (status, c) = e
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(
                json!({ "model": "docs", "max_tokens": 4096, "temperature": 2,
                         "messages": [{ "role": "user", "content": "x" }] }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");

    let (_, doc) = e.call(Method::GET, "/openapi.json", None).await;
    assert!(doc["paths"]["/v1/chat/completions"]["post"].is_object());
    for schema in ["ChatCompletionRequest", "QueryDone", "CitedSource"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_take_the_retrieval_options_of_search() {
    let s = stub().await;
    let Some(e) = env(openai(&[&s.url])).await else {
        return;
    };
    let (_, listed) = e
        .call(Method::GET, "/v1/collections/docs/documents", None)
        .await;
    let orbit = listed["documents"]
        .as_array()
        .expect("a document list")
        .iter()
        .find(|d| d["title"] == "orbit")
        .expect("the orbit document")["id"]
        .clone();
    // A chat completion about the lamp, with `extra` body fields.
    let chat = |extra: Value| {
        let mut body = json!({ "model": "docs",
            "messages": [{ "role": "user", "content": "how far is the lamp visible?" }] });
        for (k, v) in extra.as_object().expect("an object") {
            body[k] = v.clone();
        }
        e.call(Method::POST, "/v1/chat/completions", Some(body))
    };
    // Unrestricted, the lamp's document is the first source.
    let (status, c) = chat(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{c:?}");
    assert_ne!(c["sources"][0]["document_id"], orbit);
    // Restricted to one document, only it can be cited; with a filter no document matches,
    // or a score no chunk reaches, nothing can be.
    for (extra, first) in [
        (json!({ "document_ids": [orbit.clone()] }), orbit.clone()),
        (
            json!({ "document_ids": [orbit.clone()], "group_by": "document", "mode": "dense" }),
            orbit.clone(),
        ),
        (json!({ "filter": { "lang": "none" } }), Value::Null),
        (json!({ "min_score": 1.0e9 }), Value::Null),
    ] {
        let (status, c) = chat(extra.clone()).await;
        assert_eq!(status, StatusCode::OK, "{extra}: {c:?}");
        assert_eq!(c["sources"][0]["document_id"], first, "{extra}: {c:?}");
        if first.is_null() {
            assert_eq!(c["sources"], json!([]), "{extra}");
        }
    }
    // Bad options are refused as /v1/search refuses them.
    for (extra, field) in [
        (json!({ "group_by": "page" }), "group_by"),
        (json!({ "filter": { "year": { "gt": "x" } } }), "filter"),
    ] {
        let (status, c) = chat(extra.clone()).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{extra}: {status} {c:?}"
        );
        assert!(c.to_string().contains(field), "{extra}: {c:?}");
    }
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

// ---------------------------------------------------------------------------------------------
// Real LLM servers (scripts/services/llm.sh): Ollama serving Gemma 3 270M. The model is a base
// model, so the tests assert on the protocol and the plumbing, never on what the answer says.

/// Connection settings recorded by `scripts/services/llm.sh`.
struct Llm {
    ollama_url: String,
    openai_url: String,
    model: String,
    bin: String,
    models: String,
    python: String,
}

fn llm(test: &str) -> Option<Llm> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let found = (|| {
        Some(Llm {
            ollama_url: get("RAGPLANE_TEST_OLLAMA_URL")?,
            openai_url: get("RAGPLANE_TEST_OPENAI_URL")?,
            model: get("RAGPLANE_TEST_LLM_MODEL")?,
            bin: get("RAGPLANE_TEST_OLLAMA_BIN")?,
            models: get("RAGPLANE_TEST_OLLAMA_MODELS")?,
            python: get("RAGPLANE_TEST_PYTHON")?,
        })
    })();
    if found.is_none() {
        let why = "RAGPLANE_TEST_OLLAMA_URL and the other RAGPLANE_TEST_* LLM settings are not set; run `bash scripts/services/llm.sh start` and source target/services/env.sh";
        assert!(
            std::env::var("RAGPLANE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "{test}: {why}"
        );
        eprintln!("SKIPPED: {test}: {why}");
    }
    found
}

fn real_pool(urls: &[&str], model: &str) -> GeneratorEndpoint {
    let mut c = GeneratorEndpoint::new("", model);
    c.urls = urls.iter().map(|u| u.to_string()).collect();
    c.max_tokens = 8;
    c.timeout_secs = 120;
    c.pool.probe_interval_ms = 1_000;
    c.pool.eject_after_failures = 2;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_servers_stream_over_both_protocols() {
    let Some(l) = llm("real_servers_stream_over_both_protocols") else {
        return;
    };
    for (protocol, url) in [
        (Protocol::Ollama, &l.ollama_url),
        (Protocol::OpenAi, &l.openai_url),
    ] {
        let pool = GeneratorPool::new(protocol, &real_pool(&[url], &l.model));
        let mut s = pool
            .stream(&ChatRequest::new(vec![ChatMessage::new(
                "user",
                "Name three colours.",
            )]))
            .await
            .unwrap_or_else(|e| panic!("{protocol:?}: {e}"));
        let (mut deltas, mut done) = (Vec::new(), None);
        while let Some(c) = s.next().await {
            match c.unwrap() {
                Chunk::Delta(d) => deltas.push(d),
                Chunk::Done(f) => done = Some(f),
            }
        }
        let done = done.unwrap_or_else(|| panic!("{protocol:?}: no final chunk"));
        eprintln!(
            "{protocol:?}: {} deltas {:?}, {done:?}",
            deltas.len(),
            deltas.concat()
        );
        assert!(
            deltas.len() >= 2,
            "{protocol:?} streams token by token: {deltas:?}"
        );
        let usage = done
            .usage
            .unwrap_or_else(|| panic!("{protocol:?}: no usage"));
        assert!(
            usage.prompt_tokens > 0 && usage.completion_tokens > 0,
            "{usage:?}"
        );
        assert!(
            usage.completion_tokens <= 8,
            "max_tokens is passed on: {usage:?}"
        );
        assert!(done.model.starts_with(&l.model), "{}", done.model);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_query_streams_deltas_and_a_final_event_with_citations() {
    let Some(l) = llm("real_server_query_streams_deltas_and_a_final_event_with_citations") else {
        return;
    };
    for (protocol, url) in [
        (Protocol::Ollama, &l.ollama_url),
        (Protocol::OpenAi, &l.openai_url),
    ] {
        let cfg = real_pool(&[url], &l.model);
        let g = match protocol {
            Protocol::Ollama => GenerationConfig::Ollama(cfg),
            Protocol::OpenAi => GenerationConfig::Openai(cfg),
        };
        let Some(e) = env(g).await else { return };
        let (status, events) = e
            .events(
                "/v1/query",
                json!({ "collection": "docs", "query": "How far is the lamp visible?", "stream": true }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{protocol:?}: {events:?}");
        let (last, deltas) = events.split_last().unwrap();
        assert!(
            !deltas.is_empty() && deltas.iter().all(|(n, _)| n == "delta"),
            "{events:?}"
        );
        assert_eq!(last.0, "done", "{events:?}");
        let done: Value = serde_json::from_str(&last.1).unwrap();
        let text: String = deltas
            .iter()
            .map(|(_, d)| {
                serde_json::from_str::<Value>(d).unwrap()["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(done["answer"], text);
        assert_eq!(done["retrieved"], 2);
        // Whatever the model wrote, the final event cites exactly what the text cites.
        let cited = ragplane::generate::prompt::cited(&text, 2);
        assert_eq!(done["cited"], json!(cited), "{text:?}");
        let numbers: Vec<u64> = done["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, cited.iter().map(|&n| n as u64).collect::<Vec<_>>());
        assert!(done["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        eprintln!("{protocol:?}: {text:?} cited {cited:?}");
    }
}

/// Serves `router` on a loopback port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_client_talks_to_ragplane() {
    let Some(l) = llm("the_official_openai_python_client_talks_to_ragplane") else {
        return;
    };
    let Some(e) = env(GenerationConfig::Openai(real_pool(
        &[&l.openai_url],
        &l.model,
    )))
    .await
    else {
        return;
    };
    let base = serve(e.router.clone()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let out = tokio::process::Command::new(&l.python)
        .args([script, &format!("{base}/v1"), ADMIN, "docs"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{r:#}");
    let plain = &r["plain"];
    assert_eq!(plain["object"], "chat.completion");
    assert_eq!(plain["model"], "docs");
    assert_eq!(plain["role"], "assistant");
    assert!(!plain["content"].as_str().unwrap().is_empty());
    assert!(plain["completion_tokens"].as_u64().unwrap() > 0);
    assert!(plain["sources"].is_array());
    let s = &r["streamed"];
    assert_eq!(s["objects"], json!(["chat.completion.chunk"]));
    assert!(s["deltas"].as_u64().unwrap() >= 2, "{s}");
    assert!(s["finish_reason"].is_string(), "{s}");
    assert!(s["completion_tokens"].as_u64().unwrap() > 0, "{s}");
    assert!(s["sources"].is_array(), "{s}");
    assert_eq!(r["missing"], 404);
}

/// An Ollama server this test starts, stops and restarts.
struct OwnServer {
    port: u16,
    bin: String,
    models: String,
    child: Option<std::process::Child>,
}

impl OwnServer {
    fn new(l: &Llm, port: u16) -> Self {
        let mut s = Self {
            port,
            bin: l.bin.clone(),
            models: l.models.clone(),
            child: None,
        };
        s.start();
        s
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("ragplane-ollama-{}.log", self.port)),
        )
        .unwrap();
        let child = std::process::Command::new(&self.bin)
            .arg("serve")
            .env("OLLAMA_HOST", format!("127.0.0.1:{}", self.port))
            .env("OLLAMA_MODELS", &self.models)
            .env("OLLAMA_KEEP_ALIVE", "-1")
            .env("OLLAMA_NUM_PARALLEL", "2")
            .env("OLLAMA_CONTEXT_LENGTH", "2048")
            .env("OLLAMA_NOPRUNE", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so killing it takes its model runner along.
            .process_group(0)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL to the server and its runner: a crash, not a shutdown.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-9", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.wait();
        }
    }

    /// Waits until it answers and has the model loaded.
    async fn ready(&self, model: &str) {
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            let r = client
                .post(format!("{}/api/generate", self.url()))
                .json(&json!({ "model": model, "prompt": "hi", "stream": false, "options": { "num_predict": 1 } }))
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "ollama on {} never became ready",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn healthy_metric(url: &str) -> Option<i64> {
    let needle = format!("ragplane_llm_endpoint_healthy{{endpoint=\"{url}\"}} ");
    ragplane::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(&needle).and_then(|v| v.trim().parse().ok()))
}

#[derive(Default, Debug)]
struct Outcomes {
    completed: usize,
    /// Failed before any token reached the client: must stay at zero.
    failed_before_streaming: Vec<String>,
    /// Failed after tokens had reached the client (their server was killed mid-answer).
    failed_midway: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_server_under_load_fails_no_query_that_had_not_started_streaming() {
    let Some(l) = llm("killing_a_server_under_load_fails_no_query_that_had_not_started_streaming")
    else {
        return;
    };
    let mut a = OwnServer::new(&l, 18410);
    let b = OwnServer::new(&l, 18411);
    a.ready(&l.model).await;
    b.ready(&l.model).await;
    let (ua, ub) = (a.url(), b.url());
    let Some(e) = env(GenerationConfig::Ollama(real_pool(&[&ua, &ub], &l.model))).await else {
        return;
    };
    let e = Arc::new(e);
    let outcomes = Arc::new(std::sync::Mutex::new(Outcomes::default()));
    let stop = CancellationToken::new();
    let mut load = tokio::task::JoinSet::new();
    for w in 0..3 {
        let (e, outcomes, stop) = (e.clone(), outcomes.clone(), stop.clone());
        load.spawn(async move {
            let mut i = 0;
            while !stop.is_cancelled() {
                i += 1;
                let q = json!({ "collection": "docs", "query": format!("how far is the lamp visible? ({w}.{i})"), "stream": true });
                let (status, events) = e.events("/v1/query", q).await;
                let mut o = outcomes.lock().unwrap();
                let streamed = events.iter().any(|(n, _)| n == "delta");
                match events.last() {
                    _ if status != StatusCode::OK => o.failed_before_streaming.push(format!("{status} {events:?}")),
                    Some((n, _)) if n == "done" => o.completed += 1,
                    _ if streamed => o.failed_midway += 1,
                    _ => o.failed_before_streaming.push(format!("{events:?}")),
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before_kill = outcomes.lock().unwrap().completed;
    a.kill();
    eprintln!("killed {ua} after {before_kill} completed queries");
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(healthy_metric(&ua), Some(0), "the killed server is ejected");
    let during = outcomes.lock().unwrap().completed;
    a.start();
    let back = Instant::now();
    a.ready(&l.model).await;
    eprintln!("{ua} is back after {:?}", back.elapsed());
    let readmitted = wait_until("readmitted", Duration::from_secs(30), || {
        healthy_metric(&ua) == Some(1)
    })
    .await;
    eprintln!(
        "readmitted {:?} after restart ({readmitted:?} after it answered)",
        back.elapsed()
    );
    assert!(back.elapsed() < Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.cancel();
    while load.join_next().await.is_some() {}
    let o = std::mem::take(&mut *outcomes.lock().unwrap());
    eprintln!(
        "{o:?}; completed while one server was down: {}",
        during - before_kill
    );
    assert!(
        o.failed_before_streaming.is_empty(),
        "{:?}",
        o.failed_before_streaming
    );
    assert!(
        during > before_kill,
        "queries kept completing on the other server"
    );
    assert!(o.completed > during, "and after the readmission");

    // Both down: 503 with Retry-After, quickly.
    drop(b);
    a.kill();
    wait_until("both ejected", Duration::from_secs(15), || {
        healthy_metric(&ua) == Some(0) && healthy_metric(&ub) == Some(0)
    })
    .await;
    assert_all_down_is_fast(&e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_embeds_like_the_in_process_model() {
    use ragplane::embed::ollama::OllamaEmbedder;
    use ragplane::embed::onnx::OnnxEmbedder;
    use ragplane::embed::Embedder;
    let Some(l) = llm("ollama_embeds_like_the_in_process_model") else {
        return;
    };
    let Some((dir, lib)) = ragplane::testing::model_files() else {
        return;
    };
    let Ok(model) = std::env::var("RAGPLANE_TEST_EMBED_MODEL") else {
        panic!("llm.sh records RAGPLANE_TEST_EMBED_MODEL with the others");
    };
    // The same model (all-MiniLM-L6-v2) on both sides: Ollama runs the fp32 weights converted
    // from safetensors, the in-process embedder the int8 ONNX export.
    let mut cfg = ragplane_config::OllamaEmbeddingConfig {
        url: l.ollama_url.clone(),
        model,
        dimension: 384,
        max_batch: 2,
        timeout_secs: 60,
    };
    let remote = OllamaEmbedder::new(&cfg);
    let local = OnnxEmbedder::start(&ragplane_config::EmbeddingConfig {
        model_dir: Some(dir),
        ort_library: Some(lib),
        ..Default::default()
    })
    .unwrap();
    let texts: Vec<String> = [
        "The lighthouse can be seen from 22 nautical miles.",
        "A satellite in low Earth orbit circles the planet in about 90 minutes.",
        "Sourdough needs a starter of flour and water.",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let r = remote.embed(texts.clone()).await.unwrap();
    let o = local.embed(texts).await.unwrap();
    assert_eq!(r.len(), 3, "two batches of at most two");
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for (a, b) in r.iter().zip(&o) {
        let norm = cos(a, a).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
        let c = cos(a, b);
        eprintln!("cosine(ollama, onnx) = {c:.5}");
        assert!(c > 0.99, "the same model gives the same vectors: {c}");
    }
    cfg.dimension = 385;
    let err = OllamaEmbedder::new(&cfg)
        .embed(vec!["x".into()])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("embedding.ollama.dimension"),
        "{err}"
    );
}

/// Time to the first content token of a streamed OpenAI-format chat completion at `url`.
async fn first_token(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &Value,
) -> Duration {
    let t = Instant::now();
    let mut req = client.post(url).json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut body = resp.bytes_stream();
    let (mut buf, mut ttft) = (String::new(), None);
    while let Some(b) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&b.unwrap()));
        while let Some(end) = buf.find('\n') {
            let line: String = buf.drain(..=end).collect();
            let Some(data) = line.trim_end().strip_prefix("data: ") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            let content = v["choices"][0]["delta"]["content"].as_str().unwrap_or("");
            if ttft.is_none() && !content.is_empty() {
                ttft = Some(t.elapsed());
            }
        }
    }
    ttft.expect("a content token")
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Benchmark (docs/benchmarks.md): time to first token straight from the server and through
/// ragplane's `/v1/chat/completions`, interleaved, with the same prompt on both paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark, run by hand: see docs/benchmarks.md"]
async fn time_to_first_token_through_ragplane_vs_direct() {
    let Some(l) = llm("time_to_first_token_through_ragplane_vs_direct") else {
        return;
    };
    let n: usize = std::env::var("TTFT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    // The real server, then a stand-in whose first token is immediate: with the model's time
    // out of the way, what remains is ragplane's own share, free of the model's noise.
    let s = stub().await;
    for (server, url, model) in [
        ("Ollama, gemma3-270m", l.openai_url.clone(), l.model.clone()),
        (
            "stand-in, instant first token",
            s.url.clone(),
            "stub-model".to_string(),
        ),
    ] {
        let Some(e) = env(GenerationConfig::Openai(real_pool(&[&url], &model))).await else {
            return;
        };
        let base = serve(e.router.clone()).await;
        let client = reqwest::Client::new();
        let (_, hits) = e
            .call(
                Method::POST,
                "/v1/search",
                Some(json!({ "collection": "docs", "query": "lamp" })),
            )
            .await;
        let sources: Vec<String> = hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["text"].as_str().unwrap().to_string())
            .collect();
        let texts: Vec<&str> = sources.iter().map(String::as_str).collect();
        for (label, vary) in [
            ("new question each time (retrieval uncached)", true),
            ("same question (retrieval cached)", false),
        ] {
            let (mut direct, mut via) = (Vec::new(), Vec::new());
            for i in 0..n + 2 {
                let q = if vary {
                    format!("How far is the lamp visible? ({label} {i})")
                } else {
                    "How far is the lamp visible?".to_string()
                };
                // The same messages ragplane sends for this question.
                let messages = ragplane::generate::prompt::build(&q, &texts);
                let direct_req = json!({ "model": model, "messages": messages, "max_tokens": 2, "stream": true });
                let via_req = json!({ "model": "docs", "messages": [{ "role": "user", "content": q }],
                                      "max_tokens": 2, "stream": true });
                let direct_url = format!("{url}/chat/completions");
                let via_url = format!("{base}/v1/chat/completions");
                // Alternate which goes first: the second of two identical prompts finds the
                // first's prefix in the server's cache.
                let (d, r) = if i % 2 == 0 {
                    let d = first_token(&client, &direct_url, None, &direct_req).await;
                    (
                        d,
                        first_token(&client, &via_url, Some(ADMIN), &via_req).await,
                    )
                } else {
                    let r = first_token(&client, &via_url, Some(ADMIN), &via_req).await;
                    (
                        first_token(&client, &direct_url, None, &direct_req).await,
                        r,
                    )
                };
                if i >= 2 {
                    // The first two of each kind warm connections and caches.
                    direct.push(d);
                    via.push(r);
                }
            }
            let mut diff: Vec<i128> = direct
                .iter()
                .zip(&via)
                .map(|(d, r)| r.as_micros() as i128 - d.as_micros() as i128)
                .collect();
            diff.sort();
            let (d50, r50) = (pct(&mut direct.clone(), 0.5), pct(&mut via.clone(), 0.5));
            eprintln!(
                "| {server} | {label} | {n} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}x |",
                d50.as_secs_f64() * 1e3,
                pct(&mut direct, 0.9).as_secs_f64() * 1e3,
                r50.as_secs_f64() * 1e3,
                pct(&mut via, 0.9).as_secs_f64() * 1e3,
                diff[diff.len() / 2] as f64 / 1e3,
                r50.as_secs_f64() / d50.as_secs_f64(),
            );
        }
    }
}

/// A generation whose client leaves before its end is charged the deltas it had received, so
/// hanging up before the final message does not get round the token quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_left_midway_is_charged_to_the_token_quota() {
    let s = stub().await;
    let Some(e) = env_with(openai(&[&s.url]), |c| {
        c.rate_limit.llm_tokens_per_minute = 1
    })
    .await
    else {
        return;
    };
    s.set(STALL_MIDWAY);
    let ask =
        json!({ "collection": "docs", "query": "how far is the lamp visible?", "stream": true });
    let r = e.raw(Method::POST, "/v1/query", Some(ask.clone())).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = first_delta_of(r).await;
    drop(body);
    // The one delta is charged in the background as the stream is dropped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.set(OK);
    let chats = s.chats();
    let refused = e.raw(Method::POST, "/v1/query", Some(ask)).await;
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "one token received against one a minute: the next generation waits"
    );
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(s.chats(), chats, "nothing generated while over");
}

/// A tenant past its LLM token quota gets 429 with Retry-After before anything is generated;
/// every generation (the stand-in reports 43 tokens each) is charged when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_past_its_llm_token_quota_gets_429() {
    let s = stub().await;
    let Some(e) = env_with(openai(&[&s.url]), |c| {
        c.rate_limit.llm_tokens_per_minute = 40
    })
    .await
    else {
        return;
    };
    let ask = json!({ "collection": "docs", "query": "how far is the lamp visible?" });
    let (status, body) = e.call(Method::POST, "/v1/query", Some(ask.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 40);
    // The charge lands before the answer is complete, so the very next request sees it.
    let refused = e.raw(Method::POST, "/v1/query", Some(ask.clone())).await;
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "43 tokens against 40 a minute: the next generation waits"
    );
    let wait: u64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // 43 tokens against a tolerance of 39 at 1.5 s a token: about 6 s.
    assert!((1..=7).contains(&wait), "{wait}");
    let chats = s.chats.load(Ordering::SeqCst);
    let again = e.raw(Method::POST, "/v1/query", Some(ask.clone())).await;
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        s.chats.load(Ordering::SeqCst),
        chats,
        "nothing generated while over"
    );
    // Search needs no tokens and goes on.
    let (status, _) = e.call(Method::POST, "/v1/search", Some(ask)).await;
    assert_eq!(status, StatusCode::OK);
}
