//! Autoscaling: who owns each component's replica count, the pure policy, the Prometheus polling
//! loop that writes the scale subresource, and the HorizontalPodAutoscaler for CPU/memory targets.
//!
//! Exactly one writer owns a component's replicas: the reconciler (fixed `replicas`), the loop in
//! [`runner`] (Prometheus rules), or a generated HorizontalPodAutoscaler (CPU/memory targets).
//! Builders leave `replicas` out of the applied Deployment whenever the reconciler is not the
//! owner, and [`handover`] keeps server-side apply from resetting the count on the way.

pub mod handover;
pub mod hpa;
pub mod policy;
pub mod presets;
pub mod runner;

use std::time::Duration;

use crate::crd::common::{Autoscaling, FallbackMode};

use self::policy::{FallbackAction, Policy, RulePolicy, Target};
use self::presets::Scope;

/// Field manager of the autoscaler's writes (scale subresource, `status.autoscaling`), apart
/// from the reconciler's, so neither apply removes what the other owns.
pub const FIELD_MANAGER: &str = "ragplane-autoscaler";
/// Poll interval when a spec sets none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Scale-down stabilization window when a spec sets none (the HPA's default).
pub const DEFAULT_SCALE_DOWN_WINDOW: Duration = Duration::from_secs(300);
/// Cooldown before scaling to zero when a spec sets none.
pub const DEFAULT_ZERO_COOLDOWN: Duration = Duration::from_secs(300);

/// Who writes a component's replicas.
#[derive(Clone, Debug, PartialEq)]
pub enum Scaling {
    /// The reconciler, with this count.
    Fixed(i32),
    /// The Prometheus loop, with this policy.
    Rules(Box<Policy>),
    /// A generated HorizontalPodAutoscaler.
    Hpa(HpaTargets),
    /// Nobody moves it; the reconciler only raises it to `minReplicas` (autoscaling bounds with
    /// no rules and no resource targets).
    Bounds {
        /// Fewest replicas.
        min: i32,
        /// Most replicas.
        max: i32,
    },
}

impl Scaling {
    /// The count the reconciler writes; `None` when another writer owns it.
    pub fn fixed(&self) -> Option<i32> {
        match self {
            Self::Fixed(n) => Some(*n),
            Self::Rules(_) | Self::Hpa(_) | Self::Bounds { .. } => None,
        }
    }

    /// Replicas expected for readiness.
    pub fn desired(&self) -> i32 {
        match self {
            Self::Fixed(n) => *n,
            Self::Rules(p) => p.min,
            Self::Hpa(h) => h.min,
            Self::Bounds { min, .. } => *min,
        }
    }
}

/// What a generated HorizontalPodAutoscaler holds.
#[derive(Clone, Debug, PartialEq)]
pub struct HpaTargets {
    /// Fewest replicas (at least 1).
    pub min: i32,
    /// Most replicas.
    pub max: i32,
    /// Average CPU utilisation in percent.
    pub cpu: Option<i32>,
    /// Average memory utilisation in percent.
    pub memory: Option<i32>,
    /// Scale-up window.
    pub scale_up_window: Option<i32>,
    /// Scale-down window.
    pub scale_down_window: Option<i32>,
    /// Most pods added per 15 s.
    pub scale_up_step: Option<i32>,
    /// Most pods removed per 15 s.
    pub scale_down_step: Option<i32>,
}

