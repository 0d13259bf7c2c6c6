//! The application core: backends wired together from configuration, and the operations the
//! HTTP API and workers perform (auth, collections, documents, search, query). Handlers stay
//! thin; everything tenant-scoped is resolved here, so isolation lives in one place.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ragplane_config::{Config, GenerationConfig, QueueConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::{Cache, MemoryCache, RedisCache, TieredCache};
use crate::embed::onnx::OnnxEmbedder;
use crate::embed::remote::RemoteEmbedder;
use crate::embed::tokenizer::TextTokenizer;
use crate::embed::{CachedEmbedder, Embedder};
use crate::error::{Error, Result};
use crate::generate::pool::{GeneratorPool, Protocol};
use crate::generate::{prompt, ChatMessage, ChatRequest, Generator, TokenStream, Usage};
use crate::ingest::parse::Format;
use crate::metadata::{Collection, Document, MetadataStore, NewDocument, SqliteStore, Tenant};
use crate::objects::ObjectStore;
use crate::queue::{Job, JobQueue, RedisQueue, SqliteQueue, Task, DOCUMENTS};
use crate::ratelimit::{Decision, MemoryLimiter, Quota, RateLimiter, RedisLimiter};
use crate::redis_conn::Redis;
use crate::vectors::{CollectionKey, Filter, VectorIndex};

/// Name of the tenant created on first start, which the first admin key belongs to.
pub const DEFAULT_TENANT: &str = "default";

/// Who is calling: resolved from the API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Tenant id.
    pub tenant_id: String,
    /// Whether the key may manage tenants and keys.
    pub admin: bool,
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
    /// Answer generator, when configured.
    pub generator: Option<Arc<dyn Generator>>,
    /// Per-API-key rate limit, when enabled.
    pub rate_limiter: Option<Arc<dyn RateLimiter>>,
    /// The default tenant's id.
    pub default_tenant: String,
    /// Recently verified keys (by hash), so the hot path skips the metadata store. Entries
    /// expire after [`KEY_CACHE_TTL`], which bounds how long a revoked key keeps working.
    known_keys: moka::sync::Cache<String, Principal>,
    /// Held while this process uses local stores in the data directory.
    _data_dir_lock: Option<crate::data_dir::DataDirLock>,
}

/// How long a verified API key is trusted without asking the metadata store again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(10);

/// A new API key, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuedKey {
    /// Key id.
    pub id: String,
    /// The key itself; store it, it cannot be shown again.
    pub key: String,
    /// Its first characters, shown in listings.
    pub prefix: String,
    /// Tenant name.
    pub tenant: String,
    /// Whether it is an admin key.
    pub admin: bool,
}

/// Hashes an API key for storage and lookup.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
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

/// One retrieved chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    /// Cosine similarity to the query.
    pub score: f32,
    /// Document id.
    pub document_id: String,
    /// Document title.
    pub title: String,
    /// Chunk index in the document.
    pub chunk: u32,
    /// Chunk text.
    pub text: String,
}

/// A search request, shared by `/v1/search` and `/v1/query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Collection name.
    pub collection: String,
    /// Query text.
    pub query: String,
    /// Number of chunks to return (default 5).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Only chunks of documents whose metadata has all these key/value pairs.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Map<String, serde_json::Value>>,
    /// Only chunks of these documents.
    #[serde(default)]
    pub document_ids: Option<Vec<String>>,
    /// `/v1/query` only: answer as Server-Sent Events (token deltas, then a final event with
    /// the cited sources and usage) instead of one JSON object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

fn default_top_k() -> usize {
    5
}

/// Result of `/v1/query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueryAnswer {
    /// The generated answer; `null` when generation is not configured.
    pub answer: Option<String>,
    /// `generated`, or `not_configured` when no generator is set up (sources only).
    pub generation: String,
    /// Model that answered.
    pub model: Option<String>,
    /// Retrieved sources, numbered from 1 in this order in the prompt.
    pub sources: Vec<SearchHit>,
    /// Numbers (1-based) of the sources the answer cites.
    pub cited: Vec<usize>,
    /// Token counts reported by the generator.
    pub usage: Option<Usage>,
}

