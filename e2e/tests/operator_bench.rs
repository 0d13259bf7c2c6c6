//! Measurements of the operator against the real API server; `#[ignore]`d, run with
//! `cargo test --release -p ragplane-e2e --test operator_bench -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use ragplane_e2e::cluster::{self, Operator};

fn cluster_yaml(name: &str) -> String {
    format!(
        "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {{name: {name}}}\nspec:\n  api: {{replicas: 2}}\n  postgres: {{urlSecretRef: {{name: pg, key: url}}}}\n  \
         redis: {{urlSecretRef: {{name: redis, key: url}}}}\n  s3: {{bucket: docs}}\n  \
         workers: [{{name: ingest, queues: [documents], replicas: 1}}]\n"
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Time from `kubectl apply` of a RagCluster to its last child (the worker Deployment, applied
/// last) existing, one cluster at a time.
#[test]
#[ignore = "benchmark"]
fn apply_to_children_latency() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let ns = cluster.namespace("bench-latency").unwrap();
    let _operator = Operator::start(cluster, &ns).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let mut samples = Vec::new();
    for i in 0..30 {
        let name = format!("lat{i}");
        let start = Instant::now();
        cluster.apply(&ns, &cluster_yaml(&name)).unwrap();
        let worker = format!("{name}-worker-ingest");
        while cluster.get(&ns, "deployment", &worker).unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        samples.push(start.elapsed());
    }
    samples.sort();
    println!(
        "apply -> all children: n={} p50={:?} p95={:?} max={:?} (includes kubectl start-up and 20 ms polling)",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.95),
        samples[samples.len() - 1]
    );
}

/// Resident memory of the operator once it reconciled 200 RagClusters.
#[test]
#[ignore = "benchmark"]
fn memory_with_200_ragclusters() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let ns = cluster.namespace("bench-rss").unwrap();
    let operator = Operator::start(cluster, &ns).unwrap();
    let all: String = (0..200)
        .map(|i| format!("---\n{}", cluster_yaml(&format!("c{i}"))))
        .collect();
    let start = Instant::now();
    cluster.apply(&ns, &all).unwrap();
    cluster
        .wait_for(
            &ns,
            "deployment",
            "c199-worker-ingest",
            Duration::from_secs(300),
            |_| true,
        )
        .unwrap();
    loop {
        let out = cluster
            .kubectl_ok(&[
                "get",
                "-n",
                &ns,
                "ragclusters",
                "-o",
                "jsonpath={.items[*].status.api}",
            ])
            .unwrap();
        if out.split_whitespace().count() == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "not all 200 have status"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let converged = start.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    println!(
        "200 RagClusters (1,000 children) converged in {converged:?}; operator RSS {} KiB",
        operator.rss_kib().unwrap_or(0)
    );
}
