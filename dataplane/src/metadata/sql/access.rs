//! Tenants, API keys, web console sessions and usage records.

use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::{RowsAffected, Sql};
use crate::metadata::{
    conflict_or, db, new_id, now_rfc3339, ApiKey, ConsoleSession, NewApiKey, Result, Scope, Tenant,
    TenantKey, UsageRow,
};

impl<DB> Sql<'_, DB>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
    for<'r> ConsoleSession: sqlx::FromRow<'r, DB::Row>,
    for<'r> ApiKey: sqlx::FromRow<'r, DB::Row>,
    for<'r> Tenant: sqlx::FromRow<'r, DB::Row>,
{
    /// [`MetadataStore::delete_tenant`](crate::metadata::MetadataStore::delete_tenant).
    pub(crate) async fn delete_tenant(&self, id: &str) -> Result<()> {
        self.run("DELETE FROM tenants WHERE id = $1", id, "delete tenant")
            .await
            .map(drop)
    }

    /// [`MetadataStore::create_api_key`](crate::metadata::MetadataStore::create_api_key).
    pub(crate) async fn create_api_key(&self, key: NewApiKey<'_>) -> Result<ApiKey> {
        let k = ApiKey {
            id: new_id(),
            tenant_id: key.tenant_id.to_string(),
            prefix: key.prefix.to_string(),
            name: key.name.to_string(),
            scope: key.scope,
            created_at: now_rfc3339(),
            expires_at: key.expires_at,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, name, admin, scope, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&k.id)
        .bind(&k.tenant_id)
        .bind(key.key_hash)
        .bind(&k.prefix)
        .bind(&k.name)
        .bind(k.scope == Scope::ClusterAdmin)
        .bind(k.scope.as_str())
        .bind(&k.created_at)
        .bind(&k.expires_at)
        .execute(self.0)
        .await
        .map_err(conflict_or("api key", key.prefix.to_string(), "create api key"))?;
        Ok(k)
    }

    /// [`MetadataStore::api_key_by_hash`](crate::metadata::MetadataStore::api_key_by_hash).
    pub(crate) async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        sqlx::query_as(
            "SELECT id, tenant_id, prefix, name, scope, created_at, expires_at, revoked_at \
             FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(self.0)
        .await
        .map_err(db("read api key"))
    }

    /// [`MetadataStore::count_admin_keys`](crate::metadata::MetadataStore::count_admin_keys).
    pub(crate) async fn count_admin_keys(&self) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE scope = 'cluster-admin' AND revoked_at IS NULL",
        )
        .fetch_one(self.0)
        .await
        .map_err(db("count admin keys"))
    }

    /// [`MetadataStore::revoke_api_key`](crate::metadata::MetadataStore::revoke_api_key).
    pub(crate) async fn revoke_api_key(&self, tenant_id: &str, id: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(now_rfc3339())
        .bind(tenant_id)
        .bind(id)
        .execute(self.0)
        .await
        .map_err(db("revoke api key"))?;
        Ok(r.rows() > 0)
    }

    /// [`MetadataStore::expire_api_key`](crate::metadata::MetadataStore::expire_api_key).
    pub(crate) async fn expire_api_key(&self, tenant_id: &str, id: &str, at: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE api_keys SET expires_at = $1 WHERE tenant_id = $2 AND id = $3 \
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $4)",
        )
        .bind(at)
        .bind(tenant_id)
        .bind(id)
        .bind(at)
        .execute(self.0)
        .await
        .map_err(db("set api key expiry"))?;
        Ok(r.rows() > 0)
    }

    /// [`MetadataStore::create_console_session`](crate::metadata::MetadataStore::create_console_session).
    pub(crate) async fn create_console_session(&self, s: &ConsoleSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, key_hash, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.token_hash)
        .bind(&s.key_hash)
        .bind(&s.csrf_token)
        .bind(&s.created_at)
        .bind(&s.expires_at)
        .execute(self.0)
        .await
        .map_err(db("create console session"))?;
        Ok(())
    }

    /// [`MetadataStore::console_session`](crate::metadata::MetadataStore::console_session).
    pub(crate) async fn console_session(&self, token_hash: &str) -> Result<Option<ConsoleSession>> {
        sqlx::query_as(
            "SELECT s.token_hash, s.key_hash, s.csrf_token, s.created_at, s.expires_at \
             FROM console_sessions s JOIN api_keys k ON k.key_hash = s.key_hash \
             WHERE s.token_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(self.0)
        .await
        .map_err(db("read console session"))
    }

    /// [`MetadataStore::delete_console_session`](crate::metadata::MetadataStore::delete_console_session).
    pub(crate) async fn delete_console_session(&self, token_hash: &str) -> Result<()> {
        self.run(
            "DELETE FROM console_sessions WHERE token_hash = $1",
            token_hash,
            "delete console session",
        )
        .await
        .map(drop)
    }

    /// [`MetadataStore::purge_console_sessions`](crate::metadata::MetadataStore::purge_console_sessions).
    pub(crate) async fn purge_console_sessions(&self, now: &str) -> Result<u64> {
        self.run(
            "DELETE FROM console_sessions WHERE expires_at < $1",
            now,
            "purge console sessions",
        )
        .await
    }

    /// [`MetadataStore::add_usage`](crate::metadata::MetadataStore::add_usage).
    pub(crate) async fn add_usage(&self, rows: &[UsageRow]) -> Result<()> {
        let mut tx = self.0.begin().await.map_err(db("record usage"))?;
        for r in rows {
            sqlx::query(
                "INSERT INTO usage_minutes (tenant_id, minute, key_id, collection, queries, llm_tokens) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (tenant_id, minute, key_id, collection) DO UPDATE SET \
                 queries = usage_minutes.queries + excluded.queries, \
                 llm_tokens = usage_minutes.llm_tokens + excluded.llm_tokens",
            )
            .bind(&r.tenant_id)
            .bind(&r.minute)
            .bind(&r.key_id)
            .bind(&r.collection)
            .bind(r.queries)
            .bind(r.llm_tokens)
            .execute(&mut *tx)
            .await
            .map_err(db("record usage"))?;
        }
        tx.commit().await.map_err(db("record usage"))
    }

    /// [`MetadataStore::purge_usage`](crate::metadata::MetadataStore::purge_usage).
    pub(crate) async fn purge_usage(&self, before: &str) -> Result<u64> {
        self.run(
            "DELETE FROM usage_minutes WHERE minute < $1",
            before,
            "purge usage",
        )
        .await
    }

    /// A tenant by id or by name.
    pub(crate) async fn tenant(&self, key: TenantKey, value: &str) -> Result<Option<Tenant>> {
        let sql = match key {
            TenantKey::Id => "SELECT id, name, created_at FROM tenants WHERE id = $1",
            TenantKey::Name => "SELECT id, name, created_at FROM tenants WHERE name = $1",
        };
        sqlx::query_as(sql)
            .bind(value)
            .fetch_optional(self.0)
            .await
            .map_err(db("read tenant"))
    }

    /// [`MetadataStore::create_tenant`](crate::metadata::MetadataStore::create_tenant).
    pub(crate) async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        let t = Tenant {
            id: new_id(),
            name: name.to_string(),
            created_at: now_rfc3339(),
        };
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(&t.created_at)
            .execute(self.0)
            .await
            .map_err(conflict_or("tenant", name, "create tenant"))?;
        Ok(t)
    }

    /// [`MetadataStore::list_api_keys`](crate::metadata::MetadataStore::list_api_keys).
    pub(crate) async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKey>> {
        sqlx::query_as(
            "SELECT id, tenant_id, prefix, name, scope, created_at, expires_at, revoked_at FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(tenant_id)
        .fetch_all(self.0)
        .await
        .map_err(db("list api keys"))
    }
}
