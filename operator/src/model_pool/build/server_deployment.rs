//! The Deployment of an OpenAI-compatible or embedding model server.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::cache_pvc::cache_claim_name;
use crate::crd::model_pool::{EmbeddingServer, ModelPoolKind};
use crate::model_pool::validate::ValidatedPool;
use crate::rag_cluster::build::env;
use crate::rag_cluster::validate::IMAGE_MODELS_DIR;

/// Where the Hugging Face cache lives inside the pod.
const CACHE_DIR: &str = "/data";

/// `<pool>`: the servers download the model at start (text-embeddings-inference, vLLM) or load
/// it from the image (`ragplane embed-server`), and only then pass the readiness probe.
pub fn build_server_deployment(p: &ValidatedPool) -> Deployment {
    let port = p.port.to_string();
    // Validation leaves `Tei` on every pool but an embedding one.
    let ragplane = p.server == EmbeddingServer::Ragplane;
    let mut args: Vec<String> = match p.kind {
        ModelPoolKind::Embedding if ragplane => {
            let mut a: Vec<String> = vec![
                "embed-server".into(),
                "--listen".into(),
                format!("0.0.0.0:{port}"),
                "--model-dir".into(),
                format!("{IMAGE_MODELS_DIR}/{}", p.model),
            ];
            // With GPUs the pod fails rather than serve slowly from the CPU.
            if p.gpus > 0 {
                a.push("--require-gpu".into());
            } else {
                a.extend(["--devices".into(), "cpu".into()]);
            }
            a
        }
        ModelPoolKind::Embedding => {
            vec!["--model-id".into(), p.model.clone(), "--port".into(), port]
        }
        ModelPoolKind::Openai | ModelPoolKind::Ollama => {
            vec!["--model".into(), p.model.clone(), "--port".into(), port]
        }
    };
    args.extend(p.args.iter().cloned());
    let cache_volume = match &p.cache {
        Some(_) => Volume {
            name: "model-cache".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: cache_claim_name(&p.name),
                read_only: None,
            }),
            ..Volume::default()
        },
        None => Volume {
            name: "model-cache".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    };
    // `ragplane embed-server` binds once the model is loaded and answers `/readyz` while its
    // inference threads take requests; the other servers answer `/health`.
    let health_path = if ragplane { "/readyz" } else { "/health" };
    let health = |period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(health_path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    Deployment {
        metadata: super::meta(p, p.name.clone()),
        spec: DeploymentSpec {
            replicas: p.replicas,
            selector: LabelSelector {
                match_labels: Some(super::selector(p)),
                ..LabelSelector::default()
            },
            // A single-writer cache claim cannot be mounted by old and new pods at once.
            strategy: p
                .cache
                .as_ref()
                .filter(|_| p.desired <= 1)
                .map(|_| DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    rolling_update: None,
                }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(super::pod_labels(p)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "server".into(),
                        image: Some(p.image.clone()),
                        args: Some(args),
                        env: Some(vec![
                            env("HF_HOME", CACHE_DIR),
                            env("HUGGINGFACE_HUB_CACHE", CACHE_DIR),
                        ]),
                        ports: Some(vec![ContainerPort {
                            name: Some("http".into()),
                            container_port: p.port,
                            protocol: Some("TCP".into()),
                            ..ContainerPort::default()
                        }]),
                        // Downloading a model can take long: the startup probe allows 30 min.
                        startup_probe: Some(health(10, 180)),
                        readiness_probe: Some(health(5, 3)),
                        resources: p.resources.clone(),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "model-cache".into(),
                            mount_path: CACHE_DIR.into(),
                            ..VolumeMount::default()
                        }]),
                        security_context: Some(crate::security::restricted_container(false)),
                        ..Container::default()
                    }],
                    volumes: Some(vec![cache_volume]),
                    security_context: Some(crate::security::restricted_pod(
                        crate::security::DATA_PLANE_UID,
                    )),
                    node_selector: (!p.node_selector.is_empty()).then(|| p.node_selector.clone()),
                    tolerations: (!p.tolerations.is_empty()).then(|| p.tolerations.clone()),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use crate::model_pool::build::{build, Workload};
    use crate::model_pool::validate::validated;

    #[test]
    fn embedding_pool_is_a_deployment_with_a_cache_claim() {
        let objects = build(&validated(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: ModelPool
metadata: {name: embed}
spec:
  kind: embedding
  model: BAAI/bge-small-en-v1.5
  modelCache: {size: 5Gi}
  args: [--max-batch-tokens, "16384"]
"#,
        ));
        let Workload::Deployment(d, Some(pvc)) = objects.workload else {
            panic!("embedding pools are Deployments with a cache claim")
        };
        assert_eq!(pvc.metadata.name.as_deref(), Some("embed-model-cache"));
        assert_eq!(pvc.spec.unwrap().access_modes.unwrap(), ["ReadWriteOnce"]);
        let spec = d.spec;
        assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.args.as_deref().unwrap(),
            [
                "--model-id",
                "BAAI/bge-small-en-v1.5",
                "--port",
                "8080",
                "--max-batch-tokens",
                "16384"
            ]
        );
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/health")
        );
        assert_eq!(
            pod.volumes.unwrap()[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "embed-model-cache"
        );
        assert_eq!(objects.service.spec.unwrap().ports.unwrap()[0].port, 8080);
    }

    #[test]
    fn a_ragplane_embedding_pool_runs_embed_server_from_the_data_plane_image() {
        let pool = |gpu: &str| {
            validated(&format!(
                "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {{name: embed}}\n\
                 spec: {{kind: embedding, server: ragplane, model: all-minilm-l6-v2-int8{gpu}}}\n"
            ))
        };
        let cpu = pool("");
        assert_eq!(
            cpu.image,
            format!("ghcr.io/ragplane/ragplane:{}", env!("CARGO_PKG_VERSION"))
        );
        let Workload::Deployment(d, None) = build(&cpu).workload else {
            panic!("a Deployment without a cache claim")
        };
        let c = &d.spec.template.spec.unwrap().containers[0];
        assert_eq!(
            c.args.as_deref().unwrap(),
            [
                "embed-server",
                "--listen",
                "0.0.0.0:8080",
                "--model-dir",
                "/opt/ragplane/models/all-minilm-l6-v2-int8",
                "--devices",
                "cpu"
            ]
        );
        let probe = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(probe.path.as_deref(), Some("/readyz"));
        let Workload::Deployment(d, None) = build(&pool(", gpu: {count: 1}")).workload else {
            panic!("a Deployment")
        };
        let args = d.spec.template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        assert_eq!(args.last().map(String::as_str), Some("--require-gpu"));
    }
}
