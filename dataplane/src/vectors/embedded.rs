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
//! usearch gives each concurrent call one of a fixed number of thread contexts and fails a call
//! that finds none free, so searches pass a semaphore with exactly that many permits, and graph
//! changes (which also take a context, and `reserve`, which must not overlap anything) hold the
//! state's write lock.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use async_trait::async_trait;
use ragplane_config::EmbeddedIndexConfig;
use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use tokio::sync::Semaphore;

use super::wal::{self, Record, WalWriter};
use super::{io, CollectionKey, Filter, Hit, Payload, Point, Result, VectorError, VectorIndex};
use crate::metrics;

/// Document filters selecting at most this many points are scored exactly instead of walking
/// the graph.
const EXACT_SCAN_LIMIT: usize = 20_000;

/// Thread contexts reserved in every graph: as many as there are cores.
static CONTEXTS: LazyLock<usize> =
    LazyLock::new(|| std::thread::available_parallelism().map_or(2, |n| n.get()));

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

struct State {
    index: Index,
    payloads: HashMap<u64, Payload>,
    by_document: HashMap<String, HashSet<u64>>,
}

struct CollectionIndex {
    dir: PathBuf,
    name: String,
    dimension: usize,
    generation: Mutex<u64>,
    state: RwLock<State>,
    searches: Arc<Semaphore>,
    wal: Mutex<WalWriter>,
    snapshot_after_bytes: u64,
}

/// Runs blocking index work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(VectorError::Index {
            collection: String::new(),
            message: format!("index task failed: {e}"),
        })
    })
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

fn new_index(dimension: usize, cfg: &EmbeddedIndexConfig, name: &str) -> Result<Index> {
    let options = IndexOptions {
        dimensions: dimension,
        // Embeddings are unit length, so inner product equals cosine and is cheaper.
        metric: MetricKind::IP,
        quantization: ScalarKind::F32,
        connectivity: cfg.m,
        expansion_add: cfg.ef_construction,
        expansion_search: cfg.ef_search,
        multi: false,
    };
    let index = Index::new(&options).map_err(|e| index_err(name, e))?;
    reserve(&index, 1024, name)?;
    Ok(index)
}

/// Grows capacity and (re)creates the thread contexts; callers hold the write lock.
fn reserve(index: &Index, capacity: usize, name: &str) -> Result<()> {
    index
        .reserve_capacity_and_threads(capacity, *CONTEXTS)
        .map_err(|e| index_err(name, e))
}

