//! A real Kubernetes API server for the operator tests: started once per test binary with
//! `e2e/testcluster/start.sh`, a fresh namespace per test, and the operator run as a separate
//! process against it. Everything is driven through `kubectl`, the way a platform team would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::repo_root;

/// A running etcd + kube-apiserver.
pub struct TestCluster {
    dir: PathBuf,
    env: HashMap<String, String>,
}

static CLUSTER: OnceLock<Option<TestCluster>> = OnceLock::new();

/// The cluster shared by this test binary, with the CRDs installed; `None` (after printing a
/// SKIPPED line) when it cannot start and `RAGPLANE_REQUIRE_CLUSTER` is not `1`.
pub fn shared() -> Option<&'static TestCluster> {
    CLUSTER
        .get_or_init(|| match TestCluster::start() {
            Ok(c) => Some(c),
            Err(e) => {
                crate::skip(
                    "RAGPLANE_REQUIRE_CLUSTER",
                    &format!("failed to start the test API server: {e:#}"),
                );
                None
            }
        })
        .as_ref()
}

impl TestCluster {
    /// Starts a cluster in a new temporary directory (building the binaries first if they are
    /// not cached) and installs the CRDs from `crds/`. The cluster stops when this process
    /// exits, through start.sh's watchdog.
    pub fn start() -> anyhow::Result<Self> {
        remove_stale_clusters();
        let base =
            std::env::temp_dir().join(format!("ragplane-e2e-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&base)?;
        let dir = base.join("cluster");
        let script = repo_root().join("e2e/testcluster/start.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .env("OWNER_PID", std::process::id().to_string())
            .output()
            .with_context(|| format!("failed to run {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} exited with {}:\n{}{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let env_text =
            std::fs::read_to_string(dir.join("env")).context("start.sh wrote no env file")?;
        let env = env_text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let cluster = Self { dir, env };
        let crds = repo_root().join("crds");
        cluster.kubectl_ok(&["apply", "--server-side", "-f", &crds.to_string_lossy()])?;
        cluster.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ])?;
        Ok(cluster)
    }

    /// The cluster's kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// Directory of the cluster (logs live here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs kubectl with `args`, feeding `stdin` if given.
    pub fn kubectl_with_input(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
        let kubectl = self.env.get("KUBECTL").context("env has no KUBECTL")?;
        let mut cmd = Command::new(kubectl);
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("failed to run kubectl")?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            pipe.write_all(input.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }

    /// Runs kubectl and returns its stdout; fails with stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.kubectl_with_input(args, None)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates a namespace with a random name.
    pub fn namespace(&self, prefix: &str) -> anyhow::Result<String> {
        let name = format!("{prefix}-{:x}", unique());
        self.kubectl_ok(&["create", "namespace", &name])?;
        Ok(name)
    }

    /// `kubectl apply -n ns -f -` of `yaml`; returns the output or fails with stderr.
    pub fn apply(&self, ns: &str, yaml: &str) -> anyhow::Result<String> {
        let out = self.kubectl_with_input(&["apply", "-n", ns, "-f", "-"], Some(yaml))?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The object as JSON, or `None` when it does not exist.
    pub fn get(&self, ns: &str, kind: &str, name: &str) -> anyhow::Result<Option<Value>> {
        let out = self.kubectl_with_input(
            &[
                "get",
                "-n",
                ns,
                kind,
                name,
                "-o",
                "json",
                "--ignore-not-found",
            ],
            None,
        )?;
        if !out.status.success() {
            bail!(
                "kubectl get {kind} {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&out.stdout)?))
    }

    /// Waits until `kind/name` exists and `check` accepts it; returns it.
    pub fn wait_for(
        &self,
        ns: &str,
        kind: &str,
        name: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < timeout {
            if let Some(v) = self.get(ns, kind, name)? {
                if check(&v) {
                    return Ok(v);
                }
                last = Some(v);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("timed out after {timeout:?} waiting for {kind}/{name} in {ns}; last seen: {last:#?}")
    }
}

/// Polls `done` every 200 ms until it holds; after `timeout`, panics with `what` and
/// `context()` (an operator's log tail, say).
pub fn poll_until(
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Removes the directories of clusters whose test process has exited (the watchdog stops the
/// cluster but keeps its directory, ~120 MB of etcd data). The watchdog looks once a second, so
/// a test process starting right after the last one exited can get here first: stop.sh stops
/// the servers its pid files name before the directory goes. Removing the directory alone would
/// end the watchdog, which stops when the pid file is gone, and leave kube-apiserver running.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("ragplane-e2e-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("bash")
                .arg(repo_root().join("e2e/testcluster/stop.sh"))
                .arg(entry.path().join("cluster"))
                .env("KEEP", "0")
                .status();
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A process-unique number mixed from the clock, the pid and a counter.
fn unique() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut h = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h & 0xffff_ffff
}

/// The `ragplane-operator` binary: `$RAGPLANE_OPERATOR_BIN`, else next to the test executable's
/// target dir, built there with cargo when missing.
pub fn operator_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RAGPLANE_OPERATOR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let bin = profile_dir.join("ragplane-operator");
    if !bin.exists() {
        let target_dir = profile_dir.parent().expect("target root");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "build",
            "-p",
            "ragplane-operator",
            "--bin",
            "ragplane-operator",
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(repo_root());
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("failed to run cargo build");
        assert!(status.success(), "cargo build -p ragplane-operator failed");
    }
    bin
}

/// The operator running as its own process against a [`TestCluster`], watching one namespace.
pub struct Operator {
    child: Option<Child>,
    /// Its log file.
    pub log: PathBuf,
    /// Base URL of its metrics and health endpoints.
    pub metrics_url: String,
}

impl Operator {
    /// Starts the operator for namespace `ns` (its Lease lives there too, with a short
    /// duration so a killed leader is replaced quickly).
    pub fn start(cluster: &TestCluster, ns: &str) -> anyhow::Result<Self> {
        Self::start_with_kubeconfig(cluster, ns, &cluster.kubeconfig())
    }

    /// Like [`Operator::start`], with another kubeconfig (for example one that impersonates the
    /// operator's ServiceAccount, to test its RBAC).
    pub fn start_with_kubeconfig(
        cluster: &TestCluster,
        ns: &str,
        kubeconfig: &Path,
    ) -> anyhow::Result<Self> {
        Self::spawn(cluster, ns, kubeconfig, &[])
    }

    /// Like [`Operator::start`], with extra environment variables (its flags' `env` names).
    pub fn start_with_env(
        cluster: &TestCluster,
        ns: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::spawn(cluster, ns, &cluster.kubeconfig(), env)
    }

    fn spawn(
        cluster: &TestCluster,
        ns: &str,
        kubeconfig: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let port = crate::free_port();
        let log = cluster
            .dir()
            .join(format!("operator-{ns}-{}.log", unique()));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(operator_bin())
            .env("KUBECONFIG", kubeconfig)
            .env("WATCH_NAMESPACE", ns)
            .env("POD_NAMESPACE", ns)
            .env("LEASE_DURATION_SECS", "4")
            .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info,ragplane_operator=debug,kube=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .context("failed to start ragplane-operator")?;
        Ok(Self {
            child: Some(child),
            log,
            metrics_url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Resident memory of the process in KiB, from `/proc`.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The sum of every sample of metric `name` whose labels include each of `labels`
    /// (`key="value"` strings), from the operator's `/metrics`; 0 when there is none.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let out = std::process::Command::new("curl")
            .args(["-sf", &format!("{}/metrics", self.metrics_url)])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        crate::metric_sum(&out, name, labels)
    }

    /// Waits up to `timeout` for the process to exit by itself: its exit status, or `None`
    /// while it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.as_mut()?.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the process at once (SIGKILL), as a crash or node loss would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}
