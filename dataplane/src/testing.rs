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
    c
}

/// The address of a test service, from the variable `var` that `scripts/services/*.sh` record.
///
/// When it is unset, prints why `test` is skipped and returns `None`; with
/// `RAGPLANE_REQUIRE_SERVICES=1` (as in CI) it panics instead, so a service that failed to
/// start fails the run rather than skipping.
pub fn service_url(var: &str, test: &str) -> Option<String> {
    if let Ok(v) = std::env::var(var) {
        if !v.is_empty() {
            return Some(v);
        }
    }
    let why = format!("{var} is not set; start the service with scripts/services/*.sh");
    assert!(
        std::env::var("RAGPLANE_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "{test}: {why}"
    );
    eprintln!("SKIPPED: {test}: {why}");
    None
}

/// A Redis connection for a test, under a key prefix of its own, when the test Redis runs.
pub fn test_redis(test: &str) -> Option<crate::redis_conn::Redis> {
    let url = service_url("RAGPLANE_TEST_REDIS_URL", test)?;
    let cfg = ragplane_config::RedisConfig {
        url,
        key_prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
        ..ragplane_config::RedisConfig::default()
    };
    match crate::redis_conn::Redis::connect(&cfg) {
        Ok(r) => Some(r),
        Err(e) => panic!("{test}: bad RAGPLANE_TEST_REDIS_URL: {e}"),
    }
}
