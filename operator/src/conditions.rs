//! The `Ready`, `Progressing` and `Degraded` conditions every kind reports.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// What a reconcile found, before it becomes conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Everything asked for is serving.
    pub ready: bool,
    /// Something is still rolling out or being created.
    pub progressing: bool,
    /// Why it is progressing, when that is more than its own children rolling out:
    /// `(reason, message)`.
    pub progress: Option<(String, String)>,
    /// Why the resource is degraded, if it is: `(reason, message)`.
    pub degraded: Option<(String, String)>,
    /// Short explanation of the Ready condition: `(reason, message)`.
    pub summary: (String, String),
}

impl Health {
    /// A failed reconcile: not Ready and Degraded, with the error as reason and message;
    /// Progressing while a retry may still fix it.
    pub fn failed(error: &crate::error::Error, progressing: bool) -> Self {
        let why = (error.metric_label().to_string(), error.to_string());
        Self {
            ready: false,
            progressing,
            progress: None,
            degraded: Some(why.clone()),
            summary: why,
        }
    }
}

/// Conditions for `health` at `generation`. A condition whose status did not change keeps its
/// `lastTransitionTime` from `previous`, so the time says when it last flipped.
pub fn conditions(
    health: &Health,
    generation: Option<i64>,
    previous: &[Condition],
) -> Vec<Condition> {
    let (ready_reason, ready_message) = health.summary.clone();
    let (degraded_reason, degraded_message) = health
        .degraded
        .clone()
        .unwrap_or_else(|| ("AsExpected".into(), "nothing is degraded".into()));
    let (progress_reason, progress_message) = if health.progressing {
        health.progress.clone().unwrap_or_else(|| {
            (
                "RollingOut".to_owned(),
                "children are being created or updated".to_owned(),
            )
        })
    } else {
        (
            "Stable".to_owned(),
            "every child matches the spec".to_owned(),
        )
    };
    vec![
        condition(
            "Ready",
            health.ready,
            ready_reason,
            ready_message,
            generation,
            previous,
        ),
        condition(
            "Progressing",
            health.progressing,
            progress_reason,
            progress_message,
            generation,
            previous,
        ),
        condition(
            "Degraded",
            health.degraded.is_some(),
            degraded_reason,
            degraded_message,
            generation,
            previous,
        ),
    ]
}

fn condition(
    type_: &str,
    status: bool,
    reason: String,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
) -> Condition {
    let status = if status { "True" } else { "False" }.to_owned();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(now, |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status,
        reason,
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Whether `conditions` holds `type_` with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(ready: bool) -> Health {
        Health {
            ready,
            progressing: !ready,
            progress: None,
            degraded: None,
            summary: ("R".into(), "m".into()),
        }
    }

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let first = conditions(&health(false), Some(1), &[]);
        let mut old = first.clone();
        let past = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        for c in &mut old {
            c.last_transition_time = past.clone();
        }
        let second = conditions(&health(false), Some(2), &old);
        assert!(second.iter().all(|c| c.last_transition_time == past));
        assert!(second.iter().all(|c| c.observed_generation == Some(2)));
        let third = conditions(&health(true), Some(2), &old);
        let ready = third.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert_ne!(ready.last_transition_time, past);
        assert!(is_true(&third, "Ready") && !is_true(&third, "Progressing"));
    }
}
