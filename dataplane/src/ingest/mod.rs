//! Ingestion: parsing (through [`isolate`], in a child process with limits unless configured
//! inline) and the pipeline a worker runs for one document. Extraction and chunking themselves
//! live in the `ragplane-parse` crate.

pub mod isolate;
pub mod pipeline;
