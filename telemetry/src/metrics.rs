//! The metric types both ragplane programs record into, over `prometheus-client`: counters,
//! gauges and histograms, alone or in families keyed by label values, each registered in a
//! [`Registry`]. They keep the shape of the call sites (`with_label_values(&[..]).inc()`), sort
//! labels by name in the exposition, and give every histogram observation made inside a traced
//! span a `trace_id` exemplar, which the OpenMetrics exposition shows next to its bucket.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Metric;

/// A series' labels, sorted by name.
pub type Labels = Vec<(&'static str, String)>;

/// The labels of an exemplar: the trace it was observed in.
pub type TraceExemplar = Vec<(&'static str, String)>;

/// The content type of [`Registry::render`]'s exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where metrics are registered, and rendered from. Clones share the metrics.
#[derive(Clone, Default)]
pub struct Registry(Arc<Mutex<prometheus_client::registry::Registry>>);

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Registry {
    /// Registers `metric` under `name`. A counter's name is given with its `_total`, as it is
    /// exposed; the registry wants it without.
    fn register(&self, name: &'static str, help: &'static str, metric: impl Metric) {
        let name = name.strip_suffix("_total").unwrap_or(name);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register(name, help, metric);
    }

    /// A counter without labels, registered.
    pub fn counter(&self, name: &'static str, help: &'static str) -> IntCounter {
        let c = Counter::default();
        self.register(name, help, c.clone());
        c
    }

    /// A gauge without labels, registered.
    pub fn gauge(&self, name: &'static str, help: &'static str) -> IntGauge {
        let g = Gauge::default();
        self.register(name, help, g.clone());
        g
    }

    /// Every registered metric in the OpenMetrics text format (which Prometheus asks for, and
    /// which carries exemplars), served as [`CONTENT_TYPE`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(error = %e, "failed to encode metrics");
        }
        out
    }
}

/// Pairs label names with values, sorted by name.
fn labels(names: &[&'static str], values: &[&str]) -> Labels {
    debug_assert_eq!(names.len(), values.len(), "one value per label: {names:?}");
    let mut l: Labels = names
        .iter()
        .zip(values)
        .map(|(n, v)| (*n, (*v).to_owned()))
        .collect();
    l.sort_unstable_by_key(|(n, _)| *n);
    l
}

/// A monotonic counter.
pub type IntCounter = Counter;

/// A gauge holding an integer.
pub type IntGauge = Gauge;

/// A gauge holding a float.
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// Metrics of type `M` by label values (`C` makes a new one).
#[derive(Debug, Clone)]
pub struct MetricVec<M, C = fn() -> M> {
    family: Family<Labels, M, C>,
    names: &'static [&'static str],
}

impl<M, C> MetricVec<M, C>
where
    M: Clone,
    C: MetricConstructor<M>,
    Family<Labels, M, C>: Metric + Clone,
{
    fn with_constructor(
        registry: &Registry,
        name: &'static str,
        help: &'static str,
        names: &'static [&'static str],
        constructor: C,
    ) -> Self {
        let family = Family::new_with_constructor(constructor);
        registry.register(name, help, family.clone());
        Self { family, names }
    }

    /// The metric of these label values (one per name, in the declared order).
    pub fn with_label_values(&self, values: &[&str]) -> M {
        self.family.get_or_create_owned(&labels(self.names, values))
    }

    /// Forgets every series, so that label values no longer in use disappear.
    pub fn reset(&self) {
        self.family.clear();
    }
}

impl<M> MetricVec<M>
where
    M: Clone + Default,
    Family<Labels, M>: Metric + Clone,
{
    /// A family with the label names `names`, registered in `registry`.
    pub fn new(
        registry: &Registry,
        name: &'static str,
        help: &'static str,
        names: &'static [&'static str],
    ) -> Self {
        Self::with_constructor(registry, name, help, names, M::default)
    }
}

/// Counters by label values.
pub type IntCounterVec = MetricVec<Counter>;

/// Gauges by label values.
pub type IntGaugeVec = MetricVec<Gauge>;

/// Float gauges by label values.
pub type GaugeVec = MetricVec<FloatGauge>;

/// A histogram whose observations inside a traced span carry that trace as their bucket's
/// exemplar.
#[derive(Debug, Clone)]
pub struct Histogram(HistogramWithExemplars<TraceExemplar>);

impl Histogram {
    fn with_buckets(buckets: &[f64]) -> Self {
        Self(HistogramWithExemplars::new(buckets.iter().copied()))
    }

