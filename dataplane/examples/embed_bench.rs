//! Load generator for `ragplane embed-server`, and the raw ONNX Runtime baseline it is compared
//! with. Inputs are 50 model tokens each (48 single-token words plus [CLS] and [SEP]), distinct
//! per request. Every measurement prints one JSON line on stdout.
//!
//! ```sh
//! embed_bench raw     --model-dir D --ort-library L --batches 1,32,128 --seconds 20 [--device cuda:0]
//! embed_bench http    --model-dir D --url http://127.0.0.1:8090 --batches 1,32,128 --concurrency 4
//! embed_bench latency --model-dir D --url http://127.0.0.1:8090 --concurrency 256 --seconds 30
//! ```
//! `scripts/gpu-check.sh` runs all three on the CPU and on a GPU.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A benchmark tool: fail loudly.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ragplane::embed::device::Device;
use ragplane::embed::onnx::{ModelFiles, OnnxModel};
use ragplane::embed::tokenizer::TextTokenizer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Tokens per input, special tokens included.
const TOKENS: usize = 50;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// Directory with tokenizer.json (and model.onnx for `raw`).
    #[arg(long, global = true, env = "RAGPLANE_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// Seconds measured per configuration (after one warm-up second).
    #[arg(long, global = true, default_value_t = 20)]
    seconds: u64,
    /// Copied into every output line, to tell runs apart (for example `cpu` or `gpu`).
    #[arg(long, global = true, default_value = "")]
    label: String,
}