/// Per-request settings of an answer beyond the retrieval request.
#[derive(Debug, Clone, Default)]
pub struct AnswerOptions {
    /// Earlier turns of a conversation (OpenAI-style messages), before the question.
    pub history: Vec<ChatMessage>,
    /// Largest number of tokens to generate; the configured limit when `None`.
    pub max_tokens: Option<u32>,
    /// Sampling temperature; the server's default when `None`.
    pub temperature: Option<f32>,
}

/// An answer whose generation has started.
pub struct StartedAnswer {
    /// Retrieved sources, numbered from 1 in this order in the prompt.
    pub sources: Vec<SearchHit>,
    /// Model that answers.
    pub model: String,
    /// The tokens; `None` when generation is not configured.
    pub tokens: Option<TokenStream>,
}

/// A document upload, already read from JSON or multipart.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Title (defaults to the file name).
    pub title: String,
    /// File name or source URI.
    pub source: Option<String>,
    /// Format of `body`.
    pub format: Format,
    /// The original bytes.
    pub body: Bytes,
    /// Client metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A document accepted for ingestion.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The document.
    pub document: Document,
    /// The ingestion job.
    pub job_id: String,
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
            Some(r) => Some(Redis::connect(r).map_err(|e| anyhow::anyhow!("redis.url: {e}"))?),
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

        let ecfg = config.embedding.clone();
        // The embedding model runs on embed-server instances (`embedding.remote`), on an Ollama
        // server (`embedding.ollama`), or in this process; chunking needs the tokenizer here.
        let model: Arc<dyn Embedder> = match (&config.embedding.remote, &config.embedding.ollama) {
            (Some(r), _) => Arc::new(RemoteEmbedder::new(r, &config.embedding)?),
            (None, Some(o)) => Arc::new(crate::embed::ollama::OllamaEmbedder::new(o)),
            (None, None) => {
                Arc::new(tokio::task::spawn_blocking(move || OnnxEmbedder::start(&ecfg)).await??)
            }
        };
        let tokenizer_file = config.embedding.resolved_model_dir().join("tokenizer.json");
        let tokenizer = TextTokenizer::from_file(&tokenizer_file, config.embedding.max_seq_len)?;
        let (embedding_cache, results) = build_caches(&config, redis.as_ref());
        let rate_limiter = build_rate_limiter(&config, redis.as_ref());
        let embedder: Arc<dyn Embedder> = Arc::new(CachedEmbedder::new(model, embedding_cache));
        let generator: Option<Arc<dyn Generator>> = match &config.generation {
            GenerationConfig::None => None,
            GenerationConfig::Ollama(ep) => {
                Some(Arc::new(GeneratorPool::new(Protocol::Ollama, ep)))
            }
            GenerationConfig::Openai(ep) => {
                Some(Arc::new(GeneratorPool::new(Protocol::OpenAi, ep)))
            }
        };
        let metadata = crate::metadata::open(&config.metadata, store).await?;
        let default_tenant = match metadata.tenant_by_name(DEFAULT_TENANT).await? {
            Some(t) => t.id,
            None => metadata.create_tenant(DEFAULT_TENANT).await?.id,
        };
        Ok(Self {
            config: Arc::new(config),
            metadata,
            objects,
            vectors,
            queue,
            rate_limiter,
            embedder,
            tokenizer,
            results,
            generator,
            default_tenant,
            known_keys: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
            _data_dir_lock: data_dir_lock,
        })
    }

    /// Creates the first admin key when there is none: the configured one, or a random one that
    /// is returned so the caller can print it once.
    pub async fn bootstrap_admin_key(&self) -> Result<Option<String>> {
        if self.metadata.count_admin_keys().await? > 0 {
            return Ok(None);
        }
        let (key, generated) = match &self.config.auth.admin_key {
            Some(k) => (k.expose().to_string(), false),
            None => (ragplane_config::new_api_key(), true),
        };
        let prefix: String = key.chars().take(10).collect();
        self.metadata
            .create_api_key(
                &self.default_tenant,
                "admin",
                &hash_key(&key),
                &prefix,
                true,
            )
            .await?;
        Ok(generated.then_some(key))
    }

    /// Resolves a bearer token to a principal.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal> {
        if self.config.auth.disabled {
            self.admit("anonymous").await?;
            return Ok(Principal {
                tenant_id: self.default_tenant.clone(),
                admin: true,
            });
        }
        let key = bearer.ok_or_else(|| {
            Error::Unauthorized("missing API key: send Authorization: Bearer <key>".into())
        })?;
        let hash = hash_key(key);
        let principal = match self.known_keys.get(&hash) {
            Some(p) => p,
            None => {
                let found = self.metadata.api_key_by_hash(&hash).await?;
                let k = found
                    .ok_or_else(|| Error::Unauthorized("unknown or revoked API key".into()))?;
                let principal = Principal {
                    tenant_id: k.tenant_id,
                    admin: k.admin,
                };
                self.known_keys.insert(hash.clone(), principal.clone());
                principal
            }
        };
        self.admit(&hash).await?;
        Ok(principal)
    }

    /// Counts a request against the key's rate limit (keyed by the key's hash, never the key).
    async fn admit(&self, key_id: &str) -> Result<()> {
        let Some(limiter) = &self.rate_limiter else {
            return Ok(());
        };
        let rl = &self.config.rate_limit;
        match limiter.check(key_id).await {
            Ok(Decision::Allow) => Ok(()),
            Ok(Decision::Limit { retry_after }) => {
                crate::metrics::RATE_LIMITED.inc();
                Err(Error::RateLimited {
                    message: format!(
                        "rate limit exceeded for this API key ({} requests/s, burst {})",
                        rl.requests_per_second, rl.burst
                    ),
                    retry_after_secs: retry_after.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
            Err(e) => {
                crate::metrics::RATE_LIMIT_ERRORS.inc();
                tracing::warn!(error = %e, fail = ?rl.on_backend_error, "rate limiter unavailable");
                match rl.on_backend_error {
                    ragplane_config::FailMode::Open => Ok(()),
                    ragplane_config::FailMode::Closed => Err(Error::Unavailable {
                        message: format!("rate limiter unavailable: {e}"),
                        retry_after_secs: 1,
                    }),
                }
            }
        }
    }

    fn require_admin(p: &Principal) -> Result<()> {
        if p.admin {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "this operation needs an admin API key".into(),
            ))
        }
    }

    /// Creates a tenant (admin only).
    pub async fn create_tenant(&self, p: &Principal, name: &str) -> Result<Tenant> {
        Self::require_admin(p)?;
        validate_name("name", name)?;
        Ok(self.metadata.create_tenant(name).await?)
    }

    /// Lists tenants (admin only).
    pub async fn list_tenants(&self, p: &Principal) -> Result<Vec<Tenant>> {
        Self::require_admin(p)?;
        Ok(self.metadata.list_tenants().await?)
    }

    /// Issues a key for a tenant (admin only).
    pub async fn issue_key(
        &self,
        p: &Principal,
        tenant: &str,
        name: &str,
        admin: bool,
    ) -> Result<IssuedKey> {
        Self::require_admin(p)?;
        let t = self
            .metadata
            .tenant_by_name(tenant)
            .await?
            .ok_or_else(|| Error::not_found("tenant", tenant))?;
        let key = ragplane_config::new_api_key();
        let prefix: String = key.chars().take(10).collect();
        let k = self
            .metadata
            .create_api_key(&t.id, name, &hash_key(&key), &prefix, admin)
            .await?;
        Ok(IssuedKey {
            id: k.id,
            key,
            prefix,
            tenant: t.name,
            admin,
        })
    }

    /// Creates a collection for the caller's tenant.
    pub async fn create_collection(
        &self,
        p: &Principal,
        name: &str,
        description: &str,
    ) -> Result<Collection> {
        validate_name("name", name)?;
        if description.len() > 4096 {
            return Err(Error::invalid("description", "must be at most 4096 bytes"));
        }
        let dim = self.embedder.dimension();
        let c = self
            .metadata
            .create_collection(&p.tenant_id, name, description, dim as i64)
            .await?;
        self.vectors.ensure_collection(&key_of(&c), dim).await?;
        Ok(c)
    }

    /// Lists the caller's collections.
    pub async fn list_collections(&self, p: &Principal) -> Result<Vec<Collection>> {
        Ok(self.metadata.list_collections(&p.tenant_id).await?)
    }

    /// Finds one of the caller's collections; 404 for other tenants' collections too.
    pub async fn collection(&self, p: &Principal, name: &str) -> Result<Collection> {
        self.metadata
            .collection_by_name(&p.tenant_id, name)
            .await?
            .ok_or_else(|| Error::not_found("collection", name))
    }

    /// Deletes a collection with its documents, points and originals.
    pub async fn delete_collection(&self, p: &Principal, name: &str) -> Result<()> {
        let c = self.collection(p, name).await?;
        self.vectors.drop_collection(&key_of(&c)).await?;
        self.objects
            .delete_prefix(&format!("{}/{}", c.tenant_id, c.id))
            .await?;
        self.metadata.delete_collection(&c.id).await?;
        Ok(())
    }

    /// Stores an upload and queues its ingestion.
    pub async fn add_document(
        &self,
        p: &Principal,
        collection: &str,
        upload: Upload,
    ) -> Result<Accepted> {
        let c = self.collection(p, collection).await?;
        if upload.body.is_empty() {
            return Err(Error::invalid("content", "document is empty"));
        }
        if upload.title.len() > 1024 {
            return Err(Error::invalid("title", "must be at most 1024 bytes"));
        }
        validate_metadata(&upload.metadata)?;
        let id = uuid::Uuid::now_v7().to_string();
        let object_key = format!("{}/{}/{}", c.tenant_id, c.id, id);
        let sha256 = hex::encode(Sha256::digest(&upload.body));
        let size = upload.body.len() as i64;
        self.objects.put(&object_key, upload.body).await?;
        let doc = self
            .metadata
            .insert_document(NewDocument {
                id,
                tenant_id: c.tenant_id.clone(),
                collection_id: c.id.clone(),
                title: upload.title,
                source: upload.source,
                content_type: upload.format.media_type().to_string(),
                size_bytes: size,
                sha256,
                metadata: upload.metadata,
                object_key,
            })
            .await?;
        let job = self.enqueue_ingest(&c.tenant_id, &doc.id).await?;
        Ok(Accepted {
            document: doc,
            job_id: job.id,
        })
    }

    /// Queues the (re)indexing of a document.
    pub async fn enqueue_ingest(&self, tenant_id: &str, document_id: &str) -> Result<Job> {
        let task = Task::IngestDocument {
            document_id: document_id.to_string(),
        };
        Ok(self.queue.enqueue(tenant_id, DOCUMENTS, task).await?)
    }

    /// Finds one of the caller's documents in a collection.
    pub async fn document(
        &self,
        p: &Principal,
        collection: &str,
        id: &str,
    ) -> Result<(Collection, Document)> {
        let c = self.collection(p, collection).await?;
        let d = self
            .metadata
            .document(id)
            .await?
            .filter(|d| d.collection_id == c.id && d.tenant_id == p.tenant_id)
            .ok_or_else(|| Error::not_found("document", id))?;
        Ok((c, d))
    }

    /// Lists a collection's documents, `limit` at a time after the cursor.
    pub async fn list_documents(
        &self,
        p: &Principal,
        collection: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Document>> {
        if !(1..=1000).contains(&limit) {
            return Err(Error::invalid("limit", "must be between 1 and 1000"));
        }
        let c = self.collection(p, collection).await?;
        Ok(self.metadata.list_documents(&c.id, after, limit).await?)
    }

    /// Deletes a document with its points and original.
    pub async fn delete_document(&self, p: &Principal, collection: &str, id: &str) -> Result<()> {
        let (c, d) = self.document(p, collection, id).await?;
        self.vectors.delete_document(&key_of(&c), &d.id).await?;
        self.metadata.bump_collection_version(&c.id).await?;
        self.objects.delete(&d.object_key).await?;
        self.metadata.delete_document(&d.id).await?;
        Ok(())
    }

    /// Queues a document for indexing again (its points are replaced).
    pub async fn reindex_document(
        &self,
        p: &Principal,
        collection: &str,
        id: &str,
    ) -> Result<Accepted> {
        let (c, d) = self.document(p, collection, id).await?;
        self.metadata
            .set_document_status(
                &d.id,
                crate::metadata::DocumentStatus::Queued,
                None,
                d.chunk_count,
            )
            .await?;
        let job = self.enqueue_ingest(&c.tenant_id, &d.id).await?;
        let document = self.metadata.document(&d.id).await?.unwrap_or(d);
        Ok(Accepted {
            document,
            job_id: job.id,
        })
    }

    /// Reads one of the caller's jobs.
    pub async fn job(&self, p: &Principal, id: &str) -> Result<Job> {
        self.queue
            .get(id)
            .await?
            .filter(|j| j.tenant_id == p.tenant_id)
            .ok_or_else(|| Error::not_found("job", id))
    }

    /// Retrieval: embeds the query and searches the collection, through the result cache.
    pub async fn search(&self, p: &Principal, req: &SearchRequest) -> Result<Vec<SearchHit>> {
        let limits = &self.config.limits;
        if req.query.trim().is_empty() {
            return Err(Error::invalid("query", "must not be empty"));
        }
        if req.query.len() > limits.max_query_bytes {
            return Err(Error::invalid(
                "query",
                format!("must be at most {} bytes", limits.max_query_bytes),
            ));
        }
        if req.top_k == 0 || req.top_k > limits.max_top_k {
            return Err(Error::invalid(
                "top_k",
                format!("must be between 1 and {}", limits.max_top_k),
            ));
        }
        if let Some(f) = &req.filter {
            validate_metadata(f).map_err(|e| match e {
                Error::Invalid { message, .. } => Error::invalid("filter", message),
                other => other,
            })?;
        }
        let c = self.collection(p, &req.collection).await?;
        let cache_key = self.results.as_ref().map(|_| result_cache_key(&c, req));
        if let (Some(cache), Some(key)) = (&self.results, &cache_key) {
            let hit = cache
                .get(key)
                .await
                .and_then(|b| serde_json::from_slice::<Vec<SearchHit>>(&b).ok());
            if let Some(hits) = hit {
                return Ok(hits);
            }
        }
        let mut documents: Option<HashSet<String>> = req
            .document_ids
            .as_ref()
            .map(|ids| ids.iter().cloned().collect());
        if let Some(f) = req.filter.as_ref().filter(|f| !f.is_empty()) {
            let matching: HashSet<String> = self
                .metadata
                .documents_matching(&c.id, f)
                .await?
                .into_iter()
                .collect();
            documents = Some(match documents {
                Some(d) => d.intersection(&matching).cloned().collect(),
                None => matching,
            });
        }
        if documents.as_ref().is_some_and(HashSet::is_empty) {
            return Ok(Vec::new());
        }
        let vector = self
            .embedder
            .embed(vec![req.query.clone()])
            .await?
            .pop()
            .unwrap_or_default();
        let filter = Filter {
            tenant: c.tenant_id.clone(),
            collection: c.id.clone(),
            documents,
        };
        let hits = self.vectors.search(vector, req.top_k, filter).await?;
        let out: Vec<SearchHit> = hits
            .into_iter()
            .map(|h| SearchHit {
                score: h.score,
                document_id: h.payload.document,
                title: h.payload.title,
                chunk: h.payload.chunk,
                text: h.payload.text,
            })
            .collect();
        if let (Some(cache), Some(key)) = (&self.results, &cache_key) {
            if let Ok(b) = serde_json::to_vec(&out) {
                cache.put(key, Bytes::from(b)).await;
            }
        }
        Ok(out)
    }

    /// Retrieval plus generation. Without a generator, returns the sources and says so.
    pub async fn query(&self, p: &Principal, req: &SearchRequest) -> Result<QueryAnswer> {
        let started = self.start_answer(p, req, &AnswerOptions::default()).await?;
        let Some(tokens) = started.tokens else {
            return Ok(QueryAnswer {
                answer: None,
                generation: "not_configured".into(),
                model: None,
                sources: started.sources,
                cited: Vec::new(),
                usage: None,
            });
        };
        let g = crate::generate::collect(tokens, &started.model).await?;
        let cited = prompt::cited(&g.text, started.sources.len());
        Ok(QueryAnswer {
            answer: Some(g.text),
            generation: "generated".into(),
            model: Some(g.model),
            sources: started.sources,
            cited,
            usage: Some(g.usage),
        })
    }

    /// Retrieves sources for `req.query` and starts generating an answer from them; returns
    /// once the first token has arrived, so failures before it (retried once by the pool)
    /// are still ordinary errors. Refuses at once, before retrieval, when no generation
    /// server is healthy.
    pub async fn start_answer(
        &self,
        p: &Principal,
        req: &SearchRequest,
        options: &AnswerOptions,
    ) -> Result<StartedAnswer> {
        if let Some(g) = &self.generator {
            g.check_available()?;
        }
        let sources = if req.stream {
            // Streaming or not, it is the same retrieval (and the same result-cache entry).
            let plain = SearchRequest {
                stream: false,
                ..req.clone()
            };
            self.search(p, &plain).await?
        } else {
            self.search(p, req).await?
        };
        let Some(generator) = &self.generator else {
            return Ok(StartedAnswer {
                sources,
                model: String::new(),
                tokens: None,
            });
        };
        let texts: Vec<&str> = sources.iter().map(|s| s.text.as_str()).collect();
        let request = ChatRequest {
            messages: prompt::build_chat(&options.history, &req.query, &texts),
            max_tokens: options.max_tokens,
            temperature: options.temperature,
        };
        let tokens = generator.stream(&request).await?;
        Ok(StartedAnswer {
            sources,
            model: generator.model().to_string(),
            tokens: Some(tokens),
        })
    }

    /// Checks that the stores answer.
    pub async fn ready(&self) -> Result<()> {
        self.metadata.ping().await?;
        self.objects.ping().await?;
        Ok(())
    }
}

/// The vector-index key of a collection.
pub fn key_of(c: &Collection) -> CollectionKey {
    CollectionKey {
        tenant: c.tenant_id.clone(),
        collection: c.id.clone(),
    }
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

fn result_cache_key(c: &Collection, req: &SearchRequest) -> String {
    let body = serde_json::to_vec(req).unwrap_or_default();
    format!(
        "res:{}:{}:{}:{}",
        c.tenant_id,
        c.id,
        c.version,
        hex::encode(Sha256::digest(&body))
    )
}

/// Metadata keys are 1–64 of `[A-Za-z0-9_.-]`; values are scalars.
fn validate_metadata(m: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
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
