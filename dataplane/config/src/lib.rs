//! Configuration schema of the ragplane data plane.
//!
//! The data plane parses this schema (from a TOML file, environment and flags) and the operator
//! renders it into a ConfigMap, so both halves share one definition of its shape. The crate keeps
//! to light dependencies (serde and thiserror) so that the operator can depend on it too.
//!
//! Every section has defaults that make a zero-configuration process work: SQLite metadata, a
//! local object store, the embedded vector index, the SQLite queue and the in-process cache, all
//! under [`Config::data_dir`].

#![forbid(unsafe_code)]

mod console;
mod embed_server;
mod generation;
#[cfg(feature = "load")]
pub mod load;
mod ollama;
mod redis;
mod scale_out;
mod search;
mod secret;
mod validate;
mod vectors;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use console::ConsoleConfig;
pub use embed_server::{
    DeviceSelection, EmbedServerConfig, RemoteEmbedderConfig, RemoteProtocol,
    DEFAULT_GPU_MAX_BATCH_TOKENS,
};
pub use generation::GenerationPoolConfig;
pub use ollama::OllamaEmbeddingConfig;
pub use redis::{FailMode, JobQueueSettings, RateLimitBackend, RateLimitConfig, RedisConfig};
pub use scale_out::{PostgresConfig, S3Config, S3_MIN_PART_BYTES};
pub use search::{FusionMethod, RerankConfig, RerankProtocol, SearchConfig, SearchMode};
pub use secret::{new_api_key, Secret};
pub use validate::{ConfigError, ValidationErrors};
pub use vectors::{
    EmbeddedIndexConfig, PostgresIndexConfig, QdrantHnswConfig, QdrantIndexConfig,
    QdrantQuantization, QuantizationKind, VectorIndexConfig, QDRANT_KEYWORD_VECTOR,
};

/// The whole data-plane configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory holding every embedded backend's files.
    pub data_dir: PathBuf,
    /// HTTP server settings.
    pub server: ServerConfig,
    /// Authentication settings.
    pub auth: AuthConfig,
    /// Request and payload limits.
    pub limits: LimitsConfig,
    /// Retrieval defaults: search mode and hybrid fusion.
    pub search: SearchConfig,
    /// Reranking of retrieved chunks by a cross-encoder endpoint, when configured.
    pub rerank: Option<RerankConfig>,
    /// Metadata store (tenants, keys, collections, documents).
    pub metadata: MetadataConfig,
    /// Object store for original documents.
    pub objects: ObjectStoreConfig,
    /// Vector index.
    pub vectors: VectorIndexConfig,
    /// Job queue.
    pub queue: QueueConfig,
    /// Redis connection, shared by the Redis queue, the second cache layer and the rate limiter.
    pub redis: Option<RedisConfig>,
    /// Per-API-key rate limiting.
    pub rate_limit: RateLimitConfig,
    /// Caches for embeddings and query results.
    pub cache: CacheConfig,
    /// Embedding model and its execution.
    pub embedding: EmbeddingConfig,
    /// Answer generation.
    pub generation: GenerationConfig,
    /// Document chunking.
    pub chunking: ChunkingConfig,
    /// How documents are parsed: in a child process with limits, or in this one.
    pub parsing: ParsingConfig,
    /// In-process queue workers.
    pub workers: WorkerConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// `ragplane embed-server`.
    pub embed_server: EmbedServerConfig,
    /// The web console at `/ui`.
    pub console: ConsoleConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("ragplane-data"),
            server: ServerConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            search: SearchConfig::default(),
            rerank: None,
            metadata: MetadataConfig::default(),
            objects: ObjectStoreConfig::default(),
            vectors: VectorIndexConfig::default(),
            queue: QueueConfig::default(),
            redis: None,
            rate_limit: RateLimitConfig::default(),
            cache: CacheConfig::default(),
            embedding: EmbeddingConfig::default(),
            generation: GenerationConfig::default(),
            chunking: ChunkingConfig::default(),
            parsing: ParsingConfig::default(),
            workers: WorkerConfig::default(),
            telemetry: TelemetryConfig::default(),
            embed_server: EmbedServerConfig::default(),
            console: ConsoleConfig::default(),
        }
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Seconds to wait for in-flight requests on shutdown.
    pub shutdown_grace_secs: u64,
    /// Origins whose browser pages may call the API (CORS), each `scheme://host[:port]`.
    /// Empty (the default) answers no preflight and sends no CORS header, so browsers keep
    /// other sites' pages out; there is no wildcard.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace_secs: 20,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// Authentication settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Turns authentication off: every request acts as the default tenant's admin. Only for
    /// local use.
    pub disabled: bool,
    /// Admin key to create on first start instead of a random one. When absent a random key
    /// is generated and printed once.
    pub admin_key: Option<Secret>,
    /// Seconds a verified key is trusted without asking the metadata store again: the longest
    /// a revoked key keeps working on an instance that used it just before.
    pub key_cache_secs: u64,
    /// Failed authentications (unknown, revoked or expired keys) one client address may make
    /// per minute; past it, its requests get 429 with Retry-After before any key is looked up.
    pub failed_attempts_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            disabled: false,
            admin_key: None,
            key_cache_secs: 10,
            failed_attempts_per_minute: 30,
        }
    }
}

