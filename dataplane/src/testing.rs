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