/// Who owns the replicas of a component with `replicas` and `autoscaling`, presets expanded for
/// `scope`; the error names the field below `path`.
pub fn scaling(
    replicas: i32,
    autoscaling: Option<&Autoscaling>,
    scope: Scope<'_>,
    path: &str,
) -> Result<Scaling, (String, String)> {
    let Some(a) = autoscaling else {
        return Ok(Scaling::Fixed(replicas));
    };
    let err = |field: String, message: String| Err((format!("{path}.autoscaling{field}"), message));
    if a.min_replicas > a.max_replicas {
        return err(
            String::new(),
            "minReplicas must be less than or equal to maxReplicas".into(),
        );
    }
    let behavior = a.behavior.clone().unwrap_or_default();
    let up = behavior.scale_up.clone().unwrap_or_default();
    let down = behavior.scale_down.clone().unwrap_or_default();
    if a.has_rules() && a.has_resource_targets() {
        return err(
            String::new(),
            "rules cannot be combined with cpuUtilization or memoryUtilization".into(),
        );
    }
    if a.has_resource_targets() {
        if a.min_replicas < 1 {
            return err(
                ".minReplicas".into(),
                "must be at least 1 with cpuUtilization or memoryUtilization".into(),
            );
        }
        return Ok(Scaling::Hpa(HpaTargets {
            min: a.min_replicas,
            max: a.max_replicas,
            cpu: a.cpu_utilization,
            memory: a.memory_utilization,
            scale_up_window: up.stabilization_window_seconds,
            scale_down_window: down.stabilization_window_seconds,
            scale_up_step: up.max_step,
            scale_down_step: down.max_step,
        }));
    }
    if !a.has_rules() {
        return Ok(Scaling::Bounds {
            min: a.min_replicas,
            max: a.max_replicas,
        });
    }
    let mut rules = Vec::with_capacity(a.rules.len());
    for (i, r) in a.rules.iter().enumerate() {
        let at = format!(".rules[{i}]");
        if a.rules[..i].iter().any(|o| o.name == r.name) {
            return err(at, format!("duplicate rule name {:?}", r.name));
        }
        let query = match (&r.query, r.preset) {
            (Some(q), None) if !q.trim().is_empty() => q.clone(),
            (None, Some(p)) => {
                let q = presets::expand(p, scope)
                    .map_err(|m| (format!("{path}.autoscaling{at}.preset"), m))?;
                let value = presets::wants_target_value(p);
                if value && r.target_value.is_none() {
                    return err(
                        at,
                        format!("preset {} needs targetValue", presets::preset_name(p)),
                    );
                }
                if !value && r.target_per_replica.is_none() {
                    return err(
                        at,
                        format!("preset {} needs targetPerReplica", presets::preset_name(p)),
                    );
                }
                q
            }
            _ => return err(at, "exactly one of query or preset must be set".into()),
        };
        let target = match (r.target_per_replica, r.target_value) {
            (Some(t), None) if t > 0.0 && t.is_finite() => Target::PerReplica(t),
            (None, Some(t)) if t > 0.0 && t.is_finite() => Target::Value(t),
            _ => {
                return err(
                    at,
                    "exactly one of targetPerReplica or targetValue must be set, above 0".into(),
                )
            }
        };
        rules.push(RulePolicy {
            name: r.name.clone(),
            query,
            target,
            activation: r.activation_threshold.unwrap_or(0.0).max(0.0),
            empty_is_zero: r.empty_result == crate::crd::common::EmptyResult::Zero,
        });
    }
    let fallback = a.fallback.clone().unwrap_or_default();
    let action = match fallback.on_failure {
        FallbackMode::KeepCurrent => FallbackAction::KeepCurrent,
        FallbackMode::Static => match fallback.replicas {
            Some(n) if (a.min_replicas..=a.max_replicas).contains(&n) => FallbackAction::Static(n),
            _ => {
                return err(
                    ".fallback.replicas".into(),
                    "must be set, within minReplicas and maxReplicas, when onFailure is static"
                        .into(),
                )
            }
        },
    };
    let secs = |s: Option<i32>, default: Duration| {
        s.map_or(default, |s| {
            Duration::from_secs(u64::try_from(s).unwrap_or(0))
        })
    };
    Ok(Scaling::Rules(Box::new(Policy {
        min: a.min_replicas,
        max: a.max_replicas,
        rules,
        interval: secs(a.polling_interval_seconds, DEFAULT_INTERVAL).max(Duration::from_secs(1)),
        scale_up_window: secs(up.stabilization_window_seconds, Duration::ZERO),
        scale_down_window: secs(down.stabilization_window_seconds, DEFAULT_SCALE_DOWN_WINDOW),
        scale_up_step: up.max_step,
        scale_down_step: down.max_step,
        zero_cooldown: secs(
            behavior.scale_to_zero_cooldown_seconds,
            DEFAULT_ZERO_COOLDOWN,
        ),
        failure_threshold: u32::try_from(fallback.failure_threshold.max(1)).unwrap_or(1),
        fallback: action,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Autoscaling {
        serde_yaml::from_str(yaml).expect("valid autoscaling YAML")
    }

    const API: Scope<'static> = Scope::Api {
        namespace: "ns",
        cluster: "c",
    };

    #[test]
    fn rules_get_defaults_and_expanded_presets() {
        let a = parse(
            "minReplicas: 1\nmaxReplicas: 8\nrules:\n- {name: rps, preset: requestRate, targetPerReplica: 50}\n- {name: p95, preset: latencyP95, targetValue: 0.5, emptyResult: zero}\nfallback: {onFailure: static, replicas: 3}\n",
        );
        let Scaling::Rules(p) = scaling(2, Some(&a), API, "api").unwrap() else {
            panic!("rules drive it")
        };
        assert_eq!((p.min, p.max, p.interval), (1, 8, DEFAULT_INTERVAL));
        assert_eq!(p.scale_down_window, DEFAULT_SCALE_DOWN_WINDOW);
        assert_eq!(p.failure_threshold, 3);
        assert_eq!(p.fallback, FallbackAction::Static(3));
        assert!(p.rules[0].query.contains("ragplane_http_requests_total"));
        assert_eq!(p.rules[1].target, Target::Value(0.5));
        assert!(p.rules[1].empty_is_zero && !p.rules[0].empty_is_zero);
    }

    #[test]
    fn one_writer_per_component() {
        assert_eq!(scaling(3, None, API, "api").unwrap().fixed(), Some(3));
        let hpa = parse("minReplicas: 2\nmaxReplicas: 5\ncpuUtilization: 70\n");
        let s = scaling(3, Some(&hpa), API, "api").unwrap();
        assert!(matches!(&s, Scaling::Hpa(h) if h.cpu == Some(70)));
        assert_eq!((s.fixed(), s.desired()), (None, 2));
        let both = parse("minReplicas: 1\nmaxReplicas: 5\ncpuUtilization: 70\nrules: [{name: q, query: up, targetPerReplica: 1}]\n");
        let (field, message) = scaling(1, Some(&both), API, "api").unwrap_err();
        assert_eq!(field, "api.autoscaling");
        assert!(message.contains("cannot be combined"), "{message}");
    }

    #[test]
    fn invalid_rules_name_their_field() {
        for (yaml, field, needle) in [
            ("minReplicas: 0\nmaxReplicas: 2\nrules: [{name: q, preset: queueDepth, targetPerReplica: 1}]\n", "api.autoscaling.rules[0].preset", "does not apply"),
            ("minReplicas: 0\nmaxReplicas: 2\nrules: [{name: q, preset: latencyP95, targetPerReplica: 1}]\n", "api.autoscaling.rules[0]", "needs targetValue"),
            ("minReplicas: 0\nmaxReplicas: 2\nrules: [{name: q, query: up, targetPerReplica: 0}]\n", "api.autoscaling.rules[0]", "above 0"),
            ("minReplicas: 0\nmaxReplicas: 2\nrules: [{name: q, query: up, targetPerReplica: 1}]\nfallback: {onFailure: static, replicas: 5}\n", "api.autoscaling.fallback.replicas", "within"),
        ] {
            let (f, m) = scaling(1, Some(&parse(yaml)), API, "api").unwrap_err();
            assert_eq!(f, field, "{yaml}");
            assert!(m.contains(needle), "{m}");
        }
    }
}
