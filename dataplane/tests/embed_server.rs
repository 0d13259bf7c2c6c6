//! `ragplane embed-server` as a real process on 127.0.0.1 (port 0), and the remote embedder
//! client against it: vectors equal the in-process embedder's, order holds under concurrency,
//! a full queue answers 429 with Retry-After, no CUDA driver means the CPU, and the client fails
//! over when an endpoint is closed or killed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on the first unexpected error.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ragplane::embed::device::{Device, DevicePlan};
use ragplane::embed::onnx::OnnxEmbedder;
use ragplane::embed::pooling::dot;
use ragplane::embed::remote::{decode_vectors, RemoteEmbedder};
use ragplane::embed::{EmbedError, Embedder};
use ragplane_config::{EmbeddingConfig, RemoteEmbedderConfig};

/// A running `ragplane embed-server` child process, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(model: &(PathBuf, PathBuf), extra: &[&str]) -> Self {
        Self::start_with_env(model, extra, &[])
    }

    /// [`Server::start`], with extra environment variables.
    fn start_with_env(model: &(PathBuf, PathBuf), extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ragplane"))
            .arg("embed-server")
            .args(["--listen", "127.0.0.1:0", "--log-filter", "warn"])
            .arg("--model-dir")
            .arg(&model.0)
            .arg("--ort-library")
            .arg(&model.1)
            .args(extra)
            .env_remove("RAGPLANE_CONFIG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ragplane starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("embed-server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self { child, url }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn embedded_total(&self) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("ragplane_embed_device_embeddings_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn embedding_config(model: &(PathBuf, PathBuf)) -> EmbeddingConfig {
    EmbeddingConfig {
        model_dir: Some(model.0.clone()),
        ort_library: Some(model.1.clone()),
        ..Default::default()
    }
}

fn sentences() -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Reference {
        sentences: Vec<String>,
    }
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reference_embeddings.json"
    ))
    .unwrap();
    serde_json::from_str::<Reference>(&text).unwrap().sentences
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

