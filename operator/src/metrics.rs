//! Prometheus metrics of the operator: reconciles, their duration and their errors by kind.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The operator's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    qdrant_writes: IntCounterVec,
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

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "ragplane_operator_reconciles_total",
                "Reconciles started, by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "ragplane_operator_reconcile_errors_total",
                "Reconciles that failed, by kind and error.",
            ),
            &["kind", "error"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ragplane_operator_reconcile_duration_seconds",
                "Time one reconcile took, by kind.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["kind"],
        )
        .expect("valid metric");
        let qdrant_writes = IntCounterVec::new(
            Opts::new(
                "ragplane_operator_qdrant_writes_total",
                "Writes the Collection reconciler sent to Qdrant (create, update, index, replicate); \
                 flat while collections are as specified.",
            ),
            &["namespace", "collection"],
        )
        .expect("valid metric");
        const COMPONENT: [&str; 3] = ["namespace", "resource", "component"];
        let autoscaler = AutoscalerMetrics {
            desired: IntGaugeVec::new(
                Opts::new(
                    "ragplane_operator_autoscaler_desired_replicas",
                    "Replicas the autoscaler's last decision asked for.",
                ),
                &COMPONENT,
            )
            .expect("valid metric"),
            current: IntGaugeVec::new(
                Opts::new(
                    "ragplane_operator_autoscaler_current_replicas",
                    "Replicas read from the scale subresource before the last decision.",
                ),
                &COMPONENT,
            )
            .expect("valid metric"),
            value: GaugeVec::new(
                Opts::new(
                    "ragplane_operator_autoscaler_rule_value",
                    "The last value of each autoscaling rule.",
                ),
                &["namespace", "resource", "component", "rule"],
            )
            .expect("valid metric"),
            decisions: IntCounterVec::new(
                Opts::new(
                    "ragplane_operator_autoscaler_decisions_total",
                    "Autoscaling decisions, by reason.",
                ),
                &["namespace", "resource", "component", "reason"],
            )
            .expect("valid metric"),
            scales: IntCounterVec::new(
                Opts::new(
                    "ragplane_operator_autoscaler_scale_writes_total",
                    "Replica counts written through the scale subresource, by direction.",
                ),
                &["namespace", "resource", "component", "direction"],
            )
            .expect("valid metric"),
            poll_errors: IntCounterVec::new(
                Opts::new(
                    "ragplane_operator_autoscaler_poll_errors_total",
                    "Polls in which at least one rule had no usable value.",
                ),
                &COMPONENT,
            )
            .expect("valid metric"),
            fallback: IntGaugeVec::new(
                Opts::new(
                    "ragplane_operator_autoscaler_fallback_active",
                    "1 while the autoscaling fallback decides a component's replicas.",
                ),
                &COMPONENT,
            )
            .expect("valid metric"),
            poll_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "ragplane_operator_autoscaler_poll_duration_seconds",
                    "Time from the start of a poll to its replica count written.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )
            .expect("valid metric"),
        };
        // Every kind and error from the start, at zero: alert rules and dashboards find the
        // series before the first failure, and a rate over them reads 0, not "no data".
        for kind in ["RagCluster", "ModelPool", "Collection"] {
            reconciles.with_label_values(&[kind]);
            for error in crate::error::Error::METRIC_LABELS {
                failures.with_label_values(&[kind, error]);
            }
        }
        for m in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(qdrant_writes.clone()),
            Box::new(crate::apply::APPLIES_CHANGED.clone()),
            Box::new(autoscaler.desired.clone()),
            Box::new(autoscaler.current.clone()),
            Box::new(autoscaler.value.clone()),
            Box::new(autoscaler.decisions.clone()),
            Box::new(autoscaler.scales.clone()),
            Box::new(autoscaler.poll_errors.clone()),
            Box::new(autoscaler.fallback.clone()),
            Box::new(autoscaler.poll_duration.clone()),
        ] {
            registry.register(m).expect("metric registered once");
        }
        Self {
            registry,
            reconciles,
            failures,
            duration,
            qdrant_writes,
            autoscaler,
        }
    }

    /// Counts `n` writes sent to Qdrant for a Collection.
    pub fn qdrant_writes(&self, namespace: &str, collection: &str, n: usize) {
        self.qdrant_writes
            .with_label_values(&[namespace, collection])
            .inc_by(n as u64);
    }

    /// The autoscaler's metrics.
    pub fn autoscaler(&self) -> &AutoscalerMetrics {
        &self.autoscaler
    }

    /// Counts a reconcile of `kind` and returns a timer that records its duration when dropped.
    pub fn reconcile(&self, kind: &str) -> prometheus::HistogramTimer {
        self.reconciles.with_label_values(&[kind]).inc();
        self.duration.with_label_values(&[kind]).start_timer()
    }

    /// Counts a failed reconcile.
    pub fn failure(&self, kind: &str, error: &str) {
        self.failures.with_label_values(&[kind, error]).inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
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
