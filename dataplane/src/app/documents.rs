//! Collections and documents: creating and deleting collections, accepting uploads, and
//! queueing their ingestion.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model_switch::generation_key;
use super::{key_of, next_key_of, validate_metadata, validate_name, App, Principal};
use crate::embed::identity::{self, ModelIdentity};
use crate::error::{Error, Result};
use crate::metadata::{Collection, Document, DocumentStatus, ModelSwitch, NewDocument, Scope};
use crate::queue::{Job, Task, DOCUMENTS};
use crate::vectors::VectorError;
use ragplane_parse::Format;

/// How long an upload waits for the configured model's identity before leaving the model
/// check to the worker (the identity is computed once, by embedding a probe sentence).
const MODEL_CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The refusal of collection `c`, whose vectors come from the model of probe `recorded`, by
/// a server that embeds with `model`.
pub(super) fn model_mismatch(c: &Collection, model: &ModelIdentity, recorded: &str) -> Error {
    Error::ModelMismatch(format!(
        "collection {:?} was indexed with embedding model {:?} (fingerprint {}), but this \
         server embeds with {:?} (fingerprint {}); re-embed it with `ragplane reindex \
         --collection {}` (with that model as [embedding.previous], searches keep answering \
         meanwhile), or configure the model it was indexed with",
        c.name,
        c.embedding_model.as_deref().unwrap_or("unknown"),
        identity::fingerprint(recorded),
        model.name,
        model.fingerprint(),
        c.name,
    ))
}

/// A document upload, already read from JSON or multipart.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Title (defaults to the file name).
    pub title: String,
    /// File name or source URI.
    pub source: Option<String>,
    /// Format of `body`.
    pub format: Format,
    /// The original bytes.
    pub body: Bytes,
    /// Client metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A document accepted for ingestion.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The document.
    pub document: Document,
    /// The ingestion job.
    pub job_id: String,
}

impl App {
    /// Creates a collection for the caller's tenant.
    pub async fn create_collection(
        &self,
        p: &Principal,
        name: &str,
        description: &str,
    ) -> Result<Collection> {
        Self::require(p, Scope::ReadWrite)?;
        validate_name("name", name)?;
        if description.len() > 4096 {
            return Err(Error::invalid("description", "must be at most 4096 bytes"));
        }
        let dim = self.embedder.dimension();
        let c = self
            .metadata
            .create_collection(&p.tenant_id, name, description, dim as i64)
            .await?;
        self.vectors.ensure_collection(&key_of(&c), dim).await?;
        let model = self.model_identity().await?;
        self.metadata
            .set_collection_model(&c.id, &model.name, &model.probe)
            .await?;
        Ok(Collection {
            embedding_model: Some(model.name.clone()),
            embedding_probe: Some(model.probe.clone()),
            ..c
        })
    }

    /// The configured embedding model's identity: its name and its embedding of the probe
    /// sentence, computed once.
    pub async fn model_identity(&self) -> Result<&ModelIdentity> {
        self.model_identity
            .get_or_try_init(|| async { Ok(ModelIdentity::probe(self.embedder.as_ref()).await?) })
            .await
    }

    /// Checks that `c`'s vectors come from the configured embedding model; a collection with
    /// no recorded model adopts it.
    pub async fn check_model(&self, c: &Collection) -> Result<()> {
        let model = self.model_identity().await?;
        let Some(recorded) = &c.embedding_probe else {
            self.metadata
                .set_collection_model(&c.id, &model.name, &model.probe)
                .await?;
            return Ok(());
        };
        if model.matches(recorded) {
            return Ok(());
        }
        Err(model_mismatch(c, model, recorded))
    }

    /// Refuses at once (409) to queue a document into a collection whose vectors come from
    /// another embedding model, rather than accept it and fail it in the worker. Only when the
    /// configured model's identity is at hand within [`MODEL_CHECK_WAIT`]: an embedder that is
    /// down or slow does not stop uploads from queueing, and the worker checks again.
    async fn refuse_other_model(&self, c: &Collection) -> Result<()> {
        let Some(recorded) = &c.embedding_probe else {
            return Ok(());
        };
        match tokio::time::timeout(MODEL_CHECK_WAIT, self.model_identity()).await {
            // While the collection switches to the configured model, documents go to the
            // generation being built.
            Ok(Ok(model))
                if !model.matches(recorded)
                    && !c.next_probe.as_ref().is_some_and(|n| model.matches(n)) =>
            {
                Err(model_mismatch(c, model, recorded))
            }
            _ => Ok(()),
        }
    }

