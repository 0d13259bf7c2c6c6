//! The Collection controller: the Qdrant collection follows the resource, and a finalizer
//! honours `deletionPolicy` before the resource goes away.

pub mod build;
pub mod qdrant;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::{watcher, Controller};
use kube::{Api, ResourceExt};

use crate::conditions::{conditions, Health};
use crate::context::Context;
use crate::crd::collection::{Collection, CollectionStatus, DeletionPolicy, QdrantLocation};
use crate::crd::common::SecretKeyRef;
use crate::crd::rag_cluster::RagCluster;
use crate::error::{Error, Result};
use crate::rag_cluster::scoped;
use crate::reconciler::{failed_conditions, write_status, Reconciler};

/// Kind label in metrics and logs.
pub const KIND: &str = "Collection";
/// Finalizer that keeps the resource until its `deletionPolicy` was carried out.
pub const FINALIZER: &str = "ragplane.dev/collection";

/// Runs the Collection controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        scoped::<Collection>(&client, namespace.as_deref()),
        watcher::Config::default(),
    );
    crate::reconciler::run(controller, ctx, shutdown).await;
}

/// Apply or clean up behind the finalizer; a failure while the resource is not being deleted is
/// recorded in its conditions, transient ones too.
impl Reconciler for Collection {
    const KIND: &'static str = KIND;
    // Deletion goes through the finalizer, which carries out `deletionPolicy`.
    const SKIPS_DELETED: bool = false;

    async fn pipeline(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        let ns = obj.namespace().unwrap_or_default();
        let api: Api<Collection> = Api::namespaced(ctx.client.clone(), &ns);
        finalizer(&api, FINALIZER, obj, |event| async {
            match event {
                FinalizerEvent::Apply(c) => apply(&c, &ctx).await,
                FinalizerEvent::Cleanup(c) => cleanup(&c, &ctx).await,
            }
        })
        .await
        .map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        })
    }

    fn records_failure(&self, _error: &Error) -> bool {
        self.metadata.deletion_timestamp.is_none()
    }

    fn failed_status(&self, error: &Error) -> CollectionStatus {
        let previous = self.status.clone().unwrap_or_default();
        CollectionStatus {
            observed_generation: self.metadata.generation,
            conditions: failed_conditions(error, self.metadata.generation, &previous.conditions),
            ..previous
        }
    }
}

/// The ModelPool that `cluster`'s `spec.embedding` names, when it names one that exists.
async fn embedding_pool(
    cluster: &RagCluster,
    ctx: &Context,
) -> Result<Option<crate::crd::model_pool::ModelPool>> {
    let Some(r) = &cluster.spec.embedding else {
        return Ok(None);
    };
    let api: Api<crate::crd::model_pool::ModelPool> =
        Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    api.get_opt(&r.name)
        .await
        .map_err(|e| Error::kube(format!("get ModelPool {}", r.name), e))
}

async fn cluster_of(obj: &Collection, ctx: &Context) -> Result<Option<RagCluster>> {
    let api: Api<RagCluster> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    api.get_opt(&obj.spec.cluster)
        .await
        .map_err(|e| Error::kube(format!("get RagCluster {}", obj.spec.cluster), e))
}

/// The value of key `r` of a Secret in `ns`.
async fn secret_value(ctx: &Context, ns: &str, r: &SecretKeyRef) -> Result<String> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = api
        .get_opt(&r.name)
        .await
        .map_err(|e| Error::kube(format!("get Secret {}", r.name), e))?
        .ok_or_else(|| Error::MissingReference {
            kind: "Secret",
            name: r.name.clone(),
        })?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .ok_or_else(|| Error::MissingReference {
            kind: "Secret key",
            name: format!("{}/{}", r.name, r.key),
        })?;
    String::from_utf8(bytes.0.clone())
        .map_err(|_| Error::InvalidSpec(format!("Secret {}/{} is not UTF-8", r.name, r.key)))
}

/// The API key of `target`, read from its Secret in `ns`; `None` when it has none.
pub(crate) async fn api_key(
    ctx: &Context,
    ns: &str,
    target: &validate::QdrantTarget,
) -> Result<Option<String>> {
    let Some(r) = &target.api_key else {
        return Ok(None);
    };
    secret_value(ctx, ns, r).await.map(Some)
}

