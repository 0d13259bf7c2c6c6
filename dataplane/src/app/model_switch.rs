//! Switching a collection to another embedding model with no window in which its documents
//! are missing from results: build new points, then switch.
//!
//! A collection's points live in an index generation ([`key_of`]). `ragplane reindex` to a
//! model of another dimension (or whenever `[embedding.previous]` names the model the
//! collection was indexed with) starts a switch: the metadata store records the next model,
//! every document is queued, and workers write each document's points into the next
//! generation ([`next_key_of`]) while searches keep using the current one, embedding their
//! queries with the previous model. When no document is left without points in the next
//! generation (failed and deleted ones aside), one conditional update makes the collection
//! take the next model, dimension and generation ([`App::advance_switch`]), and the previous
//! generation's points and chunk provenance are dropped a little later, once searches that
//! read the collection before the switch have finished. A document uploaded during the switch
//! is written into both generations when the previous model is at hand, so that searches find
//! it before the switch completes (`ingest::pipeline`).

use std::sync::Arc;
use std::time::Duration;

use super::documents::model_mismatch;
use super::{App, Collection};
use crate::embed::identity::{fingerprint, ModelIdentity};
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::vectors::CollectionKey;

/// How long the previous generation's points stay after a switch, for searches that read the
/// collection just before it.
const DRAIN: Duration = Duration::from_secs(5);

/// The key of `c`'s points in index generation `generation`: the collection id for
/// generation 0 (collections made before generations existed), `<id>.<generation>` after.
pub(super) fn generation_key(c: &Collection, generation: i64) -> CollectionKey {
    CollectionKey {
        tenant: c.tenant_id.clone(),
        collection: if generation == 0 {
            c.id.clone()
        } else {
            format!("{}.{generation}", c.id)
        },
    }
}

/// The key of the points searches use: `c`'s current generation.
pub fn key_of(c: &Collection) -> CollectionKey {
    generation_key(c, c.generation)
}

/// While `c` switches to another model: the key of the generation being built.
pub fn next_key_of(c: &Collection) -> Option<CollectionKey> {
    c.next_probe
        .as_ref()
        .map(|_| generation_key(c, c.generation + 1))
}

/// Where a worker writes a document's points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTarget {
    /// The generation's key.
    pub key: CollectionKey,
    /// The generation.
    pub generation: i64,
}

impl App {
    /// The identity of `[embedding.previous]`'s model, when one is configured, probed once.
    async fn previous_identity(&self) -> Result<Option<&ModelIdentity>> {
        let Some(previous) = &self.previous_embedder else {
            return Ok(None);
        };
        self.previous_identity
            .get_or_try_init(|| async {
                Ok::<_, Error>(ModelIdentity::probe(previous.as_ref()).await?)
            })
            .await
            .map(Some)
    }

    /// The embedder of queries on `c`'s current points: the configured model when they come
    /// from it (a collection with no recorded model adopts it), `[embedding.previous]` when
    /// they come from that one, else a model mismatch.
    pub async fn query_embedder(&self, c: &Collection) -> Result<&Arc<dyn Embedder>> {
        let model = self.model_identity().await?;
        let Some(recorded) = &c.embedding_probe else {
            self.check_model(c).await?;
            return Ok(&self.embedder);
        };
        if model.matches(recorded) {
            return Ok(&self.embedder);
        }
        if let (Some(previous), Some(embedder)) =
            (self.previous_identity().await?, &self.previous_embedder)
        {
            if previous.matches(recorded) {
                return Ok(embedder);
            }
        }
        Err(model_mismatch(c, model, recorded))
    }

    /// Where a worker writes `c`'s documents: the next generation while `c` switches to the
    /// configured model; else the current one, whose model must be the configured one.
    /// `replaces` is the probe of the model whose vectors the job replaces, when an in-place
    /// reindex queued it.
    ///
    /// A process still on the model being replaced (during a rollout) is out of date rather
    /// than misconfigured: [`Error::OutdatedModel`], which the worker defers.
    pub async fn index_target(
        &self,
        c: &Collection,
        replaces: Option<&str>,
    ) -> Result<IndexTarget> {
        let model = self.model_identity().await?;
        if let (Some(next), Some(key)) = (&c.next_probe, next_key_of(c)) {
            if !model.matches(next) {
                let to = format!(
                    "collection {:?} is switching to embedding model {:?} (fingerprint {})",
                    c.name,
                    c.next_model.as_deref().unwrap_or("unknown"),
                    fingerprint(next),
                );
                // A process not yet replaced by one with the new model, during a rollout.
                if c.embedding_probe.as_ref().is_some_and(|r| model.matches(r)) {
                    return Err(Error::OutdatedModel(format!(
                        "{to}, and this server still embeds with {:?}, the model it is \
                         switching from",
                        model.name,
                    )));
                }
                return Err(Error::ModelMismatch(format!(
                    "{to}, but this server embeds with {:?} (fingerprint {}); configure that \
                     model, or run `ragplane reindex --collection {}` to switch to this one",
                    model.name,
                    model.fingerprint(),
                    c.name,
                )));
            }
            return Ok(IndexTarget {
                key,
                generation: c.generation + 1,
            });
        }
        match self.check_model(c).await {
            Err(Error::ModelMismatch(reason)) if replaces.is_some_and(|r| model.matches(r)) => {
                return Err(Error::OutdatedModel(format!(
                    "{reason}; this server still embeds with the model the collection's \
                     reindex replaces"
                )));
            }
            other => other?,
        }
        Ok(IndexTarget {
            key: key_of(c),
            generation: c.generation,
        })
    }

