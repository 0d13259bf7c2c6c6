//! The PostgreSQL-backed vector index: PostgreSQL is the durable store shared by every process,
//! and each process keeps an in-memory HNSW replica ([`MemoryCollection`]) of the collections it
//! searches, brought up to date from the table before each search.
//!
//! Tables (created idempotently at open, under names of their own so they can share a database
//! with the metadata store):
//!
//! ```text
//! ragplane_vector_collections (tenant, collection) → dimension, incarnation, version
//! ragplane_vector_points      (tenant, collection, id) → seq, document, title, chunk, text,
//!                                                        vector (f32 LE bytes; NULL = deleted)
//! ```
//!
//! Every write transaction first bumps its collection's `version` (`UPDATE … RETURNING`), which
//! also locks the collection row until commit; every row it writes gets that version as `seq`.
//! Writers of one collection therefore commit in `seq` order, so a reader that has applied all
//! rows with `seq <= V` after seeing version `V` committed has missed nothing: later writes get
//! larger `seq` values. Deletes keep the row as a tombstone (vector NULL) with a new `seq`, so
//! replicas learn of them the same way. `incarnation` changes when a collection is dropped and
//! created again, which makes replicas rebuild from scratch.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ragplane_config::PostgresIndexConfig;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;

use super::hnsw::{blocking, Change, HnswParams, MemoryCollection};
use super::{CollectionKey, Filter, Hit, Payload, Point, Result, VectorError, VectorIndex};

/// Serialises schema creation between processes starting at once.
const SCHEMA_LOCK: i64 = 0x7261_6770_7665_6373; // "ragpvecs"

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS ragplane_vector_collections (
        tenant TEXT NOT NULL,
        collection TEXT NOT NULL,
        dimension INTEGER NOT NULL,
        incarnation BIGINT NOT NULL,
        version BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, collection))",
    "CREATE SEQUENCE IF NOT EXISTS ragplane_vector_incarnations",
    "CREATE TABLE IF NOT EXISTS ragplane_vector_points (
        tenant TEXT NOT NULL,
        collection TEXT NOT NULL,
        id BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        document TEXT NOT NULL,
        title TEXT NOT NULL,
        chunk INTEGER NOT NULL,
        text TEXT NOT NULL,
        vector BYTEA,
        PRIMARY KEY (tenant, collection, id))",
    "CREATE INDEX IF NOT EXISTS ragplane_vector_points_seq
        ON ragplane_vector_points (tenant, collection, seq, id)",
    "CREATE INDEX IF NOT EXISTS ragplane_vector_points_document
        ON ragplane_vector_points (tenant, collection, document)",
];

/// PostgreSQL-backed implementation of [`VectorIndex`].
pub struct PostgresIndex {
    pool: PgPool,
    cfg: PostgresIndexConfig,
    replicas: RwLock<HashMap<CollectionKey, Arc<Replica>>>,
}

/// A process's copy of one collection and how far it has read the table.
struct Replica {
    sync: tokio::sync::Mutex<ReplicaState>,
}

#[derive(Default)]
struct ReplicaState {
    memory: Option<Arc<MemoryCollection>>,
    incarnation: i64,
    /// Collection version whose rows are all applied.
    version: i64,
    /// Last row applied, in `(seq, id)` order.
    cursor: (i64, i64),
    checked_at: Option<Instant>,
}

fn pg_err(action: impl Into<String>) -> impl FnOnce(sqlx::Error) -> VectorError {
    let action = action.into();
    move |e| {
        let unavailable = matches!(
            e,
            sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed
        ) || e
            .as_database_error()
            .and_then(|d| d.code())
            // Class 08 (connection exception), 57P01-57P03 (shutdown, cannot connect now).
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P"));
        if unavailable {
            VectorError::Unavailable {
                backend: "postgres",
                action,
                message: e.to_string(),
            }
        } else {
            VectorError::Backend {
                backend: "postgres",
                action,
                message: e.to_string(),
            }
        }
    }
}

