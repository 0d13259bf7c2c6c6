//! Pure builders of the Qdrant requests for a [`ValidatedCollection`].

use qdrant_client::qdrant::{
    quantization_config, quantization_config_diff, vectors_config, BinaryQuantization,
    CollectionConfig, CollectionParamsDiff, CreateCollection, CreateFieldIndexCollection,
    FieldType, HnswConfigDiff, KeywordIndexParams, Modifier, PayloadIndexParams, PayloadSchemaInfo,
    PayloadSchemaType, QuantizationConfig, QuantizationConfigDiff, QuantizationType,
    ScalarQuantization, SparseVectorConfig, SparseVectorParams, UpdateCollection, VectorParams,
    VectorsConfig,
};

use super::validate::ValidatedCollection;
use crate::crd::collection::{Distance, QuantizationKind, QuantizationSpec};

fn distance(d: Distance) -> i32 {
    let d = match d {
        Distance::Cosine => qdrant_client::qdrant::Distance::Cosine,
        Distance::Dot => qdrant_client::qdrant::Distance::Dot,
        Distance::Euclid => qdrant_client::qdrant::Distance::Euclid,
        Distance::Manhattan => qdrant_client::qdrant::Distance::Manhattan,
    };
    d as i32
}

// The deprecated on-disk and always-RAM flags are what Qdrant servers older than this client
// understand; their replacement (`memory`) would be ignored there.
#[allow(deprecated)]
fn hnsw(c: &ValidatedCollection) -> Option<HnswConfigDiff> {
    c.hnsw.as_ref().map(|h| HnswConfigDiff {
        m: h.m.map(i64::unsigned_abs),
        ef_construct: h.ef_construct.map(i64::unsigned_abs),
        full_scan_threshold: h.full_scan_threshold.map(i64::unsigned_abs),
        on_disk: h.on_disk,
        payload_m: h.payload_m.map(i64::unsigned_abs),
        ..HnswConfigDiff::default()
    })
}

// The deprecated on-disk and always-RAM flags are what Qdrant servers older than this client
// understand; their replacement (`memory`) would be ignored there.
#[allow(deprecated)]
fn scalar(quantile: Option<f32>, always_ram: bool) -> ScalarQuantization {
    ScalarQuantization {
        r#type: QuantizationType::Int8 as i32,
        quantile,
        always_ram: Some(always_ram),
        ..ScalarQuantization::default()
    }
}

// The deprecated on-disk and always-RAM flags are what Qdrant servers older than this client
// understand; their replacement (`memory`) would be ignored there.
#[allow(deprecated)]
fn binary(always_ram: bool) -> BinaryQuantization {
    BinaryQuantization {
        always_ram: Some(always_ram),
        ..BinaryQuantization::default()
    }
}

// The deprecated on-disk and always-RAM flags are what Qdrant servers older than this client
// understand; their replacement (`memory`) would be ignored there.
#[allow(deprecated)]
/// The create request: shards, replication, write consistency, HNSW, on-disk and quantization,
/// and the IDF-modified sparse vector the data plane's keyword search writes and queries.
pub fn build_create_collection(c: &ValidatedCollection) -> CreateCollection {
    let quantization = c.quantization.as_ref().map(|q| QuantizationConfig {
        quantization: Some(match q {
            QuantizationSpec {
                kind: QuantizationKind::Scalar,
                quantile,
                always_ram,
            } => quantization_config::Quantization::Scalar(scalar(*quantile, *always_ram)),
            QuantizationSpec {
                kind: QuantizationKind::Binary,
                always_ram,
                ..
            } => quantization_config::Quantization::Binary(binary(*always_ram)),
        }),
    });
    CreateCollection {
        collection_name: c.name.clone(),
        vectors_config: Some(VectorsConfig {
            config: Some(vectors_config::Config::Params(VectorParams {
                size: c.vector_size,
                distance: distance(c.distance),
                on_disk: Some(c.on_disk),
                ..VectorParams::default()
            })),
        }),
        sparse_vectors_config: Some(SparseVectorConfig {
            map: [(
                ragplane_config::QDRANT_KEYWORD_VECTOR.to_string(),
                SparseVectorParams {
                    modifier: Some(Modifier::Idf as i32),
                    ..SparseVectorParams::default()
                },
            )]
            .into(),
        }),
        shard_number: Some(c.shards),
        replication_factor: Some(c.replication_factor),
        write_consistency_factor: Some(c.write_consistency_factor),
        on_disk_payload: Some(c.on_disk),
        hnsw_config: hnsw(c),
        quantization_config: quantization,
        ..CreateCollection::default()
    }
}

