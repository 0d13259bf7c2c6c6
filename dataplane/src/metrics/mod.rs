//! Prometheus metrics, all named `ragplane_*`, and their OpenMetrics exposition for `/metrics`
//! (`ragplane_telemetry::metrics` holds the types, and the exemplars that tie latencies to
//! traces).

use std::sync::LazyLock;

pub use ragplane_telemetry::metrics::{
    exponential_buckets, Histogram, HistogramTimer, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Registry,
};

/// The registry every data-plane metric is registered in.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

/// Every registered metric in the OpenMetrics text format.
pub fn render() -> String {
    REGISTRY.render()
}

fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

macro_rules! metric {
    ($name:ident: $ty:ty = $init:expr) => {
        #[doc = concat!("The `", stringify!($name), "` metric.")]
        pub static $name: LazyLock<$ty> = LazyLock::new(|| $init);
    };
}

metric!(HTTP_REQUESTS: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_http_requests_total", "HTTP requests by route, method and status",
    &["route", "method", "status"]));
metric!(HTTP_DURATION: HistogramVec = HistogramVec::new(&REGISTRY,
    "ragplane_http_request_duration_seconds", "HTTP request latency by route, method and status", latency_buckets(),
    &["route", "method", "status"]));
metric!(QUEUE_DEPTH: IntGaugeVec = IntGaugeVec::new(&REGISTRY,
    "ragplane_queue_depth", "Jobs waiting plus in flight, by queue", &["queue"]));
metric!(QUEUE_IN_FLIGHT: IntGaugeVec = IntGaugeVec::new(&REGISTRY,
    "ragplane_queue_in_flight", "Jobs claimed by a worker and not yet finished, by queue", &["queue"]));
metric!(QUEUE_DEAD: IntGaugeVec = IntGaugeVec::new(&REGISTRY,
    "ragplane_queue_dead_letter", "Jobs dead-lettered after their last attempt, by queue", &["queue"]));
metric!(JOBS: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_jobs_total", "Finished job attempts by queue and outcome", &["queue", "outcome"]));
metric!(AUTH_FAILURES: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_auth_failures_total", "Failed authentications (failed), and requests refused because their address failed too often (blocked)", &["outcome"]));
metric!(UPLOADS_REFUSED: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_uploads_refused_total", "Uploads refused because the ingest backlog was past its bound, by bound (total, tenant)", &["bound"]));
metric!(PARSE_SECONDS: HistogramVec = HistogramVec::new(&REGISTRY,
    "ragplane_parse_seconds", "Time to extract one document's text, child process included, by media type", latency_buckets(), &["media_type"]));
metric!(PARSE_CHILDREN_FAILED: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_parse_children_failed_total", "Parsing child processes that ended without an answer, by cause (memory, time, crash)", &["cause"]));
metric!(JOB_DURATION: HistogramVec = HistogramVec::new(&REGISTRY,
    "ragplane_job_duration_seconds", "Job processing time by queue", latency_buckets(),
    &["queue"]));
metric!(EMBED_BATCH_SIZE: Histogram = Histogram::new(&REGISTRY,
    "ragplane_embed_batch_size", "Texts per model run", vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]));
metric!(EMBED_BATCH_SECONDS: Histogram = Histogram::new(&REGISTRY,
    "ragplane_embed_batch_seconds", "Model run time per batch", latency_buckets()));
metric!(EMBED_QUEUE_WAIT: HistogramVec = HistogramVec::new(&REGISTRY,
    "ragplane_embed_queue_wait_seconds", "Time a request waited for an inference thread, by class (interactive, bulk)", latency_buckets(), &["class"]));
metric!(EMBED_QUEUE_DEPTH: IntGaugeVec = IntGaugeVec::new(&REGISTRY,
    "ragplane_embed_queue_depth", "Embedding requests waiting for an inference thread, by class (interactive, bulk)", &["class"]));
metric!(EMBEDDINGS_TOTAL: IntCounter = REGISTRY.counter(
    "ragplane_embeddings_total", "Texts embedded by the model (cache hits excluded)"));
metric!(EMBED_DEVICE_SESSIONS: IntGaugeVec = IntGaugeVec::new(&REGISTRY,
    "ragplane_embed_device_sessions", "Embedding model sessions by device (cpu, cuda:N)", &["device"]));
metric!(EMBED_DEVICE_BATCH_SIZE: HistogramVec = HistogramVec::new(&REGISTRY,
    "ragplane_embed_device_batch_size", "Texts per model run, by device", vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0],
    &["device"]));
metric!(EMBED_DEVICE_EMBEDDINGS: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_embed_device_embeddings_total", "Texts embedded, by device", &["device"]));
metric!(EMBEDDINGS_PER_SECOND: IntGauge = REGISTRY.gauge(
    "ragplane_embed_embeddings_per_second", "Texts embedded per second over the last 5 s (embed-server)"));
metric!(REMOTE_EMBED_REQUESTS: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_remote_embed_requests_total", "Remote embedder attempts by endpoint and outcome",
    &["endpoint", "outcome"]));
metric!(CACHE_REQUESTS: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_cache_requests_total", "Cache lookups by cache, layer and result",
    &["cache", "layer", "result"]));
metric!(SEARCH_SECONDS: Histogram = Histogram::new(&REGISTRY,
    "ragplane_vector_search_seconds", "Vector index search latency", latency_buckets()));
metric!(KEYWORD_SEARCH_SECONDS: Histogram = Histogram::new(&REGISTRY,
    "ragplane_keyword_search_seconds", "BM25 keyword search latency in the in-process keyword index", latency_buckets()));
metric!(SEARCHES: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_searches_total", "Retrievals by mode (dense, keyword, hybrid)",
    &["mode"]));
