//! The application core: backends wired together from configuration, and the operations the
//! HTTP API and workers perform. Handlers stay thin; everything tenant-scoped is resolved here,
//! so isolation lives in one place. The operations are split by concern:
//!
//! - [`keys`]: API keys, tenants, authentication and the per-key rate limit;
//! - [`documents`]: collections, documents and their ingestion jobs;
//! - [`model_switch`]: index generations, and a collection's switch to another embedding model;
//! - [`search`]: retrieval and answers;
//! - [`sessions`]: the web console's sign-ins, which act as the key that signed in;
//! - [`usage`]: queries and LLM tokens per key and collection, for the console.

mod documents;
mod keys;
mod model_switch;
pub mod query_log;
mod search;
mod sessions;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use ragplane_config::{Config, GenerationConfig, QueueConfig};

use crate::cache::{Cache, MemoryCache, RedisCache, TieredCache};
use crate::embed::onnx::OnnxEmbedder;
use crate::embed::remote::RemoteEmbedder;
use crate::embed::tokenizer::TextTokenizer;
use crate::embed::{CachedEmbedder, Embedder};
use crate::error::{Error, Result};
use crate::generate::pool::{GeneratorPool, Protocol};
use crate::generate::Generator;
use crate::metadata::{Collection, MetadataStore, SqliteStore};
use crate::objects::ObjectStore;
use crate::queue::{JobQueue, RedisQueue, SqliteQueue};
use crate::ratelimit::{MemoryLimiter, Quota, RateLimiter, RedisLimiter};
use crate::redis_conn::Redis;
use crate::vectors::VectorIndex;

pub use documents::{Accepted, Upload};
pub use keys::{hash_key, IssuedKey, KeyRequest};
pub use model_switch::{key_of, next_key_of, IndexTarget};
pub use search::{
    AnswerOptions, FusionRequest, GroupBy, QueryAnswer, SearchHit, SearchMode, SearchRequest,
    Searched, StartedAnswer,
};
pub use sessions::SignedIn;

/// Name of the tenant created on first start, which the first admin key belongs to.
pub const DEFAULT_TENANT: &str = "default";

/// Who is calling: resolved from the API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Tenant id.
    pub tenant_id: String,
    /// The key's id; `None` when authentication is off.
    pub key_id: Option<String>,
    /// What the key may do.
    pub scope: crate::metadata::Scope,
    /// When the key stops working, if ever.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every backend, wired from configuration.
pub struct App {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Tenants, keys, collections, documents.
    pub metadata: Arc<dyn MetadataStore>,
    /// Document originals.
    pub objects: Arc<dyn ObjectStore>,
    /// Vectors.
    pub vectors: Arc<dyn VectorIndex>,
    /// Jobs.
    pub queue: Arc<dyn JobQueue>,
    /// Embeddings (with the embedding cache in front).
    pub embedder: Arc<dyn Embedder>,
    /// The model's tokenizer, for token-aware chunking.
    pub tokenizer: TextTokenizer,
    /// Search result cache.
    pub results: Option<Arc<dyn Cache>>,
    /// Reranker of retrieved chunks, when configured.
    pub reranker: Option<Arc<dyn crate::rerank::Reranker>>,
    /// Answer generator, when configured.
    pub generator: Option<Arc<dyn Generator>>,
    /// Per-API-key rate limit, when enabled.
    pub rate_limiter: Option<Arc<dyn RateLimiter>>,
    /// Each tenant's LLM token quota, when `rate_limit.llm_tokens_per_minute` sets one.
    pub token_budget: Option<Arc<crate::ratelimit::TokenBudget>>,
    /// The default tenant's id.
    pub default_tenant: String,
    /// Usage counts not yet written to the metadata store.
    pub usage: usage::UsageMeter,
    /// Recently verified keys (by hash), so the hot path skips the metadata store. Entries
    /// expire after `auth.key_cache_secs`, which bounds how long a revoked key keeps working.
    known_keys: moka::sync::Cache<String, Principal>,
    /// Hashes just found to be no key, so a burst of bad keys does not reach the metadata
    /// store each time; kept as long as verified keys are.
    unknown_keys: moka::sync::Cache<String, ()>,
    /// Failed authentications per client address, and the addresses blocked until a time.
    auth_failures: MemoryLimiter,
    blocked_clients: moka::sync::Cache<std::net::IpAddr, std::time::Instant>,
    /// The embedding model's identity, probed on first use.
    model_identity: tokio::sync::OnceCell<crate::embed::identity::ModelIdentity>,
    /// The model collections are being switched away from (`[embedding.previous]`): it embeds
    /// queries on their current points until their switch completes.
    pub previous_embedder: Option<Arc<dyn Embedder>>,
    /// Its identity, probed on first use.
    previous_identity: tokio::sync::OnceCell<crate::embed::identity::ModelIdentity>,
    /// Held while this process uses local stores in the data directory.
    _data_dir_lock: Option<crate::data_dir::DataDirLock>,
}

