//! Vector index selection: the embedded HNSW index, a Qdrant cluster, or the PostgreSQL-backed
//! index (a shared table with a per-process HNSW replica).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Secret};

/// Vector index selection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum VectorIndexConfig {
    /// The embedded HNSW index, persisted under the data directory.
    Embedded(EmbeddedIndexConfig),
    /// A Qdrant cluster over gRPC.
    Qdrant(QdrantIndexConfig),
    /// PostgreSQL as the shared store, with an in-memory HNSW replica in each process.
    Postgres(PostgresIndexConfig),
}

impl VectorIndexConfig {
    /// The backend's name, as in the configuration.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "embedded",
            Self::Qdrant(_) => "qdrant",
            Self::Postgres(_) => "postgres",
        }
    }
}

impl Default for VectorIndexConfig {
    fn default() -> Self {
        Self::Embedded(EmbeddedIndexConfig::default())
    }
}

/// Settings of the embedded HNSW index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedIndexConfig {
    /// Directory; defaults to `<data_dir>/vectors`.
    pub dir: Option<PathBuf>,
    /// HNSW graph degree (M).
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching.
    pub ef_search: usize,
    /// Write-ahead log size, in bytes, after which a snapshot is written and the log truncated.
    pub snapshot_after_bytes: u64,
}

impl Default for EmbeddedIndexConfig {
    fn default() -> Self {
        Self {
            dir: None,
            m: 16,
            ef_construction: 128,
            ef_search: 64,
            snapshot_after_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Settings of the Qdrant backend.
///
/// All tenants and all data-plane collections share one Qdrant collection (`collection`),
/// partitioned by the tenant payload field (a keyword index marked `is_tenant`) and filtered by
/// the `collection` payload field. This is the `Shared` tenancy of the operator's Collection
/// resource: point `collection` at that resource's Qdrant collection name. The creation
/// settings below apply only when the data plane creates the collection itself (no operator).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QdrantIndexConfig {
    /// gRPC URL, for example `http://qdrant:6334`.
    pub url: String,
    /// API key, if the cluster needs one.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Qdrant collection holding every point.
    #[serde(default = "default_qdrant_collection")]
    pub collection: String,
    /// Payload field holding the tenant; indexed as a tenant keyword index.
    #[serde(default = "default_tenant_field")]
    pub tenant_field: String,
    /// Seconds allowed for one request.
    #[serde(default = "default_qdrant_timeout")]
    pub timeout_secs: u64,
    /// Seconds allowed to open a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Points per upsert request.
    #[serde(default = "default_qdrant_batch")]
    pub upsert_batch_size: usize,
    /// Candidate list size while searching; Qdrant's own default when absent.
    #[serde(default)]
    pub hnsw_ef: Option<u64>,
    /// Shards (fixed at creation).
    #[serde(default = "one")]
    pub shard_number: u32,
    /// Copies of each shard.
    #[serde(default = "one")]
    pub replication_factor: u32,
    /// Replicas that must acknowledge a write.
    #[serde(default = "one")]
    pub write_consistency_factor: u32,
    /// Keep vectors and payloads on disk instead of in RAM.
    #[serde(default)]
    pub on_disk: bool,
    /// HNSW settings at creation; Qdrant's defaults for those absent.
    #[serde(default)]
    pub hnsw: QdrantHnswConfig,
    /// Vector quantization at creation.
    #[serde(default)]
    pub quantization: Option<QdrantQuantization>,
    /// Average length, in analysed terms, that BM25 normalises a chunk's length against.
    /// Qdrant stores each chunk's term weights when the chunk is written, so the average is a
    /// setting here rather than the live statistic the other backends use; set it to the
    /// average of your corpus (what `ragplane eval` prints for the embedded backend) for scores
    /// identical to theirs.
    #[serde(default = "default_keyword_average_terms")]
    pub keyword_average_terms: f32,
}

/// Name of the sparse vector that holds a Qdrant point's BM25 term weights; the collection
/// gives it the IDF modifier, so Qdrant multiplies each query term by its inverse document
/// frequency.
pub const QDRANT_KEYWORD_VECTOR: &str = "keyword";

/// HNSW settings of a Qdrant collection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct QdrantHnswConfig {
    /// Graph degree (M); 0 with `payload_m` builds per-tenant graphs only.
    pub m: Option<u64>,
    /// Candidate list size while building.
    pub ef_construct: Option<u64>,
    /// Below this many kilobytes of vectors a segment is searched exactly.
    pub full_scan_threshold: Option<u64>,
    /// Graph degree of the per-tenant graphs.
    pub payload_m: Option<u64>,
    /// Keep the graph on disk.
    pub on_disk: Option<bool>,
}

/// Quantization of a Qdrant collection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QdrantQuantization {
    /// `scalar` (int8) or `binary`.
    #[serde(rename = "type")]
    pub kind: QuantizationKind,
    /// Quantile for scalar quantization, in (0.5, 1].
    #[serde(default)]
    pub quantile: Option<f32>,
    /// Keep the quantized vectors in RAM.
    #[serde(default)]
    pub always_ram: bool,
}

