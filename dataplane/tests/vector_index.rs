//! One conformance suite for every [`VectorIndex`] backend: the embedded index always, the
//! PostgreSQL-backed index when `RAGPLANE_TEST_POSTGRES_URL` is set, and Qdrant when
//! `QDRANT_URL` is set. Without its variable a backend's tests print `SKIPPED: …` and return;
//! with `RAGPLANE_REQUIRE_SERVICES=1` a missing PostgreSQL fails instead. Qdrant is the
//! exception: no package registry serves a Qdrant server, so CI always skips it.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use std::collections::HashSet;
use std::sync::Arc;

use ragplane::keyword::{english, Bm25};
use ragplane::vectors::{
    point_id, CollectionKey, EmbeddedIndex, Filter, Fusion, HybridQuery, Payload, Point,
    PostgresIndex, QdrantIndex, VectorIndex,
};
use ragplane_config::{EmbeddedIndexConfig, PostgresIndexConfig, QdrantIndexConfig};

const DIM: usize = 32;

/// The PostgreSQL URL, or `None` after printing why the test is skipped.
fn postgres_url(test: &str) -> Option<String> {
    if let Ok(url) = std::env::var("RAGPLANE_TEST_POSTGRES_URL") {
        return Some(url);
    }
    let why = "RAGPLANE_TEST_POSTGRES_URL is not set; start scripts/services/postgres.sh";
    assert!(
        std::env::var("RAGPLANE_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "{test}: {why}"
    );
    eprintln!("SKIPPED: {test}: {why}");
    None
}

/// The Qdrant gRPC URL, or `None` after printing why the test is skipped (always allowed:
/// there is no Qdrant server to install).
fn qdrant_url(test: &str) -> Option<String> {
    match std::env::var("QDRANT_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            eprintln!(
                "SKIPPED: {test}: QDRANT_URL is not set; no package registry serves a Qdrant server"
            );
            None
        }
    }
}

/// A run-unique name, so tests sharing a database or cluster never see each other's points.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A deterministic unit vector per seed (splitmix64), distinct for distinct seeds.
fn unit(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut v: Vec<f32> = (0..DIM)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= norm);
    v
}

fn seed(doc: &str, chunk: u32) -> u64 {
    point_id(doc, chunk)
}

fn points(key: &CollectionKey, doc: &str, n: u32) -> Vec<Point> {
    (0..n)
        .map(|i| Point {
            metadata: Default::default(),
            id: point_id(doc, i),
            vector: unit(seed(doc, i)),
            payload: Payload {
                tenant: key.tenant.clone(),
                collection: key.collection.clone(),
                document: doc.into(),
                title: format!("title of {doc}"),
                chunk: i,
                text: format!("{doc} chunk {i}"),
            },
        })
        .collect()
}

fn key(tenant: &str, collection: &str) -> CollectionKey {
    CollectionKey {
        tenant: tenant.into(),
        collection: collection.into(),
    }
}

fn filter(k: &CollectionKey) -> Filter {
    Filter {
        tenant: k.tenant.clone(),
        collection: k.collection.clone(),
        documents: None,
        metadata: None,
    }
}

/// The behaviour every backend must have. `tenant` is unique to this run.
async fn conformance(idx: Arc<dyn VectorIndex>, tenant: &str) {
    upsert_search_delete(&*idx, tenant).await;
    collections_are_isolated(&*idx, tenant).await;
    if idx.supports_keyword().await.unwrap() {
        keyword_and_hybrid(&*idx, tenant).await;
    } else {
        println!(
            "SKIPPED: keyword_and_hybrid: the backend serves no keyword search (for Qdrant: a \
             server older than 1.19, which ignores the per-tenant IDF corpus)"
        );
    }
    many_concurrent_searches(idx, tenant).await;
}

