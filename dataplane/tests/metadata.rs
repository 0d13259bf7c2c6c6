//! The metadata store's behaviour, one test body run against every backend: SQLite (always)
//! and PostgreSQL (when `RAGPLANE_TEST_POSTGRES_URL` names a server; see
//! scripts/services/postgres.sh). Then the PostgreSQL store's read replicas.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ragplane::metadata::{
    ConsoleSession, DocumentStatus, MetadataError, MetadataStore, ModelSwitch, NewApiKey,
    NewDocument, PostgresStore, Scope, SqliteStore, UsageRow,
};
use ragplane::testing::fresh_postgres_database;
use ragplane_config::{PostgresConfig, Secret};
use serde_json::json;

fn new_doc(tenant: &str, collection: &str, id: &str, metadata: serde_json::Value) -> NewDocument {
    NewDocument {
        id: id.to_string(),
        tenant_id: tenant.to_string(),
        collection_id: collection.to_string(),
        title: format!("title {id}"),
        source: Some(format!("{id}.md")),
        content_type: "text/markdown".into(),
        size_bytes: 42,
        sha256: "ab".repeat(32),
        metadata: metadata.as_object().cloned().unwrap_or_default(),
        object_key: format!("{tenant}/{collection}/{id}"),
    }
}

/// Everything the data plane relies on from a metadata store.
async fn suite(s: &dyn MetadataStore) {
    s.ping().await.unwrap();

    // Tenants: unique names, listed by name.
    let beta = s.create_tenant("beta").await.unwrap();
    let alpha = s.create_tenant("alpha").await.unwrap();
    assert!(matches!(
        s.create_tenant("alpha").await,
        Err(MetadataError::Conflict { kind: "tenant", .. })
    ));
    assert_eq!(s.tenant_by_name("beta").await.unwrap(), Some(beta.clone()));
    assert_eq!(s.tenant_by_name("gamma").await.unwrap(), None);
    assert_eq!(s.tenant_by_id(&beta.id).await.unwrap(), Some(beta.clone()));
    assert_eq!(s.tenant_by_id("no-such-id").await.unwrap(), None);
    let names: Vec<_> = s
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["alpha", "beta"]);

    // Keys: found by hash, cluster-admin keys counted, listed, revoked and expired.
    let new_key = |tenant: &'static str, name: &'static str, hash: &'static str, scope| NewApiKey {
        tenant_id: tenant,
        name,
        key_hash: hash,
        prefix: "rp_abcdefg",
        scope,
        expires_at: None,
    };
    let (alpha_id, beta_id): (&'static str, &'static str) = (
        Box::leak(alpha.id.clone().into_boxed_str()),
        Box::leak(beta.id.clone().into_boxed_str()),
    );
    assert_eq!(s.count_admin_keys().await.unwrap(), 0);
    let k = s
        .create_api_key(new_key(alpha_id, "ci", "hash-1", Scope::ClusterAdmin))
        .await
        .unwrap();
    let reader = s
        .create_api_key(new_key(beta_id, "reader", "hash-2", Scope::QueryOnly))
        .await
        .unwrap();
    assert!(matches!(
        s.create_api_key(new_key(beta_id, "dup", "hash-2", Scope::ReadWrite))
            .await,
        Err(MetadataError::Conflict { .. })
    ));
    assert_eq!(s.api_key_by_hash("hash-1").await.unwrap(), Some(k));
    assert_eq!(
        s.api_key_by_hash("hash-2").await.unwrap().unwrap().scope,
        Scope::QueryOnly
    );
    assert_eq!(s.api_key_by_hash("nope").await.unwrap(), None);
    assert_eq!(s.count_admin_keys().await.unwrap(), 1);
    assert!(s
        .expire_api_key(beta_id, &reader.id, "2099-01-01T00:00:00Z")
        .await
        .unwrap());
    assert!(
        !s.expire_api_key(alpha_id, &reader.id, "2099-01-01T00:00:00Z")
            .await
            .unwrap(),
        "another tenant's key"
    );
    assert!(!s.revoke_api_key(alpha_id, &reader.id).await.unwrap());
    assert!(s.revoke_api_key(beta_id, &reader.id).await.unwrap());
    assert!(!s.revoke_api_key(beta_id, &reader.id).await.unwrap());
    assert_eq!(s.api_key_by_hash("hash-2").await.unwrap(), None);
    let listed = s.list_api_keys(beta_id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].expires_at.as_deref(),
        Some("2099-01-01T00:00:00Z")
    );
    assert!(listed[0].revoked_at.is_some());

    // Console sessions: found while their key is live, deleted, purged once expired.
    let session = |token: &str, key: &str, expires: &str| ConsoleSession {
        token_hash: token.into(),
        key_hash: key.into(),
        csrf_token: format!("csrf-{token}"),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        expires_at: expires.into(),
    };
    let live = session("t-1", "hash-1", "2099-01-01T00:00:00.000Z");
    s.create_console_session(&live).await.unwrap();
    s.create_console_session(&session("t-2", "hash-1", "2020-01-01T00:00:00.000Z"))
        .await
        .unwrap();
    s.create_console_session(&session("t-3", "hash-2", "2099-01-01T00:00:00.000Z"))
        .await
        .unwrap();
    assert_eq!(s.console_session("t-1").await.unwrap(), Some(live));
    assert_eq!(
        s.console_session("t-3").await.unwrap(),
        None,
        "its key is revoked"
    );
    assert_eq!(
        s.purge_console_sessions("2026-06-01T00:00:00.000Z")
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.console_session("t-2").await.unwrap(), None);
    s.delete_console_session("t-1").await.unwrap();
    assert_eq!(s.console_session("t-1").await.unwrap(), None);

    // Usage: counts add up per (tenant, minute, key, collection), per tenant.
    let usage = |tenant: &str, minute: &str, collection: &str, q: i64, t: i64| UsageRow {
        tenant_id: tenant.into(),
        minute: minute.into(),
        key_id: "k".into(),
        collection: collection.into(),
        queries: q,
        llm_tokens: t,
    };
    s.add_usage(&[
        usage(alpha_id, "2026-12-01T10:00:00Z", "docs", 1, 10),
        usage(alpha_id, "2026-12-01T10:01:00Z", "docs", 2, 0),
        usage(beta_id, "2026-12-01T10:01:00Z", "docs", 5, 0),
    ])
    .await
    .unwrap();
    s.add_usage(&[usage(alpha_id, "2026-12-01T10:00:00Z", "docs", 3, 5)])
        .await
        .unwrap();
    assert_eq!(
        s.usage(alpha_id, "2026-12-01T10:00:00Z").await.unwrap(),
        [
            usage(alpha_id, "2026-12-01T10:00:00Z", "docs", 4, 15),
            usage(alpha_id, "2026-12-01T10:01:00Z", "docs", 2, 0)
        ]
    );
    assert_eq!(
        s.usage(alpha_id, "2026-12-01T10:01:00Z")
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.purge_usage("2026-12-01T10:01:00Z").await.unwrap(), 1);
    assert_eq!(
        s.usage(beta_id, "2026-01-01T00:00:00Z")
            .await
            .unwrap()
            .len(),
        1
    );

    // Collections: unique per tenant, versioned, found by name and id.
    let docs = s
        .create_collection(&alpha.id, "docs", "handbook", 384)
        .await
        .unwrap();
    s.create_collection(&alpha.id, "archive", "", 384)
        .await
        .unwrap();
    s.create_collection(&beta.id, "docs", "", 384)
        .await
        .unwrap();
    assert!(matches!(
        s.create_collection(&alpha.id, "docs", "", 384).await,
        Err(MetadataError::Conflict {
            kind: "collection",
            ..
        })
    ));
    let listed: Vec<_> = s
        .list_collections(&alpha.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(listed, ["archive", "docs"]);
    assert_eq!(
        s.collection_by_name(&alpha.id, "docs").await.unwrap(),
        Some(docs.clone())
    );
    assert_eq!(
        s.collection_by_id(&docs.id).await.unwrap(),
        Some(docs.clone())
    );
    assert_eq!(s.collection_by_name(&alpha.id, "nope").await.unwrap(), None);
    assert_eq!(s.bump_collection_version(&docs.id).await.unwrap(), 1);
    assert_eq!(s.bump_collection_version(&docs.id).await.unwrap(), 2);
    assert_eq!(
        s.collection_by_id(&docs.id).await.unwrap().unwrap().version,
        2
    );
    assert_eq!(s.bump_collection_version("missing").await.unwrap(), 0);

    // Documents: inserted queued, listed by id with a cursor, status updates kept.
    let ids: Vec<String> = (0..5).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let metas = [
        json!({"lang": "en", "year": 2024, "draft": false, "published": "2024-03-05T10:00:00Z", "score": 7.5}),
        json!({"lang": "en", "year": 2023, "published": "2023-12-31"}),
        json!({"lang": "de", "year": 2024, "draft": null, "published": "not a date", "score": "high"}),
        json!({}),
        json!({"lang": "en", "year": 2024, "team": "ops \"sre\"", "published": "2024-07-01", "score": 9}),
    ];
    for (id, m) in ids.iter().zip(&metas) {
        let d = s
            .insert_document(new_doc(&alpha.id, &docs.id, id, m.clone()))
            .await
            .unwrap();
        assert_eq!(d.status, DocumentStatus::Queued);
        assert_eq!(&serde_json::Value::Object(d.metadata), m);
    }
    assert!(matches!(
        s.insert_document(new_doc(&alpha.id, &docs.id, &ids[0], json!({})))
            .await,
        Err(MetadataError::Conflict { .. })
    ));
    let got = s.document(&ids[0]).await.unwrap().unwrap();
    assert_eq!(got.title, format!("title {}", ids[0]));
    assert_eq!(
        got.source.as_deref(),
        Some(format!("{}.md", ids[0]).as_str())
    );
    assert_eq!(got.metadata, metas[0].as_object().unwrap().clone());
    assert_eq!(got.size_bytes, 42);
    assert_eq!(s.document("missing").await.unwrap(), None);

    let page1 = s.list_documents(&docs.id, None, None, 2).await.unwrap();
    let page2 = s
        .list_documents(&docs.id, None, Some(&page1[1].id), 2)
        .await
        .unwrap();
    let page3 = s
        .list_documents(&docs.id, None, Some(&page2[1].id), 2)
        .await
        .unwrap();
    let paged: Vec<_> = page1
        .iter()
        .chain(&page2)
        .chain(&page3)
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(paged, ids, "documents are listed in id order");

    s.set_document_status(&ids[1], DocumentStatus::Indexed, None, 7)
        .await
        .unwrap();
    s.set_document_status(&ids[2], DocumentStatus::Failed, Some("bad pdf"), 0)
        .await
        .unwrap();
    let d1 = s.document(&ids[1]).await.unwrap().unwrap();
    assert_eq!((d1.status, d1.chunk_count), (DocumentStatus::Indexed, 7));
    let d2 = s.document(&ids[2]).await.unwrap().unwrap();
    assert_eq!(d2.status, DocumentStatus::Failed);
    assert_eq!(d2.error.as_deref(), Some("bad pdf"));
    let failed = s
        .list_documents(&docs.id, Some(DocumentStatus::Failed), None, 100)
        .await
        .unwrap();
    assert_eq!(
        failed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [ids[2].as_str()],
        "only the failed document"
    );
    let queued = s
        .list_documents(&docs.id, Some(DocumentStatus::Queued), None, 100)
        .await
        .unwrap();
    assert_eq!(queued.len(), ids.len() - 2, "the others are still queued");

    // Metadata filters: every pair must match; null matches a missing key too.
    let matching = |f: serde_json::Value| {
        let f = f.as_object().cloned().unwrap();
        let c = docs.id.clone();
        async move {
            let f = ragplane::metadata::filter::MetadataFilter::parse(&f).unwrap();
            let mut m = s.documents_matching(&c, &f).await.unwrap();
            m.sort();
            m
        }
    };
    let pick = |idx: &[usize]| idx.iter().map(|&i| ids[i].clone()).collect::<Vec<_>>();
    assert_eq!(matching(json!({"lang": "en"})).await, pick(&[0, 1, 4]));
    assert_eq!(
        matching(json!({"lang": "en", "year": 2024})).await,
        pick(&[0, 4])
    );
    assert_eq!(matching(json!({"draft": false})).await, pick(&[0]));
    assert_eq!(matching(json!({"team": "ops \"sre\""})).await, pick(&[4]));
    assert_eq!(matching(json!({"draft": null})).await, pick(&[1, 2, 3, 4]));
    assert_eq!(matching(json!({"lang": "fr"})).await, pick(&[]));
    assert_eq!(matching(json!({})).await, pick(&[0, 1, 2, 3, 4]));
    // Finishing a document's indexing: it becomes `indexed` with its chunks' provenance, which
    // replaces what its generation had, and the collection's version moves. Provenance is read
    // back by (document, chunk) pairs.
    use ragplane::metadata::ChunkProvenance;
    let prov = |start: i64, page: Option<i32>, h: &[&str]| ChunkProvenance {
        start,
        end: start + 10,
        page,
        headings: h.iter().map(|s| s.to_string()).collect(),
    };
    let version = |c: String| async move { s.collection_by_id(&c).await.unwrap().unwrap().version };
    let before = version(docs.id.clone()).await;
    assert!(s
        .finish_indexing(
            &docs.id,
            &ids[1],
            0,
            None,
            &[
                (0, prov(0, Some(1), &["A"])),
                (1, prov(8, Some(2), &["A", "B \"q\""])),
            ],
        )
        .await
        .unwrap());
    assert_eq!(version(docs.id.clone()).await, before + 1);
    assert!(s
        .finish_indexing(
            &docs.id,
            &ids[1],
            0,
            None,
            &[(0, prov(0, None, &[])), (1, prov(5, None, &["C"]))],
        )
        .await
        .unwrap());
    let d1 = s.document(&ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (d1.status, d1.chunk_count, d1.error),
        (DocumentStatus::Indexed, 2, None)
    );
    // Another index generation (a model switch under way) keeps its own.
    assert!(s
        .finish_indexing(
            &docs.id,
            &ids[1],
            1,
            None,
            &[(1, prov(99, Some(9), &["N"]))]
        )
        .await
        .unwrap());
    assert_eq!(version(docs.id.clone()).await, before + 3);
    // Written into the current generation too (a new document while its collection switches
    // models): the same provenance in both.
    assert!(s
        .finish_indexing(&docs.id, &ids[2], 1, Some(0), &[(0, prov(3, None, &["D"]))])
        .await
        .unwrap());
    let both = [(ids[2].clone(), 0)];
    for generation in [0, 1] {
        let found = s.chunk_provenance(&both, generation).await.unwrap();
        assert_eq!(
            found[&both[0]],
            prov(3, None, &["D"]),
            "generation {generation}"
        );
    }
    let keys = vec![
        (ids[1].clone(), 1),
        (ids[1].clone(), 7),
        (ids[0].clone(), 0),
    ];
    let found = s.chunk_provenance(&keys, 0).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[&(ids[1].clone(), 1)], prov(5, None, &["C"]));
    let found = s.chunk_provenance(&keys, 1).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[&(ids[1].clone(), 1)], prov(99, Some(9), &["N"]));
    assert!(s.chunk_provenance(&[], 0).await.unwrap().is_empty());

    // Operators: in, not (a missing key passes), numeric and date ranges (values of another
    // type never match a range).
    assert_eq!(
        matching(json!({"lang": {"in": ["de", "fr"]}})).await,
        pick(&[2])
    );
    assert_eq!(
        matching(json!({"year": {"in": [2023, 2025]}})).await,
        pick(&[1])
    );
    assert_eq!(
        matching(json!({"lang": {"not": "en"}})).await,
        pick(&[2, 3])
    );
    assert_eq!(
        matching(json!({"lang": {"not": ["en", "de"]}})).await,
        pick(&[3])
    );
    assert_eq!(
        matching(json!({"year": {"gte": 2024}})).await,
        pick(&[0, 2, 4])
    );
    assert_eq!(
        matching(json!({"year": {"gt": 2023, "lt": 2024}})).await,
        pick(&[])
    );
    assert_eq!(
        matching(json!({"score": {"gt": 7, "lte": 9}})).await,
        pick(&[0, 4])
    );
    assert_eq!(
        matching(json!({"published": {"gte": "2024-01-01"}})).await,
        pick(&[0, 4])
    );
    assert_eq!(
        matching(json!({"published": {"gte": "2023-12-31", "lt": "2024-07-01"}})).await,
        pick(&[0, 1])
    );
    assert_eq!(
        matching(json!({"lang": "en", "year": {"lte": 2024}, "published": {"lt": "2024-06-01"}}))
            .await,
        pick(&[0, 1])
    );

    // Orphans: queued or processing with no live job.
    let mut orphans: Vec<_> = s
        .orphaned_documents()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    orphans.sort();
    assert_eq!(orphans, pick(&[0, 3, 4]));

    // A document marked deleting refuses every status change, and is hidden from lists and
    // filters; the sweep finds it.
    s.mark_document_deleting(&ids[3]).await.unwrap();
    assert!(!s
        .set_document_status(&ids[3], DocumentStatus::Indexed, None, 3)
        .await
        .unwrap());
    let before = version(docs.id.clone()).await;
    assert!(!s
        .finish_indexing(&docs.id, &ids[3], 0, None, &[(0, prov(0, None, &[]))])
        .await
        .unwrap());
    assert_eq!(version(docs.id.clone()).await, before, "nothing written");
    let of_3 = [(ids[3].clone(), 0)];
    assert!(s.chunk_provenance(&of_3, 0).await.unwrap().is_empty());
    assert!(!s
        .finish_indexing(&docs.id, "missing", 0, None, &[])
        .await
        .unwrap());
    assert_eq!(
        s.document(&ids[3]).await.unwrap().unwrap().status,
        DocumentStatus::Deleting
    );
    let listed: Vec<_> = s
        .list_documents(&docs.id, None, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(!listed.contains(&ids[3]) && listed.len() == 4, "{listed:?}");
    assert_eq!(matching(json!({})).await, pick(&[0, 1, 2, 4]));
    let deleting: Vec<_> = s
        .deleting_documents()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(deleting, pick(&[3]));
    let counts = s.document_status_counts(&docs.id).await.unwrap();
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<i64>(), 5, "{counts:?}");
    assert!(counts.contains(&("deleting".to_string(), 1)), "{counts:?}");
    assert!(s
        .set_document_status(&ids[4], DocumentStatus::Indexed, None, 1)
        .await
        .unwrap());
    assert!(!s
        .set_document_status("missing", DocumentStatus::Indexed, None, 1)
        .await
        .unwrap());

    // A model switch completes only once no live document is left in the old generation,
    // and only once.
    let switching = s
        .start_model_switch(
            &docs.id,
            ModelSwitch {
                model: "next",
                probe: "probe-next",
                dimension: 256,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            switching.generation,
            switching.next_model.as_deref(),
            switching.next_dimension
        ),
        (0, Some("next"), Some(256))
    );
    assert!(!s.finish_model_switch(&docs.id, 0).await.unwrap());
    let listed = |switched| async move {
        let all = s.generational_collections(switched).await.unwrap();
        all.into_iter().map(|c| c.id).collect::<Vec<_>>()
    };
    for switched in [false, true] {
        assert_eq!(
            listed(switched).await,
            std::slice::from_ref(&docs.id),
            "only the switching collection"
        );
    }
    // Failed and deleting documents do not hold the switch back.
    let mut live = Vec::new();
    for id in &ids {
        let d = s.document(id).await.unwrap().unwrap();
        if !matches!(d.status, DocumentStatus::Failed | DocumentStatus::Deleting) {
            live.push(id);
        }
    }
    assert!(
        live.len() < ids.len(),
        "some documents are failed or deleting"
    );
    // ids[1] is written into generation 1 again, with the provenance it had there.
    let in_next = [(1, prov(99, Some(9), &["N"]))];
    for id in &live {
        let provenance: &[_] = if **id == ids[1] { &in_next } else { &[] };
        assert!(s
            .finish_indexing(&docs.id, id, 1, None, provenance)
            .await
            .unwrap());
    }
    assert!(s.finish_model_switch(&docs.id, 0).await.unwrap());
    assert!(
        !s.finish_model_switch(&docs.id, 0).await.unwrap(),
        "only once"
    );
    // The previous generation's provenance stays for searches begun before the switch, until
    // it is dropped; the new one's stays.
    let chunk = [(ids[1].clone(), 1)];
    assert_eq!(s.chunk_provenance(&chunk, 0).await.unwrap().len(), 1);
    // ids[1]'s two chunks and ids[2]'s one.
    assert_eq!(s.delete_chunk_provenance(&docs.id, 0).await.unwrap(), 3);
    assert!(s.chunk_provenance(&chunk, 0).await.unwrap().is_empty());
    assert_eq!(s.chunk_provenance(&chunk, 1).await.unwrap().len(), 1);
    let switched = s.collection_by_id(&docs.id).await.unwrap().unwrap();
    assert_eq!(
        (
            switched.generation,
            switched.dimension,
            switched.embedding_model.as_deref(),
            switched.embedding_probe.as_deref(),
            switched.next_probe,
            switched.version > switching.version,
        ),
        (1, 256, Some("next"), Some("probe-next"), None, true)
    );
    assert!(listed(false).await.is_empty(), "no longer switching");
    assert_eq!(
        listed(true).await,
        std::slice::from_ref(&docs.id),
        "switched once"
    );
    // A switch started again (to another model, say) forgets what was written for the one it
    // replaces.
    let third = ModelSwitch {
        model: "third",
        probe: "probe-third",
        dimension: 512,
    };
    s.start_model_switch(&docs.id, third).await.unwrap();
    for id in &live {
        assert!(s.finish_indexing(&docs.id, id, 2, None, &[]).await.unwrap());
    }
    s.start_model_switch(&docs.id, third).await.unwrap();
    assert!(!s.finish_model_switch(&docs.id, 1).await.unwrap());
    for id in &live {
        assert!(s.finish_indexing(&docs.id, id, 2, None, &[]).await.unwrap());
    }
    assert!(s.finish_model_switch(&docs.id, 1).await.unwrap());

    // Deleting a document, then a collection with its documents.
    s.delete_document(&ids[3]).await.unwrap();
    assert_eq!(s.document(&ids[3]).await.unwrap(), None);
    s.delete_collection(&docs.id).await.unwrap();
    assert_eq!(s.collection_by_id(&docs.id).await.unwrap(), None);
    assert_eq!(s.document(&ids[0]).await.unwrap(), None);
    assert_eq!(s.list_collections(&alpha.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("m.db")).await.unwrap();
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    suite(&s).await;
}

