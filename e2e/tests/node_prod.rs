//! The production RagCluster (`examples/k8s/prod-ragcluster.yaml` with `collections.yaml`) on a
//! real node: PostgreSQL, Redis, the S3 server and Prometheus run as pods from fixture images
//! built out of the programs the other tests use (`e2e/testcluster/fixture-images.sh`,
//! `e2e/node/prod/fixtures.yaml`); the operator runs the API at 2 replicas, two worker pools, a
//! managed 3-peer Qdrant (from `$QDRANT_BIN`), an Ollama ModelPool and a `ragplane
//! embed-server` ModelPool. The example is applied through a kustomize overlay that only sizes
//! it for one small CPU node (`e2e/node/prod/kustomization.yaml`).
//!
//! Without a Qdrant binary the same cluster runs with its vectors in PostgreSQL
//! (`e2e/node/prod-postgres-vectors`), and the test prints that the Qdrant part was skipped.

use std::time::{Duration, Instant};

use ragplane_e2e::node::{install_operator, node, target_dir, wait, Node};
use ragplane_e2e::{ragplane_bin, repo_root};
use serde_json::Value;

const NS: &str = "rag-prod";
/// The admin key of `e2e/node/prod/fixtures.yaml`.
const ADMIN_KEY: &str = "rp_prod_fixture_admin_3b9d0c7e5a";
/// Local volumes: 3 Qdrant peers and 3 Ollama replicas (the pool's maximum).
const VOLUMES: usize = 6;

/// Streams `POST /v1/query` (argv 1: base URL, argv 2: question) and prints the deltas' text,
/// the `done` event and the 503/429 answers it waited out (as a client honouring Retry-After
/// would, for at most two minutes) as one JSON object.
const STREAM_SCRIPT: &str = r#"
import http.client, json, os, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
body = json.dumps({"collection": "examples", "query": sys.argv[2], "top_k": 4, "stream": True})
start, waited = time.monotonic(), []
while True:
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    c.request("POST", "/v1/query", body, {"Authorization": "Bearer " + os.environ["RAGPLANE_API_KEY"],
                                         "Content-Type": "application/json"})
    r = c.getresponse()
    if r.status in (429, 503) and r.getheader("Retry-After") and time.monotonic() - start < 120:
        waited.append([r.status, json.loads(r.read())["error"]])
        time.sleep(int(r.getheader("Retry-After")))
        continue
    if r.status != 200:
        sys.exit(f"HTTP {r.status}: {r.read()!r}")
    break
events, name, data = [], None, []
for raw in r:
    line = raw.decode().rstrip("\n")
    if line.startswith("event:"): name = line[6:].strip()
    elif line.startswith("data:"): data.append(line[5:].strip())
    elif line == "" and name:
        events.append((name, "\n".join(data))); name, data = None, []
deltas = [json.loads(d)["text"] for n, d in events if n == "delta"]
last = events[-1] if events else ("none", "{}")
print(json.dumps({"deltas": len(deltas), "text": "".join(deltas), "last": last[0],
                  "done": json.loads(last[1]), "waited": waited,
                  "waited_s": round(time.monotonic() - start, 1)}))
"#;

/// Prints the points in the Qdrant collection `docs` (argv 1: REST URL, argv 2: API key).
const QDRANT_POINTS_SCRIPT: &str = r#"
import json, sys, urllib.request
r = urllib.request.Request(sys.argv[1] + "/collections/docs", headers={"api-key": sys.argv[2]})
print(json.load(urllib.request.urlopen(r))["result"]["points_count"])
"#;

/// Imports the fixture images (built from this machine's test servers) into the node.
fn load_fixture_images(node: &Node) {
    let dir = target_dir().join("fixture-images");
    let out = node
        .run(
            "bash",
            &[
                &repo_root()
                    .join("e2e/testcluster/fixture-images.sh")
                    .to_string_lossy(),
                &dir.to_string_lossy(),
            ],
        )
        .expect("building the fixture images");
    eprintln!("{}", out.trim());
    for entry in std::fs::read_dir(&dir)
        .expect("the fixture images directory")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "tar") {
            node.run(
                node.var("CTR"),
                &[
                    "--address",
                    node.var("CONTAINERD_ADDRESS"),
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    &path.to_string_lossy(),
                ],
            )
            .unwrap_or_else(|e| panic!("importing {}: {e}", path.display()));
        }
    }
}

/// `kubectl describe` of the namespace's pods, for a failure message.
fn describe(node: &Node, ns: &str) -> String {
    let pods = node
        .kubectl(&["get", "pods", "-n", ns, "-o", "wide"])
        .unwrap_or_default();
    let described = node
        .kubectl(&["describe", "pods", "-n", ns])
        .unwrap_or_default();
    // The tail holds the events of the pods that are stuck.
    let tail: String = described
        .lines()
        .rev()
        .take(150)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    format!("{pods}\n{tail}")
}

