//! What the data plane traces, recorded in memory (`ragplane_telemetry::testing`): an upload's
//! trace reaches the worker across the queue, a search's trace holds the embedding and the
//! index query, an answer's holds the generation (against the test Ollama, when it runs), and
//! an incoming `traceparent` and `x-request-id` are honoured. One test per binary: the
//! recorder is the process's only subscriber.
#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use ragplane::app::App;
use ragplane_config::{GenerationConfig, GeneratorEndpoint};
use ragplane_telemetry::testing::{record, RecordedSpan, Recorder};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const ADMIN: &str = "rp_test_admin_key_0123456789";

struct Env {
    _dir: tempfile::TempDir,
    router: axum::Router,
    shutdown: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Env {
    /// Sends a request with an admin key and the given `traceparent`; returns the status, the
    /// `x-request-id` header and the body (SSE text as a string).
    async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        traceparent: &str,
        request_id: Option<&str>,
    ) -> (StatusCode, String, Value) {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
            .header("traceparent", traceparent);
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
        let r = self
            .router
            .clone()
            .oneshot(b.body(body).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, id, v)
    }
}

/// A `traceparent` of trace `n`, sampled, from a caller's span `n`.
fn traceparent(n: u8) -> (String, String, String) {
    let trace = format!("{n:02x}").repeat(16);
    let span = format!("{:02x}", n + 0x40).repeat(8);
    (format!("00-{trace}-{span}-01"), trace, span)
}

