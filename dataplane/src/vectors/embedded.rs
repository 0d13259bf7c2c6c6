//! The embedded vector index: one usearch HNSW graph per collection, persisted under the data
//! directory as a snapshot plus a write-ahead log.
//!
//! Layout of a collection's directory:
//!
//! ```text
//! meta.json            dimension (written once, on creation)
//! CURRENT              generation number G of the live snapshot
//! snap-G/index.usearch the HNSW graph at generation G (absent for G = 0)
//! snap-G/payloads.bin  the payloads at generation G
//! wal-G.log            changes made after snapshot G
//! ```
//!
//! A snapshot is written to `snap-(G+1)`, then `CURRENT` is replaced atomically, then the old
//! generation is removed; a crash at any point leaves one whole generation to open. Points
//! become searchable as soon as they are added: nothing waits for a rebuild.
//!
//! The graph, payloads and search live in [`MemoryCollection`], shared with the
//! PostgreSQL-backed index; this module adds the files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use ragplane_config::EmbeddedIndexConfig;
use serde::{Deserialize, Serialize};

use super::hnsw::{blocking, index_err, HnswParams, MemoryCollection};
use super::wal::{self, Record, WalWriter};
use super::{io, CollectionKey, Filter, Hit, Payload, Point, Result, VectorError, VectorIndex};

/// Embedded implementation of [`VectorIndex`].
pub struct EmbeddedIndex {
    root: PathBuf,
    cfg: EmbeddedIndexConfig,
    collections: RwLock<HashMap<CollectionKey, Arc<CollectionIndex>>>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    tenant: String,
    collection: String,
    dimension: usize,
}

struct CollectionIndex {
    dir: PathBuf,
    name: String,
    generation: Mutex<u64>,
    memory: Arc<MemoryCollection>,
    wal: Mutex<WalWriter>,
    snapshot_after_bytes: u64,
}

fn params(cfg: &EmbeddedIndexConfig) -> HnswParams {
    HnswParams {
        m: cfg.m,
        ef_construction: cfg.ef_construction,
        ef_search: cfg.ef_search,
    }
}

impl EmbeddedIndex {
    /// Opens every collection under `root`, replaying write-ahead logs.
    pub async fn open(root: PathBuf, cfg: EmbeddedIndexConfig) -> Result<Self> {
        let this = Self {
            root: root.clone(),
            cfg: cfg.clone(),
            collections: RwLock::new(HashMap::new()),
        };
        let opened = blocking(move || {
            std::fs::create_dir_all(&root).map_err(io("create", &root))?;
            let mut out = HashMap::new();
            for entry in std::fs::read_dir(&root).map_err(io("list", &root))? {
                let dir = entry.map_err(io("list", &root))?.path();
                let meta_path = dir.join("meta.json");
                if !meta_path.exists() {
                    continue;
                }
                let meta: Meta = read_json(&meta_path)?;
                let key = CollectionKey {
                    tenant: meta.tenant.clone(),
                    collection: meta.collection.clone(),
                };
                let c = CollectionIndex::open(&dir, &meta, &cfg)?;
                out.insert(key, Arc::new(c));
            }
            Ok(out)
        })
        .await?;
        let points: usize = opened.values().map(|c| c.len()).sum();
        tracing::info!(collections = opened.len(), points, dir = %this.root.display(), "embedded vector index opened");
        *this.collections.write().unwrap_or_else(|e| e.into_inner()) = opened;
        Ok(this)
    }

