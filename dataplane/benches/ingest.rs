//! Ingest throughput of the whole pipeline against raw ONNX Runtime, measured in one run.
//!
//! `cargo bench -p ragplane --bench ingest -- [DOCS] [STORES]`
//!
//! STORES is `embedded` (the default), `scale-out`, or both comma-separated. `embedded` is SQLite
//! metadata and local originals; `scale-out` is PostgreSQL metadata and S3 originals on the
//! servers named by `RAGPLANE_TEST_POSTGRES_URL` and `RAGPLANE_TEST_S3_*` (start them with
//! scripts/services/postgres.sh and s3.sh), a fresh database and bucket each run. Each store set
//! gets its own pipeline run, one after the other, between the two baseline runs.
//!
//! 1. A deterministic corpus is chunked with the pipeline's own chunker, so both sides embed the
//!    very same chunk texts.
//! 2. Baseline: one ONNX Runtime session (same model, same intra-op threads) embeds the chunks
//!    in document order, 32 per run, padded to the longest of each run, tokenisation included.
//!    It runs before and after the pipeline; the ratio uses the mean of the two.
//! 3. Pipeline: a fresh embedded data plane ingests the corpus through the HTTP API (in-process
//!    router): store original, queue, parse, chunk, embed (cache on, but every chunk is new),
//!    write-ahead-logged index upsert, status updates. The clock runs from the first upload to
//!    the last document indexed. The embedder's token cap is set so runs hold at most 32 chunks.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // A benchmark fails loudly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ragplane::app::App;
use ragplane::embed::onnx::{ModelFiles, OnnxModel};
use ragplane::embed::tokenizer::TextTokenizer;
use ragplane::metadata::DocumentStatus;
use ragplane_parse::chunk::chunk_by_tokens;
use tower::ServiceExt;

const BATCH: usize = 32;
const WORDS: &[&str] = &[
    "system",
    "data",
    "request",
    "latency",
    "cluster",
    "replica",
    "storage",
    "network",
    "policy",
    "report",
    "customer",
    "invoice",
    "shipment",
    "warehouse",
    "forecast",
    "quarter",
    "revenue",
    "budget",
    "review",
    "team",
    "engineer",
    "design",
    "module",
    "service",
    "query",
    "index",
    "vector",
    "document",
    "model",
    "training",
    "river",
    "mountain",
    "harbour",
    "village",
    "winter",
    "summer",
    "garden",
    "market",
    "library",
    "museum",
    "measured",
    "improved",
    "reduced",
    "increased",
    "planned",
    "observed",
    "delivered",
    "approved",
    "tested",
];

fn corpus(docs: usize) -> Vec<String> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..docs)
        .map(|d| {
            let mut text = format!("Document {d}.\n\n");
            for _ in 0..10 {
                for _ in 0..8 {
                    let len = 8 + (next() % 10) as usize;
                    let words: Vec<&str> = (0..len)
                        .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
                        .collect();
                    text.push_str(&words.join(" "));
                    text.push_str(". ");
                }
                text.push_str("\n\n");
            }
            text
        })
        .collect()
}