    /// A histogram without labels, registered in `registry`.
    pub fn new(
        registry: &Registry,
        name: &'static str,
        help: &'static str,
        buckets: Vec<f64>,
    ) -> Self {
        let h = Self::with_buckets(&buckets);
        registry.register(name, help, h.0.clone());
        h
    }

    /// Records `v`, with the current trace as exemplar when traces are on.
    pub fn observe(&self, v: f64) {
        let exemplar = crate::propagation::trace_id()
            .map(|t| (vec![("trace_id", t)], Some(SystemTime::now())));
        match exemplar {
            Some((labels, at)) => self.0.observe(v, Some(labels), at),
            None => self.0.observe(v, None, None),
        }
    }

    /// Observes the seconds from now until the timer is dropped.
    pub fn start_timer(&self) -> HistogramTimer {
        HistogramTimer {
            histogram: self.clone(),
            started: Instant::now(),
        }
    }
}

/// Observes its histogram when dropped; see [`Histogram::start_timer`].
#[derive(Debug)]
#[must_use = "the time is observed when the timer is dropped"]
pub struct HistogramTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for HistogramTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// Makes a family's histograms with its buckets.
#[derive(Debug, Clone)]
pub struct Buckets(Vec<f64>);

impl MetricConstructor<HistogramWithExemplars<TraceExemplar>> for Buckets {
    fn new_metric(&self) -> HistogramWithExemplars<TraceExemplar> {
        HistogramWithExemplars::new(self.0.iter().copied())
    }
}

/// Histograms by label values.
#[derive(Debug, Clone)]
pub struct HistogramVec(MetricVec<HistogramWithExemplars<TraceExemplar>, Buckets>);

impl HistogramVec {
    /// A family with the label names `names`, registered in `registry`.
    pub fn new(
        registry: &Registry,
        name: &'static str,
        help: &'static str,
        buckets: Vec<f64>,
        names: &'static [&'static str],
    ) -> Self {
        Self(MetricVec::with_constructor(
            registry,
            name,
            help,
            names,
            Buckets(buckets),
        ))
    }

    /// The histogram of these label values (one per name, in the declared order).
    pub fn with_label_values(&self, values: &[&str]) -> Histogram {
        Histogram(self.0.with_label_values(values))
    }
}

/// `count` buckets from `start`, each `factor` times the one before.
pub fn exponential_buckets(start: f64, factor: f64, count: u16) -> Vec<f64> {
    prometheus_client::metrics::histogram::exponential_buckets(start, factor, count).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn labels_are_sorted_by_name_whatever_the_declared_order() {
        assert_eq!(
            labels(&["queue", "outcome"], &["documents", "dead"]),
            vec![
                ("outcome", "dead".to_owned()),
                ("queue", "documents".to_owned())
            ]
        );
    }

    /// An observation made inside a traced span names the span's trace next to its bucket; one
    /// made outside any span has no exemplar. Families and plain histograms alike.
    #[test]
    fn observations_in_a_traced_span_carry_its_trace_as_exemplar() {
        let registry = Registry::default();
        let family = HistogramVec::new(
            &registry,
            "t_reconcile_seconds",
            "test",
            vec![0.1, 1.0],
            &["kind"],
        );
        let plain = Histogram::new(&registry, "t_poll_seconds", "test", vec![0.1, 1.0]);
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry().with(crate::traces::layer(&provider));
        crate::propagation::install();
        let trace = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("reconcile");
            let _entered = span.enter();
            drop(family.with_label_values(&["RagCluster"]).start_timer());
            plain.observe(0.5);
            crate::propagation::trace_id().expect("a sampled trace")
        });
        family.with_label_values(&["Collection"]).observe(0.5);
        let text = registry.render();
        let exemplar = format!("# {{trace_id=\"{trace}\"}}");
        let with_exemplar = |prefix: &str| {
            text.lines()
                .any(|l| l.starts_with(prefix) && l.contains(&exemplar))
        };
        assert!(
            with_exemplar("t_reconcile_seconds_bucket{le=\"0.1\",kind=\"RagCluster\"}"),
            "{text}"
        );
        assert!(with_exemplar("t_poll_seconds_bucket{le=\"1.0\"}"), "{text}");
        assert!(
            text.lines()
                .filter(|l| l.contains("kind=\"Collection\""))
                .all(|l| !l.contains("trace_id")),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
