//! The RagCluster controller: dereference → validate → build → apply → status.

pub mod backends;
pub mod build;
pub mod qdrant_peers;
pub mod status;
pub mod validate;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use self::build::{ClusterObjects, QdrantObjects};
use self::status::AppliedWorkloads;
use self::validate::{Dereferenced, ValidatedCluster};
use crate::apply::apply;
use crate::context::Context;
use crate::crd::collection::Collection;
use crate::crd::model_pool::ModelPool;
use crate::crd::rag_cluster::{RagCluster, RagClusterStatus};
use crate::error::{Error, Result};
use crate::labels;
use crate::reconciler::{failed_conditions, write_status, Reconciler};

/// Kind label in metrics and logs.
pub const KIND: &str = "RagCluster";

/// Runs the RagCluster controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels(&labels::managed());
    let controller = Controller::new(
        scoped::<RagCluster>(&client, namespace.as_deref()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let clusters = store.clone();
    let readers = store.clone();
    let controller = controller
        .owns(
            scoped::<Deployment>(&client, namespace.as_deref()),
            owned.clone(),
        )
        .owns(
            scoped::<StatefulSet>(&client, namespace.as_deref()),
            owned.clone(),
        )
        .owns(
            scoped::<ConfigMap>(&client, namespace.as_deref()),
            owned.clone(),
        )
        .owns(
            scoped::<Service>(&client, namespace.as_deref()),
            owned.clone(),
        )
        .owns(
            scoped::<PodDisruptionBudget>(&client, namespace.as_deref()),
            owned.clone(),
        )
        .owns(
            scoped::<HorizontalPodAutoscaler>(&client, namespace.as_deref()),
            owned,
        )
        .watches(
            scoped::<ModelPool>(&client, namespace.as_deref()),
            watcher::Config::default(),
            move |pool| {
                let name = pool.name_any();
                let ns = pool.namespace();
                store
                    .state()
                    .into_iter()
                    .filter(|c| c.namespace() == ns && c.spec.model_pools().any(|r| r.name == name))
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        )
        // A Collection can describe the shared Qdrant collection, whose layout the config carries.
        .watches(
            scoped::<Collection>(&client, namespace.as_deref()),
            watcher::Config::default(),
            move |collection| {
                let ns = collection.namespace();
                clusters
                    .state()
                    .into_iter()
                    .filter(|c| c.namespace() == ns && c.name_any() == collection.spec.cluster)
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        )
        // A changed Secret rolls the pods that read it (their template carries its hash); the
        // admin key Secret the operator owns is one of them.
        .watches(
            scoped::<Secret>(&client, namespace.as_deref()),
            watcher::Config::default(),
            move |secret| {
                let name = secret.name_any();
                let ns = secret.namespace();
                readers
                    .state()
                    .into_iter()
                    .filter(|c| {
                        c.namespace() == ns && validate::referenced_secrets(c).contains(&name)
                    })
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        );
    crate::reconciler::run(controller, ctx, shutdown).await;
}

/// An Api for `K` in `namespace`, or in every namespace.
pub(crate) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Dereference → validate → build → apply → status; a failure keeps the status of the last
/// success apart from the conditions.
impl Reconciler for RagCluster {
    const KIND: &'static str = KIND;

    async fn pipeline(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        let namespace = obj.namespace().unwrap_or_default();
        let refs = dereference(&obj, &ctx.client, &namespace).await?;
        let validated = validate::validate(&obj, &refs, &ctx.data_plane)
            .map_err(|e| Error::InvalidSpec(e.to_string()))?;
        let objects = build::build(&validated);
        let applied = apply_all(&ctx, &validated, objects).await?;
        let pools: Vec<&ModelPool> = [
            &refs.generation_pool,
            &refs.embedding_pool,
            &refs.previous_embedding_pool,
        ]
        .into_iter()
        .flatten()
        .collect();
        let previous = obj.status.clone().unwrap_or_default();
        // The cluster's own pods (a ModelPool of the same name is another app), read once for
        // the Qdrant peers and for status.
        let pods = crate::rollout::pods(
            &ctx.client,
            &namespace,
            &format!(
                "{}={},{}!=ragplane-model-server",
                labels::INSTANCE,
                validated.name,
                labels::NAME
            ),
        )
        .await;
        if matches!(validated.qdrant, validate::QdrantMode::Managed(_)) {
            // Best effort, like status: a failure is logged and the next pass tries again.
            if let Err(e) = qdrant_peers::remove_predecessors(&ctx, &obj, &validated, &pods).await {
                tracing::warn!(error = %e, "could not check the Qdrant peers for lost volumes");
            }
        }
        let crash_loops = crate::rollout::crash_looping(&pods);
        let status = status::compute(
            &validated,
            &applied,
            obj.metadata.generation,
            &pools,
            &crash_loops,
            &previous,
        );
        write_status(&*obj, &ctx, &status).await?;
        let was_ready = crate::conditions::is_true(&previous.conditions, "Ready");
        let is_ready = crate::conditions::is_true(&status.conditions, "Ready");
        if is_ready && !was_ready {
            ctx.event(
                &*obj,
                false,
                "Ready",
                "every component has its desired ready replicas".into(),
            )
            .await;
        }
        Ok(Action::requeue(crate::rollout::recheck_after(is_ready)))
    }

    fn failed_status(&self, error: &Error) -> RagClusterStatus {
        let previous = self.status.clone().unwrap_or_default();
        RagClusterStatus {
            observed_generation: self.metadata.generation,
            conditions: failed_conditions(error, self.metadata.generation, &previous.conditions),
            // The autoscaler owns that list under its own field manager.
            autoscaling: Vec::new(),
            ..previous
        }
    }
}

async fn dereference(obj: &RagCluster, client: &Client, namespace: &str) -> Result<Dereferenced> {
    let pools: Api<ModelPool> = Api::namespaced(client.clone(), namespace);
    let mut out = Dereferenced::default();
    for (reference, slot) in [
        (&obj.spec.generation, &mut out.generation_pool),
        (&obj.spec.embedding, &mut out.embedding_pool),
        (
            &obj.spec.previous_embedding,
            &mut out.previous_embedding_pool,
        ),
    ] {
        if let Some(r) = reference {
            let pool = pools
                .get_opt(&r.name)
                .await
                .map_err(|e| Error::kube(format!("get ModelPool {}", r.name), e))?
                .ok_or_else(|| Error::MissingReference {
                    kind: "ModelPool",
                    name: r.name.clone(),
                })?;
            *slot = Some(pool);
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for name in validate::referenced_secrets(obj) {
        let secret = secrets
            .get_opt(&name)
            .await
            .map_err(|e| Error::kube(format!("get Secret {name}"), e))?;
        out.secrets
            .insert(name, secret.map(|s| s.data.unwrap_or_default()));
    }
    // The operator's own Secrets (admin key, managed Qdrant key): the key each holds once it
    // exists, a new random one before. Once it holds a key, a Secret is the platform team's to
    // rotate: the operator reads it and never writes it again, so a reconcile that read the old
    // key just before a rotation cannot put the old key back.
    for (r, _) in validate::owned_secrets(obj) {
        let existing = out
            .secrets
            .get(&r.name)
            .and_then(Option::as_ref)
            .and_then(|data| data.get(&r.key))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned());
        let owned = validate::OwnedValue {
            exists: existing.is_some(),
            value: existing.unwrap_or_else(ragplane_config::new_api_key),
        };
        out.own(r, owned);
    }
    if let Some(q) = &obj.spec.qdrant {
        let collections: Api<Collection> = Api::namespaced(client.clone(), namespace);
        let list = collections
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube("list Collections", e))?;
        out.shared_collection = shared_collection(list.items, &obj.name_any(), q.collection_name());
    }
    Ok(out)
}

/// The Collection of `cluster` whose Qdrant collection is the shared one, if any; the oldest
/// when several claim it.
pub(crate) fn shared_collection(
    mut collections: Vec<Collection>,
    cluster: &str,
    qdrant_name: &str,
) -> Option<Collection> {
    collections
        .retain(|c| c.spec.cluster == cluster && c.qdrant_name().as_deref() == Some(qdrant_name));
    collections.sort_by(|a, b| {
        (a.metadata.creation_timestamp.as_ref(), a.name_any())
            .cmp(&(b.metadata.creation_timestamp.as_ref(), b.name_any()))
    });
    collections.into_iter().next()
}

async fn apply_one<K>(ctx: &Context, ns: &str, object: &K) -> Result<crate::apply::Applied<K>>
where
    K: Resource<Scope = NamespaceResourceScope>
        + serde::Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    apply(ctx, ns, object).await.map_err(|e| {
        Error::kube(
            format!(
                "apply {} {}",
                K::kind(&K::DynamicType::default()),
                object.name_any()
            ),
            e,
        )
    })
}

/// Applies every built object and removes children the spec no longer asks for.
async fn apply_all(
    ctx: &Context,
    c: &ValidatedCluster,
    objects: ClusterObjects,
) -> Result<AppliedWorkloads> {
    let ClusterObjects {
        config_map,
        owned_secrets,
        network_policies,
        data_volume,
        api_deployment,
        api_service,
        api_pdb,
        workers,
        qdrant,
        hpas,
    } = objects;
    let client = &ctx.client;
    let ns = c.namespace.as_str();
    // The config, the key and the volume first: pods of a new Deployment mount them.
    apply_one(ctx, ns, &config_map).await?;
    for secret in &owned_secrets {
        apply_one(ctx, ns, secret).await?;
    }
    // A claim the spec no longer asks for is kept: it holds the embedded data, and goes with
    // the RagCluster.
    if let Some(claim) = &data_volume {
        apply_one(ctx, ns, claim).await?;
    }
    let qdrant = match qdrant {
        Some(QdrantObjects {
            statefulset,
            service,
            pdb,
        }) => {
            apply_one(ctx, ns, &service).await?;
            apply_one(ctx, ns, &pdb).await?;
            Some(apply_one(ctx, ns, &statefulset).await?)
        }
        None => {
            let name = c.child("qdrant");
            delete_if_owned::<StatefulSet>(client, ns, &name, &c.owner.uid).await?;
            delete_if_owned::<Service>(
                client,
                ns,
                &validate::qdrant_service_name(&c.name),
                &c.owner.uid,
            )
            .await?;
            delete_if_owned::<PodDisruptionBudget>(client, ns, &name, &c.owner.uid).await?;
            None
        }
    };
    apply_one(ctx, ns, &api_service).await?;
    apply_one(ctx, ns, &api_pdb).await?;
    if c.api.replicas.is_none() {
        release(client, ns, &c.child("api")).await?;
    }
    let api = raise_to_minimum(
        client,
        ns,
        apply_one(ctx, ns, &api_deployment).await?,
        &c.api,
    )
    .await?;
    let mut applied_workers = Vec::with_capacity(workers.len());
    for (pool, deployment) in c.workers.iter().zip(&workers) {
        if pool.component.replicas.is_none() {
            release(client, ns, &deployment.name_any()).await?;
        }
        let applied = apply_one(ctx, ns, deployment).await?;
        applied_workers.push((
            pool.name.clone(),
            raise_to_minimum(client, ns, applied, &pool.component).await?,
        ));
    }
    prune(client, c, ",app.kubernetes.io/component=worker", &workers).await?;
    for hpa in &hpas {
        apply_one(ctx, ns, hpa).await?;
    }
    prune(client, c, "", &hpas).await?;
    for policy in &network_policies {
        apply_one(ctx, ns, policy).await?;
    }
    prune(client, c, "", &network_policies).await?;
    Ok(AppliedWorkloads {
        api,
        workers: applied_workers,
        qdrant,
    })
}

/// An autoscaled Deployment's replicas are not in the applied body (the autoscaler owns them),
/// so the API server defaults them to 1; raise them to the autoscaling minimum through the scale
/// subresource, which leaves the count's ownership with the autoscaler.
async fn raise_to_minimum(
    client: &Client,
    ns: &str,
    applied: crate::apply::Applied<Deployment>,
    component: &validate::Component,
) -> Result<crate::apply::Applied<Deployment>> {
    if component.replicas.is_some() {
        return Ok(applied);
    }
    let name = applied.get().name_any();
    let current = applied.get().spec.replicas.unwrap_or(1);
    crate::autoscale::handover::raise_replicas(client, ns, applied, current, component.desired)
        .await
        .map_err(|e| Error::kube(format!("scale Deployment {name}"), e))
}

/// Hands a Deployment's replicas to the autoscaler before the apply that stops setting them.
async fn release(client: &Client, ns: &str, name: &str) -> Result<()> {
    crate::autoscale::handover::release_replicas::<Deployment>(client, ns, name)
        .await
        .map_err(|e| Error::kube(format!("hand the replicas of Deployment {name} over"), e))
}

/// Deletes the children of kind `K` that this cluster controls, among those labelled with its
/// instance (and `extra_labels`, a `,key=value` suffix), that are not among `desired`: worker
/// pools removed from the spec, HPAs of components without CPU/memory targets, NetworkPolicies
/// turned off.
async fn prune<K>(
    client: &Client,
    c: &ValidatedCluster,
    extra_labels: &str,
    desired: &[K],
) -> Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let api: Api<K> = Api::namespaced(client.clone(), &c.namespace);
    let selector = format!(
        "{}={},{}{extra_labels}",
        labels::INSTANCE,
        c.name,
        labels::managed()
    );
    let existing = api
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube(format!("list {kind}s"), e))?;
    for object in existing {
        let name = object.name_any();
        let wanted = desired
            .iter()
            .any(|d| d.meta().name.as_deref() == Some(name.as_str()));
        if !wanted && owned_by(&object.metadata, &c.owner.uid) {
            tracing::info!(kind, name, "deleting a child the spec no longer asks for");
            api.delete(&name, &DeleteParams::background())
                .await
                .map_err(|e| Error::kube(format!("delete {kind} {name}"), e))?;
        }
    }
    Ok(())
}

fn owned_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

/// Deletes `name` if it exists and this owner controls it.
pub(crate) async fn delete_if_owned<K>(
    client: &Client,
    ns: &str,
    name: &str,
    uid: &str,
) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope> + DeserializeOwned + Clone + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let existing = api
        .get_metadata_opt(name)
        .await
        .map_err(|e| Error::kube(format!("get {kind} {name}"), e))?;
    if let Some(obj) = existing {
        if owned_by(&obj.metadata, uid) {
            api.delete(name, &DeleteParams::background())
                .await
                .map_err(|e| Error::kube(format!("delete {kind} {name}"), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mock_client, Exchange};
    use crate::metrics::Metrics;
    use crate::reconciler::{error_policy, reconcile};
    use http::{Method, StatusCode};

    fn apply_path(path: &str) -> String {
        format!("{path}?&force=true&fieldManager=ragplane-operator")
    }

    /// The whole conversation of one reconcile of a RagCluster without Qdrant or worker pools:
    /// server-side applies under one field manager, clean-up of Qdrant objects it might have
    /// had, a look for stale worker Deployments, then the status.
    #[tokio::test]
    async fn reconcile_applies_children_then_writes_status() {
        let ns = "/api/v1/namespaces/rag";
        let apps = "/apis/apps/v1/namespaces/rag";
        let policy = "/apis/policy/v1/namespaces/rag";
        let owned = |body: &serde_json::Value| {
            assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "uid-1");
            assert_eq!(
                body["metadata"]["labels"]["app.kubernetes.io/instance"],
                "dev"
            );
        };
        let (client, server) = mock_client(vec![
            // The Secrets the pods read: here only the admin key's, not created yet.
            Exchange::not_found(Method::GET, &format!("{ns}/secrets/dev-admin-key")),
            Exchange::echo(
                Method::PATCH,
                &apply_path(&format!("{ns}/configmaps/dev-config")),
                move |b| {
                    owned(b);
                    assert!(b["data"]["ragplane.toml"]
                        .as_str()
                        .unwrap()
                        .contains("listen = \"0.0.0.0:8080\""));
                },
            ),
            Exchange::echo(
                Method::PATCH,
                &apply_path(&format!("{ns}/secrets/dev-admin-key")),
                move |b| {
                    owned(b);
                    let key = b["data"]["api-key"].as_str().unwrap();
                    assert_eq!(key.len(), 60, "base64 of a 43-character key: {key}");
                },
            ),
            Exchange::echo(
                Method::PATCH,
                &apply_path(&format!("{ns}/persistentvolumeclaims/dev-data")),
                move |b| {
                    owned(b);
                    assert_eq!(b["spec"]["accessModes"][0], "ReadWriteOnce");
                },
            ),
            Exchange::not_found(Method::GET, &format!("{apps}/statefulsets/dev-qdrant")),
            Exchange::not_found(Method::GET, &format!("{ns}/services/dev-qdrant")),
            Exchange::not_found(
                Method::GET,
                &format!("{policy}/poddisruptionbudgets/dev-qdrant"),
            ),
            Exchange::echo(
                Method::PATCH,
                &apply_path(&format!("{ns}/services/dev-api")),
                owned,
            ),
            Exchange::echo(
                Method::PATCH,
                &apply_path(&format!("{policy}/poddisruptionbudgets/dev-api")),
                owned,
            ),
            Exchange::echo(
                Method::PATCH,
                &apply_path(&format!("{apps}/deployments/dev-api")),
                move |b| {
                    owned(b);
                    assert_eq!(b["spec"]["replicas"], 1);
                },
            ),
            Exchange::reply(
                Method::GET,
                &format!("{apps}/deployments?&labelSelector=app.kubernetes.io%2Finstance%3Ddev"),
                StatusCode::OK,
                serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                    "metadata": {}, "items": []}),
            ),
            Exchange::reply(
                Method::GET,
                "/apis/autoscaling/v2/namespaces/rag/horizontalpodautoscalers?&labelSelector=app.kubernetes.io%2Finstance%3Ddev",
                StatusCode::OK,
                serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                    "metadata": {}, "items": []}),
            ),
            Exchange::reply(
                Method::GET,
                "/apis/networking.k8s.io/v1/namespaces/rag/networkpolicies?&labelSelector=app.kubernetes.io%2Finstance%3Ddev",
                StatusCode::OK,
                serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                    "metadata": {}, "items": []}),
            ),
            // The cluster's pods, for crash loops.
            Exchange::reply(
                Method::GET,
                "/api/v1/namespaces/rag/pods?&labelSelector=app.kubernetes.io%2Finstance%3Ddev%2Capp.kubernetes.io%2Fname%21%3Dragplane-model-server",
                StatusCode::OK,
                serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
            ),
            Exchange {
                reply: Some(
                    serde_json::json!({"apiVersion": "ragplane.dev/v1alpha1", "kind": "RagCluster",
                    "metadata": {"name": "dev", "namespace": "rag"}, "spec": {}}),
                ),
                ..Exchange::echo(
                    Method::PATCH,
                    &apply_path(
                        "/apis/ragplane.dev/v1alpha1/namespaces/rag/ragclusters/dev/status",
                    ),
                    |b| {
                        assert_eq!(b["status"]["api"], "0/1");
                        assert_eq!(b["status"]["adminKeySecret"], "dev-admin-key");
                        assert_eq!(b["status"]["version"], env!("CARGO_PKG_VERSION"));
                        assert_eq!(b["status"]["observedGeneration"], 4);
                        let ready = b["status"]["conditions"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|c| c["type"] == "Ready")
                            .unwrap();
                        assert_eq!(ready["status"], "False");
                    },
                )
            },
        ]);
        let mut cluster = crate::rag_cluster::build::test_support::cluster(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: dev, namespace: rag}\nspec: {api: {replicas: 1}}\n",
        );
        cluster.metadata.generation = Some(4);
        let ctx = Arc::new(Context::new(
            client,
            Metrics::new(),
            crate::context::DataPlaneDefaults::new("ghcr.io/ragplane/ragplane"),
        ));
        let action = reconcile(Arc::new(cluster), ctx)
            .await
            .expect("reconcile succeeds");
        // Not Ready yet: looked at again soon.
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(15)));
        server.await.expect("every expected request was made");
    }

    /// A spec the operator cannot build waits for a change instead of retrying.
    #[tokio::test]
    async fn invalid_spec_is_permanent_and_recorded() {
        let (client, server) = mock_client(vec![
            Exchange::reply(
                Method::GET,
                "/apis/ragplane.dev/v1alpha1/namespaces/rag/modelpools/embed",
                StatusCode::OK,
                serde_json::json!({"apiVersion": "ragplane.dev/v1alpha1", "kind": "ModelPool",
                    "metadata": {"name": "embed", "namespace": "rag"},
                    "spec": {"kind": "embedding", "model": "m"}}),
            ),
            Exchange::not_found(Method::GET, "/api/v1/namespaces/rag/secrets/bad-admin-key"),
            Exchange::event("Warning", "InvalidSpec", "bad"),
            Exchange::echo(
                Method::PATCH,
                &apply_path("/apis/ragplane.dev/v1alpha1/namespaces/rag/ragclusters/bad/status"),
                |b| {
                    let degraded = b["status"]["conditions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|c| c["type"] == "Degraded")
                        .unwrap();
                    assert_eq!(
                        (degraded["status"].as_str(), degraded["reason"].as_str()),
                        (Some("True"), Some("InvalidSpec"))
                    );
                    assert!(degraded["message"]
                        .as_str()
                        .unwrap()
                        .contains("expected ollama or openai"));
                },
            ),
        ]);
        let cluster = crate::rag_cluster::build::test_support::cluster(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: bad, namespace: rag}\nspec: {generation: {name: embed}}\n",
        );
        let ctx = Arc::new(Context::new(
            client,
            Metrics::new(),
            crate::context::DataPlaneDefaults::new("img"),
        ));
        let obj = Arc::new(cluster);
        let error = reconcile(obj.clone(), ctx.clone())
            .await
            .expect_err("invalid spec");
        assert!(error.is_permanent(), "{error}");
        assert_eq!(
            error_policy(obj, &error, ctx.clone()),
            Action::await_change()
        );
        assert!(ctx.metrics.render().contains("error=\"InvalidSpec\""));
        server.await.expect("every expected request was made");
    }
}
