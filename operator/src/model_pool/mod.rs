//! The ModelPool controller: validate → build → apply → status.

pub mod build;
pub mod status;
pub mod validate;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::runtime::controller::Action;
use kube::runtime::{watcher, Controller};

use self::build::{PoolObjects, Workload};
use self::status::AppliedWorkload;
use crate::apply::apply;
use crate::autoscale::handover::{raise_replicas, release_replicas};
use crate::autoscale::hpa::build_hpa;
use crate::autoscale::Scaling;
use crate::context::Context;
use crate::crd::model_pool::{ModelPool, ModelPoolStatus};
use crate::error::{Error, Result};
use crate::labels;
use crate::rag_cluster::{delete_if_owned, scoped};
use crate::reconciler::{failed_conditions, write_status, Reconciler};

/// Kind label in metrics and logs.
pub const KIND: &str = "ModelPool";

/// Runs the ModelPool controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default().labels(&labels::managed());
    let controller = Controller::new(
        scoped::<ModelPool>(&client, namespace.as_deref()),
        watcher::Config::default(),
    )
    .owns(
        scoped::<Deployment>(&client, namespace.as_deref()),
        owned.clone(),
    )
    .owns(
        scoped::<StatefulSet>(&client, namespace.as_deref()),
        owned.clone(),
    )
    .owns(
        scoped::<Service>(&client, namespace.as_deref()),
        owned.clone(),
    )
    .owns(
        scoped::<HorizontalPodAutoscaler>(&client, namespace.as_deref()),
        owned,
    );
    crate::reconciler::run(controller, ctx, shutdown).await;
}

/// Validate → build → apply → status; a failure keeps the status of the last success apart from
/// the conditions.
impl Reconciler for ModelPool {
    const KIND: &'static str = KIND;

