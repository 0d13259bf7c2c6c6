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

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ragplane_e2e::node::{install_operator, node, ready_pod, target_dir, wait, Node};
use ragplane_e2e::{metric_sum, ragplane_bin, repo_root};
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

/// Prints the exact number of points in the Qdrant collection `docs` (argv 1: REST URL, argv
/// 2: API key); the collection info's `points_count` is an estimate.
const QDRANT_POINTS_SCRIPT: &str = r#"
import json, sys, urllib.request
r = urllib.request.Request(sys.argv[1] + "/collections/docs/points/count", data=b'{"exact": true}',
                           headers={"api-key": sys.argv[2], "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(r))["result"]["count"])
"#;

/// Offered load for the fault tests: `threads` clients for `seconds` s against the API Service
/// (argv 1), each on a kept-alive connection. `search` asks a new question every time (so the
/// result cache does not answer); `chat` asks for a short answer through the OpenAI-compatible
/// route. A client retries once, on a new connection, when the connection fails (as HTTP
/// clients do for a request that was not answered); a 503 or 429 with Retry-After waits that
/// long. Prints `[[t, outcome], ...]`: `ok`, `ok-retried`, `503-retry-after`, `429-retry-after`
/// or `fail ...`.
const LOAD_SCRIPT: &str = r#"
import http.client, json, os, sys, threading, time, urllib.parse
url, seconds, threads, kind = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlparse(url)
hdrs = {"Authorization": "Bearer " + os.environ["RAGPLANE_API_KEY"], "Content-Type": "application/json"}
start, lock, log, n = time.monotonic(), threading.Lock(), [], [0]
def request(i):
    if kind == "search":
        return "/v1/search", json.dumps({"collection": "examples", "top_k": 3,
                                         "query": f"Skerry Point light range {i}"})
    return "/v1/chat/completions", json.dumps({"model": "examples", "max_tokens": 8, "messages": [
        {"role": "user", "content": f"How far away can the Skerry Point light be seen? ({i})"}]})
def client():
    c = None
    while time.monotonic() - start < seconds:
        with lock:
            n[0] += 1; i = n[0]
        t, (path, body), wait = round(time.monotonic() - start, 2), request(i), 0
        for attempt in (1, 2):
            try:
                if c is None:
                    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
                c.request("POST", path, body, hdrs)
                r = c.getresponse(); data = r.read()
                if r.status == 200:
                    outcome = "ok" if attempt == 1 else "ok-retried"
                elif r.status in (429, 503) and r.getheader("Retry-After"):
                    outcome, wait = f"{r.status}-retry-after", int(r.getheader("Retry-After"))
                else:
                    outcome = f"fail HTTP {r.status}: {data[:300]!r}"
                break
            except (OSError, http.client.HTTPException) as e:
                c = None
                outcome = f"fail after a retry: {type(e).__name__}: {e}"
        with lock:
            log.append([t, outcome])
        time.sleep(wait)
ts = [threading.Thread(target=client) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(sorted(log)))
"#;

/// Counts the documents of collection argv 2 by status (argv 1: base URL) and sums their
/// chunks; prints `{"statuses": {...}, "chunks": n}`.
const DOCUMENTS_SCRIPT: &str = r#"
import json, os, sys, urllib.parse, urllib.request
url, coll, cursor, statuses, chunks = sys.argv[1], sys.argv[2], None, {}, 0
while True:
    q = "?limit=200" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
    r = urllib.request.Request(f"{url}/v1/collections/{coll}/documents{q}",
                               headers={"Authorization": "Bearer " + os.environ["RAGPLANE_API_KEY"]})
    page = json.load(urllib.request.urlopen(r))
    for d in page["documents"]:
        statuses[d["status"]] = statuses.get(d["status"], 0) + 1
        chunks += d.get("chunk_count") or 0
    cursor = page.get("next_cursor")
    if not cursor: break
print(json.dumps({"statuses": statuses, "chunks": chunks}))
"#;

/// Prints a Qdrant peer's own id and how many peers it sees (argv 1: REST URL, argv 2: key).
const QDRANT_CLUSTER_SCRIPT: &str = r#"
import json, sys, urllib.request
r = urllib.request.Request(sys.argv[1] + "/cluster", headers={"api-key": sys.argv[2]})
c = json.load(urllib.request.urlopen(r))["result"]
print(json.dumps({"peer_id": c["peer_id"], "peers": len(c["peers"])}))
"#;

/// Uploads argv 3 short notes to collection argv 2 (argv 1: base URL) from 8 clients, after
/// creating the collection, and writes the job ids to the file argv 4.
const UPLOAD_SCRIPT: &str = r##"
import json, os, sys, threading, urllib.error, urllib.request
url, coll, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
hdrs = {"Authorization": "Bearer " + os.environ["RAGPLANE_API_KEY"], "Content-Type": "application/json"}
def post(path, body):
    r = urllib.request.Request(url + path, json.dumps(body).encode(), hdrs)
    return json.load(urllib.request.urlopen(r, timeout=60))
try:
    post("/v1/collections", {"name": coll})
except urllib.error.HTTPError as e:
    if e.code != 409: raise
jobs, lock = [], threading.Lock()
def client(k):
    for i in range(k, n, 8):
        a = post(f"/v1/collections/{coll}/documents", {"format": "markdown", "title": f"note-{i:03}",
            "text": f"# Inventory note {i}\n\nCrate zq{i}x in the lamp room holds {i} spare wicks.\n"})
        with lock: jobs.append(a["job_id"])
ts = [threading.Thread(target=client, args=(k,)) for k in range(8)]
for t in ts: t.start()
for t in ts: t.join()
assert len(jobs) == n, len(jobs)
json.dump(jobs, open(out, "w"))
"##;

/// Reads the job ids in the file argv 2 and counts those run more than once (argv 1: base
/// URL); prints `{"jobs": n, "retried": n, "statuses": {...}}`.
const JOBS_SCRIPT: &str = r#"
import json, os, sys, urllib.request
url, ids = sys.argv[1], json.load(open(sys.argv[2]))
hdrs = {"Authorization": "Bearer " + os.environ["RAGPLANE_API_KEY"]}
retried, statuses = [], {}
for i in ids:
    j = json.load(urllib.request.urlopen(urllib.request.Request(f"{url}/v1/jobs/{i}", headers=hdrs)))
    statuses[j["status"]] = statuses.get(j["status"], 0) + 1
    if j["attempts"] > 1: retried.append(j)
print(json.dumps({"jobs": len(ids), "retried": len(retried), "statuses": statuses, "examples": retried[:3]}))
"#;

/// Open-loop load: argv 2 searches per second for argv 3 s against argv 1, each timed from
/// when it was due (so queueing counts), with a new question every time (argv 4 makes them
/// differ between runs, so no cache answers); prints p50 and p95 in milliseconds and how many
/// were not 200.
const OPEN_LOOP_SCRIPT: &str = r#"
import concurrent.futures, http.client, json, os, sys, threading, time, urllib.parse
u, rate, secs, run = urllib.parse.urlparse(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
hdrs = {"Authorization": "Bearer " + os.environ["RAGPLANE_API_KEY"], "Content-Type": "application/json"}
local = threading.local()
def one(i, due):
    c = getattr(local, "c", None) or http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    local.c = c
    body = json.dumps({"collection": "examples", "top_k": 3, "query": f"lamp range and fog signal {run} {i}"})
    try:
        c.request("POST", "/v1/search", body, hdrs); r = c.getresponse(); r.read(); ok = r.status == 200
    except (OSError, http.client.HTTPException):
        local.c, ok = None, False
    return time.monotonic() - due, ok
with concurrent.futures.ThreadPoolExecutor(64) as pool:
    start, futs = time.monotonic(), []
    for i in range(int(rate * secs)):
        due = start + i / rate
        time.sleep(max(0, due - time.monotonic()))
        futs.append(pool.submit(one, i, due))
    res = [f.result() for f in futs]
lat = sorted(l for l, _ in res)
q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1)
print(json.dumps({"p50_ms": q(.5), "p95_ms": q(.95), "errors": sum(1 for _, ok in res if not ok)}))
"#;

/// Prints the `/metrics` text of argv 1.
const METRICS_SCRIPT: &str =
    "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + '/metrics').read().decode())";

/// The pods of the two worker pools.
const BACKFILL_PODS: &str = "app.kubernetes.io/instance=prod,ragplane.dev/worker-pool=backfill";
const INGEST_PODS: &str = "app.kubernetes.io/instance=prod,ragplane.dev/worker-pool=ingest";
/// The API pods.
const API_PODS: &str = "app.kubernetes.io/instance=prod,app.kubernetes.io/component=api";
/// The Qdrant peers.
const QDRANT_PODS: &str = "app.kubernetes.io/instance=prod,app.kubernetes.io/component=qdrant";

/// The Qdrant fixture's API key (`e2e/node/prod/fixtures.yaml`).
const QDRANT_KEY: &str = "qdrant-fixture-key-6f1c2a9e";

/// A running [`LOAD_SCRIPT`] and when it started.
struct Load {
    child: std::process::Child,
    started: Instant,
}

impl Load {
    fn start(node: &Node, url: &str, seconds: u32, threads: u32, kind: &str) -> Self {
        let child = node
            .spawn_in_node(
                &[("RAGPLANE_API_KEY", ADMIN_KEY)],
                &[
                    "python3",
                    "-c",
                    LOAD_SCRIPT,
                    url,
                    &seconds.to_string(),
                    &threads.to_string(),
                    kind,
                ],
            )
            .expect("starting the load");
        Self {
            child,
            started: Instant::now(),
        }
    }

    /// Seconds since the load started.
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Every answer as (seconds since the start, outcome); panics on any `fail`.
    fn finish(self, what: &str) -> Vec<(f64, String)> {
        let out = self.child.wait_with_output().expect("the load's output");
        let log: Vec<(f64, String)> = serde_json::from_slice(&out.stdout).expect("the load's JSON");
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for (_, outcome) in &log {
            *counts
                .entry(outcome.split(':').next().unwrap_or(""))
                .or_default() += 1;
        }
        eprintln!("{what}: {counts:?}");
        let failed: Vec<_> = log.iter().filter(|(_, o)| o.starts_with("fail")).collect();
        assert!(failed.is_empty(), "{what}: {failed:?}");
        log
    }
}

/// Whether every answer after `from` seconds was a plain success.
fn recovered(log: &[(f64, String)], from: f64) -> bool {
    let after: Vec<_> = log.iter().filter(|(t, _)| *t >= from).collect();
    !after.is_empty() && after.iter().all(|(_, o)| o == "ok")
}

/// Pod names matching `selector` in the cluster's namespace.
fn pod_names(node: &Node, selector: &str) -> Vec<String> {
    node.json(&["get", "pods", "-n", NS, "-l", selector])
        .ok()
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// The IP of `pod` in the cluster's namespace: the node's network reaches pods behind headless
/// Services (the Qdrant peers) and single pods by it.
fn pod_ip(node: &Node, pod: &str) -> Option<String> {
    let p = node.json(&["get", "pod", "-n", NS, pod]).ok()?;
    p["status"]["podIP"].as_str().map(str::to_owned)
}

/// Reads the `documents` jobs each running pod of `selector` has finished
/// (`ragplane_jobs_total{outcome="succeeded"}` on its /metrics) into `seen`, by pod name: a
/// pod's highest count so far, or why it could not be read while none was.
fn record_jobs_done(node: &Node, selector: &str, seen: &mut BTreeMap<String, Result<u64, String>>) {
    let Ok(pods) = node.json(&["get", "pods", "-n", NS, "-l", selector]) else {
        return;
    };
    for pod in pods["items"].as_array().into_iter().flatten() {
        let (Some(name), Some(ip)) = (
            pod["metadata"]["name"].as_str(),
            pod["status"]["podIP"].as_str(),
        ) else {
            continue;
        };
        let url = format!("http://{ip}:8080");
        let count = node
            .in_node(&[], &["python3", "-c", METRICS_SCRIPT, &url])
            .map(|metrics| {
                let labels = [r#"outcome="succeeded""#, r#"queue="documents""#];
                metric_sum(&metrics, "ragplane_jobs_total", &labels) as u64
            })
            .map_err(|e| e.to_string());
        // Keep the highest count; a failed read only stands while no read has worked.
        let newer = match (seen.get(name), &count) {
            (Some(Ok(before)), Ok(now)) => now > before,
            (Some(Ok(_)), Err(_)) => false,
            _ => true,
        };
        if newer {
            seen.insert(name.to_owned(), count);
        }
    }
}

/// The Events of `reason` about objects of `kind` in the test's namespace (none while the API
/// server cannot be asked).
fn events(node: &Node, kind: &str, reason: &str) -> Vec<Value> {
    let selector = format!("involvedObject.kind={kind},reason={reason}");
    node.json(&["get", "events", "-n", NS, "--field-selector", &selector])
        .ok()
        .and_then(|e| e["items"].as_array().cloned())
        .unwrap_or_default()
}

/// Qdrant peer `pod`'s view of its cluster (`{peer_id, peers}`), while it answers.
fn qdrant_cluster(node: &Node, pod: &str) -> Option<Value> {
    let ip = pod_ip(node, pod)?;
    let out = node
        .in_node(
            &[],
            &[
                "python3",
                "-c",
                QDRANT_CLUSTER_SCRIPT,
                &format!("http://{ip}:6333"),
                QDRANT_KEY,
            ],
        )
        .ok()?;
    serde_json::from_str(&out).ok()
}

/// The points in the Qdrant collection `docs`, asked of peer 0.
fn qdrant_points(node: &Node) -> u64 {
    let ip = pod_ip(node, "prod-qdrant-0").expect("peer 0's address");
    node.in_node(
        &[],
        &[
            "python3",
            "-c",
            QDRANT_POINTS_SCRIPT,
            &format!("http://{ip}:6333"),
            QDRANT_KEY,
        ],
    )
    .expect("the points of collection docs")
    .trim()
    .parse()
    .expect("a count of points")
}

/// The points in the Qdrant collection `docs` once they number `expected`, or after 30 s
/// whatever they number then: a replica that took the last writes a moment ago may answer.
fn qdrant_points_settled(node: &Node, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let points = qdrant_points(node);
        if points == expected || Instant::now() > deadline {
            return points;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Asks the API server to evict `pod`, as a drain does; the error names a refusal.
fn evict(node: &Node, pod: &str) -> anyhow::Result<String> {
    let body = target_dir().join(format!("eviction-{pod}.json"));
    std::fs::write(
        &body,
        format!(
            r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"{NS}"}}}}"#
        ),
    )?;
    let answer = node.kubectl(&[
        "create",
        "--raw",
        &format!("/api/v1/namespaces/{NS}/pods/{pod}/eviction"),
        "-f",
        &body.to_string_lossy(),
    ]);
    let _ = std::fs::remove_file(&body);
    answer
}

/// A drain-style eviction of two pods of one PodDisruptionBudget (`maxUnavailable: 1`) in a
/// row: the first goes, the second is refused while the first one's replacement is not Ready;
/// then everything is Ready again.
fn evictions_respect_the_budget(node: &Node, selector: &str, workload: &str) {
    let pods = pod_names(node, selector);
    assert!(pods.len() >= 2, "{selector}: {pods:?}");
    evict(node, &pods[0]).unwrap_or_else(|e| panic!("evicting {}: {e}", pods[0]));
    let refused = evict(node, &pods[1]).expect_err("a second eviction within the budget");
    assert!(
        refused.to_string().contains("disruption budget"),
        "{refused}"
    );
    eprintln!(
        "eviction of {} refused: the PodDisruptionBudget holds",
        pods[1]
    );
    ready_again(node, workload);
}

/// Waits until every replica of `workload` (`deployment/x`, `statefulset/y`) is ready.
fn ready_again(node: &Node, workload: &str) {
    node.kubectl(&["rollout", "status", "-n", NS, workload, "--timeout=300s"])
        .unwrap_or_else(|e| panic!("{e}\n{}", describe(node, NS)));
}

/// [`OPEN_LOOP_SCRIPT`] at 60 searches/s for 20 s, its questions marked with `run`.
fn open_loop(node: &Node, url: &str, run: &str) -> Value {
    let out = node
        .in_node(
            &[("RAGPLANE_API_KEY", ADMIN_KEY)],
            &["python3", "-c", OPEN_LOOP_SCRIPT, url, "60", "20", run],
        )
        .expect("the open-loop load");
    serde_json::from_str(&out).expect("the open-loop load's JSON")
}

/// Sets the RagCluster's `api.replicas` and waits until exactly that many API pods run, all
/// Ready.
fn api_replicas(node: &Node, n: usize) {
    node.kubectl(&[
        "patch",
        "ragcluster",
        "-n",
        NS,
        "prod",
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{{"api":{{"replicas":{n}}}}}}}"#),
    ])
    .expect("patching api.replicas");
    wait("the API pods", Duration::from_secs(180), || {
        (pod_names(node, API_PODS).len() == n).then_some(())
    });
    ready_again(node, "deployment/prod-api");
}

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
            node.ctr(&["images", "import", &path.to_string_lossy()])
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
    let lines: Vec<&str> = described.lines().collect();
    let tail = lines[lines.len().saturating_sub(150)..].join("\n");
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
    // PostgreSQL and Redis speak TLS only, each with a certificate from a CA made for this run.
    for service in ["postgres", "redis"] {
        let secret = format!("{service}-tls");
        let tls = target_dir().join(&secret);
        let made = std::process::Command::new("bash")
            .arg(repo_root().join("scripts/services/make-tls.sh"))
            .arg(&tls)
            .arg(format!(
                "DNS:{service}.{NS}.svc,DNS:{service}.{NS}.svc.cluster.local"
            ))
            .status()
            .unwrap();
        assert!(made.success(), "make-tls.sh: {made}");
        let file = |name: &str| format!("--from-file={name}={}", tls.join(name).display());
        node.kubectl(&[
            "create",
            "secret",
            "generic",
            &secret,
            "-n",
            NS,
            &file("ca.crt"),
            &file("server.crt"),
            &file("server.key"),
        ])
        .unwrap();
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
    // Peers that had not joined waited for peer 0 instead of crash-looping.
    if qdrant {
        for pod in pod_names(&node, QDRANT_PODS) {
            let p = node.json(&["get", "pod", "-n", NS, &pod]).unwrap();
            assert_eq!(
                p["status"]["containerStatuses"][0]["restartCount"], 0,
                "{pod} restarted before the cluster was Ready"
            );
        }
    }
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
        // The backfill pool may already have scaled to zero, with the queue empty.
        let may_idle = c["name"] == "worker-backfill";
        assert!(
            c["readyReplicas"].as_i64() >= c["desiredReplicas"].as_i64()
                && (may_idle || c["desiredReplicas"].as_i64() > Some(0)),
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
    let mut examples_points = 0;
    if qdrant {
        let points = qdrant_points(&node);
        assert!(points > 0, "no points in the Qdrant collection docs");
        eprintln!("Qdrant collection docs: {points} points");
        examples_points = points;
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
        .in_node(&[], &["python3", "-c", METRICS_SCRIPT, &url])
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

    // Faults, each with nothing lost. First, a drain-style eviction respects each
    // PodDisruptionBudget.
    evictions_respect_the_budget(&node, API_PODS, "deployment/prod-api");
    evictions_respect_the_budget(
        &node,
        "app.kubernetes.io/instance=llm,app.kubernetes.io/component=model-server",
        "statefulset/llm",
    );
    if qdrant {
        evictions_respect_the_budget(&node, QDRANT_PODS, "statefulset/prod-qdrant");
    }

    // An API pod deleted under search load: every client sees an answer, a retried one or a
    // 503 with Retry-After, and the load recovers.
    let load = Load::start(&node, &url, 30, 6, "search");
    std::thread::sleep(Duration::from_secs(5));
    let victim = pod_names(&node, API_PODS).remove(0);
    node.kubectl(&["delete", "pod", "-n", NS, &victim, "--wait=false"])
        .unwrap();
    let deleted = load.now();
    let log = load.finish("search load while an API pod is deleted");
    assert!(recovered(&log, 25.0), "{log:?}");
    eprintln!("API pod {victim} deleted at {deleted:.1} s of 30");
    ready_again(&node, "deployment/prod-api");

    // An Ollama pod deleted under chat load: answers fail over to the other replica while
    // the deleted one is away. A short answer takes 10-20 s on this node, about as long as
    // the pod is away, so the clients busy when it goes are joined by two that start asking
    // 1 s after it went: their questions are asked while only llm-1 can answer.
    let load = Load::start(&node, &url, 60, 2, "chat");
    std::thread::sleep(Duration::from_secs(5));
    let old = node.json(&["get", "pod", "-n", NS, "llm-0"]).unwrap()["metadata"]["uid"].clone();
    node.kubectl(&["delete", "pod", "-n", NS, "llm-0", "--wait=false"])
        .unwrap();
    let deleted = load.now();
    std::thread::sleep(Duration::from_secs(1));
    let (away, away_from) = (Load::start(&node, &url, 8, 2, "chat"), load.now());
    let back = wait("llm-0 to be Ready again", Duration::from_secs(300), || {
        let pod = node.json(&["get", "pod", "-n", NS, "llm-0"]).ok()?;
        let ready = pod["metadata"]["uid"] != old
            && pod["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then(|| load.now())
    });
    let mut log = load.finish("chat load while an Ollama pod is deleted");
    let asked_while_away = away.finish("chat load started while the Ollama pod is away");
    log.extend(
        asked_while_away
            .into_iter()
            .map(|(t, o)| (t + away_from, o)),
    );
    let meanwhile = log
        .iter()
        .filter(|(t, o)| *t > deleted + 1.0 && *t < back && o.starts_with("ok"))
        .count();
    eprintln!(
        "llm-0 deleted at {deleted:.1} s, Ready again at {back:.1} s; {meanwhile} answers to \
         questions asked in between, from llm-1"
    );
    assert!(meanwhile > 0, "no answer while llm-0 was away: {log:?}");

    // A Qdrant peer deleted under search load: replication factor 2 keeps every shard
    // answering, and the pod rejoins as the same peer of the same cluster.
    if qdrant {
        let cluster_of =
            |pod: &str| qdrant_cluster(&node, pod).expect("the peer's view of its cluster");
        let before = cluster_of("prod-qdrant-1");
        let load = Load::start(&node, &url, 40, 4, "search");
        std::thread::sleep(Duration::from_secs(5));
        node.kubectl(&["delete", "pod", "-n", NS, "prod-qdrant-1", "--wait=false"])
            .unwrap();
        let log = load.finish("search load while a Qdrant peer is deleted");
        assert!(recovered(&log, 35.0), "{log:?}");
        ready_again(&node, "statefulset/prod-qdrant");
        let after = wait(
            "prod-qdrant-1 to see its cluster",
            Duration::from_secs(120),
            || {
                let c = cluster_of("prod-qdrant-1");
                (c["peers"] == 3).then_some(c)
            },
        );
        assert_eq!(before["peer_id"], after["peer_id"], "{before} {after}");
        eprintln!("prod-qdrant-1 rejoined as peer {} of 3", after["peer_id"]);

        // Peer 0 loses its volume: its container is frozen, its volume emptied, and it is
        // killed. Restarted without Raft state while peers 1 and 2 run, it must join them, not
        // found a second cluster; Qdrant refuses it while its predecessor holds its URI, the
        // operator removes that predecessor, and it rejoins as a new peer. Nothing is lost at
        // replication factor 2.
        let points = qdrant_points(&node);
        let old = cluster_of("prod-qdrant-0");
        let pod = node
            .json(&["get", "pod", "-n", NS, "prod-qdrant-0"])
            .unwrap();
        let container = pod["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .and_then(|id| id.strip_prefix("containerd://"))
            .expect("peer 0's container id")
            .to_owned();
        let claim = node
            .json(&["get", "pvc", "-n", NS, "storage-prod-qdrant-0"])
            .unwrap();
        let volume = node
            .json(&["get", "pv", claim["spec"]["volumeName"].as_str().unwrap()])
            .unwrap();
        let path = std::path::PathBuf::from(volume["spec"]["local"]["path"].as_str().unwrap());
        node.ctr(&["task", "pause", &container]).unwrap();
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap().path();
            if entry.is_dir() {
                std::fs::remove_dir_all(&entry).unwrap();
            } else {
                std::fs::remove_file(&entry).unwrap();
            }
        }
        node.ctr(&["task", "kill", "-s", "SIGKILL", &container])
            .unwrap();
        let _ = node.ctr(&["task", "resume", &container]);
        let wiped = Instant::now();
        let new = wait(
            "prod-qdrant-0 to rejoin as a new peer",
            Duration::from_secs(240),
            || {
                let c = qdrant_cluster(&node, "prod-qdrant-0")?;
                (c["peers"] == 3 && c["peer_id"] != old["peer_id"]).then_some(c)
            },
        );
        let rejoined = wiped.elapsed();
        // One cluster: peer 1 sees the new peer 0 among its 3 peers.
        let seen = cluster_of("prod-qdrant-1");
        assert_eq!(seen["peers"], 3, "{seen}");
        let replaced = events(&node, "RagCluster", "QdrantPeerReplaced");
        assert!(!replaced.is_empty(), "no QdrantPeerReplaced event");
        ready_again(&node, "statefulset/prod-qdrant");
        assert_eq!(
            qdrant_points_settled(&node, points),
            points,
            "points lost with peer 0's volume"
        );
        eprintln!(
            "BENCH qdrant-volume-lost: prod-qdrant-0 restarted with an empty volume rejoined as \
             peer {} (was {}) {:.1} s after the kill; one cluster of 3 peers, {points} points kept",
            new["peer_id"],
            old["peer_id"],
            rejoined.as_secs_f64()
        );
    }

    // Autoscaling with real pods. The backfill pool (queueDepth, 100 jobs per worker, 0..2)
    // has scaled to zero with the queue empty.
    let backfill = "deployment/prod-worker-backfill";
    let replicas = |workload: &str| -> Option<i64> {
        node.json(&["get", "-n", NS, workload]).ok()?["spec"]["replicas"].as_i64()
    };
    wait(
        "the backfill pool to scale to zero",
        Duration::from_secs(180),
        || (replicas(backfill) == Some(0)).then_some(()),
    );
    eprintln!("the backfill pool is at zero replicas");

    // 500 documents: the queue's depth, exported by the API pods and the ingest pool, raises
    // the pool from zero. Then an ingest-pool pod is deleted mid-ingestion.
    let job_file = target_dir()
        .join("bulk-jobs.json")
        .to_string_lossy()
        .into_owned();
    // Uploads `n` notes to `collection`, their job ids written to `jobs`.
    let upload = |collection: &str, n: &str, jobs: &str| {
        node.in_node(
            &env,
            &["python3", "-c", UPLOAD_SCRIPT, &url, collection, n, jobs],
        )
        .unwrap();
    };
    let uploading = Instant::now();
    upload("bulk", "500", &job_file);
    let uploaded = uploading.elapsed();
    let decided = wait(
        "the backfill pool to scale up",
        Duration::from_secs(180),
        || (replicas(backfill) > Some(0)).then(|| uploading.elapsed()),
    );
    let ready = wait(
        "a backfill pod to be Ready",
        Duration::from_secs(180),
        || {
            let pods = node
                .json(&["get", "pods", "-n", NS, "-l", BACKFILL_PODS])
                .ok()?;
            pods["items"]
                .as_array()?
                .iter()
                .any(|p| ready_pod(std::slice::from_ref(p)).is_some())
                .then(|| uploading.elapsed())
        },
    );
    eprintln!(
        "BENCH autoscale-from-zero: 500 uploads in {:.1} s; queue depth -> backfill pool scaled \
         up after {:.1} s (Prometheus scrape 5 s, autoscaler poll 5 s), first new pod Ready \
         {:.1} s later",
        uploaded.as_secs_f64(),
        decided.as_secs_f64(),
        (ready - decided).as_secs_f64()
    );
    let collection = |name: &str| -> Value {
        serde_json::from_str(
            &node
                .in_node(&env, &["python3", "-c", DOCUMENTS_SCRIPT, &url, name])
                .unwrap(),
        )
        .unwrap()
    };
    let documents = || collection("bulk");
    // What the ingest pool had left when the first backfill pod became Ready: the backfill
    // pods can only be asked to take jobs that were still queued.
    let left_at_ready = 500 - documents()["statuses"]["indexed"].as_u64().unwrap_or(0);
    let ingest_pods = pod_names(&node, INGEST_PODS);
    node.kubectl(&["delete", "pod", "-n", NS, &ingest_pods[0], "--wait=false"])
        .unwrap();
    let mut most = 0;
    // Each backfill pod's count, read while it runs: the pool scales in as the backlog drains,
    // and a pod that is gone can no longer be asked.
    let mut seen = BTreeMap::new();
    let done = wait("500 documents indexed", Duration::from_secs(900), || {
        most = most.max(replicas(backfill).unwrap_or(0));
        record_jobs_done(&node, BACKFILL_PODS, &mut seen);
        let d = documents();
        let s = &d["statuses"];
        assert!(s["failed"].is_null(), "{d}");
        (s["indexed"] == 500).then_some(d)
    });
    record_jobs_done(&node, BACKFILL_PODS, &mut seen);
    assert_eq!(done["chunks"], 500, "{done}");
    assert_eq!(most, 2, "the backfill pool did not reach its maximum");
    // The new pods took jobs.
    let took: u64 = seen.values().filter_map(|c| c.as_ref().ok()).sum();
    // A Ready worker polls at once; with a few dozen jobs still queued it takes some.
    if left_at_ready >= 40 {
        assert!(
            took > 0,
            "the backfill pods finished no job ({left_at_ready} were left when one was Ready); \
             their counts as last read: {seen:?}"
        );
    } else {
        eprintln!(
            "SKIPPED: the check that the backfill pods took jobs: the ingest pool had only \
             {left_at_ready} of 500 left when the first backfill pod was Ready"
        );
    }
    if qdrant {
        // The 500 notes and the examples' chunks, each stored once.
        assert_eq!(
            qdrant_points_settled(&node, 500 + examples_points),
            500 + examples_points,
            "points in Qdrant"
        );
    }
    // The backlog drained: the pool scales in, then to zero, and no worker that got SIGTERM
    // (the deleted pod, the scaled-in ones) left a job to be run again.
    wait(
        "the backfill pool to scale back to zero",
        Duration::from_secs(180),
        || (replicas(backfill) == Some(0)).then_some(()),
    );
    let attempts: Value = serde_json::from_str(
        &node
            .in_node(&env, &["python3", "-c", JOBS_SCRIPT, &url, &job_file])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(attempts["jobs"], 500, "{attempts}");
    assert_eq!(
        attempts["retried"], 0,
        "jobs run more than once: {attempts}"
    );
    eprintln!(
        "after the deletion of {} and autoscaling 0 -> {most} -> 0 (backfill took {took} jobs): \
         {done}",
        ingest_pods[0]
    );

    // A worker killed outright (SIGKILL, as the out-of-memory killer does) cannot give its
    // jobs back. Restarted in place, under its pod's name, it requeues them as it starts, long
    // before the queue's visibility timeout (300 s) would hand them to another worker.
    let victim = pod_names(&node, INGEST_PODS)
        .into_iter()
        .find(|p| ready_pod(&[node.json(&["get", "pod", "-n", NS, p]).unwrap()]).is_some())
        .expect("a Ready ingest pod");
    let status = |pod: &str| node.json(&["get", "pod", "-n", NS, pod]).unwrap()["status"].clone();
    let restarts = |pod: &str| status(pod)["containerStatuses"][0]["restartCount"].as_i64();
    let restarts_before = restarts(&victim);
    let kill_jobs = target_dir()
        .join("kill-jobs.json")
        .to_string_lossy()
        .into_owned();
    upload("killed", "200", &kill_jobs);
    let container = status(&victim)["containerStatuses"][0]["containerID"]
        .as_str()
        .and_then(|id| id.strip_prefix("containerd://"))
        .expect("the worker's container id")
        .to_owned();
    node.ctr(&["task", "kill", "-s", "SIGKILL", &container])
        .unwrap();
    let killed = Instant::now();
    // Well inside the visibility timeout: only the requeueing at restart can get there.
    let done = wait(
        "200 documents indexed after the SIGKILL",
        Duration::from_secs(200),
        || {
            let d = collection("killed");
            assert!(d["statuses"]["failed"].is_null(), "{d}");
            (d["statuses"]["indexed"] == 200).then_some(d)
        },
    );
    let recovered_after = killed.elapsed();
    assert_eq!(done["chunks"], 200, "{done}");
    assert!(
        restarts(&victim) > restarts_before,
        "{victim} was not restarted after the SIGKILL"
    );
    let log = node
        .kubectl(&["logs", "-n", NS, &victim])
        .unwrap_or_default();
    let requeued: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("requeued jobs an earlier process of this name left running"))
        .collect();
    assert!(
        !requeued.is_empty(),
        "the restarted worker requeued nothing:\n{log}"
    );
    let attempts: Value = serde_json::from_str(
        &node
            .in_node(&env, &["python3", "-c", JOBS_SCRIPT, &url, &kill_jobs])
            .unwrap(),
    )
    .unwrap();
    // The killed attempts count; the rest ran once.
    let retried = attempts["retried"].as_u64().unwrap_or(0);
    assert!((1..=2).contains(&retried), "{attempts}");
    assert_eq!(attempts["statuses"]["succeeded"], 200, "{attempts}");
    eprintln!(
        "BENCH worker-sigkill: {victim}'s container killed mid-ingestion of 200 documents; \
         restarted in place, it requeued the jobs it held ({}); all indexed once {:.1} s after \
         the kill ({retried} jobs ran twice)",
        requeued.join(" | "),
        recovered_after.as_secs_f64()
    );

    // The CPU rule renders an HPA that the real kube-controller-manager acts on: scaled past
    // its maximum by hand, the ingest pool is brought back to it.
    let ingest = "deployment/prod-worker-ingest";
    node.kubectl(&["scale", "-n", NS, ingest, "--replicas=3"])
        .unwrap();
    wait(
        "the HPA to bring the ingest pool back to 2",
        Duration::from_secs(120),
        || (replicas(ingest) == Some(2)).then_some(()),
    );
    // It was the HPA controller that did it, as its own event says.
    let rescaled = wait("the HPA's rescale event", Duration::from_secs(60), || {
        events(&node, "HorizontalPodAutoscaler", "SuccessfulRescale")
            .iter()
            .find(|e| e["involvedObject"]["name"] == "prod-worker-ingest")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
    });
    eprintln!("the ingest pool's HPA brought 3 replicas back to its maximum of 2: {rescaled}");
    // A ModelPool with bounds is raised to its minimum.
    node.kubectl(&["scale", "-n", NS, "statefulset/llm", "--replicas=1"])
        .unwrap();
    wait(
        "the llm pool back at its minimum of 2",
        Duration::from_secs(120),
        || (replicas("statefulset/llm") == Some(2)).then_some(()),
    );
    eprintln!("the llm pool, scaled to 1 by hand, is back at its minimum of 2");

    // Query latency with 2 API pods against 1, at the same offered load, in this run, once
    // the llm pool's restarted pod has loaded its model.
    ready_again(&node, "statefulset/llm");
    let two = open_loop(&node, &url, "two");
    api_replicas(&node, 1);
    let one = open_loop(&node, &url, "one");
    // And 2 pods again, so that the order of the runs shows.
    api_replicas(&node, 2);
    let again = open_loop(&node, &url, "again");
    let runs = [two, one, again];
    let p95 = |r: &Value| r["p95_ms"].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "BENCH api-replicas-p95: 60 searches/s offered for 20 s through the Service, in turn: \
         2 API pods p50 {} ms p95 {} ms ({} errors); 1 API pod p50 {} ms p95 {} ms ({} errors); \
         2 API pods again p50 {} ms p95 {} ms ({} errors); p95 ratio 2 pods / 1 pod {:.2} and \
         {:.2}",
        runs[0]["p50_ms"],
        runs[0]["p95_ms"],
        runs[0]["errors"],
        runs[1]["p50_ms"],
        runs[1]["p95_ms"],
        runs[1]["errors"],
        runs[2]["p50_ms"],
        runs[2]["p95_ms"],
        runs[2]["errors"],
        p95(&runs[0]) / p95(&runs[1]),
        p95(&runs[2]) / p95(&runs[1]),
    );
}