async fn native(url: &str, texts: &[String]) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/embed"))
        .json(&serde_json::json!({ "inputs": texts }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_vectors_equal_the_local_embedders() {
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let server = Server::start(&model, &[]);
    let local = OnnxEmbedder::start(&embedding_config(&model)).unwrap();
    let texts = sentences();
    let want = local.embed(texts.clone()).await.unwrap();
    let http = reqwest::Client::new();

    // OpenAI wire format, floats.
    let body: serde_json::Value = http
        .post(format!("{}/v1/embeddings", server.url))
        .json(&serde_json::json!({ "input": texts, "model": "all-MiniLM-L6-v2" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "all-MiniLM-L6-v2-int8");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > texts.len() as u64 * 2);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), texts.len());
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
        let v: Vec<f32> = serde_json::from_value(d["embedding"].clone()).unwrap();
        assert!(max_abs_diff(&v, &want[i]) < 1e-5, "sentence {i}");
    }

    // OpenAI wire format, base64 (what the openai Python client asks for).
    let body: serde_json::Value = http
        .post(format!("{}/v1/embeddings", server.url))
        .json(&serde_json::json!({ "input": texts[0], "encoding_format": "base64" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let one = local.embed(vec![texts[0].clone()]).await.unwrap();
    assert_eq!(decode_vectors(&raw, 1, 384).unwrap(), one);

    // Native format: f32 little-endian, and JSON arrays on request.
    let resp = native(&server.url, &texts).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ragplane-dimension"], "384");
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let got = decode_vectors(&resp.bytes().await.unwrap(), texts.len(), 384).unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(max_abs_diff(g, w) < 1e-5, "sentence {i}");
    }
    let json: Vec<Vec<f32>> = http
        .post(format!("{}/v1/embed", server.url))
        .header("accept", "application/json")
        .json(&serde_json::json!({ "inputs": texts }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json, got);

    // Bad input is a 4xx in the shared error shape, not a 500.
    let resp = http
        .post(format!("{}/v1/embeddings", server.url))
        .json(&serde_json::json!({ "input": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "invalid_request");
    for path in ["/healthz", "/readyz", "/v1/models"] {
        let r = reqwest::get(format!("{}{path}", server.url)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (name, label) in [
        ("ragplane_embed_device_sessions{", "device="),
        ("ragplane_embed_device_batch_size_bucket{", "device="),
        ("ragplane_embed_queue_wait_seconds_bucket{", "class="),
        ("ragplane_embed_embeddings_per_second ", ""),
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(name) && l.contains(label)),
            "{name}…{label} missing from /metrics"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_their_own_vectors_in_order() {
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let server = Arc::new(Server::start(&model, &[]));
    let local = OnnxEmbedder::start(&embedding_config(&model)).unwrap();
    let texts = sentences();
    let mut want = Vec::new();
    for t in &texts {
        want.push(local.embed(vec![t.clone()]).await.unwrap().remove(0));
    }
    let mut tasks = Vec::new();
    for round in 0..12 {
        for i in 0..texts.len() {
            // Requests of one to three texts, in rotating order, so batches mix them.
            let picks: Vec<usize> = (0..=(round % 3))
                .map(|k| (i + k * 3) % texts.len())
                .collect();
            let batch: Vec<String> = picks.iter().map(|&p| texts[p].clone()).collect();
            let url = server.url.clone();
            tasks.push(tokio::spawn(async move {
                let resp = native(&url, &batch).await;
                assert_eq!(resp.status(), 200);
                let bytes = resp.bytes().await.unwrap();
                (picks, decode_vectors(&bytes, batch.len(), 384).unwrap())
            }));
        }
    }
    for t in tasks {
        let (picks, got) = t.await.unwrap();
        for (p, v) in picks.iter().zip(&got) {
            assert!(
                dot(v, &want[*p]) > 0.99999,
                "a request for sentence {p} got another text's vector"
            );
        }
    }
}

/// A request past `embed_server.request_timeout_secs` and a method a path does not take get
/// the JSON error body every error has, the first with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_and_a_wrong_method_get_json_errors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let server = Server::start_with_env(
        &model,
        &[],
        &[("RAGPLANE__EMBED_SERVER__REQUEST_TIMEOUT_SECS", "1")],
    );
    // A body that trickles in: half of it, then nothing.
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        format!(
            "POST /v1/embeddings HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: 100\r\nconnection: close\r\n\r\n{{\"input\": "
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut answer))
        .await
        .expect("answered within the time limit and a margin")
        .unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{answer}");
    assert!(head.contains("retry-after: 1"), "{answer}");
    let err: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(err["type"], "unavailable", "{err}");
    assert!(err["request_id"].is_string(), "{err}");

    let wrong = reqwest::get(format!("{}/v1/embeddings", server.url))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "POST");
    let err: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(err["type"], "method_not_allowed", "{err}");
    assert!(err["error"].as_str().unwrap().contains("GET"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after() {
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let server = Arc::new(Server::start(&model, &["--queue-capacity", "1"]));
    let long = "word ".repeat(200);
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let url = server.url.clone();
            let texts = vec![format!("{long} {i}"); 8];
            tokio::spawn(async move {
                let r = native(&url, &texts).await;
                let retry_after = r.headers().get("retry-after").cloned();
                let status = r.status().as_u16();
                let body = r.bytes().await.unwrap();
                (status, retry_after, body)
            })
        })
        .collect();
    let (mut ok, mut overloaded) = (0, 0);
    let all = tokio::time::timeout(Duration::from_secs(300), futures::future::join_all(tasks))
        .await
        .expect("an overloaded server must answer, not hang");
    for t in all {
        let (status, retry_after, body) = t.unwrap();
        match status {
            200 => {
                assert_eq!(body.len(), 8 * 384 * 4);
                ok += 1;
            }
            429 => {
                assert_eq!(retry_after.unwrap(), "1");
                let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(err["type"], "overloaded");
                overloaded += 1;
            }
            other => panic!(
                "unexpected status {other}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    assert!(
        overloaded > 0,
        "48 concurrent requests against a queue of 1 must overflow"
    );
    assert!(ok > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_usable_gpu_the_server_runs_on_the_cpu() {
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    // The CUDA execution provider cannot be registered with this (CPU) ONNX Runtime: a GPU
    // session fails with an error, and the embedder falls back to the CPU instead of panicking.
    let cfg = embedding_config(&model);
    let gpu = DevicePlan {
        devices: vec![Device::Cuda {
            ordinal: 0,
            name: "test".into(),
        }],
        cpu_reason: None,
    };
    let (embedder, used) = OnnxEmbedder::start_on(&cfg, &gpu, false).unwrap();
    assert_eq!(used.devices, vec![Device::Cpu]);
    let reason = used.cpu_reason.unwrap();
    assert!(reason.contains("CUDA execution provider"), "{reason}");
    assert_eq!(
        embedder
            .embed(vec!["still works".into()])
            .await
            .unwrap()
            .len(),
        1
    );
    let err = OnnxEmbedder::start_on(&cfg, &gpu, true)
        .err()
        .expect("require_gpu refuses");
    assert!(matches!(err, EmbedError::Load(_)), "{err}");

    if ragplane_gpu::driver_present() {
        eprintln!("SKIPPED: missing-driver half: this machine has a CUDA driver");
        return;
    }
    // No libcuda.so here: auto-detection picks the CPU and says why.
    let server = Server::start(&model, &[]);
    let info: serde_json::Value = reqwest::get(format!("{}/info", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["devices"], serde_json::json!(["cpu"]));
    assert!(
        info["cpu_reason"].as_str().unwrap().contains("libcuda.so"),
        "{info}"
    );
    // Asking for a GPU by ordinal falls back as well; requiring one fails start-up cleanly.
    let server = Server::start(&model, &["--devices", "0"]);
    let r = native(&server.url, &["x".to_string()]).await;
    assert_eq!(r.status(), 200);
    let out = Command::new(env!("CARGO_BIN_EXE_ragplane"))
        .args(["embed-server", "--listen", "127.0.0.1:0", "--require-gpu"])
        .arg("--model-dir")
        .arg(&model.0)
        .arg("--ort-library")
        .arg(&model.1)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("require_gpu") && stderr.contains("libcuda.so"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn remote(endpoints: Vec<String>) -> RemoteEmbedderConfig {
    RemoteEmbedderConfig {
        endpoints,
        max_attempts: 3,
        cooldown_ms: 60_000,
        ..Default::default()
    }
}

/// The client's OpenAI protocol (what text-embeddings-inference serves too) gets the same
/// vectors, in order, as the native one; a dimension that does not match is an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_client_speaks_the_openai_protocol() {
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let server = Server::start(&model, &[]);
    let embedding = embedding_config(&model);
    let local = OnnxEmbedder::start(&embedding).unwrap();
    let texts = sentences();
    let want = local.embed(texts.clone()).await.unwrap();
    let openai = RemoteEmbedderConfig {
        protocol: ragplane_config::RemoteProtocol::Openai,
        ..remote(vec![server.url.clone()])
    };
    let client = RemoteEmbedder::new(&openai, &embedding).unwrap();
    let got = client.embed(texts.clone()).await.unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(max_abs_diff(g, w) < 1e-5, "sentence {i}");
    }
    let wrong = EmbeddingConfig {
        dimension: 768,
        ..embedding.clone()
    };
    let err = RemoteEmbedder::new(&openai, &wrong)
        .unwrap()
        .embed(vec!["x".into()])
        .await
        .unwrap_err();
    assert!(matches!(err, EmbedError::RemoteRejected(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("dimension 384") && message.contains("768"),
        "{message}"
    );
}

/// A request the server refuses (here: more texts than it takes at once) is a bad gateway
/// (502) naming the server's answer, not an internal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_server_refuses_is_a_bad_gateway() {
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let server = Server::start_with_env(
        &model,
        &[],
        &[("RAGPLANE__EMBED_SERVER__MAX_INPUTS_PER_REQUEST", "2")],
    );
    let embedding = embedding_config(&model);
    let client = RemoteEmbedder::new(&remote(vec![server.url.clone()]), &embedding).unwrap();
    let two = client.embed(sentences()[..2].to_vec()).await;
    assert_eq!(two.unwrap().len(), 2, "within the server's limit");
    let err = client.embed(sentences()[..3].to_vec()).await.unwrap_err();
    assert!(matches!(err, EmbedError::RemoteRejected(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("413") && message.contains("max_inputs_per_request"),
        "{message}"
    );
    let api: ragplane::error::Error = err.into();
    let (status, kind, retry_after) = ragplane::api::error::classify(&api);
    assert_eq!(
        (status.as_u16(), kind, retry_after),
        (502, "bad_gateway", None)
    );
}

/// A port nothing listens on: bound, then closed.
fn closed_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_client_balances_and_fails_over() {
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let mut a = Server::start(&model, &[]);
    let mut b = Server::start(&model, &[]);
    let cfg = embedding_config(&model);
    let local = OnnxEmbedder::start(&cfg).unwrap();
    let client = RemoteEmbedder::new(
        &remote(vec![closed_endpoint(), a.url.clone(), b.url.clone()]),
        &cfg,
    )
    .unwrap();
    let texts = sentences();
    for t in &texts {
        let got = client.embed(vec![t.clone()]).await.unwrap();
        let want = local.embed(vec![t.clone()]).await.unwrap();
        assert!(max_abs_diff(&got[0], &want[0]) < 1e-5);
    }
    // Sequential calls tie on outstanding requests; ties rotate, so both live servers served.
    let (from_a, from_b) = (a.embedded_total().await, b.embedded_total().await);
    assert!(from_a > 0 && from_b > 0, "a {from_a}, b {from_b}");
    assert_eq!(from_a + from_b, texts.len() as u64);
    assert_eq!(client.outstanding(), vec![0, 0, 0]);

    // Kill one: every call still succeeds, on the other.
    a.kill();
    let got = client.embed(texts.clone()).await.unwrap();
    let want = local.embed(texts.clone()).await.unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!(max_abs_diff(g, w) < 1e-5);
    }
    // A fresh client that meets the dead endpoints first still gets through within its attempts.
    let fresh = RemoteEmbedder::new(
        &remote(vec![a.url.clone(), closed_endpoint(), b.url.clone()]),
        &cfg,
    )
    .unwrap();
    for t in texts.iter().take(4) {
        fresh.embed(vec![t.clone()]).await.unwrap();
    }
    // With none left, the error is "unavailable" (503), not a hang or a panic.
    b.kill();
    let err = client.embed(vec!["nobody home".into()]).await.unwrap_err();
    assert!(matches!(err, EmbedError::RemoteUnavailable(_)), "{err}");
    let api: ragplane::error::Error = err.into();
    assert!(matches!(api, ragplane::error::Error::Unavailable { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_selects_the_remote_embedder_with_the_cache_in_front() {
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let mut server = Server::start(&model, &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = ragplane::testing::config_in(dir.path(), &model, "admin-key-for-tests");
    config.workers.enabled = false;
    config.embedding.remote = Some(remote(vec![server.url.clone()]));
    let app = ragplane::app::App::build(config).await.unwrap();
    let first = app
        .embedder
        .embed(vec!["cached text".into()])
        .await
        .unwrap();
    assert_eq!(
        server.embedded_total().await,
        1,
        "the remote server embedded it"
    );
    server.kill();
    // Seen before: answered by the cache although the only server is gone.
    let again = app
        .embedder
        .embed(vec!["cached text".into()])
        .await
        .unwrap();
    assert_eq!(first, again);
    let err = app
        .embedder
        .embed(vec!["new text".into()])
        .await
        .unwrap_err();
    assert!(matches!(err, EmbedError::RemoteUnavailable(_)), "{err}");
}
