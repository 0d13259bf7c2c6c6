//! RagCluster status, computed only from objects as the API server returned them after applying.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};

use super::validate::{QdrantMode, ValidatedCluster};
use crate::apply::Applied;
use crate::conditions::{conditions, Health};
use crate::crd::model_pool::ModelPool;
use crate::crd::rag_cluster::{ComponentStatus, RagClusterStatus};
use crate::rollout;

/// Workloads after the apply step. Every field is listed when this is unpacked, so a new workload
/// that nobody applies does not compile.
pub struct AppliedWorkloads {
    /// API Deployment.
    pub api: Applied<Deployment>,
    /// Worker Deployments with their pool names.
    pub workers: Vec<(String, Applied<Deployment>)>,
    /// Managed Qdrant StatefulSet.
    pub qdrant: Option<Applied<StatefulSet>>,
}

/// The status for `c` given what was applied and the referenced ModelPools.
pub fn compute(
    c: &ValidatedCluster,
    applied: &AppliedWorkloads,
    generation: Option<i64>,
    pools: &[&ModelPool],
    crash_loops: &[String],
    previous: &RagClusterStatus,
) -> RagClusterStatus {
    let AppliedWorkloads {
        api,
        workers,
        qdrant,
    } = applied;
    let mut components = Vec::new();
    let mut all_ready = true;
    let mut failures: Vec<String> = Vec::new();

    let api_rollout = rollout::deployment(api.get(), c.api.desired);
    all_ready &= api_rollout.complete;
    failures.extend(api_rollout.failure.iter().map(|f| format!("api: {f}")));
    let (api_ready, api_desired) = (api_rollout.ready, api_rollout.desired);
    components.push(ComponentStatus {
        name: "api".into(),
        desired_replicas: api_desired,
        ready_replicas: api_ready,
    });

    let (mut workers_ready, mut workers_desired) = (0, 0);
    for (pool, deployment) in workers {
        let minimum = c
            .workers
            .iter()
            .find(|w| &w.name == pool)
            .map_or(0, |w| w.component.desired);
        let r = rollout::deployment(deployment.get(), minimum);
        all_ready &= r.complete;
        failures.extend(r.failure.iter().map(|f| format!("worker-{pool}: {f}")));
        let (ready, desired) = (r.ready, r.desired);
        workers_ready += ready;
        workers_desired += desired;
        components.push(ComponentStatus {
            name: format!("worker-{pool}"),
            desired_replicas: desired,
            ready_replicas: ready,
        });
    }

    let qdrant_text = match (&c.qdrant, qdrant) {
        (QdrantMode::Managed(q), Some(sts)) => {
            let r = rollout::statefulset(sts.get(), q.replicas);
            all_ready &= r.complete;
            let ready = r.ready;
            components.push(ComponentStatus {
                name: "qdrant".into(),
                desired_replicas: q.replicas,
                ready_replicas: ready,
            });
            format!("{ready}/{}", q.replicas)
        }
        (QdrantMode::External { .. }, _) => "external".into(),
        _ => "embedded".into(),
    };

    // A referenced ModelPool that is not Ready is either warming up (pulling or loading its
    // model: progress) or degraded by its own account (a fault).
    let (mut degraded_pools, mut warming_pools) = (Vec::new(), Vec::new());
    for p in pools {
        let conditions = p.status.as_ref().map(|s| &s.conditions[..]).unwrap_or(&[]);
        let name = p.metadata.name.clone().unwrap_or_default();
        if crate::conditions::is_true(conditions, "Degraded") {
            degraded_pools.push(name);
        } else if !crate::conditions::is_true(conditions, "Ready") {
            warming_pools.push(name);
        }
    }
    // The most specific cause first: a stuck rollout or crash loop names what to look at.
    let degraded = if !failures.is_empty() {
        Some(("RolloutFailed".to_owned(), failures.join("; ")))
    } else if !crash_loops.is_empty() {
        Some((
            "CrashLoopBackOff".to_owned(),
            format!("pods crash-looping: {}", crash_loops.join(", ")),
        ))
    } else {
        (!degraded_pools.is_empty()).then(|| {
            (
                "ModelPoolDegraded".to_owned(),
                format!(
                    "referenced ModelPools degraded: {}",
                    degraded_pools.join(", ")
                ),
            )
        })
    };
    let progress = (all_ready && !warming_pools.is_empty()).then(|| {
        (
            "ModelPoolWarming".to_owned(),
            format!(
                "referenced ModelPools not ready yet: {}",
                warming_pools.join(", ")
            ),
        )
    });
    let summary = if all_ready {
        (
            "AllComponentsReady".to_owned(),
            "every component has its desired ready replicas".to_owned(),
        )
    } else {
        (
            "ComponentsNotReady".to_owned(),
            "waiting for components to become ready".to_owned(),
        )
    };
    let health = Health {
        ready: all_ready,
        progressing: !all_ready || progress.is_some(),
        progress,
        degraded,
        summary,
    };
    RagClusterStatus {
        observed_generation: generation,
        conditions: conditions(&health, generation, &previous.conditions),
        api: Some(format!("{api_ready}/{api_desired}")),
        workers: Some(format!("{workers_ready}/{workers_desired}")),
        qdrant: Some(qdrant_text),
        endpoint: Some(c.endpoint()),
        version: Some(c.version.clone()),
        admin_key_secret: Some(c.admin_key.name.clone()),
        components,
        autoscaling: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag_cluster::build::{build, test_support::validated};
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    fn with_status(mut d: Deployment, ready: i32) -> Applied<Deployment> {
        d.metadata.generation = Some(1);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(ready),
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            updated_replicas: Some(ready),
            ..DeploymentStatus::default()
        });
        Applied::from_server(d)
    }

    #[test]
    fn ready_only_when_every_deployment_is_ready() {
        let c = validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: x}\nspec: {api: {replicas: 2}, workers: [{name: w, queues: [documents], replicas: 1}], redis: {urlSecretRef: {name: r, key: url}}}\n",
        );
        let objects = build(&c);
        let applied = |api_ready, worker_ready| AppliedWorkloads {
            api: with_status(objects.api_deployment.clone(), api_ready),
            workers: vec![(
                "w".into(),
                with_status(objects.workers[0].clone(), worker_ready),
            )],
            qdrant: None,
        };
        let s = compute(
            &c,
            &applied(2, 0),
            Some(1),
            &[],
            &[],
            &RagClusterStatus::default(),
        );
        assert_eq!(s.api.as_deref(), Some("2/2"));
        assert_eq!(s.workers.as_deref(), Some("0/1"));
        assert!(!crate::conditions::is_true(&s.conditions, "Ready"));
        assert!(crate::conditions::is_true(&s.conditions, "Progressing"));
        let s = compute(&c, &applied(2, 1), Some(1), &[], &[], &s);
        assert!(crate::conditions::is_true(&s.conditions, "Ready"));
        assert_eq!(s.endpoint.as_deref(), Some("http://x-api.ns.svc:8080"));
        assert_eq!(s.qdrant.as_deref(), Some("embedded"));
        assert!(s
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(1)));
    }

    #[test]
    fn a_warming_model_pool_is_progress_and_a_degraded_one_a_fault() {
        let c = validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: x}\nspec: {api: {replicas: 1}}\n",
        );
        let applied = AppliedWorkloads {
            api: with_status(build(&c).api_deployment, 1),
            workers: vec![],
            qdrant: None,
        };
        let pool = |name: &str, ready: &str, degraded: &str| -> ModelPool {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "ragplane.dev/v1alpha1", "kind": "ModelPool",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"kind": "ollama", "model": "m"},
                "status": {"conditions": [
                    {"type": "Ready", "status": ready, "reason": "R", "message": "",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "Degraded", "status": degraded, "reason": "D", "message": "",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
            }))
            .unwrap()
        };
        let condition = |s: &RagClusterStatus, t: &str| {
            let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
            (c.status.clone(), c.reason.clone())
        };
        let (warming, broken, serving) = (
            pool("llm", "False", "False"),
            pool("emb", "False", "True"),
            pool("llm", "True", "False"),
        );
        let none = RagClusterStatus::default();
        let s = compute(&c, &applied, Some(1), &[&warming], &[], &none);
        assert_eq!(
            condition(&s, "Progressing"),
            ("True".into(), "ModelPoolWarming".into())
        );
        assert_eq!(condition(&s, "Degraded").0, "False");
        let s = compute(&c, &applied, Some(1), &[&warming, &broken], &[], &none);
        assert_eq!(
            condition(&s, "Degraded"),
            ("True".into(), "ModelPoolDegraded".into())
        );
        let s = compute(&c, &applied, Some(1), &[&serving], &[], &none);
        assert_eq!(condition(&s, "Progressing").0, "False");
        assert_eq!(condition(&s, "Degraded").0, "False");
        assert_eq!(condition(&s, "Ready").0, "True");
    }

    #[test]
    fn a_status_from_an_older_generation_is_not_ready() {
        let c = validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: x}\nspec: {api: {replicas: 1}}\n",
        );
        let mut d = with_status(build(&c).api_deployment, 1).get().clone();
        d.metadata.generation = Some(2);
        let applied = AppliedWorkloads {
            api: Applied::from_server(d),
            workers: vec![],
            qdrant: None,
        };
        let s = compute(
            &c,
            &applied,
            Some(3),
            &[],
            &[],
            &RagClusterStatus::default(),
        );
        assert!(!crate::conditions::is_true(&s.conditions, "Ready"));
    }

    #[test]
    fn an_autoscaled_component_wants_the_autoscalers_target_and_failures_degrade() {
        let c = validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: x}\nspec: {api: {autoscaling: {minReplicas: 1, maxReplicas: 1}}}\n",
        );
        // The autoscaler's target is what the stored Deployment holds, not the minimum.
        let mut d = with_status(build(&c).api_deployment, 1).get().clone();
        d.spec.replicas = Some(3);
        let applied = AppliedWorkloads {
            api: Applied::from_server(d.clone()),
            workers: vec![],
            qdrant: None,
        };
        let s = compute(
            &c,
            &applied,
            Some(1),
            &[],
            &[],
            &RagClusterStatus::default(),
        );
        assert_eq!(s.api.as_deref(), Some("1/3"));
        assert_eq!(s.components[0].desired_replicas, 3);
        assert!(!crate::conditions::is_true(&s.conditions, "Ready"));
        assert!(!crate::conditions::is_true(&s.conditions, "Degraded"));
        // Crash loops and stuck rollouts are Degraded, with what to look at.
        let looping = ["x-api-1 (ragplane: exit 1 Error, 4 restarts)".to_owned()];
        let s = compute(&c, &applied, Some(1), &[], &looping, &s);
        let degraded = s.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "CrashLoopBackOff")
        );
        assert!(degraded.message.contains("x-api-1"), "{}", degraded.message);
        d.status.as_mut().unwrap().conditions =
            Some(vec![k8s_openapi::api::apps::v1::DeploymentCondition {
                type_: Some("Progressing".into()),
                status: Some("False".into()),
                reason: Some("ProgressDeadlineExceeded".into()),
                message: Some("ReplicaSet \"x-api-1\" has timed out progressing.".into()),
                ..Default::default()
            }]);
        let stuck = AppliedWorkloads {
            api: Applied::from_server(d),
            workers: vec![],
            qdrant: None,
        };
        let s = compute(&c, &stuck, Some(1), &[], &[], &s);
        let degraded = s.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
        assert_eq!(degraded.reason, "RolloutFailed");
        assert!(
            degraded
                .message
                .starts_with("api: ProgressDeadlineExceeded"),
            "{}",
            degraded.message
        );
    }
}
