//! The RagCluster custom resource: one data-plane deployment and its backends.

// Repeated `printcolumn(...)` arguments are how kube's derive takes several columns.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Autoscaling, ComponentAutoscalingStatus, Resources, SecretKeyRef, StorageSpec,
};

/// Desired state of a RagCluster.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "ragplane.dev",
    version = "v1alpha1",
    kind = "RagCluster",
    plural = "ragclusters",
    shortname = "rag",
    category = "ragplane",
    namespaced,
    status = "RagClusterStatus",
    doc = "A ragplane data-plane deployment: API, worker pools, configuration and backends.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "API", type_ = "string", json_path = ".status.api"),
    printcolumn(name = "Workers", type_ = "string", json_path = ".status.workers"),
    printcolumn(
        name = "Qdrant",
        type_ = "string",
        json_path = ".status.qdrant",
        priority = 1
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.api) || !has(oldSelf.api) || (has(self.api.storage) == has(oldSelf.api.storage) && (!has(self.api.storage) || self.api.storage == oldSelf.api.storage))").message("api.storage is immutable after creation: a claim's size and class cannot change in place").field_path(".api.storage"))]
#[x_kube(validation = Rule::new("!has(self.previousEmbedding) || !has(self.embedding) || self.previousEmbedding.name != self.embedding.name").message("previousEmbedding: names the ModelPool that embedding uses; it is the pool of the model collections are switching away from").field_path(".previousEmbedding.name"))]
#[x_kube(validation = Rule::new("!has(self.workers) || size(self.workers) == 0 || has(self.redis)").message("workers: worker pools need spec.redis, the queue they share with the API; without it each pool would get an embedded queue of its own and never see the API's jobs").field_path(".workers"))]
#[x_kube(validation = Rule::new("!has(self.api) || (self.api.replicas <= 1 && (!has(self.api.autoscaling) || self.api.autoscaling.maxReplicas <= 1)) || (has(self.postgres) && has(self.s3) && has(self.redis))").message("api.replicas: more than one API replica needs the shared backends spec.postgres, spec.s3 and spec.redis; with embedded SQLite, local files and the embedded queue each pod would keep data of its own").field_path(".api.replicas"))]
pub struct RagClusterSpec {
    /// Data-plane version; the image tag when `image` is not set. When omitted, a new cluster
    /// takes the operator's version and keeps it (see `status.version`): upgrading the operator
    /// never rolls the data plane of an existing cluster. Set it to upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Full data-plane image reference; overrides `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy of every data-plane container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// The stateless HTTP API.
    #[serde(default)]
    pub api: ApiSpec,
    /// Queue worker pools, each a Deployment of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub workers: Vec<WorkerPoolSpec>,
    /// Vector store: managed or external Qdrant. When omitted the data plane uses its embedded index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qdrant: Option<QdrantSpec>,
    /// PostgreSQL metadata store. When omitted the data plane uses embedded SQLite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSpec>,
    /// Redis for queues, shared rate limits and the L2 cache. When omitted queues are embedded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
    /// S3-compatible object store for original documents. When omitted a local directory is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// ModelPool (kind `ollama` or `openai`) that answers questions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<ModelPoolRef>,
    /// ModelPool (kind `embedding`) that embeds text; the in-process ONNX model when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<ModelPoolRef>,
    /// While collections switch to the model of `embedding` (or `model`): the ModelPool (kind
    /// `embedding`) of the model they were indexed with. Searches embed their queries with it
    /// and keep using a collection's current points until its `ragplane reindex` has written
    /// every document with the new model, so no document drops out of results. Remove it once
    /// every collection has switched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_embedding: Option<ModelPoolRef>,
    /// An in-process embedding model of your own instead of the image's all-MiniLM-L6-v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelVolume>,
    /// Prometheus base URL used by the autoscaling rules; the operator's `--prometheus-url` when
    /// omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_url: Option<String>,
    /// Log filter of the data plane, in EnvFilter syntax. Spans it filters out are not traced
    /// either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_filter: Option<String>,
    /// OpenTelemetry traces of the API and worker pods, exported over OTLP (gRPC or HTTP) to
    /// Jaeger, Tempo or any collector. Off when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<TracesSpec>,
    /// Secret key holding the admin API key the data plane creates on first start. When
    /// omitted, the operator creates the Secret `<name>-admin-key` (key `api-key`) with a random
    /// key, once, and keeps it; `status.adminKeySecret` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_key_secret_ref: Option<SecretKeyRef>,
    /// NetworkPolicies that let only this cluster's data plane (API and workers) reach its
    /// managed Qdrant and the ModelPools it references. Off when omitted. They take effect only
    /// where the CNI enforces NetworkPolicies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
}