fn encode(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode(bytes: &[u8], collection: &str) -> Result<Vec<f32>> {
    if bytes.len() % 4 != 0 {
        return Err(VectorError::Backend {
            backend: "postgres",
            action: format!("decode a vector of collection {collection}"),
            message: format!("{} bytes is not a whole number of f32", bytes.len()),
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

// Ids are u64 with the top bit clear (see `point_id`); any other u64 round-trips through the
// signed column bit for bit.
#[allow(clippy::cast_possible_wrap)]
fn to_db(id: u64) -> i64 {
    id as i64
}

#[allow(clippy::cast_sign_loss)]
fn from_db(id: i64) -> u64 {
    id as u64
}

impl PostgresIndex {
    /// Connects (lazily: the pool opens connections when needed) and creates the tables.
    pub async fn open(cfg: PostgresIndexConfig) -> Result<Self> {
        let invalid = |action: &str, message: String| VectorError::Backend {
            backend: "postgres",
            action: action.into(),
            message,
        };
        let options: PgConnectOptions = cfg
            .url
            .expose()
            .parse()
            .map_err(|e| invalid("parse vectors.url", format!("{e}")))?;
        let ca = (cfg.ca_file.as_deref())
            .map(|path| crate::tls::read_ca_file(path, "vectors.ca_file"))
            .transpose()
            .map_err(|e| invalid("use vectors.ca_file", e.to_string()))?;
        let options = crate::tls::postgres_ca(options, ca.as_deref());
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections)
            .acquire_timeout(Duration::from_secs(cfg.acquire_timeout_secs))
            .connect_lazy_with(options);
        let this = Self {
            pool,
            cfg,
            replicas: RwLock::new(HashMap::new()),
        };
        this.create_schema().await?;
        Ok(this)
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn create_schema(&self) -> Result<()> {
        let action = "create the vector tables";
        let mut tx = self.pool.begin().await.map_err(pg_err(action))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(pg_err(action))?;
        for stmt in SCHEMA {
            sqlx::query(stmt)
                .execute(&mut *tx)
                .await
                .map_err(pg_err(action))?;
        }
        tx.commit().await.map_err(pg_err(action))
    }

    fn params(&self) -> HnswParams {
        HnswParams {
            m: self.cfg.m,
            ef_construction: self.cfg.ef_construction,
            ef_search: self.cfg.ef_search,
        }
    }

    fn replica(&self, key: &CollectionKey) -> Arc<Replica> {
        if let Some(r) = self
            .replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return r.clone();
        }
        self.replicas
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Replica {
                    sync: tokio::sync::Mutex::new(ReplicaState::default()),
                })
            })
            .clone()
    }

    fn forget(&self, key: &CollectionKey) {
        self.replicas
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Brings this process's replica of `key` up to date with every committed write; `None`
    /// when the collection does not exist.
    async fn synced(&self, key: &CollectionKey) -> Result<Option<Arc<MemoryCollection>>> {
        let replica = self.replica(key);
        let mut st = replica.sync.lock().await;
        let fresh_enough = self.cfg.max_staleness_ms > 0
            && st
                .checked_at
                .is_some_and(|t| t.elapsed() < Duration::from_millis(self.cfg.max_staleness_ms));
        if fresh_enough && st.memory.is_some() {
            return Ok(st.memory.clone());
        }
        let action = format!("read collection {}", key.collection);
        let row = sqlx::query(
            "SELECT dimension, incarnation, version FROM ragplane_vector_collections
             WHERE tenant = $1 AND collection = $2",
        )
        .bind(&key.tenant)
        .bind(&key.collection)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_err(&action))?;
        let Some(row) = row else {
            *st = ReplicaState::default();
            drop(st);
            self.forget(key);
            return Ok(None);
        };
        let dimension: i32 = row.get(0);
        let incarnation: i64 = row.get(1);
        let version: i64 = row.get(2);
        let rebuild = st.memory.is_none() || st.incarnation != incarnation;
        if rebuild {
            let name = key.collection.clone();
            let params = self.params();
            let dim = usize::try_from(dimension).unwrap_or(0);
            let memory =
                blocking(move || MemoryCollection::new(&name, dim, params).map(Arc::new)).await?;
            *st = ReplicaState {
                memory: Some(memory),
                incarnation,
                version: 0,
                cursor: (0, 0),
                checked_at: None,
            };
        }
        if version > st.version {
            let memory = st.memory.clone();
            if let Some(memory) = memory {
                // A fresh replica skips tombstones written before it started: it never held
                // those points. Later tombstones have seq > version and are applied.
                let skip_tombstones_through = if rebuild { version } else { 0 };
                st.cursor = self
                    .catch_up(key, &memory, st.cursor, skip_tombstones_through)
                    .await?;
            }
            st.version = version;
        }
        st.checked_at = Some(Instant::now());
        Ok(st.memory.clone())
    }

    /// Applies every row after `cursor`; returns the new cursor.
    async fn catch_up(
        &self,
        key: &CollectionKey,
        memory: &Arc<MemoryCollection>,
        mut cursor: (i64, i64),
        skip_tombstones_through: i64,
    ) -> Result<(i64, i64)> {
        let limit = i64::try_from(self.cfg.catch_up_batch_size).unwrap_or(i64::MAX);
        let action = format!("read the points of collection {}", key.collection);
        let mut applied = 0usize;
        loop {
            let rows = sqlx::query(
                "SELECT id, seq, document, title, chunk, text, vector FROM ragplane_vector_points
                 WHERE tenant = $1 AND collection = $2 AND (seq, id) > ($3, $4)
                   AND (vector IS NOT NULL OR seq > $5)
                 ORDER BY seq, id LIMIT $6",
            )
            .bind(&key.tenant)
            .bind(&key.collection)
            .bind(cursor.0)
            .bind(cursor.1)
            .bind(skip_tombstones_through)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(pg_err(&action))?;
            let n = rows.len();
            let mut changes = Vec::with_capacity(n);
            for row in rows {
                let id: i64 = row.get(0);
                let seq: i64 = row.get(1);
                cursor = (seq, id);
                let vector: Option<Vec<u8>> = row.get(6);
                changes.push(match vector {
                    None => Change::Remove(from_db(id)),
                    Some(bytes) => Change::Upsert(Point {
                        metadata: Default::default(),
                        id: from_db(id),
                        vector: decode(&bytes, &key.collection)?,
                        payload: Payload {
                            tenant: key.tenant.clone(),
                            collection: key.collection.clone(),
                            document: row.get(2),
                            title: row.get(3),
                            chunk: u32::try_from(row.get::<i32, _>(4)).unwrap_or(0),
                            text: row.get(5),
                        },
                    }),
                });
            }
            if !changes.is_empty() {
                let memory = memory.clone();
                blocking(move || memory.apply(changes)).await?;
            }
            applied += n;
            if (n as i64) < limit {
                break;
            }
        }
        if applied > 0 {
            tracing::debug!(collection = %key.collection, rows = applied, "vector replica caught up");
        }
        Ok(cursor)
    }

    /// Starts a write to `key`: bumps the version (locking the collection row until commit)
    /// and returns the transaction, the new version and the dimension; `None` when the
    /// collection does not exist.
    async fn begin_write(
        &self,
        key: &CollectionKey,
        action: &str,
    ) -> Result<Option<(sqlx::Transaction<'static, sqlx::Postgres>, i64, usize)>> {
        let mut tx = self.pool.begin().await.map_err(pg_err(action))?;
        let row = sqlx::query(
            "UPDATE ragplane_vector_collections SET version = version + 1
             WHERE tenant = $1 AND collection = $2 RETURNING version, dimension",
        )
        .bind(&key.tenant)
        .bind(&key.collection)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg_err(action))?;
        Ok(row.map(|r| {
            let dimension: i32 = r.get(1);
            (tx, r.get(0), usize::try_from(dimension).unwrap_or(0))
        }))
    }
}