    async fn pipeline(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        let pool = validate::validate(&obj, &ctx.data_plane)
            .map_err(|e| Error::InvalidSpec(e.to_string()))?;
        let PoolObjects {
            workload,
            service,
            headless,
            pdb,
        } = build::build(&pool);
        let client = &ctx.client;
        let ns = pool.namespace.as_str();
        apply(&ctx, ns, &service)
            .await
            .map_err(|e| Error::kube(format!("apply Service {}", pool.name), e))?;
        let headless_name = build::service::headless_name(&pool.name);
        match headless {
            Some(headless) => {
                apply(&ctx, ns, &headless)
                    .await
                    .map_err(|e| Error::kube(format!("apply Service {headless_name}"), e))?;
            }
            None => {
                delete_if_owned::<Service>(client, ns, &headless_name, &pool.owner.uid).await?;
            }
        }
        apply(&ctx, ns, &pdb)
            .await
            .map_err(|e| Error::kube(format!("apply PodDisruptionBudget {}", pool.name), e))?;
        let workload_kind = match &workload {
            Workload::StatefulSet(_) => "StatefulSet",
            Workload::Deployment(..) => "Deployment",
        };
        if pool.replicas.is_none() {
            let released = match &workload {
                Workload::StatefulSet(_) => {
                    release_replicas::<StatefulSet>(client, ns, &pool.name).await
                }
                Workload::Deployment(..) => {
                    release_replicas::<Deployment>(client, ns, &pool.name).await
                }
            };
            released.map_err(|e| {
                Error::kube(
                    format!("hand the replicas of {workload_kind} {} over", pool.name),
                    e,
                )
            })?;
        }
        let applied = match workload {
            Workload::StatefulSet(sts) => {
                delete_if_owned::<Deployment>(client, ns, &pool.name, &pool.owner.uid).await?;
                AppliedWorkload::StatefulSet(
                    apply(&ctx, ns, &sts)
                        .await
                        .map_err(|e| Error::kube(format!("apply StatefulSet {}", pool.name), e))?,
                )
            }
            Workload::Deployment(deployment, pvc) => {
                delete_if_owned::<StatefulSet>(client, ns, &pool.name, &pool.owner.uid).await?;
                if let Some(pvc) = pvc {
                    apply(&ctx, ns, &pvc).await.map_err(|e| {
                        Error::kube("apply the model-cache PersistentVolumeClaim", e)
                    })?;
                } else {
                    let name = build::cache_pvc::cache_claim_name(&pool.name);
                    delete_if_owned::<PersistentVolumeClaim>(client, ns, &name, &pool.owner.uid)
                        .await?;
                }
                AppliedWorkload::Deployment(
                    apply(&ctx, ns, &deployment)
                        .await
                        .map_err(|e| Error::kube(format!("apply Deployment {}", pool.name), e))?,
                )
            }
        };
        let applied = if pool.replicas.is_none() {
            raise_to_minimum(client, ns, &pool.name, pool.desired, applied).await?
        } else {
            applied
        };
        match &pool.scaling {
            Scaling::Hpa(targets) => {
                let hpa = build_hpa(
                    build::meta(&pool, pool.name.clone()),
                    workload_kind,
                    &pool.name,
                    targets,
                );
                apply(&ctx, ns, &hpa).await.map_err(|e| {
                    Error::kube(format!("apply HorizontalPodAutoscaler {}", pool.name), e)
                })?;
            }
            Scaling::Fixed(_) | Scaling::Rules(_) | Scaling::Bounds { .. } => {
                delete_if_owned::<HorizontalPodAutoscaler>(client, ns, &pool.name, &pool.owner.uid)
                    .await?;
            }
        }
        let previous = obj.status.clone().unwrap_or_default();
        let crash_loops = crate::rollout::crash_looping_pods(
            client,
            ns,
            &format!(
                "{}={},{}=ragplane-model-server",
                labels::INSTANCE,
                pool.name,
                labels::NAME
            ),
        )
        .await;
        let status = status::compute(
            &pool,
            &applied,
            obj.metadata.generation,
            &crash_loops,
            &previous,
        );
        write_status(&*obj, &ctx, &status).await?;
        if crate::conditions::is_true(&status.conditions, "Ready")
            && !crate::conditions::is_true(&previous.conditions, "Ready")
        {
            ctx.event(
                &*obj,
                false,
                "Ready",
                format!("{} serves {}", pool.name, pool.model),
            )
            .await;
        }
        Ok(Action::requeue(crate::rollout::recheck_after(
            crate::conditions::is_true(&status.conditions, "Ready"),
        )))
    }

    fn failed_status(&self, error: &Error) -> ModelPoolStatus {
        let previous = self.status.clone().unwrap_or_default();
        ModelPoolStatus {
            observed_generation: self.metadata.generation,
            conditions: failed_conditions(error, self.metadata.generation, &previous.conditions),
            // The autoscaler owns that list under its own field manager.
            autoscaling: Vec::new(),
            ..previous
        }
    }
}

/// An autoscaled pool's workload is applied without replicas, so the API server starts it at
/// 1: raise it to the autoscaling minimum (`desired`), leaving the count to its autoscaler, if
/// any, from there.
async fn raise_to_minimum(
    client: &kube::Client,
    ns: &str,
    name: &str,
    desired: i32,
    applied: AppliedWorkload,
) -> Result<AppliedWorkload> {
    let failed = |kind: &str| {
        let what = format!("scale {kind} {name}");
        move |e| Error::kube(what, e)
    };
    Ok(match applied {
        AppliedWorkload::StatefulSet(a) => {
            let current = a.get().spec.replicas.unwrap_or(1);
            AppliedWorkload::StatefulSet(
                raise_replicas(client, ns, a, current, desired)
                    .await
                    .map_err(failed("StatefulSet"))?,
            )
        }
        AppliedWorkload::Deployment(a) => {
            let current = a.get().spec.replicas.unwrap_or(1);
            AppliedWorkload::Deployment(
                raise_replicas(client, ns, a, current, desired)
                    .await
                    .map_err(failed("Deployment"))?,
            )
        }
    })
}