/// Where the data plane sends its traces, and how many.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.endpoint.startsWith('http://') || self.endpoint.startsWith('https://')").message("traces.endpoint must be an http:// or https:// URL, such as http://jaeger-collector.observability:4317").field_path(".endpoint"))]
pub struct TracesSpec {
    /// OTLP endpoint: for gRPC such as `http://jaeger-collector.observability:4317`; for HTTP
    /// the URL spans are posted to, `/v1/traces` added when it has no path
    /// (`http://jaeger-collector.observability:4318`).
    pub endpoint: String,
    /// The transport: `grpc` (the default) or `http/protobuf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<TracesProtocol>,
    /// Fraction of new traces recorded, from 0 to 1; every trace when omitted. A request that
    /// arrives with a `traceparent` follows its caller's sampling decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sample_ratio: Option<f64>,
}

/// The OTLP transport of a RagCluster's traces: `grpc` (the default) or `http/protobuf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TracesProtocol {
    /// OTLP/gRPC, usually port 4317.
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies, usually port 4318.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl From<TracesProtocol> for ragplane_config::OtlpProtocol {
    fn from(p: TracesProtocol) -> Self {
        match p {
            TracesProtocol::Grpc => Self::Grpc,
            TracesProtocol::HttpProtobuf => Self::HttpProtobuf,
        }
    }
}

/// NetworkPolicies of a RagCluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Render the policies.
    #[serde(default)]
    pub enabled: bool,
    /// More peers allowed in, on every port, added to every policy: for example Prometheus
    /// scraping Qdrant or the model servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_from: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

/// The HTTP API component.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// Replicas when autoscaling is off. More than one needs the shared backends (`postgres`,
    /// `s3` and `redis`).
    #[serde(default = "default_api_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Prometheus-driven autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// PersistentVolumeClaim of the data directory while any backend is embedded (SQLite
    /// metadata or queue, local originals, the embedded vector index): 1Gi in the default
    /// storage class when omitted. The claim (`ReadWriteOnce`: one writer) outlives pod restarts
    /// and is deleted with the RagCluster. Immutable after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Service port.
    #[serde(default = "default_api_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Most API pods that may be down at once during voluntary disruptions.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
}

impl Default for ApiSpec {
    fn default() -> Self {
        Self {
            replicas: default_api_replicas(),
            resources: None,
            autoscaling: None,
            storage: None,
            port: default_api_port(),
            max_unavailable: default_max_unavailable(),
        }
    }
}

fn default_api_replicas() -> i32 {
    1
}

fn default_api_port() -> i32 {
    8080
}

fn default_max_unavailable() -> i32 {
    1
}

/// One pool of queue workers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPoolSpec {
    /// Pool name, unique in the cluster; part of the Deployment name.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Queues this pool consumes; required. `documents` (ingestion: parse, chunk, embed,
    /// index) is the only queue: embedding and generation servers scale as ModelPools.
    #[schemars(length(min = 1, max = 1))]
    pub queues: Vec<WorkerQueue>,
    /// Replicas when autoscaling is off.
    #[serde(default = "default_worker_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Jobs each worker processes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub concurrency: Option<i32>,
    /// Container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Prometheus-driven autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Node selector of the pool's pods (for example GPU nodes for embedding workers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Longest a job of this pool may run, in seconds (default 300). A worker drains its
    /// in-flight jobs on SIGTERM, so the pods' `terminationGracePeriodSeconds` is this plus a
    /// margin: scaling in never kills a job mid-way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_job_seconds: Option<i32>,
}