/// Limits that keep memory and latency bounded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body, in bytes (uploads included).
    pub max_body_bytes: usize,
    /// Requests served at once; beyond this the server answers 503 with Retry-After.
    pub max_concurrent_requests: usize,
    /// Largest `top_k` accepted by search and query.
    pub max_top_k: usize,
    /// Longest query text, in bytes.
    pub max_query_bytes: usize,
    /// Per-request timeout, in seconds.
    pub request_timeout_secs: u64,
    /// Documents waiting for or being indexed, over all tenants, past which uploads are
    /// refused with 429 and Retry-After until the workers catch up.
    pub max_ingest_backlog: i64,
    /// The same bound for one tenant, so that one tenant's bulk upload cannot fill the queue
    /// for everyone.
    pub max_tenant_ingest_backlog: i64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 * 1024 * 1024,
            max_concurrent_requests: 2048,
            max_top_k: 1000,
            max_query_bytes: 8 * 1024,
            request_timeout_secs: 120,
            max_ingest_backlog: 10_000,
            max_tenant_ingest_backlog: 1_000,
        }
    }
}

/// Metadata store selection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetadataConfig {
    /// SQLite file, embedded.
    Sqlite {
        /// Database file; defaults to `<data_dir>/metadata.db`.
        // Not serialised when absent, so that layering another backend over the defaults
        // (figment) leaves no stray `path` key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
    },
    /// PostgreSQL, shared by every API and worker process.
    Postgres(PostgresConfig),
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self::Sqlite { path: None }
    }
}

/// Object store selection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectStoreConfig {
    /// A local directory.
    Local {
        /// Root directory; defaults to `<data_dir>/objects`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dir: Option<PathBuf>,
    },
    /// S3 or an S3-compatible server (boxed: its settings outweigh the local variant's many
    /// times over).
    S3(Box<S3Config>),
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        Self::Local { dir: None }
    }
}

/// Job queue selection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum QueueConfig {
    /// Durable queue in the SQLite metadata database (one process).
    Sqlite(JobQueueSettings),
    /// Redis Streams, one consumer group per queue, shared by every process (needs `[redis]`).
    Redis(JobQueueSettings),
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self::Sqlite(JobQueueSettings::default())
    }
}

impl QueueConfig {
    /// The settings, whichever the backend.
    pub fn settings(&self) -> &JobQueueSettings {
        match self {
            Self::Sqlite(s) | Self::Redis(s) => s,
        }
    }
}

/// Settings of the SQLite queue (the same as every queue's).
pub type SqliteQueueConfig = JobQueueSettings;

