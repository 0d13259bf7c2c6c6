//! SQLite implementation of [`MetadataStore`] (and the pool shared with the SQLite queue).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::filter::{Bound, Condition, MetadataFilter};
use super::sql::Sql;
use super::{
    conflict_or, db, now_rfc3339, ApiKey, ChunkProvenance, Collection, ConsoleSession, Document,
    DocumentStatus, MetadataStore, NewApiKey, NewDocument, Result, Tenant,
};
use super::{ModelSwitch, TenantKey, UsageRow};

/// The embedded metadata store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| db("create the data directory")(sqlx::Error::Io(e)))?;
        }
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(db("parse the SQLite path"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL survives a process crash; only an OS crash may lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(db("open the SQLite database"))?;
        Ok(Self { pool })
    }

    /// The connection pool, shared with the SQLite queue.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn document_from_row(row: &sqlx::sqlite::SqliteRow) -> std::result::Result<Document, sqlx::Error> {
    let metadata: String = row.try_get("metadata")?;
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
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        object_key: row.try_get("object_key")?,
        status: DocumentStatus::parse(&status),
        error: row.try_get("error")?,
        chunk_count: row.try_get("chunk_count")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db("ping the database"))?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        Sql(&self.pool).create_tenant(name).await
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        Sql(&self.pool).tenant(TenantKey::Name, name).await
    }

    async fn tenant_by_id(&self, id: &str) -> Result<Option<Tenant>> {
        Sql(&self.pool).tenant(TenantKey::Id, id).await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        sqlx::query_as("SELECT id, name, created_at FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db("list tenants"))
    }

    async fn delete_tenant(&self, id: &str) -> Result<()> {
        Sql(&self.pool).delete_tenant(id).await
    }

    async fn create_api_key(&self, key: NewApiKey<'_>) -> Result<ApiKey> {
        Sql(&self.pool).create_api_key(key).await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        Sql(&self.pool).api_key_by_hash(key_hash).await
    }

    async fn count_admin_keys(&self) -> Result<i64> {
        Sql(&self.pool).count_admin_keys().await
    }

    async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKey>> {
        Sql(&self.pool).list_api_keys(tenant_id).await
    }

    async fn revoke_api_key(&self, tenant_id: &str, id: &str) -> Result<bool> {
        Sql(&self.pool).revoke_api_key(tenant_id, id).await
    }

    async fn expire_api_key(&self, tenant_id: &str, id: &str, at: &str) -> Result<bool> {
        Sql(&self.pool).expire_api_key(tenant_id, id, at).await
    }

    async fn create_collection(
        &self,
        tenant_id: &str,
        name: &str,
        description: &str,
        dimension: i64,
    ) -> Result<Collection> {
        Sql(&self.pool)
            .create_collection(tenant_id, name, description, dimension)
            .await
    }

    async fn list_collections(&self, tenant_id: &str) -> Result<Vec<Collection>> {
        sqlx::query_as("SELECT * FROM collections WHERE tenant_id = ? ORDER BY name")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list collections"))
    }

    async fn collection_by_name(&self, tenant_id: &str, name: &str) -> Result<Option<Collection>> {
        sqlx::query_as("SELECT * FROM collections WHERE tenant_id = ? AND name = ?")
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read collection"))
    }

    async fn collection_by_id(&self, id: &str) -> Result<Option<Collection>> {
        sqlx::query_as("SELECT * FROM collections WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read collection"))
    }

    async fn delete_collection(&self, id: &str) -> Result<()> {
        Sql(&self.pool).delete_collection(id).await
    }

    async fn set_collection_model(&self, id: &str, model: &str, probe: &str) -> Result<()> {
        Sql(&self.pool).set_collection_model(id, model, probe).await
    }

    async fn start_model_switch(
        &self,
        id: &str,
        switch: ModelSwitch<'_>,
    ) -> Result<Option<Collection>> {
        Sql(&self.pool).start_model_switch(id, switch).await?;
        self.collection_by_id(id).await
    }

    async fn finish_model_switch(&self, id: &str, from: i64) -> Result<bool> {
        Sql(&self.pool).finish_model_switch(id, from).await
    }

    async fn generational_collections(&self, switched: bool) -> Result<Vec<Collection>> {
        sqlx::query_as(
            "SELECT * FROM collections WHERE next_probe IS NOT NULL OR (? AND generation > 0)",
        )
        .bind(switched)
        .fetch_all(&self.pool)
        .await
        .map_err(db("list switched collections"))
    }

    async fn delete_chunk_provenance(&self, collection_id: &str, up_to: i64) -> Result<u64> {
        Sql(&self.pool).delete_up_to(collection_id, up_to).await
    }

    async fn bump_collection_version(&self, id: &str) -> Result<i64> {
        Sql(&self.pool).bump_collection_version(id).await
    }

    async fn insert_document(&self, d: NewDocument) -> Result<Document> {
        let now = now_rfc3339();
        let metadata = serde_json::Value::Object(d.metadata.clone()).to_string();
        sqlx::query(
            "INSERT INTO documents (id, tenant_id, collection_id, title, source, content_type, size_bytes, sha256, \
             metadata, object_key, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
        )
        .bind(&d.id)
        .bind(&d.tenant_id)
        .bind(&d.collection_id)
        .bind(&d.title)
        .bind(&d.source)
        .bind(&d.content_type)
        .bind(d.size_bytes)
        .bind(&d.sha256)
        .bind(&metadata)
        .bind(&d.object_key)
        .bind(&now)
        .bind(&now)
        .execute(&self.pool)
        .await
        .map_err(conflict_or("document", d.id.clone(), "insert document"))?;
        Ok(d.into_queued(now))
    }

    async fn document(&self, id: &str) -> Result<Option<Document>> {
        let row = sqlx::query("SELECT * FROM documents WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
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
        let rows = sqlx::query(
            "SELECT * FROM documents WHERE collection_id = ?1 AND id > ?2 AND status <> 'deleting' \
             AND (?3 IS NULL OR status = ?3) ORDER BY id LIMIT ?4",
        )
        .bind(collection_id)
        .bind(after.unwrap_or(""))
        .bind(status.map(DocumentStatus::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("list documents"))?;
        rows.iter()
            .map(document_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(db("decode document"))
    }

    async fn set_document_status(
        &self,
        id: &str,
        status: DocumentStatus,
        error: Option<&str>,
        chunks: i64,
    ) -> Result<bool> {
        Sql(&self.pool)
            .set_document_status(id, status, error, chunks)
            .await
    }

    async fn mark_document_deleting(&self, id: &str) -> Result<()> {
        Sql(&self.pool).mark_document_deleting(id).await
    }

    async fn pending_documents(&self, tenant_id: &str) -> Result<i64> {
        Sql(&self.pool).pending_documents(tenant_id).await
    }

    async fn deleting_documents(&self) -> Result<Vec<Document>> {
        let rows = sqlx::query("SELECT * FROM documents WHERE status = 'deleting'")
            .fetch_all(&self.pool)
            .await
            .map_err(db("find documents being deleted"))?;
        rows.iter()
            .map(document_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(db("decode document"))
    }

    async fn delete_document(&self, id: &str) -> Result<()> {
        Sql(&self.pool).delete_document(id).await
    }

    async fn finish_indexing(
        &self,
        collection_id: &str,
        id: &str,
        generation: i64,
        also_in: Option<i64>,
        provenance: &[(u32, ChunkProvenance)],
    ) -> Result<bool> {
        Sql(&self.pool)
            .finish_indexing(collection_id, id, generation, also_in, provenance)
            .await
    }

    async fn chunk_provenance(
        &self,
        keys: &[(String, u32)],
        generation: i64,
    ) -> Result<std::collections::HashMap<(String, u32), ChunkProvenance>> {
        Sql(&self.pool).provenance(keys, generation).await
    }

    async fn documents_matching(
        &self,
        collection_id: &str,
        filter: &MetadataFilter,
    ) -> Result<Vec<String>> {
        enum Arg {
            Text(String),
            Real(f64),
        }
        let mut sql = String::from(
            "SELECT id FROM documents WHERE collection_id = ? AND status <> 'deleting'",
        );
        let mut args = Vec::new();
        for (k, c) in &filter.conditions {
            // Keys are validated to [A-Za-z0-9_.-]; quoting keeps dots literal.
            let path = || Arg::Text(format!("$.\"{k}\""));
            let list = |l: &Vec<serde_json::Value>| {
                Arg::Text(serde_json::Value::from(l.clone()).to_string())
            };
            match c {
                Condition::Eq(v) => {
                    sql.push_str(" AND json_extract(metadata, ?) IS json_extract(?, '$')");
                    args.extend([path(), Arg::Text(v.to_string())]);
                }
                Condition::In(l) => {
                    sql.push_str(
                        " AND json_extract(metadata, ?) IN (SELECT value FROM json_each(?))",
                    );
                    args.extend([path(), list(l)]);
                }
                Condition::NotIn(l) => {
                    sql.push_str(
                        " AND (json_extract(metadata, ?) IS NULL \
                         OR json_extract(metadata, ?) NOT IN (SELECT value FROM json_each(?)))",
                    );
                    args.extend([path(), path(), list(l)]);
                }
                Condition::Range(cmp, Bound::Number(n)) => {
                    sql.push_str(&format!(
                        " AND json_type(metadata, ?) IN ('integer', 'real') AND json_extract(metadata, ?) {} ?",
                        cmp.sql()
                    ));
                    args.extend([path(), path(), Arg::Real(*n)]);
                }
                Condition::Range(cmp, Bound::Date(d)) => {
                    sql.push_str(&format!(
                        " AND json_type(metadata, ?) = 'text' \
                         AND json_extract(metadata, ?) GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' \
                         AND json_extract(metadata, ?) {} ?",
                        cmp.sql()
                    ));
                    args.extend([path(), path(), path(), Arg::Text(d.clone())]);
                }
            }
        }
        let mut q = sqlx::query_scalar(&sql).bind(collection_id);
        for a in args {
            q = match a {
                Arg::Text(t) => q.bind(t),
                Arg::Real(f) => q.bind(f),
            };
        }
        q.fetch_all(&self.pool)
            .await
            .map_err(db("filter documents by metadata"))
    }

    async fn orphaned_documents(&self) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT * FROM documents d WHERE d.status IN ('queued', 'processing') AND NOT EXISTS \
             (SELECT 1 FROM jobs j WHERE j.document_id = d.id AND j.status IN ('queued', 'running'))",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("find orphaned documents"))?;
        rows.iter()
            .map(document_from_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(db("decode document"))
    }

    async fn document_status_counts(&self, collection_id: &str) -> Result<Vec<(String, i64)>> {
        const SQL: &str = "SELECT status, COUNT(*) FROM documents WHERE collection_id = ? \
             GROUP BY status ORDER BY status";
        sqlx::query_as(SQL)
            .bind(collection_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("count documents"))
    }

    async fn create_console_session(&self, s: &ConsoleSession) -> Result<()> {
        Sql(&self.pool).create_console_session(s).await
    }

    async fn console_session(&self, token_hash: &str) -> Result<Option<ConsoleSession>> {
        Sql(&self.pool).console_session(token_hash).await
    }

    async fn delete_console_session(&self, token_hash: &str) -> Result<()> {
        Sql(&self.pool).delete_console_session(token_hash).await
    }

    async fn purge_console_sessions(&self, now: &str) -> Result<u64> {
        Sql(&self.pool).purge_console_sessions(now).await
    }

    async fn add_usage(&self, rows: &[UsageRow]) -> Result<()> {
        Sql(&self.pool).add_usage(rows).await
    }

    async fn usage(&self, tenant_id: &str, since: &str) -> Result<Vec<UsageRow>> {
        const SQL: &str = "SELECT tenant_id, minute, key_id, collection, queries, llm_tokens \
             FROM usage_minutes WHERE tenant_id = ? AND minute >= ? \
             ORDER BY minute, key_id, collection";
        sqlx::query_as(SQL)
            .bind(tenant_id)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(db("read usage"))
    }

    async fn purge_usage(&self, before: &str) -> Result<u64> {
        Sql(&self.pool).purge_usage(before).await
    }
}
