//! Loading the model's tokenizer with the padding and truncation ragplane needs.
//!
//! The shipped `tokenizer.json` pads every input to a fixed 128 tokens and truncates there; the
//! embedder pads to the longest input of each batch instead, and truncates at the configured
//! maximum (256 by default), so the file's own settings are replaced on load.

use std::path::Path;

use tokenizers::{Encoding, Tokenizer, TruncationParams};

use super::{EmbedError, Result};

/// Tokenizer for embedding (truncating) and for chunking (with offsets, not truncating).
#[derive(Clone)]
pub struct TextTokenizer {
    truncating: Tokenizer,
    full: Tokenizer,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, truncating embedding inputs to `max_seq_len` tokens.
    pub fn from_file(path: &Path, max_seq_len: usize) -> Result<Self> {
        let mut full = Tokenizer::from_file(path).map_err(|e| {
            EmbedError::Load(format!("failed to read tokenizer {}: {e}", path.display()))
        })?;
        full.with_padding(None);
        full.with_truncation(None)
            .map_err(|e| EmbedError::Load(e.to_string()))?;
        let mut truncating = full.clone();
        truncating
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_len,
                ..Default::default()
            }))
            .map_err(|e| EmbedError::Load(e.to_string()))?;
        Ok(Self { truncating, full })
    }

    /// Encodes model inputs (special tokens added, truncated, unpadded).
    pub fn encode_for_model(&self, texts: &[&str]) -> Result<Vec<Encoding>> {
        self.truncating
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))
    }

    /// Byte offsets of every token of `text`, without special tokens or truncation.
    pub fn token_offsets(&self, text: &str) -> Result<Vec<(usize, usize)>> {
        let enc = self
            .full
            .encode(text, false)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        Ok(enc.get_offsets().to_vec())
    }

    /// Number of tokens in `text`, without special tokens.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        let enc = self
            .full
            .encode_fast(text, false)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        Ok(enc.len())
    }
}
