//! The generator pool: several servers of one model behind one [`Generator`].
//!
//! - A request goes to the healthy server with the fewest outstanding requests (ties rotate),
//!   and no server gets more than `max_concurrency` at once; when all are at the cap the pool
//!   refuses at once ([`GenerateError::Busy`], 429) rather than queueing.
//! - A server is ejected after `eject_after_failures` consecutive failures (requests or probes)
//!   and readmitted by the first successful probe; probes run every `probe_interval_ms`.
//! - A request that fails before its first token is retried once on another server, so callers
//!   only ever see failures that happen mid-stream, or when no other server can take it.
//! - Connecting, the first token and the whole request have separate deadlines.
//! - With no healthy server the pool refuses at once ([`GenerateError::NoHealthyEndpoint`],
//!   503 with Retry-After), without touching the network.
//!
//! Not `tower::balance`: its power-of-two-choices draws two servers at random and knows no
//! "other than this one", so the retry could go back to the server that just failed. Here, as
//! in the remote embedder ([`crate::embed::remote::pick`]), every choice sees all servers and
//! the least loaded wins.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use ragplane_config::{GenerationPoolConfig, GeneratorEndpoint};
use tracing::{Instrument, Span};

use super::ollama::OllamaGenerator;
use super::openai::OpenAiGenerator;
use super::{ChatRequest, Chunk, GenerateError, Generator, Result, TokenStream};
use crate::metrics::{
    LLM_ERRORS, LLM_HEALTHY, LLM_OUTSTANDING, LLM_REQUESTS, LLM_TOKENS, LLM_TOKENS_PER_SECOND,
    LLM_TTFT,
};

/// The wire protocol of a pool's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Ollama's native `/api/chat`.
    Ollama,
    /// OpenAI-compatible `/chat/completions`.
    OpenAi,
}

/// One server's state, as seen by the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    /// Base URL without user info or query (the metrics' `endpoint` label).
    pub url: String,
    /// Whether it is in rotation.
    pub healthy: bool,
    /// Requests sent to it and not yet finished.
    pub outstanding: usize,
    /// Failures since its last success.
    pub consecutive_failures: u32,
}

struct Endpoint {
    url: String,
    client: Arc<dyn Generator>,
    outstanding: AtomicUsize,
    failures: AtomicU32,
    healthy: AtomicBool,
}

impl Endpoint {
    fn set_outstanding_gauge(&self) {
        LLM_OUTSTANDING
            .with_label_values(&[self.url.as_str()])
            .set(self.outstanding.load(Ordering::Relaxed) as i64);
    }

    fn error(&self, stage: &str, e: &GenerateError, eject_after: u32) {
        LLM_ERRORS.with_label_values(&[&self.url, stage]).inc();
        if stage != "probe" {
            LLM_REQUESTS.with_label_values(&[&self.url, "error"]).inc();
        }
        if !e.is_server_fault() {
            return;
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= eject_after && self.healthy.swap(false, Ordering::AcqRel) {
            LLM_HEALTHY.with_label_values(&[&self.url]).set(0);
            tracing::warn!(endpoint = %self.url, failures = n, error = %e, "generation server ejected");
        }
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Release);
    }

    fn readmit(&self) {
        if !self.healthy.swap(true, Ordering::AcqRel) {
            self.failures.store(0, Ordering::Release);
            LLM_HEALTHY.with_label_values(&[&self.url]).set(1);
            tracing::info!(endpoint = %self.url, "generation server readmitted");
        }
    }
}

struct Inner {
    model: String,
    endpoints: Vec<Endpoint>,
    cfg: GenerationPoolConfig,
    total: Duration,
    rotation: AtomicUsize,
}

/// A request slot on one server; frees it when dropped (also when a client disconnects
/// mid-stream, since the stream owns its lease).
struct Lease {
    inner: Arc<Inner>,
    idx: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(ep) = self.inner.endpoints.get(self.idx) {
            ep.outstanding.fetch_sub(1, Ordering::AcqRel);
            ep.set_outstanding_gauge();
        }
    }
}

/// Servers of one model with least-outstanding routing, health checks and failover.
#[derive(Clone)]
pub struct GeneratorPool {
    inner: Arc<Inner>,
}

