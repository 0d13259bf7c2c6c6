//! The in-memory HNSW collection shared by the embedded index (which persists it to local files)
//! and the PostgreSQL-backed index (which keeps it as a per-process replica of a shared table).
//!
//! One usearch graph per collection, with the payloads, a document → ids map and the BM25
//! inverted index of keyword search beside it, all changed under one lock.
//! usearch gives each concurrent call one of a fixed number of thread contexts and fails a call
//! that finds none free, so searches pass a semaphore with exactly that many permits, and graph
//! changes (which also take a context, and `reserve`, which must not overlap anything) hold the
//! state's write lock.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, LazyLock, RwLock};

use tokio::sync::Semaphore;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::{io, Filter, Hit, Payload, Point, Result, VectorError};
use crate::keyword::{Bm25, InvertedIndex};
use crate::metrics;

/// Document filters selecting at most this many points are scored exactly instead of walking
/// the graph.
const EXACT_SCAN_LIMIT: usize = 20_000;

/// Thread contexts reserved in every graph: as many as there are cores.
static CONTEXTS: LazyLock<usize> =
    LazyLock::new(|| std::thread::available_parallelism().map_or(2, |n| n.get()));

/// HNSW parameters of a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Graph degree (M).
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching.
    pub ef_search: usize,
}

/// One change to a collection, applied in order.
#[derive(Debug, Clone)]
pub enum Change {
    /// Insert or replace a point.
    Upsert(Point),
    /// Remove a point by id (absent ids are ignored).
    Remove(u64),
}

struct State {
    index: Index,
    payloads: HashMap<u64, Payload>,
    by_document: HashMap<String, HashSet<u64>>,
    keywords: InvertedIndex,
}

/// A collection's graph, payloads and search permits, all in memory.
pub struct MemoryCollection {
    name: String,
    dimension: usize,
    state: RwLock<State>,
    searches: Arc<Semaphore>,
}

/// Runs blocking index work off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(VectorError::Index {
            collection: String::new(),
            message: format!("index task failed: {e}"),
        })
    })
}

/// Maps a usearch error to [`VectorError::Index`].
pub fn index_err(collection: &str, e: impl std::fmt::Display) -> VectorError {
    VectorError::Index {
        collection: collection.to_string(),
        message: e.to_string(),
    }
}

