//! How far the Deployments and StatefulSets the operator applied have rolled out, read from
//! their status as the API server returned it, and which of their pods crash-loop. Shared by the
//! RagCluster and ModelPool status.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;

/// How soon to look again: pods that crash-loop or roll out change no workload status the
/// controller watches, so a resource that is not Ready is re-checked often.
pub fn recheck_after(ready: bool) -> std::time::Duration {
    std::time::Duration::from_secs(if ready { 300 } else { 15 })
}

/// A workload's rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    /// Replicas in force: the count the server holds, which for an autoscaled component is the
    /// autoscaler's current target (`fallback` only before the server has one).
    pub desired: i32,
    /// Ready replicas.
    pub ready: i32,
    /// The status describes the current spec, no replica of an older revision is left, and
    /// `desired` replicas are updated, available and ready.
    pub complete: bool,
    /// Why the rollout cannot finish, when the controller says so (`ProgressDeadlineExceeded`,
    /// a `ReplicaFailure`).
    pub failure: Option<String>,
}

/// The rollout of Deployment `d`.
pub fn deployment(d: &Deployment, fallback: i32) -> Rollout {
    let desired = d.spec.replicas.unwrap_or(fallback);
    let status = d.status.clone().unwrap_or_default();
    let current = status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    // Mid-rollout, pods of the old ReplicaSet still count in `replicas`.
    let old_left = status.replicas.unwrap_or(0) > updated;
    let complete = current
        && !old_left
        && updated >= desired
        && status.available_replicas.unwrap_or(0) >= desired
        && ready >= desired;
    let failure = status.conditions.iter().flatten().find_map(|c| {
        let (kind, status) = (c.type_.as_deref(), c.status.as_deref());
        let stuck = kind == Some("Progressing")
            && status == Some("False")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded");
        let refused = kind == Some("ReplicaFailure") && status == Some("True");
        (stuck || refused).then(|| {
            format!(
                "{}: {}",
                c.reason.as_deref().or(kind).unwrap_or_default(),
                c.message.as_deref().unwrap_or_default()
            )
        })
    });
    Rollout {
        desired,
        ready,
        complete,
        failure,
    }
}

/// The rollout of StatefulSet `s`.
pub fn statefulset(s: &StatefulSet, fallback: i32) -> Rollout {
    let desired = s.spec.replicas.unwrap_or(fallback);
    let status = s.status.clone().unwrap_or_default();
    let current = status.observed_generation.unwrap_or(0) >= s.metadata.generation.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    // A rolling update is over when every pod runs the update revision.
    let rolled = status.update_revision.is_none()
        || status.current_revision == status.update_revision
        || status.updated_replicas.unwrap_or(0) >= desired;
    Rollout {
        desired,
        ready,
        complete: current && rolled && ready >= desired,
        failure: None,
    }
}

/// The pods labelled `selector` in `namespace`, read for status. A failed list is logged and
/// counts as none: status is best effort, the reconcile goes on.
pub async fn pods(client: &kube::Client, namespace: &str, selector: &str) -> Vec<Pod> {
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    match pods
        .list(&kube::api::ListParams::default().labels(selector))
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            tracing::warn!(namespace, selector, error = %e, "cannot list pods for status");
            Vec::new()
        }
    }
}

/// The crash-looping pods among those labelled `selector` in `namespace` ([`pods`]).
pub async fn crash_looping_pods(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
) -> Vec<String> {
    crash_looping(&pods(client, namespace, selector).await)
}

