//! Every series the chart's alert rules and Grafana dashboard name exists on a running data
//! plane and operator, so no alert or panel waits on a metric that was renamed or never
//! exported.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use std::collections::{BTreeMap, BTreeSet};

use ragplane_e2e::cluster::{self, poll_until, Operator};
use ragplane_e2e::{model_available, repo_root, service, Server};

/// Series that other exporters provide (kube-state-metrics, postgres_exporter).
const EXTERNAL: &[&str] = &[
    "kube_deployment_spec_replicas",
    "kube_deployment_status_replicas_available",
    "pg_replication_lag_seconds",
];

/// Every `ragplane_*`, `kube_*` and `pg_*` name in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["ragplane_", "kube_", "pg_"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().next_back();
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.insert(tail[..end].to_owned());
            }
            rest = &tail[end..];
        }
    }
    out
}

/// The names of the samples in a Prometheus text exposition.
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn scrape(url: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sf", &format!("{url}/metrics")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A data plane on `data` that generates with the test Ollama server and has ingested the
/// examples; `None` (after a SKIPPED line) without that server.
fn serving_examples(data: &std::path::Path, extra_env: &[(&str, &str)]) -> Option<Server> {
    let ollama = service("RAGPLANE_TEST_OLLAMA_URL", "observability")?;
    let model = service("RAGPLANE_TEST_LLM_MODEL", "observability")?;
    let mut env = vec![
        ("RAGPLANE_GENERATOR", "ollama"),
        ("RAGPLANE_GENERATOR_URL", ollama.as_str()),
        ("RAGPLANE_GENERATOR_MODEL", model.as_str()),
    ];
    env.extend_from_slice(extra_env);
    let server = Server::start(data, None, &env).unwrap();
    let corpus = repo_root().join("examples/corpus");
    server
        .cli(&[
            "ingest",
            "--collection",
            "examples",
            corpus.to_str().unwrap(),
        ])
        .unwrap();
    Some(server)
}

#[test]
fn every_series_the_rules_and_dashboard_name_exists() {
    let chart = repo_root().join("charts/ragplane");
    let mut wanted = BTreeSet::new();
    for file in [
        chart.join("templates/prometheusrule.yaml"),
        chart.join("dashboards/ragplane.json"),
    ] {
        wanted.extend(names_in(&std::fs::read_to_string(file).unwrap()));
    }
    wanted.retain(|n| !EXTERNAL.contains(&n.as_str()));
    assert!(wanted.len() >= 8, "{wanted:?}");

    if !model_available() {
        return;
    }
    let Some(cluster) = cluster::shared() else {
        return;
    };
    // A data plane with a generation server, after an ingest and a search, as it runs.
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = serving_examples(&dir.path().join("data"), &[]) else {
        return;
    };
    server
        .cli(&["search", "--collection", "examples", "lighthouse range"])
        .unwrap();
    let mut seen = BTreeSet::new();
    poll_until(
        std::time::Duration::from_secs(30),
        "the data plane's series",
        || {
            seen = exposed(&scrape(&server.url));
            seen.contains("ragplane_llm_endpoint_healthy") && seen.contains("ragplane_queue_depth")
        },
        || server.log_tail(),
    );

    // An operator that has reconciled.
    let ns = cluster.namespace("obs").unwrap();
    let operator = Operator::start(cluster, &ns).unwrap();
    cluster
        .apply(
            &ns,
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: obs}\nspec: {}\n",
        )
        .unwrap();
    poll_until(
        std::time::Duration::from_secs(60),
        "a RagCluster reconcile",
        || {
            operator.metric(
                "ragplane_operator_reconciles_total",
                &["kind=\"RagCluster\""],
            ) >= 1.0
        },
        || operator.log_tail(),
    );
    seen.extend(exposed(&scrape(&operator.metrics_url)));

    let missing: Vec<&String> = wanted.iter().filter(|n| !seen.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "named by the rules or the dashboard, exported by nothing: {missing:?}"
    );
    server.stop().unwrap();
}

