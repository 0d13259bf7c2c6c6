//! The ONNX Runtime embedding backend: dedicated inference threads behind a cloneable handle.
//!
//! Callers send a request with a one-shot reply over one of two bounded channels, by
//! [`Priority`]; when the channel is full the caller gets [`EmbedError::Overloaded`] at once
//! (HTTP 429) instead of queueing without bound. Each inference thread owns one ONNX Runtime
//! session. It sorts a request's texts by length and cuts them into batches whose padded size
//! (batch size times the longest input) stays under a token cap, so short texts are not padded
//! to long ones.
//!
//! Interactive requests (queries) go first. A thread takes every interactive request that is
//! waiting and runs them together, so queries that arrive together share model runs. It takes
//! bulk work (ingestion) only when no interactive request waits, one request at a time, in small
//! batches (`embedding.bulk_batch_tokens`), and between two of them it serves any interactive
//! request that arrived meanwhile. A query therefore waits for at most one small bulk batch,
//! however large the ingestion, while the other threads keep ingesting.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use ragplane_config::EmbeddingConfig;
use tokenizers::Encoding;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::device::{Device, DevicePlan};
use super::pooling::mean_pool_normalize;
use super::tokenizer::TextTokenizer;
use super::{EmbedError, Embedder, Priority, Result};
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
    /// Builds a CPU session for `files` with `intra_threads` threads inside each operator.
    pub fn load(files: &ModelFiles, intra_threads: usize, dimension: usize) -> Result<Self> {
        Self::load_on(files, intra_threads, dimension, &Device::Cpu)
    }

    /// Builds a session on `device`. A GPU session fails (with an error, never a panic) when the
    /// ONNX Runtime library has no CUDA execution provider or CUDA's libraries are missing.
    pub fn load_on(
        files: &ModelFiles,
        intra_threads: usize,
        dimension: usize,
        device: &Device,
    ) -> Result<Self> {
        Self::load_spinning(files, intra_threads, dimension, device, true)
    }

    /// As [`Self::load_on`]; without `spin`, ONNX Runtime's threads sleep as soon as a run ends
    /// instead of spinning for the next one, which leaves the CPU to other work.
    pub fn load_spinning(
        files: &ModelFiles,
        intra_threads: usize,
        dimension: usize,
        device: &Device,
        spin: bool,
    ) -> Result<Self> {
        let environment = init_runtime(&files.ort_library)?;
        let load = |e: ort::Error<_>| EmbedError::Load(format!("failed to create session: {e}"));
        let mut builder =
            Session::builder(environment).map_err(|e| EmbedError::Load(e.to_string()))?;
        if let Device::Cuda { ordinal, .. } = device {
            let id = i32::try_from(*ordinal).unwrap_or(i32::MAX);
            builder = builder
                .with_execution_providers([ort::ep::CUDA::default()
                    .with_device_id(id)
                    .build()
                    .error_on_failure()])
                .map_err(|e| {
                    EmbedError::Load(format!(
                        "failed to register ONNX Runtime's CUDA execution provider on {device} \
                         (is {} the onnxruntime-gpu library, with CUDA 13 and cuDNN 9 on \
                         LD_LIBRARY_PATH?): {e}",
                        files.ort_library.display()
                    ))
                })?;
        }
        let session = builder
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(load)?
            .with_intra_threads(intra_threads)
            .map_err(load)?
            .with_intra_op_spinning(spin)
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

/// Vectors of one request and the number of model tokens they took.
#[derive(Debug, Clone, Default)]
pub struct Embedded {
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Model tokens of all inputs (special tokens included, after truncation).
    pub tokens: usize,
    /// How long the request waited in its queue before a model thread took it.
    pub queue_wait: Duration,
    /// Texts embedded together with this request's (its own included): the batch it joined.
    pub batch_texts: usize,
}

struct Request {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Embedded>>,
    enqueued: Instant,
    priority: Priority,
}

/// Cloneable handle to the inference threads.
#[derive(Clone)]
pub struct OnnxEmbedder {
    interactive: Sender<Request>,
    bulk: Sender<Request>,
    /// Inference threads still running; each one decrements it when it ends, even by a panic.
    running: Arc<AtomicUsize>,
    capacity: usize,
    model_name: Arc<str>,
    dimension: usize,
}

impl OnnxEmbedder {
    /// Loads the model and starts `cfg.sessions` inference threads on the CPU.
    pub fn start(cfg: &EmbeddingConfig) -> Result<Self> {
        let plan = DevicePlan {
            devices: vec![Device::Cpu],
            cpu_reason: None,
        };
        Ok(Self::start_on(cfg, &plan, false)?.0)
    }

    /// Loads `cfg.sessions` sessions on each device of `plan`, all fed by one queue, so a free
    /// device takes the next batch. A GPU whose sessions cannot be created is left out, and
    /// when no GPU is left the CPU is used instead, unless `require_gpu`, which makes either an
    /// error. The plan actually used is returned.
    pub fn start_on(
        cfg: &EmbeddingConfig,
        plan: &DevicePlan,
        require_gpu: bool,
    ) -> Result<(Self, DevicePlan)> {
        let files = ModelFiles::from_config(cfg)?;
        let tokenizer = TextTokenizer::from_file(&files.tokenizer, cfg.max_seq_len)?;
        // Load on the caller's thread so that a broken model fails start-up, not the first request.
        let mut sessions = Vec::new();
        let mut gpus = Vec::new();
        let mut failures = Vec::new();
        for device in plan.devices.iter().filter(|d| d.is_gpu()) {
            // Host-side work of a GPU session needs few threads.
            let loaded: Result<Vec<OnnxModel>> = (0..cfg.sessions)
                .map(|_| OnnxModel::load_on(&files, 1, cfg.dimension, device))
                .collect();
            match loaded {
                Ok(models) => {
                    sessions.extend(models.into_iter().map(|m| (device.clone(), m)));
                    gpus.push(device.clone());
                }
                Err(e) if !require_gpu => {
                    tracing::warn!(%device, error = %e, "GPU session failed; leaving this GPU out");
                    failures.push(e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        let used = if gpus.is_empty() {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let intra = if cfg.intra_threads == 0 {
                (cores / cfg.sessions).max(1)
            } else {
                cfg.intra_threads
            };
            // Sessions that serve only queries must not spin between them: that time belongs
            // to the bulk sessions.
            let spin = cfg.bulk_sessions == 0;
            for _ in 0..cfg.sessions {
                let m = OnnxModel::load_spinning(&files, intra, cfg.dimension, &Device::Cpu, spin)?;
                sessions.push((Device::Cpu, m));
            }
            DevicePlan {
                devices: vec![Device::Cpu],
                cpu_reason: if failures.is_empty() {
                    plan.cpu_reason.clone()
                } else {
                    Some(failures.join("; "))
                },
            }
        } else {
            DevicePlan {
                devices: gpus,
                cpu_reason: None,
            }
        };
        // Each class has its own bound, so a full ingestion backlog never turns queries away.
        let (interactive, interactive_rx) = crossbeam_channel::bounded(cfg.queue_capacity);
        let (bulk, bulk_rx) = crossbeam_channel::bounded(cfg.queue_capacity);
        let running = Arc::new(AtomicUsize::new(0));
        // Bulk-only sessions run on the CPU, so only when no GPU serves.
        let bulk_sessions = if used.devices.iter().any(Device::is_gpu) {
            0
        } else {
            cfg.bulk_sessions
        };
        let role = if bulk_sessions > 0 {
            Role::Interactive
        } else {
            Role::Shared
        };
        let parts = ThreadParts {
            tokenizer,
            interactive: interactive_rx,
            bulk: bulk_rx,
            max_batch_tokens: cfg.max_batch_tokens,
            bulk_batch_tokens: cfg.bulk_batch_tokens.min(cfg.max_batch_tokens),
        };
        for (i, (device, model)) in sessions.into_iter().enumerate() {
            let label = device.label();
            metrics::EMBED_DEVICE_SESSIONS
                .with_label_values(&[label.as_str()])
                .inc();
            let worker = parts.clone().thread(model, role, label);
            let alive = Running::new(&running);
            std::thread::Builder::new()
                .name(format!("embed-{i}"))
                .spawn(move || {
                    let _alive = alive;
                    worker.run();
                })
                .map_err(|e| EmbedError::Load(format!("failed to spawn inference thread: {e}")))?;
        }
        // A bulk session may use every core: it yields them to the query sessions.
        let bulk_intra = if cfg.intra_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cfg.intra_threads
        };
        for i in 0..bulk_sessions {
            // The session is created on its own thread after that thread's priority is lowered,
            // so ONNX Runtime's threads, which it starts then, inherit the lower priority.
            let (ready, loaded) = std::sync::mpsc::channel();
            let files = files.clone();
            let (intra, dimension, nice) = (bulk_intra, cfg.dimension, cfg.bulk_nice);
            let parts = parts.clone();
            let alive = Running::new(&running);
            std::thread::Builder::new()
                .name(format!("embed-bulk-{i}"))
                .spawn(move || {
                    let _alive = alive;
                    lower_thread_priority(nice);
                    match OnnxModel::load_on(&files, intra, dimension, &Device::Cpu) {
                        Ok(model) => {
                            let _ = ready.send(Ok(()));
                            parts.thread(model, Role::Bulk, Device::Cpu.label()).run();
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                        }
                    }
                })
                .map_err(|e| EmbedError::Load(format!("failed to spawn inference thread: {e}")))?;
            loaded.recv().map_err(|_| {
                EmbedError::Load("the bulk inference thread died while loading".into())
            })??;
            metrics::EMBED_DEVICE_SESSIONS
                .with_label_values(&[Device::Cpu.label().as_str()])
                .inc();
        }
        let labels: Vec<String> = used.devices.iter().map(ToString::to_string).collect();
        tracing::info!(model = %files.model.display(), sessions_per_device = cfg.sessions, devices = %labels.join(", "), "embedding model loaded");
        let me = Self {
            interactive,
            bulk,
            running,
            capacity: cfg.queue_capacity,
            model_name: cfg.model_name.as_str().into(),
            dimension: cfg.dimension,
        };
        Ok((me, used))
    }

    /// Whether the inference threads are still taking requests.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst) > 0
    }

    /// Embeds `texts` as work of class `priority` and also reports how many model tokens they
    /// took.
    pub async fn embed_counted(&self, texts: Vec<String>, priority: Priority) -> Result<Embedded> {
        if texts.is_empty() {
            return Ok(Embedded::default());
        }
        let span = tracing::info_span!(
            "embed",
            model = %self.model_name,
            class = priority.as_str(),
            texts = texts.len(),
            tokens = tracing::field::Empty,
            batch_texts = tracing::field::Empty,
            queue_wait_ms = tracing::field::Empty,
        );
        let out = self
            .embed_queued(texts, priority)
            .instrument(span.clone())
            .await;
        if let Ok(e) = &out {
            span.record("tokens", e.tokens);
            span.record("batch_texts", e.batch_texts);
            span.record("queue_wait_ms", e.queue_wait.as_secs_f64() * 1e3);
        }
        out
    }

    async fn embed_queued(&self, texts: Vec<String>, priority: Priority) -> Result<Embedded> {
        let (reply, rx) = oneshot::channel();
        let req = Request {
            texts,
            reply,
            enqueued: Instant::now(),
            priority,
        };
        let queue = match priority {
            Priority::Interactive => &self.interactive,
            Priority::Bulk => &self.bulk,
        };
        queue.try_send(req).map_err(|e| match e {
            TrySendError::Full(_) => EmbedError::Overloaded {
                capacity: self.capacity,
            },
            TrySendError::Disconnected(_) => EmbedError::Stopped,
        })?;
        metrics::EMBED_QUEUE_DEPTH
            .with_label_values(&[priority.as_str()])
            .inc();
        rx.await.map_err(|_| EmbedError::Stopped)?
    }
}

/// Counts one running inference thread for [`OnnxEmbedder::is_running`] until dropped.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

/// Adds `nice` to the calling thread's niceness (Linux keeps it per thread; threads started
/// later from this one inherit it). Raising niceness needs no privilege; a failure only costs
/// query latency under ingestion, so it is logged and otherwise ignored.
fn lower_thread_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let tid = Some(rustix::thread::gettid());
        let result = rustix::process::getpriority_process(tid)
            .and_then(|now| rustix::process::setpriority_process(tid, (now + nice).min(19)));
        if let Err(e) = result {
            tracing::warn!(error = %e, nice, "could not lower the bulk inference thread's priority");
        }
    }
}

/// What every inference thread shares: the tokenizer, the queues and the batch caps.
#[derive(Clone)]
struct ThreadParts {
    tokenizer: TextTokenizer,
    interactive: Receiver<Request>,
    bulk: Receiver<Request>,
    max_batch_tokens: usize,
    bulk_batch_tokens: usize,
}

impl ThreadParts {
    fn thread(self, model: OnnxModel, role: Role, device: String) -> InferenceThread {
        InferenceThread {
            model,
            tokenizer: self.tokenizer,
            interactive: self.interactive,
            bulk: self.bulk,
            max_batch_tokens: self.max_batch_tokens,
            bulk_batch_tokens: self.bulk_batch_tokens,
            device,
            role,
        }
    }
}

/// What an inference thread takes from the two queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Queries first, ingestion in small batches between them.
    Shared,
    /// Queries only (bulk sessions take the ingestion).
    Interactive,
    /// Ingestion only, in full batches, at a lower OS priority.
    Bulk,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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

    async fn embed_as(&self, texts: Vec<String>, priority: Priority) -> Result<Vec<Vec<f32>>> {
        Ok(self.embed_counted(texts, priority).await?.vectors)
    }
}

