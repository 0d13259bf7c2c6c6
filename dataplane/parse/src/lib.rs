//! Document text extraction and chunking for ragplane, kept apart from the data plane so that it
//! can be fuzzed on its own and run in a child process with memory and CPU limits.
//!
//! - [`extract`]: plain text, Markdown, HTML and PDF to normalised text, with PDF page starts and
//!   Markdown/HTML headings, under a byte budget checked as the text grows;
//! - [`chunk`]: token windows with overlap, pulled back to sentence boundaries;
//! - [`child`]: the child-process side of isolated parsing (limits, then one document from
//!   stdin to stdout).

pub mod child;
pub mod chunk;
pub mod extract;
#[cfg(feature = "testdata")]
pub mod testdata;

pub use extract::{extract, Budget, Extracted, Format, Heading, ParseError};
