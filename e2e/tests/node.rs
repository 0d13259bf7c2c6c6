//! The dev RagCluster served from real pods: a single-node cluster (kubelet, containerd, CNI,
//! kube-proxy, CoreDNS) started by `e2e/testcluster/start-node.sh`, the images this repository
//! builds loaded into its containerd, the chart installed with helm, and the example applied
//! with kubectl, as a platform team would. Readiness comes from the pods themselves; nothing
//! here writes a status.
//!
//! Needs root (network namespaces, cgroups) and the node binaries; without them the test prints
//! why and skips, unless `RAGPLANE_REQUIRE_NODE=1`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ragplane_e2e::{ragplane_bin, repo_root};
use serde_json::Value;

/// The question whose answer is in `examples/corpus/skerry-point-lighthouse.md`.
const QUESTION: &str = "How far away can the Skerry Point light be seen?";

/// Times `POST /v1/search` against two base URLs (argv 1 and 2) in alternating rounds, each on
/// one kept-alive connection, and prints each one's p50 and p95 and the ratio of the p95s.
const LATENCY_SCRIPT: &str = r#"
import http.client, json, os, sys, time, urllib.parse
body = json.dumps({"collection": "examples", "query": "Skerry Point light range", "top_k": 5})
headers = {"Authorization": "Bearer " + os.environ["RAGPLANE_API_KEY"],
           "Content-Type": "application/json"}
def conn(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=10)
def once(c):
    t = time.perf_counter()
    c.request("POST", "/v1/search", body, headers)
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    return time.perf_counter() - t
conns = [conn(u) for u in sys.argv[1:3]]
samples = [[], []]
for c in conns:
    for _ in range(20): once(c)
for _ in range(5):
    for i, c in enumerate(conns):
        samples[i] += [once(c) for _ in range(100)]
def q(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000
(s, d) = samples
print(f"through the Service p50 {q(s, .5):.2f} ms p95 {q(s, .95):.2f} ms; "
      f"direct to the pod p50 {q(d, .5):.2f} ms p95 {q(d, .95):.2f} ms; "
      f"p95 ratio {q(s, .95) / q(d, .95):.2f} ({len(s)} queries each)")
"#;

/// A running node cluster, stopped when dropped (its directory kept for the logs when the test
/// failed).
struct Node {
    dir: PathBuf,
    env: HashMap<String, String>,
}

impl Node {
    fn start() -> anyhow::Result<Self> {
        remove_stale_runs();
        let base = PathBuf::from(format!("/tmp/rpn-{}", std::process::id()));
        std::fs::create_dir_all(&base)?;
        let dir = base.join("node");
        let out = Command::new("bash")
            .arg(repo_root().join("e2e/testcluster/start-node.sh"))
            .arg(&dir)
            .env("OWNER_PID", std::process::id().to_string())
            .env("NODE_PVS", "1")
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

    fn var(&self, key: &str) -> &str {
        self.env.get(key).map_or("", String::as_str)
    }

    /// Runs `program args` on the host with the cluster's kubeconfig.
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(program)
            .args(args)
            .env("KUBECONFIG", self.var("KUBECONFIG"))
            .env("KUBECACHEDIR", self.var("KUBECACHEDIR"))
            .current_dir(repo_root())
            .output()
            .with_context(|| format!("failed to run {program}"))?;
        checked(program, args, out)
    }

    fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run(self.var("KUBECTL"), args)
    }

    fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl(&all)?)?)
    }

    /// Runs a command inside the node's network namespace, where Service and pod IPs live.
    fn in_node(&self, env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(self.var("NODE_EXEC"))
            .arg("env")
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .args(args)
            .current_dir(repo_root())
            .output()
            .context("failed to run in the node's network namespace")?;
        checked("(in node)", args, out)
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

fn checked(program: &str, args: &[&str], out: Output) -> anyhow::Result<String> {
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

/// The node, or `None` after a SKIPPED line when it cannot start and none is required.
fn node() -> Option<Node> {
    let why = if is_root() {
        match Node::start() {
            Ok(n) => return Some(n),
            Err(e) => format!("the node cluster did not start: {e:#}"),
        }
    } else {
        "a real node needs root (network namespaces, cgroups, containerd)".to_owned()
    };
    assert!(
        std::env::var("RAGPLANE_REQUIRE_NODE").as_deref() != Ok("1"),
        "{why}"
    );
    eprintln!("SKIPPED: the dev RagCluster on a real node: {why}");
    None
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .is_some_and(|ids| ids.split_whitespace().next() == Some("0"))
    })
}

