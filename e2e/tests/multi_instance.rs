//! The scale-out data plane as separate processes: two API instances (`serve --no-workers`) and
//! two workers (`ragplane worker`) sharing PostgreSQL (metadata and vectors), Redis (queue,
//! second cache layer, rate limits) and an S3-compatible server, all real servers started by
//! `scripts/services/*.sh`.
//!
//! Shown here: a document ingested through instance 1 is found through instance 2; deleting and
//! replacing it invalidates cached results on both; one rate limit holds across both; a worker
//! killed with SIGKILL while 1,000 documents are ingested loses nothing and duplicates nothing;
//! a worker stopped with SIGTERM finishes what it holds; queries keep succeeding while Redis is
//! down.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ragplane_e2e::{free_port, model_available, service, Server, ADMIN_KEY};
use reqwest::Method;
use serde_json::{json, Value};

/// The shared services, or `None` (with the reason printed) when they are not running.
struct Services {
    postgres: String,
    redis: String,
    s3_endpoint: String,
    s3_region: String,
    s3_bucket: String,
    s3_access_key: String,
    s3_secret_key: String,
}

fn services(test: &str) -> Option<Services> {
    if !model_available() {
        return None;
    }
    Some(Services {
        postgres: service("RAGPLANE_TEST_POSTGRES_URL", test)?,
        redis: service("RAGPLANE_TEST_REDIS_URL", test)?,
        s3_endpoint: service("RAGPLANE_TEST_S3_ENDPOINT", test)?,
        s3_region: service("RAGPLANE_TEST_S3_REGION", test)?,
        s3_bucket: service("RAGPLANE_TEST_S3_BUCKET", test)?,
        s3_access_key: service("RAGPLANE_TEST_S3_ACCESS_KEY", test)?,
        s3_secret_key: service("RAGPLANE_TEST_S3_SECRET_KEY", test)?,
    })
}

/// A unique name for this run's database, key prefix and object prefix.
fn run_id(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}_{nanos:x}")
}

/// Creates a fresh database for this run; returns its URL.
fn fresh_database(admin_url: &str, name: &str) -> String {
    let out = Command::new("psql")
        .arg(admin_url)
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "CREATE DATABASE failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    format!("{base}/{name}")
}

/// The configuration every process of one deployment shares.
fn config(s: &Services, id: &str, redis_url: &str, extra: &str) -> String {
    let db = fresh_database(&s.postgres, id);
    format!(
        r#"
[metadata]
backend = "postgres"
url = "{db}"

[objects]
backend = "s3"
bucket = "{bucket}"
prefix = "{id}/"
endpoint = "{endpoint}"
region = "{region}"
path_style = true
access_key_id = "{ak}"
secret_access_key = "{sk}"

[vectors]
backend = "postgres"
url = "{db}"

[queue]
backend = "redis"
visibility_timeout_secs = 3
max_attempts = 5
retry_backoff_ms = 100

[redis]
url = "{redis_url}"
key_prefix = "{id}"
command_timeout_ms = 200

[cache]
redis_l2 = true

[workers]
concurrency = 2
poll_interval_ms = 50

[server]
shutdown_grace_secs = 30
{extra}
"#,
        bucket = s.s3_bucket,
        endpoint = s.s3_endpoint,
        region = s.s3_region,
        ak = s.s3_access_key,
        sk = s.s3_secret_key,
    )
}

/// Two API instances and `workers` worker processes on one configuration.
struct Deployment {
    _dir: tempfile::TempDir,
    apis: Vec<Server>,
    workers: Vec<Server>,
    config_path: String,
}

impl Deployment {
    fn start(config: &str, workers: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("ragplane.toml");
        std::fs::write(&config_path, config).unwrap();
        let config_path = config_path.to_string_lossy().into_owned();
        let env = [("RAGPLANE_CONFIG", config_path.as_str())];
        let apis = (0..2)
            .map(|i| {
                Server::start_command(
                    &["serve", "--no-workers"],
                    &dir.path().join(format!("api{i}")),
                    None,
                    &env,
                )
                .unwrap()
            })
            .collect();
        let mut d = Self {
            _dir: dir,
            apis,
            workers: Vec::new(),
            config_path,
        };
        for _ in 0..workers {
            d.add_worker();
        }
        d
    }

