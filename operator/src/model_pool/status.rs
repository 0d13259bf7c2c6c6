//! ModelPool status, computed from the workload as the API server returned it after applying.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};

use super::validate::{service_url, ValidatedPool};
use crate::apply::Applied;
use crate::conditions::{conditions, Health};
use crate::crd::model_pool::ModelPoolStatus;
use crate::rollout;

/// The pool's workload after the apply step.
// Built once per reconcile and consumed at once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum AppliedWorkload {
    /// Ollama.
    StatefulSet(Applied<StatefulSet>),
    /// Other servers.
    Deployment(Applied<Deployment>),
}

/// The status for `p` given its applied workload and its crash-looping pods. Loading a model
/// takes minutes: a pool warming up is Progressing, and Degraded only when its rollout failed
/// or a server crash-loops.
pub fn compute(
    p: &ValidatedPool,
    applied: &AppliedWorkload,
    generation: Option<i64>,
    crash_loops: &[String],
    previous: &ModelPoolStatus,
) -> ModelPoolStatus {
    let r = match applied {
        AppliedWorkload::StatefulSet(s) => rollout::statefulset(s.get(), p.desired),
        AppliedWorkload::Deployment(d) => rollout::deployment(d.get(), p.desired),
    };
    let (ready, desired) = (r.ready, r.desired);
    let is_ready = r.complete;
    let summary = if is_ready {
        (
            "ModelLoaded".to_owned(),
            format!("{ready} replicas serve {}", p.model),
        )
    } else {
        (
            "Warming".to_owned(),
            format!("{ready}/{desired} replicas have {} loaded", p.model),
        )
    };
    let degraded = match (&r.failure, crash_loops) {
        (Some(f), _) => Some(("RolloutFailed".to_owned(), f.clone())),
        (None, []) => None,
        (None, looping) => Some((
            "CrashLoopBackOff".to_owned(),
            format!("model servers crash-looping: {}", looping.join(", ")),
        )),
    };
    let health = Health {
        ready: is_ready,
        progressing: !is_ready,
        progress: None,
        degraded,
        summary,
    };
    ModelPoolStatus {
        observed_generation: generation,
        conditions: conditions(&health, generation, &previous.conditions),
        replicas: Some(format!("{ready}/{desired}")),
        ready_replicas: ready,
        ready_endpoints: if ready > 0 {
            vec![service_url(&p.name, &p.namespace, p.kind)]
        } else {
            Vec::new()
        },
        autoscaling: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_pool::build::{build, Workload};
    use crate::model_pool::validate::validated;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;

    #[test]
    fn endpoints_appear_once_a_replica_is_ready() {
        let p = validated("apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: llm}\nspec: {kind: ollama, model: m, replicas: 2}\n");
        let Workload::StatefulSet(mut sts) = build(&p).workload else {
            panic!("ollama runs as a StatefulSet")
        };
        sts.metadata.generation = Some(1);
        let with_ready = |sts: &StatefulSet, n| {
            let mut s = sts.clone();
            s.status = Some(StatefulSetStatus {
                observed_generation: Some(1),
                ready_replicas: Some(n),
                replicas: 2,
                ..StatefulSetStatus::default()
            });
            AppliedWorkload::StatefulSet(Applied::from_server(s))
        };
        let s = compute(
            &p,
            &with_ready(&sts, 0),
            Some(1),
            &[],
            &ModelPoolStatus::default(),
        );
        assert!(s.ready_endpoints.is_empty());
        // Warming up is progress, not a fault.
        assert!(crate::conditions::is_true(&s.conditions, "Progressing"));
        assert!(!crate::conditions::is_true(&s.conditions, "Degraded"));
        let looping = ["llm-0 (ollama: exit 1 Error, 3 restarts)".to_owned()];
        let s = compute(&p, &with_ready(&sts, 0), Some(1), &looping, &s);
        assert!(crate::conditions::is_true(&s.conditions, "Degraded"));
        let s = compute(&p, &with_ready(&sts, 1), Some(1), &[], &s);
        assert!(!crate::conditions::is_true(&s.conditions, "Degraded"));
        assert_eq!(s.ready_endpoints, ["http://llm.ns.svc:11434"]);
        assert!(!crate::conditions::is_true(&s.conditions, "Ready"));
        let s = compute(&p, &with_ready(&sts, 2), Some(1), &[], &s);
        assert!(crate::conditions::is_true(&s.conditions, "Ready"));
        assert_eq!(s.replicas.as_deref(), Some("2/2"));
    }
}