    fn get(&self, key: &CollectionKey) -> Option<Arc<CollectionIndex>> {
        self.collections
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn get_or_missing(&self, key: &CollectionKey) -> Result<Arc<CollectionIndex>> {
        self.get(key).ok_or_else(|| VectorError::Index {
            collection: key.collection.clone(),
            message: "collection does not exist in the vector index".into(),
        })
    }

    fn dir_for(&self, key: &CollectionKey) -> PathBuf {
        self.root.join(format!(
            "{}.{}",
            hex::encode(&key.tenant),
            hex::encode(&key.collection)
        ))
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|e| VectorError::Corrupt {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename", path))?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(io("sync", parent))?;
    }
    Ok(())
}

impl CollectionIndex {
    fn open(dir: &Path, meta: &Meta, cfg: &EmbeddedIndexConfig) -> Result<Self> {
        let name = meta.collection.clone();
        let current = dir.join("CURRENT");
        let generation: u64 = match std::fs::read_to_string(&current) {
            Ok(s) => s.trim().parse().map_err(|e| VectorError::Corrupt {
                path: current.display().to_string(),
                message: format!("bad generation number: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io("read", &current)(e)),
        };
        let snap = dir.join(format!("snap-{generation}"));
        let memory = if generation > 0 {
            let payload_path = snap.join("payloads.bin");
            let bytes = std::fs::read(&payload_path).map_err(io("read", &payload_path))?;
            let list: Vec<(u64, Payload)> =
                postcard::from_bytes(&bytes).map_err(|e| VectorError::Corrupt {
                    path: payload_path.display().to_string(),
                    message: e.to_string(),
                })?;
            let graph = snap.join("index.usearch");
            MemoryCollection::load(&name, meta.dimension, params(cfg), &graph, list)?
        } else {
            MemoryCollection::new(&name, meta.dimension, params(cfg))?
        };
        let wal_path = dir.join(format!("wal-{generation}.log"));
        let records = wal::replay(&wal_path)?;
        let replayed = records.len();
        for r in records {
            apply(&memory, r)?;
        }
        if replayed > 0 {
            tracing::debug!(collection = %name, replayed, "replayed write-ahead log");
        }
        remove_stale_generations(dir, generation);
        Ok(Self {
            dir: dir.to_path_buf(),
            name,
            generation: Mutex::new(generation),
            memory: Arc::new(memory),
            wal: Mutex::new(WalWriter::open(&wal_path)?),
            snapshot_after_bytes: cfg.snapshot_after_bytes,
        })
    }

    fn len(&self) -> usize {
        self.memory.len()
    }

    /// Logs then applies a change; snapshots when the log has grown past the threshold.
    fn write(&self, record: Record) -> Result<u64> {
        let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        wal.append(&record)?;
        let changed = apply(&self.memory, record)?;
        if wal.len() >= self.snapshot_after_bytes {
            self.snapshot(&mut wal)?;
        }
        Ok(changed)
    }

    /// Writes the next generation's snapshot and switches to an empty log. The log lock is held
    /// by the caller, so no write can slip between the snapshot and the new log.
    fn snapshot(&self, wal: &mut WalWriter) -> Result<()> {
        let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let next = *generation + 1;
        let snap = self.dir.join(format!("snap-{next}"));
        std::fs::create_dir_all(&snap).map_err(io("create", &snap))?;
        self.memory.save_graph(&snap.join("index.usearch"))?;
        write_atomic(&snap.join("payloads.bin"), &self.memory.payload_list()?)?;
        let next_wal = self.dir.join(format!("wal-{next}.log"));
        let _ = std::fs::remove_file(&next_wal);
        let new_writer = WalWriter::open(&next_wal)?;
        write_atomic(&self.dir.join("CURRENT"), next.to_string().as_bytes())?;
        *wal = new_writer;
        *generation = next;
        remove_stale_generations(&self.dir, next);
        tracing::debug!(collection = %self.name, generation = next, "vector index snapshot written");
        Ok(())
    }
}

/// Applies a logged change in memory; returns the number of points touched.
fn apply(memory: &MemoryCollection, record: Record) -> Result<u64> {
    match record {
        Record::Upsert(points) => memory.upsert(points),
        Record::DeleteDocument(document) => memory.delete_chunks_from(&document, 0),
        Record::DeleteChunksFrom(document, first) => memory.delete_chunks_from(&document, first),
    }
}

/// Removes snapshot directories and logs of generations other than `keep`.
fn remove_stale_generations(dir: &Path, keep: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let generation = name
            .strip_prefix("snap-")
            .or_else(|| {
                name.strip_prefix("wal-")
                    .and_then(|n| n.strip_suffix(".log"))
            })
            .and_then(|g| g.parse::<u64>().ok());
        if generation.is_some_and(|g| g != keep) {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

#[async_trait]
impl VectorIndex for EmbeddedIndex {
    async fn ensure_collection(&self, key: &CollectionKey, dimension: usize) -> Result<()> {
        if self.get(key).is_some() {
            return Ok(());
        }
        let dir = self.dir_for(key);
        let meta = Meta {
            tenant: key.tenant.clone(),
            collection: key.collection.clone(),
            dimension,
        };
        let cfg = self.cfg.clone();
        let c = blocking(move || {
            std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
            let meta_path = dir.join("meta.json");
            if !meta_path.exists() {
                let bytes =
                    serde_json::to_vec(&meta).map_err(|e| index_err(&meta.collection, e))?;
                write_atomic(&meta_path, &bytes)?;
            }
            CollectionIndex::open(&dir, &meta, &cfg)
        })
        .await?;
        self.collections
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_insert_with(|| Arc::new(c));
        Ok(())
    }

    async fn drop_collection(&self, key: &CollectionKey) -> Result<()> {
        let removed = self
            .collections
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let dir = self.dir_for(key);
        drop(removed);
        blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &dir)(e)),
        })
        .await
    }

    async fn upsert(&self, key: &CollectionKey, points: Vec<Point>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let c = self.get_or_missing(key)?;
        blocking(move || c.write(Record::Upsert(points)).map(|_| ())).await
    }

    async fn delete_chunks_from(
        &self,
        key: &CollectionKey,
        document: &str,
        first: u32,
    ) -> Result<u64> {
        let Some(c) = self.get(key) else { return Ok(0) };
        let document = document.to_string();
        let record = if first == 0 {
            Record::DeleteDocument(document)
        } else {
            Record::DeleteChunksFrom(document, first)
        };
        blocking(move || c.write(record)).await
    }

    async fn search(&self, query: Vec<f32>, k: usize, filter: Filter) -> Result<Vec<Hit>> {
        let key = filter.key();
        let Some(c) = self.get(&key) else {
            return Ok(Vec::new());
        };
        c.memory.search(query, k, filter).await
    }

    async fn keyword_search(
        &self,
        terms: Vec<String>,
        k: usize,
        filter: Filter,
    ) -> Result<Vec<Hit>> {
        let Some(c) = self.get(&filter.key()) else {
            return Ok(Vec::new());
        };
        c.memory.keyword_search(terms, k, filter).await
    }

    async fn keyword_average_terms(&self, key: &CollectionKey) -> Result<Option<f32>> {
        Ok(self.get(key).map(|c| c.memory.keyword_average_terms()))
    }

    async fn count(&self, key: &CollectionKey, document: Option<&str>) -> Result<u64> {
        let Some(c) = self.get(key) else { return Ok(0) };
        Ok(c.memory.count(document))
    }

    async fn flush(&self) -> Result<()> {
        let all: Vec<Arc<CollectionIndex>> = self
            .collections
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        blocking(move || {
            for c in all {
                let mut wal = c.wal.lock().unwrap_or_else(|e| e.into_inner());
                if wal.len() > 0 {
                    c.snapshot(&mut wal)?;
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::point_id;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        // A deterministic spread of unit vectors.
        let mut v: Vec<f32> = (0..dim)
            .map(|i| ((seed * 31 + i as u64 * 17) % 97) as f32 - 48.0)
            .collect();
        crate::embed::pooling::l2_normalize(&mut v);
        v
    }

    fn seed(doc: &str, chunk: u32) -> u64 {
        u64::from(chunk) + doc.len() as u64 * 1000
    }

    fn points(key: &CollectionKey, doc: &str, n: u32, dim: usize) -> Vec<Point> {
        (0..n)
            .map(|i| Point {
                metadata: Default::default(),
                id: point_id(doc, i),
                vector: unit(seed(doc, i), dim),
                payload: Payload {
                    tenant: key.tenant.clone(),
                    collection: key.collection.clone(),
                    document: doc.into(),
                    title: doc.into(),
                    chunk: i,
                    text: format!("{doc} chunk {i}"),
                },
            })
            .collect()
    }

    fn key(t: &str, c: &str) -> CollectionKey {
        CollectionKey {
            tenant: t.into(),
            collection: c.into(),
        }
    }

    fn filter(k: &CollectionKey) -> Filter {
        Filter {
            tenant: k.tenant.clone(),
            collection: k.collection.clone(),
            documents: None,
            metadata: None,
        }
    }

    fn cfg(snapshot_after_bytes: u64) -> EmbeddedIndexConfig {
        EmbeddedIndexConfig {
            snapshot_after_bytes,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn upsert_search_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let k = key("tenant-a", "col-1");
        let idx = EmbeddedIndex::open(dir.path().to_path_buf(), cfg(u64::MAX))
            .await
            .unwrap();
        idx.ensure_collection(&k, 8).await.unwrap();
        idx.upsert(&k, points(&k, "doc1", 20, 8)).await.unwrap();
        idx.upsert(&k, points(&k, "doc22", 10, 8)).await.unwrap();
        // Upserting the same ids again replaces rather than duplicates.
        idx.upsert(&k, points(&k, "doc1", 20, 8)).await.unwrap();
        assert_eq!(idx.count(&k, None).await.unwrap(), 30);

        let q = unit(seed("doc1", 5), 8);
        let hits = idx.search(q.clone(), 3, filter(&k)).await.unwrap();
        assert_eq!(hits[0].payload.text, "doc1 chunk 5");
        assert!((hits[0].score - 1.0).abs() < 1e-4);

        let mut only22 = filter(&k);
        only22.documents = Some(["doc22".to_string()].into());
        let hits = idx.search(q.clone(), 5, only22).await.unwrap();
        assert_eq!(hits.len(), 5);
        assert!(hits.iter().all(|h| h.payload.document == "doc22"));

        assert_eq!(idx.delete_document(&k, "doc1").await.unwrap(), 20);
        assert_eq!(idx.delete_chunks_from(&k, "doc22", 8).await.unwrap(), 2);
        let terms = crate::keyword::english().query_terms("doc22 chunk 5");
        let before = idx
            .keyword_search(terms.clone(), 30, filter(&k))
            .await
            .unwrap();
        assert_eq!(before.len(), 8);
        // No flush: the reopened index replays the log, and the keyword index, derived from
        // the same records, agrees with the vectors.
        drop(idx);

        let idx = EmbeddedIndex::open(dir.path().to_path_buf(), cfg(u64::MAX))
            .await
            .unwrap();
        assert_eq!(idx.count(&k, None).await.unwrap(), 8);
        let hits = idx.search(q, 30, filter(&k)).await.unwrap();
        assert_eq!(hits.len(), 8);
        assert!(hits
            .iter()
            .all(|h| h.payload.document == "doc22" && h.payload.chunk < 8));
        let after = idx.keyword_search(terms, 30, filter(&k)).await.unwrap();
        assert_eq!(after, before);
    }

    #[tokio::test]
    async fn snapshots_and_logs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let k = key("t", "c");
        // A tiny threshold forces a snapshot after every write.
        let idx = EmbeddedIndex::open(dir.path().to_path_buf(), cfg(1))
            .await
            .unwrap();
        idx.ensure_collection(&k, 8).await.unwrap();
        idx.upsert(&k, points(&k, "a", 5, 8)).await.unwrap();
        idx.upsert(&k, points(&k, "bb", 5, 8)).await.unwrap();
        drop(idx);
        let snaps: Vec<_> = std::fs::read_dir(dir.path().join(format!(
            "{}.{}",
            hex::encode("t"),
            hex::encode("c")
        )))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("snap-"))
        .collect();
        assert_eq!(
            snaps,
            vec!["snap-2".to_string()],
            "old generations are removed"
        );

        // Reopen with a large threshold: the next write only goes to the log.
        let idx = EmbeddedIndex::open(dir.path().to_path_buf(), cfg(u64::MAX))
            .await
            .unwrap();
        idx.upsert(&k, points(&k, "ccc", 5, 8)).await.unwrap();
        drop(idx);
        let idx = EmbeddedIndex::open(dir.path().to_path_buf(), cfg(u64::MAX))
            .await
            .unwrap();
        assert_eq!(idx.count(&k, None).await.unwrap(), 15);
        assert_eq!(idx.count(&k, Some("ccc")).await.unwrap(), 5);
        idx.flush().await.unwrap();
        drop(idx);
        let idx = EmbeddedIndex::open(dir.path().to_path_buf(), cfg(u64::MAX))
            .await
            .unwrap();
        assert_eq!(idx.count(&k, None).await.unwrap(), 15);
    }
}