    /// Lists the caller's collections.
    pub async fn list_collections(&self, p: &Principal) -> Result<Vec<Collection>> {
        Ok(self.metadata.list_collections(&p.tenant_id).await?)
    }

    /// Refuses an upload with 429 while the ingest backlog is past its bound: over all tenants
    /// (`limits.max_ingest_backlog`, from the queue's own counts) or for this tenant
    /// (`limits.max_tenant_ingest_backlog`).
    async fn admit_ingest(&self, tenant_id: &str) -> Result<()> {
        let limits = &self.config.limits;
        let total: i64 = self
            .queue
            .stats()
            .await?
            .iter()
            .filter(|s| s.queue == crate::queue::DOCUMENTS)
            .map(|s| s.waiting + s.in_flight)
            .sum();
        if total >= limits.max_ingest_backlog {
            crate::metrics::UPLOADS_REFUSED
                .with_label_values(&["total"])
                .inc();
            return Err(Error::Overloaded {
                message: format!(
                    "{total} documents are waiting to be indexed (limits.max_ingest_backlog is {}); retry later",
                    limits.max_ingest_backlog
                ),
                retry_after_secs: 5,
            });
        }
        let mine = self.metadata.pending_documents(tenant_id).await?;
        if mine >= limits.max_tenant_ingest_backlog {
            crate::metrics::UPLOADS_REFUSED
                .with_label_values(&["tenant"])
                .inc();
            return Err(Error::Overloaded {
                message: format!(
                    "this tenant has {mine} documents waiting to be indexed (limits.max_tenant_ingest_backlog is {}); retry later",
                    limits.max_tenant_ingest_backlog
                ),
                retry_after_secs: 5,
            });
        }
        Ok(())
    }

    /// Finds one of the caller's collections; 404 for other tenants' collections too.
    pub async fn collection(&self, p: &Principal, name: &str) -> Result<Collection> {
        self.metadata
            .collection_by_name(&p.tenant_id, name)
            .await?
            .ok_or_else(|| Error::not_found("collection", name))
    }

    /// Deletes a collection with its documents, points and originals.
    pub async fn delete_collection(&self, p: &Principal, name: &str) -> Result<()> {
        Self::require(p, Scope::ReadWrite)?;
        let c = self.collection(p, name).await?;
        self.remove_collection(&c).await
    }

    /// Removes a collection's points, originals, cached results and rows.
    pub(crate) async fn remove_collection(&self, c: &Collection) -> Result<()> {
        self.vectors.drop_collection(&key_of(c)).await?;
        if let Some(next) = next_key_of(c) {
            self.vectors.drop_collection(&next).await?;
        }
        self.objects
            .delete_prefix(&format!("{}/{}", c.tenant_id, c.id))
            .await?;
        if let Some(cache) = &self.results {
            cache
                .delete_prefix(&format!("res:{}:{}:", c.tenant_id, c.id))
                .await;
        }
        self.metadata.delete_collection(&c.id).await?;
        Ok(())
    }

    /// Stores an upload and queues its ingestion.
    pub async fn add_document(
        &self,
        p: &Principal,
        collection: &str,
        upload: Upload,
    ) -> Result<Accepted> {
        Self::require(p, Scope::ReadWrite)?;
        let c = self.collection(p, collection).await?;
        if upload.body.is_empty() {
            return Err(Error::invalid("content", "document is empty"));
        }
        if upload.title.len() > 1024 {
            return Err(Error::invalid("title", "must be at most 1024 bytes"));
        }
        validate_metadata(&upload.metadata)?;
        self.refuse_other_model(&c).await?;
        self.admit_ingest(&c.tenant_id).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let object_key = format!("{}/{}/{}", c.tenant_id, c.id, id);
        let sha256 = hex::encode(Sha256::digest(&upload.body));
        let size = upload.body.len() as i64;
        self.objects.put(&object_key, upload.body).await?;
        let doc = self
            .metadata
            .insert_document(NewDocument {
                id,
                tenant_id: c.tenant_id.clone(),
                collection_id: c.id.clone(),
                title: upload.title,
                source: upload.source,
                content_type: upload.format.media_type().to_string(),
                size_bytes: size,
                sha256,
                metadata: upload.metadata,
                object_key,
            })
            .await?;
        let job = self.enqueue_ingest(&c.tenant_id, &doc.id).await?;
        Ok(Accepted {
            document: doc,
            job_id: job.id,
        })
    }

