//! Prometheus metrics of the operator: reconciles, their duration and their errors by kind.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The operator's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
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
        for m in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
        ] {
            registry.register(m).expect("metric registered once");
        }
        Self {
            registry,
            reconciles,
            failures,
            duration,
        }
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