// The deprecated on-disk and always-RAM flags are what Qdrant servers older than this client
// understand; their replacement (`memory`) would be ignored there.
#[allow(deprecated)]
/// The update request for an existing collection: everything that may change after creation.
pub fn build_update_collection(c: &ValidatedCollection) -> UpdateCollection {
    let quantization = c.quantization.as_ref().map(|q| QuantizationConfigDiff {
        quantization: Some(match q {
            QuantizationSpec {
                kind: QuantizationKind::Scalar,
                quantile,
                always_ram,
            } => quantization_config_diff::Quantization::Scalar(scalar(*quantile, *always_ram)),
            QuantizationSpec {
                kind: QuantizationKind::Binary,
                always_ram,
                ..
            } => quantization_config_diff::Quantization::Binary(binary(*always_ram)),
        }),
    });
    UpdateCollection {
        collection_name: c.name.clone(),
        params: Some(CollectionParamsDiff {
            replication_factor: Some(c.replication_factor),
            write_consistency_factor: Some(c.write_consistency_factor),
            on_disk_payload: Some(c.on_disk),
            ..CollectionParamsDiff::default()
        }),
        hnsw_config: hnsw(c),
        quantization_config: quantization,
        ..UpdateCollection::default()
    }
}

/// The tenant keyword index, when tenants share the collection.
pub fn build_tenant_index(c: &ValidatedCollection) -> Option<CreateFieldIndexCollection> {
    let field = c.tenant_field.as_ref()?;
    Some(CreateFieldIndexCollection {
        collection_name: c.name.clone(),
        wait: Some(true),
        field_name: field.clone(),
        field_type: Some(FieldType::Keyword as i32),
        field_index_params: Some(PayloadIndexParams {
            index_params: Some(
                qdrant_client::qdrant::payload_index_params::IndexParams::KeywordIndexParams(
                    KeywordIndexParams {
                        is_tenant: Some(true),
                        ..KeywordIndexParams::default()
                    },
                ),
            ),
        }),
        ..CreateFieldIndexCollection::default()
    })
}

/// What of `desired` differs from the collection's `current` configuration: `None` when
/// nothing does, so a steady collection gets no update (each is a Raft write in a cluster).
// The deprecated on-disk-payload flag is the one `build_update_collection` sets (see `hnsw`).
#[allow(deprecated)]
pub fn pending_update(
    desired: UpdateCollection,
    current: Option<&CollectionConfig>,
) -> Option<UpdateCollection> {
    let Some(current) = current else {
        return Some(desired);
    };
    let params = desired.params.and_then(|d| {
        let now = current.params.as_ref();
        let differs = |want: Option<u32>, have: Option<u32>| want.filter(|w| Some(*w) != have);
        let diff = CollectionParamsDiff {
            replication_factor: differs(
                d.replication_factor,
                now.and_then(|p| p.replication_factor),
            ),
            write_consistency_factor: differs(
                d.write_consistency_factor,
                now.and_then(|p| p.write_consistency_factor),
            ),
            on_disk_payload: d
                .on_disk_payload
                .filter(|w| Some(*w) != now.map(|p| p.on_disk_payload)),
            ..CollectionParamsDiff::default()
        };
        (diff != CollectionParamsDiff::default()).then_some(diff)
    });
    let hnsw_config = desired.hnsw_config.and_then(|d| {
        let now = current.hnsw_config.unwrap_or_default();
        let keep = |want: Option<u64>, have: Option<u64>| want.filter(|w| Some(*w) != have);
        let diff = HnswConfigDiff {
            m: keep(d.m, now.m),
            ef_construct: keep(d.ef_construct, now.ef_construct),
            full_scan_threshold: keep(d.full_scan_threshold, now.full_scan_threshold),
            on_disk: d.on_disk.filter(|w| Some(*w) != now.on_disk),
            payload_m: keep(d.payload_m, now.payload_m),
            ..HnswConfigDiff::default()
        };
        (diff != HnswConfigDiff::default()).then_some(diff)
    });
    let quantization_config = desired.quantization_config.filter(|d| {
        let now = current
            .quantization_config
            .as_ref()
            .and_then(|q| q.quantization.as_ref());
        !same_quantization(d.quantization.as_ref(), now)
    });
    if params.is_none() && hnsw_config.is_none() && quantization_config.is_none() {
        return None;
    }
    Some(UpdateCollection {
        params,
        hnsw_config,
        quantization_config,
        ..desired
    })
}

