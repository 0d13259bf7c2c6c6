//! The web console in a real browser: Debian's chromium, driven by playwright-core
//! (`e2e/console/console.mjs`), against `ragplane serve` on embedded defaults with a real LLM
//! server. Sign-in, collections, uploads watched to `indexed`, search and a streamed answer,
//! keys, health, usage, another tenant refused, layout at two sizes, and sign-out.
//!
//! `RAGPLANE_CONSOLE_SCREENSHOTS=<dir>` keeps a screenshot of each page there (docs/console/ is
//! refreshed that way).

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use std::path::PathBuf;
use std::process::Command;

use ragplane_e2e::{model_available, repo_root, service, skip, Server, ADMIN_KEY};
use reqwest::Method;
use serde_json::json;

/// The browser and the installed test driver, or why they are missing.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("RAGPLANE_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.exists() {
        return Err(format!(
            "{} is missing (apt-get install chromium)",
            chromium.display()
        ));
    }
    let dir = repo_root().join("e2e/console");
    if !dir.join("node_modules/playwright-core").exists() {
        return Err("e2e/console/node_modules is missing (npm ci in e2e/console)".into());
    }
    Ok((chromium, dir))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_works_in_a_real_browser() {
    let (chromium, driver) = match browser() {
        Ok(b) => b,
        Err(why) => return skip("RAGPLANE_REQUIRE_BROWSER", &format!("console: {why}")),
    };
    if !model_available() {
        return;
    }
    let Some(ollama) = service("RAGPLANE_TEST_OLLAMA_URL", "console") else {
        return;
    };
    let Some(model) = service("RAGPLANE_TEST_LLM_MODEL", "console") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        None,
        &[
            ("RAGPLANE_GENERATOR", "ollama"),
            ("RAGPLANE_GENERATOR_URL", ollama.as_str()),
            ("RAGPLANE_GENERATOR_MODEL", model.as_str()),
            ("RAGPLANE__GENERATION__MAX_TOKENS", "48"),
            ("RAGPLANE__CONSOLE__USAGE_FLUSH_SECS", "1"),
        ],
    )
    .unwrap();
    // A second tenant, whose read-write key must not see the first tenant's collection.
    let (status, _) = server
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"name": "console-other"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201);
    let (status, issued) = server
        .call(
            Method::POST,
            "/v1/tenants/console-other/keys",
            Some(json!({"name": "other", "scope": "read-write"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{issued}");
    let other_key = issued["key"].as_str().unwrap().to_string();

    // A relative path is the repository root's, as the docs give it; the driver runs elsewhere.
    let shots = std::env::var("RAGPLANE_CONSOLE_SCREENSHOTS")
        .map_or_else(|_| dir.path().join("shots"), |d| repo_root().join(d));
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg("console.mjs")
        .current_dir(&driver)
        .env("CONSOLE_URL", &server.url)
        .env("ADMIN_KEY", ADMIN_KEY)
        .env("OTHER_KEY", &other_key)
        .env("CORPUS", repo_root().join("examples/corpus"))
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed (screenshot: {}):\n{stdout}\n{stderr}\nserver log:\n{}",
        shots.join("failure.png").display(),
        server.log_tail()
    );
    for line in stdout.lines().filter(|l| l.starts_with("FIGURES ")) {
        println!("BENCH console {}", &line["FIGURES ".len()..]);
    }
}
