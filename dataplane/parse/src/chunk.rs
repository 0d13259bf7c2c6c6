//! Token-aware chunking with overlap.
//!
//! Chunks are windows of model tokens, so every chunk fits the embedding model without being
//! truncated. A window's end is pulled back to the last sentence or paragraph boundary in its
//! final quarter when there is one, so chunks rarely stop mid-sentence; consecutive windows
//! share `overlap` tokens so that a fact straddling a boundary is whole in one of them.

/// One chunk of a document's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position of the chunk in the document, from 0.
    pub index: u32,
    /// The chunk's text, a slice of the document's text.
    pub text: String,
    /// Byte offset of the chunk in the document's text.
    pub start: usize,
    /// Byte offset one past the chunk's end.
    pub end: usize,
}

/// Splits `text` into chunks of at most `size` tokens overlapping by `overlap` tokens.
///
/// `offsets` are the byte ranges of the text's tokens in order (from the model's tokenizer).
/// Requires `overlap < size`.
pub fn chunk_by_tokens(
    text: &str,
    offsets: &[(usize, usize)],
    size: usize,
    overlap: usize,
) -> Vec<Chunk> {
    assert!(overlap < size && size > 0, "chunk size must exceed overlap");
    let mut chunks = Vec::new();
    let n = offsets.len();
    let mut start_tok = 0;
    while start_tok < n {
        let mut end_tok = (start_tok + size).min(n);
        if end_tok < n {
            end_tok = pull_back_to_boundary(text, offsets, start_tok, end_tok, size);
        }
        let start = offsets[start_tok].0;
        let end = offsets[end_tok - 1].1;
        chunks.push(Chunk {
            index: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
            text: text[start..end].to_string(),
            start,
            end,
        });
        if end_tok >= n {
            break;
        }
        // Always advance, even when the boundary pull-back made the window shorter than the overlap.
        start_tok = (end_tok.saturating_sub(overlap)).max(start_tok + 1);
    }
    chunks
}

/// Moves `end_tok` back to just after a token that ends a sentence or paragraph, looking only
/// in the last quarter of the window.
fn pull_back_to_boundary(
    text: &str,
    offsets: &[(usize, usize)],
    start_tok: usize,
    end_tok: usize,
    size: usize,
) -> usize {
    let earliest = start_tok + size * 3 / 4;
    let mut best = None;
    for t in (earliest.max(start_tok + 1)..end_tok).rev() {
        let (_, tok_end) = offsets[t - 1];
        let (next_start, _) = offsets[t];
        let gap = &text[tok_end..next_start];
        if gap.contains("\n\n") {
            return t;
        }
        if best.is_none()
            && gap.contains(['\n', ' '])
            && text[..tok_end].ends_with(['.', '!', '?', ':', ';'])
        {
            best = Some(t);
        }
    }
    best.unwrap_or(end_tok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::word_offsets as words;

    #[test]
    fn short_text_is_one_chunk() {
        let text = "just a few words";
        let chunks = chunk_by_tokens(text, &words(text), 10, 2);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, text);
    }

    #[test]
    fn windows_overlap_and_cover_everything() {
        let text: String = (0..100).map(|i| format!("w{i} ")).collect();
        let offs = words(&text);
        let chunks = chunk_by_tokens(&text, &offs, 20, 5);
        assert_eq!(chunks[0].text.split(' ').count(), 20);
        assert!(chunks[1].text.starts_with("w15 "), "{}", chunks[1].text);
        assert!(chunks.last().unwrap().text.ends_with("w99"));
        for c in &chunks {
            assert!(c.text.split(' ').count() <= 20);
            assert_eq!(&text[c.start..c.end], c.text);
        }
        let idx: Vec<u32> = chunks.iter().map(|c| c.index).collect();
        assert_eq!(idx, (0..chunks.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn windows_end_at_sentence_boundaries_when_close() {
        let text =
            "one two three four five six seven eight nine. ten eleven twelve thirteen fourteen";
        let chunks = chunk_by_tokens(text, &words(text), 10, 2);
        assert_eq!(
            chunks[0].text,
            "one two three four five six seven eight nine."
        );
        assert!(
            chunks[1].text.starts_with("eight nine. ten"),
            "{}",
            chunks[1].text
        );
    }

    #[test]
    fn paragraph_break_wins_over_sentence_end() {
        let text = "a b c d e f g. h\n\ni j k l m n";
        let chunks = chunk_by_tokens(text, &words(text), 9, 1);
        assert_eq!(chunks[0].text, "a b c d e f g. h");
    }

    #[test]
    fn empty_text_has_no_chunks() {
        assert!(chunk_by_tokens("", &[], 10, 2).is_empty());
    }

    #[test]
    fn every_size_and_overlap_covers_every_token() {
        let text = "The lamp is visible. From 22 miles!\n\nNext paragraph; and more words follow here.\nA last line";
        let offsets = words(text);
        for size in 1..=offsets.len() + 1 {
            for overlap in 0..size {
                let chunks = chunk_by_tokens(text, &offsets, size, overlap);
                crate::testdata::assert_chunks_cover(text, &offsets, &chunks, size);
            }
        }
    }
}
