//! The ingestion pipeline for one document: read the original, extract text, chunk by tokens,
//! embed in batches (through the embedding cache), replace the document's points, and mark it
//! indexed. Point ids derive from (document, chunk), so running it twice is harmless.
//!
//! A document deleted while it is being indexed never keeps points: the deletion marks it
//! `deleting` before removing its points, and the pipeline marks it indexed only after its last
//! write, through a status change that a `deleting` document refuses. When refused, the
//! pipeline removes what it wrote.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tracing::Instrument;

use crate::app::App;
use crate::embed::{EmbedError, Embedder, Priority};
use crate::error::{Error, Result};
use crate::metadata::{ChunkProvenance, Document, DocumentStatus};
use crate::vectors::{point_id, CollectionKey, Payload, Point};
use ragplane_parse::chunk::{chunk_by_tokens, Chunk};
use ragplane_parse::{Budget, Extracted, Format};

/// Chunks embedded per request to the embedder; the embedder batches further by tokens.
const EMBED_REQUEST_CHUNKS: usize = 256;
/// Embedding requests one document keeps in flight.
const EMBED_REQUESTS_IN_FLIGHT: usize = 2;

/// Indexes document `id`; returns its number of chunks. Errors that retrying cannot fix
/// (bad format, no text) come back as not retryable. `replaces_probe`: the job's, as for
/// [`App::index_target`].
#[tracing::instrument(
    name = "ingest",
    skip(app, replaces_probe),
    fields(chunks = tracing::field::Empty)
)]
pub async fn ingest_document(app: &App, id: &str, replaces_probe: Option<&str>) -> Result<usize> {
    let Some(doc) = app
        .metadata
        .document(id)
        .await?
        .filter(|d| d.status != DocumentStatus::Deleting)
    else {
        // Deleted after it was queued: nothing to do.
        return Ok(0);
    };
    let Some(collection) = app.metadata.collection_by_id(&doc.collection_id).await? else {
        return Ok(0);
    };
    // Vectors of another model would be meaningless beside the collection's: the target is
    // the generation of the configured model (the next one while the collection switches).
    // Known before any work, so that a worker that cannot do the job leaves it untouched.
    let target = app.index_target(&collection, replaces_probe).await?;
    if !app
        .metadata
        .set_document_status(&doc.id, DocumentStatus::Processing, None, doc.chunk_count)
        .await?
    {
        return Ok(0);
    }
    let body = app.objects.get(&doc.object_key).await?;
    let format = Format::from_media_type(&doc.content_type)
        .map_err(|e| Error::invalid("content_type", e.to_string()))?;
    let budget = Budget {
        max_text_bytes: app.config.chunking.max_document_bytes,
    };
    let parse = tracing::info_span!(
        "parse",
        content_type = %doc.content_type,
        bytes = body.len(),
        text_bytes = tracing::field::Empty,
    );
    let extracted = crate::ingest::isolate::extract(&app.config.parsing, format, body, budget)
        .instrument(parse.clone())
        .await?;
    parse.record("text_bytes", extracted.text.len());
    let tokenizer = app.tokenizer.clone();
    let chunking = &app.config.chunking;
    let (size, overlap) = (chunking.chunk_tokens, chunking.overlap_tokens);
    // Tokenising a large document is CPU work: keep it off the async threads.
    let (chunks, provenance) = tokio::task::spawn_blocking(move || -> Result<_> {
        let text = &extracted.text;
        let offsets = tokenizer
            .token_offsets(text)
            .map_err(|e| Error::invalid("content", e.to_string()))?;
        let chunks = chunk_by_tokens(text, &offsets, size, overlap);
        let provenance = provenance(&extracted, &chunks);
        Ok((chunks, provenance))
    })
    .instrument(tracing::info_span!("chunk", tokens = size, overlap))
    .await
    .map_err(|e| Error::Internal(format!("chunking task failed: {e}")))??;
    tracing::Span::current().record("chunks", chunks.len());

    write_points(app, &app.embedder, &target.key, &doc, &chunks, &provenance).await?;
    // While the collection switches models, its searches read the current generation, where a
    // document never indexed before has no points: it would be missing from results until the
    // switch completes. When this process has the model of that generation
    // (`[embedding.previous]`), the document is written there too.
    let mut also_in = None;
    let switching = target.generation > collection.generation;
    let current = (switching && doc.chunk_count == 0 && app.previous_embedder.is_some())
        .then(|| crate::app::key_of(&collection));
    if let Some(current) = &current {
        match app.query_embedder(&collection).await {
            Ok(previous) => {
                write_points(app, previous, current, &doc, &chunks, &provenance).await?;
                also_in = Some(collection.generation);
            }
            Err(e) => tracing::warn!(
                document = %doc.id,
                "not written into the current generation during the switch, so it is found \
                 once the switch completes: {e}"
            ),
        }
    }
    // Every point is written; only now may the document count as indexed. In one transaction
    // with that, its chunks' provenance is recorded and the collection's version moves, so
    // that a client that sees the document `indexed` is not served a result cached before its
    // points or their provenance existed (the version is in the result cache's key).
    if !app
        .metadata
        .finish_indexing(
            &collection.id,
            &doc.id,
            target.generation,
            also_in,
            &provenance,
        )
        .await?
    {
        // It was deleted meanwhile (marked `deleting`, or gone with its collection), and the
        // deletion may have run before some of those writes: remove them, so no orphan point
        // stays searchable, nor cached. A deletion that comes after this check removes the
        // points itself.
        for key in std::iter::once(&target.key).chain(&current) {
            app.vectors.delete_document(key, &doc.id).await?;
        }
        app.metadata.bump_collection_version(&collection.id).await?;
        tracing::info!(document = %doc.id, "deleted while being indexed; its points are removed");
        return Ok(0);
    }
    if target.generation > collection.generation {
        app.advance_switch(&collection.id).await?;
    }
    Ok(chunks.len())
}

