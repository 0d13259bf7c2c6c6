//! The ONNX Runtime embedding backend: dedicated inference threads behind a cloneable handle.
//!
//! Callers send a request with a one-shot reply over a bounded channel; when the channel is full
//! the caller gets [`EmbedError::Overloaded`] at once (HTTP 429) instead of queueing without
//! bound. Each inference thread owns one ONNX Runtime session. It drains every request that is
//! waiting, sorts the texts by length and cuts them into batches whose padded size (batch size
//! times the longest input) stays under the token cap, so short texts are not padded to long
//! ones and requests that arrive together share model runs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use ragplane_config::EmbeddingConfig;
use tokenizers::Encoding;
use tokio::sync::{mpsc, oneshot};

use super::pooling::mean_pool_normalize;
use super::tokenizer::TextTokenizer;
use super::{EmbedError, Embedder, Result};
use crate::metrics;

/// ONNX Runtime allows one environment per process; it lives for the whole process.
static ENVIRONMENT: OnceLock<ort::environment::Environment> = OnceLock::new();
/// Serialises the first initialisation, so a failed attempt can be retried with another path.
static INIT: Mutex<()> = Mutex::new(());

/// Loads the ONNX Runtime library once per process.
pub fn init_runtime(library: &Path) -> Result<&'static ort::environment::Environment> {
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    if !library.exists() {
        return Err(EmbedError::Load(format!(
            "ONNX Runtime library {} does not exist; run scripts/setup-model.sh or set RAGPLANE_ORT_LIBRARY",
            library.display()
        )));
    }
    let env = ort::init_from(library)
        .map_err(|e| {
            EmbedError::Load(format!(
                "failed to load ONNX Runtime from {}: {e}",
                library.display()
            ))
        })?
        .with_name("ragplane")
        .build()
        .map_err(|e| EmbedError::Load(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}

/// Files of an embedding model on disk.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The ONNX graph.
    pub model: PathBuf,
    /// The tokenizer definition.
    pub tokenizer: PathBuf,
    /// The ONNX Runtime shared library.
    pub ort_library: PathBuf,
}

impl ModelFiles {
    /// Locates the files named by the configuration and checks they exist.
    pub fn from_config(cfg: &EmbeddingConfig) -> Result<Self> {
        let dir = cfg.resolved_model_dir();
        let files = Self {
            model: dir.join("model.onnx"),
            tokenizer: dir.join("tokenizer.json"),
            ort_library: cfg.resolved_ort_library(),
        };
        for p in [&files.model, &files.tokenizer] {
            if !p.exists() {
                return Err(EmbedError::Load(format!(
                    "{} does not exist; run scripts/setup-model.sh or set RAGPLANE_MODEL_DIR",
                    p.display()
                )));
            }
        }
        Ok(files)
    }
}

/// One ONNX Runtime session with its input layout; synchronous and single-threaded.
pub struct OnnxModel {
    session: Session,
    wants_token_types: bool,
    dimension: usize,
}