/// Kind of quantization.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum QuantizationKind {
    /// int8 scalar quantization.
    Scalar,
    /// One bit per dimension.
    Binary,
}

/// Settings of the PostgreSQL-backed index.
///
/// PostgreSQL holds every point durably and is shared by all processes; each process keeps an
/// in-memory HNSW replica per collection it searches and brings it up to date from the table
/// before a search.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresIndexConfig {
    /// Connection URL, for example `postgres://ragplane:pw@db:5432/ragplane`. May be the
    /// metadata store's database: the index keeps to its own tables (`ragplane_vector_*`).
    pub url: Secret,
    /// PEM file of the certificate authorities that sign the server's certificate, trusted
    /// besides the system's roots; as `metadata.ca_file`, it makes the connection TLS with the
    /// certificate and host name verified (`sslmode=verify-full` unless the URL asks for
    /// `verify-ca`).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Largest number of pooled connections.
    #[serde(default = "default_pg_connections")]
    pub max_connections: u32,
    /// Seconds to wait for a connection before the index answers "unavailable".
    #[serde(default = "default_connect_timeout")]
    pub acquire_timeout_secs: u64,
    /// Points per insert statement.
    #[serde(default = "default_pg_batch")]
    pub upsert_batch_size: usize,
    /// Rows read per statement while a replica catches up.
    #[serde(default = "default_catch_up_batch")]
    pub catch_up_batch_size: usize,
    /// Milliseconds a replica may go without checking the table before a search; 0 checks on
    /// every search, so every search sees every committed write.
    #[serde(default)]
    pub max_staleness_ms: u64,
    /// HNSW graph degree (M) of the replicas.
    #[serde(default = "default_m")]
    pub m: usize,
    /// Candidate list size while building the replicas.
    #[serde(default = "default_ef_construction")]
    pub ef_construction: usize,
    /// Candidate list size while searching.
    #[serde(default = "default_ef_search")]
    pub ef_search: usize,
}

impl PostgresIndexConfig {
    /// Settings with defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url),
            ca_file: None,
            max_connections: default_pg_connections(),
            acquire_timeout_secs: default_connect_timeout(),
            upsert_batch_size: default_pg_batch(),
            catch_up_batch_size: default_catch_up_batch(),
            max_staleness_ms: 0,
            m: default_m(),
            ef_construction: default_ef_construction(),
            ef_search: default_ef_search(),
        }
    }
}

impl QdrantIndexConfig {
    /// Settings with defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api_key: None,
            collection: default_qdrant_collection(),
            tenant_field: default_tenant_field(),
            timeout_secs: default_qdrant_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            upsert_batch_size: default_qdrant_batch(),
            hnsw_ef: None,
            shard_number: 1,
            replication_factor: 1,
            write_consistency_factor: 1,
            on_disk: false,
            hnsw: QdrantHnswConfig::default(),
            quantization: None,
            keyword_average_terms: default_keyword_average_terms(),
        }
    }
}

