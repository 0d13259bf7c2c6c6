//! Fuzzes the chunker: any text, window size and overlap give chunks that are exact slices,
//! numbered in order, within the window size, and that together cover every token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragplane_parse::chunk::chunk_by_tokens;
use ragplane_parse::testdata::{assert_chunks_cover, word_offsets};

fuzz_target!(|data: &[u8]| {
    let [size, overlap, rest @ ..] = data else {
        return;
    };
    let size = usize::from(*size % 64) + 1;
    let overlap = usize::from(*overlap) % size;
    let text = String::from_utf8_lossy(rest);
    let offsets = word_offsets(&text);
    let chunks = chunk_by_tokens(&text, &offsets, size, overlap);
    assert_chunks_cover(&text, &offsets, &chunks, size);
});