    /// Whether `c` must switch generations to take the configured model, rather than have its
    /// points re-embedded in place: when the model makes vectors of another dimension, or
    /// when `[embedding.previous]` can keep answering from the current points meanwhile.
    pub(super) async fn needs_switch(&self, c: &Collection) -> Result<bool> {
        if c.next_probe.is_some() || c.dimension != self.embedder.dimension() as i64 {
            return Ok(true);
        }
        let model = self.model_identity().await?;
        let Some(recorded) = &c.embedding_probe else {
            return Ok(false);
        };
        if model.matches(recorded) {
            return Ok(false);
        }
        Ok(self
            .previous_identity()
            .await?
            .is_some_and(|p| p.matches(recorded)))
    }

    /// Completes `collection_id`'s switch if no document is left to write into the next
    /// generation; then drops the previous generation's points after [`DRAIN`].
    pub async fn advance_switch(&self, collection_id: &str) -> Result<()> {
        let Some(c) = self.metadata.collection_by_id(collection_id).await? else {
            return Ok(());
        };
        if c.next_probe.is_none()
            || !self
                .metadata
                .finish_model_switch(&c.id, c.generation)
                .await?
        {
            return Ok(());
        }
        tracing::info!(
            collection = %c.name,
            generation = c.generation + 1,
            model = c.next_model.as_deref().unwrap_or(""),
            "the collection switched to its new embedding model"
        );
        let (vectors, metadata) = (self.vectors.clone(), self.metadata.clone());
        tokio::spawn(async move {
            tokio::time::sleep(DRAIN).await;
            if let Err(e) = drop_generation(&*vectors, &*metadata, &c, c.generation).await {
                tracing::warn!(collection = %c.name, error = %e,
                    "failed to drop a collection's previous generation; the next start does");
            }
        });
        Ok(())
    }

    /// Drops the points of `c`'s previous generation, which a switch leaves for [`DRAIN`]:
    /// for a process that stopped before it dropped them.
    pub async fn drop_previous_generation(&self, c: &Collection) -> Result<()> {
        if c.generation == 0 {
            return Ok(());
        }
        let old = generation_key(c, c.generation - 1);
        let left = self.vectors.count(&old, None).await?;
        if left > 0 {
            tracing::warn!(collection = %c.name, generation = c.generation - 1, points = left,
                "dropping the points a model switch left behind");
        }
        drop_generation(&*self.vectors, &*self.metadata, c, c.generation - 1).await
    }

    /// After a document of `collection_id` stopped counting against its switch (failed or
    /// deleted): completes the switch if it was the last.
    pub async fn settle_switch(&self, collection_id: &str) {
        if let Err(e) = self.advance_switch(collection_id).await {
            tracing::warn!(collection = %collection_id, error = %e,
                "failed to check whether the collection's model switch is complete");
        }
    }
}

/// Drops the points of `c`'s index generation `generation` and the provenance of its chunks
/// (with any older generation's).
async fn drop_generation(
    vectors: &dyn crate::vectors::VectorIndex,
    metadata: &dyn crate::metadata::MetadataStore,
    c: &Collection,
    generation: i64,
) -> Result<()> {
    vectors
        .drop_collection(&generation_key(c, generation))
        .await?;
    metadata.delete_chunk_provenance(&c.id, generation).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collection(generation: i64, next: bool) -> Collection {
        Collection {
            id: "c1".into(),
            tenant_id: "t1".into(),
            name: "docs".into(),
            description: String::new(),
            dimension: 384,
            version: 0,
            created_at: String::new(),
            embedding_model: None,
            embedding_probe: None,
            generation,
            next_model: next.then(|| "m".into()),
            next_probe: next.then(|| "p".into()),
            next_dimension: next.then_some(256),
        }
    }

    #[test]
    fn generations_have_distinct_keys_and_generation_zero_keeps_the_old_one() {
        assert_eq!(key_of(&collection(0, false)).collection, "c1");
        assert_eq!(next_key_of(&collection(0, false)), None);
        let switching = collection(0, true);
        assert_eq!(
            next_key_of(&switching).map(|k| k.collection),
            Some("c1.1".into())
        );
        assert_eq!(key_of(&collection(1, true)).collection, "c1.1");
        assert_eq!(
            next_key_of(&collection(1, true)).map(|k| (k.tenant, k.collection)),
            Some(("t1".into(), "c1.2".into()))
        );
    }
}