struct InferenceThread {
    model: OnnxModel,
    tokenizer: TextTokenizer,
    interactive: Receiver<Request>,
    bulk: Receiver<Request>,
    max_batch_tokens: usize,
    bulk_batch_tokens: usize,
    device: String,
    role: Role,
}

/// Takes `first` and every request waiting behind it in `rx`.
fn drain(first: Request, rx: &Receiver<Request>) -> Vec<Request> {
    let mut requests = vec![first];
    requests.extend(rx.try_iter());
    requests
}

impl InferenceThread {
    fn run(mut self) {
        loop {
            let first = match self.role {
                Role::Shared => self.next_shared(),
                Role::Interactive => self.interactive.recv().ok(),
                Role::Bulk => self.bulk.recv().ok(),
            };
            let Some(first) = first else { return };
            match first.priority {
                Priority::Interactive => {
                    let requests = drain(first, &self.interactive);
                    self.process(requests, self.max_batch_tokens);
                }
                // Nothing waits behind a bulk-only session's batches.
                Priority::Bulk if self.role == Role::Bulk => {
                    self.process(vec![first], self.max_batch_tokens);
                }
                Priority::Bulk => self.process(vec![first], self.bulk_batch_tokens),
            }
        }
    }

    /// The next request for a shared session: interactive work whenever some waits (the
    /// biased select tries the queues in order), else bulk; it blocks while neither has any.
    /// `None` once the queues are closed.
    fn next_shared(&self) -> Option<Request> {
        crossbeam_channel::select_biased! {
            recv(self.interactive) -> r => r.ok(),
            recv(self.bulk) -> r => r.ok(),
        }
    }