impl GeneratorPool {
    /// A pool over `config`'s servers speaking `protocol`. Starts the probe task when called
    /// inside a Tokio runtime; it stops when the last clone of the pool is dropped.
    pub fn new(protocol: Protocol, config: &GeneratorEndpoint) -> Self {
        let cfg = config.pool.clone();
        let connect = Duration::from_millis(cfg.connect_timeout_ms);
        let total = Duration::from_secs(config.timeout_secs);
        let endpoints = config
            .server_urls()
            .into_iter()
            .map(|url| {
                let client: Arc<dyn Generator> = match protocol {
                    Protocol::Ollama => Arc::new(OllamaGenerator::new(
                        &url,
                        &config.model,
                        config.max_tokens,
                        connect,
                        total,
                    )),
                    Protocol::OpenAi => Arc::new(OpenAiGenerator::new(
                        &url,
                        &config.model,
                        config.max_tokens,
                        config.api_key.clone(),
                        connect,
                        total,
                    )),
                };
                // The client has the URL; labels, logs and status get it without credentials.
                let url = crate::metrics::redact_url(&url);
                LLM_HEALTHY.with_label_values(&[url.as_str()]).set(1);
                LLM_OUTSTANDING.with_label_values(&[url.as_str()]).set(0);
                Endpoint {
                    url,
                    client,
                    outstanding: AtomicUsize::new(0),
                    failures: AtomicU32::new(0),
                    healthy: AtomicBool::new(true),
                }
            })
            .collect();
        let inner = Arc::new(Inner {
            model: config.model.clone(),
            endpoints,
            cfg,
            total,
            rotation: AtomicUsize::new(0),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(probe_loop(Arc::downgrade(&inner)));
        }
        Self { inner }
    }

    /// Every server's state.
    pub fn status(&self) -> Vec<EndpointStatus> {
        self.inner
            .endpoints
            .iter()
            .map(|e| EndpointStatus {
                url: e.url.clone(),
                healthy: e.healthy.load(Ordering::Acquire),
                outstanding: e.outstanding.load(Ordering::Acquire),
                consecutive_failures: e.failures.load(Ordering::Acquire),
            })
            .collect()
    }

    /// Takes a slot on the healthy server (other than `exclude`) with the fewest outstanding
    /// requests.
    fn pick(&self, exclude: Option<usize>) -> Result<Lease> {
        let inner = &self.inner;
        let n = inner.endpoints.len();
        let cap = inner.cfg.max_concurrency;
        let start = inner.rotation.fetch_add(1, Ordering::Relaxed);
        // A lost race for a slot only means another request took it; look again.
        for _ in 0..64 {
            let mut best: Option<(usize, usize)> = None;
            let mut any_healthy = false;
            for k in 0..n {
                let i = (start + k) % n;
                let ep = &inner.endpoints[i];
                if Some(i) == exclude || !ep.healthy.load(Ordering::Acquire) {
                    continue;
                }
                any_healthy = true;
                let o = ep.outstanding.load(Ordering::Acquire);
                if o < cap && best.is_none_or(|(_, b)| o < b) {
                    best = Some((i, o));
                }
            }
            let Some((i, o)) = best else {
                return Err(if any_healthy {
                    GenerateError::Busy {
                        cap,
                        retry_after_secs: inner.cfg.retry_after_secs,
                    }
                } else {
                    GenerateError::NoHealthyEndpoint {
                        count: n,
                        retry_after_secs: inner.cfg.retry_after_secs,
                    }
                });
            };
            let ep = &inner.endpoints[i];
            if ep
                .outstanding
                .compare_exchange(o, o + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                ep.set_outstanding_gauge();
                return Ok(Lease {
                    inner: inner.clone(),
                    idx: i,
                });
            }
        }
        Err(GenerateError::Busy {
            cap,
            retry_after_secs: inner.cfg.retry_after_secs,
        })
    }

    /// Sends `request` on `lease`'s server and waits for the first token. On failure, says
    /// whether another server may be tried.
    async fn attempt(
        &self,
        lease: Lease,
        request: &ChatRequest,
        deadline: Instant,
        span: &Span,
    ) -> std::result::Result<TokenStream, (GenerateError, bool)> {
        let inner = self.inner.clone();
        let eject_after = inner.cfg.eject_after_failures;
        let ep = &inner.endpoints[lease.idx];
        span.record("endpoint", ep.url.as_str());
        let sent = Instant::now();
        let first_limit = Duration::from_secs(inner.cfg.first_token_timeout_secs)
            .min(deadline.saturating_duration_since(sent));
        let first = tokio::time::timeout(first_limit, async {
            let mut s = ep
                .client
                .stream(request)
                .await
                .map_err(|e| (e, "request"))?;
            match s.next().await {
                Some(Ok(c)) => Ok((s, c)),
                Some(Err(e)) => Err((e, "first_token")),
                None => Err((
                    GenerateError::Decode("the answer ended before its first token".into()),
                    "first_token",
                )),
            }
        })
        .await;
        let (mut rest, first) = match first {
            Ok(Ok(x)) => x,
            Ok(Err((e, stage))) => {
                ep.error(stage, &e, eject_after);
                let retry = e.is_server_fault();
                return Err((e, retry));
            }
            Err(_) => {
                let e = GenerateError::FirstTokenTimeout {
                    url: ep.url.clone(),
                    secs: first_limit.as_secs(),
                };
                ep.error("first_token", &e, eject_after);
                return Err((e, true));
            }
        };
        ep.success();
        let ttft = sent.elapsed().as_secs_f64();
        LLM_TTFT.with_label_values(&[&ep.url]).observe(ttft);
        span.record("ttft_ms", ttft * 1e3);
        let total_secs = inner.total.as_secs();
        // The span lasts as long as the answer streams.
        let span = span.clone();
        let out = async_stream::stream! {
            let lease = lease;
            let span = span;
            let ep = &lease.inner.endpoints[lease.idx];
            let first_at = Instant::now();
            let mut deltas = 0u64;
            let mut pending = Some(first);
            loop {
                let item = match pending.take() {
                    Some(c) => Some(Ok(c)),
                    None => match tokio::time::timeout_at(deadline.into(), rest.next()).await {
                        Ok(x) => x,
                        Err(_) => Some(Err(GenerateError::Timeout { url: ep.url.clone(), secs: total_secs })),
                    },
                };
                match item {
                    Some(Ok(Chunk::Delta(d))) => {
                        deltas += 1;
                        yield Ok(Chunk::Delta(d));
                    }
                    Some(Ok(Chunk::Done(f))) => {
                        let tokens = f.usage.map_or(deltas, |u| u.completion_tokens.max(deltas));
                        span.record("completion_tokens", tokens);
                        if let Some(u) = f.usage {
                            span.record("prompt_tokens", u.prompt_tokens);
                        }
                        LLM_TOKENS.with_label_values(&[&ep.url]).inc_by(tokens);
                        LLM_REQUESTS.with_label_values(&[&ep.url, "ok"]).inc();
                        let secs = first_at.elapsed().as_secs_f64();
                        if tokens > 1 && secs > 0.0 {
                            LLM_TOKENS_PER_SECOND
                                .with_label_values(&[&ep.url])
                                .observe((tokens - 1) as f64 / secs);
                        }
                        yield Ok(Chunk::Done(f));
                        break;
                    }
                    Some(Err(e)) => {
                        ep.error("stream", &e, lease.inner.cfg.eject_after_failures);
                        record_failure(&span, &e);
                        yield Err(e);
                        break;
                    }
                    None => {
                        let e = GenerateError::Decode("the answer ended without its final message".into());
                        ep.error("stream", &e, lease.inner.cfg.eject_after_failures);
                        record_failure(&span, &e);
                        yield Err(e);
                        break;
                    }
                }
            }
        };
        Ok(Box::pin(out))
    }
}

impl GeneratorPool {
    /// Sends `request` and waits for its first token, retrying once on another server when
    /// the first fails before answering.
    async fn start(&self, request: &ChatRequest, span: &Span) -> Result<TokenStream> {
        let deadline = Instant::now() + self.inner.total;
        let lease = self.pick(None)?;
        let first_idx = lease.idx;
        let err = match self.attempt(lease, request, deadline, span).await {
            Ok(s) => return Ok(s),
            Err((e, false)) => return Err(e),
            Err((e, true)) => e,
        };
        // One retry, on another server; with none to take it, the first error stands.
        let Ok(lease) = self.pick(Some(first_idx)) else {
            return Err(err);
        };
        tracing::info!(error = %err, "generation failed before its first token; retrying on another server");
        span.record("retries", 1u32);
        self.attempt(lease, request, deadline, span)
            .await
            .map_err(|(e, _)| e)
    }
}

#[async_trait]
impl Generator for GeneratorPool {
    fn model(&self) -> &str {
        &self.inner.model
    }

