//! The Qdrant vector index (gRPC, `qdrant-client`).
//!
//! Every tenant and every data-plane collection share one Qdrant collection (the operator's
//! `Shared` tenancy): points carry the payload fields `<tenant_field>` (default `tenant`),
//! `collection`, `document`, `title`, `chunk` and `text`. The tenant field has a keyword index
//! marked `is_tenant`, so Qdrant stores each tenant's points together; `collection` and
//! `document` have plain keyword indexes. Every search, count and delete is filtered by tenant
//! and collection. When the Qdrant collection does not exist (no operator created it) the data
//! plane creates it with the shards, replication, write consistency, HNSW, on-disk and
//! quantization settings of its configuration.
//!
//! Keyword search: the dense embedding is the unnamed vector, and the sparse vector `keyword`
//! (created with Qdrant's IDF modifier) holds each chunk's BM25 term weights
//! ([`crate::keyword::sparse`]). Every keyword query names the tenant's collection as the IDF
//! corpus, so document frequencies never mix tenants or collections even though they share the
//! Qdrant collection. A hybrid search is one `query_batch` round trip: the dense and keyword
//! candidate lists and, for reciprocal rank fusion with equal weights, their fusion by Qdrant
//! itself (`prefetch` + `rrf`); other fusions are computed here from the two lists. A Qdrant
//! collection created without the `keyword` vector keeps serving dense search only, and so
//! does a Qdrant server older than 1.19: older servers ignore the IDF corpus of a query and
//! count document frequencies over the whole Qdrant collection, every tenant's points included.

pub mod filter;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use qdrant_client::qdrant::{
    payload_index_params::IndexParams, quantization_config, value::Kind, vectors_config,
    BinaryQuantization, Condition, CountPointsBuilder, CreateCollection,
    CreateFieldIndexCollection, DeletePointsBuilder, Distance, FieldType, Filter as QFilter,
    HnswConfigDiff, IdfParams, KeywordIndexParams, Modifier, NamedVectors, PayloadIndexParams,
    PointId, PointStruct, PrefetchQueryBuilder, QuantizationConfig, QuantizationType, Query,
    QueryBatchPointsBuilder, QueryPoints, QueryPointsBuilder, Range, Rrf, ScalarQuantization,
    ScoredPoint, SearchParams, SparseVectorConfig, SparseVectorParams, UpsertPointsBuilder, Value,
    Vector, VectorInput, VectorParams, VectorsConfig,
};
use qdrant_client::{Qdrant, QdrantError};
use ragplane_config::{FusionMethod, QdrantIndexConfig, QuantizationKind, QDRANT_KEYWORD_VECTOR};
use tokio::sync::OnceCell;

use super::{
    CollectionKey, Filter, Hit, HybridQuery, Payload, Point, Result, VectorError, VectorIndex,
};
use crate::keyword::{sparse, Bm25};
use crate::metrics;

/// gRPC status codes (google.rpc.Code) that mean "try again later".
const CANCELLED: i32 = 1;
const DEADLINE_EXCEEDED: i32 = 4;
const NOT_FOUND: i32 = 5;
const RESOURCE_EXHAUSTED: i32 = 8;
const INTERNAL: i32 = 13;
const UNAVAILABLE: i32 = 14;

/// The first Qdrant release that honours a query's IDF corpus (`SearchParams.idf.corpus`).
const IDF_CORPUS_SINCE: (u64, u64) = (1, 19);

/// How long a failed read of the server's version is answered from memory. Requests that
/// arrive meanwhile fail at once with that error instead of each waiting for the server in
/// turn, so a hung Qdrant costs each request at most one timeout.
const VERSION_RETRY: Duration = Duration::from_secs(2);

/// Whether a Qdrant server of `version` ("1.18.3", "1.19.0-dev") counts document frequencies
/// over the corpus a query names. A version that does not parse is taken to be a newer one.
fn honours_idf_corpus(version: &str) -> bool {
    let mut parts = version
        .split(['.', '-', '+'])
        .map(|p| p.trim_start_matches('v').parse::<u64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= IDF_CORPUS_SINCE,
        _ => true,
    }
}

/// Qdrant implementation of [`VectorIndex`].
pub struct QdrantIndex {
    client: Qdrant,
    cfg: QdrantIndexConfig,
    /// Dimension of the Qdrant collection, once it is known to exist with its indexes.
    ready: OnceCell<u64>,
    /// Whether the Qdrant collection has the IDF-modified `keyword` sparse vector, once read.
    keyword: OnceCell<bool>,
    /// Whether the server honours a query's IDF corpus ([`honours_idf_corpus`]), once read.
    idf_corpus: OnceCell<bool>,
    /// When the last read of the version failed, whether the server was unreachable, and the
    /// client's message ([`VERSION_RETRY`]).
    version_failure: std::sync::Mutex<Option<(Instant, bool, String)>>,
}