    /// Queues the (re)indexing of a document.
    pub async fn enqueue_ingest(&self, tenant_id: &str, document_id: &str) -> Result<Job> {
        self.enqueue_replacing(tenant_id, document_id, None).await
    }

    /// Queues the indexing of a document whose vectors come from the model `replaces_probe`
    /// stands for, if any (an in-place reindex).
    async fn enqueue_replacing(
        &self,
        tenant_id: &str,
        document_id: &str,
        replaces_probe: Option<&str>,
    ) -> Result<Job> {
        let task = Task::IngestDocument {
            document_id: document_id.to_string(),
            traceparent: ragplane_telemetry::propagation::traceparent(),
            replaces_probe: replaces_probe.map(str::to_owned),
        };
        Ok(self.queue.enqueue(tenant_id, DOCUMENTS, task).await?)
    }

    /// Marks a document queued again and queues its indexing; `replaces_probe` as for
    /// [`Self::enqueue_replacing`].
    async fn requeue(
        &self,
        tenant_id: &str,
        d: &Document,
        replaces_probe: Option<&str>,
    ) -> Result<Job> {
        self.metadata
            .set_document_status(&d.id, DocumentStatus::Queued, None, d.chunk_count)
            .await?;
        self.enqueue_replacing(tenant_id, &d.id, replaces_probe)
            .await
    }

    /// Finds one of the caller's documents in a collection.
    pub async fn document(
        &self,
        p: &Principal,
        collection: &str,
        id: &str,
    ) -> Result<(Collection, Document)> {
        let c = self.collection(p, collection).await?;
        let d = self
            .metadata
            .document(id)
            .await?
            .filter(|d| {
                d.collection_id == c.id
                    && d.tenant_id == p.tenant_id
                    && d.status != DocumentStatus::Deleting
            })
            .ok_or_else(|| Error::not_found("document", id))?;
        Ok((c, d))
    }

    /// Lists a collection's documents, `limit` at a time after the cursor, with the cursor of
    /// the next page when one follows.
    pub async fn list_documents(
        &self,
        p: &Principal,
        collection: &str,
        status: Option<DocumentStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<Document>, Option<String>)> {
        if !(1..=1000).contains(&limit) {
            return Err(Error::invalid("limit", "must be between 1 and 1000"));
        }
        if status == Some(DocumentStatus::Deleting) {
            return Err(Error::invalid(
                "status",
                "documents being deleted are not listed; use queued, processing, indexed or failed",
            ));
        }
        let c = self.collection(p, collection).await?;
        // One more than the page, to know whether another page follows.
        let mut documents = self
            .metadata
            .list_documents(&c.id, status, after, limit + 1)
            .await?;
        let more = documents.len() as i64 > limit;
        documents.truncate(limit as usize);
        let next_cursor = more
            .then(|| documents.last().map(|d| d.id.clone()))
            .flatten();
        Ok((documents, next_cursor))
    }

    /// Deletes a document with its points and original.
    ///
    /// The document is marked `deleting` first: from then on a worker still indexing it cannot
    /// record it as indexed, and removes the points it wrote itself (see
    /// [`crate::ingest::pipeline`]). Then its points, original and row go, in that order; a
    /// crash part-way leaves it `deleting`, and the workers' periodic sweep finishes the job.
    pub async fn delete_document(&self, p: &Principal, collection: &str, id: &str) -> Result<()> {
        Self::require(p, Scope::ReadWrite)?;
        let (c, d) = self.document(p, collection, id).await?;
        self.metadata.mark_document_deleting(&d.id).await?;
        self.finish_document_deletion(&c, &d).await
    }

    /// Removes a document marked `deleting`: its points, its original, then its row.
    pub async fn finish_document_deletion(&self, c: &Collection, d: &Document) -> Result<()> {
        self.vectors.delete_document(&key_of(c), &d.id).await?;
        if let Some(next) = next_key_of(c) {
            self.vectors.delete_document(&next, &d.id).await?;
        }
        self.metadata.bump_collection_version(&c.id).await?;
        self.objects.delete(&d.object_key).await?;
        self.metadata.delete_document(&d.id).await?;
        // It may have been the last document the collection's model switch waited for.
        self.settle_switch(&c.id).await;
        Ok(())
    }