/// One JSON line per search and per answer under the target `ragplane::query_log`, with the
/// request's id, and for a streamed answer the tokens it used.
#[test]
fn every_query_writes_one_structured_log_line() {
    if !model_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let extra = [
        ("RAGPLANE__TELEMETRY__LOG_FORMAT", "json"),
        ("RAGPLANE__GENERATION__MAX_TOKENS", "16"),
    ];
    let Some(mut server) = serving_examples(&data, &extra) else {
        return;
    };
    // A request through curl, returning its x-request-id.
    let post = |path: &str, body: &str| -> String {
        let out = std::process::Command::new("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null", "-X", "POST"])
            .args([
                "-H",
                &format!("Authorization: Bearer {}", ragplane_e2e::ADMIN_KEY),
            ])
            .args(["-H", "content-type: application/json", "-d", body])
            .arg(format!("{}{path}", server.url))
            .output()
            .unwrap();
        let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
        headers
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id:"))
            .map(|v| v.trim().to_owned())
            .expect("an x-request-id header")
    };
    let body = r#"{"collection": "examples", "query": "How far can the Skerry Point light be seen?", "top_k": 3}"#;
    let search_id = post("/v1/search", body);
    let streamed = body.replacen('{', r#"{"stream": true, "#, 1);
    let query_id = post("/v1/query", &streamed);
    let left_id = "e2e-left-midway";
    hang_up_after_the_first_delta(&server.url, left_id, &streamed);
    let log = data.with_extension("log");
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "ragplane::query_log")
            .collect()
    };
    poll_until(
        std::time::Duration::from_secs(30),
        "three query log lines",
        || lines().len() >= 3,
        || server.log_tail(),
    );
    let all = lines();
    let of = |id: &str| {
        all.iter()
            .find(|v| v["fields"]["query_id"] == id)
            .unwrap_or_else(|| panic!("no line for {id}: {all:#?}"))["fields"]
            .clone()
    };
    let search = of(&search_id);
    assert_eq!(search["kind"], "search");
    assert_eq!(search["collection"], "examples");
    assert!(
        ["dense", "keyword", "hybrid"].contains(&search["mode"].as_str().unwrap()),
        "{search}"
    );
    assert_eq!(search["tenant"].as_str().map(str::is_empty), Some(false));
    assert_eq!(search["hits"], 3);
    assert!(search["documents"].as_u64().unwrap() >= 1);
    assert!(search["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(search["cache"], "miss", "{search}");
    assert_eq!(search["outcome"], "ok");
    let query = of(&query_id);
    assert_eq!(query["kind"], "query");
    // The same retrieval again: the result cache serves it.
    assert_eq!(query["cache"], "hit", "{query}");
    assert!(query["completion_tokens"].as_u64().unwrap() >= 1, "{query}");
    assert!(query["prompt_tokens"].as_u64().unwrap() >= 1, "{query}");
    // The answer whose client hung up midway: its retrieval, and the deltas it was sent.
    let left = of(left_id);
    assert_eq!(left["kind"], "query", "{left}");
    assert_eq!(left["outcome"], "abandoned", "{left}");
    assert_eq!(left["cache"], "hit", "{left}");
    assert_eq!(left["hits"], 3, "{left}");
    assert!(left["completion_tokens"].as_u64().unwrap() >= 1, "{left}");
    assert_eq!(lines().len(), 3, "one line per query");
    server.stop().unwrap();
}

/// Posts `body` to `/v1/query` over a raw connection as request `id`, reads the stream to its
/// first `delta` event and closes the connection, as a closed browser tab would.
fn hang_up_after_the_first_delta(url: &str, id: &str, body: &str) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        c,
        "POST /v1/query HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         x-request-id: {id}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        ragplane_e2e::ADMIN_KEY,
        body.len()
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: delta") {
        let n = c.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before a delta: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

/// A trace as Jaeger's query API returns it, once it holds a span named `until`.
fn jaeger_trace(query_url: &str, trace_id: &str, until: &str) -> serde_json::Value {
    let fetch = || -> Option<serde_json::Value> {
        let out = std::process::Command::new("curl")
            .args(["-sf", &format!("{query_url}/api/traces/{trace_id}")])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(v["data"][0].clone())
    };
    let has = |t: &serde_json::Value| {
        t["spans"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["operationName"] == until))
    };
    poll_until(
        std::time::Duration::from_secs(30),
        &format!("a {until:?} span in Jaeger's trace {trace_id}"),
        || fetch().is_some_and(|t| has(&t)),
        || format!("{:#}", fetch().unwrap_or_default()),
    );
    fetch().unwrap_or_default()
}

/// One span of a Jaeger trace, its tags flattened to text.
struct JaegerSpan {
    name: String,
    id: String,
    parent: Option<String>,
    tags: BTreeMap<String, String>,
}

/// The spans of a Jaeger trace.
struct JaegerSpans(Vec<JaegerSpan>);

impl JaegerSpans {
    fn of(trace: &serde_json::Value) -> Self {
        let spans = trace["spans"].as_array().cloned().unwrap_or_default();
        Self(
            spans
                .iter()
                .map(|s| {
                    let parent = s["references"].as_array().and_then(|r| {
                        r.iter()
                            .find(|r| r["refType"] == "CHILD_OF")
                            .and_then(|r| r["spanID"].as_str().map(str::to_owned))
                    });
                    let tags = s["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| {
                            let v = match &t["value"] {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            (t["key"].as_str().unwrap_or_default().to_owned(), v)
                        })
                        .collect();
                    JaegerSpan {
                        name: s["operationName"].as_str().unwrap_or_default().to_owned(),
                        id: s["spanID"].as_str().unwrap_or_default().to_owned(),
                        parent,
                        tags,
                    }
                })
                .collect(),
        )
    }

