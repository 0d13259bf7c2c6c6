//! Turns a Collection and its RagCluster into a [`ValidatedCollection`].

use kube::ResourceExt;

use crate::crd::collection::{
    Collection, DeletionPolicy, Distance, HnswSpec, QuantizationSpec, TenancyMode,
};
use crate::crd::common::SecretKeyRef;
use crate::crd::rag_cluster::{QdrantSpec, RagCluster};

/// Dimension of the data plane's default embedding model.
pub fn default_vector_size() -> u64 {
    ragplane_config::Config::default().embedding.dimension as u64
}

/// The dimension of `cluster`'s embedding model, as its data-plane config has it: the
/// embedding pool's `dimension`, else the in-process `model.dimension`, else the default
/// model's. `pool` is the ModelPool that `spec.embedding` names, when there is one.
pub fn embedding_dimension(
    cluster: &RagCluster,
    pool: Option<&crate::crd::model_pool::ModelPool>,
) -> u64 {
    cluster
        .spec
        .embedding_dimension(pool)
        .map_or_else(default_vector_size, |d| u64::from(d.unsigned_abs()))
}

/// Why a Collection cannot be reconciled as written.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The referenced RagCluster has no Qdrant (it uses the embedded index).
    #[error("spec.cluster: RagCluster {0:?} has no Qdrant (spec.qdrant is unset); collections need managed or external Qdrant")]
    NoQdrant(String),
    /// The resource lacks metadata the API server always sets.
    #[error("the resource has no {0}")]
    Metadata(&'static str),
}

/// How to reach a Qdrant cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct QdrantTarget {
    /// gRPC URL.
    pub url: String,
    /// REST URL, where the operator reads the cluster's peers; unknown for an external Qdrant
    /// that does not give one.
    pub http_url: Option<String>,
    /// Secret holding the API key.
    pub api_key: Option<SecretKeyRef>,
    /// Whether the RagCluster runs this Qdrant.
    pub managed: bool,
}

/// A Collection with every default applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedCollection {
    /// Collection name in Qdrant.
    pub name: String,
    /// Where it lives.
    pub qdrant: QdrantTarget,
    /// Vector dimension.
    pub vector_size: u64,
    /// Distance.
    pub distance: Distance,
    /// Shards (fixed at creation).
    pub shards: u32,
    /// Copies of each shard.
    pub replication_factor: u32,
    /// Acknowledgements per write.
    pub write_consistency_factor: u32,
    /// HNSW settings.
    pub hnsw: Option<HnswSpec>,
    /// Vectors on disk.
    pub on_disk: bool,
    /// Quantization.
    pub quantization: Option<QuantizationSpec>,
    /// Tenant payload field to index, when tenants share the collection.
    pub tenant_field: Option<String>,
    /// Deletion policy.
    pub deletion_policy: DeletionPolicy,
}

/// The Qdrant a RagCluster uses.
pub fn qdrant_target(cluster: &RagCluster) -> Result<QdrantTarget, ValidationError> {
    let ns = cluster
        .namespace()
        .ok_or(ValidationError::Metadata("namespace"))?;
    match &cluster.spec.qdrant {
        Some(QdrantSpec {
            external: Some(e), ..
        }) => Ok(QdrantTarget {
            url: e.url.clone(),
            http_url: e.http_url.clone(),
            api_key: e.api_key_secret_ref.clone(),
            managed: false,
        }),
        Some(QdrantSpec {
            managed: Some(m), ..
        }) => {
            let service = crate::rag_cluster::validate::qdrant_service_name(&cluster.name_any());
            Ok(QdrantTarget {
                url: format!("http://{service}.{ns}.svc:6334"),
                http_url: Some(format!("http://{service}.{ns}.svc:6333")),
                api_key: Some(crate::rag_cluster::validate::managed_qdrant_key(cluster, m)),
                managed: true,
            })
        }
        _ => Err(ValidationError::NoQdrant(cluster.name_any())),
    }
}

/// Validates `collection` against its cluster, whose embedding model makes vectors of
/// `embedding_dimension` (the size when `vectorSize` is omitted).
pub fn validate(
    collection: &Collection,
    cluster: &RagCluster,
    embedding_dimension: u64,
) -> Result<ValidatedCollection, ValidationError> {
    let spec = &collection.spec;
    let name = collection
        .qdrant_name()
        .ok_or(ValidationError::Metadata("name"))?;
    Ok(ValidatedCollection {
        name,
        qdrant: qdrant_target(cluster)?,
        vector_size: spec
            .vector_size
            .map_or(embedding_dimension, |v| v.unsigned_abs()),
        distance: spec.distance,
        shards: positive(spec.shards),
        replication_factor: positive(spec.replication_factor),
        write_consistency_factor: positive(spec.write_consistency_factor),
        hnsw: spec.hnsw.clone(),
        on_disk: spec.on_disk,
        quantization: spec.quantization.clone(),
        tenant_field: (spec.tenancy.mode == TenancyMode::Shared)
            .then(|| spec.tenancy.payload_field.clone()),
        deletion_policy: spec.deletion_policy,
    })
}

/// A count the schema keeps at 1 or more, as Qdrant's unsigned type.
fn positive(n: i32) -> u32 {
    u32::try_from(n.max(1)).unwrap_or(1)
}
