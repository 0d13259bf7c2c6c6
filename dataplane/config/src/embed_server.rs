//! Settings of `ragplane embed-server` (the `[embed_server]` section) and of the remote embedder
//! client that reaches it (`[embedding.remote]`).
//!
//! The server reuses the `[embedding]` section for the model files, the ONNX Runtime library,
//! the model name, dimension and sequence length, so a server and its clients agree on the model
//! by sharing one section.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Config, ConfigError};

/// Which devices run the model.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSelection {
    /// Every GPU the CUDA driver lists; the CPU when there is none.
    #[default]
    Auto,
    /// The CPU only, even when GPUs are present.
    Cpu,
    /// These CUDA ordinals.
    Gpus(Vec<usize>),
}

impl FromStr for DeviceSelection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" | "" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            list => {
                let mut ordinals = Vec::new();
                for part in list.split(',') {
                    let n = part.trim().parse::<usize>().map_err(|_| {
                        format!("expected `auto`, `cpu` or CUDA ordinals like `0,1`, got {s:?}")
                    })?;
                    if !ordinals.contains(&n) {
                        ordinals.push(n);
                    }
                }
                Ok(Self::Gpus(ordinals))
            }
        }
    }
}

impl TryFrom<String> for DeviceSelection {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for DeviceSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Gpus(ids) => {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                f.write_str(&ids.join(","))
            }
        }
    }
}

impl From<DeviceSelection> for String {
    fn from(d: DeviceSelection) -> Self {
        d.to_string()
    }
}

/// Settings of `ragplane embed-server`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedServerConfig {
    /// Address the embedding server listens on.
    pub listen: SocketAddr,
    /// Devices to run on: `auto` (every GPU, else the CPU), `cpu`, or CUDA ordinals such as
    /// `0,1`. One model session runs per GPU.
    pub devices: DeviceSelection,
    /// Refuse to start without a usable GPU instead of falling back to the CPU.
    pub require_gpu: bool,
    /// Inference sessions per device (on the CPU the cores are split between them).
    pub sessions_per_device: usize,
    /// Cap on padded tokens (batch size times longest input) per model run. When absent:
    /// `embedding.max_batch_tokens` on the CPU and 32,768 on a GPU.
    pub max_batch_tokens: Option<usize>,
    /// Requests waiting for a model run; beyond this the server answers 429 with Retry-After.
    pub queue_capacity: usize,
    /// Most texts in one request.
    pub max_inputs_per_request: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Seconds to wait for in-flight requests on shutdown.
    pub shutdown_grace_secs: u64,
    /// Seconds a request may run; past it the server answers 503 with Retry-After.
    pub request_timeout_secs: u64,
}

/// Token cap per batch on a GPU when none is configured.
pub const DEFAULT_GPU_MAX_BATCH_TOKENS: usize = 32_768;

impl Default for EmbedServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            devices: DeviceSelection::Auto,
            require_gpu: false,
            sessions_per_device: 1,
            max_batch_tokens: None,
            queue_capacity: 1024,
            max_inputs_per_request: 2048,
            max_body_bytes: 16 * 1024 * 1024,
            shutdown_grace_secs: 20,
            request_timeout_secs: 120,
        }
    }
}

/// The remote embedder: `ragplane embed-server` instances reached over HTTP instead of a model
/// in this process. Present means selected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteEmbedderConfig {
    /// Base URLs of the servers, for example `http://embed-0.embed:8090`.
    pub endpoints: Vec<String>,
    /// Attempts per request, each on a different endpoint where there is one.
    pub max_attempts: usize,
    /// Seconds allowed for one attempt.
    pub timeout_secs: u64,
    /// Milliseconds allowed to open a connection.
    pub connect_timeout_ms: u64,
    /// Milliseconds an endpoint is avoided after it failed.
    pub cooldown_ms: u64,
    /// Texts per request; a larger call is split and its parts are sent concurrently.
    pub max_texts_per_request: usize,
    /// What the servers speak: `native` (`ragplane embed-server`'s `/v1/embed`, f32 bodies) or
    /// `openai` (`/v1/embeddings`, which text-embeddings-inference and `ragplane embed-server`
    /// both serve).
    pub protocol: RemoteProtocol,
}

