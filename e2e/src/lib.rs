//! Shared helpers for the end-to-end tests: find and start the `ragplane` binary on a free
//! port with its own data directory, wait for it, talk to it, stop or kill it.

pub mod cluster;
pub mod node;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// The admin key every test server is started with.
pub const ADMIN_KEY: &str = "rp_e2e_admin_key_000000000000";

/// The `ragplane` binary: `$RAGPLANE_BIN`, else next to the test executable's target dir.
pub fn ragplane_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RAGPLANE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/ragplane
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("ragplane"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build -p ragplane` first (or set RAGPLANE_BIN)",
        bin.display()
    );
    bin
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// The sum of every sample of metric `name` in the Prometheus text `text` whose labels include
/// each of `labels` (`key="value"` strings); 0 when there is none.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Prints why a test is skipped, or panics with that reason when the variable `require` is `1`
/// (as `scripts/test.sh` sets it, so that CI never skips silently).
pub fn skip(require: &str, why: &str) {
    assert!(std::env::var(require).as_deref() != Ok("1"), "{why}");
    eprintln!("SKIPPED: {why}");
}

/// The address of a test service from `var` (recorded by `scripts/services/*.sh`); when unset,
/// prints why `test` is skipped, or panics under `RAGPLANE_REQUIRE_SERVICES=1`.
pub fn service(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            skip(
                "RAGPLANE_REQUIRE_SERVICES",
                &format!("{test}: {var} is not set; start it with scripts/services/*.sh"),
            );
            None
        }
    }
}

/// Whether the model files exist; prints why when skipping, panics under RAGPLANE_REQUIRE_MODEL=1.
pub fn model_available() -> bool {
    let cache = std::env::var_os("RAGPLANE_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ragplane"),
        PathBuf::from,
    );
    let ok = cache
        .join("models/all-minilm-l6-v2-int8/model.onnx")
        .exists()
        && cache.join("onnxruntime/libonnxruntime.so").exists();
    if !ok {
        skip(
            "RAGPLANE_REQUIRE_MODEL",
            &format!(
                "model not found under {}; run scripts/setup-model.sh",
                cache.display()
            ),
        );
    }
    ok
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `ragplane serve`.
pub struct Server {
    child: Option<Child>,
    /// Base URL.
    pub url: String,
    /// Data directory.
    pub data_dir: PathBuf,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts a server on `data_dir` (a new port each time unless `port` is given) and waits
    /// until it is ready.
    pub fn start(
        data_dir: &Path,
        port: Option<u16>,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_command(&["serve"], data_dir, port, extra_env)
    }

    /// Starts `ragplane <command…>` (`serve …` or `worker …`) the same way.
    pub fn start_command(
        command: &[&str],
        data_dir: &Path,
        port: Option<u16>,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::spawn(command, data_dir, port, extra_env, Some(ADMIN_KEY))
    }

    /// Starts `ragplane serve` on `data_dir` with no admin key given, so that a first start
    /// generates one and, its stdout being the log file rather than a terminal, hands it over
    /// in `<data_dir>/admin-key`.
    pub fn start_generating_admin_key(data_dir: &Path) -> anyhow::Result<Self> {
        Self::spawn(&["serve"], data_dir, None, &[], None)
    }

    fn spawn(
        command: &[&str],
        data_dir: &Path,
        port: Option<u16>,
        extra_env: &[(&str, &str)],
        admin_key: Option<&str>,
    ) -> anyhow::Result<Self> {
        let port = port.unwrap_or_else(free_port);
        let log = data_dir.with_extension("log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(ragplane_bin());
        cmd.args(command)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .env("RAGPLANE__WORKERS__POLL_INTERVAL_MS", "50")
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out));
        match admin_key {
            Some(key) => cmd.env("RAGPLANE_ADMIN_KEY", key),
            None => cmd.env_remove("RAGPLANE_ADMIN_KEY"),
        };
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("failed to start ragplane")?;
        let mut s = Self {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.into(),
            port,
            log,
        };
        s.wait_ready(Duration::from_secs(60))?;
        Ok(s)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "ragplane exited with {status} before becoming ready; log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if http_status(self.port, "/readyz") == Some(200) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "ragplane not ready after {timeout:?}; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Sends `signal` (`HUP`, `TERM`, …) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.as_ref().context("not running")?.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status()?;
            let status = child.wait()?;
            if !status.success() {
                bail!(
                    "ragplane exited with {status} on SIGTERM; log:\n{}",
                    self.log_tail()
                );
            }
        }
        Ok(())
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// Waits for the process to exit; `Ok(true)` for a clean exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let start = Instant::now();
        let Some(child) = self.child.as_mut() else {
            return Ok(true);
        };
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status.success());
            }
            if start.elapsed() > timeout {
                bail!(
                    "ragplane still running after {timeout:?}; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs a `ragplane` client command against this server; returns stdout.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(ragplane_bin())
            .args(args)
            .env("RAGPLANE_URL", &self.url)
            .env("RAGPLANE_API_KEY", ADMIN_KEY)
            .output()?;
        if !out.status.success() {
            bail!(
                "ragplane {args:?} failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A JSON request with the admin key.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        self.call_as(ADMIN_KEY, method, path, body).await
    }

    /// A JSON request with the API key `key`.
    pub async fn call_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

/// Status code of a plain `GET path` on loopback, without an HTTP client library.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