async fn postgres(test: &str) -> Option<(String, PostgresStore)> {
    let url = fresh_postgres_database(test).await.unwrap()?;
    let s = PostgresStore::connect(&PostgresConfig::new(url.clone())).unwrap();
    s.migrate().await.unwrap();
    Some((url, s))
}

#[tokio::test]
async fn postgres_store() {
    let Some((_, s)) = postgres("postgres_store").await else {
        return;
    };
    s.migrate().await.unwrap();
    suite(&s).await;
}

/// A TCP port that accepts connections and never answers, counting them: a replica that hangs.
async fn silent_server() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn postgres_reads_go_to_replicas_and_skip_one_that_is_down() {
    let Some((primary_url, _)) = postgres("postgres_replicas (primary)").await else {
        return;
    };
    // A separate database stands in for a replica, so that where a read went can be seen.
    let Some((replica_url, replica)) = postgres("postgres_replicas (replica)").await else {
        return;
    };
    replica.create_tenant("only-on-the-replica").await.unwrap();
    let (hung_port, attempts) = silent_server().await;

    let mut cfg = PostgresConfig::new(primary_url);
    cfg.replica_urls = vec![
        Secret::new(format!(
            "postgres://postgres@127.0.0.1:{hung_port}/postgres"
        )),
        Secret::new("postgres://postgres@127.0.0.1:1/postgres"), // refused
        Secret::new(replica_url),
    ];
    cfg.replica_acquire_timeout_ms = 300;
    cfg.replica_retry_secs = 2;
    let s = PostgresStore::connect(&cfg).unwrap();
    let t = s.create_tenant("written-to-the-primary").await.unwrap();

    // Every read succeeds on the live replica whichever replica is first in turn.
    for _ in 0..6 {
        let names: Vec<_> = s
            .list_tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(
            names,
            ["only-on-the-replica"],
            "listings are served by the replica"
        );
    }
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "a replica that is down is skipped"
    );

    // A key lookup the replica misses is asked of the primary: no lag-induced 404s.
    s.create_collection(&t.id, "fresh", "", 384).await.unwrap();
    assert!(s
        .collection_by_name(&t.id, "fresh")
        .await
        .unwrap()
        .is_some());

    // Keys are looked up on the primary alone: a key revoked there but still on a lagging
    // replica must not authenticate.
    let elsewhere = replica.create_tenant("keys-on-the-replica").await.unwrap();
    replica
        .create_api_key(NewApiKey {
            tenant_id: &elsewhere.id,
            name: "stale",
            key_hash: "stale-hash",
            prefix: "rp_stale00",
            scope: Scope::ClusterAdmin,
            expires_at: None,
        })
        .await
        .unwrap();
    assert_eq!(
        s.api_key_by_hash("stale-hash").await.unwrap(),
        None,
        "a key only a replica still has"
    );

    // After the retry interval the replica is tried again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..3 {
        s.list_tenants().await.unwrap();
    }
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "a skipped replica is retried later"
    );
}

#[tokio::test]
async fn postgres_down_is_unavailable_not_internal() {
    // Nothing listens on port 1: the error must say "unavailable" (HTTP 503), not 500.
    let mut cfg = PostgresConfig::new("postgres://postgres@127.0.0.1:1/postgres");
    cfg.acquire_timeout_ms = 500;
    let s = PostgresStore::connect(&cfg).unwrap();
    let err = s.list_tenants().await.unwrap_err();
    assert!(matches!(err, MetadataError::Unavailable { .. }), "{err:?}");
    let e = ragplane::error::Error::from(err);
    assert!(
        matches!(e, ragplane::error::Error::Unavailable { .. }),
        "{e:?}"
    );
}
