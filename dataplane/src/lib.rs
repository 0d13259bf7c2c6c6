//! ragplane data plane: the HTTP API, queue workers and CLI clients of a retrieval-augmented
//! generation service.
//!
//! Each concern sits behind one trait (metadata, objects, vectors, queue, cache, embedder,
//! generator); [`app::App`] wires the implementations chosen by configuration, and the API and
//! workers only ever see the traits.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod cache;
pub mod cli;
pub mod console;
pub mod data_dir;
pub mod embed;
pub mod embed_server;
pub mod error;
pub mod generate;
pub mod ingest;
pub mod keyword;
pub mod metadata;
pub mod metrics;
pub mod objects;
pub mod queue;
pub mod ratelimit;
pub mod redis_conn;
pub mod rerank;
pub mod server;
/// Test helpers; compiled only for tests and with the `testing` feature, which this crate's
/// own tests and benches turn on, so none of it is in a release binary.
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod vectors;
pub mod worker;