/// Cache settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Cache query embeddings and chunk embeddings.
    pub embeddings: bool,
    /// Largest number of cached embeddings in process.
    pub embedding_capacity: u64,
    /// Seconds an embedding stays cached.
    pub embedding_ttl_secs: u64,
    /// Cache search results (invalidated by collection version).
    pub results: bool,
    /// Largest number of cached search results in process.
    pub result_capacity: u64,
    /// Seconds a search result stays cached.
    pub result_ttl_secs: u64,
    /// Keep a second layer of both caches in Redis (`[redis]`), shared by every instance. A
    /// Redis failure counts as a miss.
    pub redis_l2: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            embeddings: true,
            embedding_capacity: 100_000,
            embedding_ttl_secs: 3600,
            results: true,
            result_capacity: 10_000,
            result_ttl_secs: 300,
            redis_l2: false,
        }
    }
}

/// Embedding model and execution settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// Directory holding `model.onnx` and `tokenizer.json`. Defaults to the directory the
    /// setup script fills: `$RAGPLANE_CACHE/models/all-minilm-l6-v2-int8`.
    pub model_dir: Option<PathBuf>,
    /// Path of the ONNX Runtime shared library. Defaults to
    /// `$RAGPLANE_CACHE/onnxruntime/libonnxruntime.so`.
    pub ort_library: Option<PathBuf>,
    /// Name reported for the model and used in cache keys.
    pub model_name: String,
    /// Dimension of the model's vectors.
    pub dimension: usize,
    /// Inference threads (each owns one ONNX Runtime session). With `bulk_sessions` they serve
    /// only queries; without, they serve queries first and ingestion in between.
    pub sessions: usize,
    /// Sessions that embed only ingestion, on threads at a lower OS priority (`bulk_nice`), so
    /// that a query's inference thread takes the CPU from them at once. 0 leaves ingestion to
    /// `sessions`, in batches of `bulk_batch_tokens` between queries. CPU only: on a GPU every
    /// session serves both.
    pub bulk_sessions: usize,
    /// Niceness added to the bulk sessions' threads (and their ONNX Runtime threads), 0 to 19.
    pub bulk_nice: i32,
    /// Intra-op threads of each session; 0 means the number of cores divided by `sessions`
    /// (every core for a bulk session).
    pub intra_threads: usize,
    /// Cap on padded tokens (batch size times longest sequence) in one batch.
    pub max_batch_tokens: usize,
    /// Cap on padded tokens in one batch of bulk work (ingestion) on a session that also serves
    /// queries (no `bulk_sessions`). Between two such batches the session serves any waiting
    /// query, so this bounds how long ingestion can delay a query. Capped by `max_batch_tokens`.
    pub bulk_batch_tokens: usize,
    /// Longest input in tokens, special tokens included; longer inputs are truncated.
    pub max_seq_len: usize,
    /// Requests waiting for inference; beyond this callers get 429.
    pub queue_capacity: usize,
    /// Embed with an Ollama server instead of the in-process model (`[embedding.ollama]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ollama: Option<OllamaEmbeddingConfig>,
    /// Embed on `ragplane embed-server` instances instead of in this process.
    pub remote: Option<RemoteEmbedderConfig>,
    /// The model a collection is being switched away from (`[embedding.previous]`, the same
    /// settings as `[embedding]`): while `ragplane reindex` builds a collection's points with
    /// this section's model, searches embed their queries with the previous model and keep
    /// using the collection's current points, so no document drops out of results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<EmbeddingConfig>>,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        Self {
            model_dir: None,
            ort_library: None,
            model_name: "all-MiniLM-L6-v2-int8".into(),
            dimension: 384,
            sessions: 1,
            bulk_sessions: 1,
            bulk_nice: 10,
            intra_threads: 0,
            max_batch_tokens: 16_384,
            bulk_batch_tokens: 1_024,
            max_seq_len: 256,
            queue_capacity: 1024,
            ollama: None,
            remote: None,
            previous: None,
        }
    }
}

/// Answer generation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum GenerationConfig {
    /// No generator: `/v1/query` returns sources only. (A struct variant, so that a generation
    /// setting given without a provider is refused instead of silently dropped.)
    None {},
    /// An Ollama server, native `/api/chat`.
    Ollama(GeneratorEndpoint),
    /// An OpenAI-compatible server, `/v1/chat/completions`.
    Openai(GeneratorEndpoint),
}