/// A queue a worker pool consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerQueue {
    /// Document ingestion jobs.
    Documents,
}

impl WorkerQueue {
    /// The queue's name in the data plane (`ragplane worker --queues`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Documents => "documents",
        }
    }
}

/// The pool's queue names, as the data plane and its metrics call them.
pub fn queue_names(queues: &[WorkerQueue]) -> Vec<String> {
    queues.iter().map(|q| q.as_str().to_owned()).collect()
}

fn default_worker_replicas() -> i32 {
    1
}

/// Qdrant: exactly one of `managed` or `external`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.managed) != has(self.external)").message("exactly one of qdrant.managed or qdrant.external must be set"))]
#[x_kube(validation = Rule::new("!has(self.managed) || self.managed.replicas <= 1 || has(self.managed.storage)").message("qdrant.managed.storage: a managed Qdrant of more than one peer needs storage; a peer on an emptyDir loses its identity with its pod, and one that starts empty would found a second cluster").field_path(".managed.storage"))]
#[x_kube(validation = Rule::new("!has(self.managed) || !has(oldSelf.managed) || (has(self.managed.storage) == has(oldSelf.managed.storage) && (!has(self.managed.storage) || self.managed.storage == oldSelf.managed.storage))").message("qdrant.managed.storage is immutable after creation: it is the StatefulSet's volume claim template").field_path(".managed.storage"))]
pub struct QdrantSpec {
    /// A Qdrant cluster run by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedQdrant>,
    /// A Qdrant cluster run elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalQdrant>,
    /// Qdrant collection that holds the points of every data-plane collection, partitioned by
    /// tenant (`ragplane` when omitted). A Collection resource of this cluster whose Qdrant
    /// collection has this name sets its shards, replication, HNSW, quantization and tenant field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub collection: Option<String>,
}

impl QdrantSpec {
    /// The shared Qdrant collection's name.
    pub fn collection_name(&self) -> &str {
        self.collection.as_deref().unwrap_or("ragplane")
    }
}

/// A managed Qdrant cluster (StatefulSet in cluster mode).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedQdrant {
    /// Number of Qdrant peers.
    #[serde(default = "default_qdrant_replicas")]
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// Qdrant image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Persistent storage of each peer (a `ReadWriteOnce` claim each); `emptyDir` when omitted,
    /// which only a single peer may use. Immutable after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Secret key holding the API key every peer requires. When omitted, the operator creates
    /// the Secret `<name>-qdrant-key` (key `api-key`) with a random key, once, and keeps it: a
    /// managed Qdrant always requires a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
}

fn default_qdrant_replicas() -> i32 {
    3
}

/// An external Qdrant cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.httpUrl) || self.httpUrl.startsWith('http://') || self.httpUrl.startsWith('https://')").message("qdrant.external.httpUrl must be an http:// or https:// URL, such as http://qdrant.example:6333").field_path(".httpUrl"))]
pub struct ExternalQdrant {
    /// gRPC URL, for example `http://qdrant.example:6334`.
    #[schemars(length(min = 1))]
    pub url: String,
    /// REST URL of the same cluster, for example `http://qdrant.example:6333`. With it the
    /// operator sees every peer, also those holding no shard yet, and moves shards onto peers
    /// that joined later; without it, copies are only evened out among the peers that already
    /// hold some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_url: Option<String>,
    /// Secret key holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
}

