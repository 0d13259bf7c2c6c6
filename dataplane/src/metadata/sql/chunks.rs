//! Chunk provenance and the end of a document's indexing.

use std::collections::HashMap;

use sqlx::{Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{tuples, RowsAffected, Sql};
use crate::metadata::{db, now_rfc3339, ChunkProvenance, DocumentStatus, Result};

/// Rows of one chunk-provenance statement: SQLite allows 32,766 bound values per statement.
const PROVENANCE_BATCH: usize = 1000;

impl<DB> Sql<'_, DB>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB> + sqlx::ColumnIndex<DB::Row>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
{
    /// [`MetadataStore::finish_indexing`](crate::metadata::MetadataStore::finish_indexing).
    pub(crate) async fn finish_indexing(
        &self,
        collection_id: &str,
        id: &str,
        generation: i64,
        also_in: Option<i64>,
        provenance: &[(u32, ChunkProvenance)],
    ) -> Result<bool> {
        const ACTION: &str = "record the document as indexed";
        let mut tx = self.0.begin().await.map_err(db(ACTION))?;
        // The collection's row first: a collection's deletion locks it before its documents.
        sqlx::query("UPDATE collections SET version = version + 1 WHERE id = $1")
            .bind(collection_id)
            .execute(&mut *tx)
            .await
            .map_err(db(ACTION))?;
        let updated = sqlx::query(
            "UPDATE documents SET status = $1, error = NULL, chunk_count = $2, generation = $3, \
             updated_at = $4 WHERE id = $5 AND status <> 'deleting'",
        )
        .bind(DocumentStatus::Indexed.as_str())
        .bind(provenance.len() as i64)
        .bind(generation)
        .bind(now_rfc3339())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        if updated.rows() == 0 {
            tx.rollback().await.map_err(db(ACTION))?;
            return Ok(false);
        }
        for generation in also_in.into_iter().chain([generation]) {
            sqlx::query("DELETE FROM chunks WHERE document_id = $1 AND generation = $2")
                .bind(id)
                .bind(generation)
                .execute(&mut *tx)
                .await
                .map_err(db(ACTION))?;
            for batch in provenance.chunks(PROVENANCE_BATCH) {
                let sql = format!(
                    "INSERT INTO chunks \
                     (document_id, generation, chunk, start_char, end_char, page, headings) VALUES {}",
                    tuples(batch.len(), 7, 1)
                );
                let mut q = sqlx::query(&sql);
                for (chunk, p) in batch {
                    q = q
                        .bind(id)
                        .bind(generation)
                        .bind(i64::from(*chunk))
                        .bind(p.start)
                        .bind(p.end)
                        .bind(p.page)
                        .bind(serde_json::to_string(&p.headings).unwrap_or_default());
                }
                q.execute(&mut *tx).await.map_err(db(ACTION))?;
            }
        }
        tx.commit().await.map_err(db(ACTION))?;
        Ok(true)
    }

    /// [`MetadataStore::chunk_provenance`](crate::metadata::MetadataStore::chunk_provenance).
    pub(crate) async fn provenance(
        &self,
        keys: &[(String, u32)],
        generation: i64,
    ) -> Result<HashMap<(String, u32), ChunkProvenance>> {
        let mut out = HashMap::new();
        for batch in keys.chunks(PROVENANCE_BATCH) {
            let sql = format!(
                "SELECT document_id, chunk, start_char, end_char, page, headings FROM chunks \
                 WHERE generation = $1 AND (document_id, chunk) IN ({})",
                tuples(batch.len(), 2, 2)
            );
            let mut q = sqlx::query(&sql).bind(generation);
            for (doc, chunk) in batch {
                q = q.bind(doc.as_str()).bind(i64::from(*chunk));
            }
            let rows = q
                .fetch_all(self.0)
                .await
                .map_err(db("read chunk provenance"))?;
            for r in &rows {
                let (key, p) = from_row(r).map_err(db("decode chunk provenance"))?;
                out.insert(key, p);
            }
        }
        Ok(out)
    }

    /// [`MetadataStore::delete_chunk_provenance`](crate::metadata::MetadataStore::delete_chunk_provenance).
    pub(crate) async fn delete_up_to(&self, collection_id: &str, up_to: i64) -> Result<u64> {
        sqlx::query(
            "DELETE FROM chunks WHERE generation <= $1 AND document_id IN \
             (SELECT id FROM documents WHERE collection_id = $2)",
        )
        .bind(up_to)
        .bind(collection_id)
        .execute(self.0)
        .await
        .map(|r| r.rows())
        .map_err(db("drop the chunk provenance of previous generations"))
    }
}

/// Decodes a row of the `chunks` table.
fn from_row<R>(r: &R) -> std::result::Result<((String, u32), ChunkProvenance), sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i32>: Decode<'r, R::Database> + Type<R::Database>,
{
    let headings: String = r.try_get("headings")?;
    let key = (
        r.try_get::<String, _>("document_id")?,
        u32::try_from(r.try_get::<i64, _>("chunk")?).unwrap_or(u32::MAX),
    );
    Ok((
        key,
        ChunkProvenance {
            start: r.try_get("start_char")?,
            end: r.try_get("end_char")?,
            page: r.try_get("page")?,
            headings: serde_json::from_str(&headings).unwrap_or_default(),
        },
    ))
}
