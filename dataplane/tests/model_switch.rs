//! Switching a collection to an embedding model of another dimension, with two real models: the
//! test LLM server's all-MiniLM-L6-v2 (Ollama, its vectors shortened to 256 dimensions with
//! Ollama's `dimensions`) and the in-process int8 ONNX export (384 dimensions). The server is
//! stopped and started again on the same data directory with the new model configured and the
//! old one as `[embedding.previous]`; every search before, during and after the switch finds
//! every document.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::Router;
use ragplane::app::App;
use ragplane_config::{Config, EmbeddingConfig, OllamaEmbeddingConfig};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

mod common;

use common::*;

/// The old model: Ollama's all-MiniLM-L6-v2 at 256 dimensions, or `None` (with the reason
/// printed) without the test LLM server.
fn old_model() -> Option<EmbeddingConfig> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(url), Some(model)) = (
        get("RAGPLANE_TEST_OLLAMA_URL"),
        get("RAGPLANE_TEST_EMBED_MODEL"),
    ) else {
        let why = "RAGPLANE_TEST_OLLAMA_URL and RAGPLANE_TEST_EMBED_MODEL are not set; run \
                   `bash scripts/services/llm.sh start` and source target/services/env.sh";
        assert!(
            std::env::var("RAGPLANE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "{why}"
        );
        eprintln!("SKIPPED: model switch: {why}");
        return None;
    };
    Some(EmbeddingConfig {
        dimension: 256,
        ollama: Some(OllamaEmbeddingConfig {
            url,
            model,
            dimension: 256,
            max_batch: 16,
            timeout_secs: 60,
        }),
        ..Default::default()
    })
}

/// One server on `dir`: the application, its router, and its workers when `workers`.
struct Server {
    app: Arc<App>,
    router: Router,
    shutdown: CancellationToken,
    workers: Option<ragplane::worker::Workers>,
}

impl Server {
    async fn start(config: Config, workers: bool) -> Self {
        let app = Arc::new(App::build(config).await.expect("app builds"));
        app.bootstrap_admin_key().await.unwrap();
        // As `ragplane serve` does before its workers start.
        ragplane::worker::recover(&app, true).await.unwrap();
        let shutdown = CancellationToken::new();
        let mut s = Self {
            router: ragplane::api::router(app.clone()),
            app,
            shutdown,
            workers: None,
        };
        if workers {
            s.start_workers();
        }
        s
    }

    fn start_workers(&mut self) {
        self.workers = Some(ragplane::worker::spawn_workers(
            self.app.clone(),
            2,
            self.shutdown.clone(),
        ));
    }

