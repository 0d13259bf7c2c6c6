//! The reconcile wrapper every controller shares.
//!
//! A kind implements [`Reconciler`] with what is its own: its `KIND` label, its pipeline
//! (dereference → validate → build → apply → status) and the status that records a failed
//! reconcile. The wrapper does the rest, the same way for every kind:
//!
//! - [`reconcile`] times the reconcile under the kind's label, skips an object being deleted
//!   (unless the kind's pipeline handles deletion itself), runs the pipeline under the context's
//!   deadline (a hung call fails it as a transient `Timeout`) and forgets the
//!   object's backoff when it succeeds. When it fails, it publishes a Warning Event whose reason
//!   is the error's label and, where the kind records that failure (by default a permanent error,
//!   which nothing retries until the spec changes), writes the failed status: the previous one,
//!   with conditions that say why.
//! - [`error_policy`] counts the failure, then waits for a spec change after a permanent error or
//!   retries a transient one with per-object backoff.
//! - [`run`] runs a configured [`Controller`] with both until shutdown, and drains its results.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::NamespaceResourceScope;
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::runtime::Controller;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::instrument;

use crate::conditions::{conditions, Health};
use crate::context::Context;
use crate::error::{Error, Result};

/// A kind the operator reconciles: what its controller does that the others do not.
pub trait Reconciler:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + HasStatus<Status: Serialize + Send + Sync>
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Kind label in metrics, logs and backoff keys.
    const KIND: &'static str;

    /// Whether a reconcile of an object being deleted does nothing: its children carry owner
    /// references, and the garbage collector removes them. A kind whose pipeline handles
    /// deletion itself (behind a finalizer) sets it to false.
    const SKIPS_DELETED: bool = true;

    /// One pass of the kind's pipeline, and when to reconcile again after it succeeded.
    fn pipeline(obj: Arc<Self>, ctx: Arc<Context>) -> impl Future<Output = Result<Action>> + Send;

    /// Whether a reconcile that failed with `error` is recorded in status. By default only a
    /// permanent error is, since nothing will retry until the spec changes.
    fn records_failure(&self, error: &Error) -> bool {
        error.is_permanent()
    }

    /// The status that records `error`: the previous status, with the object's generation and
    /// the [`failed_conditions`].
    fn failed_status(&self, error: &Error) -> Self::Status;
}

/// One reconcile of one object of kind `R`.
#[instrument(skip(ctx, obj), fields(kind = R::KIND, namespace = obj.namespace(), name = obj.name_any()))]
pub async fn reconcile<R: Reconciler>(obj: Arc<R>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(R::KIND);
    if R::SKIPS_DELETED && obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let started = std::time::Instant::now();
    let deadline = ctx.reconcile_timeout;
    let outcome = tokio::time::timeout(deadline, R::pipeline(obj.clone(), ctx.clone()))
        .await
        .unwrap_or(Err(Error::Timeout(deadline)));
    match outcome {
        Ok(action) => {
            ctx.reset_backoff(&key(&*obj));
            tracing::debug!(elapsed = ?started.elapsed(), ?action, "reconciled");
            Ok(action)
        }
        Err(error) => {
            // Reporting talks to the same API server that may be hanging: it gets a deadline too.
            if tokio::time::timeout(deadline, report_error(&*obj, &ctx, &error))
                .await
                .is_err()
            {
                tracing::warn!(%error, "the API server did not take the failure report in time");
            }
            Err(error)
        }
    }
}

/// What the controller of `R` does after a failed reconcile.
pub fn error_policy<R: Reconciler>(obj: Arc<R>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.on_error(R::KIND, &key(&*obj), error)
}

/// Runs `controller`, configured with the watches of its kind, until `shutdown` resolves.
pub async fn run<R: Reconciler>(
    controller: Controller<R>,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<R>, error_policy::<R>, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "{} reconcile ended with an error", R::KIND);
            }
        })
        .await;
}

/// Writes `status` into the status subresource of `obj`.
pub async fn write_status<R: Reconciler>(obj: &R, ctx: &Context, status: &R::Status) -> Result<()> {
    crate::apply::apply_status(&ctx.client, obj, status)
        .await
        .map_err(|e| Error::kube(format!("write {} status", R::KIND), e))
}

/// The conditions of a reconcile that failed with `error`, at `generation`: not Ready, Degraded
/// with the error as reason and message, and Progressing while a retry may still fix it.
pub fn failed_conditions(
    error: &Error,
    generation: Option<i64>,
    previous: &[Condition],
) -> Vec<Condition> {
    conditions(
        &Health::failed(error, !error.is_permanent()),
        generation,
        previous,
    )
}

fn key<R: Reconciler>(obj: &R) -> String {
    crate::context::object_key(R::KIND, obj)
}

