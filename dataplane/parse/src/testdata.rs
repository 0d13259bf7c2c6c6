//! Test fixtures built in code (PDFs with known text on each page, a whitespace tokeniser for
//! chunking without a model) and the invariants that tests and fuzz targets check.

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream};

/// A minimal one-page PDF showing `text` in a standard font.
pub fn pdf_with_text(text: &str) -> Vec<u8> {
    pdf_with_pages(&[text])
}

/// A minimal PDF with one page per entry of `pages`, each showing its text in a standard font.
#[allow(clippy::unwrap_used)]
pub fn pdf_with_pages(pages: &[&str]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids: Vec<Object> = Vec::new();
    for text in pages {
        let content = Content {
            operations: vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 12.into()]),
                Operation::new("Td", vec![72.into(), 720.into()]),
                Operation::new("Tj", vec![Object::string_literal(*text)]),
                Operation::new("ET", vec![]),
            ],
        };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    let pages = dictionary! {
        "Type" => "Pages", "Kids" => kids, "Count" => count,
        "Resources" => resources_id, "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
    };
    doc.objects.insert(pages_id, Object::Dictionary(pages));
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// Byte ranges of the whitespace-separated words of `text`, as a model's token offsets would be.
pub fn word_offsets(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

/// Checks what every extraction must hold, whatever the input: the text within `budget`,
/// whitespace normalised (single spaces, single or double line breaks, nothing at either end),
/// and page and heading offsets in order on character boundaries of the text. Panics, naming
/// the broken rule; the fuzz targets and tests call it.
pub fn assert_well_formed(e: &crate::Extracted, budget: crate::Budget) {
    let t = &e.text;
    assert!(t.len() <= budget.max_text_bytes, "text over its budget");
    assert!(!t.is_empty(), "an extraction without text must be an error");
    assert_eq!(t.trim(), t, "whitespace at an end");
    assert!(
        t.chars()
            .all(|c| !c.is_whitespace() || c == ' ' || c == '\n'),
        "whitespace other than spaces and line breaks"
    );
    for bad in ["  ", " \n", "\n ", "\n\n\n"] {
        assert!(!t.contains(bad), "{bad:?} in the text");
    }
    let in_text = |o: usize| o <= t.len() && t.is_char_boundary(o);
    assert!(
        e.page_starts.iter().all(|&o| in_text(o)),
        "page start off the text"
    );
    assert!(e.page_starts.is_sorted(), "pages out of order");
    assert!(
        e.headings.iter().all(|h| in_text(h.offset)),
        "heading off the text"
    );
    assert!(
        e.headings.windows(2).all(|w| w[0].offset <= w[1].offset),
        "headings out of order"
    );
    assert!(
        e.headings.iter().all(|h| (1..=6).contains(&h.level)),
        "heading level"
    );
    for o in [0, t.len() / 2, t.len(), usize::MAX] {
        let _ = (e.page_at(o), e.heading_path_at(o));
    }
}

/// Checks what chunks of `text` (tokenised as `offsets`) must hold: numbered in order, each
/// the exact slice it claims, every token inside some chunk, and no chunk longer than `size`
/// tokens.
pub fn assert_chunks_cover(
    text: &str,
    offsets: &[(usize, usize)],
    chunks: &[crate::chunk::Chunk],
    size: usize,
) {
    assert_eq!(
        offsets.is_empty(),
        chunks.is_empty(),
        "chunks without tokens or tokens without chunks"
    );
    let mut covered = 0;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index as usize, i, "chunk numbering");
        assert_eq!(c.text, text[c.start..c.end], "chunk text is not its slice");
        let tokens = offsets
            .iter()
            .filter(|(s, e)| *s >= c.start && *e <= c.end)
            .count();
        assert!(tokens <= size, "chunk of {tokens} tokens, more than {size}");
        let first = offsets.partition_point(|&(s, _)| s < c.start);
        assert!(
            first <= covered,
            "tokens {covered}..{first} are in no chunk"
        );
        covered = covered.max(offsets.partition_point(|&(_, e)| e <= c.end));
    }
    assert_eq!(covered, offsets.len(), "the last tokens are in no chunk");
}
