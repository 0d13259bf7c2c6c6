//! One Deployment per worker pool.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::labels;
use crate::rag_cluster::validate::{
    ValidatedCluster, WorkerPool, CONFIG_DIR, CONFIG_FILE, DRAIN_MARGIN_SECONDS,
};

/// Name of the Deployment of pool `pool` in cluster `cluster`.
pub fn worker_name(cluster: &str, pool: &str) -> String {
    format!("{cluster}-worker-{pool}")
}

/// `<name>-worker-<pool>`: data-plane processes that consume the pool's queues.
pub fn build_worker_deployment(c: &ValidatedCluster, w: &WorkerPool) -> Deployment {
    let mut selector = labels::selector("ragplane", &c.name, "worker");
    selector.insert(labels::WORKER_POOL.into(), w.name.clone());
    let mut object_labels = labels::object("ragplane", &c.name, "worker", &c.version);
    object_labels.insert(labels::WORKER_POOL.into(), w.name.clone());

    let mut extra = vec![
        super::env("RAGPLANE__WORKERS__ENABLED", "true"),
        // Unique among running pods and kept across container restarts: a worker killed and
        // restarted in place requeues the jobs it held as it starts.
        super::env_from_field("RAGPLANE__WORKERS__INSTANCE", "metadata.name"),
    ];
    if let Some(n) = w.concurrency {
        extra.push(super::env("RAGPLANE__WORKERS__CONCURRENCY", n.to_string()));
    }
    // The pool's grace period covers its longest job; the process drains within it.
    extra.push(super::env(
        "RAGPLANE__SERVER__SHUTDOWN_GRACE_SECS",
        (w.termination_grace_seconds - DRAIN_MARGIN_SECONDS)
            .max(1)
            .to_string(),
    ));
    let node_selector = (!w.node_selector.is_empty()).then(|| w.node_selector.clone());
    let mut pod = super::data_plane_pod(c, extra, w.component.resources.clone(), node_selector);
    pod.termination_grace_period_seconds = Some(w.termination_grace_seconds);
    // `ragplane worker` takes jobs from the pool's queues only, and on SIGTERM stops claiming
    // and finishes the jobs it holds.
    if let Some(container) = pod.containers.first_mut() {
        container.args = Some(vec![
            "worker".into(),
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
            "--queues".into(),
            w.queues.join(","),
        ]);
    }

    let mut meta = super::meta(c, worker_name(&c.name, &w.name), "worker");
    meta.labels = Some(object_labels.clone());
    meta.annotations = Some(BTreeMap::from([(
        "ragplane.dev/queues".to_owned(),
        w.queues.join(","),
    )]));
    Deployment {
        metadata: meta,
        spec: DeploymentSpec {
            replicas: w.component.replicas,
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(object_labels),
                    annotations: Some(super::pod_annotations(c)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag_cluster::build::test_support::validated;

    #[test]
    fn each_pool_gets_its_own_deployment() {
        let c = validated(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: prod}
spec:
  workers:
    - {name: ingest, queues: [documents], replicas: 4, concurrency: 8, maxJobSeconds: 600}
    - {name: bulk, queues: [documents], nodeSelector: {gpu: "true"}, autoscaling: {minReplicas: 1, maxReplicas: 5}}
  redis: {urlSecretRef: {name: redis, key: url}}
"#,
        );
        let built = crate::rag_cluster::build::build(&c);
        assert_eq!(built.workers.len(), 2);
        let ingest = &built.workers[0];
        assert_eq!(ingest.metadata.name.as_deref(), Some("prod-worker-ingest"));
        let spec = &ingest.spec;
        assert_eq!(spec.replicas, Some(4));
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap()[labels::WORKER_POOL],
            "ingest"
        );
        let env = spec.template.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        assert!(
            env.iter()
                .any(|e| e.name == "RAGPLANE__WORKERS__CONCURRENCY"
                    && e.value.as_deref() == Some("8"))
        );
        // The workers are named after their pod, so a restarted container recovers its jobs.
        let instance = env
            .iter()
            .find(|e| e.name == "RAGPLANE__WORKERS__INSTANCE")
            .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(instance, Some("metadata.name"));
        let bulk = &built.workers[1].spec;
        assert_eq!(bulk.replicas, None, "autoscaled pool leaves replicas alone");
        let grace = |d: &Deployment| {
            d.spec
                .template
                .spec
                .as_ref()
                .unwrap()
                .termination_grace_period_seconds
        };
        assert_eq!(
            grace(ingest),
            Some(600 + 15),
            "longest job plus the drain margin"
        );
        assert_eq!(
            grace(&built.workers[1]),
            Some(300 + 15),
            "the default longest job"
        );
        assert_eq!(
            bulk.template
                .spec
                .as_ref()
                .unwrap()
                .node_selector
                .as_ref()
                .unwrap()["gpu"],
            "true"
        );
    }
}