async fn apply(obj: &Collection, ctx: &Context) -> Result<Action> {
    let cluster = cluster_of(obj, ctx)
        .await?
        .ok_or_else(|| Error::MissingReference {
            kind: "RagCluster",
            name: obj.spec.cluster.clone(),
        })?;
    let pool = embedding_pool(&cluster, ctx).await?;
    let dimension = validate::embedding_dimension(&cluster, pool.as_ref());
    let validated = validate::validate(obj, &cluster, dimension)
        .map_err(|e| Error::InvalidSpec(e.to_string()))?;
    let key = api_key(ctx, &obj.namespace().unwrap_or_default(), &validated.qdrant).await?;
    let client = ctx.qdrant(&validated.qdrant.url, key.clone())?;
    // Without the peer list, shards are still evened out among the peers holding some.
    let peers = match &validated.qdrant.http_url {
        Some(url) => qdrant::peers(&ctx.http, url, key.as_deref())
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading the Qdrant peers failed; balancing among the peers holding shards");
                Default::default()
            }),
        None => Default::default(),
    };
    let observed = qdrant::ensure(&client, &validated, &peers).await?;
    ctx.metrics.qdrant_writes(
        obj.namespace().as_deref().unwrap_or_default(),
        &obj.name_any(),
        observed.writes,
    );
    if observed.created {
        ctx.event(
            obj,
            false,
            "Created",
            format!("created Qdrant collection {}", validated.name),
        )
        .await;
    }
    if observed.replications_started > 0 {
        ctx.event(
            obj,
            false,
            "Replicating",
            format!(
                "started {} shard replications to reach replication factor {}",
                observed.replications_started, validated.replication_factor
            ),
        )
        .await;
    }
    if observed.shards_moved > 0 {
        ctx.event(
            obj,
            false,
            "Rebalancing",
            format!(
                "moving {} shards onto peers that hold fewer copies",
                observed.shards_moved
            ),
        )
        .await;
    }
    if observed.replicas_dropped > 0 {
        ctx.event(
            obj,
            false,
            "DroppingReplicas",
            format!(
                "dropped {} shard copies to come down to replication factor {}",
                observed.replicas_dropped, validated.replication_factor
            ),
        )
        .await;
    }
    let replicating = observed.settling();
    let health = Health {
        ready: !replicating,
        progressing: replicating,
        progress: None,
        degraded: None,
        summary: if replicating {
            (
                "Replicating".into(),
                "shards are being replicated, moved or dropped, or are not all Active yet".into(),
            )
        } else {
            (
                "CollectionReady".into(),
                format!("Qdrant collection {} matches the spec", validated.name),
            )
        },
    };
    let previous = obj.status.clone().unwrap_or_default();
    let status = CollectionStatus {
        observed_generation: obj.metadata.generation,
        conditions: conditions(&health, obj.metadata.generation, &previous.conditions),
        points_count: observed.points_count,
        shards: observed.shards,
        qdrant: Some(QdrantLocation {
            url: validated.qdrant.url.clone(),
            managed: validated.qdrant.managed,
            api_key_secret_ref: validated.qdrant.api_key.clone(),
            collection_name: validated.name.clone(),
        }),
    };
    write_status(obj, ctx, &status).await?;
    // Point counts change without any Kubernetes event: poll them.
    Ok(Action::requeue(Duration::from_secs(if replicating {
        10
    } else {
        60
    })))
}

async fn cleanup(obj: &Collection, ctx: &Context) -> Result<Action> {
    if obj.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            obj,
            false,
            "Retained",
            "deletionPolicy Retain: the Qdrant collection is kept".into(),
        )
        .await;
        return Ok(Action::await_change());
    }
    let Some(cluster) = cluster_of(obj, ctx).await? else {
        // The RagCluster is gone. A managed Qdrant went with it; an external one is still
        // there, where the status recorded the collection.
        match obj.status.as_ref().and_then(|s| s.qdrant.clone()) {
            Some(at) if !at.managed => {
                let target = validate::QdrantTarget {
                    url: at.url,
                    http_url: None,
                    api_key: at.api_key_secret_ref,
                    managed: false,
                };
                delete_collection(obj, ctx, &target, &at.collection_name).await?;
            }
            _ => tracing::warn!(
                "RagCluster {} and its managed Qdrant are gone; releasing the Collection",
                obj.spec.cluster
            ),
        }
        return Ok(Action::await_change());
    };
    // Deleting needs the collection's name and Qdrant, not its size.
    let validated = match validate::validate(obj, &cluster, validate::default_vector_size()) {
        Ok(v) => v,
        Err(validate::ValidationError::NoQdrant(_)) => return Ok(Action::await_change()),
        Err(e) => return Err(Error::InvalidSpec(e.to_string())),
    };
    delete_collection(obj, ctx, &validated.qdrant, &validated.name).await?;
    Ok(Action::await_change())
}

/// Deletes Qdrant collection `name` from `target`, with an event on `obj`.
async fn delete_collection(
    obj: &Collection,
    ctx: &Context,
    target: &validate::QdrantTarget,
    name: &str,
) -> Result<()> {
    let client = ctx.qdrant(
        &target.url,
        api_key(ctx, &obj.namespace().unwrap_or_default(), target).await?,
    )?;
    qdrant::delete(&client, name).await?;
    ctx.event(
        obj,
        false,
        "Deleted",
        format!("deleted Qdrant collection {name}"),
    )
    .await;
    Ok(())
}
