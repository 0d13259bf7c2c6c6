//! The ModelPool custom resource: a pool of model servers for generation or embeddings.

// Repeated `printcolumn(...)` arguments are how kube's derive takes several columns.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Autoscaling, ComponentAutoscalingStatus, Resources, StorageSpec};

/// Desired state of a ModelPool.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "ragplane.dev",
    version = "v1alpha1",
    kind = "ModelPool",
    plural = "modelpools",
    shortname = "mp",
    category = "ragplane",
    namespaced,
    status = "ModelPoolStatus",
    doc = "A pool of model servers (Ollama, OpenAI-compatible or embedding) behind one Service.",
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.kind"),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Replicas", type_ = "string", json_path = ".status.replicas"),
    printcolumn(
        name = "GPUs",
        type_ = "integer",
        json_path = ".spec.gpu.count",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.modelCache) == has(oldSelf.modelCache) && (!has(self.modelCache) || self.modelCache == oldSelf.modelCache)").message("modelCache is immutable after creation: a claim's size, class and access mode cannot change in place, and an Ollama pool's claims are StatefulSet templates; create a new ModelPool to change it").field_path(".modelCache"))]
#[x_kube(validation = Rule::new("!has(self.dimension) || self.kind == 'embedding'").message("dimension: only an embedding pool makes vectors; leave it out for ollama and openai pools").field_path(".dimension"))]
#[x_kube(validation = Rule::new("!has(self.server) || self.kind == 'embedding'").message("server: only an embedding pool chooses its server; leave it out for ollama and openai pools").field_path(".server"))]
#[x_kube(validation = Rule::new("self.kind == 'ollama' || !has(self.modelCache) || self.modelCache.accessMode == 'ReadWriteMany' || (self.replicas <= 1 && (!has(self.autoscaling) || self.autoscaling.maxReplicas <= 1))").message("modelCache.accessMode: with ReadWriteOnce one pod at a time mounts the shared cache claim, so an openai or embedding pool runs at most one replica; use ReadWriteMany (a storage class that supports it) for more").field_path(".modelCache.accessMode"))]
pub struct ModelPoolSpec {
    /// What serves the model: `ollama`, `openai` (vLLM, llama.cpp and the like) or `embedding`.
    pub kind: ModelPoolKind,
    /// Model name, for example `llama3.1:8b` or `BAAI/bge-small-en-v1.5`.
    #[schemars(length(min = 1))]
    pub model: String,
    /// Dimension of an `embedding` pool's vectors, which the data plane checks every answer
    /// against; 384 (all-MiniLM-L6-v2) when omitted. Only for `embedding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub dimension: Option<i32>,
    /// Which embedding server an `embedding` pool runs: `tei` (text-embeddings-inference, the
    /// default) or `ragplane` (`ragplane embed-server` from the data-plane image, serving the
    /// model directory `/opt/ragplane/models/<model>` of that image). Only for `embedding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<EmbeddingServer>,
    /// Server image; a default per kind when omitted (required for `openai`). A `ragplane`
    /// embedding server defaults to the operator's data-plane image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Extra server arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Replicas when autoscaling is off.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Prometheus-driven autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Prometheus base URL used by the autoscaling rules; the operator's `--prometheus-url` when
    /// omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_url: Option<String>,
    /// Container resources (GPUs go in `gpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// GPUs per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuSpec>,
    /// Node selector of the pool's pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pool's pods (for example for tainted GPU nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Persistent model cache, so a restarted pod does not download the model again. Immutable
    /// after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_cache: Option<ModelCacheSpec>,
    /// Pull and load the model before the pod reports Ready.
    #[serde(default = "default_true")]
    pub warmup: bool,
}

fn default_replicas() -> i32 {
    1
}

fn default_true() -> bool {
    true
}

/// A pool's model cache.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelCacheSpec {
    /// Size of the volume, for example `40Gi`.
    pub size: String,
    /// Storage class; the cluster default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Access mode of the claim that openai and embedding pools share among their replicas:
    /// `ReadWriteOnce` (the default; such a pool then runs at most one replica) or
    /// `ReadWriteMany` (needs a storage class that supports it). An Ollama pool gives each
    /// replica a `ReadWriteOnce` claim of its own and ignores this.
    #[serde(default)]
    pub access_mode: CacheAccessMode,
}

impl ModelCacheSpec {
    /// The size and class, as every claim the operator makes takes them.
    pub fn storage(&self) -> StorageSpec {
        StorageSpec {
            size: self.size.clone(),
            storage_class_name: self.storage_class_name.clone(),
        }
    }
}

/// Access mode of a shared model cache claim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CacheAccessMode {
    /// One node mounts it.
    #[default]
    ReadWriteOnce,
    /// Pods on any node mount it.
    ReadWriteMany,
}

impl CacheAccessMode {
    /// The Kubernetes name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWriteOnce => "ReadWriteOnce",
            Self::ReadWriteMany => "ReadWriteMany",
        }
    }
}

/// Kind of model server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelPoolKind {
    /// Ollama, native API on port 11434.
    #[default]
    Ollama,
    /// An OpenAI-compatible server (vLLM, llama.cpp server) on port 8000.
    Openai,
    /// A text-embeddings-inference server on port 8080.
    Embedding,
}

/// The server of an embedding pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingServer {
    /// text-embeddings-inference: `--model-id <model>` downloads the model from Hugging Face.
    #[default]
    Tei,
    /// `ragplane embed-server`, with the model and ONNX Runtime of the data-plane image.
    Ragplane,
}

/// GPUs per replica.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuSpec {
    /// GPUs per replica; 0 runs on CPU.
    #[x_kube(validation = Rule::new("self >= 0").message("gpu.count must be greater than or equal to 0"))]
    pub count: i32,
    /// Extended resource name of the GPU.
    #[serde(default = "default_gpu_resource")]
    pub resource_name: String,
}

fn default_gpu_resource() -> String {
    "nvidia.com/gpu".into()
}

/// Observed state of a ModelPool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelPoolStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Ready over desired replicas, for example `1/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<String>,
    /// Replicas ready to serve (model pulled and loaded).
    #[serde(default)]
    pub ready_replicas: i32,
    /// URLs that serve the model now; empty while no replica is ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ready_endpoints: Vec<String>,
    /// The autoscaler's last decision, when Prometheus rules drive the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["component"]))]
    pub autoscaling: Vec<ComponentAutoscalingStatus>,
}
