//! The metric types both ragplane programs record into, over `prometheus-client`: counters,
//! gauges and histograms, alone or in families keyed by label values, each registered in a
//! [`Registry`]. They keep the shape of the call sites (`with_label_values(&[..]).inc()`), sort
//! labels by name in the exposition, and let a histogram observation made inside a traced span
//! set its bucket's `trace_id` exemplar (at most once a second per bucket), which the
//! OpenMetrics exposition shows next to the bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
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

/// How long a bucket keeps its exemplar before a traced observation replaces it. Prometheus
/// keeps one exemplar per bucket from each scrape, seconds apart, so replacing it on every
/// observation would only cost time (finding the trace and formatting its id) on every request.
const EXEMPLAR_EVERY: Duration = Duration::from_secs(1);

/// A histogram whose observations inside a traced span carry that trace as their bucket's
/// exemplar, each bucket's replaced at most once every [`EXEMPLAR_EVERY`].
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: HistogramWithExemplars<TraceExemplar>,
    exemplars: Arc<ExemplarAges>,
}

/// When each bucket's exemplar was last set.
#[derive(Debug)]
struct ExemplarAges {
    /// The buckets' finite upper bounds, as the histogram keeps them; `+Inf` follows.
    bounds: Box<[f64]>,
    /// Per bucket (`+Inf` last): milliseconds since [`epoch`] when its exemplar was set, plus
    /// one; 0 when it has none.
    set_at: Box<[AtomicU64]>,
    every: Duration,
}

/// The instant the ages count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl ExemplarAges {
    fn new(buckets: &[f64], every: Duration) -> Self {
        let bounds: Box<[f64]> = buckets.iter().copied().filter(|b| b.is_finite()).collect();
        let set_at = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            bounds,
            set_at,
            every,
        }
    }

    /// The bucket of `v` when its exemplar is due for replacement.
    fn due(&self, v: f64) -> Option<&AtomicU64> {
        let bucket = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        let set_at = &self.set_at[bucket];
        let last = set_at.load(Ordering::Relaxed);
        (last == 0 || now_ms().saturating_sub(last) >= self.every.as_millis() as u64)
            .then_some(set_at)
    }
}

/// Milliseconds since [`epoch`], plus one (so that 0 can mean "never").
fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

impl Histogram {
    fn with_buckets(buckets: &[f64], every: Duration) -> Self {
        Self {
            inner: HistogramWithExemplars::new(buckets.iter().copied()),
            exemplars: Arc::new(ExemplarAges::new(buckets, every)),
        }
    }

    /// A histogram without labels, registered in `registry`.
    pub fn new(
        registry: &Registry,
        name: &'static str,
        help: &'static str,
        buckets: Vec<f64>,
    ) -> Self {
        let h = Self::with_buckets(&buckets, EXEMPLAR_EVERY);
        registry.register(name, help, h.clone());
        h
    }

    /// Records `v`, with the current trace as exemplar when traces are on, the trace is
    /// sampled and the bucket's exemplar is due for replacement.
    ///
    /// An observation in a trace the sampler left out counts as the bucket's look for the
    /// interval: the bucket keeps the exemplar it had, and the next look (the lookup of the
    /// current trace is what costs) is an interval away. Outside any span the bucket stays due.
    pub fn observe(&self, v: f64) {
        use crate::propagation::{current_trace, CurrentTrace};
        let Some(set_at) = crate::propagation::on()
            .then(|| self.exemplars.due(v))
            .flatten()
        else {
            return self.inner.observe(v, None, None);
        };
        match current_trace() {
            CurrentTrace::Sampled(trace) => {
                set_at.store(now_ms(), Ordering::Relaxed);
                let labels = vec![("trace_id", trace)];
                self.inner.observe(v, Some(labels), Some(SystemTime::now()));
            }
            CurrentTrace::Unsampled => {
                set_at.store(now_ms(), Ordering::Relaxed);
                self.inner.observe(v, None, None);
            }
            CurrentTrace::None => self.inner.observe(v, None, None),
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

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.inner.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
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

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::with_buckets(&self.0, EXEMPLAR_EVERY)
    }
}

/// Histograms by label values.
#[derive(Debug, Clone)]
pub struct HistogramVec(MetricVec<Histogram, Buckets>);

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
        self.0.with_label_values(values)
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

    /// Within the replacement interval a bucket keeps its first traced exemplar; another
    /// bucket takes its own, and an untraced observation leaves the bucket free for the next
    /// traced one.
    #[test]
    fn a_bucket_keeps_its_exemplar_for_the_interval() {
        let registry = Registry::default();
        let h = Histogram::with_buckets(&[0.1, 1.0], Duration::from_secs(3600));
        registry.register("t_keep_seconds", "test", h.clone());
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry().with(crate::traces::layer(&provider));
        crate::propagation::install();
        let traced = |v: f64| {
            let span = tracing::info_span!("request");
            let _entered = span.enter();
            h.observe(v);
            crate::propagation::trace_id().expect("a sampled trace")
        };
        let (first, second, third) = tracing::subscriber::with_default(subscriber, || {
            h.observe(0.05); // no span: no exemplar, and the bucket stays free
            (traced(0.05), traced(0.06), traced(0.5))
        });
        let text = registry.render();
        let bucket = |le: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("t_keep_seconds_bucket{{le=\"{le}\"}}")))
                .unwrap_or_else(|| panic!("no le={le} bucket in {text}"))
                .to_owned()
        };
        assert!(bucket("0.1").contains(&first), "{text}");
        assert!(!bucket("0.1").contains(&second), "{text}");
        assert!(bucket("1.0").contains(&third), "{text}");
    }

    /// A trace the sampler left out is exported nowhere, so it is no exemplar; a sampled one
    /// is, once the bucket is due again. Within the interval, the unsampled observation was the
    /// bucket's look: a sampled one right after it waits for the next interval.
    #[test]
    fn an_unsampled_trace_is_no_exemplar() {
        use opentelemetry_sdk::trace::Sampler;
        crate::propagation::install();
        let observe_in = |h: &Histogram, sampler: Sampler| {
            crate::traces::recorded_with(sampler, || {
                let span = tracing::info_span!("request");
                let _entered = span.enter();
                h.observe(0.05);
                crate::propagation::trace_id().expect("a trace id, sampled or not")
            })
            .0
        };
        let render = |every: Duration, samplers: [Sampler; 2]| {
            let registry = Registry::default();
            let h = Histogram::with_buckets(&[0.1, 1.0], every);
            registry.register("t_sampled_seconds", "test", h.clone());
            let ids = samplers.map(|s| observe_in(&h, s));
            (ids, registry.render())
        };

        let ([left_out, sampled], text) =
            render(Duration::ZERO, [Sampler::AlwaysOff, Sampler::AlwaysOn]);
        let bucket = text
            .lines()
            .find(|l| l.starts_with("t_sampled_seconds_bucket{le=\"0.1\"}"))
            .unwrap_or_else(|| panic!("no le=0.1 bucket in {text}"));
        assert!(bucket.contains(&sampled), "{text}");
        assert!(!text.contains(&left_out), "{text}");

        let (_, text) = render(
            Duration::from_secs(3600),
            [Sampler::AlwaysOff, Sampler::AlwaysOn],
        );
        assert!(!text.contains("trace_id"), "{text}");
    }
}