/// A point with a given text (no title), for keyword tests.
fn text_point(key: &CollectionKey, doc: &str, chunk: u32, text: &str) -> Point {
    Point {
        metadata: Default::default(),
        id: point_id(doc, chunk),
        vector: unit(seed(doc, chunk)),
        payload: Payload {
            tenant: key.tenant.clone(),
            collection: key.collection.clone(),
            document: doc.into(),
            title: String::new(),
            chunk,
            text: text.into(),
        },
    }
}

fn terms(q: &str) -> Vec<String> {
    english().query_terms(q)
}

/// BM25 over the analyser's terms, with statistics of exactly one tenant's collection; hybrid
/// search finds what either half finds and reports both scores.
async fn keyword_and_hybrid(idx: &dyn VectorIndex, tenant: &str) {
    let a = key(&format!("{tenant}-kw-a"), "docs");
    let b = key(&format!("{tenant}-kw-b"), "docs");
    let a2 = key(&format!("{tenant}-kw-a"), "other");
    for k in [&a, &b, &a2] {
        idx.ensure_collection(k, DIM).await.unwrap();
    }
    idx.upsert(
        &a,
        vec![
            text_point(&a, "d1", 0, "Zebras graze on the savanna grasses"),
            text_point(&a, "d2", 0, "Lions hunt zebras and antelopes at night"),
            text_point(&a, "d3", 0, "The savanna is dry for most of the year"),
            text_point(&a, "d4", 0, "Penguins live in cold southern oceans"),
        ],
    )
    .await
    .unwrap();
    // Another tenant's and another collection's points use the same words many times; they
    // must not change tenant a's statistics.
    let noise: Vec<Point> = (0..50)
        .map(|i| text_point(&b, &format!("n{i}"), 0, "penguins penguins zebras"))
        .collect();
    idx.upsert(&b, noise.clone()).await.unwrap();
    let noise2: Vec<Point> = (0..20)
        .map(|i| text_point(&a2, &format!("m{i}"), 0, "penguins zebras savanna"))
        .collect();
    idx.upsert(&a2, noise2).await.unwrap();

    // "penguin": df 1 of 4 in (a, docs); lengths count terms after stop words are dropped.
    let texts = [
        "Zebras graze on the savanna grasses",
        "Lions hunt zebras and antelopes at night",
        "The savanna is dry for most of the year",
        "Penguins live in cold southern oceans",
    ];
    let lens: Vec<usize> = texts.iter().map(|t| english().terms(t).len()).collect();
    assert_eq!(lens, [4, 5, 4, 5]);
    let avg = lens.iter().sum::<usize>() as f32 / 4.0;
    let hits = idx
        .keyword_search(terms("penguins"), 10, filter(&a))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].payload.document, "d4");
    let expected = Bm25::idf(4, 1) * Bm25::default().weight(1, 5, avg);
    assert!(
        (hits[0].score - expected).abs() < 1e-4,
        "score {} expected {expected}: statistics leak across tenants or collections",
        hits[0].score
    );
    assert_eq!(hits[0].keyword, Some(hits[0].score));
    assert_eq!(hits[0].dense, None);

    // More query terms matched ranks higher; chunks sharing no term are absent.
    let hits = idx
        .keyword_search(terms("zebra savanna"), 10, filter(&a))
        .await
        .unwrap();
    let docs: Vec<&str> = hits.iter().map(|h| h.payload.document.as_str()).collect();
    assert_eq!(docs[0], "d1", "{docs:?}");
    assert_eq!(docs.len(), 3);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(idx
        .keyword_search(terms("unicorn"), 10, filter(&a))
        .await
        .unwrap()
        .is_empty());

    // Document filters and deletes apply to keyword search too.
    let mut only_d2 = filter(&a);
    only_d2.documents = Some(["d2".to_string()].into());
    let hits = idx
        .keyword_search(terms("zebra savanna"), 10, only_d2)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].payload.document, "d2");
    idx.delete_document(&a, "d1").await.unwrap();
    let hits = idx
        .keyword_search(terms("zebra"), 10, filter(&a))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].payload.document, "d2");
    // Re-upserting a chunk with new text replaces its terms.
    idx.upsert(&a, vec![text_point(&a, "d3", 0, "Unicorns are imaginary")])
        .await
        .unwrap();
    let hits = idx
        .keyword_search(terms("unicorn savanna"), 10, filter(&a))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].payload.text, "Unicorns are imaginary");

    // Hybrid: the dense half finds d4 by its vector, the keyword half d2 by its words.
    let query = HybridQuery {
        vector: unit(seed("d4", 0)),
        terms: terms("lions hunting"),
        k: 3,
        candidates: 3,
        fusion: Fusion::default(),
    };
    let hits = idx.hybrid_search(query, filter(&a)).await.unwrap();
    assert_eq!(hits.len(), 3, "{hits:?}");
    let top: HashSet<&str> = hits[..2]
        .iter()
        .map(|h| h.payload.document.as_str())
        .collect();
    assert_eq!(top, HashSet::from(["d2", "d4"]), "{hits:?}");
    let d4 = hits.iter().find(|h| h.payload.document == "d4").unwrap();
    assert!((d4.dense.unwrap() - 1.0).abs() < 1e-3);
    let d2 = hits.iter().find(|h| h.payload.document == "d2").unwrap();
    assert!(d2.keyword.unwrap() > 0.0);
    for h in &hits {
        assert!(
            h.score > 0.0 && h.score < 1.0,
            "fused RRF scores are small: {h:?}"
        );
    }
    // Wherever the fusion runs (here, or on the backend's server), it ranks and scores exactly
    // as fusing the two separate searches does, for every method.
    for fusion in [
        Fusion::default(),
        Fusion {
            rrf_k: 2.0,
            ..Fusion::default()
        },
        Fusion {
            keyword_weight: 3.0,
            ..Fusion::default()
        },
        Fusion {
            method: ragplane_config::FusionMethod::Dbsf,
            ..Fusion::default()
        },
    ] {
        let query = HybridQuery {
            vector: unit(seed("d2", 0)),
            terms: terms("zebras savanna penguins"),
            k: 3,
            candidates: 4,
            fusion,
        };
        let fused = idx.hybrid_search(query.clone(), filter(&a)).await.unwrap();
        let (dense, keyword) = (
            idx.search(query.vector.clone(), 4, filter(&a))
                .await
                .unwrap(),
            idx.keyword_search(query.terms.clone(), 4, filter(&a))
                .await
                .unwrap(),
        );
        let expected = fusion.fuse(dense, keyword, 3);
        let ranked = |hits: &[ragplane::vectors::Hit]| {
            hits.iter()
                .map(|h| {
                    (
                        h.id,
                        (h.score * 1e4).round(),
                        h.dense.is_some(),
                        h.keyword.is_some(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ranked(&fused), ranked(&expected), "{fusion:?}");
    }
    for k in [&a, &b, &a2] {
        idx.drop_collection(k).await.unwrap();
    }
}

async fn upsert_search_delete(idx: &dyn VectorIndex, tenant: &str) {
    let k = key(tenant, "col-1");
    assert!(
        idx.search(unit(1), 5, filter(&k)).await.unwrap().is_empty(),
        "a collection that does not exist has no points"
    );
    idx.ensure_collection(&k, DIM).await.unwrap();
    idx.ensure_collection(&k, DIM).await.unwrap();
    idx.upsert(&k, points(&k, "doc1", 20)).await.unwrap();
    idx.upsert(&k, points(&k, "doc22", 10)).await.unwrap();
    // Upserting the same ids again replaces rather than duplicates.
    idx.upsert(&k, points(&k, "doc1", 20)).await.unwrap();
    assert_eq!(idx.count(&k, None).await.unwrap(), 30);
    assert_eq!(idx.count(&k, Some("doc22")).await.unwrap(), 10);

    let q = unit(seed("doc1", 5));
    let hits = idx.search(q.clone(), 3, filter(&k)).await.unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].id, point_id("doc1", 5));
    assert_eq!(hits[0].payload.text, "doc1 chunk 5");
    assert_eq!(hits[0].payload.title, "title of doc1");
    assert_eq!(hits[0].payload.chunk, 5);
    assert_eq!(hits[0].payload.tenant, tenant);
    assert!((hits[0].score - 1.0).abs() < 1e-3, "{}", hits[0].score);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

    let mut only22 = filter(&k);
    only22.documents = Some(["doc22".to_string()].into());
    let hits = idx.search(q.clone(), 5, only22).await.unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.payload.document == "doc22"));

    let mut none = filter(&k);
    none.documents = Some(HashSet::new());
    assert!(idx.search(q.clone(), 5, none).await.unwrap().is_empty());

    let wrong = idx.upsert(
        &k,
        vec![Point {
            metadata: Default::default(),
            vector: vec![0.5; DIM + 1],
            ..points(&k, "doc3", 1).remove(0)
        }],
    );
    assert!(
        wrong.await.is_err(),
        "a vector of the wrong dimension is refused"
    );

    // A document re-indexed into fewer chunks sheds only the chunks beyond the new count.
    assert_eq!(idx.delete_chunks_from(&k, "doc22", 7).await.unwrap(), 3);
    assert_eq!(idx.delete_chunks_from(&k, "doc22", 7).await.unwrap(), 0);
    assert_eq!(idx.count(&k, Some("doc22")).await.unwrap(), 7);
    let mut only22 = filter(&k);
    only22.documents = Some(["doc22".to_string()].into());
    let left = idx.search(q.clone(), 10, only22).await.unwrap();
    assert!(left.iter().all(|h| h.payload.chunk < 7), "{left:?}");
    assert_eq!(left.len(), 7);
    idx.upsert(&k, points(&k, "doc22", 10)).await.unwrap();
    assert_eq!(idx.delete_document(&k, "doc1").await.unwrap(), 20);
    assert_eq!(idx.delete_document(&k, "doc1").await.unwrap(), 0);
    assert_eq!(idx.count(&k, None).await.unwrap(), 10);
    assert_eq!(idx.count(&k, Some("doc1")).await.unwrap(), 0);
    let hits = idx.search(q, 30, filter(&k)).await.unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.payload.document == "doc22"));
    idx.flush().await.unwrap();
    idx.drop_collection(&k).await.unwrap();
}