fn main() {
    let docs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let texts = corpus(docs);

    let mut cfg = ragplane_config::Config::default();
    cfg.embedding.model_dir = Some(model.0.clone());
    cfg.embedding.ort_library = Some(model.1.clone());
    cfg.embedding.intra_threads = threads;
    let files = ModelFiles::from_config(&cfg.embedding).unwrap();
    let tokenizer = TextTokenizer::from_file(&files.tokenizer, cfg.embedding.max_seq_len).unwrap();
    let chunks: Vec<String> = texts
        .iter()
        .flat_map(|t| {
            let offsets = tokenizer.token_offsets(t).unwrap();
            chunk_by_tokens(
                t,
                &offsets,
                cfg.chunking.chunk_tokens,
                cfg.chunking.overlap_tokens,
            )
        })
        .map(|c| c.text)
        .collect();
    let longest = chunks
        .iter()
        .map(|c| tokenizer.count_tokens(c).unwrap() + 2)
        .max()
        .unwrap();

    // Baseline: raw session runs, before and after the pipeline, to expose drift in machine load.
    let mut session = OnnxModel::load(&files, threads, 384).unwrap();
    let mut baseline = || {
        let warm: Vec<&str> = chunks.iter().take(BATCH).map(String::as_str).collect();
        let encs = tokenizer.encode_for_model(&warm).unwrap();
        session.run(&encs.iter().collect::<Vec<_>>()).unwrap();
        let started = Instant::now();
        let mut embedded = 0;
        for batch in chunks.chunks(BATCH) {
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            let encs = tokenizer.encode_for_model(&refs).unwrap();
            embedded += session.run(&encs.iter().collect::<Vec<_>>()).unwrap().len();
        }
        assert_eq!(embedded, chunks.len());
        started.elapsed().as_secs_f64()
    };
    let stores: Vec<String> = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "embedded".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let raw_before = baseline();

    // Pipeline: a data plane through its HTTP API, once per store set.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::new();
    for stores in &stores {
        let secs = rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut config = ragplane::testing::config_in(dir.path(), &model, "rp_bench_admin");
            match stores.as_str() {
                "embedded" => {}
                "scale-out" => {
                    let url = ragplane::testing::fresh_postgres_database("bench ingest")
                        .await
                        .unwrap()
                        .expect("scale-out needs RAGPLANE_TEST_POSTGRES_URL");
                    config.metadata = ragplane_config::MetadataConfig::Postgres(
                        ragplane_config::PostgresConfig::new(url),
                    );
                    let mut s3 = ragplane::testing::s3_test_config("bench ingest")
                        .await
                        .unwrap()
                        .expect("scale-out needs RAGPLANE_TEST_S3_*");
                    s3.multipart_threshold_bytes =
                        ragplane_config::S3Config::new("x").multipart_threshold_bytes;
                    s3.multipart_part_bytes =
                        ragplane_config::S3Config::new("x").multipart_part_bytes;
                    config.objects = ragplane_config::ObjectStoreConfig::S3(Box::new(s3));
                }
                other => panic!("unknown store set {other:?}: use embedded or scale-out"),
            }
            config.embedding.intra_threads = threads;
            config.embedding.max_batch_tokens = BATCH * longest;
            config.workers.poll_interval_ms = 20;
            let app = Arc::new(App::build(config).await.unwrap());
            app.bootstrap_admin_key().await.unwrap();
            let shutdown = tokio_util::sync::CancellationToken::new();
            let _workers = ragplane::worker::spawn_workers(app.clone(), 2, shutdown.clone());
            let router = ragplane::api::router(app.clone());
            let post = |uri: &str, body: serde_json::Value| {
                Request::post(uri)
                    .header(header::AUTHORIZATION, "Bearer rp_bench_admin")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap()
            };
            let r = router
                .clone()
                .oneshot(post(
                    "/v1/collections",
                    serde_json::json!({ "name": "bench" }),
                ))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            let started = Instant::now();
            for (i, t) in texts.iter().enumerate() {
                let body = serde_json::json!({ "text": t, "title": format!("doc-{i}") });
                let r = router
                    .clone()
                    .oneshot(post("/v1/collections/bench/documents", body))
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::ACCEPTED);
            }
            let collection = app
                .metadata
                .collection_by_name(&app.default_tenant, "bench")
                .await
                .unwrap()
                .unwrap();
            loop {
                let docs = app
                    .metadata
                    .list_documents(&collection.id, None, None, 1000)
                    .await
                    .unwrap();
                assert!(docs.iter().all(|d| d.status != DocumentStatus::Failed));
                if docs.iter().all(|d| d.status == DocumentStatus::Indexed) {
                    let total: i64 = docs.iter().map(|d| d.chunk_count).sum();
                    assert_eq!(total as usize, chunks.len(), "pipeline chunked differently");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let secs = started.elapsed().as_secs_f64();
            shutdown.cancel();
            secs
        });
        results.push((stores.clone(), secs));
    }

    let raw_after = baseline();
    let raw_secs = (raw_before + raw_after) / 2.0;
    let n = chunks.len() as f64;
    let raw = n / raw_secs;
    println!("documents: {docs}, chunks: {}, longest chunk: {longest} tokens, threads: {threads}, batch: {BATCH}", chunks.len());
    println!(
        "| raw ONNX Runtime (mean of before/after) | {raw:.1} chunks/s | {raw_secs:.2} s (before {raw_before:.2} s, after {raw_after:.2} s) |"
    );
    let first = n / results[0].1;
    for (stores, pipeline_secs) in &results {
        let pipe = n / pipeline_secs;
        println!(
            "| ragplane pipeline ({stores}) | {pipe:.1} chunks/s | {pipeline_secs:.2} s | ratio to raw {:.3} | ratio to {} {:.3} |",
            pipe / raw,
            results[0].0,
            pipe / first
        );
    }
}
