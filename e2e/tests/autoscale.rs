//! Autoscaling end to end: a real Prometheus scrapes a metrics endpoint this test controls
//! (`ragplane_queue_depth{queue="documents"} N`), the operator runs as its own process against
//! the real API server, and the test watches the worker Deployment's replicas follow the queue,
//! fall after the stabilization window, and follow the fallback when Prometheus is stopped.
//!
//! Needs `RAGPLANE_TEST_PROMETHEUS_BIN` (set by `scripts/services/prometheus.sh start`); each
//! test starts its own Prometheus on a free port in 19091-19099 so it can stop it.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ragplane_e2e::cluster::{self, Operator, TestCluster};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// The Prometheus binary, or `None` after printing why the test is skipped.
fn prometheus_bin(test: &str) -> Option<PathBuf> {
    match std::env::var_os("RAGPLANE_TEST_PROMETHEUS_BIN") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            let why = "RAGPLANE_TEST_PROMETHEUS_BIN is not set (run scripts/services/prometheus.sh start)";
            assert!(
                std::env::var("RAGPLANE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{test}: {why}"
            );
            eprintln!("SKIPPED: {test}: {why}");
            None
        }
    }
}

/// A metrics endpoint serving one gauge whose value the test sets.
struct QueueMetric {
    depth: Arc<AtomicI64>,
    port: u16,
}

impl QueueMetric {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let depth = Arc::new(AtomicI64::new(0));
        let d = depth.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let body = format!(
                    "# TYPE ragplane_queue_depth gauge\nragplane_queue_depth{{queue=\"documents\"}} {}\nragplane_queue_depth{{queue=\"other\"}} 1000\n",
                    d.load(Ordering::SeqCst)
                );
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { depth, port }
    }

    fn set(&self, n: i64) {
        self.depth.store(n, Ordering::SeqCst);
    }
}