/// The target directory the test binaries and `ragplane` were built into.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn seconds(t: &Value) -> Option<i64> {
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

fn condition_time(pod: &Value, type_: &str) -> Option<i64> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
        .and_then(|c| seconds(&c["lastTransitionTime"]))
}

fn api_pods(node: &Node, ns: &str) -> Vec<Value> {
    node.json(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app.kubernetes.io/instance=dev,app.kubernetes.io/component=api",
    ])
    .map(|v| v["items"].as_array().cloned().unwrap_or_default())
    .unwrap_or_default()
}

fn ready_pod(pods: &[Value]) -> Option<Value> {
    pods.iter()
        .find(|p| {
            p["metadata"]["deletionTimestamp"].is_null() && condition_time(p, "Ready").is_some()
        })
        .cloned()
}

/// The first source `ragplane query` lists for the question.
fn first_source(node: &Node, url: &str, key: &str) -> anyhow::Result<String> {
    let out = node.in_node(
        &[("RAGPLANE_URL", url), ("RAGPLANE_API_KEY", key)],
        &[
            &ragplane_bin().to_string_lossy(),
            "query",
            "--collection",
            "examples",
            QUESTION,
        ],
    )?;
    out.lines()
        .find(|l| l.trim_start().starts_with("[1]"))
        .map(str::to_owned)
        .with_context(|| format!("no sources in:\n{out}"))
}

