//! Helpers for tests of this crate and of the end-to-end suite: where the model is, and a
//! configuration rooted in a temporary directory.

use std::path::{Path, PathBuf};

use ragplane_config::{Config, Secret};

/// The model directory and ONNX Runtime library, if the setup script has run.
///
/// When they are missing, returns `None` after printing why, so the caller can skip; with
/// `RAGPLANE_REQUIRE_MODEL=1` (as in CI) it panics instead, so a missing install step fails
/// loudly rather than skipping.
pub fn model_files() -> Option<(PathBuf, PathBuf)> {
    let cfg = ragplane_config::EmbeddingConfig::default();
    let dir = std::env::var_os("RAGPLANE_MODEL_DIR")
        .map_or_else(|| cfg.resolved_model_dir(), PathBuf::from);
    let lib = std::env::var_os("RAGPLANE_ORT_LIBRARY")
        .map_or_else(|| cfg.resolved_ort_library(), PathBuf::from);
    if dir.join("model.onnx").exists() && dir.join("tokenizer.json").exists() && lib.exists() {
        return Some((dir, lib));
    }
    let why = format!(
        "embedding model or ONNX Runtime not found ({} / {}); run scripts/setup-model.sh",
        dir.display(),
        lib.display()
    );
    assert!(
        std::env::var("RAGPLANE_REQUIRE_MODEL").as_deref() != Ok("1"),
        "{why}"
    );
    eprintln!("SKIPPED: {why}");
    None
}

/// A configuration keeping all data under `dir`, with the admin key `admin_key`.
pub fn config_in(dir: &Path, model: &(PathBuf, PathBuf), admin_key: &str) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.embedding.model_dir = Some(model.0.clone());
    c.embedding.ort_library = Some(model.1.clone());
    c.auth.admin_key = Some(Secret::new(admin_key));
    c.workers.poll_interval_ms = 50;
    c.parsing.program = Some(ragplane_binary());
    c
}

/// The `ragplane` binary cargo built beside the running test or bench (`target/<profile>/`),
/// which parses documents in child processes: the test harness itself cannot.
pub fn ragplane_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("ragplane"))
        .unwrap_or_default();
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p ragplane` (cargo test and cargo bench do)",
        bin.display()
    );
    bin
}

/// The value of a test server's environment variable (recorded by `scripts/services/*.sh`).
///
/// When it is unset, prints `SKIPPED: <test>: ...` and returns `None` so the caller can skip;
/// with `RAGPLANE_REQUIRE_SERVICES=1` (as in CI) it panics instead.
pub fn service_env(var: &str, test: &str) -> Option<String> {
    if let Ok(v) = std::env::var(var) {
        if !v.is_empty() {
            return Some(v);
        }
    }
    let why = format!(
        "{test}: {var} is not set; start the server with scripts/services/ (scripts/test.sh does)"
    );
    assert!(
        std::env::var("RAGPLANE_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "{why}"
    );
    eprintln!("SKIPPED: {why}");
    None
}

/// A Redis connection for a test, under a key prefix of its own, when the test Redis runs.
pub fn test_redis(test: &str) -> Option<crate::redis_conn::Redis> {
    let url = service_env("RAGPLANE_TEST_REDIS_URL", test)?;
    let cfg = ragplane_config::RedisConfig {
        url: url.into(),
        key_prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
        ..ragplane_config::RedisConfig::default()
    };
    match crate::redis_conn::Redis::connect(&cfg) {
        Ok(r) => Some(r),
        Err(e) => panic!("{test}: bad RAGPLANE_TEST_REDIS_URL: {e}"),
    }
}

/// A new, empty database on the test PostgreSQL server (`RAGPLANE_TEST_POSTGRES_URL`), so
/// that tests running at once never share tables. Returns its URL, or `None` to skip.
pub async fn fresh_postgres_database(test: &str) -> anyhow::Result<Option<String>> {
    fresh_postgres_database_at("RAGPLANE_TEST_POSTGRES_URL", test).await
}

/// As [`fresh_postgres_database`], on the server whose URL the variable `var` holds (the
/// TLS-only one: `RAGPLANE_TEST_POSTGRES_TLS_URL`).
pub async fn fresh_postgres_database_at(var: &str, test: &str) -> anyhow::Result<Option<String>> {
    use sqlx::Connection;
    let Some(url) = service_env(var, test) else {
        return Ok(None);
    };
    let name = format!("rp_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    Ok(Some(format!("{base}/{name}")))
}

/// S3 settings for the test server (`RAGPLANE_TEST_S3_*`) with small multipart sizes, on a
/// new empty bucket. Returns `None` to skip.
pub async fn s3_test_config(test: &str) -> anyhow::Result<Option<ragplane_config::S3Config>> {
    let Some(endpoint) = service_env("RAGPLANE_TEST_S3_ENDPOINT", test) else {
        return Ok(None);
    };
    let var = |name: &str| {
        std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set (with {endpoint})"))
    };
    let bucket = format!("rp-test-{}", uuid::Uuid::new_v4().simple());
    let mut cfg = ragplane_config::S3Config::new(bucket.clone());
    cfg.endpoint = Some(endpoint.clone());
    cfg.region = Some(var("RAGPLANE_TEST_S3_REGION")?);
    cfg.access_key_id = Some(Secret::new(var("RAGPLANE_TEST_S3_ACCESS_KEY")?));
    cfg.secret_access_key = Some(Secret::new(var("RAGPLANE_TEST_S3_SECRET_KEY")?));
    cfg.multipart_threshold_bytes = ragplane_config::S3_MIN_PART_BYTES;
    cfg.multipart_part_bytes = ragplane_config::S3_MIN_PART_BYTES;
    crate::objects::s3::client(&cfg)
        .await?
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "failed to create bucket {bucket}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        })?;
    Ok(Some(cfg))
}