/// Prometheus run by the test, scraping the [`QueueMetric`] every second with the labels the
/// chart's PodMonitor would give a data-plane pod of RagCluster `cluster` in `ns`.
struct Prometheus {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Prometheus {
    fn start(bin: PathBuf, target: u16, ns: &str, cluster: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = (19091..=19099)
            .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .expect("a free port in 19091-19099");
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n\
             - job_name: ragplane\n\
             \x20 static_configs:\n\
             \x20 - targets: ['127.0.0.1:{target}']\n\
             \x20   labels: {{namespace: {ns}, app_kubernetes_io_instance: {cluster}, app_kubernetes_io_component: worker}}\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("config");
        let mut p = Self {
            child: None,
            port,
            dir,
            bin,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("prometheus.log")).expect("log");
        let child = Command::new(&self.bin)
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus starts");
        self.child = Some(child);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The value of `promql` now, if it returns one series.
    fn query(&self, promql: &str) -> Option<f64> {
        let out = Command::new("curl")
            .args(["-sf", "-G", &format!("{}/api/v1/query", self.url())])
            .args(["--data-urlencode", &format!("query={promql}")])
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `promql` returns `want`.
    fn wait_value(&self, promql: &str, want: f64) {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if self.query(promql) == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Prometheus never returned {want} for {promql}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

const QUEUE: &str = r#"ragplane_queue_depth{queue="documents"}"#;

fn cluster_yaml(prometheus: &str, autoscaling: &str) -> String {
    format!(
        "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {{name: rc}}\nspec:\n  \
         prometheusUrl: {prometheus}\n  api: {{replicas: 1}}\n  \
         redis: {{urlSecretRef: {{name: redis, key: url}}}}\n  workers:\n  - name: ingest\n    \
         queues: [documents]\n{autoscaling}"
    )
}

fn replicas(cluster: &TestCluster, ns: &str) -> i64 {
    cluster
        .get(ns, "deployment", "rc-worker-ingest")
        .expect("kubectl get")
        .map_or(-1, |d| d["spec"]["replicas"].as_i64().unwrap_or(-1))
}

fn wait_replicas(cluster: &TestCluster, ns: &str, want: i64, operator: &Operator) -> Value {
    cluster
        .wait_for(ns, "deployment", "rc-worker-ingest", WAIT, |d| {
            d["spec"]["replicas"] == want
        })
        .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", operator.log_tail()))
}

fn autoscaling_status(cluster: &TestCluster, ns: &str) -> Value {
    let rc = cluster
        .get(ns, "ragcluster", "rc")
        .expect("kubectl get")
        .expect("rc exists");
    rc["status"]["autoscaling"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["component"] == "worker-ingest"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn events(cluster: &TestCluster, ns: &str, reason: &str) -> Vec<Value> {
    let out = cluster
        .kubectl_ok(&["get", "events.events.k8s.io", "-n", ns, "-o", "json"])
        .expect("events");
    let v: Value = serde_json::from_str(&out).expect("json");
    v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .collect()
}

#[test]
fn worker_replicas_follow_the_queue_the_window_and_the_fallback() {
    let Some(bin) = prometheus_bin("worker_replicas_follow_the_queue_the_window_and_the_fallback")
    else {
        return;
    };
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let ns = cluster.namespace("autoscale").expect("namespace");
    let metric = QueueMetric::start();
    let mut prometheus = Prometheus::start(bin, metric.port, &ns, "rc");
    let operator = Operator::start(cluster, &ns).expect("operator starts");

    // Fixed replicas first, so switching to autoscaling exercises the hand-over of the count.
    cluster
        .apply(&ns, &cluster_yaml(&prometheus.url(), "    replicas: 2\n"))
        .expect("applies");
    wait_replicas(cluster, &ns, 2, &operator);
    // Only switch once Prometheus has a sample: the first scrape lands seconds after start, and
    // an empty result is an error (that is the point of it), which would start the fallback.
    metric.set(10);
    prometheus.wait_value(QUEUE, 10.0);

    let autoscaling = "    autoscaling:\n      minReplicas: 1\n      maxReplicas: 6\n      \
        pollingIntervalSeconds: 1\n      rules:\n      - {name: queue, preset: queueDepth, targetPerReplica: 5}\n      \
        behavior: {scaleDown: {stabilizationWindowSeconds: 6}}\n      \
        fallback: {failureThreshold: 2, onFailure: static, replicas: 3}\n";
    cluster
        .apply(&ns, &cluster_yaml(&prometheus.url(), autoscaling))
        .expect("applies");
    // A queue of 10 with 5 per replica is 2: the count the pool already has. The reconciler's
    // apply no longer sets it, so the autoscaler must own it now (else it would fall to 1).
    let entry = (0..100)
        .find_map(|_| {
            let e = autoscaling_status(cluster, &ns);
            if e.is_null() {
                std::thread::sleep(Duration::from_millis(200));
                None
            } else {
                Some(e)
            }
        })
        .unwrap_or_else(|| panic!("no autoscaling status\n{}", operator.log_tail()));
    assert_eq!(entry["desiredReplicas"], 2, "{entry:#}");
    let replicas_owners = |d: &Value| -> Vec<String> {
        d["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["fieldsV1"]["f:spec"]["f:replicas"].is_object())
            .filter_map(|f| f["manager"].as_str().map(str::to_owned))
            .collect()
    };
    // kubectl hides managedFields unless asked.
    let with_fields = || -> Value {
        let out = cluster
            .kubectl_ok(&[
                "get",
                "-n",
                &ns,
                "deployment",
                "rc-worker-ingest",
                "-o",
                "json",
                "--show-managed-fields",
            ])
            .expect("kubectl get");
        serde_json::from_str(&out).expect("json")
    };
    let started = Instant::now();
    let d = loop {
        let d = with_fields();
        if replicas_owners(&d) == ["ragplane-autoscaler"] {
            break d;
        }
        assert!(
            started.elapsed() < WAIT,
            "only the autoscaler owns replicas: {:?}",
            replicas_owners(&d)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(d["spec"]["replicas"], 2, "the hand-over kept the count");

    // The queue grows: 20 → 4 replicas, 28 → 6, 100 → still 6 (maxReplicas).
    for (depth, want) in [(20, 4), (28, 6), (100, 6)] {
        metric.set(depth);
        prometheus.wait_value(QUEUE, depth as f64);
        wait_replicas(cluster, &ns, want, &operator);
    }
    // Capped at maxReplicas once the autoscaler has seen 100 (its metrics say what it saw).
    let seen_100 = Instant::now();
    loop {
        let out = Command::new("curl")
            .args(["-sf", &format!("{}/metrics", operator.metrics_url)])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout);
        if text.lines().any(|l| {
            l.starts_with("ragplane_operator_autoscaler_rule_value{")
                && l.contains(r#"component="worker-ingest""#)
                && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) == Some(100.0)
        }) {
            assert!(
                text.contains("ragplane_operator_autoscaler_scale_writes_total{"),
                "{text}"
            );
            break;
        }
        assert!(
            seen_100.elapsed() < WAIT,
            "the autoscaler never saw 100:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(replicas(cluster, &ns), 6);
    let entry = autoscaling_status(cluster, &ns);
    assert_eq!(entry["fallbackActive"], false, "{entry:#}");
    assert!(entry["lastScaleTime"].is_string(), "{entry:#}");
    assert!(!events(cluster, &ns, "Scaled").is_empty(), "a Scaled Event");

    // The queue drains: the count holds for the 6 s window, then falls to 1.
    metric.set(3);
    prometheus.wait_value(QUEUE, 3.0);
    let seen = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        replicas(cluster, &ns),
        6,
        "held inside the stabilization window"
    );
    wait_replicas(cluster, &ns, 1, &operator);
    let fell = seen.elapsed();
    assert!(
        fell >= Duration::from_secs(4) && fell < Duration::from_secs(15),
        "fell after {fell:?}"
    );

    // Prometheus goes away: after two failed polls the static fallback sets 3.
    prometheus.stop();
    wait_replicas(cluster, &ns, 3, &operator);
    let entry = cluster
        .wait_for(&ns, "ragcluster", "rc", WAIT, |rc| {
            rc["status"]["autoscaling"][0]["fallbackActive"] == true
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()))["status"]["autoscaling"][0]
        .clone();
    assert!(
        entry["values"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Prometheus")),
        "{entry:#}"
    );
    assert!(!events(cluster, &ns, "AutoscalingFallback").is_empty());

    // It comes back: the rules decide again (3 is within the window's highest, so wait it out).
    metric.set(0);
    prometheus.spawn();
    prometheus.wait_value(QUEUE, 0.0);
    wait_replicas(cluster, &ns, 1, &operator);
    assert!(!events(cluster, &ns, "AutoscalingRecovered").is_empty());
    let _ = cluster.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Reaction time from the metric crossing its threshold to the new count being written, at
/// poll intervals of 1 s and 5 s. The baseline is the time Prometheus itself takes to show the
/// new value (its scrape interval is 1 s). Run with:
/// `cargo test -p ragplane-e2e --test autoscale -- --ignored --nocapture reaction_time`
#[test]
#[ignore = "benchmark; see docs/benchmarks.md"]
fn reaction_time() {
    let Some(bin) = prometheus_bin("reaction_time") else {
        return;
    };
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let ns = cluster.namespace("autoscale-bench").expect("namespace");
    let metric = QueueMetric::start();
    let prometheus = Prometheus::start(bin, metric.port, &ns, "rc");
    let operator = Operator::start(cluster, &ns).expect("operator starts");
    metric.set(0);
    prometheus.wait_value(QUEUE, 0.0);
    let trials = 8;
    for interval in [1, 5] {
        let autoscaling = format!(
            "    autoscaling:\n      minReplicas: 1\n      maxReplicas: 4\n      \
             pollingIntervalSeconds: {interval}\n      rules:\n      - {{name: queue, preset: queueDepth, targetPerReplica: 5}}\n      \
             behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n"
        );
        cluster
            .apply(&ns, &cluster_yaml(&prometheus.url(), &autoscaling))
            .expect("applies");
        wait_replicas(cluster, &ns, 1, &operator);
        let (mut scrape, mut react) = (Vec::new(), Vec::new());
        for _ in 0..trials {
            // Cross the threshold (1 replica → 4) at a random point of the poll cycle.
            std::thread::sleep(Duration::from_millis(
                (SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .subsec_millis()
                    % 1000) as u64,
            ));
            let t0 = Instant::now();
            metric.set(20);
            prometheus.wait_value(QUEUE, 20.0);
            scrape.push(t0.elapsed());
            while replicas(cluster, &ns) != 4 {
                assert!(t0.elapsed() < WAIT, "{}", operator.log_tail());
                std::thread::sleep(Duration::from_millis(20));
            }
            react.push(t0.elapsed());
            metric.set(0);
            prometheus.wait_value(QUEUE, 0.0);
            wait_replicas(cluster, &ns, 1, &operator);
        }
        let stats = |v: &mut Vec<Duration>| {
            v.sort();
            let mean = v.iter().sum::<Duration>() / v.len() as u32;
            (mean.as_secs_f64(), v[v.len() - 1].as_secs_f64())
        };
        let (scrape_mean, scrape_max) = stats(&mut scrape);
        let (react_mean, react_max) = stats(&mut react);
        println!(
            "interval {interval} s, {trials} trials: Prometheus shows the value after mean {scrape_mean:.2} s (max {scrape_max:.2}); \
             replicas written after mean {react_mean:.2} s (max {react_max:.2}); \
             goal {:.0} s; operator share mean {:.2} s",
            interval as f64 + 5.0,
            react_mean - scrape_mean
        );
        assert!(
            react_max <= interval as f64 + 5.0,
            "reaction {react_max:.2} s exceeds one interval plus 5 s"
        );
    }
    let _ = cluster.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The API server applies the CEL rules of `autoscaling` (no Prometheus needed).
#[test]
fn invalid_autoscaling_is_rejected_with_the_cel_message() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let ns = cluster.namespace("autoscale-cel").expect("namespace");
    for (autoscaling, message) in [
        (
            "{minReplicas: 1, maxReplicas: 3, cpuUtilization: 70, rules: [{name: q, query: up, targetPerReplica: 1}]}",
            "autoscaling.rules cannot be combined with cpuUtilization or memoryUtilization",
        ),
        (
            "{minReplicas: 0, maxReplicas: 3, rules: [{name: q, query: up, preset: queueDepth, targetPerReplica: 1}]}",
            "exactly one of query or preset must be set",
        ),
        (
            "{minReplicas: 0, maxReplicas: 3, rules: [{name: q, query: up, targetPerReplica: 1}], fallback: {onFailure: static}}",
            "fallback.replicas is required when onFailure is static",
        ),
        (
            "{minReplicas: 1, maxReplicas: 3, rules: [{name: q, query: up, targetPerReplica: 1}], fallback: {onFailure: static, replicas: 5}}",
            "autoscaling.fallback.replicas must lie within minReplicas and maxReplicas",
        ),
        (
            "{minReplicas: 0, maxReplicas: 3, memoryUtilization: 80}",
            "autoscaling.minReplicas must be at least 1 with cpuUtilization or memoryUtilization",
        ),
    ] {
        let yaml = format!(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {{name: bad}}\nspec:\n  redis: {{urlSecretRef: {{name: redis, key: url}}}}\n  \
             workers: [{{name: w, queues: [documents], autoscaling: {autoscaling}}}]\n"
        );
        let err = cluster
            .apply(&ns, &yaml)
            .expect_err("the API server rejects it");
        assert!(format!("{err:#}").contains(message), "{message}: {err:#}");
    }
    let _ = cluster.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
