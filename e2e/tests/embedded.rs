//! End-to-end tests of `ragplane serve` on embedded defaults, driven as a user would: the CLI
//! and the HTTP API against the real binary, with restarts and a kill -9 mid-ingestion.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ragplane_e2e::{model_available, repo_root, Server};
use reqwest::Method;
use serde_json::{json, Value};

/// The first hit that `ragplane search --json` printed.
fn top_hit(out: &str) -> Value {
    let v: Value = serde_json::from_str(out).expect("search --json prints JSON");
    v["hits"][0].clone()
}

#[test]
fn examples_are_ingested_and_known_facts_rank_first() {
    if !model_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), None, &[]).unwrap();
    let corpus = repo_root().join("examples/corpus");
    let out = server
        .cli(&[
            "ingest",
            "--collection",
            "examples",
            corpus.to_str().unwrap(),
        ])
        .unwrap();
    assert!(out.contains("indexed 5 documents"), "{out}");

    let cases = [
        (
            "How far away can the Skerry Point light be seen?",
            "skerry-point-lighthouse.md",
        ),
        (
            "How long does the space station take to orbit the Earth?",
            "orbital-mechanics.pdf",
        ),
        (
            "What does the waggle dance of bees encode?",
            "honeybees.html",
        ),
        (
            "What is the hydration of the sourdough loaf?",
            "sourdough-basics.txt",
        ),
    ];
    for (question, want) in cases {
        let out = server
            .cli(&["search", "--json", "--collection", "examples", question])
            .unwrap();
        let top = top_hit(&out);
        assert_eq!(top["title"], want, "question {question:?}\n{out}");
        // Provenance: the PDF's chunk names its page, the Markdown file's its heading path.
        let provenance = &top["provenance"];
        match want {
            "orbital-mechanics.pdf" => assert_eq!(provenance["page"], 1, "{out}"),
            "skerry-point-lighthouse.md" => assert!(
                provenance["headings"]
                    .as_array()
                    .is_some_and(|h| !h.is_empty()),
                "{out}"
            ),
            _ => {}
        }
    }
    let answer = server
        .cli(&[
            "query",
            "--collection",
            "examples",
            "When was Skerry Point Lighthouse completed?",
        ])
        .unwrap();
    assert!(answer.contains("generation is not configured"), "{answer}");
    assert!(answer.contains("skerry-point-lighthouse.md"), "{answer}");
    server.stop().unwrap();
}

#[test]
fn migrate_creates_the_schema_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = std::process::Command::new(ragplane_e2e::ragplane_bin())
            .args(["migrate", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("is up to date"));
    }
    assert!(dir.path().join("metadata.db").exists());
}