#[async_trait]
impl VectorIndex for PostgresIndex {
    async fn ensure_collection(&self, key: &CollectionKey, dimension: usize) -> Result<()> {
        let action = format!("create collection {}", key.collection);
        let dim = i32::try_from(dimension).map_err(|_| VectorError::Dimension {
            collection: key.collection.clone(),
            expected: i32::MAX as usize,
            got: dimension,
        })?;
        sqlx::query(
            "INSERT INTO ragplane_vector_collections (tenant, collection, dimension, incarnation)
             VALUES ($1, $2, $3, nextval('ragplane_vector_incarnations'))
             ON CONFLICT (tenant, collection) DO NOTHING",
        )
        .bind(&key.tenant)
        .bind(&key.collection)
        .bind(dim)
        .execute(&self.pool)
        .await
        .map_err(pg_err(action))?;
        Ok(())
    }

    async fn drop_collection(&self, key: &CollectionKey) -> Result<()> {
        let action = format!("drop collection {}", key.collection);
        let mut tx = self.pool.begin().await.map_err(pg_err(&action))?;
        for stmt in [
            "DELETE FROM ragplane_vector_collections WHERE tenant = $1 AND collection = $2",
            "DELETE FROM ragplane_vector_points WHERE tenant = $1 AND collection = $2",
        ] {
            sqlx::query(stmt)
                .bind(&key.tenant)
                .bind(&key.collection)
                .execute(&mut *tx)
                .await
                .map_err(pg_err(&action))?;
        }
        tx.commit().await.map_err(pg_err(&action))?;
        self.forget(key);
        Ok(())
    }

