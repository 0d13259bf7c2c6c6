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
    let (Some(ollama), Some(model)) = (
        service("RAGPLANE_TEST_OLLAMA_URL", "observability"),
        service("RAGPLANE_TEST_LLM_MODEL", "observability"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        &dir.path().join("data"),
        None,
        &[
            ("RAGPLANE_GENERATOR", "ollama"),
            ("RAGPLANE_GENERATOR_URL", &ollama),
            ("RAGPLANE_GENERATOR_MODEL", &model),
        ],
    )
    .unwrap();
    let corpus = repo_root().join("examples/corpus");
    server
        .cli(&[
            "ingest",
            "--collection",
            "examples",
            corpus.to_str().unwrap(),
        ])
        .unwrap();
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
