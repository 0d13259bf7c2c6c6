//! Metadata store: tenants, API keys, collections and documents behind the [`MetadataStore`]
//! trait, with the SQLite implementation for the embedded data plane and the PostgreSQL one
//! for many processes sharing a database. The statements the two share are written once, in
//! `sql`.

pub mod filter;
pub mod postgres;
mod sql;
pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Errors of a metadata backend.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The database failed.
    #[error("failed to {action}: {source}")]
    Database {
        /// What was being done.
        action: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The database cannot be reached (down, restarting, out of connections); retrying later
    /// may succeed.
    #[error("failed to {action}: the metadata database is unavailable: {source}")]
    Unavailable {
        /// What was being done.
        action: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// Applying migrations failed.
    #[error("failed to migrate the metadata database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique name is taken.
    #[error("{kind} {name:?} already exists")]
    Conflict {
        /// Kind of object.
        kind: &'static str,
        /// The name that is taken.
        name: String,
    },
}

/// Result alias for metadata operations.
pub type Result<T, E = MetadataError> = std::result::Result<T, E>;

/// Maps a driver error, naming the operation; connection failures become
/// [`MetadataError::Unavailable`].
pub(crate) fn db(action: &'static str) -> impl FnOnce(sqlx::Error) -> MetadataError {
    move |source| {
        if is_unavailable(&source) {
            MetadataError::Unavailable { action, source }
        } else {
            MetadataError::Database { action, source }
        }
    }
}

/// A new time-ordered id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Maps a unique-constraint violation to `Conflict` naming what is taken, anything else to a
/// database error naming the action.
pub(crate) fn conflict_or(
    kind: &'static str,
    name: impl Into<String>,
    action: &'static str,
) -> impl FnOnce(sqlx::Error) -> MetadataError {
    let name = name.into();
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            MetadataError::Conflict { kind, name }
        }
        _ => db(action)(e),
    }
}

/// Whether a driver error means the database could not be reached or is going away, rather
/// than that the statement failed: pool timeouts, I/O and TLS errors, and PostgreSQL's
/// connection-exception (08xxx), operator-intervention (57P0x: shutting down, starting up) and
/// too-many-connections (53300) states.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.len() == 5 && (c.starts_with("08") || c.starts_with("57P") || c == "53300")
        }),
        _ => false,
    }
}

/// Opens the metadata store the configuration selects and brings its schema up to date.
/// `sqlite` is the embedded database, already open for the SQLite queue; it is the store when
/// SQLite is selected.
pub async fn open(
    config: &ragplane_config::MetadataConfig,
    sqlite: SqliteStore,
) -> Result<std::sync::Arc<dyn MetadataStore>> {
    let store: std::sync::Arc<dyn MetadataStore> = match config {
        ragplane_config::MetadataConfig::Sqlite { .. } => std::sync::Arc::new(sqlite),
        ragplane_config::MetadataConfig::Postgres(p) => {
            std::sync::Arc::new(PostgresStore::connect(p)?)
        }
    };
    store.migrate().await?;
    Ok(store)
}

/// A tenant: the unit of isolation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// What an API key may do. Each scope includes everything the ones before it may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Read collections and documents, search, query and chat.
    QueryOnly,
    /// Also create, change and delete collections and documents.
    ReadWrite,
    /// Also list, issue, revoke and rotate the keys of its own tenant.
    TenantAdmin,
    /// Also manage tenants, and the keys of every tenant.
    ClusterAdmin,
}

impl Scope {
    /// Every scope, weakest first.
    pub const ALL: [Scope; 4] = [
        Scope::QueryOnly,
        Scope::ReadWrite,
        Scope::TenantAdmin,
        Scope::ClusterAdmin,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueryOnly => "query-only",
            Self::ReadWrite => "read-write",
            Self::TenantAdmin => "tenant-admin",
            Self::ClusterAdmin => "cluster-admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scope {s:?} (use query-only, read-write, tenant-admin or cluster-admin)"
                )
            })
    }
}

