//! The ingestion pipeline for one document: read the original, extract text, chunk by tokens,
//! embed in batches (through the embedding cache), replace the document's points, and mark it
//! indexed. Point ids derive from (document, chunk), so running it twice is harmless.

use std::time::Duration;

use futures::StreamExt;

use crate::app::{key_of, App};
use crate::embed::{EmbedError, Priority};
use crate::error::{Error, Result};
use crate::ingest::chunk::{chunk_by_tokens, Chunk};
use crate::ingest::parse::{extract_text, Format};
use crate::metadata::DocumentStatus;
use crate::vectors::{point_id, Payload, Point};

/// Chunks embedded per request to the embedder; the embedder batches further by tokens.
const EMBED_REQUEST_CHUNKS: usize = 256;
/// Embedding requests one document keeps in flight.
const EMBED_REQUESTS_IN_FLIGHT: usize = 2;

/// Indexes document `id`; returns its number of chunks. Errors that retrying cannot fix
/// (bad format, no text) come back as not retryable.
pub async fn ingest_document(app: &App, id: &str) -> Result<usize> {
    let Some(doc) = app.metadata.document(id).await? else {
        // Deleted after it was queued: nothing to do.
        return Ok(0);
    };
    let Some(collection) = app.metadata.collection_by_id(&doc.collection_id).await? else {
        return Ok(0);
    };
    app.metadata
        .set_document_status(&doc.id, DocumentStatus::Processing, None, doc.chunk_count)
        .await?;
    let body = app.objects.get(&doc.object_key).await?;
    let format = Format::from_media_type(&doc.content_type)
        .map_err(|e| Error::invalid("content_type", e.to_string()))?;
    let max_bytes = app.config.chunking.max_document_bytes;
    let tokenizer = app.tokenizer.clone();
    let chunking = app.config.chunking.clone();
    let split = chunking.clone();
    // Parsing and tokenising a large document is CPU work: keep it off the async threads.
    let chunks = tokio::task::spawn_blocking(move || -> Result<_> {
        let text = extract_text(format, &body).map_err(|e| Error::invalid("content", e.to_string()))?;
        if text.len() > max_bytes {
            return Err(Error::invalid(
                "content",
                format!("extracted text is {} bytes, more than chunking.max_document_bytes ({max_bytes})", text.len()),
            ));
        }
        let offsets = tokenizer.token_offsets(&text).map_err(|e| Error::invalid("content", e.to_string()))?;
        Ok(chunk_by_tokens(&text, &offsets, split.chunk_tokens, split.overlap_tokens))
    })
    .await
    .map_err(|e| Error::Internal(format!("chunking task failed: {e}")))??;

    // Vectors of another model would be meaningless beside the collection's.
    app.check_model(&collection).await?;
    let key = key_of(&collection);
    app.vectors
        .ensure_collection(&key, app.embedder.dimension())
        .await?;
    // The new points overwrite the old ones in place (ids derive from document and chunk), and
    // only then are the chunks beyond the new count removed: a re-indexed document never
    // drops out of search results.
    // Two groups in flight keep two inference threads busy on one large document; upserts
    // still happen in order.
    let groups: Vec<&[Chunk]> = chunks.chunks(EMBED_REQUEST_CHUNKS).collect();
    let requests: Vec<_> = groups
        .iter()
        .map(|group| {
            let texts = group
                .iter()
                .map(|c| embedding_input(&doc.title, &c.text, chunking.embed_title))
                .collect();
            embed_waiting(app, texts)
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
                id: point_id(&doc.id, c.index),
                vector,
                payload: Payload {
                    tenant: doc.tenant_id.clone(),
                    collection: collection.id.clone(),
                    document: doc.id.clone(),
                    title: doc.title.clone(),
                    chunk: c.index,
                    text: c.text.clone(),
                },
            })
            .collect();
        app.vectors.upsert(&key, points).await?;
        crate::metrics::CHUNKS_INDEXED.inc_by(group.len() as u64);
    }
    app.vectors
        .delete_chunks_from(&key, &doc.id, chunks.len() as u32)
        .await?;
    app.metadata
        .set_document_status(&doc.id, DocumentStatus::Indexed, None, chunks.len() as i64)
        .await?;
    app.metadata.bump_collection_version(&collection.id).await?;
    Ok(chunks.len())
}

/// What is embedded for a chunk: its text, after the document's title when `with_title`.
pub fn embedding_input(title: &str, text: &str, with_title: bool) -> String {
    let title = title.trim();
    if with_title && !title.is_empty() && !text.starts_with(title) {
        format!("{title}\n\n{text}")
    } else {
        text.to_string()
    }
}

/// Workers embed as bulk work, which the inference threads serve after any waiting query, and
/// wait for room in the inference queue instead of failing: the queue's 429 is for interactive
/// callers.
async fn embed_waiting(app: &App, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
    let mut delay = Duration::from_millis(20);
    loop {
        match app.embedder.embed_as(texts.clone(), Priority::Bulk).await {
            Err(EmbedError::Overloaded { .. } | EmbedError::RemoteOverloaded(_)) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other.map_err(Error::from),
        }
    }
}