/// Builds the images, loads them into the node, installs the chart and waits until the operator
/// pod is Ready and holds the leader Lease; returns the pod's name.
fn install_operator(node: &Node, helm: &str) -> String {
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

#[test]
fn the_dev_ragcluster_serves_queries_from_real_pods() {
    let Some(node) = node() else { return };
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".into());

    install_operator(&node, &helm);

    // The example, in a namespace that enforces the restricted Pod Security level.
    let ns = "rag-dev";
    node.kubectl(&["create", "namespace", ns]).unwrap();
    node.kubectl(&[
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=restricted",
    ])
    .unwrap();
    let applied = Instant::now();
    node.kubectl(&["apply", "-n", ns, "-f", "examples/k8s/dev-ragcluster.yaml"])
        .unwrap();
    node.kubectl(&[
        "wait",
        "-n",
        ns,
        "ragcluster/dev",
        "--for=condition=Ready",
        "--timeout=300s",
    ])
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            node.kubectl(&["describe", "pods", "-n", ns])
                .unwrap_or_default()
        )
    });
    let to_ready = applied.elapsed();
    let pod = ready_pod(&api_pods(&node, ns)).expect("a ready API pod");
    let created = seconds(&pod["metadata"]["creationTimestamp"]).unwrap();
    let scheduled = condition_time(&pod, "PodScheduled").unwrap();
    let started =
        seconds(&pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]).unwrap();
    let ready = condition_time(&pod, "Ready").unwrap();
    eprintln!(
        "BENCH node-apply-to-ready: kubectl apply -> RagCluster Ready {:.1} s; pod created -> \
         scheduled {} s, -> container started {} s, -> Ready {} s (image already present, \
         imagePullPolicy IfNotPresent)",
        to_ready.as_secs_f64(),
        scheduled - created,
        started - created,
        ready - created
    );

    // Ingest and query through the Service's ClusterIP, with the key the operator created.
    let service = node.json(&["get", "service", "-n", ns, "dev-api"]).unwrap();
    let url = format!(
        "http://{}:{}",
        service["spec"]["clusterIP"].as_str().unwrap(),
        service["spec"]["ports"][0]["port"]
    );
    let key = node
        .kubectl(&[
            "get",
            "secret",
            "-n",
            ns,
            "dev-admin-key",
            "-o",
            "go-template={{index .data \"api-key\" | base64decode}}",
        ])
        .unwrap();
    let ingest = node
        .in_node(
            &[("RAGPLANE_URL", &url), ("RAGPLANE_API_KEY", &key)],
            &[
                &ragplane_bin().to_string_lossy(),
                "ingest",
                "--collection",
                "examples",
                "examples/corpus",
            ],
        )
        .unwrap();
    assert!(ingest.contains("0 failed"), "{ingest}");
    let first = first_source(&node, &url, &key).unwrap();
    assert!(first.contains("skerry-point-lighthouse.md"), "{first}");

    // Query latency through the Service's ClusterIP (kube-proxy) against the pod's own IP, in
    // alternating rounds on kept-alive connections from inside the node's network namespace.
    let pod_url = format!("http://{}:8080", pod["status"]["podIP"].as_str().unwrap());
    let bench = node
        .in_node(
            &[("RAGPLANE_API_KEY", &key)],
            &["python3", "-c", LATENCY_SCRIPT, &url, &pod_url],
        )
        .unwrap();
    eprintln!("BENCH node-service-latency: {}", bench.trim());

    // A new pod takes over the claim and still has the documents.
    let old = pod["metadata"]["name"].as_str().unwrap().to_owned();
    node.kubectl(&["delete", "pod", "-n", ns, &old, "--wait=false"])
        .unwrap();
    wait(
        "a new API pod to be Ready",
        Duration::from_secs(180),
        || ready_pod(&api_pods(&node, ns)).filter(|p| p["metadata"]["name"] != old.as_str()),
    );
    let after = wait(
        "the Service to answer from the new pod",
        Duration::from_secs(60),
        || first_source(&node, &url, &key).ok(),
    );
    assert!(after.contains("skerry-point-lighthouse.md"), "{after}");
    eprintln!(
        "{}",
        node.kubectl(&["get", "ragclusters,modelpools,collections", "-A"])
            .unwrap_or_default()
    );

    // Whether this node's CNI enforces NetworkPolicies: a policy that admits nothing to the API
    // pod. The bridge plugin has no policy engine, so the API still answers; docs/operator.md
    // says so, and this fails when that stops being true.
    let deny = target_dir().join("deny-api.yaml");
    std::fs::write(
        &deny,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-api}\n\
         spec: {podSelector: {matchLabels: {app.kubernetes.io/instance: dev, app.kubernetes.io/component: api}}, policyTypes: [Ingress]}\n",
    )
    .unwrap();
    node.kubectl(&["apply", "-n", ns, "-f", &deny.to_string_lossy()])
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let through = first_source(&node, &url, &key);
    node.kubectl(&["delete", "networkpolicy", "-n", ns, "deny-api"])
        .unwrap();
    assert!(
        through.is_ok(),
        "the CNI now enforces NetworkPolicies: update docs/operator.md ({through:?})"
    );
    eprintln!("NOTE: the node's CNI (bridge, host-local) does not enforce NetworkPolicies");

    // A cluster whose API pod crash-loops (its PostgreSQL URL cannot be parsed, so the data
    // plane exits at start) shows Degraded with the reason and the pod, from the real kubelet.
    // Its backends are all shared ones, so it needs no volume of its own.
    let broken = r#"
apiVersion: v1
kind: Secret
metadata: {name: broken}
stringData: {pg: "not a postgres url", redis: "redis://127.0.0.1:1"}
---
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: broken}
spec:
  api: {replicas: 1}
  postgres: {urlSecretRef: {name: broken, key: pg}}
  redis: {urlSecretRef: {name: broken, key: redis}}
  s3: {bucket: docs, endpoint: "http://127.0.0.1:1"}