#[test]
fn cli_errors_exit_non_zero_with_a_message() {
    let out = std::process::Command::new(ragplane_e2e::ragplane_bin())
        .args([
            "ingest",
            "--url",
            "http://127.0.0.1:9",
            "/definitely/not/here",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/definitely/not/here does not exist"), "{err}");

    let out = std::process::Command::new(ragplane_e2e::ragplane_bin())
        .args(["search", "--url", "http://127.0.0.1:9", "hello"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed to reach ragplane"));

    let out = std::process::Command::new(ragplane_e2e::ragplane_bin())
        .args(["serve", "--config", "/no/such/config.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/config.toml does not exist"));

    let out = std::process::Command::new(ragplane_e2e::ragplane_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RAGPLANE__CHUNKING__OVERLAP_TOKENS", "500")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chunking.overlap_tokens"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn wait_all_indexed(
    server: &Server,
    collection: &str,
    ids: &[String],
    timeout: Duration,
) -> i64 {
    let start = Instant::now();
    loop {
        let mut chunks = 0;
        let mut done = 0;
        for id in ids {
            let (status, d) = server
                .call(
                    Method::GET,
                    &format!("/v1/collections/{collection}/documents/{id}"),
                    None,
                )
                .await
                .unwrap();
            assert_eq!(status, 200, "{d:?}");
            assert_ne!(d["status"], "failed", "{d:?}");
            if d["status"] == "indexed" {
                done += 1;
                chunks += d["chunk_count"].as_i64().unwrap();
            }
        }
        if done == ids.len() {
            return chunks;
        }
        assert!(
            start.elapsed() < timeout,
            "{done}/{} indexed after {timeout:?}\n{}",
            ids.len(),
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn document_text(i: usize) -> String {
    // Distinct, multi-chunk documents.
    let mut t = format!("Report number {i}.\n\n");
    for p in 0..12 {
        t.push_str(&format!(
            "Paragraph {p} of report {i} discusses topic {} with figure {} and remarks on item {}. ",
            (i * 7 + p) % 23,
            i * 100 + p,
            (i + p) % 11
        ));
        t.push_str("The committee reviewed the measurements and agreed on the next steps for the project.\n\n");
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything() {
    if !model_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, None, &[]).unwrap();
    server
        .call(
            Method::POST,
            "/v1/collections",
            Some(json!({ "name": "keep" })),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (s, v) = server
            .call(
                Method::POST,
                "/v1/collections/keep/documents",
                Some(json!({ "text": document_text(i), "title": format!("r{i}") })),
            )
            .await
            .unwrap();
        assert_eq!(s, 202, "{v:?}");
        ids.push(v["document"]["id"].as_str().unwrap().to_string());
    }
    let chunks = wait_all_indexed(&server, "keep", &ids, Duration::from_secs(120)).await;
    let query = json!({ "collection": "keep", "query": "figure 201", "top_k": 5 });
    let (_, before) = server
        .call(Method::POST, "/v1/search", Some(query.clone()))
        .await
        .unwrap();
    server.stop().unwrap();

    let server = Server::start(&data, None, &[]).unwrap();
    let (s, c) = server
        .call(Method::GET, "/v1/collections/keep", None)
        .await
        .unwrap();
    assert_eq!(s, 200, "{c:?}");
    assert_eq!(c["points"].as_i64().unwrap(), chunks);
    assert_eq!(
        wait_all_indexed(&server, "keep", &ids, Duration::from_secs(5)).await,
        chunks
    );
    let (_, after) = server
        .call(Method::POST, "/v1/search", Some(query))
        .await
        .unwrap();
    let strip = |v: &Value| -> Vec<(String, i64)> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["document_id"].as_str().unwrap().to_string(),
                    h["chunk"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&before), strip(&after), "same results after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingestion_loses_and_duplicates_nothing() {
    if !model_available() {
        return;
    }
    const N: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, None, &[]).unwrap();
    server
        .call(
            Method::POST,
            "/v1/collections",
            Some(json!({ "name": "crash" })),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..N {
        let (s, v) = server
            .call(
                Method::POST,
                "/v1/collections/crash/documents",
                Some(json!({ "text": document_text(i), "title": format!("r{i}") })),
            )
            .await
            .unwrap();
        assert_eq!(s, 202, "{v:?}");
        ids.push(v["document"]["id"].as_str().unwrap().to_string());
    }
    // Let some, but not all, documents finish; then kill without warning.
    let start = Instant::now();
    loop {
        let (_, page) = server
            .call(
                Method::GET,
                "/v1/collections/crash/documents?limit=1000",
                None,
            )
            .await
            .unwrap();
        let indexed = page["documents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["status"] == "indexed")
            .count();
        if indexed >= 2 {
            assert!(
                indexed < N,
                "ingestion finished before the kill; the test needs a slower corpus"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "nothing indexed\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();

    let server = Server::start(&data, None, &[]).unwrap();
    let chunks = wait_all_indexed(&server, "crash", &ids, Duration::from_secs(300)).await;
    let (_, c) = server
        .call(Method::GET, "/v1/collections/crash", None)
        .await
        .unwrap();
    assert_eq!(
        c["points"].as_i64().unwrap(),
        chunks,
        "points equal the sum of chunk counts: no duplicates, none lost"
    );
    // Each document is searchable, and no (document, chunk) pair appears twice.
    let (_, hits) = server
        .call(
            Method::POST,
            "/v1/search",
            Some(json!({ "collection": "crash", "query": "report figure", "top_k": 100 })),
        )
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for h in hits["hits"].as_array().unwrap() {
        assert!(
            seen.insert((h["document_id"].to_string(), h["chunk"].as_i64())),
            "duplicate hit {h:?}"
        );
    }
    // The keyword index and the vectors hold exactly the same chunks after the crash: every
    // chunk contains the committee sentence, so keyword search returns them all, as dense does.
    let mut sets = Vec::new();
    for mode in ["keyword", "dense"] {
        let (_, hits) = server
            .call(
                Method::POST,
                "/v1/search",
                Some(json!({ "collection": "crash", "query": "committee reviewed measurements", "top_k": 1000, "mode": mode })),
            )
            .await
            .unwrap();
        let set: HashSet<(String, Option<i64>)> = hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["document_id"].to_string(), h["chunk"].as_i64()))
            .collect();
        assert_eq!(
            set.len() as i64,
            chunks,
            "{mode} search sees every chunk once"
        );
        sets.push(set);
    }
    assert_eq!(
        sets[0], sets[1],
        "keyword and dense indexes agree after kill -9"
    );
    // No job is stuck: every queue is empty.
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let metrics_later = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics_later.contains(r#"ragplane_queue_depth{queue="documents"} 0"#),
        "queue not empty:\n{}\n{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("ragplane_queue"))
            .collect::<Vec<_>>()
            .join("\n"),
        metrics_later
            .lines()
            .filter(|l| l.starts_with("ragplane_queue"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn eval_scores_a_beir_folder() {
    if !model_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), None, &[]).unwrap();
    let fixture = repo_root().join("e2e/fixtures/beir-mini");
    let out = server
        .cli(&[
            "eval",
            "--json",
            "--collection",
            "beir",
            "-k",
            "5",
            fixture.to_str().unwrap(),
        ])
        .unwrap();
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["queries"], 10, "{out}");
    assert_eq!(v["documents"], 12);
    // Each query paraphrases one document; a working retriever finds nearly all of them.
    let ndcg = v["ndcg@10"].as_f64().unwrap();
    let recall = v["recall@5"].as_f64().unwrap();
    assert!(ndcg > 0.8 && ndcg <= 1.0, "nDCG@10 {ndcg}");
    assert!((0.9..=1.0).contains(&recall), "recall@5 {recall}");
    // A second run refuses to reuse the collection instead of mixing corpora, unless told to.
    let again = server.cli(&["eval", "--collection", "beir", fixture.to_str().unwrap()]);
    assert!(again.unwrap_err().to_string().contains("already exists"));
    // Every mode, at a k beyond the old 25-chunk ceiling, on the same upload.
    for mode in ["dense", "keyword", "hybrid"] {
        let out = server
            .cli(&[
                "eval",
                "--json",
                "--reuse",
                "--collection",
                "beir",
                "--mode",
                mode,
                "-k",
                "40",
                fixture.to_str().unwrap(),
            ])
            .unwrap();
        let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(v["mode"], mode);
        let ndcg = v["ndcg@10"].as_f64().unwrap();
        assert!(ndcg > 0.5, "{mode}: nDCG@10 {ndcg}");
        if mode != "keyword" {
            // Twelve documents and k = 40: every one comes back (keyword search returns only
            // documents sharing a word with the query).
            assert_eq!(v["recall@40"].as_f64(), Some(1.0), "{mode}: {out}");
        }
        assert!(v["search_p95_ms"].as_f64().unwrap() > 0.0);
    }
    server.stop().unwrap();
}

/// `ragplane keys` creates, lists, rotates and revokes keys, and a bad scope is a clear error
/// with a non-zero exit.
#[test]
fn keys_are_managed_from_the_command_line() {
    if !model_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), None, &[]).unwrap();
    let created = server
        .cli(&[
            "keys",
            "create",
            "--name",
            "ci-reader",
            "--scope",
            "query-only",
        ])
        .unwrap();
    assert!(created.contains("scope: query-only"), "{created}");
    let field = |out: &str, name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap()
            .to_string()
    };
    let id = field(&created, "id");
    let key = field(&created, "key");
    assert!(key.starts_with("rp_"));
    let list = server.cli(&["keys", "list"]).unwrap();
    assert!(list.contains(&id) && list.contains("query-only"), "{list}");
    assert!(!list.contains(&key), "a listing never shows a key");
    let rotated = server.cli(&["keys", "rotate", &id]).unwrap();
    assert!(
        rotated.contains(&format!("the old key {id} is revoked")),
        "{rotated}"
    );
    let new_id = field(&rotated, "id");
    assert_eq!(
        server.cli(&["keys", "revoke", &new_id]).unwrap().trim(),
        format!("revoked {new_id}")
    );
    let list = server.cli(&["keys", "list"]).unwrap();
    assert_eq!(list.matches("revoked").count(), 2, "{list}");
    let bad = server
        .cli(&["keys", "create", "--scope", "root"])
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("unknown variant") || bad.contains("scope"),
        "{bad}"
    );
    server.stop().unwrap();
}

/// SIGHUP re-reads the configuration and applies its log filter to the running server.
#[test]
fn sighup_applies_a_new_log_filter() {
    if !model_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ragplane.toml");
    std::fs::write(&config, "[telemetry]\nlog_filter = \"warn\"\n").unwrap();
    let mut server = Server::start_command(
        &["serve", "--config", config.to_str().unwrap()],
        &dir.path().join("data"),
        None,
        &[],
    )
    .unwrap();
    let key = ragplane_e2e::ADMIN_KEY;
    let filter = || -> Value {
        let out = std::process::Command::new("curl")
            .args(["-sf", "-H", &format!("Authorization: Bearer {key}")])
            .arg(format!("{}/v1/admin/log-filter", server.url))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    assert_eq!(filter()["filter"], "warn");
    std::fs::write(
        &config,
        "[telemetry]\nlog_filter = \"info,ragplane=debug\"\n",
    )
    .unwrap();
    server.signal("HUP").unwrap();
    let start = Instant::now();
    while filter()["filter"] != "info,ragplane=debug" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        server.log_tail().contains("log filter changed"),
        "{}",
        server.log_tail()
    );
    server.stop().unwrap();
}

/// The worker and the embedding server re-read their log filter on SIGHUP too, instead of being
/// ended by it; a filter given as `RAGPLANE_LOG` keeps its precedence over the file's.
#[test]
fn sighup_reloads_the_filter_of_workers_and_embedding_servers() {
    if !model_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ragplane.toml");
    std::fs::write(&config, "[telemetry]\nlog_filter = \"warn\"\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let mut worker = Server::start_command(
        &["worker", "--config", config_arg],
        &dir.path().join("worker"),
        None,
        &[],
    )
    .unwrap();
    let mut embedder = Server::start_command(
        &["embed-server", "--config", config_arg],
        &dir.path().join("embedder"),
        None,
        &[("RAGPLANE_LOG", "warn")],
    )
    .unwrap();
    std::fs::write(&config, "[telemetry]\nlog_filter = \"info\"\n").unwrap();
    for (process, expected) in [
        (&worker, "log filter changed filter=\"info\""),
        (&embedder, "RAGPLANE_LOG) is set and takes precedence"),
    ] {
        process.signal("HUP").unwrap();
        let start = Instant::now();
        while !process.log_tail().contains(expected) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no {expected:?} after SIGHUP:\n{}",
                process.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Still running: each stops cleanly on SIGTERM (one ended by SIGHUP would fail here).
    worker.stop().unwrap();
    embedder.stop().unwrap();
}

/// A generated admin key is handed over in `<data_dir>/admin-key` when stdout is not a
/// terminal. When that file is already there, start-up fails before any key is stored, so the
/// next start, once the file is moved away, still generates one and hands it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_admin_key_is_never_stored_without_being_handed_over() {
    if !model_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("admin-key");
    std::fs::write(&file, "rp_kept_from_an_earlier_data_directory\n").unwrap();
    let refused = Server::start_generating_admin_key(&data)
        .err()
        .expect("start-up refused while the file is there");
    let message = format!("{refused:#}");
    assert!(
        message.contains("admin-key") && message.contains("exists"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "rp_kept_from_an_earlier_data_directory\n",
        "the file is never overwritten"
    );

    std::fs::remove_file(&file).unwrap();
    let server = Server::start_generating_admin_key(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    let (status, body) = server
        .call_as(&key, Method::GET, "/v1/collections", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "the written key does not work: {body}");
}