fn named<'a>(spans: &'a [RecordedSpan], name: &str) -> Vec<&'a RecordedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [RecordedSpan], name: &str) -> &'a RecordedSpan {
    let found = named(spans, name);
    assert!(
        !found.is_empty(),
        "no {name:?} span in {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    found[0]
}

/// Waits until trace `trace` holds a span named `name`.
async fn wait_for(rec: &Recorder, trace: &str, name: &str) -> Vec<RecordedSpan> {
    for _ in 0..600 {
        let spans = rec.trace(trace);
        if spans.iter().any(|s| s.name == name) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "trace {trace} never got a {name:?} span: {:?}",
        rec.trace(trace)
    );
}

/// The test Ollama, when it runs.
fn llm() -> Option<GenerationConfig> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (url, model) = (
        get("RAGPLANE_TEST_OLLAMA_URL"),
        get("RAGPLANE_TEST_LLM_MODEL"),
    );
    let (Some(url), Some(model)) = (url, model) else {
        let why = "RAGPLANE_TEST_OLLAMA_URL and RAGPLANE_TEST_LLM_MODEL are not set; run `bash scripts/services/llm.sh start` and source its env.sh";
        assert!(
            std::env::var("RAGPLANE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "{why}"
        );
        eprintln!("SKIPPED (the generation span): {why}");
        return None;
    };
    let mut c = GeneratorEndpoint::new(&url, &model);
    c.max_tokens = 8;
    c.timeout_secs = 120;
    Some(GenerationConfig::Ollama(c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_searches_and_answers_are_traced_end_to_end() {
    let rec = record();
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = ragplane::testing::config_in(dir.path(), &model, ADMIN);
    let generation = llm();
    if let Some(g) = &generation {
        config.generation = g.clone();
    }
    let app = Arc::new(App::build(config).await.expect("app builds"));
    app.bootstrap_admin_key().await.unwrap();
    let shutdown = CancellationToken::new();
    std::mem::forget(ragplane::worker::spawn_workers(
        app.clone(),
        1,
        shutdown.clone(),
    ));
    let e = Env {
        _dir: dir,
        router: ragplane::api::router(app),
        shutdown,
    };
    let (tp0, _, _) = traceparent(0x10);
    let (status, _, _) = e
        .call(
            Method::POST,
            "/v1/collections",
            Some(json!({ "name": "docs" })),
            &tp0,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // An upload: the worker's spans join the caller's trace, across the queue.
    let (tp, trace, caller) = traceparent(0x11);
    let (status, _, up) = e
        .call(
            Method::POST,
            "/v1/collections/docs/documents",
            Some(json!({ "title": "light", "text": "The lamp of Skerry Point is visible from 22 nautical miles." })),
            &tp,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    let spans = wait_for(&rec, &trace, "ingest").await;
    let http = one(&spans, "POST /v1/collections/{collection}/documents");
    assert_eq!(
        http.parent_span_id, caller,
        "the caller's span is the parent"
    );
    assert_eq!(
        http.attr("http.route"),
        Some("/v1/collections/{collection}/documents")
    );
    assert_eq!(http.attr("http.response.status_code"), Some("202"));
    let job = one(&spans, "job");
    assert!(
        spans.iter().any(|s| s.span_id == job.parent_span_id),
        "the job's parent is a span of the upload's trace: {spans:#?}"
    );
    assert_eq!(job.attr("queue"), Some("documents"));
    assert_eq!(job.attr("trace_id"), None, "for the log lines only");
    let ingest = one(&spans, "ingest");
    assert_eq!(ingest.parent_span_id, job.span_id);
    for name in ["parse", "chunk", "embed", "vector.upsert"] {
        let s = one(&spans, name);
        assert_eq!(s.parent_span_id, ingest.span_id, "{name} is under ingest");
    }
    assert_eq!(one(&spans, "embed").attr("class"), Some("bulk"));
    assert_eq!(
        one(&spans, "vector.upsert").attr("backend"),
        Some("embedded")
    );
    assert_eq!(one(&spans, "ingest").attr("chunks"), Some("1"));

    // A search: its trace holds the query's embedding and the index query.
    let (tp, trace, caller) = traceparent(0x12);
    let (status, id, hits) = e
        .call(
            Method::POST,
            "/v1/search",
            Some(json!({ "collection": "docs", "query": "How far is the lamp visible?", "mode": "hybrid" })),
            &tp,
            Some("trace-test-search"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{hits}");
    assert_eq!(id, "trace-test-search");
    let spans = wait_for(&rec, &trace, "POST /v1/search").await;
    let http = one(&spans, "POST /v1/search");
    assert_eq!(http.parent_span_id, caller);
    assert_eq!(http.attr("request_id"), Some("trace-test-search"));
    // The log lines' `trace_id` is the span's own trace id: not exported a second time.
    assert_eq!(http.trace_id, trace);
    assert_eq!(http.attr("trace_id"), None);
    // The query log line stays in the log: its fields are on these spans already.
    assert!(
        spans.iter().all(|s| s.events.is_empty()),
        "no info line is attached to a span: {spans:#?}"
    );
    let search = one(&spans, "search");
    assert_eq!(search.parent_span_id, http.span_id);
    assert_eq!(search.attr("mode"), Some("hybrid"));
    assert_eq!(search.attr("cache"), Some("miss"));
    assert_eq!(search.attr("hits"), Some("1"));
    let embed = one(&spans, "embed");
    assert_eq!(embed.attr("class"), Some("interactive"));
    assert_eq!(embed.attr("texts"), Some("1"));
    assert!(embed.attr("queue_wait_ms").is_some(), "{embed:?}");
    let index = one(&spans, "vector.search");
    assert_eq!(index.parent_span_id, search.span_id);
    assert_eq!(index.attr("backend"), Some("embedded"));
    assert_eq!(index.attr("mode"), Some("hybrid"));
    for name in ["vector.dense", "vector.keyword", "fusion"] {
        assert_eq!(one(&spans, name).parent_span_id, index.span_id, "{name}");
    }
    // The latency histogram's bucket of this request names its trace as exemplar.
    let metrics = ragplane::metrics::render();
    let exemplar = format!("# {{trace_id=\"{trace}\"}}");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("ragplane_http_request_duration_seconds_bucket{")
                && l.contains("route=\"/v1/search\"")
                && l.contains(&exemplar)
        ),
        "no exemplar of trace {trace} on the /v1/search latency:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("/v1/search"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.ends_with("# EOF\n"), "OpenMetrics exposition");
    // The same search again is served by the result cache, and says so.
    let (tp, trace, _) = traceparent(0x13);
    e.call(
        Method::POST,
        "/v1/search",
        Some(json!({ "collection": "docs", "query": "How far is the lamp visible?", "mode": "hybrid" })),
        &tp,
        None,
    )
    .await;
    // A hit has no search span: the request's span says so.
    let spans = wait_for(&rec, &trace, "POST /v1/search").await;
    assert_eq!(one(&spans, "POST /v1/search").attr("cache"), Some("hit"));
    assert!(named(&spans, "search").is_empty(), "{spans:#?}");
    assert!(named(&spans, "vector.search").is_empty());

    // Probes and scrapes are not traced at `info`, even within a caller's trace.
    let (tp, trace, _) = traceparent(0x15);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _, _) = e.call(Method::GET, path, None, &tp, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (status, _, _) = e
        .call(Method::GET, "/v1/collections", None, &tp, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let spans = wait_for(&rec, &trace, "GET /v1/collections").await;
    assert_eq!(
        spans.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["GET /v1/collections"],
        "only the API request of the trace has a span"
    );

    // An answer: the generation span, with its endpoint, first-token time and token counts.
    let Some(GenerationConfig::Ollama(g)) = generation else {
        return;
    };
    let (tp, trace, _) = traceparent(0x14);
    let (status, _, body) = e
        .call(
            Method::POST,
            "/v1/query",
            Some(json!({ "collection": "docs", "query": "How far is the lamp visible?", "stream": true })),
            &tp,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let spans = wait_for(&rec, &trace, "llm.generate").await;
    let http = one(&spans, "POST /v1/query");
    let llm = one(&spans, "llm.generate");
    assert!(
        spans.iter().any(|s| s.span_id == llm.parent_span_id),
        "{spans:#?}"
    );
    assert_eq!(llm.attr("endpoint"), Some(g.url.as_str()));
    assert!(llm.attr("ttft_ms").is_some(), "{llm:?}");
    let tokens: u64 = llm.attr("completion_tokens").unwrap().parse().unwrap();
    assert!((1..=8).contains(&tokens), "{llm:?}");
    assert!(!llm.error && !http.error);
    assert!(!named(&spans, "search").is_empty(), "{spans:#?}");
}