/// Names of tenants and collections: 1–64 of `[a-z0-9_-]`, starting alphanumeric.
pub fn validate_name(field: &str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(field, format!("{name:?} must be 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit")))
    }
}

impl App {
    /// Opens every backend named by `config` and loads the embedding model.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        crate::metrics::init();
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "failed to create data directory {}: {e}",
                config.data_dir.display()
            )
        })?;
        // A replacement pod on the same volume waits here until the old process has exited.
        let data_dir_lock = if config.uses_local_stores() {
            Some(crate::data_dir::DataDirLock::acquire(&config.data_dir).await?)
        } else {
            None
        };
        let store = SqliteStore::open(&config.sqlite_path()).await?;
        store.migrate().await?;
        let redis = match &config.redis {
            Some(r) => Some(Redis::connect(r).map_err(|e| anyhow::anyhow!("[redis]: {e}"))?),
            None => None,
        };
        let queue: Arc<dyn JobQueue> = match (&config.queue, &redis) {
            (QueueConfig::Sqlite(qcfg), _) => {
                Arc::new(SqliteQueue::open(store.pool().clone(), qcfg).await?)
            }
            (QueueConfig::Redis(qcfg), Some(r)) => {
                Arc::new(RedisQueue::open(r.clone(), qcfg).await?)
            }
            (QueueConfig::Redis(_), None) => {
                anyhow::bail!("queue.backend: redis needs a [redis] section")
            }
        };
        let objects = crate::objects::open(&config).await?;
        let vectors = crate::vectors::open(&config).await?;

        let model = open_embedder(&config.embedding).await?;
        let previous = match &config.embedding.previous {
            Some(p) => Some(open_embedder(p).await?),
            None => None,
        };
        let tokenizer_file = config.embedding.resolved_model_dir().join("tokenizer.json");
        let tokenizer = TextTokenizer::from_file(&tokenizer_file, config.embedding.max_seq_len)?;
        let (embedding_cache, results) = build_caches(&config, redis.as_ref());
        let rate_limiter = build_rate_limiter(&config, redis.as_ref());
        let token_budget = build_token_budget(&config, redis.as_ref());
        // Cache keys name the model, so both models can share the cache.
        let previous_embedder = previous.map(|p| {
            Arc::new(CachedEmbedder::new(p, embedding_cache.clone())) as Arc<dyn Embedder>
        });
        let embedder: Arc<dyn Embedder> = Arc::new(CachedEmbedder::new(model, embedding_cache));
        let generator: Option<Arc<dyn Generator>> = match &config.generation {
            GenerationConfig::None {} => None,
            GenerationConfig::Ollama(ep) => {
                Some(Arc::new(GeneratorPool::new(Protocol::Ollama, ep)))
            }
            GenerationConfig::Openai(ep) => {
                Some(Arc::new(GeneratorPool::new(Protocol::OpenAi, ep)))
            }
        };
        let reranker: Option<Arc<dyn crate::rerank::Reranker>> = match &config.rerank {
            Some(r) => Some(Arc::new(crate::rerank::remote::RemoteReranker::new(r)?)),
            None => None,
        };
        let metadata = crate::metadata::open(&config.metadata, store).await?;
        let default_tenant = match metadata.tenant_by_name(DEFAULT_TENANT).await? {
            Some(t) => t.id,
            None => match metadata.create_tenant(DEFAULT_TENANT).await {
                Ok(t) => t.id,
                // Another instance starting at the same time created it first.
                Err(crate::metadata::MetadataError::Conflict { .. }) => {
                    metadata
                        .tenant_by_name(DEFAULT_TENANT)
                        .await?
                        .ok_or_else(|| Error::Internal("the default tenant vanished".into()))?
                        .id
                }
                Err(e) => return Err(e.into()),
            },
        };
        let key_cache = Duration::from_secs(config.auth.key_cache_secs);
        let failures_per_minute = config.auth.failed_attempts_per_minute.max(1);
        Ok(Self {
            config: Arc::new(config),
            metadata,
            objects,
            vectors,
            queue,
            rate_limiter,
            token_budget,
            embedder,
            tokenizer,
            results,
            generator,
            reranker,
            default_tenant,
            usage: usage::UsageMeter::default(),
            known_keys: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(key_cache)
                .support_invalidation_closures()
                .build(),
            unknown_keys: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(key_cache)
                .build(),
            auth_failures: MemoryLimiter::new(Quota::new(
                f64::from(failures_per_minute) / 60.0,
                failures_per_minute,
            )),
            blocked_clients: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            model_identity: tokio::sync::OnceCell::new(),
            previous_embedder,
            previous_identity: tokio::sync::OnceCell::new(),
            _data_dir_lock: data_dir_lock,
        })
    }

    /// Checks that the stores answer.
    pub async fn ready(&self) -> Result<()> {
        self.metadata.ping().await?;
        self.objects.ping().await?;
        Ok(())
    }
}