fn index_err(collection: &str, e: impl std::fmt::Display) -> VectorError {
    VectorError::Index {
        collection: collection.to_string(),
        message: e.to_string(),
    }
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
        let index = new_index(meta.dimension, cfg, &name)?;
        let mut payloads: HashMap<u64, Payload> = HashMap::new();
        let snap = dir.join(format!("snap-{generation}"));
        if generation > 0 {
            let index_path = snap.join("index.usearch");
            index
                .load(&index_path.to_string_lossy())
                .map_err(|e| index_err(&name, e))?;
            // A loaded graph is exactly full and has default thread contexts.
            reserve(&index, (index.size() * 2).max(1024), &name)?;
            // `load` replaces the search expansion with the stored one; use the configured value.
            index.change_expansion_search(cfg.ef_search);
            let payload_path = snap.join("payloads.bin");
            let bytes = std::fs::read(&payload_path).map_err(io("read", &payload_path))?;
            let list: Vec<(u64, Payload)> =
                postcard::from_bytes(&bytes).map_err(|e| VectorError::Corrupt {
                    path: payload_path.display().to_string(),
                    message: e.to_string(),
                })?;
            payloads = list.into_iter().collect();
        }
        let mut by_document: HashMap<String, HashSet<u64>> = HashMap::new();
        for (id, p) in &payloads {
            by_document
                .entry(p.document.clone())
                .or_default()
                .insert(*id);
        }
        let mut state = State {
            index,
            payloads,
            by_document,
        };
        let wal_path = dir.join(format!("wal-{generation}.log"));
        let records = wal::replay(&wal_path)?;
        let replayed = records.len();
        for r in records {
            state.apply(r, &name, meta.dimension)?;
        }
        if replayed > 0 {
            tracing::debug!(collection = %name, replayed, "replayed write-ahead log");
        }
        remove_stale_generations(dir, generation);
        Ok(Self {
            dir: dir.to_path_buf(),
            name,
            dimension: meta.dimension,
            generation: Mutex::new(generation),
            state: RwLock::new(state),
            searches: Arc::new(Semaphore::new(*CONTEXTS)),
            wal: Mutex::new(WalWriter::open(&wal_path)?),
            snapshot_after_bytes: cfg.snapshot_after_bytes,
        })
    }

    fn len(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .payloads
            .len()
    }

    /// Logs then applies a change; snapshots when the log has grown past the threshold.
    fn write(&self, record: Record) -> Result<u64> {
        let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        wal.append(&record)?;
        let changed = {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            state.apply(record, &self.name, self.dimension)?
        };
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
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            let index_path = snap.join("index.usearch");
            state
                .index
                .save(&index_path.to_string_lossy())
                .map_err(|e| index_err(&self.name, e))?;
            std::fs::File::open(&index_path)
                .and_then(|f| f.sync_all())
                .map_err(io("sync", &index_path))?;
            let list: Vec<(&u64, &Payload)> = state.payloads.iter().collect();
            let bytes = postcard::to_stdvec(&list).map_err(|e| index_err(&self.name, e))?;
            write_atomic(&snap.join("payloads.bin"), &bytes)?;
        }
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

    fn search(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>> {
        if query.len() != self.dimension {
            return Err(VectorError::Dimension {
                collection: self.name.clone(),
                expected: self.dimension,
                got: query.len(),
            });
        }
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if state.payloads.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let scored: Vec<(u64, f32)> = match &filter.documents {
            Some(docs) => {
                let candidates: Vec<u64> = docs
                    .iter()
                    .filter_map(|d| state.by_document.get(d))
                    .flatten()
                    .copied()
                    .collect();
                if candidates.len() <= EXACT_SCAN_LIMIT {
                    // A graph walk that must find k matches among a few points visits most of
                    // the graph; scoring the few candidates exactly is far faster, and exact.
                    self.exact(&state.index, query, k, &candidates)?
                } else {
                    let m = state
                        .index
                        .filtered_search(query, k, |id| {
                            state.payloads.get(&id).is_some_and(|p| filter.matches(p))
                        })
                        .map_err(|e| index_err(&self.name, e))?;
                    m.keys
                        .into_iter()
                        .zip(m.distances.into_iter().map(|d| 1.0 - d))
                        .collect()
                }
            }
            None => {
                let m = state
                    .index
                    .search(query, k)
                    .map_err(|e| index_err(&self.name, e))?;
                m.keys
                    .into_iter()
                    .zip(m.distances.into_iter().map(|d| 1.0 - d))
                    .collect()
            }
        };
        Ok(scored
            .into_iter()
            .filter_map(|(id, score)| {
                // Every point of this graph belongs to one tenant and collection; the payload
                // check is a second guard, not the mechanism.
                let payload = state.payloads.get(&id).filter(|p| filter.matches(p))?;
                Some(Hit {
                    id,
                    score,
                    payload: payload.clone(),
                })
            })
            .collect())
    }

    /// Scores `candidates` exactly (inner product of unit vectors) and keeps the best `k`.
    fn exact(
        &self,
        index: &Index,
        query: &[f32],
        k: usize,
        candidates: &[u64],
    ) -> Result<Vec<(u64, f32)>> {
        let mut buf = vec![0f32; self.dimension];
        let mut scored = Vec::with_capacity(candidates.len());
        for &id in candidates {
            let found = index
                .get(id, &mut buf)
                .map_err(|e| index_err(&self.name, e))?;
            if found > 0 {
                scored.push((id, crate::embed::pooling::dot(query, &buf)));
            }
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        Ok(scored)
    }
}

impl State {
    /// Applies a change in memory; returns the number of points touched.
    fn apply(&mut self, record: Record, name: &str, dimension: usize) -> Result<u64> {
        match record {
            Record::Upsert(points) => {
                let needed = self.index.size() + points.len();
                if needed > self.index.capacity() {
                    reserve(&self.index, needed.max(self.index.capacity() * 2), name)?;
                }
                let n = points.len() as u64;
                for p in points {
                    if p.vector.len() != dimension {
                        return Err(VectorError::Dimension {
                            collection: name.to_string(),
                            expected: dimension,
                            got: p.vector.len(),
                        });
                    }
                    if self.index.contains(p.id) {
                        self.index.remove(p.id).map_err(|e| index_err(name, e))?;
                    }
                    self.index
                        .add(p.id, &p.vector)
                        .map_err(|e| index_err(name, e))?;
                    self.by_document
                        .entry(p.payload.document.clone())
                        .or_default()
                        .insert(p.id);
                    self.payloads.insert(p.id, p.payload);
                }
                Ok(n)
            }
            Record::DeleteDocument(document) => {
                let ids = self.by_document.remove(&document).unwrap_or_default();
                for id in &ids {
                    self.index.remove(*id).map_err(|e| index_err(name, e))?;
                    self.payloads.remove(id);
                }
                Ok(ids.len() as u64)
            }
        }
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

    async fn delete_document(&self, key: &CollectionKey, document: &str) -> Result<u64> {
        let Some(c) = self.get(key) else { return Ok(0) };
        let document = document.to_string();
        blocking(move || c.write(Record::DeleteDocument(document))).await
    }

    async fn search(&self, query: Vec<f32>, k: usize, filter: Filter) -> Result<Vec<Hit>> {
        let key = CollectionKey {
            tenant: filter.tenant.clone(),
            collection: filter.collection.clone(),
        };
        let Some(c) = self.get(&key) else {
            return Ok(Vec::new());
        };
        let _timer = metrics::SEARCH_SECONDS.start_timer();
        let permit = c
            .searches
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| index_err(&key.collection, e))?;
        blocking(move || {
            let _permit = permit;
            c.search(&query, k, &filter)
        })
        .await
    }

    async fn count(&self, key: &CollectionKey, document: Option<&str>) -> Result<u64> {
        let Some(c) = self.get(key) else { return Ok(0) };
        let state = c.state.read().unwrap_or_else(|e| e.into_inner());
        Ok(match document {
            Some(d) => state.by_document.get(d).map_or(0, |ids| ids.len() as u64),
            None => state.payloads.len() as u64,
        })
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
        drop(idx);

        let idx = EmbeddedIndex::open(dir.path().to_path_buf(), cfg(u64::MAX))
            .await
            .unwrap();
        assert_eq!(idx.count(&k, None).await.unwrap(), 10);
        let hits = idx.search(q, 30, filter(&k)).await.unwrap();
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| h.payload.document == "doc22"));
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

    #[tokio::test]
    async fn collections_are_isolated() {
        let dir = tempfile::tempdir().unwrap();
        let idx = EmbeddedIndex::open(dir.path().to_path_buf(), cfg(u64::MAX))
            .await
            .unwrap();
        let a = key("ta", "c");
        let b = key("tb", "c");
        idx.ensure_collection(&a, 8).await.unwrap();
        idx.ensure_collection(&b, 8).await.unwrap();
        idx.upsert(&a, points(&a, "doc", 5, 8)).await.unwrap();
        assert!(idx
            .search(unit(1, 8), 5, filter(&b))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            idx.search(unit(1, 8), 5, filter(&a)).await.unwrap().len(),
            5
        );
        idx.drop_collection(&a).await.unwrap();
        assert!(idx
            .search(unit(1, 8), 5, filter(&a))
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_concurrent_searches_all_succeed() {
        // Far more concurrent searches than usearch has thread contexts: every one succeeds.
        let dir = tempfile::tempdir().unwrap();
        let idx = Arc::new(
            EmbeddedIndex::open(dir.path().to_path_buf(), cfg(u64::MAX))
                .await
                .unwrap(),
        );
        let k = key("t", "c");
        idx.ensure_collection(&k, 64).await.unwrap();
        idx.upsert(&k, points(&k, "doc", 3000, 64)).await.unwrap();
        let tasks: Vec<_> = (0..256)
            .map(|i| {
                let idx = idx.clone();
                let f = filter(&k);
                tokio::spawn(async move { idx.search(unit(i, 64), 5, f).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().len(), 5);
        }
    }
}