/// Pods with a container in `CrashLoopBackOff`, as `pod (container: last message)`.
pub fn crash_looping(pods: &[Pod]) -> Vec<String> {
    let mut out = Vec::new();
    for pod in pods {
        let statuses = pod.status.as_ref().into_iter().flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        });
        for c in statuses {
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            if waiting.and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff") {
                let last = c
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| {
                        format!(
                            "exit {} {}",
                            t.exit_code,
                            t.reason.as_deref().unwrap_or_default()
                        )
                    })
                    .unwrap_or_else(|| "restarting".into());
                out.push(format!(
                    "{} ({}: {}, {} restarts)",
                    pod.metadata.name.as_deref().unwrap_or("?"),
                    c.name,
                    last.trim(),
                    c.restart_count
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{
        DeploymentCondition, DeploymentSpec, DeploymentStatus, StatefulSetSpec, StatefulSetStatus,
    };
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
    };

    use super::*;

    fn deploy(replicas: i32, status: DeploymentStatus) -> Deployment {
        let mut d = Deployment {
            spec: DeploymentSpec {
                replicas: Some(replicas),
                ..DeploymentSpec::default()
            },
            status: Some(status),
            ..Deployment::default()
        };
        d.metadata.generation = Some(2);
        d
    }

    fn settled(n: i32) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(n),
            updated_replicas: Some(n),
            available_replicas: Some(n),
            ready_replicas: Some(n),
            ..DeploymentStatus::default()
        }
    }

    #[test]
    fn a_deployment_is_complete_only_when_its_rollout_is_over() {
        assert!(deployment(&deploy(3, settled(3)), 1).complete);
        // Mid-rollout: three new pods ready, one old pod still running.
        let rolling = DeploymentStatus {
            replicas: Some(4),
            ..settled(3)
        };
        assert!(!deployment(&deploy(3, rolling), 1).complete);
        // A status of the previous generation says nothing about this one.
        let stale = DeploymentStatus {
            observed_generation: Some(1),
            ..settled(3)
        };
        assert!(!deployment(&deploy(3, stale), 1).complete);
    }

    #[test]
    fn desired_is_the_replica_count_in_force() {
        // The autoscaler raised an autoscaled component from its minimum (1) to 5.
        let r = deployment(&deploy(5, settled(3)), 1);
        assert_eq!((r.desired, r.ready, r.complete), (5, 3, false));
        let unset = Deployment::default();
        assert_eq!(deployment(&unset, 2).desired, 2);
    }

    #[test]
    fn a_stuck_rollout_is_a_failure_with_the_controllers_reason() {
        let stuck = DeploymentStatus {
            conditions: Some(vec![DeploymentCondition {
                type_: Some("Progressing".into()),
                status: Some("False".into()),
                reason: Some("ProgressDeadlineExceeded".into()),
                message: Some("ReplicaSet \"a-1\" has timed out progressing.".into()),
                ..DeploymentCondition::default()
            }]),
            ..settled(0)
        };
        let r = deployment(&deploy(1, stuck), 1);
        assert!(r
            .failure
            .as_deref()
            .is_some_and(|f| f.starts_with("ProgressDeadlineExceeded: ReplicaSet")));
        assert_eq!(deployment(&deploy(1, settled(1)), 1).failure, None);
    }

    #[test]
    fn a_statefulset_mid_update_is_not_complete() {
        let sts = |current: &str, updated: i32| StatefulSet {
            spec: StatefulSetSpec {
                replicas: Some(3),
                ..StatefulSetSpec::default()
            },
            status: Some(StatefulSetStatus {
                observed_generation: Some(0),
                ready_replicas: Some(3),
                replicas: 3,
                current_revision: Some(current.into()),
                update_revision: Some("r2".into()),
                updated_replicas: Some(updated),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        };
        assert!(!statefulset(&sts("r1", 1), 1).complete);
        assert!(statefulset(&sts("r2", 3), 1).complete);
    }

    #[test]
    fn crash_looping_containers_are_named_with_their_last_exit() {
        let pod = |name: &str, reason: &str| Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "ragplane".into(),
                    restart_count: 4,
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(reason.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    last_state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 1,
                            reason: Some("Error".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = crash_looping(&[
            pod("a-1", "CrashLoopBackOff"),
            pod("a-2", "ContainerCreating"),
        ]);
        assert_eq!(out, ["a-1 (ragplane: exit 1 Error, 4 restarts)"]);
    }
}