// The deprecated always-RAM flag is the one this operator sets (see `scalar`).
#[allow(deprecated)]
fn same_quantization(
    want: Option<&quantization_config_diff::Quantization>,
    have: Option<&quantization_config::Quantization>,
) -> bool {
    use quantization_config::Quantization as Have;
    use quantization_config_diff::Quantization as Want;
    match (want, have) {
        (None, _) => true,
        (Some(Want::Scalar(w)), Some(Have::Scalar(h))) => {
            w.r#type == h.r#type && w.quantile == h.quantile && w.always_ram == h.always_ram
        }
        (Some(Want::Binary(w)), Some(Have::Binary(h))) => w.always_ram == h.always_ram,
        _ => false,
    }
}

/// Whether the collection lacks the keyword index on the tenant field that `c` asks for.
pub fn tenant_index_missing(
    c: &ValidatedCollection,
    payload_schema: &std::collections::HashMap<String, PayloadSchemaInfo>,
) -> bool {
    c.tenant_field.as_ref().is_some_and(|field| {
        payload_schema
            .get(field)
            .is_none_or(|info| info.data_type != PayloadSchemaType::Keyword as i32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::validate::{default_vector_size, embedding_dimension, validate};
    use crate::crd::collection::Collection;
    use crate::crd::rag_cluster::RagCluster;

    #[test]
    fn an_omitted_vector_size_is_the_dimension_of_the_cluster_s_embedding_model() {
        let cluster = |spec: &str| -> RagCluster {
            serde_yaml::from_str(&format!(
                "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {{name: prod, namespace: rag}}\nspec: {spec}\n"
            ))
            .unwrap()
        };
        let pool = |dimension: &str| -> crate::crd::model_pool::ModelPool {
            serde_yaml::from_str(&format!(
                "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {{name: emb, namespace: rag}}\nspec: {{kind: embedding, model: m{dimension}}}\n"
            ))
            .unwrap()
        };
        let plain = cluster("{qdrant: {managed: {}}}");
        let own =
            cluster("{qdrant: {managed: {}}, model: {claimName: c, name: mine, dimension: 512}}");
        let pooled = cluster("{qdrant: {managed: {}}, model: {claimName: c, name: mine, dimension: 512}, embedding: {name: emb}}");
        assert_eq!(embedding_dimension(&plain, None), 384);
        assert_eq!(embedding_dimension(&own, None), 512);
        assert_eq!(
            embedding_dimension(&pooled, Some(&pool(", dimension: 768"))),
            768
        );
        assert_eq!(embedding_dimension(&pooled, Some(&pool(""))), 512);
        let collection: Collection = serde_yaml::from_str(
            "apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {name: docs, namespace: rag}\nspec: {cluster: prod}\n",
        )
        .unwrap();
        assert_eq!(
            validate(&collection, &pooled, 768).unwrap().vector_size,
            768
        );
    }

    fn validated(spec: &str) -> ValidatedCollection {
        let cluster: RagCluster = serde_yaml::from_str(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: prod, namespace: rag}\nspec: {qdrant: {managed: {replicas: 3}}}\n",
        )
        .unwrap();
        let collection: Collection = serde_yaml::from_str(&format!(
            "apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {{name: docs, namespace: rag}}\nspec:\n{spec}"
        ))
        .unwrap();
        validate(&collection, &cluster, default_vector_size()).unwrap()
    }

    #[test]
    #[allow(deprecated)]
    fn create_request_carries_sharding_hnsw_and_quantization() {
        let c = validated(
            "  cluster: prod\n  shards: 6\n  replicationFactor: 2\n  writeConsistencyFactor: 2\n  onDisk: true\n  hnsw: {m: 32, efConstruct: 256}\n  quantization: {type: scalar, quantile: 0.99, alwaysRam: true}\n",
        );
        assert_eq!(c.qdrant.url, "http://prod-qdrant.rag.svc:6334");
        let req = build_create_collection(&c);
        assert_eq!(req.collection_name, "docs");
        assert_eq!(
            (
                req.shard_number,
                req.replication_factor,
                req.write_consistency_factor
            ),
            (Some(6), Some(2), Some(2))
        );
        let Some(vectors_config::Config::Params(v)) = req.vectors_config.unwrap().config else {
            panic!("single vector params")
        };
        assert_eq!((v.size, v.on_disk), (384, Some(true)));
        let keyword = &req.sparse_vectors_config.as_ref().unwrap().map["keyword"];
        assert_eq!(keyword.modifier, Some(Modifier::Idf as i32));
        assert_eq!(req.hnsw_config.unwrap().m, Some(32));
        let Some(quantization_config::Quantization::Scalar(s)) =
            req.quantization_config.unwrap().quantization
        else {
            panic!("scalar quantization")
        };
        assert_eq!((s.quantile, s.always_ram), (Some(0.99), Some(true)));
        let index = build_tenant_index(&c).unwrap();
        assert_eq!(index.field_name, "tenant");
        let update = build_update_collection(&c);
        assert_eq!(update.params.unwrap().replication_factor, Some(2));
    }

    #[test]
    fn per_tenant_collections_have_no_tenant_index() {
        let c = validated(
            "  cluster: prod\n  vectorSize: 768\n  distance: Dot\n  tenancy: {mode: PerTenant}\n",
        );
        assert!(build_tenant_index(&c).is_none());
        assert_eq!(c.vector_size, 768);
    }

    /// The configuration Qdrant reports for a collection made from `c`.
    #[allow(deprecated)]
    fn as_created(c: &ValidatedCollection) -> CollectionConfig {
        let create = build_create_collection(c);
        CollectionConfig {
            params: Some(qdrant_client::qdrant::CollectionParams {
                replication_factor: create.replication_factor,
                write_consistency_factor: create.write_consistency_factor,
                on_disk_payload: create.on_disk_payload.unwrap_or_default(),
                ..Default::default()
            }),
            hnsw_config: Some(HnswConfigDiff {
                full_scan_threshold: Some(10_000),
                ..create.hnsw_config.unwrap_or_default()
            }),
            quantization_config: create.quantization_config,
            ..Default::default()
        }
    }

    #[test]
    #[allow(deprecated)]
    fn a_collection_as_specified_needs_no_update_and_a_change_only_itself() {
        let spec = "  cluster: prod\n  replicationFactor: 2\n  hnsw: {m: 8}\n  quantization: {type: scalar}\n";
        let c = validated(spec);
        let current = as_created(&c);
        assert_eq!(
            pending_update(build_update_collection(&c), Some(&current)),
            None
        );

        let changed = validated(&format!("{spec}  onDisk: true\n").replace("m: 8", "m: 16"));
        let update = pending_update(build_update_collection(&changed), Some(&current)).unwrap();
        assert_eq!(update.hnsw_config.unwrap().m, Some(16));
        let params = update.params.unwrap();
        assert_eq!(params.on_disk_payload, Some(true));
        assert_eq!(
            params.replication_factor, None,
            "unchanged fields are left out"
        );
        assert_eq!(update.quantization_config, None);

        let binary = validated(&spec.replace("scalar", "binary"));
        let update = pending_update(build_update_collection(&binary), Some(&current)).unwrap();
        assert!(update.quantization_config.is_some());
        // Without a reported configuration everything is sent.
        assert!(pending_update(build_update_collection(&c), None).is_some());
    }

    #[test]
    fn the_tenant_index_is_created_only_when_missing() {
        use std::collections::HashMap;
        let c = validated("  cluster: prod\n");
        let field = c.tenant_field.clone().unwrap();
        assert!(tenant_index_missing(&c, &HashMap::new()));
        let info = |t: PayloadSchemaType| PayloadSchemaInfo {
            data_type: t as i32,
            ..Default::default()
        };
        let indexed = HashMap::from([(field.clone(), info(PayloadSchemaType::Keyword))]);
        assert!(!tenant_index_missing(&c, &indexed));
        let wrong = HashMap::from([(field, info(PayloadSchemaType::Integer))]);
        assert!(tenant_index_missing(&c, &wrong));
    }
}
