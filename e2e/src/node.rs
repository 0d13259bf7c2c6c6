//! A real single-node Kubernetes cluster for the tests (`e2e/testcluster/start-node.sh`):
//! kubelet, containerd, CNI, kube-proxy and CoreDNS, with helpers to run kubectl and helm against
//! it, to run commands in its network namespace and to install the operator's chart with the
//! images this repository builds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::repo_root;

/// A running node cluster, stopped when dropped (its directory kept for the logs when the test
/// failed).
pub struct Node {
    /// The node's directory (logs, kubeconfig, volumes).
    pub dir: PathBuf,
    env: HashMap<String, String>,
}

impl Node {
    /// Starts a node with `volumes` local PersistentVolumes of 1 GiB.
    pub fn start(volumes: usize) -> anyhow::Result<Self> {
        remove_stale_runs();
        let base = PathBuf::from(format!("/tmp/rpn-{}", std::process::id()));
        std::fs::create_dir_all(&base)?;
        let dir = base.join("node");
        let out = Command::new("bash")
            .arg(repo_root().join("e2e/testcluster/start-node.sh"))
            .arg(&dir)
            .env("OWNER_PID", std::process::id().to_string())
            .env("NODE_PVS", volumes.to_string())
            .output()
            .context("failed to run start-node.sh")?;
        if !out.status.success() {
            bail!(
                "start-node.sh exited with {}:\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let env = std::fs::read_to_string(dir.join("env"))?
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Self { dir, env })
    }

    /// A value of the node's `env` file (`KUBECTL`, `CTR`, `CONTAINERD_ADDRESS`, ...).
    pub fn var(&self, key: &str) -> &str {
        self.env.get(key).map_or("", String::as_str)
    }

    /// Runs `program args` on the host with the cluster's kubeconfig.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(program)
            .args(args)
            .env("KUBECONFIG", self.var("KUBECONFIG"))
            .env("KUBECACHEDIR", self.var("KUBECACHEDIR"))
            .current_dir(repo_root())
            .output()
            .with_context(|| format!("failed to run {program}"))?;
        checked(program, args, out)
    }

    /// Runs containerd's `ctr` on the node's containerd, in the kubelet's namespace `k8s.io`.
    pub fn ctr(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["--address", self.var("CONTAINERD_ADDRESS"), "-n", "k8s.io"];
        all.extend_from_slice(args);
        self.run(self.var("CTR"), &all)
    }

    /// Runs kubectl against the node.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run(self.var("KUBECTL"), args)
    }

    /// Runs kubectl with `-o json` and parses its output.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl(&all)?)?)
    }

    /// Runs a command inside the node's network namespace, where Service and pod IPs live.
    pub fn in_node(&self, env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(self.var("NODE_EXEC"))
            .arg("env")
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .args(args)
            .current_dir(repo_root())
            .output()
            .context("failed to run in the node's network namespace")?;
        checked("(in node)", args, out)
    }

    /// Starts a command inside the node's network namespace, its standard output piped.
    pub fn spawn_in_node(
        &self,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<std::process::Child> {
        Command::new(self.var("NODE_EXEC"))
            .arg("env")
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .args(args)
            .current_dir(repo_root())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("failed to start in the node's network namespace")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A failed test keeps its directory for the logs; a passed one frees its ~0.5 GB.
        let keep = if std::thread::panicking() { "1" } else { "0" };
        let _ = Command::new("bash")
            .arg(repo_root().join("e2e/testcluster/stop.sh"))
            .arg(&self.dir)
            .env("KEEP", keep)
            .status();
        if let Some(base) = self.dir.parent() {
            // Empty once the node directory is gone.
            let _ = std::fs::remove_dir(base);
        }
    }
}