    async fn upsert(&self, key: &CollectionKey, points: Vec<Point>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let action = format!("upsert points into collection {}", key.collection);
        let Some((mut tx, version, dimension)) = self.begin_write(key, &action).await? else {
            return Err(VectorError::Index {
                collection: key.collection.clone(),
                message: "collection does not exist in the vector index".into(),
            });
        };
        // One statement may not touch a row twice: the last point with an id wins.
        let mut last: HashMap<u64, usize> = HashMap::with_capacity(points.len());
        for (i, p) in points.iter().enumerate() {
            if p.vector.len() != dimension {
                return Err(VectorError::Dimension {
                    collection: key.collection.clone(),
                    expected: dimension,
                    got: p.vector.len(),
                });
            }
            last.insert(p.id, i);
        }
        let unique: Vec<&Point> = points
            .iter()
            .enumerate()
            .filter(|(i, p)| last.get(&p.id) == Some(i))
            .map(|(_, p)| p)
            .collect();
        for batch in unique.chunks(self.cfg.upsert_batch_size.max(1)) {
            let ids: Vec<i64> = batch.iter().map(|p| to_db(p.id)).collect();
            let documents: Vec<&str> = batch.iter().map(|p| p.payload.document.as_str()).collect();
            let titles: Vec<&str> = batch.iter().map(|p| p.payload.title.as_str()).collect();
            let chunks: Vec<i32> = batch
                .iter()
                .map(|p| i32::try_from(p.payload.chunk).unwrap_or(i32::MAX))
                .collect();
            let texts: Vec<&str> = batch.iter().map(|p| p.payload.text.as_str()).collect();
            let vectors: Vec<Vec<u8>> = batch.iter().map(|p| encode(&p.vector)).collect();
            sqlx::query(
                "INSERT INTO ragplane_vector_points
                     (tenant, collection, id, seq, document, title, chunk, text, vector)
                 SELECT $1, $2, u.id, $3, u.document, u.title, u.chunk, u.text, u.vector
                 FROM UNNEST($4::BIGINT[], $5::TEXT[], $6::TEXT[], $7::INTEGER[], $8::TEXT[],
                             $9::BYTEA[]) AS u(id, document, title, chunk, text, vector)
                 ON CONFLICT (tenant, collection, id) DO UPDATE SET
                     seq = EXCLUDED.seq, document = EXCLUDED.document, title = EXCLUDED.title,
                     chunk = EXCLUDED.chunk, text = EXCLUDED.text, vector = EXCLUDED.vector",
            )
            .bind(&key.tenant)
            .bind(&key.collection)
            .bind(version)
            .bind(&ids)
            .bind(&documents)
            .bind(&titles)
            .bind(&chunks)
            .bind(&texts)
            .bind(&vectors)
            .execute(&mut *tx)
            .await
            .map_err(pg_err(&action))?;
        }
        tx.commit().await.map_err(pg_err(&action))
    }

    async fn delete_chunks_from(
        &self,
        key: &CollectionKey,
        document: &str,
        first: u32,
    ) -> Result<u64> {
        let action = format!(
            "delete document {document} from chunk {first} on from collection {}",
            key.collection
        );
        let Some((mut tx, version, _)) = self.begin_write(key, &action).await? else {
            return Ok(0);
        };
        let removed = sqlx::query(
            "UPDATE ragplane_vector_points SET vector = NULL, text = '', seq = $4
             WHERE tenant = $1 AND collection = $2 AND document = $3 AND chunk >= $5
               AND vector IS NOT NULL",
        )
        .bind(&key.tenant)
        .bind(&key.collection)
        .bind(document)
        .bind(version)
        .bind(first as i32)
        .execute(&mut *tx)
        .await
        .map_err(pg_err(&action))?
        .rows_affected();
        if removed == 0 {
            // Nothing changed: do not make every replica look for changes.
            tx.rollback().await.map_err(pg_err(&action))?;
        } else {
            tx.commit().await.map_err(pg_err(&action))?;
        }
        Ok(removed)
    }

    async fn search(&self, query: Vec<f32>, k: usize, filter: Filter) -> Result<Vec<Hit>> {
        let key = filter.key();
        let Some(memory) = self.synced(&key).await? else {
            return Ok(Vec::new());
        };
        memory.search(query, k, filter).await
    }

    async fn keyword_search(
        &self,
        terms: Vec<String>,
        k: usize,
        filter: Filter,
    ) -> Result<Vec<Hit>> {
        let Some(memory) = self.synced(&filter.key()).await? else {
            return Ok(Vec::new());
        };
        memory.keyword_search(terms, k, filter).await
    }

    async fn keyword_average_terms(&self, key: &CollectionKey) -> Result<Option<f32>> {
        Ok(self
            .synced(key)
            .await?
            .map(|memory| memory.keyword_average_terms()))
    }

    async fn count(&self, key: &CollectionKey, document: Option<&str>) -> Result<u64> {
        let action = format!("count the points of collection {}", key.collection);
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ragplane_vector_points
             WHERE tenant = $1 AND collection = $2 AND vector IS NOT NULL
               AND ($3::TEXT IS NULL OR document = $3)",
        )
        .bind(&key.tenant)
        .bind(&key.collection)
        .bind(document)
        .fetch_one(&self.pool)
        .await
        .map_err(pg_err(action))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn flush(&self) -> Result<()> {
        // Every write is committed to PostgreSQL before it returns.
        Ok(())
    }
}
