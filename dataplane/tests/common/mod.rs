//! Helpers of the in-process HTTP tests: an application on the embedded backends with the real
//! model and its workers, and requests sent through the router with `oneshot`.

#![allow(dead_code, clippy::unwrap_used)] // Each test file uses some of them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use ragplane::app::App;
use ragplane_config::Config;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub const ADMIN: &str = "rp_test_admin_key_0123456789";

pub struct Env {
    pub _dir: tempfile::TempDir,
    pub app: Arc<App>,
    pub router: Router,
    pub shutdown: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn env(tweak: impl FnOnce(&mut Config)) -> Option<Env> {
    let model = ragplane::testing::model_files()?;
    let dir = tempfile::tempdir().unwrap();
    let mut config = ragplane::testing::config_in(dir.path(), &model, ADMIN);
    tweak(&mut config);
    let app = Arc::new(App::build(config).await.expect("app builds"));
    app.bootstrap_admin_key().await.unwrap();
    let shutdown = CancellationToken::new();
    let _workers = ragplane::worker::spawn_workers(app.clone(), 2, shutdown.clone());
    let router = ragplane::api::router(app.clone());
    // The JoinSet is detached: the workers stop on `shutdown`.
    std::mem::forget(_workers);
    Some(Env {
        _dir: dir,
        app,
        router,
        shutdown,
    })
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

pub async fn send(router: &Router, req: Request<Body>) -> Resp {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Resp {
        status,
        headers,
        body,
    }
}

pub fn req(method: Method, uri: &str, key: Option<&str>, body: Option<Value>) -> Request<Body> {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| (header::AUTHORIZATION.as_str(), a))
        .into_iter()
        .collect();
    req_with(method, uri, &headers, body)
}

/// A request with these headers and, when given, a JSON body.
pub fn req_with(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        b = b.header(*name, *value);
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

/// A POST of `body` as `content_type`, with API key `key`.
pub fn post_raw(uri: &str, key: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

pub async fn create_collection(router: &Router, key: &str, name: &str) -> Resp {
    call(
        router,
        Method::POST,
        "/v1/collections",
        key,
        Some(json!({ "name": name })),
    )
    .await
}

pub async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    key: &str,
    body: Option<Value>,
) -> Resp {
    send(router, req(method, uri, Some(key), body)).await
}

pub async fn wait_status(
    router: &Router,
    key: &str,
    collection: &str,
    id: &str,
    want: &str,
) -> Value {
    let uri = format!("/v1/collections/{collection}/documents/{id}");
    wait_for(router, key, &uri, want, "failed", Duration::from_millis(50)).await
}

/// Waits for job `job` to reach status `want` (a document turns `indexed` a moment before its
/// job is marked done); panics if it dies instead.
pub async fn wait_job(router: &Router, key: &str, job: &str, want: &str) -> Value {
    let uri = format!("/v1/jobs/{job}");
    wait_for(router, key, &uri, want, "dead", Duration::from_millis(100)).await
}

/// Reads `uri` every `every`, up to 600 times, until its `status` is `want`; panics when it
/// is `failed` (the resource's failure status) and that is not the one wanted.
async fn wait_for(
    router: &Router,
    key: &str,
    uri: &str,
    want: &str,
    failed: &str,
    every: Duration,
) -> Value {
    for _ in 0..600 {
        let r = call(router, Method::GET, uri, key, None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        if r.body["status"] == want {
            return r.body;
        }
        assert!(
            r.body["status"] != failed || want == failed,
            "{uri} is {failed} unexpectedly: {:?}",
            r.body
        );
        tokio::time::sleep(every).await;
    }
    panic!("{uri} never became {want}");
}

pub async fn upload_text(
    router: &Router,
    key: &str,
    collection: &str,
    text: &str,
    title: &str,
) -> (String, String) {
    let r = call(
        router,
        Method::POST,
        &format!("/v1/collections/{collection}/documents"),
        key,
        Some(json!({ "text": text, "title": title, "metadata": { "topic": title } })),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    (
        r.body["document"]["id"].as_str().unwrap().to_string(),
        r.body["job_id"].as_str().unwrap().to_string(),
    )
}