fn status_code(e: &QdrantError) -> Option<i32> {
    match e {
        QdrantError::ResponseError { status } => Some(status.code() as i32),
        _ => None,
    }
}

/// Whether the request never reached a server, or the server was too busy for it (answered
/// then with 503 and Retry-After): the client's channel pool reports a failed connect as
/// INTERNAL "Failed to connect to …"; tonic reports a broken one as UNAVAILABLE; an overloaded
/// server says RESOURCE_EXHAUSTED, which the client turns into its own error only when a
/// `retry-after` comes with it.
fn is_unreachable(e: &QdrantError) -> bool {
    match e {
        QdrantError::ResourceExhaustedError { .. } => true,
        QdrantError::ResponseError { status } => match status.code() as i32 {
            CANCELLED | DEADLINE_EXCEEDED | RESOURCE_EXHAUSTED | UNAVAILABLE => true,
            INTERNAL => status.message().starts_with("Failed to connect"),
            _ => false,
        },
        _ => false,
    }
}

fn is_not_found(e: &QdrantError) -> bool {
    status_code(e) == Some(NOT_FOUND)
}

fn qdrant_err(action: impl Into<String>) -> impl FnOnce(QdrantError) -> VectorError {
    let action = action.into();
    move |e| vector_err(is_unreachable(&e), action, e.to_string())
}

/// A failed `action`: [`VectorError::Unavailable`] when the server could not be reached,
/// else [`VectorError::Backend`].
fn vector_err(unreachable: bool, action: String, message: String) -> VectorError {
    let backend = "qdrant";
    if unreachable {
        VectorError::Unavailable {
            backend,
            action,
            message,
        }
    } else {
        VectorError::Backend {
            backend,
            action,
            message,
        }
    }
}

fn keyword(field: &str, value: &str) -> Condition {
    Condition::matches(field, value.to_string())
}

