//! PostgreSQL implementation of [`MetadataStore`], for many API and worker processes sharing
//! one database.
//!
//! Writes, and reads that must see the caller's own writes (workers reading a document just
//! queued, bootstrap, orphan detection), go to the primary. Listings and the reads on the search
//! path go to the read replicas in turn; a lookup by key that a replica does not find is asked
//! of the primary again, so a collection or key created a moment ago is never reported missing
//! because of replication lag. A replica that fails with a connection error is skipped for
//! `replica_retry_secs`, and when no replica is healthy the primary answers.
//!
//! Every pool connects lazily and checks a connection before lending it, so after PostgreSQL
//! restarts the dead connections are dropped and new ones made: while the database is away,
//! operations fail with [`MetadataError::Unavailable`] (HTTP 503 with Retry-After) and the
//! process recovers on its own.

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ragplane_config::PostgresConfig;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, Row};

use super::filter::{Bound, Condition, MetadataFilter};
use super::sql::Sql;
use super::{
    conflict_or, db, is_unavailable, now_rfc3339, ApiKey, ChunkProvenance, Collection,
    ConsoleSession, Document, DocumentStatus, MetadataStore, ModelSwitch, NewApiKey, NewDocument,
    Result, Tenant, TenantKey, UsageRow,
};

/// One read replica and until when it is skipped.
struct Replica {
    pool: PgPool,
    /// Where it is, for logs (the URL without credentials).
    host: String,
    down_until: Mutex<Option<Instant>>,
}

impl Replica {
    fn is_up(&self, now: Instant) -> bool {
        self.down_until
            .lock()
            .map_or(true, |d| d.is_none_or(|until| now >= until))
    }

    fn mark_down(&self, retry: Duration, error: &sqlx::Error) {
        if let Ok(mut d) = self.down_until.lock() {
            *d = Some(Instant::now() + retry);
        }
        tracing::warn!(replica = %self.host, %error, retry_secs = retry.as_secs(),
            "read replica failed; skipping it");
    }
}

/// The PostgreSQL metadata store.
pub struct PostgresStore {
    primary: PgPool,
    replicas: Vec<Replica>,
    next_replica: AtomicUsize,
    replica_retry: Duration,
}

/// Host, port and database of a URL, without user or password.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// Options of one server's pool: `url`, with the CA certificates `ca` (those of
/// `metadata.ca_file`, read once for every server) trusted.
fn connect_options(url: &str, cfg: &PostgresConfig, ca: Option<&[u8]>) -> Result<PgConnectOptions> {
    let mut options = crate::tls::postgres_ca(
        PgConnectOptions::from_str(url)
            .map_err(db("parse the PostgreSQL URL"))?
            .application_name("ragplane"),
        ca,
    );
    if cfg.statement_timeout_ms > 0 {
        options = options.options([(
            "statement_timeout",
            format!("{}ms", cfg.statement_timeout_ms),
        )]);
    }
    Ok(options)
}