impl GenerationConfig {
    /// The servers and settings of the generator, when one is set up.
    pub fn endpoint(&self) -> Option<&GeneratorEndpoint> {
        match self {
            Self::None {} => None,
            Self::Ollama(ep) | Self::Openai(ep) => Some(ep),
        }
    }
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self::None {}
    }
}

/// The servers of one generation model and how they are used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GeneratorEndpoint {
    /// Base URL of one server, for example `http://127.0.0.1:11434` (Ollama) or
    /// `http://127.0.0.1:8000/v1` (OpenAI-compatible). May be left out when `urls` is given.
    #[serde(default)]
    pub url: String,
    /// Base URLs of more servers of the same model; requests are spread over `url` and these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Model name sent to the server.
    pub model: String,
    /// Bearer token, if the server needs one.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Seconds allowed for the whole generation.
    #[serde(default = "default_generation_timeout")]
    pub timeout_secs: u64,
    /// Tokens to generate at most when a request names no `max_tokens`.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// The largest `max_tokens` a request may ask for; a request above it is refused (422)
    /// rather than left to hold a server for as long as it likes.
    #[serde(default = "default_max_tokens_limit")]
    pub max_tokens_limit: u32,
    /// Routing, health checks and timeouts of the servers (`[generation.pool]`).
    #[serde(default)]
    pub pool: GenerationPoolConfig,
}

fn default_generation_timeout() -> u64 {
    120
}

fn default_max_tokens() -> u32 {
    512
}

fn default_max_tokens_limit() -> u32 {
    4096
}

/// Document chunking.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkingConfig {
    /// Tokens per chunk (model tokens, special tokens excluded).
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks.
    pub overlap_tokens: usize,
    /// Largest extracted text per document, in bytes.
    pub max_document_bytes: usize,
    /// Embed each chunk with its document's title in front (`title`, a blank line, the chunk
    /// text), so that every chunk carries what the document is about. The stored chunk text
    /// is unchanged; keyword search always indexes the title with each chunk.
    pub embed_title: bool,
    /// Also embed the Markdown or HTML heading path in force at each chunk's start, on its own
    /// line after the title (`Setup > Install`), so that a chunk deep in a section carries its
    /// section's name ("title + heading path + text", which measures better than the text
    /// alone: docs/retrieval-quality.md). Changing it changes new vectors only; `ragplane
    /// reindex` re-embeds a collection.
    pub embed_headings: bool,
}

impl Default for ChunkingConfig {
    fn default() -> Self {
        Self {
            chunk_tokens: 200,
            overlap_tokens: 40,
            max_document_bytes: 16 * 1024 * 1024,
            embed_title: true,
            embed_headings: true,
        }
    }
}

/// Where documents are parsed, and with what limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ParsingConfig {
    /// `process`: each document is parsed in a child process (this binary, run again) under
    /// the memory and CPU limits below, so a decompression bomb or a parser bug fails that
    /// document and nothing else. `inline`: parsed on a thread of this process, without
    /// those limits; only the text budget (`chunking.max_document_bytes`) applies.
    pub isolation: ParseIsolation,
    /// Address space a parsing child may use, in MiB.
    pub max_memory_mib: u64,
    /// Seconds a document's parse may take, as CPU time in the child and as wall time overall.
    pub timeout_secs: u64,
    /// The program run as the child, with the hidden `parse-document` subcommand; by default
    /// the running executable.
    pub program: Option<PathBuf>,
}

impl Default for ParsingConfig {
    fn default() -> Self {
        Self {
            isolation: ParseIsolation::Process,
            max_memory_mib: 1024,
            timeout_secs: 60,
            program: None,
        }
    }
}

/// Where documents are parsed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ParseIsolation {
    /// In a child process with memory and CPU limits.
    Process,
    /// On a thread of the serving process.
    Inline,
}

