//! The Collection custom resource: a Qdrant collection inside a RagCluster.

// Repeated `printcolumn(...)` arguments are how kube's derive takes several columns.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a Collection.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "ragplane.dev",
    version = "v1alpha1",
    kind = "Collection",
    plural = "collections",
    shortname = "rcol",
    category = "ragplane",
    namespaced,
    status = "CollectionStatus",
    doc = "A vector collection in a RagCluster's Qdrant, created and updated by the operator.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Shards", type_ = "integer", json_path = ".spec.shards"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicationFactor"
    ),
    printcolumn(name = "Points", type_ = "integer", json_path = ".status.pointsCount"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.writeConsistencyFactor <= self.replicationFactor").message("writeConsistencyFactor must be less than or equal to replicationFactor"))]
#[x_kube(validation = Rule::new("has(self.collectionName) == has(oldSelf.collectionName) && (!has(self.collectionName) || self.collectionName == oldSelf.collectionName)").message("collectionName is immutable after creation: the Qdrant collection keeps its name").field_path(".collectionName"))]
#[x_kube(validation = Rule::new("has(self.vectorSize) == has(oldSelf.vectorSize) && (!has(self.vectorSize) || self.vectorSize == oldSelf.vectorSize)").message("vectorSize is immutable after creation: a Qdrant collection's vectors keep their dimension; create a new Collection and reindex").field_path(".vectorSize"))]
#[serde(rename_all = "camelCase")]
pub struct CollectionSpec {
    /// Name of the RagCluster whose Qdrant holds the collection; immutable.
    #[schemars(length(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster is immutable after creation: a Collection stays in the RagCluster it was created in"))]
    pub cluster: String,
    /// Collection name in Qdrant; the resource name when omitted. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_name: Option<String>,
    /// Vector dimension; the embedding model's dimension when omitted. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub vector_size: Option<i64>,
    /// Distance function; immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("distance is immutable after creation: Qdrant cannot change a collection's distance"))]
    pub distance: Distance,
    /// Number of shards; fixed when the collection is created.
    #[serde(default = "one")]
    #[x_kube(validation = Rule::new("self >= 1").message("shards must be at least 1"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("shards is immutable after creation"))]
    pub shards: i32,
    /// Copies of each shard; a change is carried out by replicating shards.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub replication_factor: i32,
    /// Replicas that must acknowledge a write.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub write_consistency_factor: i32,
    /// HNSW index settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hnsw: Option<HnswSpec>,
    /// Keep vectors on disk instead of in RAM.
    #[serde(default)]
    pub on_disk: bool,
    /// Vector quantization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<QuantizationSpec>,
    /// How tenants share the collection.
    #[serde(default)]
    pub tenancy: TenancySpec,
    /// What happens to the Qdrant collection when this resource is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn one() -> i32 {
    1
}

impl Collection {
    /// The Qdrant collection's name: `spec.collectionName`, or the resource name.
    pub fn qdrant_name(&self) -> Option<String> {
        self.spec
            .collection_name
            .clone()
            .or_else(|| self.metadata.name.clone())
    }
}

/// Distance function of the vectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Distance {
    /// Cosine similarity.
    #[default]
    Cosine,
    /// Dot product.
    Dot,
    /// Euclidean distance.
    Euclid,
    /// Manhattan distance.
    Manhattan,
}

/// HNSW index settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HnswSpec {
    /// Edges per node (M).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub m: Option<i64>,
    /// Candidates considered while building.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 4))]
    pub ef_construct: Option<i64>,
    /// Segment size in KiB below which search is a full scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_scan_threshold: Option<i64>,
    /// Keep the graph on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_disk: Option<bool>,
    /// Build per-tenant graphs (`m` 0 with payload_m) for multitenant collections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_m: Option<i64>,
}

/// Vector quantization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuantizationSpec {
    /// `scalar` (int8) or `binary`.
    #[serde(rename = "type")]
    pub kind: QuantizationKind,
    /// Quantile used to clip outliers, between 0.5 and 1 (scalar only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.5, max = 1.0))]
    pub quantile: Option<f32>,
    /// Keep quantized vectors in RAM.
    #[serde(default)]
    pub always_ram: bool,
}

/// Kind of quantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuantizationKind {
    /// int8 scalar quantization.
    Scalar,
    /// One bit per dimension.
    Binary,
}

/// How tenants share the collection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenancySpec {
    /// `Shared`: one collection, partitioned by the tenant payload field; `PerTenant`: this collection
    /// serves one tenant.
    #[serde(default)]
    pub mode: TenancyMode,
    /// Payload field holding the tenant; indexed as a tenant keyword index.
    #[serde(default = "default_tenant_field")]
    pub payload_field: String,
}

impl Default for TenancySpec {
    fn default() -> Self {
        Self {
            mode: TenancyMode::default(),
            payload_field: default_tenant_field(),
        }
    }
}

fn default_tenant_field() -> String {
    "tenant".into()
}

/// Tenancy mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TenancyMode {
    /// Tenants share the collection.
    #[default]
    Shared,
    /// One tenant per collection.
    PerTenant,
}

/// What happens to the Qdrant collection when the resource is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the Qdrant collection and its data.
    #[default]
    Retain,
    /// Delete the Qdrant collection.
    Delete,
}

/// Observed state of a Collection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectionStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Points in the collection, as Qdrant reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points_count: Option<i64>,
    /// Shards and where their replicas live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,
    /// Where the collection lives, as last reconciled: what `deletionPolicy: Delete` acts on
    /// once the RagCluster is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qdrant: Option<QdrantLocation>,
}

/// The Qdrant a collection lives in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QdrantLocation {
    /// gRPC URL of the Qdrant.
    pub url: String,
    /// Whether the RagCluster runs that Qdrant (then it goes with the cluster).
    pub managed: bool,
    /// Secret key holding its API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<crate::crd::common::SecretKeyRef>,
    /// The collection's name in Qdrant.
    pub collection_name: String,
}

/// One shard replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Shard number.
    pub shard_id: i32,
    /// Qdrant peer holding this replica (a 64-bit unsigned id, as text).
    pub peer_id: String,
    /// Replica state, for example `Active`.
    pub state: String,
}