    /// Stops the workers and lets go of the data directory.
    async fn stop(self) {
        self.shutdown.cancel();
        if let Some(w) = self.workers {
            w.drain(&self.app, Duration::from_secs(10)).await;
        }
        drop(self.router);
        let mut app = self.app;
        for _ in 0..200 {
            match Arc::try_unwrap(app) {
                Ok(app) => {
                    drop(app);
                    return;
                }
                Err(still) => app = still,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the application is still in use after its workers stopped");
    }
}

fn config(dir: &Path, model: &(std::path::PathBuf, std::path::PathBuf)) -> Config {
    let mut c = ragplane::testing::config_in(dir, model, ADMIN);
    // Searches must do their whole work each time, not answer from the result cache.
    c.cache.results = false;
    c
}

const DOCS: [(&str, &str, &str); 3] = [
    (
        "otters",
        "Sea otters hold hands while they sleep so that they do not drift apart.",
        "why do otters hold hands when sleeping?",
    ),
    (
        "lighthouse",
        "The lamp of Skerry Point lighthouse is visible from 22 nautical miles at sea.",
        "how far can the lighthouse lamp be seen?",
    ),
    (
        "sourdough",
        "Sourdough bread rises with a starter of flour, water and wild yeast.",
        "what makes sourdough bread rise?",
    ),
];

/// Each document's question finds it first, in dense and in hybrid mode.
async fn every_document_is_found(r: &Router, ids: &[(String, &str)], when: &str) {
    for (id, question) in ids {
        for mode in ["dense", "hybrid"] {
            let s = call(
                r,
                Method::POST,
                "/v1/search",
                ADMIN,
                Some(json!({ "collection": "docs", "query": question, "mode": mode, "top_k": 3 })),
            )
            .await;
            assert_eq!(s.status, StatusCode::OK, "{when}, {mode}: {:?}", s.body);
            let top = &s.body["hits"][0];
            assert_eq!(
                top["document_id"],
                id.as_str(),
                "{when}, {mode}, {question:?}: {:?}",
                s.body
            );
            // The hit's provenance is that of the chunk found, in the generation searched.
            let p = &top["provenance"];
            let chars = top["text"].as_str().unwrap().chars().count() as u64;
            assert_eq!(
                p["end"].as_u64().unwrap() - p["start"].as_u64().unwrap(),
                chars,
                "{when}, {mode}: {top}"
            );
        }
    }
}

async fn collection(r: &Router) -> Value {
    let c = call(r, Method::GET, "/v1/collections/docs", ADMIN, None).await;
    assert_eq!(c.status, StatusCode::OK, "{:?}", c.body);
    c.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_switches_to_a_model_of_another_dimension_without_a_window() {
    switch_without_a_window(|_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_on_postgresql_switches_models_without_a_window() {
    let Some(url) = ragplane::testing::fresh_postgres_database("model_switch")
        .await
        .unwrap()
    else {
        return;
    };
    switch_without_a_window(move |c| {
        c.metadata = ragplane_config::MetadataConfig::Postgres(
            ragplane_config::PostgresConfig::new(url.clone()),
        );
        c.vectors = ragplane_config::VectorIndexConfig::Postgres(
            ragplane_config::PostgresIndexConfig::new(url.clone()),
        );
    })
    .await;
}

/// The switch, with the stores `backend` configures.
async fn switch_without_a_window(backend: impl Fn(&mut Config)) {
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let Some(old) = old_model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = |dir: &Path, model: &(std::path::PathBuf, std::path::PathBuf)| {
        let mut c = config(dir, model);
        backend(&mut c);
        c
    };

    // Indexed with the old model, in chunks of 8 tokens (the new setting cuts each document
    // into one chunk, so the two generations' chunks differ).
    let mut cfg = config(dir.path(), &model);
    cfg.chunking.chunk_tokens = 8;
    cfg.chunking.overlap_tokens = 2;
    cfg.embedding = EmbeddingConfig {
        model_dir: Some(model.0.clone()),
        ort_library: Some(model.1.clone()),
        ..old.clone()
    };
    let s = Server::start(cfg, true).await;
    let c = create_collection(&s.router, ADMIN, "docs").await;
    assert_eq!(c.status, StatusCode::CREATED, "{:?}", c.body);
    assert_eq!(c.body["dimension"], 256);
    let old_name = old.ollama.as_ref().unwrap().model.clone();
    assert_eq!(c.body["embedding_model"], old_name.as_str());
    let mut ids = Vec::new();
    for (title, text, question) in DOCS {
        let (id, _) = upload_text(&s.router, ADMIN, "docs", text, title).await;
        wait_status(&s.router, ADMIN, "docs", &id, "indexed").await;
        ids.push((id, question));
    }
    every_document_is_found(&s.router, &ids, "with the old model").await;
    s.stop().await;

    // The new model configured, the old one as [embedding.previous]; no workers yet, so the
    // switch stays under way while it is looked at.
    let new_config = || {
        let mut cfg = config(dir.path(), &model);
        cfg.embedding.previous = Some(Box::new(old.clone()));
        cfg
    };
    let s = Server::start(new_config(), false).await;
    let r = s.router.clone();
    every_document_is_found(&r, &ids, "new model configured, before the reindex").await;
    let old_points = collection(&r).await["points"].as_u64().unwrap();
    assert!(old_points > 3, "{old_points} chunks of 8 tokens");
    let re = call(
        &r,
        Method::POST,
        "/v1/collections/docs/reindex",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(re.status, StatusCode::ACCEPTED, "{:?}", re.body);
    assert_eq!(re.body["documents"].as_array().unwrap().len(), 3);
    let c = collection(&r).await;
    assert_eq!(c["dimension"], 256, "{c:?}");
    assert_eq!(c["generation"], 0, "{c:?}");
    assert_eq!(c["next_model"], "all-MiniLM-L6-v2-int8", "{c:?}");
    assert_eq!(c["next_dimension"], 384, "{c:?}");
    assert_eq!(c["points"], old_points, "{c:?}");
    assert_eq!(c["next_points"], 0, "{c:?}");
    every_document_is_found(&r, &ids, "switch queued").await;

    // A worker still on the old model, as during a rollout, leaves a job of the switch to a
    // worker with the new model: the document is not failed and the attempt not counted.
    drop(r);
    s.stop().await;
    let mut outdated = config(dir.path(), &model);
    outdated.embedding = EmbeddingConfig {
        model_dir: Some(model.0.clone()),
        ort_library: Some(model.1.clone()),
        ..old.clone()
    };
    let outdated = Server::start(outdated, false).await;
    let job = outdated
        .app
        .queue
        .claim(ragplane::queue::DOCUMENTS, "outdated")
        .await
        .unwrap()
        .expect("a job of the switch");
    assert_eq!(job.attempts, 1);
    ragplane::worker::run_job(&outdated.app, job.clone(), "outdated").await;
    let left = outdated.app.queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!(left.status, ragplane::queue::JobStatus::Queued, "{left:?}");
    assert_eq!(left.attempts, 0, "{left:?}");
    let reason = left.last_error.unwrap_or_default();
    assert!(
        reason.contains("the model it is switching from; left to a worker with the new model"),
        "{reason}"
    );
    let doc = job.document_id.unwrap();
    let d = outdated.app.metadata.document(&doc).await.unwrap().unwrap();
    assert_eq!(
        d.status,
        ragplane::metadata::DocumentStatus::Queued,
        "{d:?}"
    );
    outdated.stop().await;
    let mut s = Server::start(new_config(), false).await;
    let r = s.router.clone();
    // A document uploaded meanwhile is accepted. It goes to the generation being built, and,
    // since this server has the model of the current one as [embedding.previous], to the
    // current one too: searches find it before the switch completes. (Its job is run here,
    // ahead of the switch's; the workers run it again later, which is harmless.)
    let (late, _) = upload_text(
        &r,
        ADMIN,
        "docs",
        "Honeybees dance to tell each other where the flowers are.",
        "bees",
    )
    .await;
    let chunks = ragplane::ingest::pipeline::ingest_document(&s.app, &late, None)
        .await
        .unwrap();
    assert_eq!(chunks, 1);
    let c = collection(&r).await;
    assert_eq!(
        c["next_model"], "all-MiniLM-L6-v2-int8",
        "still switching: {c:?}"
    );
    assert_eq!(c["points"], old_points + 1, "{c:?}");
    assert_eq!(c["next_points"], 1, "{c:?}");
    let bees = "how do bees tell where flowers are?";
    every_document_is_found(&r, &[(late.clone(), bees)], "an upload during the switch").await;

    // The workers build the new generation while `ragplane reindex` (the CLI, over HTTP)
    // waits for it; every search meanwhile still finds every document.
    s.start_workers();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = axum::serve(
        listener,
        r.clone()
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(s.shutdown.clone().cancelled_owned());
    tokio::spawn(async move { serve.await.unwrap() });
    let mut cli = tokio::process::Command::new(ragplane::testing::ragplane_binary())
        .args([
            "reindex",
            "--collection",
            "docs",
            "--url",
            &url,
            "--api-key",
            ADMIN,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut searched_during = 0;
    while cli.try_wait().unwrap().is_none() {
        every_document_is_found(&r, &ids, "during the switch").await;
        searched_during += 1;
        assert!(searched_during < 600, "ragplane reindex never returned");
    }
    eprintln!("searched every document {searched_during} time(s) during the switch");
    let out = cli.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .contains("docs is indexed with all-MiniLM-L6-v2-int8 (384 dimensions, generation 1)"),
        "{stdout}"
    );
    let switched = collection(&r).await;
    assert_eq!(switched["dimension"], 384, "{switched:?}");
    assert_eq!(
        switched["embedding_model"], "all-MiniLM-L6-v2-int8",
        "{switched:?}"
    );
    assert!(switched.get("next_model").is_none(), "{switched:?}");
    assert!(switched.get("next_points").is_none(), "{switched:?}");
    assert_eq!(switched["points"], 4, "{switched:?}");
    wait_status(&r, ADMIN, "docs", &late, "indexed").await;
    ids.push((late, bees));
    every_document_is_found(&r, &ids, "after the switch").await;

    // The old generation's points go once searches that began before the switch are done.
    let tenant = s.app.metadata.document(&ids[0].0).await.unwrap().unwrap();
    let old_key = ragplane::vectors::CollectionKey {
        tenant: tenant.tenant_id.clone(),
        collection: tenant.collection_id.clone(),
    };
    let mut gone = false;
    for _ in 0..100 {
        if s.app.vectors.count(&old_key, None).await.unwrap_or(0) == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the previous generation's points were not dropped");
    drop(r);
    s.stop().await;

    // Without [embedding.previous] the switched collection answers with the new model alone.
    let s = Server::start(config(dir.path(), &model), true).await;
    every_document_is_found(&s.router, &ids, "after a restart").await;
    s.shutdown.cancel();
}

/// A Qdrant collection holds vectors of one dimension: a reindex into a model of another is
/// refused before anything is queued, and the collection keeps answering with its model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_refuses_a_switch_to_another_dimension_with_the_reason() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        eprintln!(
            "SKIPPED: qdrant model switch: QDRANT_URL is not set; no package registry serves a \
             Qdrant server"
        );
        return;
    };
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let Some(old) = old_model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut qdrant = ragplane_config::QdrantIndexConfig::new(url);
    qdrant.collection = format!("switch_{}", uuid::Uuid::new_v4().simple());
    let config = |embedding: EmbeddingConfig| {
        let mut c = config(dir.path(), &model);
        c.vectors = ragplane_config::VectorIndexConfig::Qdrant(qdrant.clone());
        c.embedding = embedding;
        c
    };
    let s = Server::start(
        config(EmbeddingConfig {
            model_dir: Some(model.0.clone()),
            ort_library: Some(model.1.clone()),
            ..old.clone()
        }),
        true,
    )
    .await;
    let c = create_collection(&s.router, ADMIN, "docs").await;
    assert_eq!(c.status, StatusCode::CREATED, "{:?}", c.body);
    let (title, text, question) = DOCS[0];
    let (id, _) = upload_text(&s.router, ADMIN, "docs", text, title).await;
    wait_status(&s.router, ADMIN, "docs", &id, "indexed").await;
    s.stop().await;

    let mut new = config(EmbeddingConfig {
        model_dir: Some(model.0.clone()),
        ort_library: Some(model.1.clone()),
        ..Default::default()
    });
    new.embedding.previous = Some(Box::new(old.clone()));
    let s = Server::start(new, true).await;
    let re = call(
        &s.router,
        Method::POST,
        "/v1/collections/docs/reindex",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(re.status, StatusCode::CONFLICT, "{:?}", re.body);
    let msg = re.body["error"].as_str().unwrap();
    assert!(
        msg.contains("256-dimensional") && msg.contains("384-dimensional"),
        "{msg}"
    );
    let c = collection(&s.router).await;
    assert!(c.get("next_model").is_none(), "{c:?}");
    every_document_is_found(&s.router, &[(id, question)], "after the refusal").await;
    s.shutdown.cancel();
}