fn default_qdrant_collection() -> String {
    "ragplane".into()
}
fn default_tenant_field() -> String {
    "tenant".into()
}
fn default_qdrant_timeout() -> u64 {
    30
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_keyword_average_terms() -> f32 {
    100.0
}
fn default_qdrant_batch() -> usize {
    256
}
fn one() -> u32 {
    1
}
fn default_pg_connections() -> u32 {
    8
}
fn default_pg_batch() -> usize {
    500
}
fn default_catch_up_batch() -> usize {
    5000
}
fn default_m() -> usize {
    EmbeddedIndexConfig::default().m
}
fn default_ef_construction() -> usize {
    EmbeddedIndexConfig::default().ef_construction
}
fn default_ef_search() -> usize {
    EmbeddedIndexConfig::default().ef_search
}

fn check(out: &mut Vec<ConfigError>, ok: bool, field: &str, message: impl Into<String>) {
    if !ok {
        out.push(ConfigError {
            field: format!("vectors.{field}"),
            message: message.into(),
        });
    }
}

fn check_hnsw(out: &mut Vec<ConfigError>, m: usize, ef_construction: usize, ef_search: usize) {
    check(
        out,
        (2..=128).contains(&m),
        "m",
        "must be between 2 and 128",
    );
    check(
        out,
        ef_construction >= m,
        "ef_construction",
        "must be at least vectors.m",
    );
    check(out, ef_search >= 1, "ef_search", "must be at least 1");
}

fn is_name(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

impl VectorIndexConfig {
    /// Every invalid setting of the section, with dotted paths under `vectors.`.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        match self {
            Self::Embedded(v) => check_hnsw(&mut out, v.m, v.ef_construction, v.ef_search),
            Self::Qdrant(q) => {
                check(
                    &mut out,
                    q.url.starts_with("http://") || q.url.starts_with("https://"),
                    "url",
                    format!("must be an http:// or https:// URL, got {:?}", q.url),
                );
                check(
                    &mut out,
                    is_name(&q.collection),
                    "collection",
                    "must be 1-255 characters of A-Z, a-z, 0-9, '_', '-', '.'",
                );
                check(
                    &mut out,
                    is_name(&q.tenant_field),
                    "tenant_field",
                    "must be 1-255 characters of A-Z, a-z, 0-9, '_', '-', '.'",
                );
                check(
                    &mut out,
                    q.timeout_secs >= 1,
                    "timeout_secs",
                    "must be at least 1",
                );
                check(
                    &mut out,
                    q.connect_timeout_secs >= 1,
                    "connect_timeout_secs",
                    "must be at least 1",
                );
                check(
                    &mut out,
                    (1..=10_000).contains(&q.upsert_batch_size),
                    "upsert_batch_size",
                    "must be between 1 and 10000",
                );
                check(
                    &mut out,
                    q.hnsw_ef.is_none_or(|ef| ef >= 1),
                    "hnsw_ef",
                    "must be at least 1",
                );
                check(
                    &mut out,
                    q.shard_number >= 1,
                    "shard_number",
                    "must be at least 1",
                );
                check(
                    &mut out,
                    q.replication_factor >= 1,
                    "replication_factor",
                    "must be at least 1",
                );
                check(
                    &mut out,
                    (1..=q.replication_factor.max(1)).contains(&q.write_consistency_factor),
                    "write_consistency_factor",
                    format!(
                        "must be between 1 and vectors.replication_factor ({})",
                        q.replication_factor
                    ),
                );
                if let Some(qz) = &q.quantization {
                    check(
                        &mut out,
                        qz.quantile.is_none_or(|x| x > 0.5 && x <= 1.0),
                        "quantization.quantile",
                        "must be in (0.5, 1]",
                    );
                }
            }
            Self::Postgres(p) => {
                let url = p.url.expose();
                check(
                    &mut out,
                    url.starts_with("postgres://") || url.starts_with("postgresql://"),
                    "url",
                    "must be a postgres:// or postgresql:// URL",
                );
                if p.ca_file.is_some() {
                    if let Some(problem) =
                        crate::scale_out::unverified_sslmode(url, "vectors.ca_file")
                    {
                        check(&mut out, false, "url", problem);
                    }
                }
                check(
                    &mut out,
                    p.max_connections >= 1,
                    "max_connections",
                    "must be at least 1",
                );
                check(
                    &mut out,
                    p.acquire_timeout_secs >= 1,
                    "acquire_timeout_secs",
                    "must be at least 1",
                );
                check(
                    &mut out,
                    (1..=10_000).contains(&p.upsert_batch_size),
                    "upsert_batch_size",
                    "must be between 1 and 10000",
                );
                check(
                    &mut out,
                    p.catch_up_batch_size >= 1,
                    "catch_up_batch_size",
                    "must be at least 1",
                );
                check_hnsw(&mut out, p.m, p.ef_construction, p.ef_search);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, VectorIndexConfig};

    #[test]
    fn qdrant_section_parses_with_defaults() {
        let c: Config = toml::from_str(
            r#"
            [vectors]
            backend = "qdrant"
            url = "http://qdrant:6334"
            api_key = "k3y"
            shard_number = 6
            replication_factor = 2
            write_consistency_factor = 2
            hnsw_ef = 128
            [vectors.hnsw]
            m = 0
            payload_m = 16
            [vectors.quantization]
            type = "scalar"
            quantile = 0.99
            always_ram = true
            "#,
        )
        .unwrap();
        let VectorIndexConfig::Qdrant(q) = &c.vectors else {
            panic!("expected qdrant, got {:?}", c.vectors)
        };
        assert_eq!(
            (q.collection.as_str(), q.tenant_field.as_str()),
            ("ragplane", "tenant")
        );
        assert_eq!((q.shard_number, q.upsert_batch_size), (6, 256));
        assert_eq!(q.hnsw.payload_m, Some(16));
        assert!(!format!("{c:?}").contains("k3y"));
        c.validate().unwrap();
        let back: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn postgres_section_parses_and_hides_the_url() {
        let c: Config = toml::from_str(
            r#"
            [vectors]
            backend = "postgres"
            url = "postgres://u:pw@db/ragplane"
            ef_search = 100
            "#,
        )
        .unwrap();
        let VectorIndexConfig::Postgres(p) = &c.vectors else {
            panic!("expected postgres, got {:?}", c.vectors)
        };
        assert_eq!((p.ef_search, p.m, p.max_staleness_ms), (100, 16, 0));
        assert!(!format!("{c:?}").contains("pw@"));
        c.validate().unwrap();
    }

    #[test]
    fn invalid_vector_settings_name_their_paths() {
        let mut c = Config::default();
        let mut q = crate::QdrantIndexConfig::new("qdrant:6334");
        q.replication_factor = 1;
        q.write_consistency_factor = 2;
        q.upsert_batch_size = 0;
        c.vectors = VectorIndexConfig::Qdrant(q);
        let err = c.validate().unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "vectors.url",
                "vectors.upsert_batch_size",
                "vectors.write_consistency_factor"
            ]
        );

        let mut p = crate::PostgresIndexConfig::new("mysql://x");
        p.ef_construction = 1;
        c.vectors = VectorIndexConfig::Postgres(p);
        let err = c.validate().unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["vectors.url", "vectors.ef_construction"]);
    }

    #[test]
    fn unknown_backend_is_rejected() {
        let err = toml::from_str::<Config>("[vectors]\nbackend = \"faiss\"").unwrap_err();
        assert!(err.to_string().contains("faiss"), "{err}");
    }
}
