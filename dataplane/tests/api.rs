//! HTTP API tests in-process (tower `oneshot`) on the embedded backends and the real model:
//! the ingest → search → query flow, tenant isolation on every route, and every error code.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use ragplane::app::App;
use ragplane_config::Config;
use serde_json::{json, Value};

mod common;

use common::*;

/// Document `id` as the metadata store holds it.
async fn stored_document(e: &Env, id: &str) -> ragplane::metadata::Document {
    e.app
        .metadata
        .document(id)
        .await
        .expect("the metadata store answers")
        .expect("the document exists")
}

fn multipart(name: &str, ctype: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "XBOUNDARYX";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{{\"lang\":\"en\"}}\r\n--{boundary}--\r\n")
            .as_bytes(),
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_search_query_reindex_delete() {
    let Some(e) = env(|_| {}).await else { return };
    let r = &e.router;
    let c = create_collection(r, ADMIN, "docs").await;
    assert_eq!(c.status, StatusCode::CREATED, "{:?}", c.body);
    assert_eq!(c.body["dimension"], 384);

    let (bees, job) = upload_text(
        r,
        ADMIN,
        "docs",
        "Honeybees perform a waggle dance to tell nestmates where flowers are.",
        "bees",
    )
    .await;
    let (md_ctype, md_body) = multipart(
        "lighthouse.md",
        "text/markdown",
        b"# Lighthouse\n\nThe lamp of the Skerry Point lighthouse is visible from 22 nautical miles away.",
    );
    let up = send(
        r,
        post_raw("/v1/collections/docs/documents", ADMIN, &md_ctype, md_body),
    )
    .await;
    assert_eq!(up.status, StatusCode::ACCEPTED, "{:?}", up.body);
    let lighthouse = up.body["document"]["id"].as_str().unwrap().to_string();
    assert_eq!(up.body["document"]["content_type"], "text/markdown");
    assert_eq!(up.body["document"]["metadata"]["lang"], "en");
    let raw = send(
        r,
        post_raw(
            "/v1/collections/docs/documents?title=Bread",
            ADMIN,
            "text/html; charset=utf-8",
            "<html><body><p>Sourdough bread needs a starter of wild yeast.</p></body></html>",
        ),
    )
    .await;
    assert_eq!(raw.status, StatusCode::ACCEPTED, "{:?}", raw.body);
    let bread = raw.body["document"]["id"].as_str().unwrap().to_string();
    assert_eq!(raw.body["document"]["title"], "Bread");

    for id in [&bees, &lighthouse, &bread] {
        let d = wait_status(r, ADMIN, "docs", id, "indexed").await;
        assert!(d["chunk_count"].as_i64().unwrap() >= 1);
    }
    wait_job(r, ADMIN, &job, "succeeded").await;

    let s = call(r, Method::POST, "/v1/search", ADMIN, Some(json!({ "collection": "docs", "query": "how far can the lighthouse lamp be seen?", "top_k": 3 }))).await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    assert_eq!(s.body["hits"][0]["document_id"], lighthouse.as_str());
    // Each hit says where it comes from: character offsets, page (PDF only) and headings.
    let prov = &s.body["hits"][0]["provenance"];
    assert_eq!(prov["headings"], json!(["Lighthouse"]), "{prov:?}");
    assert_eq!(prov["start"], 0);
    assert_eq!(
        prov["end"].as_i64().unwrap() as usize,
        s.body["hits"][0]["text"].as_str().unwrap().chars().count()
    );
    assert!(prov["page"].is_null());
    assert_eq!(s.body["hits"].as_array().unwrap().len(), 3);
    // The default mode is hybrid: the top hit was found by both retrievers and shows both.
    assert!(s.body["hits"][0]["dense_score"].as_f64().unwrap() > 0.3);
    assert!(s.body["hits"][0]["keyword_score"].as_f64().unwrap() > 0.0);
    // Filter operators narrow the same way.
    let f = call(r, Method::POST, "/v1/search", ADMIN, Some(json!({ "collection": "docs", "query": "lighthouse", "filter": { "topic": { "in": ["bees", "ants"] } } }))).await;
    assert_eq!(f.status, StatusCode::OK, "{:?}", f.body);
    assert!(f.body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["document_id"] == bees.as_str()));
    let f = call(
        r,
        Method::POST,
        "/v1/search",
        ADMIN,
        Some(json!({ "collection": "docs", "query": "x", "filter": { "topic": { "near": 1 } } })),
    )
    .await;
    assert_eq!(f.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        f.body["error"]
            .as_str()
            .unwrap()
            .contains("unknown operator \"near\""),
        "{:?}",
        f.body
    );
    // Keyword mode: BM25 over the analysed text; chunks with none of the words are absent.
    let kw = call(r, Method::POST, "/v1/search", ADMIN, Some(json!({ "collection": "docs", "query": "Skerry nautical miles", "mode": "keyword", "top_k": 3 }))).await;
    assert_eq!(kw.status, StatusCode::OK, "{:?}", kw.body);
    let hits = kw.body["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{:?}", kw.body);
    assert_eq!(hits[0]["document_id"], lighthouse.as_str());
    assert!(hits[0]["dense_score"].is_null());
    assert_eq!(hits[0]["score"], hits[0]["keyword_score"]);
    let stop = call(
        r,
        Method::POST,
        "/v1/search",
        ADMIN,
        Some(json!({ "collection": "docs", "query": "the and of", "mode": "keyword" })),
    )
    .await;
    assert_eq!(stop.status, StatusCode::OK);
    assert!(stop.body["hits"].as_array().unwrap().is_empty());
    // Dense mode ranks by cosine similarity alone.
    let dense = call(r, Method::POST, "/v1/search", ADMIN, Some(json!({ "collection": "docs", "query": "where do bees find flowers?", "mode": "dense", "top_k": 3 }))).await;
    assert_eq!(dense.body["hits"][0]["document_id"], bees.as_str());
    assert_eq!(
        dense.body["hits"][0]["score"],
        dense.body["hits"][0]["dense_score"]
    );
    assert!(dense.body["hits"][0]["keyword_score"].is_null());
    // A score threshold drops weak hits; a weighted DBSF fusion leans towards one list.
    let none = call(
        r,
        Method::POST,
        "/v1/search",
        ADMIN,
        Some(json!({ "collection": "docs", "query": "bees", "mode": "dense", "min_score": 1.5 })),
    )
    .await;
    assert!(
        none.body["hits"].as_array().unwrap().is_empty(),
        "{:?}",
        none.body
    );
    let dbsf = call(r, Method::POST, "/v1/search", ADMIN, Some(json!({ "collection": "docs", "query": "wild yeast starter", "fusion": { "method": "dbsf", "keyword_weight": 2.0, "candidates": 10 } }))).await;
    assert_eq!(dbsf.status, StatusCode::OK, "{:?}", dbsf.body);
    assert_eq!(dbsf.body["hits"][0]["document_id"], bread.as_str());
    // Grouping by document returns each document once.
    let grouped = call(r, Method::POST, "/v1/search", ADMIN, Some(json!({ "collection": "docs", "query": "lighthouse bees bread", "group_by": "document", "top_k": 10 }))).await;
    let docs: Vec<&str> = grouped.body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["document_id"].as_str().unwrap())
        .collect();
    let distinct: std::collections::HashSet<&str> = docs.iter().copied().collect();
    assert_eq!(docs.len(), distinct.len(), "{docs:?}");
    // A metadata filter narrows the search.
    let f = call(
        r,
        Method::POST,
        "/v1/search",
        ADMIN,
        Some(json!({ "collection": "docs", "query": "lighthouse", "filter": { "topic": "bees" } })),
    )
    .await;
    let hits = f.body["hits"].as_array().unwrap();
    assert!(
        !hits.is_empty() && hits.iter().all(|h| h["document_id"] == bees.as_str()),
        "{:?}",
        f.body
    );

    let q = call(
        r,
        Method::POST,
        "/v1/query",
        ADMIN,
        Some(json!({ "collection": "docs", "query": "what do bees dance for?" })),
    )
    .await;
    assert_eq!(q.status, StatusCode::OK);
    assert_eq!(q.body["generation"], "not_configured");
    assert!(q.body["answer"].is_null());
    assert_eq!(q.body["sources"][0]["document_id"], bees.as_str());

    // Pagination walks every document exactly once.
    let p1 = call(
        r,
        Method::GET,
        "/v1/collections/docs/documents?limit=2",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(p1.body["documents"].as_array().unwrap().len(), 2);
    let cursor = p1.body["next_cursor"].as_str().unwrap();
    let p2 = call(
        r,
        Method::GET,
        &format!("/v1/collections/docs/documents?limit=2&cursor={cursor}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(p2.body["documents"].as_array().unwrap().len(), 1);
    assert!(p2.body["next_cursor"].is_null());
    // A page that holds the last document has no cursor, even when it is full.
    let whole = call(
        r,
        Method::GET,
        "/v1/collections/docs/documents?limit=3",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(whole.body["documents"].as_array().unwrap().len(), 3);
    assert!(whole.body["next_cursor"].is_null(), "{}", whole.body);

    let ri = call(
        r,
        Method::POST,
        &format!("/v1/collections/docs/documents/{bees}/reindex"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(ri.status, StatusCode::ACCEPTED);
    wait_status(r, ADMIN, "docs", &bees, "indexed").await;
    let key = ragplane::app::key_of(
        &e.app
            .metadata
            .collection_by_name(&e.app.default_tenant, "docs")
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(
        e.app.vectors.count(&key, None).await.unwrap(),
        3,
        "re-indexing replaces points, never duplicates"
    );

    let d = call(
        r,
        Method::DELETE,
        &format!("/v1/collections/docs/documents/{lighthouse}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    let s = call(r, Method::POST, "/v1/search", ADMIN, Some(json!({ "collection": "docs", "query": "how far can the lighthouse lamp be seen?", "top_k": 10 }))).await;
    assert!(
        s.body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["document_id"] != lighthouse.as_str()),
        "deleted document is gone, cache included"
    );

    let del = call(r, Method::DELETE, "/v1/collections/docs", ADMIN, None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(r, Method::GET, "/v1/collections/docs", ADMIN, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_get_404_on_every_route() {
    let Some(e) = env(|_| {}).await else { return };
    let r = &e.router;
    assert_eq!(
        call(
            r,
            Method::POST,
            "/v1/tenants",
            ADMIN,
            Some(json!({ "name": "b" }))
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let k = call(
        r,
        Method::POST,
        "/v1/tenants/b/keys",
        ADMIN,
        Some(json!({ "name": "b-app" })),
    )
    .await;
    assert_eq!(k.status, StatusCode::CREATED, "{:?}", k.body);
    let b = k.body["key"].as_str().unwrap().to_string();

    create_collection(r, ADMIN, "secret").await;
    let (doc, job) = upload_text(r, ADMIN, "secret", "The vault code is 4711.", "vault").await;
    wait_status(r, ADMIN, "secret", &doc, "indexed").await;

    let search = json!({ "collection": "secret", "query": "vault code" });
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/collections/secret".into(), None),
        (Method::DELETE, "/v1/collections/secret".into(), None),
        (Method::GET, "/v1/collections/secret/documents".into(), None),
        (
            Method::POST,
            "/v1/collections/secret/documents".into(),
            Some(json!({ "text": "intruder" })),
        ),
        (
            Method::GET,
            format!("/v1/collections/secret/documents/{doc}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/v1/collections/secret/documents/{doc}"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/collections/secret/documents/{doc}/reindex"),
            None,
        ),
        (Method::GET, format!("/v1/jobs/{job}"), None),
        (Method::POST, "/v1/search".into(), Some(search.clone())),
        (Method::POST, "/v1/query".into(), Some(search.clone())),
    ];
    for (m, uri, body) in &routes {
        let resp = call(r, m.clone(), uri, &b, body.clone()).await;
        assert_eq!(
            resp.status,
            StatusCode::NOT_FOUND,
            "{m} {uri}: {:?}",
            resp.body
        );
        assert_eq!(resp.body["type"], "not_found");
    }
    let list = call(r, Method::GET, "/v1/collections", &b, None).await;
    assert_eq!(list.body, json!([]));
    // Tenant B may use the same name; its collection is separate.
    assert_eq!(
        create_collection(r, &b, "secret").await.status,
        StatusCode::CREATED
    );
    let s = call(r, Method::POST, "/v1/search", &b, Some(search)).await;
    assert_eq!(
        (s.status, s.body["hits"].clone()),
        (StatusCode::OK, json!([]))
    );
    // A's document is untouched by all of the above.
    let d = call(
        r,
        Method::GET,
        &format!("/v1/collections/secret/documents/{doc}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(d.body["status"], "indexed");
    // B is not an admin.
    let t = call(
        r,
        Method::POST,
        "/v1/tenants",
        &b,
        Some(json!({ "name": "c" })),
    )
    .await;
    assert_eq!(t.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_a_json_error() {
    let Some(e) = env(|c| c.limits.max_body_bytes = 4096).await else {
        return;
    };
    let r = &e.router;
    create_collection(r, ADMIN, "docs").await;

    let check = |resp: Resp, status: StatusCode, kind: &str, needle: &str| {
        assert_eq!(resp.status, status, "{:?}", resp.body);
        assert_eq!(resp.body["type"], kind, "{:?}", resp.body);
        let msg = resp.body["error"].as_str().unwrap_or_default().to_string();
        assert!(
            msg.contains(needle),
            "error {msg:?} should mention {needle:?}"
        );
    };

    check(
        send(r, req(Method::GET, "/v1/collections", None, None)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing API key",
    );
    check(
        call(r, Method::GET, "/v1/collections", "rp_wrong", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "unknown",
    );
    let malformed = post_raw("/v1/search", ADMIN, "application/json", "{not json");
    check(
        send(r, malformed).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "JSON",
    );
    check(
        call(
            r,
            Method::POST,
            "/v1/search",
            ADMIN,
            Some(json!({ "collection": "docs", "query": "x", "top_k": 0 })),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        "top_k",
    );
    for (body, field) in [
        (
            json!({ "collection": "docs", "query": "x", "mode": "fuzzy" }),
            "mode",
        ),
        (
            json!({ "collection": "docs", "query": "x", "fusion": { "k": -1.0 } }),
            "fusion.k",
        ),
        (
            json!({ "collection": "docs", "query": "x", "fusion": { "dense_weight": 0.0, "keyword_weight": 0.0 } }),
            "fusion",
        ),
        (
            json!({ "collection": "docs", "query": "x", "fusion": { "candidates": 0 } }),
            "fusion.candidates",
        ),
        (
            json!({ "collection": "docs", "query": "x", "fusion": { "method": "max" } }),
            "method",
        ),
        (
            json!({ "collection": "docs", "query": "x", "group_by": "chunk" }),
            "group_by",
        ),
    ] {
        check(
            call(r, Method::POST, "/v1/search", ADMIN, Some(body)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            field,
        );
    }
    check(
        call(
            r,
            Method::POST,
            "/v1/search",
            ADMIN,
            Some(json!({ "collection": "docs", "qeury": "typo" })),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        "qeury",
    );
    check(
        call(
            r,
            Method::POST,
            "/v1/collections",
            ADMIN,
            Some(json!({ "name": "Bad Name!" })),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        "name",
    );
    check(
        create_collection(r, ADMIN, "docs").await,
        StatusCode::CONFLICT,
        "conflict",
        "already exists",
    );
    let big = post_raw(
        "/v1/collections/docs/documents",
        ADMIN,
        "text/plain",
        "x".repeat(10_000),
    );
    check(
        send(r, big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "",
    );
    let big_json = call(
        r,
        Method::POST,
        "/v1/collections/docs/documents",
        ADMIN,
        Some(json!({ "text": "y".repeat(10_000) })),
    )
    .await;
    check(
        big_json,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "",
    );
    let zip = post_raw(
        "/v1/collections/docs/documents",
        ADMIN,
        "application/zip",
        "PK",
    );
    check(
        send(r, zip).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "application/zip",
    );
    let (ctype, body) = multipart("archive.bin", "application/octet-stream", b"\x00\x01");
    let mp = post_raw("/v1/collections/docs/documents", ADMIN, &ctype, body);
    check(
        send(r, mp).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "archive.bin",
    );
    let search_form = post_raw(
        "/v1/search",
        ADMIN,
        "application/x-www-form-urlencoded",
        "q=1",
    );
    check(
        send(r, search_form).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "",
    );
    check(
        call(r, Method::GET, "/v1/nope", ADMIN, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "",
    );
    // A method a path does not take: 405 with the methods it does, for the API and the probes.
    for (method, path, allowed) in [
        (
            Method::PUT,
            "/v1/collections",
            ["GET", "HEAD", "POST"].as_slice(),
        ),
        (Method::POST, "/healthz", ["GET", "HEAD"].as_slice()),
    ] {
        let wrong = call(r, method.clone(), path, ADMIN, None).await;
        let mut allow: Vec<&str> = wrong.headers[header::ALLOW]
            .to_str()
            .unwrap()
            .split(',')
            .map(str::trim)
            .collect();
        allow.sort_unstable();
        assert_eq!(allow, allowed, "{method} {path}");
        check(
            wrong,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            method.as_str(),
        );
    }

    // A document that cannot be parsed ends `failed` with its reason.
    let pdf = post_raw(
        "/v1/collections/docs/documents",
        ADMIN,
        "application/pdf",
        "%PDF-1.4 garbage",
    );
    let up = send(r, pdf).await;
    assert_eq!(up.status, StatusCode::ACCEPTED);
    let id = up.body["document"]["id"].as_str().unwrap().to_string();
    let d = wait_status(r, ADMIN, "docs", &id, "failed").await;
    assert!(d["error"].as_str().unwrap().contains("PDF"), "{d:?}");
    // The failed documents alone, each with its reason.
    let fine = send(
        r,
        post_raw(
            "/v1/collections/docs/documents",
            ADMIN,
            "text/plain",
            "A document that parses.",
        ),
    )
    .await;
    assert_eq!(fine.status, StatusCode::ACCEPTED);
    let failed = call(
        r,
        Method::GET,
        "/v1/collections/docs/documents?status=failed",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(failed.status, StatusCode::OK, "{:?}", failed.body);
    let listed = failed.body["documents"].as_array().unwrap();
    assert!(
        listed.iter().any(|d| d["id"] == id.as_str()),
        "{:?}",
        failed.body
    );
    assert!(
        listed
            .iter()
            .all(|d| d["status"] == "failed" && d["error"].is_string()),
        "{:?}",
        failed.body
    );
    let all = call(
        r,
        Method::GET,
        "/v1/collections/docs/documents",
        ADMIN,
        None,
    )
    .await;
    assert!(
        all.body["documents"].as_array().unwrap().len() > listed.len(),
        "the filter leaves the others out: {:?}",
        all.body
    );
    check(
        call(
            r,
            Method::GET,
            "/v1/collections/docs/documents?status=deleting",
            ADMIN,
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        "status",
    );
    check(
        call(
            r,
            Method::GET,
            "/v1/collections/docs/documents?status=broken",
            ADMIN,
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        "broken",
    );
    let job = call(
        r,
        Method::GET,
        &format!("/v1/jobs/{}", up.body["job_id"].as_str().unwrap()),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(job.body["status"], "dead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_answers_429_and_503_with_retry_after() {
    let Some(e) = env(|c| {
        c.embedding.queue_capacity = 1;
        c.cache.embeddings = false;
        c.cache.results = false;
        c.limits.max_concurrent_requests = 64;
    })
    .await
    else {
        return;
    };
    let r = &e.router;
    create_collection(r, ADMIN, "docs").await;
    let long = "lorem ipsum dolor ".repeat(60);
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let router = r.clone();
            let body = json!({ "collection": "docs", "query": format!("{long} {i}") });
            tokio::spawn(async move {
                send(
                    &router,
                    req(Method::POST, "/v1/search", Some(ADMIN), Some(body)),
                )
                .await
            })
        })
        .collect();
    let mut saw_429 = false;
    for t in tasks {
        let resp = t.await.unwrap();
        match resp.status {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => {
                saw_429 = true;
                assert_eq!(resp.body["type"], "overloaded");
                assert!(resp.headers.contains_key(header::RETRY_AFTER));
            }
            other => panic!("unexpected {other}: {:?}", resp.body),
        }
    }
    assert!(
        saw_429,
        "48 concurrent uncached searches against an inference queue of 1 must see 429"
    );

    // The request limit: one request holds the only slot while its body trickles in.
    let Some(e2) = env(|c| c.limits.max_concurrent_requests = 1).await else {
        return;
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let slow = Request::post("/v1/collections")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(tokio_stream_from(rx)))
        .unwrap();
    let router = e2.router.clone();
    let held = tokio::spawn(async move { send(&router, slow).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shed = call(&e2.router, Method::GET, "/v1/collections", ADMIN, None).await;
    assert_eq!(
        shed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        shed.body
    );
    assert_eq!(shed.headers[header::RETRY_AFTER], "1");
    // Probes and scrapes are not shed: a busy pod is neither restarted nor taken out of its
    // Service for being busy.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let probe = send(&e2.router, req(Method::GET, path, None, None)).await;
        assert_eq!(probe.status, StatusCode::OK, "{path} while saturated");
    }
    tx.send(Ok(bytes::Bytes::from_static(br#"{"name":"later"}"#)))
        .await
        .unwrap();
    drop(tx);
    assert_eq!(held.await.unwrap().status, StatusCode::CREATED);

    // Readiness fails with 503 once the metadata store is gone.
    assert_eq!(
        send(&e2.router, req(Method::GET, "/readyz", None, None))
            .await
            .status,
        StatusCode::OK
    );
    e2.app.metadata.ping().await.unwrap();
    lose_object_store(&e2.app).await;
    let not_ready = send(&e2.router, req(Method::GET, "/readyz", None, None)).await;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(not_ready.headers.contains_key(header::RETRY_AFTER));
}

async fn lose_object_store(app: &App) {
    // The object store's root going away (a lost volume) makes the server unready.
    std::fs::remove_dir_all(app.config.objects_dir()).unwrap();
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_endpoints() {
    let Some(e) = env(|_| {}).await else { return };
    let r = &e.router;
    assert_eq!(
        send(r, req(Method::GET, "/healthz", None, None))
            .await
            .status,
        StatusCode::OK
    );
    let o = send(r, req(Method::GET, "/openapi.json", None, None)).await;
    assert_eq!(o.status, StatusCode::OK);
    assert!(
        o.body["paths"]["/v1/search"]["post"].is_object(),
        "{:?}",
        o.body["paths"]
    );
    create_collection(r, ADMIN, "docs").await;
    call(
        r,
        Method::POST,
        "/v1/search",
        ADMIN,
        Some(json!({ "collection": "docs", "query": "anything" })),
    )
    .await;
    let m = send(r, req(Method::GET, "/metrics", None, None)).await;
    let text = m.body.as_str().unwrap().to_string();
    for name in [
        "ragplane_http_requests_total",
        "ragplane_http_request_duration_seconds",
        "ragplane_queue_depth",
        "ragplane_embed_batch_size",
        "ragplane_embeddings_total",
        "ragplane_cache_requests_total",
        "ragplane_vector_search_seconds",
    ] {
        assert!(text.contains(name), "metrics lack {name}");
    }
    assert!(
        text.contains(r#"route="/v1/search""#),
        "requests are labelled by route"
    );
}

/// A stand-in chat server for the plumbing of `/v1/query` (the real LLM servers are exercised by
/// the generation tier's tests in `generation.rs`): it records the prompt and streams an answer
/// citing source 1, in the protocol's streaming format.
async fn stub_chat_server(
    path: &'static str,
    ollama: bool,
) -> (String, Arc<std::sync::Mutex<Vec<Value>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let handler = move |axum::Json(body): axum::Json<Value>| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(body.clone());
            let parts = ["The lamp is visible ", "from 22 nautical miles [1]."];
            let m = &body["model"];
            let mut out = String::new();
            for p in parts {
                let line = if ollama {
                    json!({ "model": m, "message": { "role": "assistant", "content": p }, "done": false })
                } else {
                    json!({ "model": m, "choices": [{ "index": 0, "delta": { "content": p } }] })
                };
                out.push_str(&if ollama {
                    format!("{line}\n")
                } else {
                    format!("data: {line}\n\n")
                });
            }
            if ollama {
                let done = json!({ "model": m, "message": { "role": "assistant", "content": "" }, "done": true,
                                   "done_reason": "stop", "prompt_eval_count": 50, "eval_count": 12 });
                out.push_str(&format!("{done}\n"));
            } else {
                let fin = json!({ "model": m, "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }] });
                let usage = json!({ "model": m, "choices": [], "usage": { "prompt_tokens": 50, "completion_tokens": 12 } });
                out.push_str(&format!("data: {fin}\n\ndata: {usage}\n\ndata: [DONE]\n\n"));
            }
            out
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            Router::new().route(path, axum::routing::post(handler)),
        )
        .await
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_sends_numbered_sources_and_reports_citations() {
    for (provider, path) in [("openai", "/v1/chat/completions"), ("ollama", "/api/chat")] {
        let (base, seen) = stub_chat_server(path, provider == "ollama").await;
        let url = if provider == "openai" {
            format!("{base}/v1")
        } else {
            base
        };
        let Some(e) = env(|c| {
            let mut ep = ragplane_config::GeneratorEndpoint::new(url, "stub-model");
            ep.timeout_secs = 10;
            ep.max_tokens = 64;
            c.generation = if provider == "openai" {
                ragplane_config::GenerationConfig::Openai(ep)
            } else {
                ragplane_config::GenerationConfig::Ollama(ep)
            };
        })
        .await
        else {
            return;
        };
        let r = &e.router;
        create_collection(r, ADMIN, "docs").await;
        let (id, _) = upload_text(
            r,
            ADMIN,
            "docs",
            "The lamp of Skerry Point is visible from 22 nautical miles.",
            "light",
        )
        .await;
        wait_status(r, ADMIN, "docs", &id, "indexed").await;
        let q = call(
            r,
            Method::POST,
            "/v1/query",
            ADMIN,
            Some(json!({ "collection": "docs", "query": "how far is the lamp visible?" })),
        )
        .await;
        assert_eq!(q.status, StatusCode::OK, "{provider}: {:?}", q.body);
        assert_eq!(q.body["generation"], "generated");
        assert_eq!(
            q.body["answer"],
            "The lamp is visible from 22 nautical miles [1]."
        );
        assert_eq!(q.body["cited"], json!([1]));
        assert_eq!(q.body["usage"]["completion_tokens"], 12);
        let sent = seen.lock().unwrap()[0].clone();
        assert_eq!(sent["model"], "stub-model");
        let prompt = sent["messages"][1]["content"].as_str().unwrap();
        assert!(
            prompt.contains("[1] The lamp of Skerry Point"),
            "{provider}: {prompt}"
        );
        assert!(
            prompt.ends_with("Question: how far is the lamp visible?"),
            "{prompt}"
        );
        assert!(q.body.get("prompt").is_none(), "the prompt came unasked");

        // Asked for, the prompt comes back exactly as sent: in the answer, and as the first
        // event of a stream, with every retrieved source.
        let body = json!({ "collection": "docs", "query": "how far is the lamp visible?",
                           "include_prompt": true });
        let q = call(r, Method::POST, "/v1/query", ADMIN, Some(body.clone())).await;
        assert_eq!(q.status, StatusCode::OK, "{provider}: {:?}", q.body);
        let sent = seen.lock().unwrap()[1].clone();
        assert_eq!(q.body["prompt"], sent["messages"], "{provider}");
        let mut stream_body = body;
        stream_body["stream"] = json!(true);
        let s = call(r, Method::POST, "/v1/query", ADMIN, Some(stream_body)).await;
        let text = s.body.as_str().unwrap();
        let first = text.split("\n\n").next().unwrap();
        assert!(first.starts_with("event: prompt\n"), "{provider}: {text}");
        let data: Value = serde_json::from_str(first.split_once("data: ").unwrap().1).unwrap();
        let sent = seen.lock().unwrap()[2].clone();
        assert_eq!(data["messages"], sent["messages"], "{provider}");
        assert_eq!(data["sources"][0]["title"], "light", "{provider}");

        // Three answers of 50 + 12 tokens each, counted against the admin key and `docs`.
        let u = call(r, Method::GET, "/v1/usage", ADMIN, None).await;
        assert_eq!(u.status, StatusCode::OK, "{:?}", u.body);
        assert_eq!(u.body["total"]["queries"], 3, "{provider}: {:?}", u.body);
        assert_eq!(
            u.body["total"]["llm_tokens"],
            3 * 62,
            "{provider}: {:?}",
            u.body
        );
        assert_eq!(u.body["collections"][0]["id"], "docs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_generator_is_503_with_retry_after() {
    let Some(e) = env(|c| {
        let mut ep = ragplane_config::GeneratorEndpoint::new(
            format!("http://127.0.0.1:{}/v1", free_port()),
            "m",
        );
        ep.timeout_secs = 5;
        c.generation = ragplane_config::GenerationConfig::Openai(ep);
    })
    .await
    else {
        return;
    };
    let r = &e.router;
    create_collection(r, ADMIN, "docs").await;
    let q = call(
        r,
        Method::POST,
        "/v1/query",
        ADMIN,
        Some(json!({ "collection": "docs", "query": "anything" })),
    )
    .await;
    assert_eq!(q.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", q.body);
    assert!(q.headers.contains_key(header::RETRY_AFTER));
    // The detail (which server, how it failed) stays in the log, under the request id.
    let id = q.headers["x-request-id"].to_str().unwrap();
    assert_eq!(q.body["request_id"], id);
    assert_eq!(
        q.body["error"],
        format!("the service is temporarily unavailable; retry in 5 s (request id {id})"),
        "{:?}",
        q.body
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The rate limit is per tenant: its keys share one budget, and other tenants have their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rate_limit_gets_429_with_retry_after() {
    let Some(e) = env(|c| {
        c.rate_limit.enabled = true;
        c.rate_limit.requests_per_second = 0.2;
        c.rate_limit.burst = 3;
    })
    .await
    else {
        return;
    };
    // Three requests of the default tenant's admin key use its whole burst.
    let t = call(
        &e.router,
        Method::POST,
        "/v1/tenants",
        ADMIN,
        Some(json!({"name": "other"})),
    )
    .await;
    assert_eq!(t.status, StatusCode::CREATED);
    let other = call(
        &e.router,
        Method::POST,
        "/v1/tenants/other/keys",
        ADMIN,
        Some(json!({})),
    )
    .await;
    let second = call(
        &e.router,
        Method::POST,
        "/v1/tenants/default/keys",
        ADMIN,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (other.status, second.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    let second_key = second.body["key"].as_str().unwrap();
    let other_key = other.body["key"].as_str().unwrap();
    let shared = call(&e.router, Method::GET, "/v1/collections", second_key, None).await;
    assert_eq!(
        shared.status,
        StatusCode::TOO_MANY_REQUESTS,
        "keys of one tenant share its budget"
    );
    let apart = call(&e.router, Method::GET, "/v1/collections", other_key, None).await;
    assert_eq!(apart.status, StatusCode::OK, "another tenant has its own");
    let limited = call(&e.router, Method::GET, "/v1/collections", ADMIN, None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.body["type"], "rate_limited");
    assert!(limited.body["error"]
        .as_str()
        .unwrap()
        .contains("rate limit exceeded for this tenant"));
    let wait: u64 = limited.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=5).contains(&wait),
        "one request per 5 s: retry within 5 s, got {wait}"
    );
    // The service endpoints are not rate limited.
    let health = send(&e.router, req(Method::GET, "/healthz", None, None)).await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_rate_limit_through_redis() {
    let Some(url) = ragplane::testing::service_env("RAGPLANE_TEST_REDIS_URL", "shared rate limit")
    else {
        return;
    };
    let prefix = format!("ratelimit-test-{}", uuid_like());
    // Instances of one deployment share the metadata database, so their tenants are the same.
    let Some(db) = ragplane::testing::fresh_postgres_database("shared rate limit")
        .await
        .unwrap()
    else {
        return;
    };
    let shared = |c: &mut Config| {
        c.metadata = ragplane_config::MetadataConfig::Postgres(
            ragplane_config::PostgresConfig::new(db.clone()),
        );
        c.redis = Some(ragplane_config::RedisConfig {
            url: url.clone().into(),
            key_prefix: prefix.clone(),
            ..ragplane_config::RedisConfig::default()
        });
        c.rate_limit.enabled = true;
        c.rate_limit.requests_per_second = 0.2;
        c.rate_limit.burst = 2;
        c.rate_limit.backend = ragplane_config::RateLimitBackend::Redis;
    };
    let (Some(a), Some(b)) = (env(shared).await, env(shared).await) else {
        return;
    };
    let first = call(&a.router, Method::GET, "/v1/collections", ADMIN, None).await;
    let second = call(&b.router, Method::GET, "/v1/collections", ADMIN, None).await;
    let third = call(&a.router, Method::GET, "/v1/collections", ADMIN, None).await;
    let fourth = call(&b.router, Method::GET, "/v1/collections", ADMIN, None).await;
    assert_eq!(
        (first.status, second.status),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(
        third.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the burst of 2 is shared"
    );
    assert_eq!(fourth.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_open_or_closed_as_configured() {
    for (mode, want) in [
        (ragplane_config::FailMode::Open, StatusCode::OK),
        (
            ragplane_config::FailMode::Closed,
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ] {
        let Some(e) = env(|c| {
            c.redis = Some(ragplane_config::RedisConfig {
                url: format!("redis://127.0.0.1:{}", free_port()).into(),
                connect_timeout_ms: 100,
                command_timeout_ms: 100,
                ..ragplane_config::RedisConfig::default()
            });
            c.cache.redis_l2 = true;
            c.rate_limit.enabled = true;
            c.rate_limit.backend = ragplane_config::RateLimitBackend::Redis;
            c.rate_limit.on_backend_error = mode;
        })
        .await
        else {
            return;
        };
        let r = call(&e.router, Method::GET, "/v1/collections", ADMIN, None).await;
        assert_eq!(r.status, want, "{mode:?}: {:?}", r.body);
        if want == StatusCode::SERVICE_UNAVAILABLE {
            assert!(r.headers.contains_key(header::RETRY_AFTER));
            // Which dependency failed, and how, is for the log, not the client.
            assert_eq!(r.body["type"], "unavailable");
            assert!(r.body["request_id"].is_string(), "{:?}", r.body);
        }
    }
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A collection records its embedding model; searching or ingesting it with another model is a
/// clear error. Two real models are not at hand here, so the other model's probe is recorded
/// directly: the embedding of another sentence by the real model, as different as another
/// model's would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_of_another_model_is_refused() {
    let Some(e) = env(|_| {}).await else { return };
    let r = &e.router;
    let c = create_collection(r, ADMIN, "docs").await;
    assert_eq!(c.status, StatusCode::CREATED, "{:?}", c.body);
    assert_eq!(c.body["embedding_model"], "all-MiniLM-L6-v2-int8");
    let fingerprint = c.body["embedding_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(fingerprint.len(), 12);
    let (doc, _) = upload_text(
        r,
        ADMIN,
        "docs",
        "Otters hold hands while they sleep.",
        "otters",
    )
    .await;
    wait_status(r, ADMIN, "docs", &doc, "indexed").await;
    // The same model, again: still searchable, same fingerprint in listings.
    let list = call(r, Method::GET, "/v1/collections", ADMIN, None).await;
    assert_eq!(list.body[0]["embedding_fingerprint"], fingerprint.as_str());

    let other = e
        .app
        .embedder
        .embed(vec!["A completely unrelated sentence about tax law.".into()])
        .await
        .unwrap()
        .remove(0);
    let id = c.body["id"].as_str().unwrap();
    e.app
        .metadata
        .set_collection_model(
            id,
            "other-model",
            &ragplane::embed::identity::encode_probe(&other),
        )
        .await
        .unwrap();
    let s = call(
        r,
        Method::POST,
        "/v1/search",
        ADMIN,
        Some(json!({ "collection": "docs", "query": "otters", "mode": "hybrid" })),
    )
    .await;
    assert_eq!(s.status, StatusCode::CONFLICT, "{:?}", s.body);
    assert_eq!(s.body["type"], "model_mismatch");
    let msg = s.body["error"].as_str().unwrap();
    assert!(
        msg.contains("other-model") && msg.contains("ragplane reindex --collection docs"),
        "{msg}"
    );
    // Keyword search does not use the vectors and still works.
    let kw = call(
        r,
        Method::POST,
        "/v1/search",
        ADMIN,
        Some(json!({ "collection": "docs", "query": "otters", "mode": "keyword" })),
    )
    .await;
    assert_eq!(kw.status, StatusCode::OK, "{:?}", kw.body);
    assert_eq!(kw.body["hits"][0]["document_id"], doc.as_str());
    // A new document, or one queued again, is refused at once instead of mixing models.
    for (path, body) in [
        (
            "/v1/collections/docs/documents".to_string(),
            Some(json!({ "text": "Sea otters eat urchins.", "title": "urchins" })),
        ),
        (
            format!("/v1/collections/docs/documents/{doc}/reindex"),
            None,
        ),
    ] {
        let refused = call(r, Method::POST, &path, ADMIN, body).await;
        assert_eq!(
            refused.status,
            StatusCode::CONFLICT,
            "{path}: {:?}",
            refused.body
        );
        assert_eq!(refused.body["type"], "model_mismatch");
        assert!(
            refused.body["error"]
                .as_str()
                .unwrap()
                .contains("other-model"),
            "{:?}",
            refused.body
        );
    }
    // A job queued before the model changed fails in the worker with the reason.
    let tenant = stored_document(&e, &doc).await.tenant_id;
    e.app.enqueue_ingest(&tenant, &doc).await.unwrap();
    let d = wait_status(r, ADMIN, "docs", &doc, "failed").await;
    assert!(
        d["error"].as_str().unwrap().contains("other-model"),
        "{d:?}"
    );
    // Re-embedding the collection with the configured model makes it whole again.
    let re = call(r, Method::POST, "/v1/collections/docs/reindex", ADMIN, None).await;
    assert_eq!(re.status, StatusCode::ACCEPTED, "{:?}", re.body);
    assert_eq!(re.body["documents"].as_array().unwrap().len(), 1);
    wait_status(r, ADMIN, "docs", &doc, "indexed").await;
    let (bad, _) = upload_text(r, ADMIN, "docs", "Sea otters eat urchins.", "urchins").await;
    wait_status(r, ADMIN, "docs", &bad, "indexed").await;
    let s = call(
        r,
        Method::POST,
        "/v1/search",
        ADMIN,
        Some(json!({ "collection": "docs", "query": "what do sea otters eat?", "mode": "dense" })),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    assert_eq!(s.body["hits"][0]["document_id"], bad.as_str());
    let c = call(r, Method::GET, "/v1/collections/docs", ADMIN, None).await;
    assert_eq!(c.body["embedding_model"], "all-MiniLM-L6-v2-int8");
    assert_eq!(c.body["embedding_fingerprint"], fingerprint.as_str());
    assert_eq!(c.body["points"], 2);
    // Two one-sentence chunks, each with its title's terms: a handful of terms on average.
    let average = c.body["keyword_average_terms"].as_f64().unwrap();
    assert!((3.0..=12.0).contains(&average), "{average}");
}

/// An in-place reindex (same dimension, no `[embedding.previous]`) queues its jobs with the
/// model whose vectors they replace. A worker still on that model, as during a rollout, leaves
/// such a job to a worker with the new model (the attempt not counted, the document still
/// `queued`); a worker on a third model fails it at once. Another server's reindex to another
/// model is played by recording that model's probe (another sentence's embedding), as in
/// [`a_collection_of_another_model_is_refused`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_reindex_leaves_jobs_to_workers_with_the_new_model() {
    use ragplane::queue::{JobStatus, Task, DOCUMENTS};
    let Some(e) = env(|_| {}).await else { return };
    let r = &e.router;
    let c = create_collection(r, ADMIN, "docs").await;
    assert_eq!(c.status, StatusCode::CREATED, "{:?}", c.body);
    let id = c.body["id"].as_str().unwrap().to_string();
    let mut docs = Vec::new();
    for (text, title) in [
        ("Otters hold hands while they sleep.", "otters"),
        ("Sea otters eat urchins.", "urchins"),
    ] {
        let (doc, _) = upload_text(r, ADMIN, "docs", text, title).await;
        wait_status(r, ADMIN, "docs", &doc, "indexed").await;
        docs.push(doc);
    }
    let this_model = e
        .app
        .metadata
        .collection_by_id(&id)
        .await
        .unwrap()
        .unwrap()
        .embedding_probe
        .expect("the collection records its model");
    let probe_of = |text: &'static str| {
        let app = e.app.clone();
        async move {
            let v = app
                .embedder
                .embed(vec![text.into()])
                .await
                .unwrap()
                .remove(0);
            ragplane::embed::identity::encode_probe(&v)
        }
    };
    let new_model = probe_of("A completely unrelated sentence about tax law.").await;
    let third_model = probe_of("Volcanoes erupt when magma rises through the crust.").await;
    // The reindex, by a server with the new model: the collection records it, and each
    // document is queued with the model its vectors come from, which is this server's.
    e.app
        .metadata
        .set_collection_model(&id, "new-model", &new_model)
        .await
        .unwrap();
    let tenant = stored_document(&e, &docs[0]).await.tenant_id;
    let queue = |doc: String, replaces: String| {
        let app = e.app.clone();
        let tenant = tenant.clone();
        async move {
            let d = app.metadata.document(&doc).await.unwrap().unwrap();
            app.metadata
                .set_document_status(
                    &d.id,
                    ragplane::metadata::DocumentStatus::Queued,
                    None,
                    d.chunk_count,
                )
                .await
                .unwrap();
            let task = Task::IngestDocument {
                document_id: doc,
                traceparent: None,
                replaces_probe: Some(replaces),
            };
            app.queue.enqueue(&tenant, DOCUMENTS, task).await.unwrap()
        }
    };
    let outdated = queue(docs[0].clone(), this_model.clone()).await;
    // This process's workers are the outdated ones: they give the job back, again and again.
    let mut left = None;
    for _ in 0..200 {
        let j = e.app.queue.get(&outdated.id).await.unwrap().unwrap();
        if j.last_error.is_some() {
            left = Some(j);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = left.expect("a worker took the job and gave it back");
    assert_eq!(left.status, JobStatus::Queued, "{left:?}");
    assert_eq!(left.attempts, 0, "{left:?}");
    let reason = left.last_error.unwrap();
    assert!(
        reason.contains(
            "the model the collection's reindex replaces; left to a worker with the new model"
        ),
        "{reason}"
    );
    let d = wait_status(r, ADMIN, "docs", &docs[0], "queued").await;
    assert!(d["error"].is_null(), "{d:?}");
    // A job that replaces a third model's vectors is not this worker's to wait for.
    queue(docs[1].clone(), third_model).await;
    let d = wait_status(r, ADMIN, "docs", &docs[1], "failed").await;
    assert!(d["error"].as_str().unwrap().contains("new-model"), "{d:?}");
    let again = e.app.queue.get(&outdated.id).await.unwrap().unwrap();
    assert_eq!(again.status, JobStatus::Queued, "{again:?}");
    assert_eq!(again.attempts, 0, "{again:?}");
}

/// A stand-in rerank endpoint: scores each document by how many of the query's words it
/// contains, in the Cohere or the TEI format; answers 500 after `fail_after` calls.
async fn stub_rerank_server(
    tei: bool,
    fail_after: usize,
) -> (String, Arc<std::sync::Mutex<Vec<Value>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let handler = move |axum::Json(body): axum::Json<Value>| {
        let log = log.clone();
        async move {
            let calls = {
                let mut l = log.lock().unwrap();
                l.push(body.clone());
                l.len()
            };
            if calls > fail_after {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "model crashed".to_string(),
                );
            }
            let query: Vec<String> = body["query"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .split_whitespace()
                .map(str::to_string)
                .collect();
            let docs = if tei {
                &body["texts"]
            } else {
                &body["documents"]
            };
            let scored: Vec<Value> = docs
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let text = d.as_str().unwrap().to_lowercase();
                    let s = query.iter().filter(|w| text.contains(w.as_str())).count() as f64;
                    if tei {
                        json!({ "index": i, "score": s })
                    } else {
                        json!({ "index": i, "relevance_score": s })
                    }
                })
                .rev()
                .collect();
            let out = if tei {
                json!(scored)
            } else {
                json!({ "results": scored })
            };
            (StatusCode::OK, out.to_string())
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            Router::new().route("/rerank", axum::routing::post(handler)),
        )
        .await
    });
    (format!("http://{addr}/rerank"), seen)
}

/// The rerank stage against a stand-in endpoint in both wire formats (no real cross-encoder is
/// packaged anywhere these machines reach): the stand-in's order wins, `rerank: false` skips it,
/// and a failing endpoint is served around (`open`) or refused with 503 (`closed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reranking_follows_the_rerank_endpoint() {
    for (tei, on_error) in [
        (false, ragplane_config::FailMode::Open),
        (true, ragplane_config::FailMode::Closed),
    ] {
        let (url, seen) = stub_rerank_server(tei, 2).await;
        let Some(e) = env(|c| {
            c.rerank = Some(ragplane_config::RerankConfig {
                url,
                protocol: if tei {
                    ragplane_config::RerankProtocol::Tei
                } else {
                    ragplane_config::RerankProtocol::Cohere
                },
                model: Some("stand-in".into()),
                candidates: 10,
                on_error,
                ..ragplane_config::RerankConfig::default()
            });
        })
        .await
        else {
            return;
        };
        let r = &e.router;
        create_collection(r, ADMIN, "docs").await;
        let mut ids = Vec::new();
        for (text, title) in [
            (
                "Penguins huddle together to keep warm in winter.",
                "penguins",
            ),
            (
                "Emperor penguins breed in the Antarctic winter; males keep the egg warm.",
                "emperor",
            ),
            ("Camels store fat in their humps.", "camels"),
        ] {
            ids.push(upload_text(r, ADMIN, "docs", text, title).await.0);
        }
        for id in &ids {
            wait_status(r, ADMIN, "docs", id, "indexed").await;
        }
        let body = json!({ "collection": "docs", "query": "emperor penguins egg", "top_k": 2 });
        let s = call(r, Method::POST, "/v1/search", ADMIN, Some(body.clone())).await;
        assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
        let hits = s.body["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0]["document_id"], ids[1].as_str());
        assert_eq!(hits[0]["rerank_score"], 3.0);
        assert_eq!(hits[0]["score"], 3.0);
        {
            let sent = seen.lock().unwrap();
            let docs = if tei {
                &sent[0]["texts"]
            } else {
                &sent[0]["documents"]
            };
            assert_eq!(
                docs.as_array().unwrap().len(),
                3,
                "all candidates go to the endpoint"
            );
            if !tei {
                assert_eq!(sent[0]["model"], "stand-in");
            }
        }
        let mut plain = body.clone();
        plain["rerank"] = json!(false);
        let s = call(r, Method::POST, "/v1/search", ADMIN, Some(plain)).await;
        assert!(s.body["hits"][0]["rerank_score"].is_null());
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "rerank: false calls no endpoint"
        );
        // The second call succeeds, the third fails.
        let mut other = body.clone();
        other["query"] = json!("camels humps");
        let s = call(r, Method::POST, "/v1/search", ADMIN, Some(other)).await;
        assert_eq!(s.body["hits"][0]["document_id"], ids[2].as_str());
        let mut third = body.clone();
        third["query"] = json!("penguins keep warm");
        let s = call(r, Method::POST, "/v1/search", ADMIN, Some(third)).await;
        match on_error {
            ragplane_config::FailMode::Open => {
                assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
                assert_eq!(s.body["hits"].as_array().unwrap().len(), 2);
                assert!(s.body["hits"][0]["rerank_score"].is_null());
            }
            ragplane_config::FailMode::Closed => {
                assert_eq!(s.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", s.body);
                assert!(s.headers.contains_key(header::RETRY_AFTER));
                // The endpoint's own words stay in the log.
                let message = s.body["error"].as_str().unwrap();
                assert!(!message.contains("model crashed"), "{message}");
                assert!(s.body["request_id"].is_string());
            }
        }
    }
    // Asking for reranking where none is configured is a clear error.
    let Some(e) = env(|_| {}).await else { return };
    create_collection(&e.router, ADMIN, "docs").await;
    let s = call(
        &e.router,
        Method::POST,
        "/v1/search",
        ADMIN,
        Some(json!({ "collection": "docs", "query": "x", "rerank": true })),
    )
    .await;
    assert_eq!(s.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(s.body["error"].as_str().unwrap().contains("rerank"));
}

/// A long text: `n` sentences of distinct words, so that it makes many chunks.
fn long_text(n: usize) -> String {
    (0..n)
        .map(|i| format!("Paragraph {i} describes lighthouse number {i} on the northern coast. "))
        .collect()
}

/// A document deleted while its job is embedding and writing points keeps none: the job's
/// later writes are removed when it finds the document gone, and search never finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_document_deleted_while_indexing_leaves_no_points() {
    let Some(e) = env(|_| {}).await else { return };
    let r = &e.router;
    create_collection(r, ADMIN, "docs").await;
    let (doc, job) = upload_text(r, ADMIN, "docs", &long_text(3000), "coast").await;
    wait_status(r, ADMIN, "docs", &doc, "processing").await;
    let del = call(
        r,
        Method::DELETE,
        &format!("/v1/collections/docs/documents/{doc}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{:?}", del.body);
    // The job carries on to its end: it does not know about the deletion until it checks.
    wait_job(r, ADMIN, &job, "succeeded").await;
    let c = e
        .app
        .metadata
        .collection_by_name(
            &e.app
                .metadata
                .tenant_by_name("default")
                .await
                .unwrap()
                .unwrap()
                .id,
            "docs",
        )
        .await
        .unwrap()
        .unwrap();
    let points = e
        .app
        .vectors
        .count(&ragplane::app::key_of(&c), Some(&doc))
        .await
        .unwrap();
    assert_eq!(points, 0, "the deleted document left points behind");
    let gone = call(
        r,
        Method::GET,
        &format!("/v1/collections/docs/documents/{doc}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let s = call(
        r,
        Method::POST,
        "/v1/search",
        ADMIN,
        Some(json!({ "collection": "docs", "query": "lighthouse on the northern coast" })),
    )
    .await;
    assert_eq!(s.body["hits"], json!([]), "{:?}", s.body);
}

/// A document stored without a job (a crash between the two) is found by the workers'
/// periodic sweep and indexed, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_document_left_without_a_job_is_requeued_by_the_sweep() {
    let Some(e) = env(|c| c.workers.orphan_check_secs = 1).await else {
        return;
    };
    let r = &e.router;
    let c = create_collection(r, ADMIN, "docs").await;
    let collection = c.body["id"].as_str().unwrap().to_string();
    let tenant = e
        .app
        .metadata
        .tenant_by_name("default")
        .await
        .unwrap()
        .unwrap();
    let object_key = format!("{}/{collection}/orphan", tenant.id);
    e.app
        .objects
        .put(
            &object_key,
            bytes::Bytes::from_static(b"Kelp forests shelter sea otters."),
        )
        .await
        .unwrap();
    e.app
        .metadata
        .insert_document(ragplane::metadata::NewDocument {
            id: "orphan".into(),
            tenant_id: tenant.id.clone(),
            collection_id: collection,
            title: "kelp".into(),
            source: None,
            content_type: "text/plain".into(),
            size_bytes: 32,
            sha256: "ab".repeat(32),
            metadata: Default::default(),
            object_key,
        })
        .await
        .unwrap();
    let d = wait_status(r, ADMIN, "docs", "orphan", "indexed").await;
    assert_eq!(d["chunk_count"], 1);
}

/// A job that runs past `workers.max_job_seconds` is abandoned; out of attempts, its document
/// is `failed` with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_past_its_time_limit_is_abandoned() {
    let Some(e) = env(|c| {
        c.workers.max_job_seconds = 1;
        if let ragplane_config::QueueConfig::Sqlite(s) = &mut c.queue {
            s.max_attempts = 1;
        }
    })
    .await
    else {
        return;
    };
    let r = &e.router;
    create_collection(r, ADMIN, "docs").await;
    let (doc, _) = upload_text(r, ADMIN, "docs", &long_text(4000), "coast").await;
    let d = wait_status(r, ADMIN, "docs", &doc, "failed").await;
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .contains("workers.max_job_seconds (1 s)"),
        "{d:?}"
    );
}

/// Instances that start together on one PostgreSQL database with the same configured admin
/// key all come up, and share one default tenant and one admin key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_all_come_up() {
    let Some(model) = ragplane::testing::model_files() else {
        return;
    };
    let Some(url) = ragplane::testing::fresh_postgres_database("instances_starting_together")
        .await
        .unwrap()
    else {
        return;
    };
    let dirs: Vec<tempfile::TempDir> = (0..8).map(|_| tempfile::tempdir().unwrap()).collect();
    let starts = dirs.iter().map(|dir| {
        let mut config = ragplane::testing::config_in(dir.path(), &model, ADMIN);
        config.metadata = ragplane_config::MetadataConfig::Postgres(
            ragplane_config::PostgresConfig::new(url.clone()),
        );
        App::build(config)
    });
    let apps: Vec<App> = futures::future::try_join_all(starts)
        .await
        .expect("every instance starts");
    // Each sees no admin key yet, then each stores the configured one.
    futures::future::try_join_all(apps.iter().map(App::bootstrap_admin_key))
        .await
        .expect("every instance stores or finds the admin key");
    let tenants: std::collections::HashSet<&str> =
        apps.iter().map(|a| a.default_tenant.as_str()).collect();
    assert_eq!(tenants.len(), 1);
    assert_eq!(apps[0].metadata.count_admin_keys().await.unwrap(), 1);
    for app in &apps {
        let p = app.authenticate(Some(ADMIN)).await.unwrap();
        assert_eq!(p.scope, ragplane::metadata::Scope::ClusterAdmin);
    }
}

/// Every response names its request id; a server error tells the client only that id and a
/// generic message, and a request past its time limit is a 503 with Retry-After like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_name_a_request_id_and_hide_their_detail() {
    let Some(e) = env(|c| c.limits.request_timeout_secs = 1).await else {
        return;
    };
    let ok = call(&e.router, Method::GET, "/v1/collections", ADMIN, None).await;
    let generated = ok.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
    let mine = Request::get("/v1/collections")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header("x-request-id", "trace-42.a")
        .body(Body::empty())
        .unwrap();
    let echoed = send(&e.router, mine).await;
    assert_eq!(echoed.headers["x-request-id"], "trace-42.a");
    let bad = call(&e.router, Method::GET, "/v1/collections/nope", ADMIN, None).await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND);
    assert!(
        bad.body["error"].as_str().unwrap().contains("nope"),
        "client errors keep their detail"
    );

    // A body that trickles in past limits.request_timeout_secs.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let slow = Request::post("/v1/collections")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(tokio_stream_from(rx)))
        .unwrap();
    let late = send(&e.router, slow).await;
    drop(tx);
    assert_eq!(
        late.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        late.body
    );
    assert_eq!(late.headers[header::RETRY_AFTER], "1");
    let id = late.headers["x-request-id"].to_str().unwrap();
    assert_eq!(late.body["request_id"], id);
    assert_eq!(late.body["type"], "unavailable");
    let message = late.body["error"].as_str().unwrap();
    assert!(
        message.contains(id) && !message.contains("request_timeout_secs"),
        "{message}"
    );
}

/// CORS is off unless origins are listed; then only those origins get CORS headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_the_listed_origins() {
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/search")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap()
    };
    let Some(off) = env(|_| {}).await else { return };
    let r = send(&off.router, preflight("https://app.example.com")).await;
    assert!(
        !r.headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "CORS is off by default: {:?}",
        r.headers
    );
    let Some(on) =
        env(|c| c.server.cors_allowed_origins = vec!["https://app.example.com".into()]).await
    else {
        return;
    };
    let r = send(&on.router, preflight("https://app.example.com")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    assert!(r.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let r = send(&on.router, preflight("https://evil.example.com")).await;
    assert!(!r.headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    // A plain request from the listed origin gets the header and can read the request id.
    let get = Request::get("/v1/collections")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::ORIGIN, "https://app.example.com")
        .body(Body::empty())
        .unwrap();
    let r = send(&on.router, get).await;
    assert_eq!(
        r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    assert!(r.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap()
        .contains("x-request-id"));
}

/// Uploads past the ingest backlog's bound, over all tenants or for one, get 429 with
/// Retry-After; once the workers catch up they are taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_past_the_ingest_backlog_are_refused() {
    for (bound, tweak) in [
        (
            "limits.max_tenant_ingest_backlog",
            (|c: &mut Config| c.limits.max_tenant_ingest_backlog = 1) as fn(&mut Config),
        ),
        ("limits.max_ingest_backlog", |c: &mut Config| {
            c.limits.max_ingest_backlog = 1
        }),
    ] {
        let Some(e) = env(tweak).await else { return };
        let r = &e.router;
        create_collection(r, ADMIN, "docs").await;
        let (first, first_job) = upload_text(r, ADMIN, "docs", &long_text(2000), "coast").await;
        let refused = call(
            r,
            Method::POST,
            "/v1/collections/docs/documents",
            ADMIN,
            Some(json!({ "text": "Kelp forests shelter sea otters.", "title": "kelp" })),
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{bound}: {:?}",
            refused.body
        );
        assert!(refused.headers.contains_key(header::RETRY_AFTER));
        assert!(
            refused.body["error"].as_str().unwrap().contains(bound),
            "{:?}",
            refused.body
        );
        wait_status(r, ADMIN, "docs", &first, "indexed").await;
        // The backlog counts the job until it is marked done, a moment after the document.
        wait_job(r, ADMIN, &first_job, "succeeded").await;
        let (later, _) =
            upload_text(r, ADMIN, "docs", "Kelp forests shelter sea otters.", "kelp").await;
        wait_status(r, ADMIN, "docs", &later, "indexed").await;
    }
}

/// Scopes: each key does what its scope allows and gets 403 for the rest; a tenant-admin
/// manages only its own tenant's keys, up to its own scope. Lifecycle: expiry, revocation
/// within `auth.key_cache_secs`, rotation with and without grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_have_scopes_expiry_revocation_and_rotation() {
    let Some(e) = env(|c| c.auth.key_cache_secs = 1).await else {
        return;
    };
    let r = &e.router;
    let status = |resp: &Resp| resp.status;
    let issue = |key: &'static str, tenant: &'static str, body: Value| {
        let r = r.clone();
        async move {
            call(
                &r,
                Method::POST,
                &format!("/v1/tenants/{tenant}/keys"),
                key,
                Some(body),
            )
            .await
        }
    };
    let t = call(
        r,
        Method::POST,
        "/v1/tenants",
        ADMIN,
        Some(json!({"name": "acme"})),
    )
    .await;
    assert_eq!(t.status, StatusCode::CREATED);
    let ta = issue(
        ADMIN,
        "acme",
        json!({"name": "ops", "scope": "tenant-admin"}),
    )
    .await;
    assert_eq!(ta.status, StatusCode::CREATED, "{:?}", ta.body);
    assert_eq!(ta.body["scope"], "tenant-admin");
    let ta_key: &'static str = Box::leak(
        ta.body["key"]
            .as_str()
            .unwrap()
            .to_string()
            .into_boxed_str(),
    );

    // A tenant-admin: no tenants, no stronger keys, no other tenant's keys.
    assert_eq!(
        status(&call(r, Method::GET, "/v1/tenants", ta_key, None).await),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&issue(ta_key, "acme", json!({"scope": "cluster-admin"})).await),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&issue(ta_key, "default", json!({"scope": "read-write"})).await),
        StatusCode::NOT_FOUND
    );
    let rw = issue(
        ta_key,
        "acme",
        json!({"name": "app", "scope": "read-write"}),
    )
    .await;
    let qo = issue(
        ta_key,
        "acme",
        json!({"name": "reader", "scope": "query-only"}),
    )
    .await;
    assert_eq!(
        (rw.status, qo.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    let rw_key = rw.body["key"].as_str().unwrap().to_string();
    let qo_key = qo.body["key"].as_str().unwrap().to_string();

    // read-write manages collections and documents; query-only reads and searches only.
    assert_eq!(
        create_collection(r, &rw_key, "docs").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        create_collection(r, &qo_key, "nope").await.status,
        StatusCode::FORBIDDEN
    );
    let up = call(
        r,
        Method::POST,
        "/v1/collections/docs/documents",
        &qo_key,
        Some(json!({"text": "read only", "title": "t"})),
    )
    .await;
    assert_eq!(up.status, StatusCode::FORBIDDEN);
    assert!(
        up.body["error"]
            .as_str()
            .unwrap()
            .contains("needs a read-write key"),
        "{:?}",
        up.body
    );
    assert_eq!(
        status(&call(r, Method::GET, "/v1/collections/docs", &qo_key, None).await),
        StatusCode::OK
    );
    let s = call(
        r,
        Method::POST,
        "/v1/search",
        &qo_key,
        Some(json!({"collection": "docs", "query": "x"})),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    assert_eq!(
        status(&call(r, Method::GET, "/v1/tenants/acme/keys", &rw_key, None).await),
        StatusCode::FORBIDDEN
    );

    // Listing shows scopes and prefixes, never keys.
    let list = call(r, Method::GET, "/v1/tenants/acme/keys", ta_key, None).await;
    assert_eq!(list.status, StatusCode::OK);
    let keys = list.body.as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert!(keys
        .iter()
        .all(|k| k.get("key").is_none() && k["prefix"].is_string()));
    let scopes: Vec<&str> = keys.iter().map(|k| k["scope"].as_str().unwrap()).collect();
    assert_eq!(scopes, ["tenant-admin", "read-write", "query-only"]);

    // Expiry applies at once.
    let short = issue(
        ta_key,
        "acme",
        json!({"scope": "query-only", "expires_in_secs": 1}),
    )
    .await;
    let short_key = short.body["key"].as_str().unwrap().to_string();
    assert_eq!(
        status(&call(r, Method::GET, "/v1/collections", &short_key, None).await),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = call(r, Method::GET, "/v1/collections", &short_key, None).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert!(expired.body["error"].as_str().unwrap().contains("expired"));

    // Revocation: within the key cache's lifetime (1 s here) the key stops working.
    let rw_id = rw.body["id"].as_str().unwrap();
    assert_eq!(
        status(&call(r, Method::GET, "/v1/collections", &rw_key, None).await),
        StatusCode::OK
    );
    let revoked = call(
        r,
        Method::DELETE,
        &format!("/v1/tenants/acme/keys/{rw_id}"),
        ta_key,
        None,
    )
    .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let started = std::time::Instant::now();
    loop {
        let got = call(r, Method::GET, "/v1/collections", &rw_key, None).await;
        if got.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "a revoked key kept working past the cache bound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Rotation: the new key has the old one's scope; without grace the old one goes, with
    // grace it keeps working meanwhile.
    let qo_id = qo.body["id"].as_str().unwrap();
    let graceful = call(
        r,
        Method::POST,
        &format!("/v1/tenants/acme/keys/{qo_id}/rotate"),
        ta_key,
        Some(json!({"grace_secs": 60})),
    )
    .await;
    assert_eq!(graceful.status, StatusCode::CREATED, "{:?}", graceful.body);
    assert_eq!(graceful.body["scope"], "query-only");
    let new_key = graceful.body["key"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status(&call(r, Method::GET, "/v1/collections", &qo_key, None).await),
        StatusCode::OK
    );
    assert_eq!(
        status(&call(r, Method::GET, "/v1/collections", &new_key, None).await),
        StatusCode::OK
    );
    let new_id = graceful.body["id"].as_str().unwrap();
    let at_once = call(
        r,
        Method::POST,
        &format!("/v1/tenants/acme/keys/{new_id}/rotate"),
        ta_key,
        None,
    )
    .await;
    assert_eq!(at_once.status, StatusCode::CREATED, "{:?}", at_once.body);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status(&call(r, Method::GET, "/v1/collections", &new_key, None).await),
        StatusCode::UNAUTHORIZED
    );

    // Bad input names the field.
    let bad = issue(ADMIN, "acme", json!({"scope": "root"})).await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.body
    );
    let bad = issue(ADMIN, "acme", json!({"expires_at": "tomorrow"})).await;
    assert!(
        bad.body["error"].as_str().unwrap().contains("expires_at"),
        "{:?}",
        bad.body
    );
    let legacy = issue(ADMIN, "acme", json!({"admin": true})).await;
    assert_eq!(legacy.body["scope"], "cluster-admin");
}

/// An address whose keys keep failing is refused with 429 before any lookup, good key or not;
/// other addresses are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_whose_keys_keep_failing_is_refused() {
    let Some(e) = env(|c| c.auth.failed_attempts_per_minute = 3).await else {
        return;
    };
    let from = |addr: &str, key: &str| {
        let mut req = req(Method::GET, "/v1/collections", Some(key), None);
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo::<std::net::SocketAddr>(
                addr.parse().unwrap(),
            ));
        req
    };
    for i in 0..4 {
        let r = send(&e.router, from("10.0.0.7:5000", &format!("rp_wrong_{i}"))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let blocked = send(&e.router, from("10.0.0.7:5001", ADMIN)).await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        blocked.body
    );
    assert!(blocked.headers.contains_key(header::RETRY_AFTER));
    assert!(blocked.body["error"]
        .as_str()
        .unwrap()
        .contains("failed authentications"));
    let elsewhere = send(&e.router, from("10.0.0.8:5000", ADMIN)).await;
    assert_eq!(elsewhere.status, StatusCode::OK);
    // The same bad key again is answered without the metadata store; still a 401.
    let again = send(&e.router, from("10.0.0.9:5000", "rp_wrong_0")).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
}

/// Deleting a tenant removes its documents, points, originals, cached results and keys, and
/// nothing of another tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_tenant_removes_everything_it_had() {
    let Some(e) = env(|_| {}).await else { return };
    let r = &e.router;
    call(
        r,
        Method::POST,
        "/v1/tenants",
        ADMIN,
        Some(json!({"name": "gone"})),
    )
    .await;
    let k = call(
        r,
        Method::POST,
        "/v1/tenants/gone/keys",
        ADMIN,
        Some(json!({})),
    )
    .await;
    let key = k.body["key"].as_str().unwrap().to_string();
    create_collection(r, &key, "docs").await;
    let (doc, _) = upload_text(r, &key, "docs", "The vault code is 4711.", "vault").await;
    wait_status(r, &key, "docs", &doc, "indexed").await;
    // The default tenant keeps its own collection of the same name.
    create_collection(r, ADMIN, "docs").await;
    let (mine, _) = upload_text(r, ADMIN, "docs", "Kelp forests shelter sea otters.", "kelp").await;
    wait_status(r, ADMIN, "docs", &mine, "indexed").await;
    let query = json!({"collection": "docs", "query": "vault code"});
    let s = call(r, Method::POST, "/v1/search", &key, Some(query.clone())).await;
    assert_eq!(s.body["hits"].as_array().unwrap().len(), 1, "{:?}", s.body);

    let tenant = e
        .app
        .metadata
        .tenant_by_name("gone")
        .await
        .unwrap()
        .unwrap();
    let c = e
        .app
        .metadata
        .collection_by_name(&tenant.id, "docs")
        .await
        .unwrap()
        .unwrap();
    let object_key = stored_document(&e, &doc).await.object_key;
    let del = call(r, Method::DELETE, "/v1/tenants/gone", ADMIN, None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{:?}", del.body);

    assert_eq!(
        call(r, Method::GET, "/v1/collections", &key, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert!(e
        .app
        .metadata
        .tenant_by_name("gone")
        .await
        .unwrap()
        .is_none());
    assert!(e.app.metadata.document(&doc).await.unwrap().is_none());
    let key_of = ragplane::app::key_of(&c);
    assert_eq!(e.app.vectors.count(&key_of, None).await.unwrap(), 0);
    assert!(
        e.app.objects.get(&object_key).await.is_err(),
        "the original is gone"
    );
    let mine_now = call(
        r,
        Method::GET,
        &format!("/v1/collections/docs/documents/{mine}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(
        mine_now.status,
        StatusCode::OK,
        "another tenant keeps everything"
    );
    // A key cannot delete its own tenant; an unknown tenant is 404.
    let own = call(r, Method::DELETE, "/v1/tenants/default", ADMIN, None).await;
    assert_eq!(own.status, StatusCode::UNPROCESSABLE_ENTITY);
    let none = call(r, Method::DELETE, "/v1/tenants/nobody", ADMIN, None).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
}

/// A PDF whose one page's content stream inflates from well under a megabyte to `inflated`
/// bytes of spaces: a compressed-stream ("Flate") bomb.
fn flate_bomb_pdf(inflated: usize) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![b' '; 1 << 20];
    for _ in 0..inflated / block.len() {
        z.write_all(&block).unwrap();
    }
    let compressed = z.finish().unwrap();
    let mut pdf = b"%PDF-1.5\n".to_vec();
    let mut offsets = Vec::new();
    let mut object = |pdf: &mut Vec<u8>, body: &[u8]| {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", offsets.len()).as_bytes());
        pdf.extend_from_slice(body);
        pdf.extend_from_slice(b"\nendobj\n");
    };
    object(&mut pdf, b"<< /Type /Catalog /Pages 2 0 R >>");
    object(
        &mut pdf,
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 /MediaBox [0 0 612 792] >>",
    );
    object(&mut pdf, b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>");
    let mut stream = format!(
        "<< /Length {} /Filter /FlateDecode >>\nstream\n",
        compressed.len()
    )
    .into_bytes();
    stream.extend_from_slice(&compressed);
    stream.extend_from_slice(b"\nendstream");
    object(&mut pdf, &stream);
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1).as_bytes(),
    );
    for o in &offsets {
        pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            offsets.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// Parsing runs in a child process under limits: a Flate bomb fails its document with the
/// memory budget named, a page whose text passes `chunking.max_document_bytes` fails with that
/// limit named, and the process serving the API goes on indexing the next document.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decompression_bomb_or_an_oversized_page_fails_only_its_document() {
    let Some(e) = env(|c| {
        c.parsing.max_memory_mib = 256;
        c.chunking.max_document_bytes = 100_000;
    })
    .await
    else {
        return;
    };
    let r = &e.router;
    create_collection(r, ADMIN, "docs").await;
    let upload = |name: &'static str, ctype: &'static str, content: Vec<u8>| async move {
        let (mp_type, body) = multipart(name, ctype, &content);
        let up = send(
            r,
            post_raw("/v1/collections/docs/documents", ADMIN, &mp_type, body),
        )
        .await;
        assert_eq!(up.status, StatusCode::ACCEPTED, "{name}: {:?}", up.body);
        up.body["document"]["id"].as_str().unwrap().to_string()
    };
    let memory_failures = || {
        ragplane::metrics::PARSE_CHILDREN_FAILED
            .with_label_values(&["memory"])
            .get()
    };
    let before = memory_failures();
    // About 1 MiB compressed, 1 GiB inflated: four times the budget.
    let bomb = flate_bomb_pdf(1 << 30);
    assert!(bomb.len() < 4 << 20, "{} bytes", bomb.len());
    let bomb = upload("bomb.pdf", "application/pdf", bomb).await;
    let d = wait_status(r, ADMIN, "docs", &bomb, "failed").await;
    let why = d["error"].as_str().unwrap();
    assert!(
        why.contains("256 MiB") && why.contains("parsing.max_memory_mib"),
        "{why}"
    );
    assert_eq!(memory_failures(), before + 1);

    let page = format!(
        "<html><body>{}</body></html>",
        "<p>Tidal flats hold the water.</p>".repeat(10_000)
    );
    let huge = upload("huge.html", "text/html", page.into_bytes()).await;
    let d = wait_status(r, ADMIN, "docs", &huge, "failed").await;
    let why = d["error"].as_str().unwrap();
    assert!(
        why.contains("100000 bytes") && why.contains("chunking.max_document_bytes"),
        "{why}"
    );

    let (fine, _) = upload_text(r, ADMIN, "docs", "Kelp forests shelter sea otters.", "kelp").await;
    wait_status(r, ADMIN, "docs", &fine, "indexed").await;
}

/// A cluster-admin key reads and changes the process's log filter; a bad filter is a 422 naming
/// the field, and a weaker key gets 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_admins_change_the_log_filter_at_run_time() {
    let Some(e) = env(|_| {}).await else { return };
    let _telemetry = ragplane_telemetry::init(
        "ragplane",
        ragplane_config::LogFormat::Text,
        "warn",
        &Default::default(),
    )
    .unwrap();
    let r = &e.router;
    let path = "/v1/admin/log-filter";
    let set = call(
        r,
        Method::PUT,
        path,
        ADMIN,
        Some(json!({"filter": "info,ragplane=debug"})),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    let got = call(r, Method::GET, path, ADMIN, None).await;
    assert_eq!(got.body["filter"], "info,ragplane=debug");
    assert_eq!(
        ragplane_telemetry::filter().as_deref(),
        Some("info,ragplane=debug")
    );

    let bad = call(
        r,
        Method::PUT,
        path,
        ADMIN,
        Some(json!({"filter": "ragplane=[loud"})),
    )
    .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.body
    );
    assert!(
        bad.body["error"].as_str().unwrap().contains("filter"),
        "{:?}",
        bad.body
    );
    assert_eq!(
        ragplane_telemetry::filter().as_deref(),
        Some("info,ragplane=debug")
    );

    let issued = call(
        r,
        Method::POST,
        "/v1/tenants/default/keys",
        ADMIN,
        Some(json!({"scope": "read-write"})),
    )
    .await;
    let rw = issued.body["key"].as_str().unwrap().to_owned();
    let refused = call(r, Method::PUT, path, &rw, Some(json!({"filter": "trace"}))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    assert_eq!(
        call(r, Method::GET, path, &rw, None).await.status,
        StatusCode::FORBIDDEN
    );
}

/// `chunking.embed_headings`: a chunk deep in a section carries the section's heading in its
/// vector, so a query naming the section finds it closer than without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_the_heading_path_brings_a_section_s_chunks_closer_to_its_name() {
    // The last chunk of the section: no word of the heading in its text.
    let markdown =
        "# Harbour guide\n\n## Spring tides\n\nThe water rises higher than usual twice a \
                    month. Moorings need longer lines then. Boats drying out at low water can \
                    settle on the mud banks near the outer wall.";
    let mut scores = Vec::new();
    for embed_headings in [false, true] {
        let Some(e) = env(|c| {
            c.chunking.chunk_tokens = 12;
            c.chunking.overlap_tokens = 0;
            c.chunking.embed_headings = embed_headings;
            c.cache.results = false;
        })
        .await
        else {
            return;
        };
        let r = &e.router;
        create_collection(r, ADMIN, "docs").await;
        let up = call(
            r,
            Method::POST,
            "/v1/collections/docs/documents",
            ADMIN,
            Some(json!({ "text": markdown, "format": "markdown", "title": "notes" })),
        )
        .await;
        assert_eq!(up.status, StatusCode::ACCEPTED, "{:?}", up.body);
        let id = up.body["document"]["id"].as_str().unwrap().to_string();
        wait_status(r, ADMIN, "docs", &id, "indexed").await;
        let s = call(
            r,
            Method::POST,
            "/v1/search",
            ADMIN,
            Some(json!({ "collection": "docs", "query": "spring tides", "mode": "dense", "top_k": 50 })),
        )
        .await;
        assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
        let hits = s.body["hits"].as_array().unwrap();
        let last = hits
            .iter()
            .max_by_key(|h| h["chunk"].as_u64().unwrap())
            .unwrap();
        assert!(last["chunk"].as_u64().unwrap() >= 2, "{hits:?}");
        let text = last["text"].as_str().unwrap().to_lowercase();
        assert!(
            !text.contains("spring") && !text.contains("tides"),
            "{text}"
        );
        assert_eq!(
            last["provenance"]["headings"],
            json!(["Harbour guide", "Spring tides"]),
            "{last}"
        );
        scores.push(last["dense_score"].as_f64().unwrap());
    }
    eprintln!(
        "dense score of the section's last chunk, without and with its heading path: {scores:?}"
    );
    let [without, with] = scores[..] else {
        return;
    };
    assert!(
        with > without + 0.05,
        "the section's last chunk scores {with:.3} with its heading path against {without:.3}"
    );
}
