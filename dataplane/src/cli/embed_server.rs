//! Flags of `ragplane embed-server`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use ragplane_config::{Config, DeviceSelection};

use super::{load_config, ConfigArgs};

/// Flags of `ragplane embed-server`; each overrides the `[embed_server]` or `[embedding]` setting.
#[derive(Debug, Clone, Args)]
pub struct EmbedServerArgs {
    /// Configuration source.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address to listen on (default 127.0.0.1:8090; port 0 picks a free port).
    #[arg(long, env = "RAGPLANE_EMBED_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Devices: `auto` (every GPU, else the CPU), `cpu`, or CUDA ordinals such as `0,1`.
    #[arg(long, env = "RAGPLANE_EMBED_DEVICES")]
    pub devices: Option<DeviceSelection>,
    /// Fail at start-up instead of falling back to the CPU when no GPU can be used.
    #[arg(long, env = "RAGPLANE_EMBED_REQUIRE_GPU")]
    pub require_gpu: bool,
    /// Inference sessions per device.
    #[arg(long, env = "RAGPLANE_EMBED_SESSIONS_PER_DEVICE")]
    pub sessions_per_device: Option<usize>,
    /// Cap on padded tokens (batch size times longest input) per model run.
    #[arg(long, env = "RAGPLANE_EMBED_MAX_BATCH_TOKENS")]
    pub max_batch_tokens: Option<usize>,
    /// Requests that may wait for a model run before the server answers 429.
    #[arg(long, env = "RAGPLANE_EMBED_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Directory with model.onnx and tokenizer.json.
    #[arg(long, env = "RAGPLANE_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Path of libonnxruntime.so (the onnxruntime-gpu one for GPUs).
    #[arg(long, env = "RAGPLANE_ORT_LIBRARY")]
    pub ort_library: Option<PathBuf>,
    /// Intra-op threads of each CPU session; 0 divides the cores between the sessions.
    #[arg(long, env = "RAGPLANE_EMBED_INTRA_THREADS")]
    pub intra_threads: Option<usize>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "RAGPLANE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, for example `info,ragplane=debug`.
    #[arg(long, env = "RAGPLANE_LOG")]
    pub log_filter: Option<String>,
}

impl EmbedServerArgs {
    /// The configuration with this command's flags applied.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut c = load_config(&self.config)?;
        let s = &mut c.embed_server;
        if let Some(l) = self.listen {
            s.listen = l;
        }
        if let Some(d) = self.devices {
            s.devices = d;
        }
        if self.require_gpu {
            s.require_gpu = true;
        }
        if let Some(n) = self.sessions_per_device {
            s.sessions_per_device = n;
        }
        if self.max_batch_tokens.is_some() {
            s.max_batch_tokens = self.max_batch_tokens;
        }
        if let Some(n) = self.queue_capacity {
            s.queue_capacity = n;
        }
        if self.model_dir.is_some() {
            c.embedding.model_dir = self.model_dir;
        }
        if self.ort_library.is_some() {
            c.embedding.ort_library = self.ort_library;
        }
        if let Some(n) = self.intra_threads {
            c.embedding.intra_threads = n;
        }
        if let Some(f) = self.log_format {
            c.telemetry.log_format = super::parse_log_format(&f)?;
        }
        if let Some(f) = self.log_filter {
            c.telemetry.log_filter = f;
        }
        c.validate()?;
        Ok(c)
    }
}