fn string(payload: &HashMap<String, Value>, field: &str) -> String {
    match payload.get(field).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

fn integer(payload: &HashMap<String, Value>, field: &str) -> i64 {
    match payload.get(field).and_then(|v| v.kind.as_ref()) {
        Some(Kind::IntegerValue(n)) => *n,
        _ => 0,
    }
}

/// The sparse vector config of a collection that serves keyword search.
pub fn keyword_vector_config() -> SparseVectorConfig {
    SparseVectorConfig {
        map: HashMap::from([(
            QDRANT_KEYWORD_VECTOR.to_string(),
            SparseVectorParams {
                modifier: Some(Modifier::Idf as i32),
                ..SparseVectorParams::default()
            },
        )]),
    }
}

/// Whether a collection's parameters include the IDF-modified `keyword` sparse vector.
fn has_keyword_vector(params: Option<&qdrant_client::qdrant::CollectionParams>) -> bool {
    params
        .and_then(|p| p.sparse_vectors_config.as_ref())
        .and_then(|c| c.map.get(QDRANT_KEYWORD_VECTOR))
        .is_some_and(|v| v.modifier == Some(Modifier::Idf as i32))
}

/// Whether Qdrant's own reciprocal rank fusion ranks exactly as `fusion` does: equal weights
/// and a whole `k`. Qdrant scores 0-based position `p` as `1 / (p + k)`, so it is given `k + 1`.
fn server_rrf_k(fusion: &super::Fusion) -> Option<u32> {
    let k = fusion.rrf_k;
    (fusion.method == FusionMethod::Rrf
        && fusion.dense_weight == fusion.keyword_weight
        && fusion.dense_weight > 0.0
        && k >= 0.0
        && k.fract() == 0.0
        && k < 1e6)
        .then(|| k as u32 + 1)
}

impl QdrantIndex {
    /// A client for `cfg.url`. gRPC connects lazily, so this succeeds while Qdrant is down;
    /// requests then fail with [`VectorError::Unavailable`].
    pub fn open(cfg: QdrantIndexConfig) -> Result<Self> {
        let client = Qdrant::from_url(&cfg.url)
            .api_key(cfg.api_key.as_ref().map(|k| k.expose().to_string()))
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .skip_compatibility_check()
            .build()
            .map_err(qdrant_err(format!("connect to {}", cfg.url)))?;
        Ok(Self {
            client,
            cfg,
            ready: OnceCell::new(),
            keyword: OnceCell::new(),
            idf_corpus: OnceCell::new(),
            version_failure: std::sync::Mutex::new(None),
        })
    }

    fn name(&self) -> &str {
        &self.cfg.collection
    }

    /// Tenant and collection, and the documents when given.
    fn filter(&self, tenant: &str, collection: &str, documents: Option<Vec<String>>) -> QFilter {
        let mut must = vec![
            keyword(&self.cfg.tenant_field, tenant),
            keyword("collection", collection),
        ];
        if let Some(docs) = documents {
            must.push(Condition::matches("document", docs));
        }
        QFilter::must(must)
    }

    fn key_filter(&self, key: &CollectionKey, document: Option<&str>) -> QFilter {
        self.filter(
            &key.tenant,
            &key.collection,
            document.map(|d| vec![d.to_string()]),
        )
    }

    // The deprecated on-disk and always-RAM flags are what Qdrant servers older than this
    // client understand, as in the operator's builders.
    #[allow(deprecated)]
    fn create_request(&self, dimension: u64) -> CreateCollection {
        let c = &self.cfg;
        let quantization = c.quantization.as_ref().map(|q| QuantizationConfig {
            quantization: Some(match q.kind {
                QuantizationKind::Scalar => {
                    quantization_config::Quantization::Scalar(ScalarQuantization {
                        r#type: QuantizationType::Int8 as i32,
                        quantile: q.quantile,
                        always_ram: Some(q.always_ram),
                        ..ScalarQuantization::default()
                    })
                }
                QuantizationKind::Binary => {
                    quantization_config::Quantization::Binary(BinaryQuantization {
                        always_ram: Some(q.always_ram),
                        ..BinaryQuantization::default()
                    })
                }
            }),
        });
        let h = &c.hnsw;
        let hnsw = (h.m.is_some()
            || h.ef_construct.is_some()
            || h.full_scan_threshold.is_some()
            || h.payload_m.is_some()
            || h.on_disk.is_some())
        .then(|| HnswConfigDiff {
            m: h.m,
            ef_construct: h.ef_construct,
            full_scan_threshold: h.full_scan_threshold,
            payload_m: h.payload_m,
            on_disk: h.on_disk,
            ..HnswConfigDiff::default()
        });
        CreateCollection {
            collection_name: c.collection.clone(),
            vectors_config: Some(VectorsConfig {
                config: Some(vectors_config::Config::Params(VectorParams {
                    size: dimension,
                    // Embeddings are unit length; cosine scores are what the API reports.
                    distance: Distance::Cosine as i32,
                    on_disk: Some(c.on_disk),
                    ..VectorParams::default()
                })),
            }),
            sparse_vectors_config: Some(keyword_vector_config()),
            shard_number: Some(c.shard_number),
            replication_factor: Some(c.replication_factor),
            write_consistency_factor: Some(c.write_consistency_factor),
            on_disk_payload: Some(c.on_disk),
            hnsw_config: hnsw,
            quantization_config: quantization,
            ..CreateCollection::default()
        }
    }

    fn index_request(&self, field: &str, is_tenant: bool) -> CreateFieldIndexCollection {
        CreateFieldIndexCollection {
            collection_name: self.cfg.collection.clone(),
            wait: Some(true),
            field_name: field.to_string(),
            field_type: Some(FieldType::Keyword as i32),
            field_index_params: Some(PayloadIndexParams {
                index_params: Some(IndexParams::KeywordIndexParams(KeywordIndexParams {
                    is_tenant: Some(is_tenant),
                    ..KeywordIndexParams::default()
                })),
            }),
            ..CreateFieldIndexCollection::default()
        }
    }

    /// Creates the Qdrant collection and its payload indexes when missing; returns its
    /// dimension.
    async fn prepare(&self, dimension: u64) -> Result<u64> {
        let name = self.name().to_string();
        let exists = self
            .client
            .collection_exists(name.as_str())
            .await
            .map_err(qdrant_err(format!("check collection {name}")))?;
        if !exists {
            if let Err(e) = self
                .client
                .create_collection(self.create_request(dimension))
                .await
            {
                // Another process may have created it meanwhile.
                let now = self
                    .client
                    .collection_exists(name.as_str())
                    .await
                    .map_err(qdrant_err(format!("check collection {name}")))?;
                if !now {
                    return Err(qdrant_err(format!("create collection {name}"))(e));
                }
            } else {
                tracing::info!(collection = %name, dimension, "created Qdrant collection");
            }
        }
        let tenant_field = self.cfg.tenant_field.clone();
        for (field, is_tenant) in [
            (tenant_field.as_str(), true),
            ("collection", false),
            ("document", false),
        ] {
            self.client
                .create_field_index(self.index_request(field, is_tenant))
                .await
                .map_err(qdrant_err(format!("index payload field {field} of {name}")))?;
        }
        let params = self
            .collection_params()
            .await?
            .ok_or_else(|| VectorError::Backend {
                backend: "qdrant",
                action: format!("read collection {name}"),
                message: "the collection does not exist".into(),
            })?;
        let size = params
            .vectors_config
            .and_then(|v| v.config)
            .and_then(|c| match c {
                vectors_config::Config::Params(p) => Some(p.size),
                vectors_config::Config::ParamsMap(_) => None,
            })
            .ok_or_else(|| VectorError::Backend {
                backend: "qdrant",
                action: format!("read collection {name}"),
                message: "the collection has no single unnamed vector".into(),
            })?;
        Ok(size)
    }
}

#[async_trait]
impl VectorIndex for QdrantIndex {
    async fn ensure_collection(&self, key: &CollectionKey, dimension: usize) -> Result<()> {
        let size = *self
            .ready
            .get_or_try_init(|| self.prepare(dimension as u64))
            .await?;
        if size != dimension as u64 {
            return Err(VectorError::Dimension {
                collection: format!("{} (Qdrant collection {})", key.collection, self.name()),
                expected: usize::try_from(size).unwrap_or(usize::MAX),
                got: dimension,
            });
        }
        Ok(())
    }

    async fn drop_collection(&self, key: &CollectionKey) -> Result<()> {
        let request = DeletePointsBuilder::new(self.name())
            .points(self.key_filter(key, None))
            .wait(true);
        match self.client.delete_points(request).await {
            Err(e) if is_not_found(&e) => Ok(()),
            r => r
                .map(|_| ())
                .map_err(qdrant_err(format!("delete collection {}", key.collection))),
        }
    }

    async fn upsert(&self, key: &CollectionKey, points: Vec<Point>) -> Result<()> {
        let action = format!("upsert points into collection {}", key.collection);
        let keyword = self.keyword_layout().await?.unwrap_or(false);
        let bm25 = Bm25::default();
        for batch in points.chunks(self.cfg.upsert_batch_size.max(1)) {
            let structs: Vec<PointStruct> = batch
                .iter()
                .map(|p| {
                    let payload: HashMap<String, Value> = HashMap::from([
                        (
                            self.cfg.tenant_field.clone(),
                            p.payload.tenant.clone().into(),
                        ),
                        ("collection".into(), p.payload.collection.clone().into()),
                        ("document".into(), p.payload.document.clone().into()),
                        ("title".into(), p.payload.title.clone().into()),
                        ("chunk".into(), i64::from(p.payload.chunk).into()),
                        ("text".into(), p.payload.text.clone().into()),
                        (
                            filter::METADATA.into(),
                            serde_json::Value::Object(p.metadata.clone()).into(),
                        ),
                    ]);
                    let vectors = if keyword {
                        let terms = sparse::document(
                            &p.payload.keyword_terms(),
                            bm25,
                            self.cfg.keyword_average_terms,
                        );
                        NamedVectors::default()
                            .add_vector("", p.vector.clone())
                            .add_vector(
                                QDRANT_KEYWORD_VECTOR,
                                Vector::new_sparse(terms.indices, terms.values),
                            )
                            .into()
                    } else {
                        p.vector.clone().into()
                    };
                    PointStruct {
                        id: Some(PointId::from(p.id)),
                        payload,
                        vectors: Some(vectors),
                    }
                })
                .collect();
            self.client
                .upsert_points(UpsertPointsBuilder::new(self.name(), structs).wait(true))
                .await
                .map_err(qdrant_err(&action))?;
        }
        Ok(())
    }

    async fn delete_chunks_from(
        &self,
        key: &CollectionKey,
        document: &str,
        first: u32,
    ) -> Result<u64> {
        let mut filter = self.key_filter(key, Some(document));
        if first > 0 {
            filter.must.push(Condition::range(
                "chunk",
                Range {
                    gte: Some(f64::from(first)),
                    ..Range::default()
                },
            ));
        }
        let n = self.count_matching(key, filter.clone()).await?;
        if n == 0 {
            return Ok(0);
        }
        let request = DeletePointsBuilder::new(self.name())
            .points(filter)
            .wait(true);
        self.client
            .delete_points(request)
            .await
            .map_err(qdrant_err(format!(
                "delete document {document} from collection {}",
                key.collection
            )))?;
        Ok(n)
    }

    async fn search(&self, query: Vec<f32>, k: usize, filter: Filter) -> Result<Vec<Hit>> {
        let Some(q) = self.search_filter(&filter).filter(|_| k > 0) else {
            return Ok(Vec::new());
        };
        let _timer = metrics::SEARCH_SECONDS.start_timer();
        let mut results = self
            .batch(vec![self.dense_query(query, k, q)], &filter)
            .await?;
        Ok(self.hits(results.pop().unwrap_or_default(), &filter, Hit::dense))
    }

    fn filters_metadata(&self, wanted: &crate::metadata::filter::MetadataFilter) -> bool {
        // Points carry their document's metadata since the collections got the keyword vector:
        // a collection without it may hold points without metadata too.
        self.keyword.get() == Some(&true) && filter::conditions(wanted).is_some()
    }

    async fn supports_keyword(&self) -> Result<bool> {
        // The server's version is read once; until the collection exists, assume it will be
        // made by this version.
        Ok(self.per_tenant_idf().await? && self.keyword.get().copied().unwrap_or(true))
    }

    async fn keyword_search(
        &self,
        terms: Vec<String>,
        k: usize,
        filter: Filter,
    ) -> Result<Vec<Hit>> {
        let Some(q) = self
            .search_filter(&filter)
            .filter(|_| k > 0 && !terms.is_empty())
        else {
            return Ok(Vec::new());
        };
        if !self.keyword_ready().await? {
            return Ok(Vec::new());
        }
        let _timer = metrics::SEARCH_SECONDS.start_timer();
        let mut results = self
            .batch(vec![self.keyword_query(&terms, k, &filter, q)], &filter)
            .await?;
        Ok(self.hits(results.pop().unwrap_or_default(), &filter, Hit::keyword))
    }

    async fn hybrid_search(&self, query: HybridQuery, filter: Filter) -> Result<Vec<Hit>> {
        let Some(q) = self.search_filter(&filter).filter(|_| query.k > 0) else {
            return Ok(Vec::new());
        };
        if !self.keyword_ready().await? {
            return Ok(Vec::new());
        }
        let _timer = metrics::SEARCH_SECONDS.start_timer();
        let candidates = query.candidates.max(query.k);
        let dense = self.dense_query(query.vector, candidates, q.clone());
        let keyword = self.keyword_query(&query.terms, candidates, &filter, q);
        // The two candidate lists come back either way: they carry each hit's dense and
        // keyword scores, which a fused result does not.
        let mut queries = vec![dense.clone(), keyword.clone()];
        let server_k = server_rrf_k(&query.fusion);
        if let Some(rrf_k) = server_k {
            let prefetch = |p: QueryPoints| {
                let mut b = PrefetchQueryBuilder::default()
                    .limit(candidates as u64)
                    .filter(p.filter.unwrap_or_default());
                if let Some(query) = p.query {
                    b = b.query(query);
                }
                if let Some(using) = p.using {
                    b = b.using(using);
                }
                if let Some(params) = p.params {
                    b = b.params(params);
                }
                b
            };
            let fused = QueryPointsBuilder::new(self.name())
                .add_prefetch(prefetch(dense))
                .add_prefetch(prefetch(keyword))
                .query(Query::new_rrf(Rrf {
                    k: Some(rrf_k),
                    weights: Vec::new(),
                }))
                .limit(query.k as u64)
                .with_payload(true)
                .build();
            queries.push(fused);
        }
        let mut results = self.batch(queries, &filter).await?.into_iter();
        let dense = self.hits(results.next().unwrap_or_default(), &filter, Hit::dense);
        let keyword = self.hits(results.next().unwrap_or_default(), &filter, Hit::keyword);
        let Some(fused) = results.next().filter(|_| server_k.is_some()) else {
            return Ok(query.fusion.fuse(dense, keyword, query.k));
        };
        let dense: HashMap<u64, f32> = dense.into_iter().map(|h| (h.id, h.score)).collect();
        let keyword: HashMap<u64, f32> = keyword.into_iter().map(|h| (h.id, h.score)).collect();
        let mut hits: Vec<Hit> = fused
            .into_iter()
            .filter_map(|p| self.result(p, &filter))
            .map(|(id, score, payload)| Hit {
                id,
                score,
                dense: dense.get(&id).copied(),
                keyword: keyword.get(&id).copied(),
                rerank: None,
                payload,
            })
            .collect();
        // The same order as fusion here: by score, ties by point id.
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        Ok(hits)
    }

    async fn count(&self, key: &CollectionKey, document: Option<&str>) -> Result<u64> {
        self.count_matching(key, self.key_filter(key, document))
            .await
    }

    async fn flush(&self) -> Result<()> {
        // Every write waited for Qdrant's acknowledgement.
        Ok(())
    }
}

impl QdrantIndex {
    /// Reads whether an existing Qdrant collection serves keyword search, so that requests
    /// that name no mode fall back to dense search from the first one on. Qdrant being down
    /// or slow leaves that to the first request.
    pub async fn inspect(&self) {
        let read = tokio::time::timeout(Duration::from_secs(2), self.per_tenant_idf()).await;
        if let Ok(Err(e)) = read {
            tracing::debug!(error = %e, "could not read the Qdrant server's version yet");
        }
        let read = tokio::time::timeout(Duration::from_secs(2), self.keyword_layout()).await;
        match read {
            Ok(Ok(Some(false))) => tracing::warn!(
                collection = %self.name(),
                "the Qdrant collection has no IDF-modified `keyword` sparse vector: keyword and \
                 hybrid search are off until it is recreated"
            ),
            Ok(Err(e)) => tracing::debug!(error = %e, "could not read the Qdrant collection yet"),
            _ => {}
        }
    }

    /// The Qdrant collection's parameters, `None` while it does not exist; reading them also
    /// records whether it serves keyword search.
    async fn collection_params(&self) -> Result<Option<qdrant_client::qdrant::CollectionParams>> {
        let name = self.name();
        let info = match self.client.collection_info(name).await {
            Err(e) if is_not_found(&e) => return Ok(None),
            r => r.map_err(qdrant_err(format!("read collection {name}")))?,
        };
        let params = info.result.and_then(|r| r.config).and_then(|c| c.params);
        let _ = self.keyword.set(has_keyword_vector(params.as_ref()));
        Ok(params)
    }

    /// Whether the Qdrant collection serves keyword search; `None` while it does not exist.
    async fn keyword_layout(&self) -> Result<Option<bool>> {
        if self.keyword.get().is_none() && self.collection_params().await?.is_none() {
            return Ok(None);
        }
        Ok(self.keyword.get().copied())
    }

    /// Whether the server honours a query's IDF corpus, read from its version once; an older
    /// one is logged as a warning.
    async fn per_tenant_idf(&self) -> Result<bool> {
        let read = self.idf_corpus.get_or_try_init(|| async {
            let failed = |unreachable, message| {
                vector_err(unreachable, "read the server's version".to_owned(), message)
            };
            let recent = self
                .version_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some((at, unreachable, message)) = recent {
                if at.elapsed() < VERSION_RETRY {
                    return Err(failed(unreachable, message));
                }
            }
            let reply = match self.client.health_check().await {
                Ok(reply) => reply,
                Err(e) => {
                    let (unreachable, message) = (is_unreachable(&e), e.to_string());
                    *self
                        .version_failure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) =
                        Some((Instant::now(), unreachable, message.clone()));
                    return Err(failed(unreachable, message));
                }
            };
            let honours = honours_idf_corpus(&reply.version);
            if !honours {
                tracing::warn!(
                    version = %reply.version,
                    "Qdrant servers older than 1.19 ignore a query's IDF corpus, so keyword \
                     statistics would mix tenants and collections: keyword and hybrid search \
                     are off, dense search is unaffected (upgrade Qdrant to enable them)"
                );
            }
            Ok(honours)
        });
        read.await.copied()
    }

    /// Whether keyword queries can run: `false` while the collection does not exist, an
    /// error when it exists without the `keyword` vector or the server is older than 1.19.
    async fn keyword_ready(&self) -> Result<bool> {
        if !self.per_tenant_idf().await? {
            return Err(VectorError::Unsupported {
                backend: "qdrant",
                what: "keyword and hybrid search on a Qdrant server older than 1.19, which \
                       ignores the per-tenant IDF corpus (upgrade Qdrant to enable them)",
            });
        }
        match self.keyword_layout().await? {
            None => Ok(false),
            Some(true) => Ok(true),
            Some(false) => Err(VectorError::Unsupported {
                backend: "qdrant",
                what: "keyword and hybrid search on a collection created without the \
                       IDF-modified `keyword` sparse vector (recreate it to enable them)",
            }),
        }
    }

    /// The search filter, or `None` when it selects no document at all.
    fn search_filter(&self, filter: &Filter) -> Option<QFilter> {
        let documents = match &filter.documents {
            Some(d) if d.is_empty() => return None,
            Some(d) => Some(d.iter().cloned().collect()),
            None => None,
        };
        let mut q = self.filter(&filter.tenant, &filter.collection, documents);
        if let Some(wanted) = &filter.metadata {
            // The caller pushes a filter down only when filters_metadata said it translates;
            // one that does not selects nothing rather than everything.
            q.must.extend(filter::conditions(wanted)?);
        }
        Some(q)
    }

    fn dense_params(&self) -> Option<SearchParams> {
        self.cfg.hnsw_ef.map(|ef| SearchParams {
            hnsw_ef: Some(ef),
            ..SearchParams::default()
        })
    }

    /// Keyword search parameters: document frequencies over the tenant's collection only.
    fn keyword_params(&self, filter: &Filter) -> SearchParams {
        SearchParams {
            idf: Some(IdfParams {
                corpus: Some(self.filter(&filter.tenant, &filter.collection, None)),
            }),
            ..SearchParams::default()
        }
    }

    fn dense_query(&self, vector: Vec<f32>, k: usize, filter: QFilter) -> QueryPoints {
        let mut q = QueryPointsBuilder::new(self.name())
            .query(Query::new_nearest(vector))
            .filter(filter)
            .limit(k as u64)
            .with_payload(true);
        if let Some(p) = self.dense_params() {
            q = q.params(p);
        }
        q.build()
    }

    fn keyword_query(
        &self,
        terms: &[String],
        k: usize,
        filter: &Filter,
        q: QFilter,
    ) -> QueryPoints {
        let v = sparse::query(terms);
        QueryPointsBuilder::new(self.name())
            .query(Query::new_nearest(VectorInput::new_sparse(
                v.indices, v.values,
            )))
            .using(QDRANT_KEYWORD_VECTOR)
            .filter(q)
            .params(self.keyword_params(filter))
            .limit(k as u64)
            .with_payload(true)
            .build()
    }

    /// Point id and payload of a result that passes `filter` (a second guard, behind Qdrant's
    /// own filter, against a misconfigured tenant field).
    fn result(&self, p: ScoredPoint, filter: &Filter) -> Option<(u64, f32, Payload)> {
        let id = match p.id?.point_id_options? {
            qdrant_client::qdrant::point_id::PointIdOptions::Num(n) => n,
            qdrant_client::qdrant::point_id::PointIdOptions::Uuid(_) => return None,
        };
        let payload = Payload {
            tenant: string(&p.payload, &self.cfg.tenant_field),
            collection: string(&p.payload, "collection"),
            document: string(&p.payload, "document"),
            title: string(&p.payload, "title"),
            chunk: u32::try_from(integer(&p.payload, "chunk")).unwrap_or(0),
            text: string(&p.payload, "text"),
        };
        filter.matches(&payload).then_some((id, p.score, payload))
    }

    fn hits(
        &self,
        points: Vec<ScoredPoint>,
        filter: &Filter,
        hit: fn(u64, f32, Payload) -> Hit,
    ) -> Vec<Hit> {
        points
            .into_iter()
            .filter_map(|p| self.result(p, filter))
            .map(|(id, score, payload)| hit(id, score, payload))
            .collect()
    }

    /// Runs `queries` in one round trip; a missing collection answers empty lists.
    async fn batch(
        &self,
        queries: Vec<QueryPoints>,
        filter: &Filter,
    ) -> Result<Vec<Vec<ScoredPoint>>> {
        let n = queries.len();
        match self
            .client
            .query_batch(QueryBatchPointsBuilder::new(self.name(), queries))
            .await
        {
            Err(e) if is_not_found(&e) => Ok(vec![Vec::new(); n]),
            r => Ok(r
                .map_err(qdrant_err(format!(
                    "search collection {}",
                    filter.collection
                )))?
                .result
                .into_iter()
                .map(|b| b.result)
                .collect()),
        }
    }

    /// Exactly how many points of `key`'s collection match `filter`.
    async fn count_matching(&self, key: &CollectionKey, filter: QFilter) -> Result<u64> {
        let request = CountPointsBuilder::new(self.name())
            .filter(filter)
            .exact(true);
        match self.client.count(request).await {
            Err(e) if is_not_found(&e) => Ok(0),
            r => Ok(r
                .map_err(qdrant_err(format!(
                    "count the points of collection {}",
                    key.collection
                )))?
                .result
                .map_or(0, |c| c.count)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idf_corpus_needs_qdrant_1_19() {
        for old in ["1.18.3", "1.9.0", "0.11.7", "v1.18.0"] {
            assert!(!honours_idf_corpus(old), "{old}");
        }
        for new in [
            "1.19.0",
            "1.19.0-dev",
            "1.20.1",
            "2.0.0",
            "v1.19.1+abc",
            "unknown",
        ] {
            assert!(honours_idf_corpus(new), "{new}");
        }
    }

    #[test]
    #[allow(deprecated)]
    fn create_request_carries_the_configured_layout() {
        let mut cfg = QdrantIndexConfig::new("http://127.0.0.1:6334");
        cfg.shard_number = 6;
        cfg.replication_factor = 2;
        cfg.write_consistency_factor = 2;
        cfg.on_disk = true;
        cfg.hnsw.m = Some(0);
        cfg.hnsw.payload_m = Some(16);
        cfg.quantization = Some(ragplane_config::QdrantQuantization {
            kind: QuantizationKind::Scalar,
            quantile: Some(0.99),
            always_ram: true,
        });
        let idx = QdrantIndex::open(cfg).unwrap();
        let req = idx.create_request(384);
        assert_eq!(req.collection_name, "ragplane");
        assert_eq!(
            (
                req.shard_number,
                req.replication_factor,
                req.write_consistency_factor,
                req.on_disk_payload
            ),
            (Some(6), Some(2), Some(2), Some(true))
        );
        let Some(vectors_config::Config::Params(v)) = req.vectors_config.unwrap().config else {
            panic!("single vector params")
        };
        assert_eq!((v.size, v.on_disk), (384, Some(true)));
        let keyword = &req.sparse_vectors_config.as_ref().unwrap().map[QDRANT_KEYWORD_VECTOR];
        assert_eq!(keyword.modifier, Some(Modifier::Idf as i32));
        let hnsw = req.hnsw_config.unwrap();
        assert_eq!((hnsw.m, hnsw.payload_m), (Some(0), Some(16)));
        let Some(quantization_config::Quantization::Scalar(s)) =
            req.quantization_config.unwrap().quantization
        else {
            panic!("scalar quantization")
        };
        assert_eq!((s.quantile, s.always_ram), (Some(0.99), Some(true)));
        let tenant = idx.index_request("tenant", true);
        let Some(IndexParams::KeywordIndexParams(k)) =
            tenant.field_index_params.unwrap().index_params
        else {
            panic!("keyword index")
        };
        assert_eq!(k.is_tenant, Some(true));
    }

    #[test]
    fn qdrant_fuses_only_what_it_ranks_exactly_as_here() {
        use super::super::Fusion;
        assert_eq!(server_rrf_k(&Fusion::default()), Some(61));
        let weighted = Fusion {
            keyword_weight: 2.0,
            ..Fusion::default()
        };
        assert_eq!(server_rrf_k(&weighted), None);
        let fractional = Fusion {
            rrf_k: 60.5,
            ..Fusion::default()
        };
        assert_eq!(server_rrf_k(&fractional), None);
        let dbsf = Fusion {
            method: FusionMethod::Dbsf,
            ..Fusion::default()
        };
        assert_eq!(server_rrf_k(&dbsf), None);
    }

    #[test]
    fn an_overloaded_or_unreachable_server_is_unavailable() {
        use tonic::{Code, Status};
        let unavailable = |status: Status| is_unreachable(&QdrantError::from(status));
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Unavailable,
            // Overloaded: with a retry-after (the client's own error) or without.
            Code::ResourceExhausted,
        ] {
            assert!(unavailable(Status::new(code, "busy")), "{code:?}");
        }
        let mut busy = Status::resource_exhausted("busy");
        busy.metadata_mut()
            .insert("retry-after", "3".parse().unwrap());
        assert!(matches!(
            QdrantError::from(busy.clone()),
            QdrantError::ResourceExhaustedError { .. }
        ));
        assert!(unavailable(busy));
        assert!(unavailable(Status::internal(
            "Failed to connect to http://q:6334"
        )));
        for code in [Code::InvalidArgument, Code::NotFound, Code::Internal] {
            assert!(!unavailable(Status::new(code, "no")), "{code:?}");
        }
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        // Nothing listens on port 9 (discard) of loopback here.
        let mut cfg = QdrantIndexConfig::new("http://127.0.0.1:9");
        cfg.connect_timeout_secs = 1;
        cfg.timeout_secs = 2;
        let idx = QdrantIndex::open(cfg).unwrap();
        let key = CollectionKey {
            tenant: "t".into(),
            collection: "c".into(),
        };
        let err = idx.count(&key, None).await.unwrap_err();
        assert!(
            matches!(
                err,
                VectorError::Unavailable {
                    backend: "qdrant",
                    ..
                }
            ),
            "{err:?}"
        );
        let api = crate::error::Error::from(err);
        let (status, _, retry_after) = crate::api::error::classify(&api);
        assert_eq!((status.as_u16(), retry_after), (503, Some(2)), "{api:?}");
    }

    #[tokio::test]
    async fn a_hung_server_costs_each_request_one_timeout_at_most() {
        // A server that accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                open.push(conn);
            }
        });
        let mut cfg = QdrantIndexConfig::new(format!("http://{addr}"));
        cfg.connect_timeout_secs = 1;
        cfg.timeout_secs = 1;
        let idx = std::sync::Arc::new(QdrantIndex::open(cfg).unwrap());
        // Requests that need the server's version arrive together: the first waits for the
        // timeout, the others get its failure instead of each waiting in turn.
        let started = Instant::now();
        let asks: Vec<_> = (0..5)
            .map(|_| {
                let idx = idx.clone();
                tokio::spawn(async move { idx.supports_keyword().await })
            })
            .collect();
        for ask in asks {
            let err = ask.await.unwrap().unwrap_err();
            assert!(
                matches!(err, VectorError::Unavailable { .. }),
                "{err:?}: a timeout is the server being unavailable"
            );
            assert!(
                err.to_string().contains("read the server's version"),
                "{err}"
            );
        }
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_millis(2500),
            "5 requests waited {waited:?} for a server with a 1 s timeout"
        );
        // Once the failure is older than the retry interval, the next request asks again.
        tokio::time::sleep(VERSION_RETRY).await;
        let started = Instant::now();
        assert!(idx.supports_keyword().await.is_err());
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "it did not ask the server"
        );
        held.abort();
    }
}