#[derive(Subcommand)]
enum Mode {
    /// One ONNX Runtime session in this process, batches run back to back (tokenising included).
    Raw {
        /// Path of libonnxruntime.so.
        #[arg(long, env = "RAGPLANE_ORT_LIBRARY")]
        ort_library: PathBuf,
        /// Batch sizes to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32,64,128")]
        batches: Vec<usize>,
        /// `cpu` or `cuda:N`.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Intra-op threads (0: all cores).
        #[arg(long, default_value_t = 0)]
        intra_threads: usize,
    },
    /// Closed-loop throughput against the native endpoint, per request batch size.
    Http {
        /// Base URL of the embed-server.
        #[arg(long)]
        url: String,
        /// Texts per request, one measurement each.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32,64,128")]
        batches: Vec<usize>,
        /// Requests in flight.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Latency of one-text requests with this many in flight (closed loop).
    Latency {
        /// Base URL of the embed-server.
        #[arg(long)]
        url: String,
        /// Requests in flight.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
}

/// Texts of exactly [`TOKENS`] model tokens, built from words the tokenizer keeps whole.
fn texts(tok: &TextTokenizer, n: usize) -> Vec<String> {
    const WORDS: &str = "the of and to in is was for on that with as by at from his her they \
        be this are which or had an not but were their has have one all been would new more \
        who also other its after first two time into than only over some when about can \
        most city school world year people made many these may war state between under film \
        later during water house family music game team life work part number found since \
        long well high small group early still great known three back series same each power \
        river book name king church court line place end found west east north south music";
    let words: Vec<&str> = WORDS
        .split_whitespace()
        .filter(|w| tok.count_tokens(w).ok() == Some(1))
        .collect();
    let mut rng = StdRng::seed_from_u64(50);
    (0..n)
        .map(|_| {
            let t: Vec<&str> = (0..TOKENS - 2)
                .map(|_| words[rng.random_range(0..words.len())])
                .collect();
            let text = t.join(" ");
            debug_assert_eq!(tok.count_tokens(&text).ok(), Some(TOKENS - 2));
            text
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let cfg = ragplane_config::EmbeddingConfig {
        model_dir: cli.model_dir.clone(),
        ..Default::default()
    };
    let dir = cfg.resolved_model_dir();
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json"), 256).unwrap();
    let pool = Arc::new(texts(&tok, 8192));
    assert_eq!(
        tok.encode_for_model(&[pool[0].as_str()]).unwrap()[0].len(),
        TOKENS
    );
    let measure = Duration::from_secs(cli.seconds);
    match cli.mode {
        Mode::Raw {
            ort_library,
            batches,
            device,
            intra_threads,
        } => {
            let files = ModelFiles {
                model: dir.join("model.onnx"),
                tokenizer: dir.join("tokenizer.json"),
                ort_library,
            };
            let dev = match device.strip_prefix("cuda:") {
                Some(n) => Device::Cuda {
                    ordinal: n.parse().unwrap(),
                    name: device.clone(),
                },
                None => Device::Cpu,
            };
            let intra = if intra_threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                intra_threads
            };
            let mut model = OnnxModel::load_on(&files, intra, 384, &dev).unwrap();
            for batch in batches {
                let mut done = 0usize;
                let mut i = 0usize;
                let mut run = |model: &mut OnnxModel| {
                    let refs: Vec<&str> = (0..batch)
                        .map(|k| pool[(i + k) % pool.len()].as_str())
                        .collect();
                    i += batch;
                    let enc = tok.encode_for_model(&refs).unwrap();
                    let refs: Vec<_> = enc.iter().collect();
                    model.run(&refs).unwrap().len()
                };
                let warm = Instant::now();
                while warm.elapsed() < Duration::from_secs(1) {
                    run(&mut model);
                }
                let started = Instant::now();
                while started.elapsed() < measure {
                    done += run(&mut model);
                }
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "{}",
                    json!({"label": cli.label, "mode": "raw", "device": device, "batch": batch, "intra_threads": intra,
                           "tokens_per_input": TOKENS, "embeddings": done, "seconds": secs,
                           "embeddings_per_s": done as f64 / secs})
                );
            }
        }
        Mode::Http {
            url,
            batches,
            concurrency,
        } => {
            for batch in batches {
                let r = closed_loop(&url, &pool, batch, concurrency, measure, concurrency).await;
                let secs = r.seconds;
                println!(
                    "{}",
                    json!({"label": cli.label, "mode": "http", "url": url, "batch": batch, "concurrency": concurrency,
                           "tokens_per_input": TOKENS, "embeddings": r.embeddings, "errors": r.errors,
                           "seconds": secs, "embeddings_per_s": r.embeddings as f64 / secs,
                           "p50_ms": percentile(&r.latencies, 0.5), "p95_ms": percentile(&r.latencies, 0.95)})
                );
            }
        }
        Mode::Latency { url, concurrency } => {
            let r = closed_loop(&url, &pool, 1, concurrency, measure, 2 * concurrency).await;
            println!(
                "{}",
                json!({"label": cli.label, "mode": "latency", "url": url, "batch": 1, "concurrency": concurrency,
                       "tokens_per_input": TOKENS, "requests": r.latencies.len(), "errors": r.errors,
                       "seconds": r.seconds, "embeddings_per_s": r.embeddings as f64 / r.seconds,
                       "p50_ms": percentile(&r.latencies, 0.5), "p95_ms": percentile(&r.latencies, 0.95),
                       "p99_ms": percentile(&r.latencies, 0.99)})
            );
        }
    }
}

struct LoopResult {
    embeddings: u64,
    errors: u64,
    seconds: f64,
    /// Milliseconds, sorted.
    latencies: Vec<f64>,
}

/// `concurrency` tasks each send `batch`-text requests back to back. One warm-up second is
/// discarded; then results are recorded for `measure`, extended (up to ten times) until at least
/// `min_requests` requests have completed, so that a slow device still yields percentiles.
/// Requests still in flight at the end are awaited without being recorded, so that the server is
/// idle before the next measurement starts.
async fn closed_loop(
    url: &str,
    pool: &Arc<Vec<String>>,
    batch: usize,
    concurrency: usize,
    measure: Duration,
    min_requests: usize,
) -> LoopResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let recording = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let embeddings = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let endpoint = format!("{url}/v1/embed");
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, endpoint, pool) = (client.clone(), endpoint.clone(), pool.clone());
        let (recording, stop, embeddings, errors, next, latencies) = (
            recording.clone(),
            stop.clone(),
            embeddings.clone(),
            errors.clone(),
            next.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let start = next.fetch_add(batch as u64, Ordering::Relaxed) as usize;
                let texts: Vec<&String> = (0..batch)
                    .map(|k| &pool[(start + k) % pool.len()])
                    .collect();
                let t = Instant::now();
                let ok = match client
                    .post(&endpoint)
                    .json(&json!({ "inputs": texts }))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                if recording.load(Ordering::Relaxed) {
                    if ok {
                        embeddings.fetch_add(batch as u64, Ordering::Relaxed);
                        latencies
                            .lock()
                            .unwrap()
                            .push(t.elapsed().as_secs_f64() * 1e3);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    recording.store(true, Ordering::Relaxed);
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = latencies.lock().unwrap().len();
        let elapsed = started.elapsed();
        if elapsed >= measure * 10 || (elapsed >= measure && done >= min_requests) {
            break;
        }
    }
    recording.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    for t in tasks {
        t.await.unwrap();
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort_by(f64::total_cmp);
    LoopResult {
        embeddings: embeddings.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        seconds,
        latencies,
    }
}
