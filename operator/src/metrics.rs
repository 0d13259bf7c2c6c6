//! Prometheus metrics of the operator: reconciles, their duration and their errors by kind,
//! applies that changed something, the leader Lease and the autoscaler's decisions.

use ragplane_telemetry::metrics::{
    GaugeVec, Histogram, HistogramTimer, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Registry,
};

/// The operator's metrics, registered in their own registry. Clones share the metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    qdrant_writes: IntCounterVec,
    applies_changed: IntCounterVec,
    leader: IntGauge,
    autoscaler: AutoscalerMetrics,
}

/// Metrics about the autoscaler's decisions, labelled by namespace, resource (`Kind/name`) and
/// component.
#[derive(Clone)]
pub struct AutoscalerMetrics {
    /// Replicas the last decision asked for.
    pub desired: IntGaugeVec,
    /// Replicas read before the last decision.
    pub current: IntGaugeVec,
    /// The last value of each rule (with a `rule` label).
    pub value: GaugeVec,
    /// Decisions, by reason (`Rules`, `Inactive`, `Holding`, `Fallback`).
    pub decisions: IntCounterVec,
    /// Replica counts written, by direction (`up`, `down`).
    pub scales: IntCounterVec,
    /// Polls with at least one failed rule.
    pub poll_errors: IntCounterVec,
    /// 1 while the fallback decides.
    pub fallback: IntGaugeVec,
    /// Time from the start of a poll to its decision written.
    pub poll_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

const COMPONENT: &[&str] = &["namespace", "resource", "component"];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let r = Registry::default();
        let reconciles = IntCounterVec::new(
            &r,
            "ragplane_operator_reconciles_total",
            "Reconciles started, by kind",
            &["kind"],
        );
        let failures = IntCounterVec::new(
            &r,
            "ragplane_operator_reconcile_errors_total",
            "Reconciles that failed, by kind and error",
            &["kind", "error"],
        );
        // Each observation made while traces are on names its reconcile's trace as exemplar.
        let duration = HistogramVec::new(
            &r,
            "ragplane_operator_reconcile_duration_seconds",
            "Time one reconcile took, by kind",
            vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            &["kind"],
        );
        let qdrant_writes = IntCounterVec::new(
            &r,
            "ragplane_operator_qdrant_writes_total",
            "Writes the Collection reconciler sent to Qdrant (create, update, index, replicate); \
             flat while collections are as specified",
            &["namespace", "collection"],
        );
        let applies_changed = IntCounterVec::new(
            &r,
            "ragplane_operator_applies_changed_total",
            "Server-side applies that changed their object (not no-ops), by kind",
            &["kind"],
        );
        let leader = r.gauge(
            "ragplane_operator_leader",
            "Whether this replica holds the leader Lease",
        );
        let autoscaler = AutoscalerMetrics {
            desired: IntGaugeVec::new(
                &r,
                "ragplane_operator_autoscaler_desired_replicas",
                "Replicas the autoscaler's last decision asked for",
                COMPONENT,
            ),
            current: IntGaugeVec::new(
                &r,
                "ragplane_operator_autoscaler_current_replicas",
                "Replicas read from the scale subresource before the last decision",
                COMPONENT,
            ),
            value: GaugeVec::new(
                &r,
                "ragplane_operator_autoscaler_rule_value",
                "The last value of each autoscaling rule",
                &["namespace", "resource", "component", "rule"],
            ),
            decisions: IntCounterVec::new(
                &r,
                "ragplane_operator_autoscaler_decisions_total",
                "Autoscaling decisions, by reason",
                &["namespace", "resource", "component", "reason"],
            ),
            scales: IntCounterVec::new(
                &r,
                "ragplane_operator_autoscaler_scale_writes_total",
                "Replica counts written through the scale subresource, by direction",
                &["namespace", "resource", "component", "direction"],
            ),
            poll_errors: IntCounterVec::new(
                &r,
                "ragplane_operator_autoscaler_poll_errors_total",
                "Polls in which at least one rule had no usable value",
                COMPONENT,
            ),
            fallback: IntGaugeVec::new(
                &r,
                "ragplane_operator_autoscaler_fallback_active",
                "1 while the autoscaling fallback decides a component's replicas",
                COMPONENT,
            ),
            poll_duration: Histogram::new(
                &r,
                "ragplane_operator_autoscaler_poll_duration_seconds",
                "Time from the start of a poll to its replica count written",
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
            ),
        };
        // Every kind and error from the start, at zero: alert rules and dashboards find the
        // series before the first failure, and a rate over them reads 0, not "no data".
        for kind in ["RagCluster", "ModelPool", "Collection"] {
            reconciles.with_label_values(&[kind]);
            for error in crate::error::Error::METRIC_LABELS {
                failures.with_label_values(&[kind, error]);
            }
        }
        Self {
            registry: r,
            reconciles,
            failures,
            duration,
            qdrant_writes,
            applies_changed,
            leader,
            autoscaler,
        }
    }

    /// Counts `n` writes sent to Qdrant for a Collection.
    pub fn qdrant_writes(&self, namespace: &str, collection: &str, n: usize) {
        self.qdrant_writes
            .with_label_values(&[namespace, collection])
            .inc_by(n as u64);
    }

    /// Counts a server-side apply of `kind` that changed its object.
    pub fn apply_changed(&self, kind: &str) {
        self.applies_changed.with_label_values(&[kind]).inc();
    }

    /// The autoscaler's metrics.
    pub fn autoscaler(&self) -> &AutoscalerMetrics {
        &self.autoscaler
    }

    /// Counts a reconcile of `kind` and returns a timer that records its duration when dropped
    /// (inside the reconcile's span, whose trace becomes the bucket's exemplar).
    pub fn reconcile(&self, kind: &str) -> HistogramTimer {
        self.reconciles.with_label_values(&[kind]).inc();
        self.duration.with_label_values(&[kind]).start_timer()
    }

    /// Counts a failed reconcile.
    pub fn failure(&self, kind: &str, error: &str) {
        self.failures.with_label_values(&[kind, error]).inc();
    }

    /// Sets whether this replica holds the leader Lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The OpenMetrics exposition of every metric, served as
    /// [`ragplane_telemetry::metrics::CONTENT_TYPE`].
    pub fn render(&self) -> String {
        self.registry.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reconciles_and_errors() {
        let m = Metrics::new();
        drop(m.reconcile("RagCluster"));
        m.failure("RagCluster", "InvalidSpec");
        let text = m.render();
        assert!(
            text.contains("ragplane_operator_reconciles_total{kind=\"RagCluster\"} 1"),
            "{text}"
        );
        assert!(text.contains("error=\"InvalidSpec\""), "{text}");
        assert!(text
            .contains("ragplane_operator_reconcile_duration_seconds_count{kind=\"RagCluster\"} 1"));
    }
}
