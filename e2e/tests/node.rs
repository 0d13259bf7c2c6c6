//! The dev RagCluster served from real pods: a single-node cluster (kubelet, containerd, CNI,
//! kube-proxy, CoreDNS) started by `e2e/testcluster/start-node.sh`, the images this repository
//! builds loaded into its containerd, the chart installed with helm, and the example applied
//! with kubectl, as a platform team would. Readiness comes from the pods themselves; nothing
//! here writes a status.
//!
//! Needs root (network namespaces, cgroups) and the node binaries; without them the test prints
//! why and skips, unless `RAGPLANE_REQUIRE_NODE=1`.

use std::time::{Duration, Instant};

use anyhow::Context;
use ragplane_e2e::node::{
    condition_time, install_operator, node, ready_pod, seconds, target_dir, wait, Node,
};
use ragplane_e2e::ragplane_bin;
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

/// The dev cluster's API pods in `ns`.
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

#[test]
fn the_dev_ragcluster_serves_queries_from_real_pods() {
    let Some(node) = node("the dev RagCluster", 1) else {
        return;
    };
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
    let Some(node) = node("the operator's memory with 200 RagClusters", 0) else {
        return;
    };
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
    let tasks = node.ctr(&["task", "ls"]).unwrap();
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
