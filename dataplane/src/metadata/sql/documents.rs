//! Collections (their creation, model, version and model switches), and documents' statuses.

use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::{RowsAffected, Sql};
use crate::metadata::{
    conflict_or, db, new_id, now_rfc3339, Collection, DocumentStatus, ModelSwitch, Result,
};

impl<DB> Sql<'_, DB>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
{
    /// [`MetadataStore::delete_collection`](crate::metadata::MetadataStore::delete_collection).
    pub(crate) async fn delete_collection(&self, id: &str) -> Result<()> {
        self.run(
            "DELETE FROM collections WHERE id = $1",
            id,
            "delete collection",
        )
        .await
        .map(drop)
    }

    /// [`MetadataStore::bump_collection_version`](crate::metadata::MetadataStore::bump_collection_version).
    pub(crate) async fn bump_collection_version(&self, id: &str) -> Result<i64> {
        sqlx::query_scalar(
            "UPDATE collections SET version = version + 1 WHERE id = $1 RETURNING version",
        )
        .bind(id)
        .fetch_optional(self.0)
        .await
        .map_err(db("bump collection version"))
        .map(Option::unwrap_or_default)
    }

    /// [`MetadataStore::start_model_switch`](crate::metadata::MetadataStore::start_model_switch): its statements; the store then reads the collection back.
    pub(crate) async fn start_model_switch(&self, id: &str, switch: ModelSwitch<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE collections SET next_model = $1, next_probe = $2, next_dimension = $3 \
             WHERE id = $4",
        )
        .bind(switch.model)
        .bind(switch.probe)
        .bind(switch.dimension)
        .bind(id)
        .execute(self.0)
        .await
        .map_err(db("start a model switch"))?;
        // Points written for a switch this one replaces do not count for it.
        sqlx::query(
            "UPDATE documents SET generation = \
             (SELECT generation FROM collections WHERE id = $1) \
             WHERE collection_id = $2 \
             AND generation > (SELECT generation FROM collections WHERE id = $3)",
        )
        .bind(id)
        .bind(id)
        .bind(id)
        .execute(self.0)
        .await
        .map_err(db("start a model switch"))?;
        Ok(())
    }

    /// [`MetadataStore::finish_model_switch`](crate::metadata::MetadataStore::finish_model_switch).
    pub(crate) async fn finish_model_switch(&self, id: &str, from: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE collections SET generation = generation + 1, embedding_model = next_model, \
             embedding_probe = next_probe, dimension = next_dimension, version = version + 1, \
             next_model = NULL, next_probe = NULL, next_dimension = NULL \
             WHERE id = $1 AND generation = $2 AND next_probe IS NOT NULL AND NOT EXISTS ( \
               SELECT 1 FROM documents WHERE collection_id = $3 AND generation <= $4 \
               AND status NOT IN ('failed', 'deleting'))",
        )
        .bind(id)
        .bind(from)
        .bind(id)
        .bind(from)
        .execute(self.0)
        .await
        .map_err(db("finish a model switch"))?;
        Ok(r.rows() > 0)
    }

    /// [`MetadataStore::set_document_status`](crate::metadata::MetadataStore::set_document_status).
    pub(crate) async fn set_document_status(
        &self,
        id: &str,
        status: DocumentStatus,
        error: Option<&str>,
        chunks: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE documents SET status = $1, error = $2, chunk_count = $3, updated_at = $4 \
             WHERE id = $5 AND status <> 'deleting'",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(chunks)
        .bind(now_rfc3339())
        .bind(id)
        .execute(self.0)
        .await
        .map_err(db("update document status"))?;
        Ok(r.rows() > 0)
    }

    /// [`MetadataStore::mark_document_deleting`](crate::metadata::MetadataStore::mark_document_deleting).
    pub(crate) async fn mark_document_deleting(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE documents SET status = 'deleting', updated_at = $1 WHERE id = $2")
            .bind(now_rfc3339())
            .bind(id)
            .execute(self.0)
            .await
            .map_err(db("mark document deleting"))?;
        Ok(())
    }

    /// [`MetadataStore::pending_documents`](crate::metadata::MetadataStore::pending_documents).
    pub(crate) async fn pending_documents(&self, tenant_id: &str) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM documents WHERE tenant_id = $1 AND status IN ('queued', 'processing')",
        )
        .bind(tenant_id)
        .fetch_one(self.0)
        .await
        .map_err(db("count pending documents"))
    }

    /// [`MetadataStore::delete_document`](crate::metadata::MetadataStore::delete_document).
    pub(crate) async fn delete_document(&self, id: &str) -> Result<()> {
        self.run("DELETE FROM documents WHERE id = $1", id, "delete document")
            .await
            .map(drop)
    }

    /// [`MetadataStore::create_collection`](crate::metadata::MetadataStore::create_collection).
    pub(crate) async fn create_collection(
        &self,
        tenant_id: &str,
        name: &str,
        description: &str,
        dimension: i64,
    ) -> Result<Collection> {
        let c = Collection {
            id: new_id(),
            tenant_id: tenant_id.to_string(),
            name: name.to_string(),
            description: description.to_string(),
            dimension,
            version: 0,
            created_at: now_rfc3339(),
            embedding_model: None,
            embedding_probe: None,
            generation: 0,
            next_model: None,
            next_probe: None,
            next_dimension: None,
        };
        sqlx::query(
            "INSERT INTO collections (id, tenant_id, name, description, dimension, version, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6)",
        )
        .bind(&c.id)
        .bind(tenant_id)
        .bind(name)
        .bind(description)
        .bind(dimension)
        .bind(&c.created_at)
        .execute(self.0)
        .await
        .map_err(conflict_or("collection", name, "create collection"))?;
        Ok(c)
    }

    /// [`MetadataStore::set_collection_model`](crate::metadata::MetadataStore::set_collection_model).
    pub(crate) async fn set_collection_model(
        &self,
        id: &str,
        model: &str,
        probe: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE collections SET embedding_model = $1, embedding_probe = $2 WHERE id = $3",
        )
        .bind(model)
        .bind(probe)
        .bind(id)
        .execute(self.0)
        .await
        .map_err(db("record the collection's embedding model"))?;
        Ok(())
    }
}
