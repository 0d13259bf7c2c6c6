//! Every series the chart's alert rules and Grafana dashboard name exists on a running data
//! plane and operator, so no alert or panel waits on a metric that was renamed or never
//! exported.

#![allow(clippy::unwrap_used)] // Tests fail loudly on the first unexpected error.

use std::collections::BTreeSet;

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
        "two query log lines",
        || lines().len() >= 2,
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
    assert_eq!(lines().len(), 2, "one line per query");
    server.stop().unwrap();
}