"#;
    let file = target_dir().join("broken-ragcluster.yaml");
    std::fs::write(&file, broken).unwrap();
    node.kubectl(&["apply", "-n", ns, "-f", &file.to_string_lossy()])
        .unwrap();
    node.kubectl(&[
        "wait",
        "-n",
        ns,
        "ragcluster/broken",
        "--for=jsonpath={.status.conditions[?(@.type==\"Degraded\")].reason}=CrashLoopBackOff",
        "--timeout=180s",
    ])
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            node.kubectl(&[
                "describe",
                "pods",
                "-n",
                ns,
                "-l",
                "app.kubernetes.io/instance=broken"
            ])
            .unwrap_or_default()
        )
    });
    let status = node
        .json(&["get", "ragcluster", "-n", ns, "broken"])
        .unwrap();
    let conditions = status["status"]["conditions"].as_array().unwrap();
    let of = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap();
    assert!(
        of("Degraded")["message"]
            .as_str()
            .unwrap()
            .contains("broken-api-"),
        "{status}"
    );
    assert_eq!(of("Ready")["status"], "False", "{status}");
    node.kubectl(&["delete", "ragcluster", "-n", ns, "broken", "--wait=false"])
        .unwrap();

    // `helm upgrade` updates the CRDs (they are chart templates; Helm never upgrades a chart's
    // crds/ folder). Upgrade to a copy of the chart whose RagCluster CRD differs, see the change
    // in the API server, then upgrade back.
    let copy = target_dir().join("chart-upgrade");
    let _ = std::fs::remove_dir_all(&copy);
    node.run("cp", &["-r", "charts/ragplane", &copy.to_string_lossy()])
        .unwrap();
    let crd_file = copy.join("templates/crds/ragclusters.yaml");
    let crd = std::fs::read_to_string(&crd_file).unwrap();
    assert!(crd.contains("Data-plane version;"));
    std::fs::write(
        &crd_file,
        crd.replacen("Data-plane version;", "Data-plane version (upgraded);", 1),
    )
    .unwrap();
    let described = |node: &Node| {
        node.kubectl(&["get", "crd", "ragclusters.ragplane.dev", "-o", "json"])
            .unwrap()
    };
    assert!(!described(&node).contains("(upgraded)"));
    for (chart, upgraded) in [
        (copy.to_string_lossy().into_owned(), true),
        ("charts/ragplane".to_owned(), false),
    ] {
        node.run(
            &helm,
            &[
                "upgrade",
                "ragplane",
                &chart,
                "--namespace",
                "ragplane-system",
                "--reuse-values",
                "--wait",
                "--timeout",
                "180s",
            ],
        )
        .unwrap();
        let crd = described(&node);
        assert_eq!(
            crd.contains("(upgraded)"),
            upgraded,
            "after helm upgrade to {chart}"
        );
        assert!(
            crd.contains("\"helm.sh/resource-policy\": \"keep\""),
            "{crd}"
        );
    }
    // The clusters were left alone by the upgrades.
    assert_eq!(
        node.json(&["get", "ragcluster", "-n", ns, "dev"]).unwrap()["metadata"]["name"],
        "dev"
    );
}

/// The operator pod's resident memory after it reconciled 200 RagClusters (API at 0 replicas,
/// so that no data-plane pod competes for the node), read from the container's process.
#[test]
#[ignore = "benchmark; see docs/benchmarks.md"]
fn operator_pod_memory_with_200_ragclusters() {
    let Some(node) = node() else { return };
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".into());
    let pod = install_operator(&node, &helm);
    let ns = "rag-many";
    node.kubectl(&["create", "namespace", ns]).unwrap();
    let yaml: String = (0..200)
        .map(|i| {
            format!("apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {{name: c{i}}}\nspec: {{api: {{replicas: 0}}}}\n---\n")
        })
        .collect();
    let file = node.dir.join("many.yaml");
    std::fs::write(&file, yaml).unwrap();
    let started = Instant::now();
    node.kubectl(&["apply", "-n", ns, "-f", &file.to_string_lossy()])
        .unwrap();
    wait(
        "200 RagClusters reconciled",
        Duration::from_secs(600),
        || {
            let list = node.json(&["get", "ragclusters", "-n", ns]).ok()?;
            let done = list["items"]
                .as_array()?
                .iter()
                .filter(|c| !c["status"]["observedGeneration"].is_null())
                .count();
            (done == 200).then_some(())
        },
    );
    let converged = started.elapsed();
    std::thread::sleep(Duration::from_secs(10));
    let status = node
        .json(&["get", "pod", "-n", "ragplane-system", &pod])
        .unwrap();
    let id = status["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_owned();
    let tasks = node
        .run(
            node.var("CTR"),
            &[
                "--address",
                node.var("CONTAINERD_ADDRESS"),
                "-n",
                "k8s.io",
                "task",
                "ls",
            ],
        )
        .unwrap();
    let pid = tasks
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("the operator's task");
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib: u64 = proc_status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!(
        "BENCH operator-pod-rss: {:.1} MiB after reconciling 200 RagClusters in the pod \
         (converged in {:.1} s)",
        rss_kib as f64 / 1024.0,
        converged.as_secs_f64()
    );
    assert!(rss_kib < 50 * 1024, "{rss_kib} KiB");
}