impl TryFrom<String> for Scope {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API key as stored: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ApiKey {
    /// Key id.
    pub id: String,
    /// Tenant the key acts for.
    #[serde(skip)]
    pub tenant_id: String,
    /// The first characters of the key, for recognising it.
    pub prefix: String,
    /// Human-readable name.
    pub name: String,
    /// What the key may do.
    #[sqlx(try_from = "String")]
    pub scope: Scope,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// When the key stops working (RFC 3339), if ever.
    pub expires_at: Option<String>,
    /// When the key was revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    /// Tenant the key acts for.
    pub tenant_id: &'a str,
    /// Human-readable name.
    pub name: &'a str,
    /// SHA-256 of the key, hex.
    pub key_hash: &'a str,
    /// The key's first characters.
    pub prefix: &'a str,
    /// What the key may do.
    pub scope: Scope,
    /// When it stops working (RFC 3339), if ever.
    pub expires_at: Option<String>,
}

/// A collection of documents sharing one vector space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Collection {
    /// Collection id.
    pub id: String,
    /// Owning tenant.
    #[serde(skip)]
    pub tenant_id: String,
    /// Name, unique per tenant.
    pub name: String,
    /// Free-form description.
    pub description: String,
    /// Vector dimension.
    pub dimension: i64,
    /// Bumped on every change to the collection's points; part of result-cache keys.
    pub version: i64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Name of the embedding model the collection's vectors come from (recorded at creation,
    /// or on first use for collections made before models were recorded).
    #[serde(default)]
    pub embedding_model: Option<String>,
    /// The model's probe (see [`crate::embed::identity`]); shown as a short fingerprint.
    #[serde(
        rename = "embedding_fingerprint",
        serialize_with = "probe_fingerprint",
        skip_deserializing
    )]
    #[schema(value_type = Option<String>)]
    pub embedding_probe: Option<String>,
    /// The index generation holding the collection's points; it grows by one with each
    /// switch to another embedding model.
    #[serde(default)]
    pub generation: i64,
    /// While the collection switches to another embedding model: that model's name. Searches
    /// keep using the current generation until every document has points in the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_model: Option<String>,
    /// While switching: the next model's probe, shown as a short fingerprint.
    #[serde(
        rename = "next_fingerprint",
        serialize_with = "probe_fingerprint",
        skip_deserializing,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub next_probe: Option<String>,
    /// While switching: the dimension of the next model's vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_dimension: Option<i64>,
}

/// A switch of a collection to another embedding model: the model and the dimension of its
/// vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSwitch<'a> {
    /// The model's name.
    pub model: &'a str,
    /// Its probe (see [`crate::embed::identity`]).
    pub probe: &'a str,
    /// The dimension of its vectors.
    pub dimension: i64,
}

fn probe_fingerprint<S: serde::Serializer>(
    probe: &Option<String>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match probe {
        Some(p) => s.serialize_some(&crate::embed::identity::fingerprint(p)),
        None => s.serialize_none(),
    }
}

/// Life cycle of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocumentStatus {
    /// Stored and waiting for a worker.
    Queued,
    /// A worker is parsing, embedding and indexing it.
    Processing,
    /// Searchable.
    Indexed,
    /// Ingestion failed; `error` says why.
    Failed,
    /// Being deleted: hidden from reads, its points and original being removed.
    Deleting,
}

impl DocumentStatus {
    /// The stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Indexed => "indexed",
            Self::Failed => "failed",
            Self::Deleting => "deleting",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "processing" => Self::Processing,
            "indexed" => Self::Indexed,
            "failed" => Self::Failed,
            "deleting" => Self::Deleting,
            _ => Self::Queued,
        }
    }
}

/// A document and its ingestion state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Document {
    /// Document id.
    pub id: String,
    /// Owning tenant.
    #[serde(skip)]
    pub tenant_id: String,
    /// Collection id.
    pub collection_id: String,
    /// Title (file name or given title).
    pub title: String,
    /// Where it came from (upload file name or client-given source).
    pub source: Option<String>,
    /// Media type of the original.
    pub content_type: String,
    /// Size of the original in bytes.
    pub size_bytes: i64,
    /// SHA-256 of the original.
    pub sha256: String,
    /// Client metadata, usable in search filters.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Key of the original in the object store.
    #[serde(skip)]
    pub object_key: String,
    /// Ingestion status.
    pub status: DocumentStatus,
    /// Why ingestion failed, when it did.
    pub error: Option<String>,
    /// Number of indexed chunks.
    pub chunk_count: i64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// Where a chunk comes from in its document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChunkProvenance {
    /// Character offset of the chunk's start in the document's extracted text.
    pub start: i64,
    /// Character offset one past the chunk's end.
    pub end: i64,
    /// The PDF page the chunk starts on, from 1; `null` for other formats.
    pub page: Option<i32>,
    /// The Markdown or HTML headings in force at the chunk's start, outermost first.
    pub headings: Vec<String>,
}

/// Fields of a new document.
#[derive(Debug, Clone)]
pub struct NewDocument {
    /// Id chosen by the caller (so the object can be stored under it first).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Collection id.
    pub collection_id: String,
    /// Title.
    pub title: String,
    /// Source.
    pub source: Option<String>,
    /// Media type.
    pub content_type: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// SHA-256 hex.
    pub sha256: String,
    /// Client metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Object store key.
    pub object_key: String,
}