metric!(RERANK_SECONDS: Histogram = Histogram::new(&REGISTRY,
    "ragplane_rerank_seconds", "Latency of calls to the rerank endpoint", latency_buckets()));
metric!(RERANK_ERRORS: IntCounter = REGISTRY.counter(
    "ragplane_rerank_errors_total", "Rerank calls that failed (served in retrieval order or refused, per rerank.on_error)"));
metric!(CHUNKS_INDEXED: IntCounter = REGISTRY.counter(
    "ragplane_chunks_indexed_total", "Chunks embedded and written to the vector index"));
metric!(LLM_OUTSTANDING: IntGaugeVec = IntGaugeVec::new(&REGISTRY,
    "ragplane_llm_outstanding_requests", "Generation requests sent to a server and not yet finished, by endpoint",
    &["endpoint"]));
metric!(LLM_HEALTHY: IntGaugeVec = IntGaugeVec::new(&REGISTRY,
    "ragplane_llm_endpoint_healthy", "1 while a generation server is in rotation, 0 while ejected, by endpoint",
    &["endpoint"]));
metric!(LLM_TTFT: HistogramVec = HistogramVec::new(&REGISTRY,
    "ragplane_llm_time_to_first_token_seconds", "Time from sending a generation request to its first token, by endpoint", latency_buckets(),
    &["endpoint"]));
metric!(LLM_TOKENS_PER_SECOND: HistogramVec = HistogramVec::new(&REGISTRY,
    "ragplane_llm_tokens_per_second", "Generated tokens per second after the first token, per request, by endpoint", exponential_buckets(1.0, 2.0, 12),
    &["endpoint"]));
metric!(LLM_TOKENS: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_llm_generated_tokens_total", "Tokens generated, by endpoint", &["endpoint"]));
metric!(LLM_REQUESTS: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_llm_requests_total", "Generation attempts by endpoint and outcome (ok, error)",
    &["endpoint", "outcome"]));
metric!(LLM_ERRORS: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_llm_errors_total", "Generation failures by endpoint and stage (request: sending or connecting, first_token, stream, probe)",
    &["endpoint", "stage"]));

metric!(CACHE_ERRORS: IntCounterVec = IntCounterVec::new(&REGISTRY,
    "ragplane_cache_errors_total", "Shared-cache (Redis) commands that failed or timed out and counted as misses, by cache",
    &["cache"]));
