//! The ONNX Runtime embedder against reference vectors from an independent implementation
//! (Python onnxruntime + numpy pooling; see scripts/make-reference-embeddings.py), plus batching
//! order and backpressure.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use std::sync::Arc;

use ragplane::embed::onnx::OnnxEmbedder;
use ragplane::embed::pooling::dot;
use ragplane::embed::{EmbedError, Embedder, Priority};
use ragplane_config::EmbeddingConfig;

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reference_embeddings.json"
    ))
    .expect("reference data");
    serde_json::from_str(&text).expect("reference json")
}

fn config() -> Option<EmbeddingConfig> {
    let (dir, lib) = ragplane::testing::model_files()?;
    Some(EmbeddingConfig {
        model_dir: Some(dir),
        ort_library: Some(lib),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_match_the_reference_implementation() {
    let Some(cfg) = config() else { return };
    let embedder = OnnxEmbedder::start(&cfg).expect("model loads");
    let r = reference();
    // One request: the sentences are batched together and padded to the longest.
    let got = embedder.embed(r.sentences.clone()).await.expect("embeds");
    assert_eq!(got.len(), r.vectors.len());
    for (i, (g, want)) in got.iter().zip(&r.vectors).enumerate() {
        assert_eq!(g.len(), 384);
        let cos = dot(g, want);
        let max_diff = g
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            cos > 0.9999,
            "sentence {i} {:?}: cosine {cos}",
            r.sentences[i]
        );
        assert!(
            max_diff < 2e-3,
            "sentence {i}: max abs difference {max_diff}"
        );
        assert!((dot(g, g) - 1.0).abs() < 1e-4, "unit length");
    }
    // Related sentences are closer than unrelated ones.
    let related = embedder
        .embed(vec![
            "A man is playing a guitar.".into(),
            "Someone plays an acoustic guitar.".into(),
        ])
        .await
        .unwrap();
    assert!(dot(&related[0], &related[1]) > dot(&related[0], &got[2]) + 0.3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_their_own_vectors_in_order() {
    let Some(cfg) = config() else { return };
    let embedder = Arc::new(OnnxEmbedder::start(&cfg).expect("model loads"));
    let r = reference();
    let mut tasks = Vec::new();
    for round in 0..8 {
        for (i, s) in r.sentences.iter().enumerate() {
            let e = embedder.clone();
            // Requests of different sizes and orders, so batches mix them.
            let texts = if round % 2 == 0 {
                vec![s.clone()]
            } else {
                vec![s.clone(), r.sentences[0].clone()]
            };
            tasks.push(tokio::spawn(
                async move { (i, round, e.embed(texts).await) },
            ));
        }
    }
    for t in tasks {
        let (i, round, out) = t.await.unwrap();
        let out = out.expect("embeds");
        assert!(
            dot(&out[0], &r.vectors[i]) > 0.9999,
            "request for sentence {i} got another vector"
        );
        if round % 2 == 1 {
            assert!(dot(&out[1], &r.vectors[0]) > 0.9999);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_reported_as_overload_not_a_hang() {
    let Some(mut cfg) = config() else { return };
    cfg.queue_capacity = 1;
    let embedder = Arc::new(OnnxEmbedder::start(&cfg).expect("model loads"));
    let long = "word ".repeat(200);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let e = embedder.clone();
            let t = format!("{long} {i}");
            tokio::spawn(async move { e.embed(vec![t; 8]).await })
        })
        .collect();
    let mut overloaded = 0;
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => {
                assert_eq!(v.len(), 8);
                ok += 1;
            }
            Err(EmbedError::Overloaded { capacity: 1 }) => overloaded += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(
        overloaded > 0,
        "64 concurrent requests against a queue of 1 must overflow"
    );
    assert!(ok > 0);
}

#[test]
fn a_missing_library_is_an_error_not_a_panic() {
    let cfg = EmbeddingConfig {
        model_dir: Some("/nonexistent/model".into()),
        ort_library: Some("/nonexistent/libonnxruntime.so".into()),
        ..Default::default()
    };
    let err = OnnxEmbedder::start(&cfg).err().expect("fails");
    assert!(matches!(err, EmbedError::Load(_)), "{err}");
    assert!(err.to_string().contains("setup-model.sh"), "{err}");
}

/// A query sent while a large ingestion is being embedded is answered before the ingestion and
/// both get correct vectors: with a bulk-only session (the default), and with one shared
/// session that serves queries between small bulk batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_requests_overtake_bulk_work() {
    let Some(cfg) = config() else { return };
    for bulk_sessions in [1, 0] {
        let cfg = EmbeddingConfig {
            sessions: 1,
            bulk_sessions,
            max_seq_len: 64,
            // Two texts of about 30 tokens per shared bulk batch.
            bulk_batch_tokens: 64,
            ..cfg.clone()
        };
        overtakes(
            &OnnxEmbedder::start(&cfg).expect("model loads"),
            bulk_sessions,
        )
        .await;
    }
}

async fn overtakes(embedder: &OnnxEmbedder, bulk_sessions: usize) {
    let text = |i: usize| {
        format!("document {i} describes the quarterly revenue forecast of the warehouse team in some detail")
    };
    let bulk_texts: Vec<String> = (0..400).map(text).collect();
    let bulk = {
        let e = embedder.clone();
        let texts = bulk_texts.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let v = e.embed_as(texts, Priority::Bulk).await.unwrap();
            (v, started.elapsed())
        })
    };
    // Let the bulk request start.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let query = embedder
        .embed(vec!["what is the revenue forecast".to_string()])
        .await
        .unwrap();
    let query_took = started.elapsed();
    assert!(
        !bulk.is_finished(),
        "bulk_sessions {bulk_sessions}: the bulk request finished before the query was answered"
    );
    let (vectors, bulk_took) = bulk.await.unwrap();
    assert!(
        query_took * 5 < bulk_took,
        "bulk_sessions {bulk_sessions}: the query took {query_took:?}, the bulk request {bulk_took:?}"
    );
    // Both answers are right: the same texts embedded alone give the same vectors.
    let alone = embedder
        .embed(vec![
            bulk_texts[399].clone(),
            "what is the revenue forecast".into(),
        ])
        .await
        .unwrap();
    assert!(dot(&vectors[399], &alone[0]) > 0.9999);
    assert!(dot(&query[0], &alone[1]) > 0.9999);
}