impl NewDocument {
    /// The document as stored at `now`: queued, with no chunks yet.
    pub fn into_queued(self, now: String) -> Document {
        Document {
            id: self.id,
            tenant_id: self.tenant_id,
            collection_id: self.collection_id,
            title: self.title,
            source: self.source,
            content_type: self.content_type,
            size_bytes: self.size_bytes,
            sha256: self.sha256,
            metadata: self.metadata,
            object_key: self.object_key,
            status: DocumentStatus::Queued,
            error: None,
            chunk_count: 0,
            created_at: now.clone(),
            updated_at: now,
        }
    }
}

/// A web console sign-in, stored by the hash of its cookie's token.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsoleSession {
    /// SHA-256 of the session token (hex); the token itself is only in the cookie.
    pub token_hash: String,
    /// Hash of the API key it acts as.
    pub key_hash: String,
    /// The token every state-changing request of the session carries.
    pub csrf_token: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

/// Queries and LLM tokens of one tenant's key on one collection in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct UsageRow {
    /// Tenant id.
    #[serde(skip)]
    pub tenant_id: String,
    /// The minute (RFC 3339, UTC, seconds zero).
    pub minute: String,
    /// Key id (`anonymous` when authentication is off).
    pub key_id: String,
    /// Collection name.
    pub collection: String,
    /// Searches, queries and chat completions.
    pub queries: i64,
    /// Prompt plus completion tokens the LLM reported.
    pub llm_tokens: i64,
}

/// Which column finds a tenant.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TenantKey {
    /// Its id.
    Id,
    /// Its name.
    Name,
}

/// Stores tenants, keys, collections and documents.
#[async_trait]
pub trait MetadataStore: Send + Sync {
    /// Brings the schema up to date.
    async fn migrate(&self) -> Result<()>;
    /// Whether the database answers.
    async fn ping(&self) -> Result<()>;

    /// Creates a tenant; `Conflict` when the name is taken.
    async fn create_tenant(&self, name: &str) -> Result<Tenant>;
    /// Finds a tenant by name.
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>>;
    /// Finds a tenant by id.
    async fn tenant_by_id(&self, id: &str) -> Result<Option<Tenant>>;
    /// Lists tenants by name.
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;