    fn add_worker(&mut self) {
        let n = self.workers.len();
        let env = [("RAGPLANE_CONFIG", self.config_path.as_str())];
        let dir = self._dir.path().join(format!("worker{n}"));
        self.workers.push(
            Server::start_command(&["worker", "--queues", "documents"], &dir, None, &env).unwrap(),
        );
    }
}

async fn upload(api: &Server, collection: &str, name: &str, text: &str) -> Value {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(text.as_bytes().to_vec())
            .file_name(name.to_string())
            .mime_str("text/plain")
            .unwrap(),
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/collections/{collection}/documents", api.url))
        .bearer_auth(ADMIN_KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "upload failed: {status} {body}");
    body
}

async fn wait_indexed(api: &Server, collection: &str, doc: &str) {
    let start = Instant::now();
    loop {
        let (_, d) = api
            .call(
                Method::GET,
                &format!("/v1/collections/{collection}/documents/{doc}"),
                None,
            )
            .await
            .unwrap();
        match d["status"].as_str() {
            Some("indexed") => return,
            Some("failed") => panic!("document failed: {d}"),
            _ => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "document {doc} not indexed in time: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn search(api: &Server, collection: &str, q: &str) -> Vec<Value> {
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/search",
            Some(json!({"collection": collection, "query": q, "top_k": 3})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "search failed: {body}");
    body["hits"].as_array().cloned().unwrap_or_default()
}

fn texts(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| h["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn create_collection(api: &Server, name: &str) {
    let (status, body) = api
        .call(Method::POST, "/v1/collections", Some(json!({"name": name})))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn documents_and_cache_invalidation_cross_instances() {
    let test = "documents_and_cache_invalidation_cross_instances";
    let Some(s) = services(test) else { return };
    let id = run_id("mi_docs");
    let d = Deployment::start(&config(&s, &id, &s.redis, ""), 2);
    let (a, b) = (&d.apis[0], &d.apis[1]);
    create_collection(a, "shared").await;

    let doc = upload(
        a,
        "shared",
        "otters.txt",
        "Sea otters hold hands while they sleep so they do not drift apart.",
    )
    .await;
    let doc_id = doc["document"]["id"].as_str().unwrap().to_string();
    wait_indexed(b, "shared", &doc_id).await;
    let q = "why do otters hold hands";
    let via_b = search(b, "shared", q).await;
    assert!(
        texts(&via_b)[0].contains("hold hands"),
        "ingested through instance 1, found through instance 2: {via_b:?}"
    );
    // Both instances now hold the result in their caches.
    assert_eq!(texts(&search(a, "shared", q).await), texts(&via_b));

    // Replace the document through instance 1: delete it, upload the new text.
    let (status, _) = a
        .call(
            Method::DELETE,
            &format!("/v1/collections/shared/documents/{doc_id}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204);
    for api in [a, b] {
        let hits = search(api, "shared", q).await;
        assert!(
            texts(&hits).iter().all(|t| !t.contains("drift apart")),
            "a deleted document's cached hits are gone on every instance: {hits:?}"
        );
    }
    let new = upload(
        a,
        "shared",
        "otters.txt",
        "Sea otters hold hands to stay together; a group is called a raft.",
    )
    .await;
    let new_id = new["document"]["id"].as_str().unwrap().to_string();
    wait_indexed(a, "shared", &new_id).await;
    for api in [b, a] {
        let hits = search(api, "shared", q).await;
        assert!(
            texts(&hits)[0].contains("raft"),
            "the new version is served by every instance: {hits:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_rate_limit_across_two_instances() {
    let test = "one_rate_limit_across_two_instances";
    let Some(s) = services(test) else { return };
    let id = run_id("mi_rate");
    let limits = "\n[rate_limit]\nenabled = true\nrequests_per_second = 0.5\nburst = 4\nbackend = \"redis\"\n";
    let d = Deployment::start(&config(&s, &id, &s.redis, limits), 0);
    let mut statuses = Vec::new();
    for i in 0..8 {
        let (status, body) = d.apis[i % 2]
            .call(Method::GET, "/v1/collections", None)
            .await
            .unwrap();
        if status == 429 {
            assert_eq!(body["type"], "rate_limited", "{body}");
        }
        statuses.push(status);
    }
    let allowed = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(
        allowed, 4,
        "a burst of 4 shared by both instances (alternating), not 4 each: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_loses_and_duplicates_nothing() {
    let test = "a_killed_worker_loses_and_duplicates_nothing";
    let Some(s) = services(test) else { return };
    let id = run_id("mi_kill");
    let mut d = Deployment::start(&config(&s, &id, &s.redis, ""), 2);
    create_collection(&d.apis[0], "bulk").await;
    const N: usize = 1000;
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let text = format!(
            "Record {i}: the warehouse in district {} stores item {}.",
            i % 37,
            i * 7
        );
        let body = upload(&d.apis[i % 2], "bulk", &format!("r{i}.txt"), &text).await;
        ids.push(body["document"]["id"].as_str().unwrap().to_string());
        if i == N / 4 {
            d.workers[0].kill9();
        }
    }
    // The survivor and a replacement finish the work, including the killed worker's jobs
    // once their claims expire.
    d.add_worker();
    let api = &d.apis[1];
    let start = Instant::now();
    loop {
        let statuses = document_statuses(api, "bulk").await;
        let indexed = statuses.iter().filter(|s| *s == "indexed").count();
        assert!(statuses.iter().all(|s| s != "failed"), "no document failed");
        if indexed == N {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "only {indexed} of {N} indexed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // One chunk per document, each exactly once.
    let (_, c) = api
        .call(Method::GET, "/v1/collections/bulk", None)
        .await
        .unwrap();
    assert_eq!(
        c["points"].as_u64(),
        Some(N as u64),
        "no duplicate points: {c}"
    );
    // No stuck jobs: the depth gauge (refreshed every 2 s) falls to zero, in a worker and in an
    // API instance without workers, which exports it for a pool scaled to zero.
    let start = Instant::now();
    loop {
        let mut zero = true;
        for url in [&d.workers[1].url, &d.apis[0].url] {
            let metrics = reqwest::get(format!("{url}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            zero &= metrics.contains("ragplane_queue_depth{queue=\"documents\"} 0");
        }
        if zero {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the depth gauge of the worker or of the API instance did not read 0: jobs left in \
             the queue, or the API does not export it"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(ids.len(), N);
}

/// The status of every document of a collection, through the paged listing.
async fn document_statuses(api: &Server, collection: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/collections/{collection}/documents?limit=1000");
        if let Some(a) = &after {
            path.push_str(&format!("&cursor={a}"));
        }
        let (status, body) = api.call(Method::GET, &path, None).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let docs = body["documents"].as_array().cloned().unwrap_or_default();
        if docs.is_empty() {
            return out;
        }
        for d in &docs {
            out.push(d["status"].as_str().unwrap_or_default().to_string());
        }
        after = docs
            .last()
            .and_then(|d| d["id"].as_str())
            .map(str::to_string);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_a_worker_finish_what_it_holds() {
    let test = "sigterm_lets_a_worker_finish_what_it_holds";
    let Some(s) = services(test) else { return };
    let id = run_id("mi_term");
    let mut d = Deployment::start(&config(&s, &id, &s.redis, ""), 1);
    create_collection(&d.apis[0], "t").await;
    // A long document keeps the worker busy for a while.
    let long: String = (0..400)
        .map(|i| {
            format!("Paragraph {i} describes the harbour, its cranes and the tides in detail. ")
        })
        .collect();
    let doc = upload(&d.apis[0], "t", "long.txt", &long).await;
    let doc_id = doc["document"]["id"].as_str().unwrap().to_string();
    // Wait until the worker has claimed it, then ask it to stop.
    let start = Instant::now();
    loop {
        let (_, j) = d.apis[0]
            .call(
                Method::GET,
                &format!("/v1/jobs/{}", doc["job_id"].as_str().unwrap()),
                None,
            )
            .await
            .unwrap();
        if j["status"] == "running" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never claimed: {j}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.workers[0].terminate();
    assert!(
        d.workers[0].wait_exit(Duration::from_secs(120)).unwrap(),
        "the worker exits cleanly after finishing"
    );
    let (_, doc) = d.apis[0]
        .call(
            Method::GET,
            &format!("/v1/collections/t/documents/{doc_id}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        doc["status"], "indexed",
        "the job in hand was finished: {doc}"
    );
}

/// A Redis of this test's own, so stopping it does not disturb the other tests.
struct OwnRedis {
    child: std::process::Child,
    url: String,
}

impl OwnRedis {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by scripts/services/redis.sh)");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_keep_succeeding_while_redis_is_down() {
    let test = "queries_keep_succeeding_while_redis_is_down";
    let Some(s) = services(test) else { return };
    let redis_dir = tempfile::tempdir().unwrap();
    let redis = OwnRedis::start(redis_dir.path());
    let id = run_id("mi_redis");
    let limits =
        "\n[rate_limit]\nenabled = true\nbackend = \"redis\"\non_backend_error = \"open\"\n";
    let d = Deployment::start(&config(&s, &id, &redis.url, limits), 1);
    create_collection(&d.apis[0], "r").await;
    let doc = upload(
        &d.apis[0],
        "r",
        "bees.txt",
        "Honey bees communicate the direction of flowers with a waggle dance.",
    )
    .await;
    wait_indexed(&d.apis[0], "r", doc["document"]["id"].as_str().unwrap()).await;
    let q = "how do bees tell others where flowers are";
    assert!(texts(&search(&d.apis[1], "r", q).await)[0].contains("waggle"));

    drop(redis);
    for i in 0..20 {
        let api = &d.apis[i % 2];
        // New queries (embedding and index, no cache) and repeated ones both answer.
        let query = if i % 3 == 0 {
            q.to_string()
        } else {
            format!("{q} {i}")
        };
        let started = Instant::now();
        let hits = search(api, "r", &query).await;
        assert!(texts(&hits)[0].contains("waggle"), "{hits:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a dead Redis costs at most its command timeout, not a hang"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_connections_get_answers_or_429() {
    let test = "a_thousand_connections_get_answers_or_429";
    let Some(s) = services(test) else { return };
    let secs: u64 = std::env::var("RAGPLANE_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let id = run_id("mi_load");
    let d = Deployment::start(&config(&s, &id, &s.redis, ""), 1);
    create_collection(&d.apis[0], "load").await;
    let doc = upload(
        &d.apis[0],
        "load",
        "tides.txt",
        "Spring tides happen at new and full moon, when sun and moon pull together.",
    )
    .await;
    wait_indexed(&d.apis[0], "load", doc["document"]["id"].as_str().unwrap()).await;

    let urls: Vec<String> = d.apis.iter().map(|a| a.url.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..1000 {
        let url = format!("{}/v1/search", urls[c % urls.len()]);
        tasks.spawn(async move {
            // One client per connection, so there are 1,000 connections.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap();
            let mut seen: Vec<(u16, u64)> = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                // A few distinct queries: most are served from the caches, some are embedded.
                let q = format!("when do spring tides happen {}", (c as u64 + i) % 16);
                let status = match client
                    .post(&url)
                    .bearer_auth(ADMIN_KEY)
                    .json(&json!({"collection": "load", "query": q, "top_k": 3}))
                    .send()
                    .await
                {
                    Ok(r) => {
                        let st = r.status().as_u16();
                        let _ = r.bytes().await;
                        st
                    }
                    Err(e) => panic!("connection {c}: transport error {e}"),
                };
                match seen.iter_mut().find(|(s, _)| *s == status) {
                    Some((_, n)) => *n += 1,
                    None => seen.push((status, 1)),
                }
                i += 1;
            }
            seen
        });
    }
    let mut totals: std::collections::BTreeMap<u16, u64> = Default::default();
    while let Some(r) = tasks.join_next().await {
        for (status, n) in r.unwrap() {
            *totals.entry(status).or_default() += n;
        }
    }
    eprintln!("1,000 connections for {secs} s: responses by status {totals:?}");
    assert!(totals.get(&200).copied().unwrap_or(0) > 1000, "{totals:?}");
    assert!(
        totals.keys().all(|&s| s == 200 || s == 429),
        "only 200 and 429 (by design): {totals:?}"
    );
}