/// In-process workers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Run queue workers inside `ragplane serve`.
    pub enabled: bool,
    /// Jobs processed at once.
    pub concurrency: usize,
    /// Milliseconds between polls of an empty queue.
    pub poll_interval_ms: u64,
    /// Seconds one job may run: past it the attempt is abandoned, and the job retried (or
    /// dead-lettered once out of attempts), so a hung parse cannot hold its job forever.
    pub max_job_seconds: u64,
    /// Seconds between looks for documents left `queued` or `processing` without a live job
    /// (for example by a crash between storing an upload and queueing it); a document is
    /// re-queued once it has been left like that for this long.
    pub orphan_check_secs: u64,
    /// A name for this process's workers that no other running process uses and that stays
    /// the same when the process restarts: in Kubernetes, the pod's name (the operator sets
    /// it). Jobs still claimed under it when the workers start were left by a crashed earlier
    /// process of that name, and go back to the queue at once, the attempt counted, instead of
    /// after the visibility timeout. Unset, each start picks a random name.
    pub instance: Option<String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 2,
            poll_interval_ms: 500,
            max_job_seconds: 900,
            orphan_check_secs: 60,
            instance: None,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    /// `text` or `json`, as the `--log-format` flags take them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("must be text or json, got {other:?}")),
        }
    }
}

/// Logging and traces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Output format.
    pub log_format: LogFormat,
    /// Filter in `tracing-subscriber` EnvFilter syntax. `ragplane serve` applies a new value on
    /// SIGHUP (re-reading the configuration), and `PUT /v1/admin/log-filter` changes it too.
    /// Spans below the filter's level are not exported as traces either.
    pub log_filter: String,
    /// OpenTelemetry traces, exported over OTLP. Off unless an endpoint is set here or in the
    /// standard `OTEL_*` environment variables.
    pub traces: TracesConfig,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            traces: TracesConfig::default(),
        }
    }
}

/// The OTLP transport of exported traces.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// OTLP/gRPC, usually port 4317.
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies, usually port 4318, posted to `/v1/traces`.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The name the configuration and `OTEL_EXPORTER_OTLP_PROTOCOL` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

impl std::str::FromStr for OtlpProtocol {
    type Err = String;

    /// `grpc` or `http/protobuf`, as `OTEL_EXPORTER_OTLP_PROTOCOL` takes them (`http/json` is
    /// not supported).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            other => Err(format!(
                "must be \"grpc\" (port 4317) or \"http/protobuf\" (port 4318), got {other:?}"
            )),
        }
    }
}

/// OpenTelemetry trace export over OTLP (gRPC or HTTP). Each setting left unset falls back to
/// its standard environment variable, so a Deployment can turn traces on without a config
/// change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TracesConfig {
    /// OTLP endpoint: for gRPC such as `http://jaeger-collector:4317`; for HTTP the URL spans
    /// are posted to, `/v1/traces` added when it has no path (`http://jaeger-collector:4318`).
    /// Unset: the `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variable (taken as it is), else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (with HTTP, `/v1/traces` appended); with neither, no traces
    /// are exported and spans cost nothing beyond logging.
    pub endpoint: Option<String>,
    /// The transport: `grpc` or `http/protobuf`. Unset: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`,
    /// else `OTEL_EXPORTER_OTLP_PROTOCOL`, else `grpc`.
    pub protocol: Option<OtlpProtocol>,
    /// Fraction of new traces recorded, 0 to 1. A request that arrives with a `traceparent`
    /// follows its caller's decision. Unset: `OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG`, else every trace.
    pub sample_ratio: Option<f64>,
    /// `service.name` of the exported spans. Unset: `OTEL_SERVICE_NAME`, else the program's
    /// name (`ragplane` or `ragplane-operator`).
    pub service_name: Option<String>,
}

impl TracesConfig {
    /// Each setting that is set and wrong: its dotted path and what is wrong.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(e) = &self.endpoint {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            if !rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/')) {
                out.push((
                    "telemetry.traces.endpoint",
                    format!(
                        "must be an http:// or https:// URL such as http://jaeger:4317, got {e:?}"
                    ),
                ));
            }
        }
        if let Some(r) = self.sample_ratio {
            if !(0.0..=1.0).contains(&r) {
                out.push((
                    "telemetry.traces.sample_ratio",
                    format!("must be between 0 and 1, got {r}"),
                ));
            }
        }
        out
    }
}