fn new_index(dimension: usize, params: HnswParams, name: &str) -> Result<Index> {
    let options = IndexOptions {
        dimensions: dimension,
        // Embeddings are unit length, so inner product equals cosine and is cheaper.
        metric: MetricKind::IP,
        quantization: ScalarKind::F32,
        connectivity: params.m,
        expansion_add: params.ef_construction,
        expansion_search: params.ef_search,
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

impl MemoryCollection {
    /// An empty collection.
    pub fn new(name: &str, dimension: usize, params: HnswParams) -> Result<Self> {
        let index = new_index(dimension, params, name)?;
        Ok(Self::from_parts(name, dimension, index, HashMap::new()))
    }

    /// A collection loaded from a graph saved by [`MemoryCollection::save_graph`] and its
    /// payloads.
    pub fn load(
        name: &str,
        dimension: usize,
        params: HnswParams,
        graph: &Path,
        payloads: Vec<(u64, Payload)>,
    ) -> Result<Self> {
        let index = new_index(dimension, params, name)?;
        index
            .load(&graph.to_string_lossy())
            .map_err(|e| index_err(name, e))?;
        // A loaded graph is exactly full and has default thread contexts.
        reserve(&index, (index.size() * 2).max(1024), name)?;
        // `load` replaces the search expansion with the stored one; use the configured value.
        index.change_expansion_search(params.ef_search);
        Ok(Self::from_parts(
            name,
            dimension,
            index,
            payloads.into_iter().collect(),
        ))
    }

    fn from_parts(
        name: &str,
        dimension: usize,
        index: Index,
        payloads: HashMap<u64, Payload>,
    ) -> Self {
        let mut by_document: HashMap<String, HashSet<u64>> = HashMap::new();
        let mut keywords = InvertedIndex::new();
        for (id, p) in &payloads {
            by_document
                .entry(p.document.clone())
                .or_default()
                .insert(*id);
            keywords.insert(*id, &p.keyword_terms());
        }
        Self {
            name: name.to_string(),
            dimension,
            state: RwLock::new(State {
                index,
                payloads,
                by_document,
                keywords,
            }),
            searches: Arc::new(Semaphore::new(*CONTEXTS)),
        }
    }

    /// Vector dimension.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Points held.
    pub fn len(&self) -> usize {
        self.read().payloads.len()
    }

    /// Whether no points are held.
    pub fn is_empty(&self) -> bool {
        self.read().payloads.is_empty()
    }

    /// Points of the collection, or of one document.
    /// Average chunk length, in analysed terms, that keyword search normalises against.
    pub fn keyword_average_terms(&self) -> f32 {
        self.read().keywords.average_len()
    }

    /// Points in the collection, or of one document.
    pub fn count(&self, document: Option<&str>) -> u64 {
        let state = self.read();
        match document {
            Some(d) => state.by_document.get(d).map_or(0, |ids| ids.len() as u64),
            None => state.payloads.len() as u64,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts or replaces points; returns how many.
    pub fn upsert(&self, points: Vec<Point>) -> Result<u64> {
        let n = points.len() as u64;
        self.apply(points.into_iter().map(Change::Upsert).collect())?;
        Ok(n)
    }

    /// Removes the points of `document` whose chunk index is `first` or more (all of them for
    /// 0); returns how many were removed.
    pub fn delete_chunks_from(&self, document: &str, first: u32) -> Result<u64> {
        let mut state = self.write();
        let Some(all) = state.by_document.remove(document) else {
            return Ok(0);
        };
        let (ids, kept): (HashSet<u64>, HashSet<u64>) = all
            .into_iter()
            .partition(|id| state.payloads.get(id).is_none_or(|p| p.chunk >= first));
        if !kept.is_empty() {
            state.by_document.insert(document.to_string(), kept);
        }
        for id in &ids {
            state
                .index
                .remove(*id)
                .map_err(|e| index_err(&self.name, e))?;
            state.payloads.remove(id);
            state.keywords.remove(*id);
        }
        Ok(ids.len() as u64)
    }

    /// Applies changes in order under one write lock. Every vector is checked before anything
    /// is changed, so a wrong dimension leaves the collection as it was.
    pub fn apply(&self, changes: Vec<Change>) -> Result<()> {
        for c in &changes {
            if let Change::Upsert(p) = c {
                if p.vector.len() != self.dimension {
                    return Err(VectorError::Dimension {
                        collection: self.name.clone(),
                        expected: self.dimension,
                        got: p.vector.len(),
                    });
                }
            }
        }
        // Text analysis is the slow part of a keyword index update; do it before taking the lock.
        let terms: Vec<Vec<String>> = changes
            .iter()
            .map(|c| match c {
                Change::Upsert(p) => p.payload.keyword_terms(),
                Change::Remove(_) => Vec::new(),
            })
            .collect();
        let mut state = self.write();
        let adds = changes
            .iter()
            .filter(|c| matches!(c, Change::Upsert(_)))
            .count();
        let needed = state.index.size() + adds;
        if needed > state.index.capacity() {
            let grown = needed.max(state.index.capacity() * 2);
            reserve(&state.index, grown, &self.name)?;
        }
        for (c, terms) in changes.into_iter().zip(terms) {
            match c {
                Change::Upsert(p) => state.put(p, &terms, &self.name)?,
                Change::Remove(id) => state.remove(id, &self.name)?,
            }
        }
        Ok(())
    }

    /// Saves the graph to `path` (the payloads are the caller's to store; see
    /// [`MemoryCollection::payload_list`]).
    pub fn save_graph(&self, path: &Path) -> Result<()> {
        self.read()
            .index
            .save(&path.to_string_lossy())
            .map_err(|e| index_err(&self.name, e))?;
        std::fs::File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(io("sync", path))
    }

    /// The payloads, encoded with postcard as `Vec<(u64, Payload)>`.
    pub fn payload_list(&self) -> Result<Vec<u8>> {
        let state = self.read();
        let list: Vec<(&u64, &Payload)> = state.payloads.iter().collect();
        postcard::to_stdvec(&list).map_err(|e| index_err(&self.name, e))
    }

    /// The `k` nearest points passing `filter`, best first: waits for a search permit, then
    /// searches on a blocking thread.
    pub async fn search(
        self: &Arc<Self>,
        query: Vec<f32>,
        k: usize,
        filter: Filter,
    ) -> Result<Vec<Hit>> {
        let _timer = metrics::SEARCH_SECONDS.start_timer();
        let permit = self
            .searches
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| index_err(&self.name, e))?;
        let this = self.clone();
        blocking(move || {
            let _permit = permit;
            this.search_now(&query, k, &filter)
        })
        .await
    }

    fn search_now(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>> {
        if query.len() != self.dimension {
            return Err(VectorError::Dimension {
                collection: self.name.clone(),
                expected: self.dimension,
                got: query.len(),
            });
        }
        let state = self.read();
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
                Some(Hit::dense(id, score, payload.clone()))
            })
            .collect())
    }

    /// The `k` best points by BM25 for the distinct analysed `terms` that pass `filter`, best
    /// first, scored on a blocking thread.
    pub async fn keyword_search(
        self: &Arc<Self>,
        terms: Vec<String>,
        k: usize,
        filter: Filter,
    ) -> Result<Vec<Hit>> {
        let _timer = metrics::KEYWORD_SEARCH_SECONDS.start_timer();
        let this = self.clone();
        blocking(move || {
            let state = this.read();
            let scored = match &filter.documents {
                Some(docs) => state.keywords.search(&terms, &Bm25::default(), k, |id| {
                    state
                        .payloads
                        .get(&id)
                        .is_some_and(|p| docs.contains(&p.document))
                }),
                // Every point here belongs to the filter's tenant and collection.
                None => state.keywords.search(&terms, &Bm25::default(), k, |_| true),
            };
            Ok(scored
                .into_iter()
                .filter_map(|(id, score)| {
                    // The payload check is a second guard, as in dense search.
                    let payload = state.payloads.get(&id).filter(|p| filter.matches(p))?;
                    Some(Hit::keyword(id, score, payload.clone()))
                })
                .collect())
        })
        .await
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
    fn put(&mut self, p: Point, terms: &[String], name: &str) -> Result<()> {
        if self.index.contains(p.id) {
            self.index.remove(p.id).map_err(|e| index_err(name, e))?;
        }
        self.index
            .add(p.id, &p.vector)
            .map_err(|e| index_err(name, e))?;
        if let Some(old) = self.payloads.get(&p.id) {
            if old.document != p.payload.document {
                self.unlink(p.id, &old.document.clone());
            }
        }
        self.by_document
            .entry(p.payload.document.clone())
            .or_default()
            .insert(p.id);
        self.keywords.insert(p.id, terms);
        self.payloads.insert(p.id, p.payload);
        Ok(())
    }

    fn remove(&mut self, id: u64, name: &str) -> Result<()> {
        let Some(old) = self.payloads.remove(&id) else {
            return Ok(());
        };
        self.index.remove(id).map_err(|e| index_err(name, e))?;
        self.keywords.remove(id);
        self.unlink(id, &old.document);
        Ok(())
    }

    fn unlink(&mut self, id: u64, document: &str) {
        if let Some(ids) = self.by_document.get_mut(document) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_document.remove(document);
            }
        }
    }
}
