//! The HorizontalPodAutoscaler generated for a component with only CPU/memory targets.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::HpaTargets;

/// An HPA named and labelled by `meta` that scales the `kind` (`Deployment` or `StatefulSet`)
/// named `target` towards `t`.
pub fn build_hpa(
    meta: ObjectMeta,
    kind: &str,
    target: &str,
    t: &HpaTargets,
) -> HorizontalPodAutoscaler {
    let resource = |name: &str, percent: i32| MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: name.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(percent),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    };
    let metrics: Vec<MetricSpec> = [("cpu", t.cpu), ("memory", t.memory)]
        .into_iter()
        .filter_map(|(name, p)| p.map(|p| resource(name, p)))
        .collect();
    let rules = |window: Option<i32>, step: Option<i32>| {
        (window.is_some() || step.is_some()).then(|| HPAScalingRules {
            stabilization_window_seconds: window,
            policies: step.map(|s| {
                vec![HPAScalingPolicy {
                    type_: "Pods".into(),
                    value: s,
                    period_seconds: 15,
                }]
            }),
            ..HPAScalingRules::default()
        })
    };
    let scale_up = rules(t.scale_up_window, t.scale_up_step);
    let scale_down = rules(t.scale_down_window, t.scale_down_step);
    HorizontalPodAutoscaler {
        metadata: meta,
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: kind.into(),
                name: target.into(),
            },
            min_replicas: Some(t.min),
            max_replicas: t.max,
            metrics: Some(metrics),
            behavior: (scale_up.is_some() || scale_down.is_some()).then_some(
                HorizontalPodAutoscalerBehavior {
                    scale_up,
                    scale_down,
                },
            ),
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_targets_become_resource_metrics() {
        let hpa = build_hpa(
            ObjectMeta {
                name: Some("x-api".into()),
                ..ObjectMeta::default()
            },
            "Deployment",
            "x-api",
            &HpaTargets {
                min: 2,
                max: 6,
                cpu: Some(70),
                memory: None,
                scale_up_window: None,
                scale_down_window: Some(120),
                scale_up_step: None,
                scale_down_step: Some(1),
            },
        );
        let spec = hpa.spec;
        assert_eq!(spec.scale_target_ref.name, "x-api");
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 6));
        let metrics = spec.metrics.unwrap();
        assert_eq!(metrics.len(), 1);
        let r = metrics[0].resource.as_ref().unwrap();
        assert_eq!(
            (r.name.as_str(), r.target.average_utilization),
            ("cpu", Some(70))
        );
        let behavior = spec.behavior.unwrap();
        assert!(behavior.scale_up.is_none());
        let down = behavior.scale_down.unwrap();
        assert_eq!(down.stabilization_window_seconds, Some(120));
        assert_eq!(down.policies.unwrap()[0].value, 1);
    }
}