fn wait_for(node: &Node, ns: &str, what: &str, condition: &str, timeout: &str) {
    node.kubectl(&[
        "wait",
        "-n",
        ns,
        what,
        &format!("--for={condition}"),
        &format!("--timeout={timeout}"),
    ])
    .unwrap_or_else(|e| panic!("{e}\n{}", describe(node, ns)));
}

#[test]
fn the_prod_ragcluster_runs_on_real_pods() {
    let Some(node) = node("the prod RagCluster", VOLUMES) else {
        return;
    };
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".into());
    let qdrant = std::env::var("QDRANT_BIN").is_ok_and(|b| std::path::Path::new(&b).is_file());
    install_operator(&node, &helm);
    load_fixture_images(&node);

    for ns in [NS, "monitoring"] {
        node.kubectl(&["create", "namespace", ns]).unwrap();
    }
    node.kubectl(&["apply", "-f", "e2e/node/prod/fixtures.yaml"])
        .unwrap();
    for (ns, name) in [
        (NS, "postgres"),
        (NS, "redis"),
        (NS, "s3"),
        ("monitoring", "prometheus"),
    ] {
        wait_for(
            &node,
            ns,
            &format!("deployment/{name}"),
            "condition=Available",
            "180s",
        );
    }

    let overlay = if qdrant {
        "e2e/node/prod"
    } else {
        eprintln!(
            "SKIPPED: the managed Qdrant of the prod RagCluster: QDRANT_BIN is not set (no \
             registry serves Qdrant); the cluster keeps its vectors in PostgreSQL instead"
        );
        "e2e/node/prod-postgres-vectors"
    };
    let rendered = node
        .kubectl(&[
            "kustomize",
            "--load-restrictor",
            "LoadRestrictionsNone",
            overlay,
        ])
        .unwrap();
    let file = target_dir().join("prod-ragcluster.yaml");
    std::fs::write(&file, &rendered).unwrap();
    let applied = Instant::now();
    node.kubectl(&["apply", "-f", &file.to_string_lossy()])
        .unwrap();
    wait_for(&node, NS, "ragcluster/prod", "condition=Ready", "900s");
    let to_ready = applied.elapsed();
    wait_for(
        &node,
        NS,
        "modelpools.ragplane.dev/llm",
        "condition=Ready",
        "300s",
    );
    wait_for(
        &node,
        NS,
        "modelpools.ragplane.dev/embeddings",
        "condition=Ready",
        "300s",
    );
    if qdrant {
        for c in ["docs", "scratch"] {
            let what = format!("collections.ragplane.dev/{c}");
            node.kubectl(&[
                "wait",
                "-n",
                NS,
                &what,
                "--for=condition=Ready",
                "--timeout=180s",
            ])
            .unwrap_or_else(|e| {
                panic!(
                    "{e}\n{}",
                    node.kubectl(&["get", "-n", NS, &what, "-o", "yaml"])
                        .unwrap_or_default()
                )
            });
        }
    }
    eprintln!(
        "BENCH prod-apply-to-ready: kubectl apply -> RagCluster prod Ready {:.1} s ({}; images \
         already present)",
        to_ready.as_secs_f64(),
        if qdrant {
            "3 Qdrant peers"
        } else {
            "vectors in PostgreSQL"
        }
    );

    // Every tier is ready, as `kubectl get ragclusters` shows it.
    let table = node
        .kubectl(&["get", "ragclusters,modelpools,collections", "-n", NS])
        .unwrap();
    eprintln!("{table}");
    let cluster = node.json(&["get", "ragcluster", "-n", NS, "prod"]).unwrap();
    let status = &cluster["status"];
    let components = status["components"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = components
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let mut want = vec!["api", "worker-ingest", "worker-backfill"];
    if qdrant {
        want.push("qdrant");
    }
    assert_eq!(names, want, "{status}");
    for c in &components {
        assert!(
            c["readyReplicas"].as_i64() >= c["desiredReplicas"].as_i64()
                && c["desiredReplicas"].as_i64() > Some(0),
            "{c} in {status}"
        );
    }

    // Ingest the examples and ask through the API Service, from inside the node's network.
    let service = node
        .json(&["get", "service", "-n", NS, "prod-api"])
        .unwrap();
    let url = format!(
        "http://{}:{}",
        service["spec"]["clusterIP"].as_str().unwrap(),
        service["spec"]["ports"][0]["port"]
    );
    let env = [
        ("RAGPLANE_URL", url.as_str()),
        ("RAGPLANE_API_KEY", ADMIN_KEY),
    ];
    let ingest = node
        .in_node(
            &env,
            &[
                &ragplane_bin().to_string_lossy(),
                "ingest",
                "--collection",
                "examples",
                "examples/corpus",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", describe(&node, NS)));
    assert!(ingest.contains("0 failed"), "{ingest}");

    // The chunks went to the managed Qdrant's collection "docs" (spec.qdrant.collection).
    if qdrant {
        // The peers' Service is headless; the node's network reaches a peer by its pod IP.
        let pod = node
            .json(&["get", "pod", "-n", NS, "prod-qdrant-0"])
            .unwrap();
        let peer = pod["status"]["podIP"].as_str().unwrap().to_owned();
        let points = node
            .in_node(
                &[],
                &[
                    "python3",
                    "-c",
                    QDRANT_POINTS_SCRIPT,
                    &format!("http://{peer}:6333"),
                    "qdrant-fixture-key-6f1c2a9e",
                ],
            )
            .unwrap();
        let points: u64 = points.trim().parse().unwrap();
        assert!(points > 0, "no points in the Qdrant collection docs");
        eprintln!("Qdrant collection docs: {points} points");
    }

    // A streamed answer from the in-cluster Ollama, citing what its text cites.
    let question = "How far away can the Skerry Point light be seen?";
    let streamed: Value = serde_json::from_str(
        &node
            .in_node(&env, &["python3", "-c", STREAM_SCRIPT, &url, question])
            .unwrap(),
    )
    .unwrap();
    eprintln!(
        "streamed answer after {} s ({} answers of 503/429 waited out first): {}",
        streamed["waited_s"],
        streamed["waited"].as_array().map_or(0, Vec::len),
        streamed["done"]["answer"]
    );
    if let Some(first) = streamed["waited"].get(0) {
        eprintln!("first refusal: {first}");
    }
    let done = &streamed["done"];
    assert_eq!(streamed["last"], "done", "{streamed}");
    assert!(streamed["deltas"].as_u64() > Some(0), "{streamed}");
    assert_eq!(done["generation"], "generated", "{streamed}");
    assert_eq!(done["answer"], streamed["text"], "{streamed}");
    assert!(
        done["model"]
            .as_str()
            .unwrap_or("")
            .starts_with("gemma3-270m"),
        "{streamed}"
    );
    assert!(done["retrieved"].as_u64() > Some(0), "{streamed}");
    let cited: Vec<u64> = done["cited"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let numbers: Vec<u64> = done["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["number"].as_u64())
        .collect();
    assert_eq!(numbers, cited, "{streamed}");
    let text = streamed["text"].as_str().unwrap();
    for n in &cited {
        assert!(text.contains(&format!("[{n}]")), "{streamed}");
    }

    // The answer came from one of the pool's own pods, addressed one by one.
    let metrics = node
        .in_node(
            &[],
            &["python3", "-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + '/metrics').read().decode())", &url],
        )
        .unwrap_or_default();
    let per_pod = format!("llm-0.llm-pods.{NS}.svc");
    assert!(
        metrics.contains(&per_pod) || metrics.contains(&format!("llm-1.llm-pods.{NS}.svc")),
        "no per-pod LLM endpoint in the API's metrics"
    );

    // Prometheus finds the data-plane pods through kubernetes_sd_configs.
    let prometheus = node
        .json(&["get", "service", "-n", "monitoring", "prometheus-operated"])
        .unwrap();
    let prom_url = format!(
        "http://{}:9090",
        prometheus["spec"]["clusterIP"].as_str().unwrap()
    );
    let up = wait(
        "Prometheus to scrape the API and worker pods",
        Duration::from_secs(120),
        || {
            let out = node
            .in_node(
                &[],
                &[
                    "python3",
                    "-c",
                    "import sys, urllib.parse, urllib.request; print(urllib.request.urlopen(sys.argv[1] + '/api/v1/query?query=' + urllib.parse.quote('count by (app_kubernetes_io_component) (up{namespace=\"rag-prod\"} == 1)')).read().decode())",
                    &prom_url,
                ],
            )
            .ok()?;
            let v: Value = serde_json::from_str(&out).ok()?;
            let result = v["data"]["result"].as_array()?.clone();
            let has = |c: &str| {
                result
                    .iter()
                    .any(|r| r["metric"]["app_kubernetes_io_component"] == c)
            };
            (has("api") && has("worker")).then_some(result)
        },
    );
    eprintln!(
        "Prometheus targets up: {}",
        serde_json::to_string(&up).unwrap()
    );
}