    async fn stream(&self, request: &ChatRequest) -> Result<TokenStream> {
        let span = tracing::info_span!(
            "llm.generate",
            otel.kind = "client",
            model = %self.inner.model,
            endpoint = tracing::field::Empty,
            retries = 0u32,
            ttft_ms = tracing::field::Empty,
            prompt_tokens = tracing::field::Empty,
            completion_tokens = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let out = self.start(request, &span).instrument(span.clone()).await;
        if let Err(e) = &out {
            record_failure(&span, e);
        }
        out
    }

    fn check_available(&self) -> Result<()> {
        let inner = &self.inner;
        if inner
            .endpoints
            .iter()
            .any(|e| e.healthy.load(Ordering::Acquire))
        {
            Ok(())
        } else {
            Err(GenerateError::NoHealthyEndpoint {
                count: inner.endpoints.len(),
                retry_after_secs: inner.cfg.retry_after_secs,
            })
        }
    }
}

/// Marks a generation span failed, with the error.
fn record_failure(span: &Span, e: &GenerateError) {
    span.record("otel.status_code", "ERROR");
    span.record("error", tracing::field::display(e));
}

/// Probes every server each interval until the pool is dropped.
async fn probe_loop(pool: Weak<Inner>) {
    let interval = match pool.upgrade() {
        Some(p) => Duration::from_millis(p.cfg.probe_interval_ms),
        None => return,
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = pool.upgrade() else { return };
        let limit = Duration::from_millis(inner.cfg.connect_timeout_ms) + interval;
        let probes = inner.endpoints.iter().map(|ep| async {
            let r = match tokio::time::timeout(limit, ep.client.probe()).await {
                Ok(r) => r,
                Err(_) => Err(GenerateError::Unavailable {
                    url: ep.url.clone(),
                    message: format!("health probe took longer than {limit:?}"),
                }),
            };
            match r {
                Ok(()) => ep.readmit(),
                Err(e) => ep.error("probe", &e, inner.cfg.eject_after_failures),
            }
        });
        futures::future::join_all(probes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(urls: &[&str], cap: usize) -> GeneratorPool {
        let mut c = GeneratorEndpoint::new("", "m");
        c.urls = urls.iter().map(|u| u.to_string()).collect();
        c.pool.max_concurrency = cap;
        // No runtime here, so no probe task: the test drives the state by hand.
        GeneratorPool::new(Protocol::OpenAi, &c)
    }

    #[test]
    fn least_outstanding_then_cap_then_busy() {
        let p = pool(&["http://a", "http://b"], 2);
        let l1 = p.pick(None).unwrap();
        let l2 = p.pick(None).unwrap();
        assert_ne!(l1.idx, l2.idx, "the second request goes to the idle server");
        let l3 = p.pick(None).unwrap();
        let l4 = p.pick(None).unwrap();
        assert_ne!(l3.idx, l4.idx);
        assert!(matches!(
            p.pick(None),
            Err(GenerateError::Busy { cap: 2, .. })
        ));
        drop(l3);
        let l5 = p.pick(None).unwrap();
        assert_eq!(p.status().iter().map(|s| s.outstanding).sum::<usize>(), 4);
        drop((l1, l2, l4, l5));
        assert!(p.status().iter().all(|s| s.outstanding == 0));
    }

    #[test]
    fn ejection_after_consecutive_failures_and_readmission() {
        let p = pool(&["http://a", "http://b"], 8);
        let ep = &p.inner.endpoints[0];
        let e = GenerateError::Unavailable {
            url: "http://a".into(),
            message: "refused".into(),
        };
        ep.error("request", &e, 3);
        ep.error("request", &e, 3);
        ep.success();
        ep.error("request", &e, 3);
        ep.error("request", &e, 3);
        assert!(p.status()[0].healthy, "a success resets the count");
        ep.error("request", &e, 3);
        assert!(!p.status()[0].healthy);
        // A request the server rightly refused is not its fault.
        let bad = GenerateError::Status {
            url: "http://b".into(),
            status: 400,
            body: String::new(),
        };
        for _ in 0..5 {
            p.inner.endpoints[1].error("request", &bad, 3);
        }
        assert!(p.status()[1].healthy);
        for _ in 0..4 {
            let l = p.pick(None).unwrap();
            assert_eq!(l.idx, 1, "ejected servers get no traffic");
        }
        assert!(matches!(
            p.pick(Some(1)),
            Err(GenerateError::NoHealthyEndpoint { .. })
        ));
        ep.readmit();
        assert!(p.status()[0].healthy);
        assert_eq!(p.status()[0].consecutive_failures, 0);
        p.inner.endpoints[1].healthy.store(false, Ordering::Release);
        ep.healthy.store(false, Ordering::Release);
        assert!(matches!(
            p.check_available(),
            Err(GenerateError::NoHealthyEndpoint { count: 2, .. })
        ));
    }
}