impl OnnxModel {
    /// Builds a session for `files` with `intra_threads` threads inside each operator.
    pub fn load(files: &ModelFiles, intra_threads: usize, dimension: usize) -> Result<Self> {
        let environment = init_runtime(&files.ort_library)?;
        let load = |e: ort::Error<_>| EmbedError::Load(format!("failed to create session: {e}"));
        let session = Session::builder(environment)
            .map_err(|e| EmbedError::Load(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(load)?
            .with_intra_threads(intra_threads)
            .map_err(load)?
            .with_inter_threads(1)
            .map_err(load)?
            .commit_from_file(&files.model)
            .map_err(|e| {
                EmbedError::Load(format!("failed to load {}: {e}", files.model.display()))
            })?;
        let wants_token_types = session
            .inputs()
            .iter()
            .any(|i| i.name() == "token_type_ids");
        Ok(Self {
            session,
            wants_token_types,
            dimension,
        })
    }

    /// Runs one padded batch and returns pooled, normalised vectors in input order.
    pub fn run(&mut self, encodings: &[&Encoding]) -> Result<Vec<Vec<f32>>> {
        let batch = encodings.len();
        if batch == 0 {
            return Ok(Vec::new());
        }
        let seq = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0i64; batch * seq];
        let mut mask = vec![0i64; batch * seq];
        let mut types = vec![0i64; batch * seq];
        for (b, enc) in encodings.iter().enumerate() {
            for (t, ((id, m), ty)) in enc
                .get_ids()
                .iter()
                .zip(enc.get_attention_mask())
                .zip(enc.get_type_ids())
                .enumerate()
            {
                ids[b * seq + t] = i64::from(*id);
                mask[b * seq + t] = i64::from(*m);
                types[b * seq + t] = i64::from(*ty);
            }
        }
        let shape = vec![batch as i64, seq as i64];
        let infer = |e: ort::Error| EmbedError::Inference(e.to_string());
        let ids_t = Tensor::from_array((shape.clone(), ids)).map_err(infer)?;
        let mask_t = Tensor::from_array((shape.clone(), mask.clone())).map_err(infer)?;
        let outputs = if self.wants_token_types {
            let types_t = Tensor::from_array((shape, types)).map_err(infer)?;
            self.session
                .run(ort::inputs!["input_ids" => ids_t, "attention_mask" => mask_t, "token_type_ids" => types_t])
                .map_err(infer)?
        } else {
            self.session
                .run(ort::inputs!["input_ids" => ids_t, "attention_mask" => mask_t])
                .map_err(infer)?
        };
        let (out_shape, hidden) = outputs[0].try_extract_tensor::<f32>().map_err(infer)?;
        let dim = usize::try_from(out_shape[2]).unwrap_or(0);
        if dim != self.dimension {
            return Err(EmbedError::Inference(format!(
                "model returned vectors of dimension {dim}, configured {}",
                self.dimension
            )));
        }
        Ok(mean_pool_normalize(hidden, &mask, batch, seq, dim))
    }
}

/// Groups `lengths` (indices sorted by length) into batches whose padded size stays under
/// `max_batch_tokens`. Returns index ranges into the sorted order.
pub fn plan_batches(
    sorted_lengths: &[usize],
    max_batch_tokens: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    while start < sorted_lengths.len() {
        let mut end = start + 1;
        // Lengths ascend, so the last one added is the longest of the batch.
        while end < sorted_lengths.len()
            && (end - start + 1) * sorted_lengths[end] <= max_batch_tokens
        {
            end += 1;
        }
        batches.push(start..end);
        start = end;
    }
    batches
}

struct Request {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
    enqueued: Instant,
}

/// Cloneable handle to the inference threads.
#[derive(Clone)]
pub struct OnnxEmbedder {
    tx: mpsc::Sender<Request>,
    capacity: usize,
    model_name: Arc<str>,
    dimension: usize,
}

impl OnnxEmbedder {
    /// Loads the model and starts `cfg.sessions` inference threads.
    pub fn start(cfg: &EmbeddingConfig) -> Result<Self> {
        let files = ModelFiles::from_config(cfg)?;
        let tokenizer = TextTokenizer::from_file(&files.tokenizer, cfg.max_seq_len)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let intra = if cfg.intra_threads == 0 {
            (cores / cfg.sessions).max(1)
        } else {
            cfg.intra_threads
        };
        let (tx, rx) = mpsc::channel::<Request>(cfg.queue_capacity);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..cfg.sessions {
            // Load on the caller's thread so that a broken model fails start-up, not the first request.
            let model = OnnxModel::load(&files, intra, cfg.dimension)?;
            let worker = InferenceThread {
                model,
                tokenizer: tokenizer.clone(),
                rx: rx.clone(),
                max_batch_tokens: cfg.max_batch_tokens,
            };
            std::thread::Builder::new()
                .name(format!("embed-{i}"))
                .spawn(move || worker.run())
                .map_err(|e| EmbedError::Load(format!("failed to spawn inference thread: {e}")))?;
        }
        tracing::info!(model = %files.model.display(), sessions = cfg.sessions, intra_threads = intra, "embedding model loaded");
        Ok(Self {
            tx,
            capacity: cfg.queue_capacity,
            model_name: cfg.model_name.as_str().into(),
            dimension: cfg.dimension,
        })
    }
}

#[async_trait]
impl Embedder for OnnxEmbedder {
    fn model(&self) -> &str {
        &self.model_name
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        let req = Request {
            texts,
            reply,
            enqueued: Instant::now(),
        };
        self.tx.try_send(req).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => EmbedError::Overloaded {
                capacity: self.capacity,
            },
            mpsc::error::TrySendError::Closed(_) => EmbedError::Stopped,
        })?;
        metrics::EMBED_QUEUE_DEPTH.inc();
        rx.await.map_err(|_| EmbedError::Stopped)?
    }
}