impl PostgresStore {
    /// Creates the pools. Nothing connects until the first query, so a database (or replica)
    /// that is down at start delays nothing here; [`MetadataStore::migrate`] is the first use.
    pub fn connect(cfg: &PostgresConfig) -> Result<Self> {
        let ca = (cfg.ca_file.as_deref())
            .map(|path| crate::tls::read_ca_file(path, "metadata.ca_file"))
            .transpose()
            .map_err(|e| db("use metadata.ca_file")(sqlx::Error::Configuration(e.into())))?;
        let primary = PgPoolOptions::new()
            .max_connections(cfg.max_connections)
            .min_connections(cfg.min_connections)
            .acquire_timeout(Duration::from_millis(cfg.acquire_timeout_ms))
            .idle_timeout(Duration::from_secs(cfg.idle_timeout_secs))
            .test_before_acquire(true)
            .connect_lazy_with(connect_options(cfg.url.expose(), cfg, ca.as_deref())?);
        let replicas = cfg
            .replica_urls
            .iter()
            .map(|url| {
                let options = connect_options(url.expose(), cfg, ca.as_deref())?;
                let host = describe(&options);
                let pool = PgPoolOptions::new()
                    .max_connections(cfg.replica_max_connections)
                    .acquire_timeout(Duration::from_millis(cfg.replica_acquire_timeout_ms))
                    .idle_timeout(Duration::from_secs(cfg.idle_timeout_secs))
                    .test_before_acquire(true)
                    .connect_lazy_with(options);
                Ok(Replica {
                    pool,
                    host,
                    down_until: Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            primary,
            replicas,
            next_replica: AtomicUsize::new(0),
            replica_retry: Duration::from_secs(cfg.replica_retry_secs),
        })
    }

    /// The primary's pool.
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// Healthy replicas, starting from the next in turn.
    fn replicas_in_turn(&self) -> impl Iterator<Item = &Replica> {
        let n = self.replicas.len();
        let start = if n == 0 {
            0
        } else {
            self.next_replica.fetch_add(1, Ordering::Relaxed) % n
        };
        let now = Instant::now();
        (0..n)
            .map(move |i| &self.replicas[(start + i) % n])
            .filter(move |r| r.is_up(now))
    }

    /// Runs a read on a healthy replica, moving on when one fails to answer, and on the
    /// primary when none does.
    async fn read<T, F, Fut>(&self, query: F) -> std::result::Result<T, sqlx::Error>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        for replica in self.replicas_in_turn() {
            match query(replica.pool.clone()).await {
                Err(e) if is_unavailable(&e) => replica.mark_down(self.replica_retry, &e),
                other => return other,
            }
        }
        query(self.primary.clone()).await
    }

    /// A lookup by key on a replica; a miss is asked of the primary again (read-your-writes
    /// for anything just created).
    async fn lookup<T, F, Fut>(&self, query: F) -> std::result::Result<Option<T>, sqlx::Error>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = std::result::Result<Option<T>, sqlx::Error>>,
    {
        match self.read(&query).await? {
            Some(v) => Ok(Some(v)),
            None if !self.replicas.is_empty() => query(self.primary.clone()).await,
            None => Ok(None),
        }
    }
}

fn document_from_row(row: &PgRow) -> std::result::Result<Document, sqlx::Error> {
    let metadata: Json<serde_json::Map<String, serde_json::Value>> = row.try_get("metadata")?;
    let status: String = row.try_get("status")?;
    Ok(Document {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        collection_id: row.try_get("collection_id")?,
        title: row.try_get("title")?,
        source: row.try_get("source")?,
        content_type: row.try_get("content_type")?,
        size_bytes: row.try_get("size_bytes")?,
        sha256: row.try_get("sha256")?,
        metadata: metadata.0,
        object_key: row.try_get("object_key")?,
        status: DocumentStatus::parse(&status),
        error: row.try_get("error")?,
        chunk_count: row.try_get("chunk_count")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn documents_from_rows(rows: &[PgRow]) -> Result<Vec<Document>> {
    rows.iter()
        .map(document_from_row)
        .collect::<std::result::Result<_, _>>()
        .map_err(db("decode document"))
}

const COLLECTION_COLUMNS: &str =
    "id, tenant_id, name, description, dimension, version, created_at, embedding_model, \
     embedding_probe, generation, next_model, next_probe, next_dimension";

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.primary)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.primary)
            .await
            .map_err(db("ping the database"))?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        Sql(&self.primary).create_tenant(name).await
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        Sql(&self.primary).tenant(TenantKey::Name, name).await
    }

    async fn tenant_by_id(&self, id: &str) -> Result<Option<Tenant>> {
        Sql(&self.primary).tenant(TenantKey::Id, id).await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        self.read(|pool| async move {
            sqlx::query_as("SELECT id, name, created_at FROM tenants ORDER BY name")
                .fetch_all(&pool)
                .await
        })
        .await
        .map_err(db("list tenants"))
    }

    async fn delete_tenant(&self, id: &str) -> Result<()> {
        Sql(&self.primary).delete_tenant(id).await
    }

    async fn create_api_key(&self, key: NewApiKey<'_>) -> Result<ApiKey> {
        Sql(&self.primary).create_api_key(key).await
    }

