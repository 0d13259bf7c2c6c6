//! Ingestion: parsing, chunking, and the pipeline a worker runs for one document.

pub mod chunk;
pub mod parse;
pub mod pipeline;
#[cfg(test)]
pub(crate) mod testdata;
