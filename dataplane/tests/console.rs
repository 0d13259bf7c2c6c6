//! The web console's server side, in-process: its files and headers, sign-in with a key and
//! the session cookie, CSRF on state-changing requests, sessions ending with sign-out, expiry
//! and key revocation, the usage report and the collection's document counts. The pages
//! themselves are tested in a real browser by e2e/tests/console.rs.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::*;
use serde_json::{json, Value};

/// A request carrying the session cookie, the Host and, when given, the CSRF token.
fn with_session(
    method: Method,
    uri: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> Request<Body> {
    let cookies = format!("theme=dark; {cookie}");
    let mut headers = vec![("host", "127.0.0.1:8080"), ("cookie", cookies.as_str())];
    headers.extend(csrf.map(|t| ("x-csrf-token", t)));
    req_with(method, uri, &headers, body)
}

/// Signs in with `key` through `host`; returns the answer and the `name=value` of its cookie.
async fn sign_in(e: &Env, key: &str, host: &str) -> (Resp, String) {
    let req = req_with(
        Method::POST,
        "/ui/session",
        &[("host", host)],
        Some(json!({ "key": key })),
    );
    let r = send(&e.router, req).await;
    let cookie = r
        .headers
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .unwrap_or_default();
    (r, cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_files_are_served_with_their_headers() {
    let Some(e) = env(|_| {}).await else { return };
    let r = send(&e.router, req(Method::GET, "/ui", None, None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
    let etag = r.headers[header::ETAG].clone();
    let again = Request::builder()
        .uri("/ui")
        .header(header::IF_NONE_MATCH, etag)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&e.router, again).await.status,
        StatusCode::NOT_MODIFIED
    );

    let gz = Request::builder()
        .uri("/ui/assets/js/playground.js")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .unwrap();
    let r = send(&e.router, gz).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );

    let r = send(
        &e.router,
        req(Method::GET, "/ui/assets/js/nothing.js", None, None),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.body["error"].as_str().unwrap().contains("nothing.js"),
        "{:?}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_acts_as_its_key_until_it_ends() {
    let Some(e) = env(|_| {}).await else { return };

    // Bad keys and cross-site sign-ins are refused with a reason.
    let (r, cookie) = sign_in(&e, "rp_wrong", "127.0.0.1").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_empty());
    assert_eq!(r.body["type"], "unauthorized");
    let cross = req_with(
        Method::POST,
        "/ui/session",
        &[("sec-fetch-site", "cross-site")],
        Some(json!({ "key": ADMIN })),
    );
    assert_eq!(send(&e.router, cross).await.status, StatusCode::FORBIDDEN);
    let form = Request::builder()
        .method(Method::POST)
        .uri("/ui/session")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("key={ADMIN}")))
        .unwrap();
    assert_eq!(
        send(&e.router, form).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    // The cookie: HttpOnly, SameSite=Strict, expiring with the session; Secure off loopback.
    let (r, cookie) = sign_in(&e, ADMIN, "127.0.0.1:8080").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        set.contains("Max-Age=43199") || set.contains("Max-Age=43200"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "{set}");
    assert_eq!(r.body["tenant"], "default");
    assert_eq!(r.body["scope"], "cluster-admin");
    let csrf = r.body["csrf_token"].as_str().unwrap().to_string();
    let (remote, _) = sign_in(&e, ADMIN, "rag.example.com").await;
    let set = remote.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");

    // Reads need only the cookie; writes need the session's CSRF token too.
    let who = send(
        &e.router,
        with_session(Method::GET, "/ui/session", &cookie, None, None),
    )
    .await;
    assert_eq!(who.status, StatusCode::OK);
    assert_eq!(who.body["csrf_token"], csrf.as_str());
    let list = send(
        &e.router,
        with_session(Method::GET, "/v1/collections", &cookie, None, None),
    )
    .await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    let make = |token: Option<&str>| {
        with_session(
            Method::POST,
            "/v1/collections",
            &cookie,
            token,
            Some(json!({ "name": "from-console" })),
        )
    };
    for wrong in [None, Some("not-the-token")] {
        let r = send(&e.router, make(wrong)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        assert!(r.body["error"].as_str().unwrap().contains("x-csrf-token"));
    }
    assert_eq!(
        send(&e.router, make(Some(&csrf))).await.status,
        StatusCode::CREATED
    );

    // Sign-out needs the token, ends the session on the server and deletes the cookie.
    let out = send(
        &e.router,
        with_session(Method::DELETE, "/ui/session", &cookie, None, None),
    )
    .await;
    assert_eq!(out.status, StatusCode::FORBIDDEN);
    let out = send(
        &e.router,
        with_session(Method::DELETE, "/ui/session", &cookie, Some(&csrf), None),
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let gone = send(
        &e.router,
        with_session(Method::GET, "/v1/collections", &cookie, None, None),
    )
    .await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
    assert!(gone.body["error"]
        .as_str()
        .unwrap()
        .contains("sign in again"));

    // Revoking the key ends its sessions at once.
    let issued = call(
        &e.router,
        Method::POST,
        "/v1/tenants/default/keys",
        ADMIN,
        Some(json!({ "name": "console", "scope": "read-write" })),
    )
    .await;
    let key = issued.body["key"].as_str().unwrap();
    let (r, cookie) = sign_in(&e, key, "127.0.0.1").await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["scope"], "read-write");
    let ok = send(
        &e.router,
        with_session(Method::GET, "/v1/collections", &cookie, None, None),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let id = issued.body["id"].as_str().unwrap();
    let revoked = call(
        &e.router,
        Method::DELETE,
        &format!("/v1/tenants/default/keys/{id}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = send(
        &e.router,
        with_session(Method::GET, "/v1/collections", &cookie, None, None),
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);

    // An expired session is refused, and purged at the next sign-in.
    let key_hash = ragplane::app::hash_key(ADMIN);
    e.app
        .metadata
        .create_console_session(&ragplane::metadata::ConsoleSession {
            token_hash: ragplane::app::hash_key("old-token"),
            key_hash,
            csrf_token: "x".into(),
            created_at: "2020-01-01T00:00:00.000Z".into(),
            expires_at: "2020-01-01T12:00:00.000Z".into(),
        })
        .await
        .unwrap();
    let old = "ragplane_session=old-token";
    let r = send(
        &e.router,
        with_session(Method::GET, "/v1/collections", old, None, None),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    sign_in(&e, ADMIN, "127.0.0.1").await;
    let purged = e
        .app
        .metadata
        .console_session(&ragplane::app::hash_key("old-token"))
        .await
        .unwrap();
    assert!(purged.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_document_counts_are_reported() {
    let Some(e) = env(|_| {}).await else { return };
    let r = &e.router;
    create_collection(r, ADMIN, "docs").await;
    let (id, _) = upload_text(
        r,
        ADMIN,
        "docs",
        "Bees dance to show where flowers are.",
        "bees",
    )
    .await;
    wait_status(r, ADMIN, "docs", &id, "indexed").await;
    let info = call(r, Method::GET, "/v1/collections/docs", ADMIN, None).await;
    assert_eq!(info.body["documents"], json!({ "indexed": 1, "total": 1 }));

    for _ in 0..2 {
        let s = call(
            r,
            Method::POST,
            "/v1/search",
            ADMIN,
            Some(json!({ "collection": "docs", "query": "bees" })),
        )
        .await;
        assert_eq!(s.status, StatusCode::OK);
    }
    let u = call(r, Method::GET, "/v1/usage", ADMIN, None).await;
    assert_eq!(u.status, StatusCode::OK, "{:?}", u.body);
    assert_eq!(u.body["window"], "hour");
    assert_eq!(u.body["series"].as_array().unwrap().len(), 60);
    assert_eq!(u.body["total"], json!({ "queries": 2, "llm_tokens": 0 }));
    assert_eq!(u.body["keys"][0]["name"], "admin");
    assert_eq!(
        u.body["collections"],
        json!([{ "id": "docs", "queries": 2, "llm_tokens": 0 }])
    );
    let day = call(r, Method::GET, "/v1/usage?window=day", ADMIN, None).await;
    assert_eq!(day.body["series"].as_array().unwrap().len(), 24);
    assert_eq!(day.body["total"]["queries"], 2);
    let bad = call(r, Method::GET, "/v1/usage?window=week", ADMIN, None).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body["error"].as_str().unwrap().contains("week"),
        "{:?}",
        bad.body
    );

    // Another tenant sees only its own usage.
    call(
        r,
        Method::POST,
        "/v1/tenants",
        ADMIN,
        Some(json!({ "name": "other" })),
    )
    .await;
    let k = call(
        r,
        Method::POST,
        "/v1/tenants/other/keys",
        ADMIN,
        Some(json!({ "name": "o" })),
    )
    .await;
    let other = k.body["key"].as_str().unwrap();
    let u = call(r, Method::GET, "/v1/usage", other, None).await;
    assert_eq!(u.body["total"]["queries"], 0, "{:?}", u.body);

    // Recent errors are for cluster admins: the 422 above is among them.
    let errs = call(r, Method::GET, "/v1/admin/errors", ADMIN, None).await;
    assert_eq!(errs.status, StatusCode::OK);
    assert!(
        errs.body
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["status"] == 422),
        "{:?}",
        errs.body
    );
    assert_eq!(
        call(r, Method::GET, "/v1/admin/errors", other, None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

/// Behind a load balancer: two instances on one PostgreSQL metadata store. A session made on
/// one works on the other, signing out on the other ends it on both, and their usage adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_usage_are_shared_by_instances_on_postgres() {
    let Some(db) = ragplane::testing::fresh_postgres_database("console on PostgreSQL")
        .await
        .unwrap()
    else {
        return;
    };
    let shared = |c: &mut ragplane_config::Config| {
        c.metadata = ragplane_config::MetadataConfig::Postgres(
            ragplane_config::PostgresConfig::new(db.clone()),
        );
    };
    let (Some(a), Some(b)) = (env(shared).await, env(shared).await) else {
        return;
    };
    let (r, cookie) = sign_in(&a, ADMIN, "127.0.0.1").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let csrf = r.body["csrf_token"].as_str().unwrap().to_string();
    let made = send(
        &b.router,
        with_session(
            Method::POST,
            "/v1/collections",
            &cookie,
            Some(&csrf),
            Some(json!({ "name": "shared" })),
        ),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    for e in [&a, &b] {
        let s = send(
            &e.router,
            with_session(
                Method::POST,
                "/v1/search",
                &cookie,
                Some(&csrf),
                Some(json!({ "collection": "shared", "query": "anything", "mode": "keyword" })),
            ),
        )
        .await;
        assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    }
    // The reading instance writes its own counts first; the other writes its own here (its
    // flush interval would do the same).
    a.app.usage.flush(a.app.metadata.as_ref()).await.unwrap();
    let u = send(
        &b.router,
        with_session(Method::GET, "/v1/usage", &cookie, None, None),
    )
    .await;
    assert_eq!(u.body["total"]["queries"], 2, "{:?}", u.body);

    let out = send(
        &b.router,
        with_session(Method::DELETE, "/ui/session", &cookie, Some(&csrf), None),
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let gone = send(
        &a.router,
        with_session(Method::GET, "/ui/session", &cookie, None, None),
    )
    .await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
}