async fn collections_are_isolated(idx: &dyn VectorIndex, tenant: &str) {
    let a = key(&format!("{tenant}-a"), "c");
    let b = key(&format!("{tenant}-b"), "c");
    let a2 = key(&format!("{tenant}-a"), "c2");
    for k in [&a, &b, &a2] {
        idx.ensure_collection(k, DIM).await.unwrap();
    }
    idx.upsert(&a, points(&a, "doc", 5)).await.unwrap();
    idx.upsert(&a2, points(&a2, "other", 3)).await.unwrap();
    assert!(idx.search(unit(1), 5, filter(&b)).await.unwrap().is_empty());
    assert_eq!(idx.count(&b, None).await.unwrap(), 0);
    let hits = idx.search(unit(1), 10, filter(&a)).await.unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.payload.collection == "c"));
    idx.drop_collection(&a).await.unwrap();
    assert!(idx.search(unit(1), 5, filter(&a)).await.unwrap().is_empty());
    assert_eq!(idx.count(&a, None).await.unwrap(), 0);
    assert_eq!(
        idx.count(&a2, None).await.unwrap(),
        3,
        "dropping a collection leaves the tenant's others alone"
    );
    idx.drop_collection(&a2).await.unwrap();
    idx.drop_collection(&b).await.unwrap();
}

