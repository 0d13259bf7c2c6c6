//! Keyword search: the [`analyzer`] that turns text into terms, identically for every backend,
//! and the BM25 [`index`] that scores chunks by those terms.
//!
//! The embedded and PostgreSQL-backed vector indexes keep a [`index::InvertedIndex`] beside
//! each collection's graph, built from the same payloads, so the keyword index is exactly as
//! durable as the vectors: it is derived from the snapshot and write-ahead log (or the shared
//! table) whenever they are, and after a crash both agree by construction. The Qdrant index
//! stores the same weights as [`sparse`] vectors and lets Qdrant score them.

pub mod analyzer;
pub mod index;
pub mod sparse;

pub use analyzer::{english, Analyzer};
pub use index::{Bm25, InvertedIndex};
