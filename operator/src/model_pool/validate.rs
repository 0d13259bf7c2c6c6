//! Turns a ModelPool into a [`ValidatedPool`]: images, ports and GPU resources are settled here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::context::DataPlaneDefaults;
use crate::crd::model_pool::{EmbeddingServer, ModelPool, ModelPoolKind};
use crate::rag_cluster::validate::IMAGE_MODELS_DIR;

/// Default Ollama image.
pub const OLLAMA_IMAGE: &str = "docker.io/ollama/ollama:0.12.6";
/// Default OpenAI-compatible server image.
pub const VLLM_IMAGE: &str = "docker.io/vllm/vllm-openai:v0.11.0";
/// Default embedding server image on CPU.
pub const TEI_CPU_IMAGE: &str = "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8";
/// Default embedding server image on GPU.
pub const TEI_GPU_IMAGE: &str = "ghcr.io/huggingface/text-embeddings-inference:1.8";

/// Why a ModelPool cannot be turned into objects.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The spec is inconsistent.
    #[error("spec.{field}: {message}")]
    Field {
        /// Path below `spec`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The autoscaling spec is inconsistent.
    #[error("spec.{field}: {message}")]
    Autoscaling {
        /// Path below `spec`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The resource lacks metadata the API server always sets.
    #[error("the resource has no {0}")]
    Metadata(&'static str),
}

/// A ModelPool with every default applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedPool {
    /// Resource name; name of the workload and the Service.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Controller owner reference.
    pub owner: OwnerReference,
    /// Server kind.
    pub kind: ModelPoolKind,
    /// The embedding server (`Tei` for the other kinds, where it is not read).
    pub server: EmbeddingServer,
    /// Model.
    pub model: String,
    /// Server image.
    pub image: String,
    /// Extra arguments.
    pub args: Vec<String>,
    /// Replicas to write; `None` when autoscaling owns the count.
    pub replicas: Option<i32>,
    /// Replicas expected for readiness.
    pub desired: i32,
    /// Who writes the replica count.
    pub scaling: crate::autoscale::Scaling,
    /// GPUs per replica.
    pub gpus: i32,
    /// Resources with the GPU limit merged in.
    pub resources: Option<ResourceRequirements>,
    /// Node selector.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// Model cache volume.
    pub cache: Option<crate::crd::model_pool::ModelCacheSpec>,
    /// Pull and load before Ready.
    pub warmup: bool,
    /// Port the server listens on.
    pub port: i32,
}

/// Port a pool of `kind` serves on.
pub fn port(kind: ModelPoolKind) -> i32 {
    match kind {
        ModelPoolKind::Ollama => 11434,
        ModelPoolKind::Openai => 8000,
        ModelPoolKind::Embedding => 8080,
    }
}

/// In-cluster URL of a pool's Service.
pub fn service_url(name: &str, namespace: &str, kind: ModelPoolKind) -> String {
    format!("http://{name}.{namespace}.svc:{}", port(kind))
}

/// Validates `pool`; a `ragplane` embedding server takes the data-plane image of `defaults`.
pub fn validate(
    pool: &ModelPool,
    defaults: &DataPlaneDefaults,
) -> Result<ValidatedPool, ValidationError> {
    let name = pool
        .metadata
        .name
        .clone()
        .ok_or(ValidationError::Metadata("name"))?;
    let namespace = pool
        .namespace()
        .ok_or(ValidationError::Metadata("namespace"))?;
    let owner = pool
        .controller_owner_ref(&())
        .ok_or(ValidationError::Metadata("uid"))?;
    let spec = &pool.spec;
    let gpus = spec.gpu.as_ref().map_or(0, |g| g.count);
    if gpus < 0 {
        return Err(ValidationError::Field {
            field: "gpu.count",
            message: "must be greater than or equal to 0".into(),
        });
    }
    let mut resources = spec.resources.clone();
    if let Some(gpu) = spec.gpu.as_ref().filter(|g| g.count > 0) {
        let r = resources.get_or_insert_with(ResourceRequirements::default);
        r.limits
            .get_or_insert_with(BTreeMap::new)
            .insert(gpu.resource_name.clone(), Quantity(gpu.count.to_string()));
    }
    if spec.dimension.is_some() && spec.kind != ModelPoolKind::Embedding {
        return Err(ValidationError::Field {
            field: "dimension",
            message: "only an embedding pool makes vectors".into(),
        });
    }
    let server = match spec.kind {
        ModelPoolKind::Embedding => spec.server.unwrap_or_default(),
        _ if spec.server.is_some() => {
            return Err(ValidationError::Field {
                field: "server",
                message: "only an embedding pool chooses its server".into(),
            })
        }
        _ => EmbeddingServer::Tei,
    };
    // `ragplane embed-server` reads the model from a directory of the image, named by `model`.
    if server == EmbeddingServer::Ragplane
        && (spec.model.contains('/') || spec.model.starts_with('.'))
    {
        return Err(ValidationError::Field {
            field: "model",
            message: format!(
                "{:?} is not a model directory name: a ragplane embedding server serves \
                 {IMAGE_MODELS_DIR}/<model> of its image, for example all-minilm-l6-v2-int8",
                spec.model
            ),
        });
    }
    let image = spec.image.clone().unwrap_or_else(|| match spec.kind {
        ModelPoolKind::Ollama => OLLAMA_IMAGE.to_owned(),
        ModelPoolKind::Openai => VLLM_IMAGE.to_owned(),
        ModelPoolKind::Embedding => match server {
            EmbeddingServer::Ragplane => format!("{}:{}", defaults.image, defaults.version),
            EmbeddingServer::Tei if gpus > 0 => TEI_GPU_IMAGE.to_owned(),
            EmbeddingServer::Tei => TEI_CPU_IMAGE.to_owned(),
        },
    });
    let scaling = crate::autoscale::scaling(
        spec.replicas,
        spec.autoscaling.as_ref(),
        crate::autoscale::presets::Scope::ModelPool {
            namespace: &namespace,
            name: &name,
        },
        "",
    )
    .map_err(|(field, message)| ValidationError::Autoscaling {
        field: field.trim_start_matches('.').to_owned(),
        message,
    })?;
    let (replicas, desired) = (scaling.fixed(), scaling.desired());
    Ok(ValidatedPool {
        name,
        namespace,
        owner,
        kind: spec.kind,
        server,
        model: spec.model.clone(),
        image,
        args: spec.args.clone(),
        replicas,
        desired,
        scaling,
        gpus,
        resources,
        node_selector: spec.node_selector.clone(),
        tolerations: spec.tolerations.clone(),
        cache: spec.model_cache.clone(),
        warmup: spec.warmup,
        port: port(spec.kind),
    })
}

#[cfg(test)]
pub(crate) fn validated(yaml: &str) -> ValidatedPool {
    let mut pool: ModelPool = serde_yaml::from_str(yaml).expect("valid ModelPool YAML");
    pool.metadata.uid = Some("uid-2".into());
    pool.metadata.namespace.get_or_insert_with(|| "ns".into());
    validate(&pool, &DataPlaneDefaults::new("ghcr.io/ragplane/ragplane")).expect("valid pool")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_count_becomes_a_limit() {
        let p = validated(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: ModelPool
metadata: {name: llm}
spec: {kind: ollama, model: "llama3.1:8b", gpu: {count: 2}, resources: {limits: {memory: 16Gi}}}
"#,
        );
        let limits = p.resources.unwrap().limits.unwrap();
        assert_eq!(limits["nvidia.com/gpu"].0, "2");
        assert_eq!(limits["memory"].0, "16Gi");
        assert_eq!(p.image, OLLAMA_IMAGE);
        assert_eq!(p.port, 11434);
    }

    #[test]
    fn embedding_image_follows_the_gpu() {
        let cpu = validated("apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: e}\nspec: {kind: embedding, model: m}\n");
        let gpu = validated("apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: e}\nspec: {kind: embedding, model: m, gpu: {count: 1}}\n");
        assert_eq!(
            (cpu.image.as_str(), gpu.image.as_str()),
            (TEI_CPU_IMAGE, TEI_GPU_IMAGE)
        );
    }

    #[test]
    fn the_server_choice_is_for_embedding_pools_and_names_a_model_directory() {
        let refused = |spec: &str| {
            let mut pool: ModelPool = serde_yaml::from_str(&format!(
                "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {{name: p, namespace: ns, uid: u}}\nspec: {spec}\n"
            ))
            .unwrap();
            pool.metadata.uid = Some("u".into());
            validate(&pool, &DataPlaneDefaults::new("img"))
                .unwrap_err()
                .to_string()
        };
        assert!(refused("{kind: ollama, model: m, server: ragplane}").starts_with("spec.server:"));
        let why = refused("{kind: embedding, model: BAAI/bge-small-en-v1.5, server: ragplane}");
        assert!(why.starts_with("spec.model:"), "{why}");
        assert!(why.contains("/opt/ragplane/models/<model>"), "{why}");
    }
}