/// The embedding model of `cfg`: on embed-server instances (`remote`), on an Ollama server
/// (`ollama`), or in this process.
async fn open_embedder(
    cfg: &ragplane_config::EmbeddingConfig,
) -> anyhow::Result<Arc<dyn Embedder>> {
    Ok(match (&cfg.remote, &cfg.ollama) {
        (Some(r), _) => Arc::new(RemoteEmbedder::new(r, cfg)?),
        (None, Some(o)) => Arc::new(crate::embed::ollama::OllamaEmbedder::new(o)),
        (None, None) => {
            let cfg = cfg.clone();
            Arc::new(tokio::task::spawn_blocking(move || OnnxEmbedder::start(&cfg)).await??)
        }
    })
}

type OptionalCache = Option<Arc<dyn Cache>>;

/// The embedding and result caches: in process, with a Redis layer under each when
/// `cache.redis_l2` is set.
fn build_caches(config: &Config, redis: Option<&Redis>) -> (OptionalCache, OptionalCache) {
    let c = &config.cache;
    let deadline =
        Duration::from_millis(config.redis.as_ref().map_or(250, |r| r.command_timeout_ms));
    let layered = |on: bool, name: &'static str, capacity: u64, ttl_secs: u64| {
        on.then(|| {
            let ttl = Duration::from_secs(ttl_secs);
            let l1: Arc<dyn Cache> = Arc::new(MemoryCache::new(name, capacity, ttl));
            match redis.filter(|_| c.redis_l2) {
                Some(r) => Arc::new(TieredCache::new(
                    l1,
                    Arc::new(RedisCache::new(r.clone(), name, ttl, deadline)),
                )) as Arc<dyn Cache>,
                None => l1,
            }
        })
    };
    (
        layered(
            c.embeddings,
            "embedding",
            c.embedding_capacity,
            c.embedding_ttl_secs,
        ),
        layered(c.results, "results", c.result_capacity, c.result_ttl_secs),
    )
}

/// The per-key rate limiter, when enabled.
fn build_rate_limiter(config: &Config, redis: Option<&Redis>) -> Option<Arc<dyn RateLimiter>> {
    let rl = &config.rate_limit;
    if !rl.enabled {
        return None;
    }
    let quota = Quota::new(rl.requests_per_second, rl.burst);
    Some(match (rl.backend, redis) {
        (ragplane_config::RateLimitBackend::Redis, Some(r)) => Arc::new(RedisLimiter::new(
            r.clone(),
            quota,
            Duration::from_millis(config.redis.as_ref().map_or(250, |c| c.command_timeout_ms)),
        )),
        _ => Arc::new(MemoryLimiter::new(quota)),
    })
}

fn build_token_budget(
    config: &Config,
    redis: Option<&Redis>,
) -> Option<Arc<crate::ratelimit::TokenBudget>> {
    use crate::ratelimit::TokenBudget;
    let rl = &config.rate_limit;
    if rl.llm_tokens_per_minute == 0 {
        return None;
    }
    Some(Arc::new(match (rl.backend, redis) {
        (ragplane_config::RateLimitBackend::Redis, Some(r)) => TokenBudget::redis(
            rl.llm_tokens_per_minute,
            r.clone(),
            Duration::from_millis(config.redis.as_ref().map_or(250, |c| c.command_timeout_ms)),
        ),
        _ => TokenBudget::memory(rl.llm_tokens_per_minute),
    }))
}

/// Metadata keys are 1–64 of `[A-Za-z0-9_.-]`; values are scalars.
pub(crate) fn validate_metadata(m: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    if m.len() > 64 {
        return Err(Error::invalid("metadata", "at most 64 keys"));
    }
    for (k, v) in m {
        let key_ok = (1..=64).contains(&k.len())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !key_ok {
            return Err(Error::invalid(
                "metadata",
                format!("key {k:?} must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'"),
            ));
        }
        if v.is_object() || v.is_array() {
            return Err(Error::invalid(
                "metadata",
                format!("value of {k:?} must be a string, number, boolean or null"),
            ));
        }
    }
    Ok(())
}