/// PostgreSQL metadata store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Secret key holding the primary's connection URL.
    pub url_secret_ref: SecretKeyRef,
    /// Secret keys holding read-replica connection URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_replica_url_secret_refs: Vec<SecretKeyRef>,
    /// Secret key holding the PEM certificate(s) of the CA that signs the servers'
    /// certificates, trusted besides the system's roots. Mounted into the data-plane pods as
    /// `metadata.ca_file` (and `vectors.ca_file` when the vectors live in PostgreSQL too): every
    /// connection is then TLS with the certificate and host name verified, so the URLs may
    /// leave `sslmode` out or set `verify-full` or `verify-ca`, and the pods refuse to start on
    /// any other. Rotating it rolls them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// Redis connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Secret key holding the Redis URL: `redis://`, or `rediss://` for TLS (the server's
    /// certificate is verified).
    pub url_secret_ref: SecretKeyRef,
    /// Secret key holding the PEM certificate(s) of the CA that signs a TLS (`rediss://`)
    /// server's certificate, trusted instead of the system's roots. Mounted into the data-plane
    /// pods as `redis.ca_file`; rotating it rolls them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// S3-compatible object store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.caSecretRef) || (has(self.endpoint) && self.endpoint.startsWith('https://'))").message("s3.caSecretRef is only used with TLS: set an https:// s3.endpoint, the server whose certificate the CA signs").field_path(".caSecretRef"))]
pub struct S3Spec {
    /// Bucket name.
    #[schemars(length(min = 3))]
    pub bucket: String,
    /// Endpoint URL for S3-compatible servers; AWS when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Secret key holding the PEM certificate(s) of the CA that signs an `https://` endpoint's
    /// certificate, trusted instead of the system's roots. Mounted into the data-plane pods as
    /// `objects.ca_file`; rotating it rolls them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// An ONNX embedding model on a PersistentVolumeClaim, mounted read-only into every data-plane
/// pod in place of the model the image carries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelVolume {
    /// PersistentVolumeClaim holding `model.onnx` (inputs `input_ids`, `attention_mask`,
    /// `token_type_ids`; output `last_hidden_state`) and `tokenizer.json`.
    #[schemars(length(min = 1))]
    pub claim_name: String,
    /// Directory inside the claim that holds the two files; its root when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Name of the model, part of the embedding cache's keys.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Dimension of the model's vectors (384 when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub dimension: Option<i32>,
}

impl RagClusterSpec {
    /// The ModelPools the cluster references: `generation`, `embedding`, `previousEmbedding`.
    pub fn model_pools(&self) -> impl Iterator<Item = &ModelPoolRef> {
        [&self.generation, &self.embedding, &self.previous_embedding]
            .into_iter()
            .flatten()
    }

    /// The dimension of the cluster's embedding model, where the spec states one: the
    /// `dimension` of `pool` (the ModelPool that `embedding` names), else `model.dimension`;
    /// `None` leaves the data plane's default.
    pub fn embedding_dimension(&self, pool: Option<&super::model_pool::ModelPool>) -> Option<i32> {
        pool.and_then(|p| p.spec.dimension)
            .or_else(|| self.model.as_ref().and_then(|m| m.dimension))
    }
}

/// A reference to a ModelPool in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelPoolRef {
    /// Name of the ModelPool.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Model name sent to the pool; the pool's model when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Observed state of a RagCluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RagClusterStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Ready over desired API replicas, for example `2/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Ready over desired worker replicas across all pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<String>,
    /// Ready over desired managed Qdrant peers, or `external`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qdrant: Option<String>,
    /// In-cluster URL of the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Data-plane version the pods run. Kept when `spec.version` is omitted, so an operator
    /// upgrade does not roll the cluster; changing `spec.version` rolls it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Secret holding the admin API key (key `api-key` when the operator created it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_key_secret: Option<String>,
    /// Replicas of every component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
    /// The autoscaler's last decision for each component with Prometheus rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["component"]))]
    pub autoscaling: Vec<ComponentAutoscalingStatus>,
}

/// Replicas of one component.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Component name: `api`, `worker-<pool>` or `qdrant`.
    pub name: String,
    /// Replicas asked for.
    pub desired_replicas: i32,
    /// Replicas ready.
    pub ready_replicas: i32,
}