    /// On the primary alone: a replica that lags would still find a key just revoked (or its
    /// tenant's, just deleted), and `auth.key_cache_secs` would then bound nothing.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        Sql(&self.primary).api_key_by_hash(key_hash).await
    }

    async fn count_admin_keys(&self) -> Result<i64> {
        Sql(&self.primary).count_admin_keys().await
    }

    async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKey>> {
        Sql(&self.primary).list_api_keys(tenant_id).await
    }

    async fn revoke_api_key(&self, tenant_id: &str, id: &str) -> Result<bool> {
        Sql(&self.primary).revoke_api_key(tenant_id, id).await
    }

    async fn expire_api_key(&self, tenant_id: &str, id: &str, at: &str) -> Result<bool> {
        Sql(&self.primary).expire_api_key(tenant_id, id, at).await
    }

    async fn create_collection(
        &self,
        tenant_id: &str,
        name: &str,
        description: &str,
        dimension: i64,
    ) -> Result<Collection> {
        Sql(&self.primary)
            .create_collection(tenant_id, name, description, dimension)
            .await
    }

    async fn list_collections(&self, tenant_id: &str) -> Result<Vec<Collection>> {
        let sql = format!(
            "SELECT {COLLECTION_COLUMNS} FROM collections WHERE tenant_id = $1 ORDER BY name"
        );
        self.read(|pool| {
            let sql = sql.clone();
            async move { sqlx::query_as(&sql).bind(tenant_id).fetch_all(&pool).await }
        })
        .await
        .map_err(db("list collections"))
    }

    async fn collection_by_name(&self, tenant_id: &str, name: &str) -> Result<Option<Collection>> {
        let sql = format!(
            "SELECT {COLLECTION_COLUMNS} FROM collections WHERE tenant_id = $1 AND name = $2"
        );
        self.lookup(|pool| {
            let sql = sql.clone();
            async move {
                sqlx::query_as(&sql)
                    .bind(tenant_id)
                    .bind(name)
                    .fetch_optional(&pool)
                    .await
            }
        })
        .await
        .map_err(db("read collection"))
    }

    async fn collection_by_id(&self, id: &str) -> Result<Option<Collection>> {
        sqlx::query_as(&format!(
            "SELECT {COLLECTION_COLUMNS} FROM collections WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.primary)
        .await
        .map_err(db("read collection"))
    }

    async fn delete_collection(&self, id: &str) -> Result<()> {
        Sql(&self.primary).delete_collection(id).await
    }

    async fn set_collection_model(&self, id: &str, model: &str, probe: &str) -> Result<()> {
        Sql(&self.primary)
            .set_collection_model(id, model, probe)
            .await
    }

    async fn start_model_switch(
        &self,
        id: &str,
        switch: ModelSwitch<'_>,
    ) -> Result<Option<Collection>> {
        Sql(&self.primary).start_model_switch(id, switch).await?;
        self.collection_by_id(id).await
    }

    async fn finish_model_switch(&self, id: &str, from: i64) -> Result<bool> {
        Sql(&self.primary).finish_model_switch(id, from).await
    }

    async fn generational_collections(&self, switched: bool) -> Result<Vec<Collection>> {
        sqlx::query_as(&format!(
            "SELECT {COLLECTION_COLUMNS} FROM collections \
             WHERE next_probe IS NOT NULL OR ($1 AND generation > 0)"
        ))
        .bind(switched)
        .fetch_all(&self.primary)
        .await
        .map_err(db("list switched collections"))
    }

    async fn delete_chunk_provenance(&self, collection_id: &str, up_to: i64) -> Result<u64> {
        Sql(&self.primary).delete_up_to(collection_id, up_to).await
    }

    async fn bump_collection_version(&self, id: &str) -> Result<i64> {
        Sql(&self.primary).bump_collection_version(id).await
    }

    async fn insert_document(&self, d: NewDocument) -> Result<Document> {
        let now = now_rfc3339();
        sqlx::query(
            "INSERT INTO documents (id, tenant_id, collection_id, title, source, content_type, size_bytes, \
             sha256, metadata, object_key, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', $11, $12)",
        )
        .bind(&d.id)
        .bind(&d.tenant_id)
        .bind(&d.collection_id)
        .bind(&d.title)
        .bind(&d.source)
        .bind(&d.content_type)
        .bind(d.size_bytes)
        .bind(&d.sha256)
        .bind(Json(&d.metadata))
        .bind(&d.object_key)
        .bind(&now)
        .bind(&now)
        .execute(&self.primary)
        .await
        .map_err(conflict_or("document", d.id.clone(), "insert document"))?;
        Ok(d.into_queued(now))
    }

    async fn document(&self, id: &str) -> Result<Option<Document>> {
        let row = sqlx::query("SELECT * FROM documents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.primary)
            .await
            .map_err(db("read document"))?;
        row.as_ref()
            .map(document_from_row)
            .transpose()
            .map_err(db("decode document"))
    }

    async fn list_documents(
        &self,
        collection_id: &str,
        status: Option<DocumentStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Document>> {
        let after = after.unwrap_or("");
        let status = status.map(DocumentStatus::as_str);
        let rows = self
            .read(|pool| async move {
                sqlx::query(
                    "SELECT * FROM documents WHERE collection_id = $1 AND id > $2 AND status <> 'deleting' \
                     AND ($4::text IS NULL OR status = $4) ORDER BY id LIMIT $3",
                )
                .bind(collection_id)
                .bind(after)
                .bind(limit)
                .bind(status)
                .fetch_all(&pool)
                .await
            })
            .await
            .map_err(db("list documents"))?;
        documents_from_rows(&rows)
    }

    async fn set_document_status(
        &self,
        id: &str,
        status: DocumentStatus,
        error: Option<&str>,
        chunks: i64,
    ) -> Result<bool> {
        Sql(&self.primary)
            .set_document_status(id, status, error, chunks)
            .await
    }

    async fn mark_document_deleting(&self, id: &str) -> Result<()> {
        Sql(&self.primary).mark_document_deleting(id).await
    }

    async fn pending_documents(&self, tenant_id: &str) -> Result<i64> {
        Sql(&self.primary).pending_documents(tenant_id).await
    }

    async fn deleting_documents(&self) -> Result<Vec<Document>> {
        let rows = sqlx::query("SELECT * FROM documents WHERE status = 'deleting'")
            .fetch_all(&self.primary)
            .await
            .map_err(db("find documents being deleted"))?;
        documents_from_rows(&rows)
    }

    async fn delete_document(&self, id: &str) -> Result<()> {
        Sql(&self.primary).delete_document(id).await
    }

    async fn finish_indexing(
        &self,
        collection_id: &str,
        id: &str,
        generation: i64,
        also_in: Option<i64>,
        provenance: &[(u32, ChunkProvenance)],
    ) -> Result<bool> {
        Sql(&self.primary)
            .finish_indexing(collection_id, id, generation, also_in, provenance)
            .await
    }

    async fn chunk_provenance(
        &self,
        keys: &[(String, u32)],
        generation: i64,
    ) -> Result<std::collections::HashMap<(String, u32), ChunkProvenance>> {
        Sql(&self.primary).provenance(keys, generation).await
    }

    async fn documents_matching(
        &self,
        collection_id: &str,
        filter: &MetadataFilter,
    ) -> Result<Vec<String>> {
        #[derive(Clone)]
        enum Arg {
            Text(String),
            Real(f64),
            Json(serde_json::Value),
        }
        // Non-null equalities are one containment test, which the GIN index serves (`{}`
        // matches every document); a null value matches a missing key as well as an explicit
        // null, as in the SQLite store.
        let mut contained = serde_json::Map::new();
        let mut sql =
            String::from("SELECT id FROM documents WHERE collection_id = $1 AND status <> 'deleting' AND metadata @> $2");
        let mut args: Vec<Arg> = Vec::new();
        let next = |args: &mut Vec<Arg>, a: Arg| {
            args.push(a);
            format!("${}", args.len() + 2)
        };
        for (k, c) in &filter.conditions {
            match c {
                Condition::Eq(serde_json::Value::Null) => {
                    let p = next(&mut args, Arg::Text(k.clone()));
                    sql.push_str(&format!(
                        " AND (metadata -> {p} IS NULL OR metadata -> {p} = 'null'::jsonb)"
                    ));
                }
                Condition::Eq(v) => {
                    contained.insert(k.clone(), v.clone());
                }
                Condition::In(l) => {
                    let p = next(&mut args, Arg::Text(k.clone()));
                    let q = next(&mut args, Arg::Json(l.clone().into()));
                    sql.push_str(&format!(
                        " AND metadata -> {p} = ANY (SELECT jsonb_array_elements({q}::jsonb))"
                    ));
                }
                Condition::NotIn(l) => {
                    let p = next(&mut args, Arg::Text(k.clone()));
                    let q = next(&mut args, Arg::Json(l.clone().into()));
                    sql.push_str(&format!(
                        " AND NOT COALESCE(metadata -> {p} = ANY (SELECT jsonb_array_elements({q}::jsonb)), false)"
                    ));
                }
                Condition::Range(cmp, Bound::Number(n)) => {
                    let p = next(&mut args, Arg::Text(k.clone()));
                    let q = next(&mut args, Arg::Real(*n));
                    sql.push_str(&format!(
                        " AND (CASE WHEN jsonb_typeof(metadata -> {p}) = 'number' \
                         THEN (metadata ->> {p})::float8 END) {} {q}",
                        cmp.sql()
                    ));
                }
                Condition::Range(cmp, Bound::Date(d)) => {
                    let p = next(&mut args, Arg::Text(k.clone()));
                    let q = next(&mut args, Arg::Text(d.clone()));
                    sql.push_str(&format!(
                        " AND (CASE WHEN jsonb_typeof(metadata -> {p}) = 'string' \
                         AND (metadata ->> {p}) ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}' \
                         THEN metadata ->> {p} END) COLLATE \"C\" {} {q}",
                        cmp.sql()
                    ));
                }
            }
        }
        sql.push_str(" ORDER BY id");
        let contained = Json(contained);
        self.read(|pool| {
            let sql = sql.clone();
            let contained = &contained;
            let args = args.clone();
            async move {
                let mut q = sqlx::query_scalar(&sql).bind(collection_id).bind(contained);
                for a in args {
                    q = match a {
                        Arg::Text(t) => q.bind(t),
                        Arg::Real(f) => q.bind(f),
                        Arg::Json(v) => q.bind(Json(v)),
                    };
                }
                q.fetch_all(&pool).await
            }
        })
        .await
        .map_err(db("filter documents by metadata"))
    }

    async fn orphaned_documents(&self) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT * FROM documents d WHERE d.status IN ('queued', 'processing') AND NOT EXISTS \
             (SELECT 1 FROM jobs j WHERE j.document_id = d.id AND j.status IN ('queued', 'running'))",
        )
        .fetch_all(&self.primary)
        .await
        .map_err(db("find orphaned documents"))?;
        documents_from_rows(&rows)
    }

    async fn document_status_counts(&self, collection_id: &str) -> Result<Vec<(String, i64)>> {
        const SQL: &str = "SELECT status, COUNT(*) FROM documents WHERE collection_id = $1 \
             GROUP BY status ORDER BY status";
        self.read(|pool| async move {
            sqlx::query_as(SQL)
                .bind(collection_id)
                .fetch_all(&pool)
                .await
        })
        .await
        .map_err(db("count documents"))
    }

    async fn create_console_session(&self, s: &ConsoleSession) -> Result<()> {
        Sql(&self.primary).create_console_session(s).await
    }

    async fn console_session(&self, token_hash: &str) -> Result<Option<ConsoleSession>> {
        Sql(&self.primary).console_session(token_hash).await
    }

    async fn delete_console_session(&self, token_hash: &str) -> Result<()> {
        Sql(&self.primary).delete_console_session(token_hash).await
    }

    async fn purge_console_sessions(&self, now: &str) -> Result<u64> {
        Sql(&self.primary).purge_console_sessions(now).await
    }

    async fn add_usage(&self, rows: &[UsageRow]) -> Result<()> {
        Sql(&self.primary).add_usage(rows).await
    }

    async fn usage(&self, tenant_id: &str, since: &str) -> Result<Vec<UsageRow>> {
        const SQL: &str = "SELECT tenant_id, minute, key_id, collection, queries, llm_tokens \
             FROM usage_minutes WHERE tenant_id = $1 AND minute >= $2 \
             ORDER BY minute, key_id, collection";
        self.read(|pool| async move {
            sqlx::query_as(SQL)
                .bind(tenant_id)
                .bind(since)
                .fetch_all(&pool)
                .await
        })
        .await
        .map_err(db("read usage"))
    }

    async fn purge_usage(&self, before: &str) -> Result<u64> {
        Sql(&self.primary).purge_usage(before).await
    }
}