    /// Queues a document for indexing again (its points are replaced).
    pub async fn reindex_document(
        &self,
        p: &Principal,
        collection: &str,
        id: &str,
    ) -> Result<Accepted> {
        Self::require(p, Scope::ReadWrite)?;
        let (c, d) = self.document(p, collection, id).await?;
        self.refuse_other_model(&c).await?;
        let job = self.requeue(&c.tenant_id, &d, None).await?;
        let document = self.metadata.document(&d.id).await?.unwrap_or(d);
        Ok(Accepted {
            document,
            job_id: job.id,
        })
    }

    /// Re-embeds every document of a collection with the configured embedding model; returns
    /// the ids of the queued documents. No document drops out of results meanwhile:
    ///
    /// - when the model makes vectors of another dimension, or `[embedding.previous]` can
    ///   embed queries for the current points, the documents are written into a new index
    ///   generation and the collection switches to it once all are there (see
    ///   [`super::model_switch`]);
    /// - otherwise the model is recorded and each document's new points overwrite its old
    ///   ones in place; until its job has run, a document is found by its old vectors.
    pub async fn reindex_collection(&self, p: &Principal, name: &str) -> Result<Vec<String>> {
        Self::require(p, Scope::ReadWrite)?;
        let c = self.collection(p, name).await?;
        let model = self.model_identity().await?;
        let mut replaced = None;
        let c = if self.needs_switch(&c).await? {
            let dimension = self.embedder.dimension();
            if c.next_probe.is_some()
                && c.embedding_probe.as_ref().is_some_and(|r| model.matches(r))
            {
                return Err(Error::ModelMismatch(format!(
                    "collection {name:?} is switching to embedding model {:?}, and this server \
                     embeds with the model it is switching from; configure the new model to \
                     finish the switch",
                    c.next_model.as_deref().unwrap_or("unknown"),
                )));
            }
            let next = generation_key(&c, c.generation + 1);
            // A switch to yet another model is replaced: its points start again.
            if c.next_probe.as_ref().is_some_and(|n| !model.matches(n)) {
                self.vectors.drop_collection(&next).await?;
            }
            // A backend that cannot hold the new dimension (a Qdrant collection has one)
            // refuses here, before anything is queued.
            match self.vectors.ensure_collection(&next, dimension).await {
                Err(VectorError::Dimension { expected, .. }) => {
                    return Err(Error::ModelMismatch(format!(
                        "the {} vector index holds {expected}-dimensional vectors and the \
                         configured model makes {dimension}-dimensional ones; point [vectors] \
                         at a new index (for Qdrant, another `collection`) and ingest the \
                         documents again",
                        self.config.vectors.backend()
                    )))
                }
                other => other?,
            }
            self.metadata
                .start_model_switch(
                    &c.id,
                    ModelSwitch {
                        model: &model.name,
                        probe: &model.probe,
                        dimension: dimension as i64,
                    },
                )
                .await?
                .ok_or_else(|| Error::not_found("collection", name))?
        } else {
            self.metadata
                .set_collection_model(&c.id, &model.name, &model.probe)
                .await?;
            // The model the points come from, when it is another: its workers, still running
            // during a rollout, leave these jobs to workers with the new one.
            replaced = c.embedding_probe.clone().filter(|r| !model.matches(r));
            c
        };
        let mut queued = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .metadata
                .list_documents(&c.id, None, after.as_deref(), 1000)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for d in page {
                self.requeue(&c.tenant_id, &d, replaced.as_deref()).await?;
                queued.push(d.id);
            }
        }
        self.metadata.bump_collection_version(&c.id).await?;
        // A collection with no documents switches at once.
        self.advance_switch(&c.id).await?;
        Ok(queued)
    }

    /// Reads one of the caller's jobs.
    pub async fn job(&self, p: &Principal, id: &str) -> Result<Job> {
        self.queue
            .get(id)
            .await?
            .filter(|j| j.tenant_id == p.tenant_id)
            .ok_or_else(|| Error::not_found("job", id))
    }
}
