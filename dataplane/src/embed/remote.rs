//! The remote embedder: [`Embedder`] on `ragplane embed-server` instances over HTTP.
//!
//! Each call goes to the endpoint with the fewest requests in flight from this process (ties
//! rotate, so idle endpoints share sequential traffic). A failed attempt (connection refused,
//! timeout, 5xx, 429) marks the endpoint to be avoided for a cool-down and is retried on another
//! endpoint, up to `max_attempts` in all. Large calls are split into requests of
//! `max_texts_per_request` texts that run concurrently, so one call spreads over the servers.
//! Vectors travel in the server's native format: little-endian f32, no JSON.
//!
//! The choice is made here rather than by `tower::balance`: its power-of-two-choices compares
//! two endpoints drawn at random, so with the two or three servers of a typical deployment a
//! retry can land on the endpoint that just failed, or one cooling down can be taken while a
//! healthy one is idle. Every attempt here sees all endpoints, so a call tries each endpoint
//! once before any twice, and a live one is reached within `max_attempts` whenever fewer
//! endpoints than that are dead (see [`pick`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ragplane_config::{EmbeddingConfig, RemoteEmbedderConfig, RemoteProtocol};

use super::{EmbedError, Embedder, Priority, Result};
use crate::metrics;

/// Path of the embed-server's native endpoint.
pub const NATIVE_PATH: &str = "/v1/embed";
/// Path of the OpenAI-compatible endpoint.
pub const OPENAI_PATH: &str = "/v1/embeddings";
/// Request header naming the request's class (`interactive` or `bulk`; see [`Priority`]).
pub const PRIORITY_HEADER: &str = "x-ragplane-priority";
/// Response header carrying the vectors' dimension on the native endpoint.
pub const DIMENSION_HEADER: &str = "x-ragplane-dimension";
/// Response header carrying the number of vectors on the native endpoint.
pub const COUNT_HEADER: &str = "x-ragplane-count";

struct Endpoint {
    url: String,
    /// The URL without user info or query, for metrics and logs.
    label: String,
    outstanding: AtomicUsize,
    avoid_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    fn cooling(&self, now: Instant) -> bool {
        self.avoid_until
            .lock()
            .map(|g| g.is_some_and(|t| t > now))
            .unwrap_or(false)
    }

    fn avoid_for(&self, d: Duration) {
        if let Ok(mut g) = self.avoid_until.lock() {
            *g = Some(Instant::now() + d);
        }
    }
}

/// Decrements an endpoint's in-flight count when the attempt ends, however it ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one endpoint looks like to the balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Requests in flight from this process.
    pub outstanding: usize,
    /// Failed recently.
    pub cooling: bool,
    /// Already tried for this request.
    pub tried: bool,
}

/// Picks the endpoint for the next attempt: never one already tried; endpoints not cooling
/// down before those that are; then the fewest outstanding requests; ties go to the first at or
/// after `start` (mod the number of endpoints).
pub fn pick(loads: &[Load], start: usize) -> Option<usize> {
    let n = loads.len();
    (0..n)
        .map(|k| (start + k) % n)
        .filter(|&i| !loads[i].tried)
        .min_by_key(|&i| (loads[i].cooling, loads[i].outstanding))
}

enum Failure {
    /// Try another endpoint; `overloaded` when the server said 429.
    Retry { overloaded: bool, message: String },
    /// The request itself is wrong; another endpoint would say the same.
    Fatal(EmbedError),
}

/// Client of one or more embed-server endpoints.
pub struct RemoteEmbedder {
    endpoints: Vec<Endpoint>,
    client: reqwest::Client,
    max_attempts: usize,
    max_texts: usize,
    cooldown: Duration,
    rotation: AtomicUsize,
    model: String,
    dimension: usize,
    protocol: RemoteProtocol,
}

