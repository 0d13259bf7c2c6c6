//! End-to-end test of `ragplane serve` on the scale-out stores, PostgreSQL metadata and S3
//! originals (the servers of scripts/services/postgres.sh and s3.sh), configured the way the
//! operator does it: a TOML file plus secrets in `RAGPLANE__…` variables. It ingests and
//! searches, then stops PostgreSQL under the running server: requests get 503 with
//! Retry-After while the database is away, and succeed again once it is back, with no restart
//! of ragplane.
//!
//! Only this test in this binary stops PostgreSQL, and cargo runs test binaries one at a time.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use std::process::Command;
use std::time::{Duration, Instant};

use ragplane_e2e::{model_available, ragplane_bin, repo_root, Server, ADMIN_KEY};
use serde_json::Value;

/// The value of a test server's variable; `None` after printing why, unless services are
/// required (CI), where a missing one fails the test.
fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let why = format!(
                "postgres_restart_gives_503_then_recovers: {var} is not set; start the servers \
                 with scripts/services/postgres.sh and s3.sh (scripts/test.sh does)"
            );
            assert!(
                std::env::var("RAGPLANE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{why}"
            );
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

fn postgres_script(action: &str) {
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/services/postgres.sh"))
        .arg(action)
        .status()
        .unwrap();
    assert!(status.success(), "postgres.sh {action} failed");
}

/// Brings PostgreSQL back even when the test fails while it is down.
struct StartPostgresOnDrop;

impl Drop for StartPostgresOnDrop {
    fn drop(&mut self) {
        // No assertion here: this may run while a failed assertion unwinds.
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/services/postgres.sh"))
            .arg("up")
            .status();
    }
}

fn ragplane(args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new(ragplane_bin())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ragplane {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Status, Retry-After and body of `GET path` with the admin key.
async fn get(server: &Server, path: &str) -> (u16, Option<String>, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", server.url))
        .bearer_auth(ADMIN_KEY)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restart_gives_503_then_recovers() {
    if !model_available() {
        return;
    }
    let (Some(pg), Some(endpoint)) = (
        service_env("RAGPLANE_TEST_POSTGRES_URL"),
        service_env("RAGPLANE_TEST_S3_ENDPOINT"),
    ) else {
        return;
    };
    let s3 = |v: &str| std::env::var(v).unwrap();
    let run = format!(
        "e2e_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let out = Command::new("psql")
        .args([&pg, "-qc", &format!("CREATE DATABASE {run}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db_url = format!("{}/{run}", pg.rsplit_once('/').unwrap().0);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ragplane.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[metadata]
backend = "postgres"
acquire_timeout_ms = 1000

[objects]
backend = "s3"
bucket = "{bucket}"
prefix = "{run}"
endpoint = "{endpoint}"
region = "{region}"
"#,
            bucket = s3("RAGPLANE_TEST_S3_BUCKET"),
            region = s3("RAGPLANE_TEST_S3_REGION"),
        ),
    )
    .unwrap();
    // Secrets arrive through the environment, as the operator passes them from Secrets.
    let env = [
        ("RAGPLANE_CONFIG", config.display().to_string()),
        ("RAGPLANE__METADATA__URL", db_url),
        (
            "RAGPLANE__OBJECTS__ACCESS_KEY_ID",
            s3("RAGPLANE_TEST_S3_ACCESS_KEY"),
        ),
        (
            "RAGPLANE__OBJECTS__SECRET_ACCESS_KEY",
            s3("RAGPLANE_TEST_S3_SECRET_KEY"),
        ),
    ];
    for _ in 0..2 {
        let out = ragplane(&["migrate"], &env);
        assert!(out.contains("(PostgreSQL) is up to date"), "{out}");
    }

    let data = dir.path().join("data");
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut server = Server::start(&data, None, &env_refs).unwrap();
    let corpus = repo_root().join("examples/corpus");
    let out = server
        .cli(&["ingest", "-c", "examples", corpus.to_str().unwrap()])
        .unwrap();
    assert!(out.contains("indexed 5 documents"), "{out}");
    let out = server
        .cli(&[
            "search",
            "--json",
            "-c",
            "examples",
            "How far away can the Skerry Point light be seen?",
        ])
        .unwrap();
    let hits: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        hits["hits"][0]["title"], "skerry-point-lighthouse.md",
        "{out}"
    );
    assert!(
        !data.join("objects").exists(),
        "originals must go to S3, not the data directory"
    );

    // PostgreSQL goes away: 503 with Retry-After, promptly, never a 500 or a hang.
    let guard = StartPostgresOnDrop;
    postgres_script("down");
    for path in ["/v1/collections", "/v1/collections/examples/documents"] {
        let start = Instant::now();
        let (status, retry, body) = get(&server, path).await;
        assert_eq!(status, 503, "{path} while PostgreSQL is down: {body}");
        assert!(retry.is_some(), "503 carries Retry-After");
        assert_eq!(body["type"], "unavailable", "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }
    let (status, _, _) = get(&server, "/readyz").await;
    assert_eq!(status, 503, "not ready while the database is away");

    // PostgreSQL is back: the same process serves again.
    drop(guard);
    let start = Instant::now();
    loop {
        let (status, _, body) = get(&server, "/v1/collections").await;
        if status == 200 {
            assert_eq!(body[0]["name"], "examples", "{body}");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no recovery after PostgreSQL came back; log:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Writes work again too: a new document is stored, queued and indexed.
    let doc = dir.path().join("after-restart.md");
    std::fs::write(
        &doc,
        "# Tide tables\n\nThe spring tide at Skerry Point rises four metres.",
    )
    .unwrap();
    let out = server
        .cli(&["ingest", "-c", "examples", doc.to_str().unwrap()])
        .unwrap();
    assert!(out.contains("indexed 1 documents"), "{out}");
    server.stop().unwrap();
}