/// Root of the directory the setup script fills with the model and ONNX Runtime:
/// `$RAGPLANE_CACHE`, else `$HOME/.cache/ragplane`.
pub fn default_cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("RAGPLANE_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("ragplane")
}

impl Config {
    /// Whether any store keeps its data in `data_dir` (SQLite metadata or queue, local
    /// originals, the embedded vector index), so that only one process may use that directory.
    pub fn uses_local_stores(&self) -> bool {
        matches!(self.metadata, MetadataConfig::Sqlite { .. })
            || matches!(self.queue, QueueConfig::Sqlite(_))
            || matches!(self.objects, ObjectStoreConfig::Local { .. })
            || matches!(self.vectors, VectorIndexConfig::Embedded(_))
    }

    /// File of the SQLite database: the metadata store when SQLite is selected, and the SQLite
    /// queue (`<data_dir>/metadata.db` when the metadata lives elsewhere).
    pub fn sqlite_path(&self) -> PathBuf {
        match &self.metadata {
            MetadataConfig::Sqlite { path } => self.under_data_dir(path.as_deref(), "metadata.db"),
            MetadataConfig::Postgres(_) => self.data_dir.join("metadata.db"),
        }
    }

    /// Root of the local object store, when that backend is selected (`<data_dir>/objects`
    /// otherwise, unused).
    pub fn objects_dir(&self) -> PathBuf {
        match &self.objects {
            ObjectStoreConfig::Local { dir } => self.under_data_dir(dir.as_deref(), "objects"),
            ObjectStoreConfig::S3(_) => self.data_dir.join("objects"),
        }
    }

    /// Directory of the embedded vector index (`<data_dir>/vectors` for other backends).
    pub fn vectors_dir(&self) -> PathBuf {
        let dir = match &self.vectors {
            VectorIndexConfig::Embedded(c) => c.dir.as_deref(),
            VectorIndexConfig::Qdrant(_) | VectorIndexConfig::Postgres(_) => None,
        };
        self.under_data_dir(dir, "vectors")
    }

    fn under_data_dir(&self, explicit: Option<&Path>, default: &str) -> PathBuf {
        explicit.map_or_else(|| self.data_dir.join(default), Path::to_path_buf)
    }
}

impl EmbeddingConfig {
    /// Directory of the model files, defaulted from the cache root.
    pub fn resolved_model_dir(&self) -> PathBuf {
        self.model_dir.clone().unwrap_or_else(|| {
            default_cache_root()
                .join("models")
                .join("all-minilm-l6-v2-int8")
        })
    }

    /// Path of the ONNX Runtime library, defaulted from the cache root.
    pub fn resolved_ort_library(&self) -> PathBuf {
        self.ort_library.clone().unwrap_or_else(|| {
            default_cache_root()
                .join("onnxruntime")
                .join("libonnxruntime.so")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_toml_gives_defaults() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.sqlite_path(), PathBuf::from("ragplane-data/metadata.db"));
        c.validate().unwrap();
    }

    #[test]
    fn sections_parse_from_toml() {
        let c: Config = toml::from_str(
            r#"
            data_dir = "/var/lib/ragplane"
            [server]
            listen = "0.0.0.0:9000"
            [generation]
            provider = "ollama"
            url = "http://127.0.0.1:11434"
            model = "gemma3"
            api_key = "s3cret"
            [vectors]
            backend = "embedded"
            ef_search = 128
            "#,
        )
        .unwrap();
        assert_eq!(c.vectors_dir(), PathBuf::from("/var/lib/ragplane/vectors"));
        let GenerationConfig::Ollama(ep) = &c.generation else {
            panic!("expected ollama, got {:?}", c.generation)
        };
        assert_eq!(ep.timeout_secs, 120);
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "secrets must be redacted in Debug"
        );
        let VectorIndexConfig::Embedded(v) = &c.vectors else {
            panic!("expected embedded, got {:?}", c.vectors)
        };
        assert_eq!(v.ef_search, 128);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<Config>("[server]\nlisten_addr = \"x\"").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn serialises_and_reads_back() {
        let c = Config::default();
        let text = toml::to_string(&c).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }
}