impl RemoteEmbedder {
    /// A client for `remote`'s endpoints serving the model described by `embedding`.
    pub fn new(remote: &RemoteEmbedderConfig, embedding: &EmbeddingConfig) -> Result<Self> {
        if remote.endpoints.is_empty() {
            return Err(EmbedError::Load(
                "embedding.remote.endpoints lists no embedding server".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(remote.timeout_secs))
            .connect_timeout(Duration::from_millis(remote.connect_timeout_ms))
            .build()
            .map_err(|e| EmbedError::Load(format!("failed to build the HTTP client: {e}")))?;
        Ok(Self {
            endpoints: remote
                .endpoints
                .iter()
                .map(|u| Endpoint {
                    url: u.trim_end_matches('/').to_string(),
                    label: crate::metrics::redact_url(u),
                    outstanding: AtomicUsize::new(0),
                    avoid_until: Mutex::new(None),
                })
                .collect(),
            client,
            max_attempts: remote.max_attempts.max(1),
            max_texts: remote.max_texts_per_request.max(1),
            cooldown: Duration::from_millis(remote.cooldown_ms),
            rotation: AtomicUsize::new(0),
            model: embedding.model_name.clone(),
            dimension: embedding.dimension,
            protocol: remote.protocol,
        })
    }

    /// Requests in flight per endpoint, in configuration order.
    pub fn outstanding(&self) -> Vec<usize> {
        self.endpoints
            .iter()
            .map(|e| e.outstanding.load(Ordering::Relaxed))
            .collect()
    }

    async fn embed_part(&self, texts: &[String], priority: Priority) -> Result<Vec<Vec<f32>>> {
        let mut tried = vec![false; self.endpoints.len()];
        let mut errors = Vec::new();
        let mut all_overloaded = true;
        for _ in 0..self.max_attempts {
            if tried.iter().all(|t| *t) {
                // Fewer endpoints than attempts: go round again.
                tried.iter_mut().for_each(|t| *t = false);
            }
            let now = Instant::now();
            let loads: Vec<Load> = self
                .endpoints
                .iter()
                .zip(&tried)
                .map(|(e, t)| Load {
                    outstanding: e.outstanding.load(Ordering::Relaxed),
                    cooling: e.cooling(now),
                    tried: *t,
                })
                .collect();
            let start = self.rotation.fetch_add(1, Ordering::Relaxed);
            let Some(i) = pick(&loads, start) else { break };
            tried[i] = true;
            let ep = &self.endpoints[i];
            match self.attempt(ep, texts, priority).await {
                Ok(v) => {
                    metrics::REMOTE_EMBED_REQUESTS
                        .with_label_values(&[ep.label.as_str(), "ok"])
                        .inc();
                    return Ok(v);
                }
                Err(Failure::Fatal(e)) => {
                    metrics::REMOTE_EMBED_REQUESTS
                        .with_label_values(&[ep.label.as_str(), "rejected"])
                        .inc();
                    return Err(e);
                }
                Err(Failure::Retry {
                    overloaded,
                    message,
                }) => {
                    let outcome = if overloaded { "overloaded" } else { "failed" };
                    metrics::REMOTE_EMBED_REQUESTS
                        .with_label_values(&[ep.label.as_str(), outcome])
                        .inc();
                    tracing::warn!(endpoint = %ep.label, error = %message, "embedding server attempt failed; trying another");
                    ep.avoid_for(self.cooldown);
                    all_overloaded &= overloaded;
                    errors.push(format!("{}: {message}", ep.label));
                }
            }
        }
        let summary = errors.join("; ");
        Err(if all_overloaded && !errors.is_empty() {
            EmbedError::RemoteOverloaded(summary)
        } else {
            EmbedError::RemoteUnavailable(summary)
        })
    }

    async fn attempt(
        &self,
        ep: &Endpoint,
        texts: &[String],
        priority: Priority,
    ) -> Result<Vec<Vec<f32>>, Failure> {
        ep.outstanding.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&ep.outstanding);
        let retry = |message: String| Failure::Retry {
            overloaded: false,
            message,
        };
        let request = match self.protocol {
            RemoteProtocol::Native => self
                .client
                .post(format!("{}{NATIVE_PATH}", ep.url))
                .json(&serde_json::json!({ "inputs": texts })),
            RemoteProtocol::Openai => self
                .client
                .post(format!("{}{OPENAI_PATH}", ep.url))
                .json(&serde_json::json!({ "input": texts, "model": self.model })),
        };
        let resp = request
            .headers(ragplane_telemetry::propagation::headers())
            .header(PRIORITY_HEADER, priority.as_str())
            .send()
            .await
            .map_err(|e| retry(format!("failed to send: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let message = format!("HTTP {status}: {body}");
            return Err(match super::RemoteStatus::of(status) {
                super::RemoteStatus::Overloaded => Failure::Retry {
                    overloaded: true,
                    message,
                },
                super::RemoteStatus::Failed => retry(message),
                super::RemoteStatus::Rejected => {
                    Failure::Fatal(EmbedError::RemoteRejected(format!(
                        "embedding server {} rejected the request: {message}",
                        ep.label
                    )))
                }
            });
        }
        if self.protocol == RemoteProtocol::Openai {
            let body: OpenAiEmbeddings = resp
                .json()
                .await
                .map_err(|e| retry(format!("failed to read the response: {e}")))?;
            return openai_vectors(body, texts.len(), self.dimension).map_err(|message| {
                Failure::Fatal(EmbedError::RemoteRejected(format!(
                    "embedding server {}: {message}",
                    ep.label
                )))
            });
        }
        let dim = resp
            .headers()
            .get(DIMENSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if dim != Some(self.dimension) {
            return Err(Failure::Fatal(EmbedError::RemoteRejected(format!(
                "embedding server {} serves vectors of dimension {dim:?}; embedding.dimension is {}",
                ep.label, self.dimension
            ))));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| retry(format!("failed to read the response: {e}")))?;
        decode_vectors(&body, texts.len(), self.dimension).map_err(retry)
    }
}

/// Body of an OpenAI `/v1/embeddings` answer (the fields this client reads).
#[derive(Debug, serde::Deserialize)]
struct OpenAiEmbeddings {
    data: Vec<OpenAiEmbedding>,
}

#[derive(Debug, serde::Deserialize)]
struct OpenAiEmbedding {
    index: usize,
    embedding: Vec<f32>,
}

/// The vectors of an OpenAI answer in input order, checked for count and dimension and
/// L2-normalised (servers differ in whether they normalise).
fn openai_vectors(
    body: OpenAiEmbeddings,
    count: usize,
    dimension: usize,
) -> Result<Vec<Vec<f32>>, String> {
    let mut out: Vec<Option<Vec<f32>>> = vec![None; count];
    for item in body.data {
        if item.embedding.len() != dimension {
            return Err(format!(
                "it serves vectors of dimension {}; embedding.dimension is {dimension}",
                item.embedding.len()
            ));
        }
        let slot = out
            .get_mut(item.index)
            .ok_or_else(|| format!("answered index {} for {count} inputs", item.index))?;
        let mut v = item.embedding;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        *slot = Some(v);
    }
    out.into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| format!("answered no vector for input {i}")))
        .collect()
}

/// Splits the native endpoint's body (little-endian f32, `count` × `dimension`) into vectors.
pub fn decode_vectors(
    body: &[u8],
    count: usize,
    dimension: usize,
) -> Result<Vec<Vec<f32>>, String> {
    if body.len() != count * dimension * 4 {
        return Err(format!(
            "expected {count} vectors of {dimension} f32 ({} bytes), got {} bytes",
            count * dimension * 4,
            body.len()
        ));
    }
    Ok(body
        .chunks_exact(dimension * 4)
        .map(|v| {
            v.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect())
}

/// Encodes vectors for the native endpoint's body.
pub fn encode_vectors(vectors: &[Vec<f32>]) -> Vec<u8> {
    vectors
        .iter()
        .flat_map(|v| v.iter().flat_map(|x| x.to_le_bytes()))
        .collect()
}

#[async_trait]
impl Embedder for RemoteEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed_as(&self, texts: Vec<String>, priority: Priority) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let parts = texts
            .chunks(self.max_texts)
            .map(|p| self.embed_part(p, priority));
        let mut out = Vec::with_capacity(texts.len());
        for part in futures::future::try_join_all(parts).await? {
            out.extend(part);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(outstanding: usize, cooling: bool, tried: bool) -> Load {
        Load {
            outstanding,
            cooling,
            tried,
        }
    }

    #[test]
    fn the_least_loaded_healthy_untried_endpoint_wins() {
        let l = [
            load(3, false, false),
            load(1, false, false),
            load(0, false, true),
        ];
        assert_eq!(pick(&l, 0), Some(1));
        let l = [load(0, true, false), load(5, false, false)];
        assert_eq!(pick(&l, 0), Some(1), "cooling endpoints come last");
        let l = [load(0, true, false), load(5, false, true)];
        assert_eq!(
            pick(&l, 0),
            Some(0),
            "but are used when nothing else is left"
        );
        assert_eq!(pick(&[load(0, false, true)], 0), None);
    }

    #[test]
    fn ties_rotate() {
        let l = [load(0, false, false); 3];
        let picks: Vec<_> = (0..6).map(|s| pick(&l, s).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn vectors_round_trip_through_the_native_format() {
        let v = vec![vec![1.0, -0.5, 0.25], vec![0.0, 3.5, -1e-7]];
        let bytes = encode_vectors(&v);
        assert_eq!(decode_vectors(&bytes, 2, 3).unwrap(), v);
        assert!(decode_vectors(&bytes[1..], 2, 3).is_err());
    }
}