    /// Serves the interactive requests waiting now; called between two bulk model runs.
    fn serve_waiting_interactive(&mut self) {
        if let Ok(first) = self.interactive.try_recv() {
            let requests = drain(first, &self.interactive);
            self.process(requests, self.max_batch_tokens);
        }
    }

    /// Embeds the texts of all `requests` together, in batches of at most `max_tokens` padded
    /// tokens, and answers each. Bulk work serves waiting interactive requests between batches.
    fn process(&mut self, requests: Vec<Request>, max_tokens: usize) {
        // Only a shared session has queries to serve between its bulk batches.
        let bulk =
            self.role == Role::Shared && requests.iter().all(|r| r.priority == Priority::Bulk);
        let mut waits = Vec::with_capacity(requests.len());
        for r in &requests {
            let class = r.priority.as_str();
            let waited = r.enqueued.elapsed();
            metrics::EMBED_QUEUE_DEPTH.with_label_values(&[class]).dec();
            metrics::EMBED_QUEUE_WAIT
                .with_label_values(&[class])
                .observe(waited.as_secs_f64());
            waits.push(waited);
        }
        let batch_texts = requests.iter().map(|r| r.texts.len()).sum();
        // Tokenise per request so that one bad input fails only its own request.
        let mut items: Vec<(usize, usize, Encoding)> = Vec::new();
        let mut results: Vec<Option<Result<Embedded>>> = Vec::with_capacity(requests.len());
        for (r, req) in requests.iter().enumerate() {
            let refs: Vec<&str> = req.texts.iter().map(String::as_str).collect();
            match self.tokenizer.encode_for_model(&refs) {
                Ok(encs) => {
                    let tokens = encs.iter().map(Encoding::len).sum();
                    items.extend(encs.into_iter().enumerate().map(|(i, e)| (r, i, e)));
                    results.push(Some(Ok(Embedded {
                        vectors: vec![Vec::new(); req.texts.len()],
                        tokens,
                        queue_wait: waits[r],
                        batch_texts,
                    })));
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        items.sort_by_key(|(_, _, e)| e.len());
        let lengths: Vec<usize> = items.iter().map(|(_, _, e)| e.len()).collect();
        for (n, range) in plan_batches(&lengths, max_tokens).into_iter().enumerate() {
            if bulk && n > 0 {
                self.serve_waiting_interactive();
            }
            let batch = &items[range];
            let encs: Vec<&Encoding> = batch.iter().map(|(_, _, e)| e).collect();
            let started = Instant::now();
            let out = self.model.run(&encs);
            metrics::EMBED_BATCH_SECONDS.observe(started.elapsed().as_secs_f64());
            metrics::EMBED_BATCH_SIZE.observe(batch.len() as f64);
            metrics::EMBED_DEVICE_BATCH_SIZE
                .with_label_values(&[self.device.as_str()])
                .observe(batch.len() as f64);
            match out {
                Ok(vectors) => {
                    metrics::EMBEDDINGS_TOTAL.inc_by(vectors.len() as u64);
                    metrics::EMBED_DEVICE_EMBEDDINGS
                        .with_label_values(&[self.device.as_str()])
                        .inc_by(vectors.len() as u64);
                    for ((r, i, _), v) in batch.iter().zip(vectors) {
                        if let Some(Ok(slots)) = &mut results[*r] {
                            slots.vectors[*i] = v;
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