    /// Deletes a tenant row; its keys, collections, documents and chunk records go with it.
    async fn delete_tenant(&self, id: &str) -> Result<()>;
    /// Stores a key's hash for a tenant.
    async fn create_api_key(&self, key: NewApiKey<'_>) -> Result<ApiKey>;
    /// Finds an unrevoked key by its hash (expired or not: the caller checks).
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>>;
    /// Number of unrevoked cluster-admin keys.
    async fn count_admin_keys(&self) -> Result<i64>;
    /// Every key of a tenant, revoked ones included, oldest first.
    async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKey>>;
    /// Revokes a tenant's key now; `false` when it has no such unrevoked key.
    async fn revoke_api_key(&self, tenant_id: &str, id: &str) -> Result<bool>;
    /// Makes a tenant's unrevoked key expire at `at` (RFC 3339) unless it expires sooner;
    /// `false` when it has no such key.
    async fn expire_api_key(&self, tenant_id: &str, id: &str, at: &str) -> Result<bool>;

    /// Creates a collection; `Conflict` when the tenant already has that name.
    async fn create_collection(
        &self,
        tenant_id: &str,
        name: &str,
        description: &str,
        dimension: i64,
    ) -> Result<Collection>;
    /// Lists a tenant's collections by name.
    async fn list_collections(&self, tenant_id: &str) -> Result<Vec<Collection>>;
    /// Finds a tenant's collection by name.
    async fn collection_by_name(&self, tenant_id: &str, name: &str) -> Result<Option<Collection>>;
    /// Finds a collection by id (any tenant; for workers).
    async fn collection_by_id(&self, id: &str) -> Result<Option<Collection>>;
    /// Deletes a collection and its documents.
    async fn delete_collection(&self, id: &str) -> Result<()>;
    /// Increments the collection's version; returns the new one.
    async fn bump_collection_version(&self, id: &str) -> Result<i64>;
    /// Records the embedding model of a collection's vectors.
    async fn set_collection_model(&self, id: &str, model: &str, probe: &str) -> Result<()>;
    /// Starts switching collection `id` to another model (index generation + 1); a switch
    /// already under way is replaced, and no document counts as written into the next
    /// generation any more. Returns the collection as it now is.
    async fn start_model_switch(
        &self,
        id: &str,
        switch: ModelSwitch<'_>,
    ) -> Result<Option<Collection>>;
    /// Completes the switch of collection `id` from generation `from`, in one statement and
    /// only if every document that is neither `failed` nor `deleting` has points in the next
    /// generation: the collection takes the next model, dimension and generation, and its
    /// version is bumped. Returns whether it switched (false when documents remain, or when
    /// another process completed it first).
    async fn finish_model_switch(&self, id: &str, from: i64) -> Result<bool>;
    /// Every collection, of any tenant, that is switching models, and with `switched` also
    /// those that have switched at least once (`generation` > 0).
    async fn generational_collections(&self, switched: bool) -> Result<Vec<Collection>>;
    /// Deletes the chunk provenance of collection `collection_id`'s documents in index
    /// generations up to `up_to`; returns how many chunks' records went.
    async fn delete_chunk_provenance(&self, collection_id: &str, up_to: i64) -> Result<u64>;

    /// Inserts a document with status `queued`.
    async fn insert_document(&self, doc: NewDocument) -> Result<Document>;
    /// Finds a document by id (any tenant; for workers).
    async fn document(&self, id: &str) -> Result<Option<Document>>;
    /// Lists a collection's documents in id order, after `after` when given, only those in
    /// `status` when given.
    async fn list_documents(
        &self,
        collection_id: &str,
        status: Option<DocumentStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Document>>;
    /// Sets a document's status, error and chunk count, unless the document is being deleted:
    /// `false` when it is, or is gone, so that a late worker cannot bring it back.
    async fn set_document_status(
        &self,
        id: &str,
        status: DocumentStatus,
        error: Option<&str>,
        chunks: i64,
    ) -> Result<bool>;
    /// Marks a document `deleting`: from then on no status change applies to it, it is hidden
    /// from reads and filters, and whoever finds it so finishes removing it.
    async fn mark_document_deleting(&self, id: &str) -> Result<()>;
    /// Documents marked `deleting` whose removal has not finished (after a crash between steps).
    async fn deleting_documents(&self) -> Result<Vec<Document>>;
    /// How many of a tenant's documents wait for or are being indexed (`queued`, `processing`).
    async fn pending_documents(&self, tenant_id: &str) -> Result<i64>;
    /// Deletes a document row.
    async fn delete_document(&self, id: &str) -> Result<()>;
    /// Records, in one transaction, that document `id` of collection `collection_id` is
    /// indexed, its points written into index generation `generation` (and into `also_in`,
    /// the current generation, while the collection switches models):
    /// - the collection's version is bumped, so that once the document reads `indexed` no
    ///   result cached before its points (or their provenance) existed is served;
    /// - the document becomes `indexed` in `generation`, with one chunk per entry of
    ///   `provenance`;
    /// - `provenance` replaces what `generation` (and `also_in`) had for its chunks.
    ///
    /// Writes nothing and returns `false` when the document is being deleted, or is gone. The
    /// collection's row is locked before the document's, in the order a collection's deletion
    /// takes them, so the two cannot deadlock.
    async fn finish_indexing(
        &self,
        collection_id: &str,
        id: &str,
        generation: i64,
        also_in: Option<i64>,
        provenance: &[(u32, ChunkProvenance)],
    ) -> Result<bool>;
    /// The provenance of these (document, chunk) pairs in index generation `generation`;
    /// pairs without a record are absent.
    async fn chunk_provenance(
        &self,
        keys: &[(String, u32)],
        generation: i64,
    ) -> Result<std::collections::HashMap<(String, u32), ChunkProvenance>>;
    /// Ids of the collection's documents whose metadata passes every condition of `filter`.
    async fn documents_matching(
        &self,
        collection_id: &str,
        filter: &filter::MetadataFilter,
    ) -> Result<Vec<String>>;
    /// Documents left `queued` or `processing` with no live job (after a crash between steps).
    async fn orphaned_documents(&self) -> Result<Vec<Document>>;
    /// How many of the collection's documents are in each status (statuses with none absent).
    async fn document_status_counts(&self, collection_id: &str) -> Result<Vec<(String, i64)>>;
    /// Records a console sign-in.
    async fn create_console_session(&self, session: &ConsoleSession) -> Result<()>;
    /// The sign-in stored under `token_hash`, if its key is still live (expired ones too: the
    /// caller checks `expires_at`).
    async fn console_session(&self, token_hash: &str) -> Result<Option<ConsoleSession>>;
    /// Ends a sign-in.
    async fn delete_console_session(&self, token_hash: &str) -> Result<()>;
    /// Deletes sign-ins that expired before `now` (RFC 3339); returns how many.
    async fn purge_console_sessions(&self, now: &str) -> Result<u64>;
    /// Adds each row's counts to its (tenant, minute, key, collection) totals.
    async fn add_usage(&self, rows: &[UsageRow]) -> Result<()>;
    /// A tenant's usage rows from minute `since` on, oldest first.
    async fn usage(&self, tenant_id: &str, since: &str) -> Result<Vec<UsageRow>>;
    /// Deletes usage rows older than minute `before`; returns how many.
    async fn purge_usage(&self, before: &str) -> Result<u64>;
}

/// Current time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A stored RFC 3339 time, in UTC; `None` when it does not parse.
pub fn parse_rfc3339(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}