async fn many_concurrent_searches(idx: Arc<dyn VectorIndex>, tenant: &str) {
    // Far more concurrent searches than usearch has thread contexts: every one succeeds.
    let k = key(tenant, "busy");
    idx.ensure_collection(&k, DIM).await.unwrap();
    let all = points(&k, "doc", 3000);
    for batch in all.chunks(1000) {
        idx.upsert(&k, batch.to_vec()).await.unwrap();
    }
    let tasks: Vec<_> = (0..256)
        .map(|i| {
            let idx = idx.clone();
            let f = filter(&k);
            tokio::spawn(async move { idx.search(unit(i), 5, f).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 5);
    }
    idx.drop_collection(&k).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_index_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let idx = EmbeddedIndex::open(dir.path().to_path_buf(), EmbeddedIndexConfig::default())
        .await
        .unwrap();
    conformance(Arc::new(idx), "tenant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_index_conforms() {
    let Some(url) = postgres_url("postgres_index_conforms") else {
        return;
    };
    let idx = PostgresIndex::open(PostgresIndexConfig::new(url))
        .await
        .unwrap();
    conformance(Arc::new(idx), &unique("tenant")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn qdrant_index_conforms() {
    let Some(url) = qdrant_url("qdrant_index_conforms") else {
        return;
    };
    let mut cfg = QdrantIndexConfig::new(url.clone());
    cfg.collection = unique("ragplane-test");
    cfg.upsert_batch_size = 100;
    // Qdrant stores each chunk's BM25 weights at upsert, against the configured average chunk
    // length; the suite's exact score check uses the live average of its four chunks (4.5).
    cfg.keyword_average_terms = 4.5;
    let name = cfg.collection.clone();
    let idx = QdrantIndex::open(cfg).unwrap();
    // Reads the server's version on first use.
    if !idx.supports_keyword().await.unwrap() {
        // A server older than 1.19 would mix tenants' keyword statistics: refused, not served.
        let k = key(&unique("tenant"), "c");
        let refused = idx
            .keyword_search(vec!["penguin".into()], 5, filter(&k))
            .await;
        assert!(
            matches!(
                refused,
                Err(ragplane::vectors::VectorError::Unsupported { .. })
            ),
            "{refused:?}"
        );
    }
    conformance(Arc::new(idx), &unique("tenant")).await;
    let client = qdrant_client::Qdrant::from_url(&url).build().unwrap();
    client.delete_collection(name).await.unwrap();
}

/// Metadata filters run inside Qdrant's search, and select exactly the documents the SQL
/// metadata store selects for the same filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdrant_filters_metadata_as_the_metadata_store_does() {
    use ragplane::metadata::filter::MetadataFilter;
    use ragplane::metadata::{MetadataStore, NewDocument, SqliteStore};
    use serde_json::json;

    let Some(url) = qdrant_url("qdrant_filters_metadata_as_the_metadata_store_does") else {
        return;
    };
    let mut cfg = QdrantIndexConfig::new(url.clone());
    cfg.collection = unique("ragplane-filter");
    let name = cfg.collection.clone();
    let idx = QdrantIndex::open(cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("m.db")).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("t").await.unwrap();
    let c = store
        .create_collection(&tenant.id, "docs", "", DIM as i64)
        .await
        .unwrap();
    let k = key(&tenant.id, &c.id);
    idx.ensure_collection(&k, DIM).await.unwrap();
    let docs = [
        (
            "d1",
            json!({"lang": "en", "year": 2020, "tag": "a", "day": "2024-01-15", "score": 2.5}),
        ),
        (
            "d2",
            json!({"lang": "de", "year": 2023, "tag": "b", "day": "2024-07-01T10:00:00Z"}),
        ),
        (
            "d3",
            json!({"lang": "en", "year": 2024, "draft": true, "tag": 7}),
        ),
        ("d4", json!({})),
        (
            "d5",
            json!({"lang": "en", "draft": false, "year": 2021.5, "day": "2023-12-31"}),
        ),
    ];
    for (doc, metadata) in &docs {
        let metadata = metadata.as_object().cloned().unwrap();
        store
            .insert_document(NewDocument {
                id: doc.to_string(),
                tenant_id: tenant.id.clone(),
                collection_id: c.id.clone(),
                title: doc.to_string(),
                source: None,
                content_type: "text/plain".into(),
                size_bytes: 1,
                sha256: "ab".repeat(32),
                metadata: metadata.clone(),
                object_key: doc.to_string(),
            })
            .await
            .unwrap();
        let mut p = points(&k, doc, 2);
        for p in &mut p {
            p.metadata = metadata.clone();
        }
        idx.upsert(&k, p).await.unwrap();
    }
    for wanted in [
        json!({"lang": "en"}),
        json!({"lang": "en", "year": 2024}),
        json!({"year": {"gte": 2021, "lt": 2024}}),
        json!({"year": 2021.5}),
        json!({"tag": {"in": ["a", "b", 7]}}),
        json!({"tag": {"not": "a"}}),
        json!({"lang": {"not": ["en", "de"]}}),
        json!({"draft": null}),
        json!({"draft": true}),
        json!({"draft": false}),
        json!({"score": 2.5}),
        json!({"day": {"gte": "2024-02-01"}}),
        json!({"day": {"lt": "2024-01-15"}}),
        json!({"day": {"gte": "2024-01-01", "lte": "2024-07-01T10:00:00Z"}}),
        json!({"lang": "fr"}),
    ] {
        let f = MetadataFilter::parse(wanted.as_object().unwrap()).unwrap();
        assert!(idx.filters_metadata(&f), "{wanted}");
        let mut expected = store.documents_matching(&c.id, &f).await.unwrap();
        expected.sort();
        let mut filter = filter(&k);
        filter.metadata = Some(f);
        let hits = idx.search(unit(seed("d1", 0)), 20, filter).await.unwrap();
        let mut found: Vec<String> = hits.into_iter().map(|h| h.payload.document).collect();
        found.sort();
        found.dedup();
        assert_eq!(found, expected, "filter {wanted}");
    }
    let client = qdrant_client::Qdrant::from_url(&url).build().unwrap();
    client.delete_collection(name).await.unwrap();
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    // Nothing listens on port 9 (discard) of loopback here.
    let mut cfg = PostgresIndexConfig::new("postgres://ragplane@127.0.0.1:9/ragplane");
    cfg.acquire_timeout_secs = 2;
    let err = PostgresIndex::open(cfg).await.err().unwrap();
    assert!(
        matches!(
            err,
            ragplane::vectors::VectorError::Unavailable {
                backend: "postgres",
                ..
            }
        ),
        "{err:?}"
    );
    let api = ragplane::error::Error::from(err);
    assert!(
        matches!(api, ragplane::error::Error::Unavailable { .. }),
        "{api:?}"
    );
}

/// Two processes' worth of index on one database: what one writes, the other finds, deletes
/// included, and a collection dropped and created again is rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_share_writes_and_deletes() {
    let Some(url) = postgres_url("postgres_replicas_share_writes_and_deletes") else {
        return;
    };
    let one = PostgresIndex::open(PostgresIndexConfig::new(url.clone()))
        .await
        .unwrap();
    let two = PostgresIndex::open(PostgresIndexConfig::new(url))
        .await
        .unwrap();
    let k = key(&unique("tenant"), "shared");
    one.ensure_collection(&k, DIM).await.unwrap();
    // The second replica is built before any write, so what follows is incremental catch-up.
    assert!(two.search(unit(1), 5, filter(&k)).await.unwrap().is_empty());

    one.upsert(&k, points(&k, "alpha", 12)).await.unwrap();
    let q = unit(seed("alpha", 7));
    let hits = two.search(q.clone(), 3, filter(&k)).await.unwrap();
    assert_eq!(
        hits[0].id,
        point_id("alpha", 7),
        "a write through one is found through two"
    );
    assert_eq!(hits[0].payload.text, "alpha chunk 7");

    two.upsert(&k, points(&k, "beta", 4)).await.unwrap();
    let qb = unit(seed("beta", 2));
    let hits = one.search(qb.clone(), 1, filter(&k)).await.unwrap();
    assert_eq!(hits[0].id, point_id("beta", 2), "and the other way round");

    assert_eq!(one.delete_document(&k, "alpha").await.unwrap(), 12);
    let hits = two.search(q.clone(), 20, filter(&k)).await.unwrap();
    assert_eq!(hits.len(), 4, "a delete through one is seen through two");
    assert!(hits.iter().all(|h| h.payload.document == "beta"));
    assert_eq!(two.count(&k, None).await.unwrap(), 4);

    // Re-indexing a document: delete then upsert again, as the ingest pipeline does.
    one.delete_document(&k, "beta").await.unwrap();
    one.upsert(&k, points(&k, "beta", 2)).await.unwrap();
    let hits = two.search(qb, 20, filter(&k)).await.unwrap();
    let ids: HashSet<u64> = hits.iter().map(|h| h.id).collect();
    assert_eq!(
        ids,
        HashSet::from([point_id("beta", 0), point_id("beta", 1)]),
        "the re-indexed document has only its new chunks"
    );

    // Dropped and created again while two holds a replica: two must not keep the old points.
    one.drop_collection(&k).await.unwrap();
    one.ensure_collection(&k, DIM).await.unwrap();
    one.upsert(&k, points(&k, "gamma", 3)).await.unwrap();
    let hits = two.search(q.clone(), 10, filter(&k)).await.unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits.iter().all(|h| h.payload.document == "gamma"));
    one.drop_collection(&k).await.unwrap();
    assert!(two.search(q, 5, filter(&k)).await.unwrap().is_empty());
}

/// Embedding-like data: points near 200 cluster centres in a 48-dimensional subspace of R^DIM_B,
/// plus a little isotropic noise, unit length. Uniform random vectors would make any HNSW look
/// broken (see docs/vector-index.md).
fn clustered(n: usize, queries: usize, dim: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let gauss = |rng: &mut rand::rngs::StdRng| -> f32 {
        let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
        let u2: f32 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    };
    let rank = 48;
    let basis: Vec<Vec<f32>> = (0..rank)
        .map(|_| (0..dim).map(|_| gauss(&mut rng)).collect())
        .collect();
    let centres: Vec<Vec<f32>> = (0..200)
        .map(|_| (0..rank).map(|_| gauss(&mut rng)).collect())
        .collect();
    let draw = |rng: &mut rand::rngs::StdRng| -> Vec<f32> {
        let c = &centres[rng.random_range(0..centres.len())];
        let z: Vec<f32> = c.iter().map(|x| x + 0.6 * gauss(rng)).collect();
        let mut v: Vec<f32> = (0..dim)
            .map(|d| {
                let s: f32 = (0..rank).map(|r| z[r] * basis[r][d]).sum();
                s + 2.0 * gauss(rng)
            })
            .collect();
        let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.iter_mut().for_each(|a| *a /= norm);
        v
    };
    let points = (0..n).map(|_| draw(&mut rng)).collect();
    let qs = (0..queries).map(|_| draw(&mut rng)).collect();
    (points, qs)
}

/// recall@10 and single-client search rate of the PostgreSQL-backed index against the embedded
/// index on the same data, in the same run. Run with
/// `cargo test -p ragplane --test vector_index -- --ignored --nocapture compare`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; needs RAGPLANE_TEST_POSTGRES_URL"]
async fn compare_postgres_with_embedded() {
    use std::time::Instant;
    let Some(url) = postgres_url("compare_postgres_with_embedded") else {
        return;
    };
    let n: usize = std::env::var("BENCH_POINTS").map_or(20_000, |v| v.parse().unwrap());
    let nq = 500;
    let dim = 384;
    let k = 10;
    let (data, queries) = clustered(n, nq, dim);
    let truth: Vec<HashSet<u64>> = queries
        .iter()
        .map(|q| {
            let mut s: Vec<(u64, f32)> = data
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u64, v.iter().zip(q).map(|(a, b)| a * b).sum()))
                .collect();
            s.sort_by(|a, b| b.1.total_cmp(&a.1));
            s.iter().take(k).map(|x| x.0).collect()
        })
        .collect();
    let key = key(&unique("bench"), "c");
    let pts: Vec<Point> = data
        .iter()
        .enumerate()
        .map(|(i, v)| Point {
            metadata: Default::default(),
            id: i as u64,
            vector: v.clone(),
            payload: Payload {
                tenant: key.tenant.clone(),
                collection: key.collection.clone(),
                document: format!("doc{}", i / 10),
                title: String::new(),
                chunk: (i % 10) as u32,
                text: format!("chunk {i}"),
            },
        })
        .collect();

    async fn run(
        name: &str,
        idx: &dyn VectorIndex,
        queries: &[Vec<f32>],
        truth: &[HashSet<u64>],
        key: &CollectionKey,
    ) -> (f64, f64) {
        let f = filter(key);
        // Warm-up (and, for a replica, the first catch-up).
        for q in queries.iter().take(20) {
            idx.search(q.clone(), 10, f.clone()).await.unwrap();
        }
        let t = Instant::now();
        let mut found = 0usize;
        for (q, want) in queries.iter().zip(truth) {
            let hits = idx.search(q.clone(), 10, f.clone()).await.unwrap();
            found += hits.iter().filter(|h| want.contains(&h.id)).count();
        }
        let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
        let recall = found as f64 / (queries.len() * 10) as f64;
        println!("| {name} | {recall:.4} | {qps:.0} |");
        (recall, qps)
    }

    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedIndex::open(dir.path().to_path_buf(), EmbeddedIndexConfig::default())
        .await
        .unwrap();
    embedded.ensure_collection(&key, dim).await.unwrap();
    let t = Instant::now();
    for b in pts.chunks(500) {
        embedded.upsert(&key, b.to_vec()).await.unwrap();
    }
    let embedded_insert = n as f64 / t.elapsed().as_secs_f64();

    let writer = PostgresIndex::open(PostgresIndexConfig::new(url.clone()))
        .await
        .unwrap();
    writer.ensure_collection(&key, dim).await.unwrap();
    let t = Instant::now();
    for b in pts.chunks(500) {
        writer.upsert(&key, b.to_vec()).await.unwrap();
    }
    let pg_insert = n as f64 / t.elapsed().as_secs_f64();
    let reader = PostgresIndex::open(PostgresIndexConfig::new(url.clone()))
        .await
        .unwrap();
    let t = Instant::now();
    reader
        .search(queries[0].clone(), k, filter(&key))
        .await
        .unwrap();
    let build = t.elapsed().as_secs_f64();
    let mut stale_cfg = PostgresIndexConfig::new(url);
    stale_cfg.max_staleness_ms = 1000;
    let stale = PostgresIndex::open(stale_cfg).await.unwrap();

    println!("\n{n} points × {dim}, {nq} queries, k = {k}, one client");
    println!("| index | recall@10 | searches/s |\n|---|---|---|");
    let (re, qe) = run("embedded", &embedded, &queries, &truth, &key).await;
    let (rp, qp) = run(
        "postgres replica, max_staleness_ms = 0",
        &reader,
        &queries,
        &truth,
        &key,
    )
    .await;
    let (_, qs) = run(
        "postgres replica, max_staleness_ms = 1000",
        &stale,
        &queries,
        &truth,
        &key,
    )
    .await;
    println!("\ninserts/s: embedded {embedded_insert:.0}, postgres {pg_insert:.0}; replica build from the table: {build:.2} s");
    println!("ratios against embedded: recall {:.3}, searches/s {:.3} (staleness 0), {:.3} (staleness 1000 ms), inserts/s {:.3}", rp / re, qp / qe, qs / qe, pg_insert / embedded_insert);

    // Incremental catch-up: 1,000 new points written through the writer, then one search.
    let more: Vec<Point> = pts
        .iter()
        .take(1000)
        .map(|p| Point {
            metadata: Default::default(),
            id: p.id + n as u64,
            ..p.clone()
        })
        .collect();
    writer.upsert(&key, more).await.unwrap();
    let t = Instant::now();
    reader
        .search(queries[0].clone(), k, filter(&key))
        .await
        .unwrap();
    println!(
        "first search after 1,000 new points: {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    writer.drop_collection(&key).await.unwrap();
}