/// Wire protocol of the remote embedding servers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RemoteProtocol {
    /// `POST /v1/embed` with little-endian f32 vectors back (`ragplane embed-server`).
    #[default]
    Native,
    /// `POST /v1/embeddings` in OpenAI's format.
    Openai,
}

impl Default for RemoteEmbedderConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            max_attempts: 3,
            timeout_secs: 30,
            connect_timeout_ms: 1000,
            cooldown_ms: 2000,
            max_texts_per_request: 256,
            protocol: RemoteProtocol::Native,
        }
    }
}

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Violations in `[embed_server]` and `[embedding.remote]`.
pub(crate) fn check(c: &Config) -> Vec<ConfigError> {
    let mut out = Vec::new();
    let s = &c.embed_server;
    if s.sessions_per_device == 0 {
        out.push(err(
            "embed_server.sessions_per_device",
            "must be at least 1",
        ));
    }
    if let Some(t) = s.max_batch_tokens {
        if t < c.embedding.max_seq_len {
            out.push(err(
                "embed_server.max_batch_tokens",
                format!(
                    "must be at least embedding.max_seq_len ({})",
                    c.embedding.max_seq_len
                ),
            ));
        }
    }
    if s.queue_capacity == 0 {
        out.push(err("embed_server.queue_capacity", "must be at least 1"));
    }
    if s.max_inputs_per_request == 0 {
        out.push(err(
            "embed_server.max_inputs_per_request",
            "must be at least 1",
        ));
    }
    if s.max_body_bytes < 1024 {
        out.push(err("embed_server.max_body_bytes", "must be at least 1024"));
    }
    if s.request_timeout_secs == 0 {
        out.push(err(
            "embed_server.request_timeout_secs",
            "must be at least 1",
        ));
    }
    if s.require_gpu && s.devices == DeviceSelection::Cpu {
        out.push(err(
            "embed_server.require_gpu",
            "cannot be set together with embed_server.devices = \"cpu\"",
        ));
    }
    if let Some(r) = &c.embedding.remote {
        if r.endpoints.is_empty() {
            out.push(err(
                "embedding.remote.endpoints",
                "must list at least one URL",
            ));
        }
        for (i, url) in r.endpoints.iter().enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                out.push(err(
                    &format!("embedding.remote.endpoints[{i}]"),
                    format!("must be an http:// or https:// URL, got {url:?}"),
                ));
            }
        }
        if r.max_attempts == 0 {
            out.push(err("embedding.remote.max_attempts", "must be at least 1"));
        }
        if r.max_texts_per_request == 0 {
            out.push(err(
                "embedding.remote.max_texts_per_request",
                "must be at least 1",
            ));
        }
        if r.timeout_secs == 0 {
            out.push(err("embedding.remote.timeout_secs", "must be at least 1"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_from_words_and_lists() {
        assert_eq!("auto".parse::<DeviceSelection>(), Ok(DeviceSelection::Auto));
        assert_eq!("cpu".parse::<DeviceSelection>(), Ok(DeviceSelection::Cpu));
        assert_eq!(
            "1, 0,1".parse::<DeviceSelection>(),
            Ok(DeviceSelection::Gpus(vec![1, 0]))
        );
        assert!("gpu0".parse::<DeviceSelection>().is_err());
        assert_eq!(DeviceSelection::Gpus(vec![0, 2]).to_string(), "0,2");
    }

    #[test]
    fn sections_parse_from_toml_and_are_validated() {
        let c: Config = toml::from_str(
            r#"
            [embed_server]
            listen = "0.0.0.0:8090"
            devices = "0,1"
            require_gpu = true
            [embedding.remote]
            endpoints = ["http://a:8090", "b:8090"]
            "#,
        )
        .unwrap();
        assert_eq!(c.embed_server.devices, DeviceSelection::Gpus(vec![0, 1]));
        let r = c.embedding.remote.as_ref().unwrap();
        assert_eq!(r.max_attempts, 3);
        let e = c.validate().unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["embedding.remote.endpoints[1]"]);
        let back: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn bad_device_lists_name_the_problem() {
        let e = toml::from_str::<Config>("[embed_server]\ndevices = \"gpu\"").unwrap_err();
        assert!(e.to_string().contains("CUDA ordinals"), "{e}");
    }
}