    /// The first span named `name`: (span id, parent span id, tags).
    fn one(&self, name: &str) -> (&str, Option<&str>, &BTreeMap<String, String>) {
        let s = self.0.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no {name:?} span among {:?}",
                self.0.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
        (&s.id, s.parent.as_deref(), &s.tags)
    }
}

/// Traces reach a real Jaeger over OTLP: an upload's trace holds the worker's spans, a
/// streamed answer's trace holds the embedding, the search and the generation with their
/// attributes, the log line of a request names its trace, and the operator traces each
/// reconcile. The data plane exports by gRPC, the operator by HTTP (`http/protobuf`), and the
/// operator's reconcile latency names a reconcile's trace as exemplar.
#[test]
fn traces_reach_a_real_jaeger() {
    if !model_available() {
        return;
    }
    let (Some(otlp), Some(otlp_http), Some(query)) = (
        service(
            "RAGPLANE_TEST_JAEGER_OTLP_URL",
            "traces_reach_a_real_jaeger",
        ),
        service(
            "RAGPLANE_TEST_JAEGER_OTLP_HTTP_URL",
            "traces_reach_a_real_jaeger",
        ),
        service(
            "RAGPLANE_TEST_JAEGER_QUERY_URL",
            "traces_reach_a_real_jaeger",
        ),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let extra = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ("RAGPLANE__TELEMETRY__LOG_FORMAT", "json"),
    ];
    let Some(mut server) = serving_examples(&data, &extra) else {
        return;
    };
    let uid = format!("{:016x}", std::process::id() as u64 * 7919 + 1);
    let traceparent = |n: u8| {
        let trace = format!("{:02x}{uid}{:014x}", n, u64::from(n));
        (format!("00-{trace}-00f067aa0ba902b7-01"), trace)
    };
    let post = |path: &str, tp: &str, id: &str, body: &str| -> String {
        let out = std::process::Command::new("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null", "-X", "POST"])
            .args([
                "-H",
                &format!("Authorization: Bearer {}", ragplane_e2e::ADMIN_KEY),
            ])
            .args(["-H", &format!("traceparent: {tp}")])
            .args(["-H", &format!("x-request-id: {id}")])
            .args(["-H", "content-type: application/json", "-d", body])
            .arg(format!("{}{path}", server.url))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_lowercase()
    };

    // The upload: the request, then the worker's spans, in one trace.
    let (tp, upload_trace) = traceparent(1);
    let head = post(
        "/v1/collections/examples/documents",
        &tp,
        "e2e-trace-upload",
        r#"{"title": "beacon", "text": "The Varne lightvessel shows a red light every 20 seconds."}"#,
    );
    assert!(head.starts_with("http/1.1 202"), "{head}");
    let spans = JaegerSpans::of(&jaeger_trace(&query, &upload_trace, "vector.upsert"));
    let (http, http_parent, tags) = spans.one("POST /v1/collections/{collection}/documents");
    assert_eq!(http_parent, Some("00f067aa0ba902b7"), "the caller's span");
    assert_eq!(tags["request_id"], "e2e-trace-upload");
    let (job, job_parent, tags) = spans.one("job");
    assert!(job_parent.is_some(), "the job joins the upload's trace");
    assert_eq!(tags["queue"], "documents");
    let (ingest, ingest_parent, _) = spans.one("ingest");
    assert_eq!(ingest_parent, Some(job));
    for name in ["parse", "chunk", "embed", "vector.upsert"] {
        assert_eq!(spans.one(name).1, Some(ingest), "{name} under ingest");
    }
    assert_ne!(http, job);

    // A streamed answer: embedding, search and generation under the request.
    let (tp, query_trace) = traceparent(2);
    let head = post(
        "/v1/query",
        &tp,
        "e2e-trace-query",
        r#"{"collection": "examples", "query": "How far can the Skerry Point light be seen?", "stream": true}"#,
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("x-request-id: e2e-trace-query"), "{head}");
    let trace = jaeger_trace(&query, &query_trace, "llm.generate");
    let service_name = trace["processes"]
        .as_object()
        .and_then(|p| p.values().next())
        .map(|p| p["serviceName"].clone());
    assert_eq!(service_name, Some(serde_json::json!("ragplane")));
    let spans = JaegerSpans::of(&trace);
    let (http, _, tags) = spans.one("POST /v1/query");
    assert_eq!(tags["http.route"], "/v1/query");
    assert_eq!(tags["http.response.status_code"], "200");
    let (search, search_parent, tags) = spans.one("search");
    assert_eq!(search_parent, Some(http));
    assert_eq!(tags["collection"], "examples");
    let (_, embed_parent, tags) = spans.one("embed");
    assert_eq!(embed_parent, Some(search));
    assert_eq!(tags["class"], "interactive");
    assert!(tags.contains_key("queue_wait_ms"), "{tags:?}");
    let (_, index_parent, tags) = spans.one("vector.search");
    assert_eq!(index_parent, Some(search));
    assert_eq!(tags["backend"], "embedded");
    let (_, _, tags) = spans.one("llm.generate");
    assert_eq!(
        tags["model"],
        std::env::var("RAGPLANE_TEST_LLM_MODEL").unwrap()
    );
    assert!(
        tags["endpoint"].starts_with("http://127.0.0.1:"),
        "{tags:?}"
    );
    assert!(tags["ttft_ms"].parse::<f64>().unwrap() > 0.0, "{tags:?}");
    assert!(
        tags["completion_tokens"].parse::<u64>().unwrap() >= 1,
        "{tags:?}"
    );
    assert!(
        tags["prompt_tokens"].parse::<u64>().unwrap() > 0,
        "{tags:?}"
    );

    // The request's log lines name its id and its trace.
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["target"] == "ragplane::query_log" && v["fields"]["query_id"] == "e2e-trace-query"
        })
        .unwrap_or_else(|| {
            panic!(
                "no query log line for e2e-trace-query:\n{}",
                server.log_tail()
            )
        });
    let request_span = &line["spans"][0];
    assert_eq!(request_span["request_id"], "e2e-trace-query", "{line}");
    assert_eq!(request_span["trace_id"], query_trace.as_str(), "{line}");
    // The worker's lines name the trace of the upload that queued the job.
    let done = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["fields"]["message"] == "job succeeded"
                && v["spans"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["trace_id"] == upload_trace.as_str()))
        });
    assert!(
        done.is_some(),
        "no \"job succeeded\" line in the upload's trace {upload_trace}:\n{}",
        server.log_tail()
    );
    server.stop().unwrap();

    // The operator, exporting by OTLP/HTTP: one span per reconcile, with the object's kind,
    // namespace and name.
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let ns = cluster.namespace("traces").unwrap();
    let operator = Operator::start_with_env(
        cluster,
        &ns,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_http.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ],
    )
    .unwrap();
    cluster
        .apply(
            &ns,
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: traced}\nspec: {}\n",
        )
        .unwrap();
    let url = format!("{query}/api/traces?service=ragplane-operator&operation=reconcile&limit=50");
    poll_until(
        std::time::Duration::from_secs(60),
        "a reconcile span of RagCluster traced in Jaeger",
        || {
            let out = std::process::Command::new("curl")
                .args(["-sf", &url])
                .output();
            let v: serde_json::Value = out
                .ok()
                .and_then(|o| serde_json::from_slice(&o.stdout).ok())
                .unwrap_or_default();
            v["data"].as_array().into_iter().flatten().any(|t| {
                JaegerSpans::of(t).0.iter().any(|s| {
                    s.name == "reconcile"
                        && s.tags.get("kind").map(String::as_str) == Some("RagCluster")
                        && s.tags.get("namespace") == Some(&ns)
                        && s.tags.get("name").map(String::as_str) == Some("traced")
                })
            })
        },
        || operator.log_tail(),
    );
    // The reconcile latency names a reconcile's trace as exemplar, and Jaeger holds that trace.
    let curl_json = |url: &str| -> serde_json::Value {
        std::process::Command::new("curl")
            .args(["-sf", url])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or_default()
    };
    let exemplar = std::cell::RefCell::new(None::<String>);
    poll_until(
        std::time::Duration::from_secs(60),
        "a reconcile-latency exemplar whose trace Jaeger holds as a RagCluster reconcile",
        || {
            let found = scrape(&operator.metrics_url)
                .lines()
                .filter(|l| {
                    l.starts_with("ragplane_operator_reconcile_duration_seconds_bucket{")
                        && l.contains("kind=\"RagCluster\"")
                })
                .find_map(|l| l.split_once("# {trace_id=\"")?.1.split_once('"'))
                .map(|(trace, _)| trace.to_owned());
            *exemplar.borrow_mut() = found.clone();
            found.is_some_and(|trace| {
                let v = curl_json(&format!("{query}/api/traces/{trace}"));
                v["data"].as_array().into_iter().flatten().any(|t| {
                    JaegerSpans::of(t).0.iter().any(|s| {
                        s.name == "reconcile"
                            && s.tags.get("kind").map(String::as_str) == Some("RagCluster")
                    })
                })
            })
        },
        || format!("exemplar {:?}; {}", exemplar.borrow(), operator.log_tail()),
    );
}