/// Records a failed reconcile on the resource: an Event always, and the failed status where the
/// kind records that failure.
async fn report_error<R: Reconciler>(obj: &R, ctx: &Context, error: &Error) {
    ctx.event(obj, true, error.metric_label(), error.to_string())
        .await;
    if !obj.records_failure(error) {
        return;
    }
    if let Err(e) = write_status(obj, ctx, &obj.failed_status(error)).await {
        tracing::warn!(error = %e, "failed to record the error in status");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::Method;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::conditions::is_true;
    use crate::context::DataPlaneDefaults;
    use crate::crd::collection::Collection;
    use crate::fixtures::{mock_client, Exchange};
    use crate::metrics::Metrics;

    fn context(client: kube::Client) -> Arc<Context> {
        Arc::new(Context::new(
            client,
            Metrics::new(),
            DataPlaneDefaults::new("img"),
        ))
    }

    #[test]
    fn failed_conditions_progress_only_while_a_retry_may_help() {
        let permanent = failed_conditions(&Error::InvalidSpec("x".into()), Some(3), &[]);
        assert!(!is_true(&permanent, "Ready"));
        assert!(is_true(&permanent, "Degraded"));
        assert!(!is_true(&permanent, "Progressing"));
        let transient = Error::Qdrant {
            action: "create".into(),
            message: "unavailable".into(),
        };
        let transient = failed_conditions(&transient, Some(3), &[]);
        assert!(is_true(&transient, "Degraded") && is_true(&transient, "Progressing"));
        assert!(transient.iter().all(|c| c.observed_generation == Some(3)));
    }

    /// An API server that takes a request and never answers fails the reconcile at the
    /// context's deadline as a transient error, instead of holding the object forever.
    #[tokio::test]
    async fn a_hung_api_server_fails_the_reconcile_at_the_deadline() {
        let silent = tower::service_fn(|_request: http::Request<kube::client::Body>| {
            std::future::pending::<Result<http::Response<kube::client::Body>, tower::BoxError>>()
        });
        let client = kube::Client::new(silent, "default");
        let deadline = Duration::from_millis(200);
        let ctx = Arc::new(
            Context::new(client, Metrics::new(), DataPlaneDefaults::new("img"))
                .with_reconcile_timeout(deadline),
        );
        let cluster = crate::rag_cluster::build::test_support::cluster(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: dev, namespace: rag}\nspec: {}\n",
        );
        let started = std::time::Instant::now();
        let error = reconcile(Arc::new(cluster.clone()), ctx.clone())
            .await
            .expect_err("nothing answered");
        assert!(
            matches!(error, Error::Timeout(d) if d == deadline),
            "{error}"
        );
        assert!(!error.is_permanent());
        // The pipeline and the failure report each get the deadline once.
        assert!(started.elapsed() < deadline * 4, "{:?}", started.elapsed());
        assert!(error_policy(Arc::new(cluster), &error, ctx.clone()) != Action::await_change());
        assert!(ctx.metrics.render().contains("error=\"Timeout\""));
    }

    /// A RagCluster being deleted is left to the garbage collector: no request, no error.
    #[tokio::test]
    async fn an_object_being_deleted_is_skipped() {
        let (client, server) = mock_client(Vec::new());
        let mut cluster = crate::rag_cluster::build::test_support::cluster(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: dev, namespace: rag}\nspec: {}\n",
        );
        cluster.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        let ctx = context(client);
        let action = reconcile(Arc::new(cluster), ctx.clone())
            .await
            .expect("nothing to do");
        assert_eq!(action, Action::await_change());
        let metrics = ctx.metrics.render();
        assert!(
            metrics.contains("ragplane_operator_reconciles_total{kind=\"RagCluster\"} 1"),
            "{metrics}"
        );
        server.await.expect("no request was made");
    }

    /// A Collection records a transient error in status too, as still Progressing, and retries
    /// it with backoff.
    #[tokio::test]
    async fn a_collection_records_transient_errors() {
        let (client, server) = mock_client(vec![
            Exchange::not_found(
                Method::GET,
                "/apis/ragplane.dev/v1alpha1/namespaces/rag/ragclusters/dev",
            ),
            Exchange::event("Warning", "MissingReference", "docs"),
            Exchange::echo(
                Method::PATCH,
                "/apis/ragplane.dev/v1alpha1/namespaces/rag/collections/docs/status?&force=true&fieldManager=ragplane-operator",
                |b| {
                    assert_eq!(b["status"]["observedGeneration"], 2);
                    let conditions = b["status"]["conditions"].as_array().unwrap();
                    let status = |type_: &str| {
                        conditions
                            .iter()
                            .find(|c| c["type"] == type_)
                            .map(|c| (c["status"].clone(), c["reason"].clone()))
                            .unwrap()
                    };
                    assert_eq!(status("Degraded"), ("True".into(), "MissingReference".into()));
                    assert_eq!(status("Progressing").0, "True");
                    assert_eq!(status("Ready").0, "False");
                },
            ),
        ]);
        let collection: Collection = serde_yaml::from_str(
            "apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {name: docs, namespace: rag, generation: 2, finalizers: [ragplane.dev/collection]}\nspec: {cluster: dev}\n",
        )
        .expect("valid Collection YAML");
        let ctx = context(client);
        let obj = Arc::new(collection);
        let error = reconcile(obj.clone(), ctx.clone())
            .await
            .expect_err("the RagCluster is missing");
        assert_eq!(error.metric_label(), "MissingReference");
        assert_eq!(
            error_policy(obj, &error, ctx),
            Action::requeue(Duration::from_secs(1))
        );
        server.await.expect("every expected request was made");
    }
}