/// Each chunk's character offsets, page and heading path.
pub fn provenance(extracted: &Extracted, chunks: &[Chunk]) -> Vec<(u32, ChunkProvenance)> {
    // Byte offsets to character offsets, in one pass over the text.
    let mut wanted: Vec<usize> = chunks.iter().flat_map(|c| [c.start, c.end]).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut chars = std::collections::HashMap::with_capacity(wanted.len());
    let mut next = wanted.iter().peekable();
    for (i, (byte, _)) in extracted
        .text
        .char_indices()
        .chain(std::iter::once((extracted.text.len(), ' ')))
        .enumerate()
    {
        while next.peek().is_some_and(|&&w| w <= byte) {
            chars.insert(*next.next().unwrap_or(&byte), i as i64);
        }
    }
    chunks
        .iter()
        .map(|c| {
            (
                c.index,
                ChunkProvenance {
                    start: chars.get(&c.start).copied().unwrap_or(0),
                    end: chars.get(&c.end).copied().unwrap_or(0),
                    page: extracted
                        .page_at(c.start)
                        .map(|p| i32::try_from(p).unwrap_or(i32::MAX)),
                    headings: extracted.heading_path_at(c.start),
                },
            )
        })
        .collect()
}

/// What is embedded for a chunk: its text, after a header of the document's title (when
/// `with_title`) and the heading path `headings` (`A > B`; empty to leave it out), each on a
/// line of its own and left out when the text already starts with it.
pub fn embedding_input(title: &str, headings: &[String], text: &str, with_title: bool) -> String {
    let title = title.trim();
    let path = headings
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .collect::<Vec<_>>()
        .join(" > ");
    let header: Vec<&str> = [
        (with_title && !title.is_empty() && !text.starts_with(title)).then_some(title),
        (!path.is_empty() && !text.starts_with(headings.last().map_or("", |h| h.trim())))
            .then_some(path.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if header.is_empty() {
        text.to_string()
    } else {
        format!("{}\n\n{text}", header.join("\n"))
    }
}

/// Writes `doc`'s points into the index generation `key`, embedded by `embedder`: the new
/// points overwrite the old ones in place (ids derive from document and chunk), and only then
/// are the chunks beyond the new count removed, so a re-indexed document never drops out of
/// search results. `provenance` has one entry per chunk, in the same order.
async fn write_points(
    app: &App,
    embedder: &Arc<dyn Embedder>,
    key: &CollectionKey,
    doc: &Document,
    chunks: &[Chunk],
    provenance: &[(u32, ChunkProvenance)],
) -> Result<()> {
    app.vectors
        .ensure_collection(key, embedder.dimension())
        .await?;
    let chunking = &app.config.chunking;
    // Two groups in flight keep two inference threads busy on one large document; upserts
    // still happen in order.
    let groups: Vec<&[Chunk]> = chunks.chunks(EMBED_REQUEST_CHUNKS).collect();
    let requests: Vec<_> = groups
        .iter()
        .zip(provenance.chunks(EMBED_REQUEST_CHUNKS))
        .map(|(group, where_from)| {
            let texts = group
                .iter()
                .zip(where_from)
                .map(|(c, (_, p))| {
                    let path: &[String] = match chunking.embed_headings {
                        true => &p.headings,
                        false => &[],
                    };
                    embedding_input(&doc.title, path, &c.text, chunking.embed_title)
                })
                .collect();
            embed_waiting(embedder, texts)
        })
        .collect();
    let mut embedded = futures::stream::iter(requests).buffered(EMBED_REQUESTS_IN_FLIGHT);
    for group in groups {
        let Some(vectors) = embedded.next().await else {
            break;
        };
        let vectors = vectors?;
        let points = group
            .iter()
            .zip(vectors)
            .map(|(c, vector)| Point {
                metadata: doc.metadata.clone(),
                id: point_id(&doc.id, c.index),
                vector,
                payload: Payload {
                    tenant: doc.tenant_id.clone(),
                    collection: key.collection.clone(),
                    document: doc.id.clone(),
                    title: doc.title.clone(),
                    chunk: c.index,
                    text: c.text.clone(),
                },
            })
            .collect();
        app.vectors
            .upsert(key, points)
            .instrument(tracing::info_span!(
                "vector.upsert",
                backend = app.config.vectors.backend(),
                points = group.len()
            ))
            .await?;
        crate::metrics::CHUNKS_INDEXED.inc_by(group.len() as u64);
    }
    app.vectors
        .delete_chunks_from(key, &doc.id, chunks.len() as u32)
        .await?;
    Ok(())
}

/// Workers embed as bulk work, which the inference threads serve after any waiting query, and
/// wait for room in the inference queue instead of failing: the queue's 429 is for interactive
/// callers.
async fn embed_waiting(embedder: &Arc<dyn Embedder>, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
    let mut delay = Duration::from_millis(20);
    loop {
        match embedder.embed_as(texts.clone(), Priority::Bulk).await {
            Err(EmbedError::Overloaded { .. } | EmbedError::RemoteOverloaded(_)) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other.map_err(Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ragplane_parse::chunk::chunk_by_tokens;
    use ragplane_parse::testdata::word_offsets;

    fn extract(
        format: Format,
        bytes: &[u8],
    ) -> std::result::Result<Extracted, ragplane_parse::ParseError> {
        ragplane_parse::extract(format, bytes, Budget::UNLIMITED)
    }

    #[test]
    fn the_embedded_text_carries_the_title_and_heading_path_once() {
        let path = vec!["Setup".to_string(), "Install".to_string()];
        assert_eq!(
            embedding_input("Guide", &[], "Run the script.", true),
            "Guide\n\nRun the script."
        );
        assert_eq!(
            embedding_input("Guide", &path, "Run the script.", true),
            "Guide\nSetup > Install\n\nRun the script."
        );
        assert_eq!(
            embedding_input("Guide", &path, "Run the script.", false),
            "Setup > Install\n\nRun the script."
        );
        // A chunk that begins with its heading, or its title, does not repeat it.
        assert_eq!(
            embedding_input("Guide", &path, "Install\nRun the script.", true),
            "Guide\n\nInstall\nRun the script."
        );
        assert_eq!(
            embedding_input("Guide", &[], "Guide\nRun it.", true),
            "Guide\nRun it."
        );
        assert_eq!(embedding_input("", &[], "Run it.", true), "Run it.");
    }

    #[test]
    fn chunks_know_their_page_headings_and_character_offsets() {
        let pdf = ragplane_parse::testdata::pdf_with_pages(&[
            "alpha beta gamma delta",
            "epsilon zeta eta theta",
        ]);
        let e = extract(Format::Pdf, &pdf).unwrap();
        let chunks = chunk_by_tokens(&e.text, &word_offsets(&e.text), 3, 1);
        let p = provenance(&e, &chunks);
        assert_eq!(p.len(), chunks.len());
        let first = &p[0].1;
        assert_eq!((first.start, first.page), (0, Some(1)));
        let last = &p[p.len() - 1].1;
        assert_eq!(last.page, Some(2), "{p:?}");
        assert_eq!(last.end as usize, e.text.chars().count());

        let md = "# Café guide\n\nÉspresso is brewed under pressure.\n\n## Milk\n\nSteamed milk is added.";
        let e = extract(Format::Markdown, md.as_bytes()).unwrap();
        let chunks = chunk_by_tokens(&e.text, &word_offsets(&e.text), 4, 1);
        let p = provenance(&e, &chunks);
        let text: Vec<char> = e.text.chars().collect();
        for ((_, prov), c) in p.iter().zip(&chunks) {
            // Character offsets select exactly the chunk's text, accents included.
            let s: String = text[prov.start as usize..prov.end as usize]
                .iter()
                .collect();
            assert_eq!(s, c.text);
            assert!(prov.page.is_none());
        }
        assert_eq!(p[0].1.headings, ["Café guide"]);
        // A chunk's headings are those in force where it starts.
        let after = chunks
            .iter()
            .position(|c| c.text.starts_with("milk"))
            .unwrap();
        assert_eq!(p[after].1.headings, ["Café guide", "Milk"]);
    }
}