struct InferenceThread {
    model: OnnxModel,
    tokenizer: TextTokenizer,
    rx: Arc<Mutex<mpsc::Receiver<Request>>>,
    max_batch_tokens: usize,
}

impl InferenceThread {
    fn run(mut self) {
        loop {
            let requests = {
                let Ok(mut rx) = self.rx.lock() else { return };
                let Some(first) = rx.blocking_recv() else {
                    return;
                };
                let mut requests = vec![first];
                while let Ok(more) = rx.try_recv() {
                    requests.push(more);
                }
                requests
            };
            metrics::EMBED_QUEUE_DEPTH.sub(requests.len() as i64);
            for r in &requests {
                metrics::EMBED_QUEUE_WAIT.observe(r.enqueued.elapsed().as_secs_f64());
            }
            self.process(requests);
        }
    }

    /// Embeds the texts of all `requests` together and answers each.
    fn process(&mut self, requests: Vec<Request>) {
        // Tokenise per request so that one bad input fails only its own request.
        let mut items: Vec<(usize, usize, Encoding)> = Vec::new();
        let mut results: Vec<Option<Result<Vec<Vec<f32>>>>> = Vec::with_capacity(requests.len());
        for (r, req) in requests.iter().enumerate() {
            let refs: Vec<&str> = req.texts.iter().map(String::as_str).collect();
            match self.tokenizer.encode_for_model(&refs) {
                Ok(encs) => {
                    items.extend(encs.into_iter().enumerate().map(|(i, e)| (r, i, e)));
                    results.push(Some(Ok(vec![Vec::new(); req.texts.len()])));
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        items.sort_by_key(|(_, _, e)| e.len());
        let lengths: Vec<usize> = items.iter().map(|(_, _, e)| e.len()).collect();
        for range in plan_batches(&lengths, self.max_batch_tokens) {
            let batch = &items[range];
            let encs: Vec<&Encoding> = batch.iter().map(|(_, _, e)| e).collect();
            let started = Instant::now();
            let out = self.model.run(&encs);
            metrics::EMBED_BATCH_SECONDS.observe(started.elapsed().as_secs_f64());
            metrics::EMBED_BATCH_SIZE.observe(batch.len() as f64);
            match out {
                Ok(vectors) => {
                    metrics::EMBEDDINGS_TOTAL.inc_by(vectors.len() as u64);
                    for ((r, i, _), v) in batch.iter().zip(vectors) {
                        if let Some(Ok(slots)) = &mut results[*r] {
                            slots[*i] = v;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "embedding batch failed");
                    for (r, _, _) in batch {
                        results[*r] = Some(Err(EmbedError::Inference(e.to_string())));
                    }
                }
            }
        }
        for (req, result) in requests.into_iter().zip(results) {
            let result = result.unwrap_or(Err(EmbedError::Stopped));
            // The caller may have gone away (timeout, disconnect); nothing to do then.
            let _ = req.reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::plan_batches;

    #[test]
    fn batches_respect_the_padded_token_cap() {
        let lengths = [5, 5, 10, 10, 10, 40, 200];
        let batches = plan_batches(&lengths, 40);
        assert_eq!(batches, vec![0..4, 4..5, 5..6, 6..7]);
        for b in &batches {
            let longest = lengths[b.end - 1];
            assert!(b.len() * longest <= 40 || b.len() == 1);
        }
    }

    #[test]
    fn every_item_lands_in_exactly_one_batch() {
        let lengths: Vec<usize> = (1..100).collect();
        let batches = plan_batches(&lengths, 256);
        let total: usize = batches.iter().map(|b| b.len()).sum();
        assert_eq!(total, lengths.len());
        assert!(batches.windows(2).all(|w| w[0].end == w[1].start));
    }
}