/// Removes the directories of earlier runs whose process is gone and whose node was fully
/// stopped (no `node.state` left), so that kept logs do not fill the disk run after run.
fn remove_stale_runs() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix("rpn-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if pid != std::process::id() && !alive && !path.join("node/node.state").exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// The standard output of a finished command, or an error with its status and output.
pub fn checked(program: &str, args: &[&str], out: Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The node with `volumes` PersistentVolumes, or `None` after a SKIPPED line naming `what` when
/// it cannot start and none is required.
pub fn node(what: &str, volumes: usize) -> Option<Node> {
    let why = if is_root() {
        match Node::start(volumes) {
            Ok(n) => return Some(n),
            Err(e) => format!("the node cluster did not start: {e:#}"),
        }
    } else {
        "a real node needs root (network namespaces, cgroups, containerd)".to_owned()
    };
    crate::skip(
        "RAGPLANE_REQUIRE_NODE",
        &format!("{what} on a real node: {why}"),
    );
    None
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .is_some_and(|ids| ids.split_whitespace().next() == Some("0"))
    })
}

/// The target directory the test binaries and `ragplane` were built into.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

/// Polls `f` every half second until it returns a value; panics after `timeout`.
pub fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Seconds of an RFC 3339 timestamp the API server wrote, for differences.
pub fn seconds(t: &Value) -> Option<i64> {
    let text = t.as_str()?;
    // RFC 3339 with whole seconds, as the API server writes them.
    let (date, time) = text.trim_end_matches('Z').split_once('T')?;
    let d: Vec<i64> = date.split('-').filter_map(|x| x.parse().ok()).collect();
    let h: Vec<i64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
    if d.len() != 3 || h.len() != 3 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), enough for differences.
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + d[2];
    Some(((days * 24 + h[0]) * 60 + h[1]) * 60 + h[2])
}

/// When the pod's condition `type_` became True, in [`seconds`].
pub fn condition_time(pod: &Value, type_: &str) -> Option<i64> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
        .and_then(|c| seconds(&c["lastTransitionTime"]))
}

/// A Ready pod that is not being deleted.
pub fn ready_pod(pods: &[Value]) -> Option<Value> {
    pods.iter()
        .find(|p| {
            p["metadata"]["deletionTimestamp"].is_null() && condition_time(p, "Ready").is_some()
        })
        .cloned()
}

/// Builds the images, loads them into the node, installs the chart and waits until the operator
/// pod is Ready and holds the leader Lease; returns the pod's name.
pub fn install_operator(node: &Node, helm: &str) -> String {
    // The images, built from this build's binaries and loaded into the node's containerd.
    let images = repo_root().join("scripts/images.sh");
    let out = Command::new("bash")
        .arg(&images)
        .args(["build", "--profile", "dev", "--skip-cargo"])
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("installing the operator");
    let built = checked("images.sh", &["build"], out).expect("installing the operator");
    eprintln!("{built}");
    node.run(
        "bash",
        &[
            &images.to_string_lossy(),
            "load",
            "--containerd-address",
            node.var("CONTAINERD_ADDRESS"),
        ],
    )
    .expect("installing the operator");

    // The chart, with the operator image just loaded.
    node.run(
        helm,
        &[
            "install",
            "ragplane",
            "charts/ragplane",
            "--namespace",
            "ragplane-system",
            "--create-namespace",
            "--set",
            "image.pullPolicy=IfNotPresent",
            "--wait",
            "--timeout",
            "180s",
        ],
    )
    .expect("installing the operator");
    let operator = wait(
        "the operator pod to be Ready",
        Duration::from_secs(120),
        || {
            let pods = node.json(&["get", "pods", "-n", "ragplane-system"]).ok()?["items"]
                .as_array()
                .cloned()?;
            ready_pod(&pods)
        },
    );
    let operator_pod = operator["metadata"]["name"]
        .as_str()
        .expect("installing the operator")
        .to_owned();
    wait(
        "the operator to take the leader Lease",
        Duration::from_secs(60),
        || {
            let lease = node
                .json(&["get", "lease", "-n", "ragplane-system", "ragplane"])
                .ok()?;
            (lease["spec"]["holderIdentity"] == operator_pod.as_str()).then_some(())
        },
    );
    operator_pod
}