metric!(RATE_LIMITED: IntCounter = REGISTRY.counter(
    "ragplane_rate_limited_total", "Requests refused by the per-key rate limit"));
metric!(RATE_LIMIT_ERRORS: IntCounter = REGISTRY.counter(
    "ragplane_rate_limit_backend_errors_total", "Rate-limit checks whose backend failed (then failing open or closed as configured)"));

/// Counts a batch of cache lookups.
pub fn cache_lookup(cache: &str, layer: &str, hits: usize, misses: usize) {
    CACHE_REQUESTS
        .with_label_values(&[cache, layer, "hit"])
        .inc_by(hits as u64);
    CACHE_REQUESTS
        .with_label_values(&[cache, layer, "miss"])
        .inc_by(misses as u64);
}

/// Forces registration of every metric so that `/metrics` lists them before first use.
pub fn init() {
    LazyLock::force(&HTTP_REQUESTS);
    LazyLock::force(&HTTP_DURATION);
    LazyLock::force(&QUEUE_DEPTH);
    LazyLock::force(&QUEUE_IN_FLIGHT);
    LazyLock::force(&QUEUE_DEAD);
    // Outcomes start at zero, so that rates over them read 0 before the first failure.
    for queue in crate::queue::QUEUES {
        for outcome in ["succeeded", "retrying", "dead", "error"] {
            JOBS.with_label_values(&[queue, outcome]);
        }
    }
    LazyLock::force(&JOB_DURATION);
    LazyLock::force(&UPLOADS_REFUSED);
    LazyLock::force(&AUTH_FAILURES);
    LazyLock::force(&EMBED_BATCH_SIZE);
    LazyLock::force(&EMBED_BATCH_SECONDS);
    LazyLock::force(&EMBED_QUEUE_WAIT);
    LazyLock::force(&EMBED_QUEUE_DEPTH);
    LazyLock::force(&EMBEDDINGS_TOTAL);
    LazyLock::force(&EMBED_DEVICE_SESSIONS);
    LazyLock::force(&EMBED_DEVICE_BATCH_SIZE);
    LazyLock::force(&EMBED_DEVICE_EMBEDDINGS);
    LazyLock::force(&EMBEDDINGS_PER_SECOND);
    LazyLock::force(&REMOTE_EMBED_REQUESTS);
    LazyLock::force(&CACHE_REQUESTS);
    LazyLock::force(&CACHE_ERRORS);
    LazyLock::force(&RATE_LIMITED);
    LazyLock::force(&RATE_LIMIT_ERRORS);
    LazyLock::force(&SEARCH_SECONDS);
    LazyLock::force(&KEYWORD_SEARCH_SECONDS);
    LazyLock::force(&SEARCHES);
    LazyLock::force(&RERANK_SECONDS);
    LazyLock::force(&RERANK_ERRORS);
    LazyLock::force(&CHUNKS_INDEXED);
    LazyLock::force(&LLM_OUTSTANDING);
    LazyLock::force(&LLM_HEALTHY);
    LazyLock::force(&LLM_TTFT);
    LazyLock::force(&LLM_TOKENS_PER_SECOND);
    LazyLock::force(&LLM_TOKENS);
    LazyLock::force(&LLM_REQUESTS);
    LazyLock::force(&LLM_ERRORS);
}

/// A server URL as a metric label or log field: without user info (a password in
/// `http://user:pass@host`) and without a query string (a token in `?key=`).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url).ok().filter(reqwest::Url::has_host) {
        Some(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.as_str().trim_end_matches('/').to_string()
        }
        // Not a URL with a host: keep only what follows any '@' and precedes any '?'.
        None => url
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn user_info_and_queries_never_reach_a_label() {
        assert_eq!(
            redact_url("http://admin:hunter2@ollama:11434/"),
            "http://ollama:11434"
        );
        assert_eq!(
            redact_url("https://llm.example/v1?api_key=secret"),
            "https://llm.example/v1"
        );
        assert_eq!(redact_url("http://ollama:11434"), "http://ollama:11434");
        assert_eq!(redact_url("user:pw@host?x=1"), "host");
    }
}
