//! Command line: `serve`, `worker`, `embed-server`, `migrate`, and the HTTP clients `ingest`,
//! `search`, `query`, `eval`.
//!
//! Configuration is layered: built-in defaults, then the TOML file (`--config`), then
//! `RAGPLANE__SECTION__KEY` environment variables, then flags (each also readable from its own
//! `RAGPLANE_*` variable).

mod client;
mod embed_server;
mod eval;
mod ingest;
mod keys;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use ragplane_config::{Config, LogFormat, Secret, TelemetryConfig};

pub use client::Client;
pub use embed_server::EmbedServerArgs;

/// ragplane: retrieval-augmented generation at scale.
#[derive(Debug, Parser)]
#[command(name = "ragplane", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (and, unless disabled, the queue workers).
    Serve(ServeArgs),
    /// Run queue workers only (no API), for a separate worker pool.
    Worker(WorkerArgs),
    /// Create or upgrade the metadata database schema, then exit.
    Migrate(ConfigArgs),
    /// Upload files or directories (recursively) to a collection.
    Ingest(ingest::IngestArgs),
    /// Retrieve the chunks nearest to a query.
    Search(SearchArgs),
    /// Answer a question from a collection, with sources.
    Query(SearchArgs),
    /// Re-embed every document of a collection with the server's configured model.
    Reindex(ingest::ReindexArgs),
    /// Measure retrieval quality (nDCG@10, recall@k) on a BEIR-format folder.
    Eval(eval::EvalArgs),
    /// List, create, revoke and rotate a tenant's API keys.
    Keys(keys::KeysArgs),
    /// Serve the embedding model over HTTP (OpenAI /v1/embeddings and native /v1/embed), on
    /// GPUs when present, else on the CPU.
    EmbedServer(EmbedServerArgs),
    /// Parse one document from stdin under limits, answering on stdout: the child process of
    /// isolated parsing (`[parsing]`), not for direct use.
    #[command(hide = true)]
    ParseDocument(ParseDocumentArgs),
}

/// Flags of the hidden `parse-document` subcommand, set by the parent process.
#[derive(Debug, Clone, Args)]
pub struct ParseDocumentArgs {
    /// Media type of the document.
    #[arg(long)]
    pub format: String,
    /// Largest extracted text, in bytes.
    #[arg(long)]
    pub max_text_bytes: usize,
    /// Address space limit, in MiB.
    #[arg(long)]
    pub max_memory_mib: u64,
    /// CPU time limit, in seconds.
    #[arg(long)]
    pub cpu_secs: u64,
}

impl ParseDocumentArgs {
    /// Limits this process, then parses stdin to stdout. Runs before any async runtime or
    /// thread starts, so the limits cover everything the process does.
    pub fn run(self) -> anyhow::Result<()> {
        use ragplane_parse::child;
        let format = ragplane_parse::Format::from_media_type(&self.format)?;
        child::limit_self(child::Limits::new(self.max_memory_mib, self.cpu_secs))
            .context("failed to set the parser's limits")?;
        let budget = ragplane_parse::Budget {
            max_text_bytes: self.max_text_bytes,
        };
        child::serve(
            format,
            budget,
            std::io::stdin().lock(),
            std::io::stdout().lock(),
        )
        .context("failed to parse")
    }
}

/// Where the configuration comes from, and the settings most often overridden.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "RAGPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for all embedded data (default ./ragplane-data).
    #[arg(long, env = "RAGPLANE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Flags of `ragplane serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Configuration source.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "RAGPLANE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory with model.onnx and tokenizer.json.
    #[arg(long, env = "RAGPLANE_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Path of libonnxruntime.so.
    #[arg(long, env = "RAGPLANE_ORT_LIBRARY")]
    pub ort_library: Option<PathBuf>,
    /// Turn authentication off (local use only).
    #[arg(long, env = "RAGPLANE_DISABLE_AUTH")]
    pub disable_auth: bool,
    /// Admin key to create on first start instead of a random one.
    #[arg(long, env = "RAGPLANE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Do not run queue workers in this process.
    #[arg(long, env = "RAGPLANE_NO_WORKERS")]
    pub no_workers: bool,
    /// Generation provider: `ollama` or `openai`.
    #[arg(long, env = "RAGPLANE_GENERATOR", requires_all = ["generator_url", "generator_model"])]
    pub generator: Option<String>,
    /// Base URL of the generation server.
    #[arg(long, env = "RAGPLANE_GENERATOR_URL")]
    pub generator_url: Option<String>,
    /// Model name for the generation server.
    #[arg(long, env = "RAGPLANE_GENERATOR_MODEL")]
    pub generator_model: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "RAGPLANE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, for example `info,ragplane=debug`.
    #[arg(long, env = "RAGPLANE_LOG")]
    pub log_filter: Option<String>,
}

/// Flags of `ragplane worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Configuration source.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Queues to take jobs from, comma-separated; `documents` is the only one.
    #[arg(
        long,
        env = "RAGPLANE_QUEUES",
        value_delimiter = ',',
        default_value = "documents"
    )]
    pub queues: Vec<String>,
    /// Jobs run at once (default: workers.concurrency).
    #[arg(long, env = "RAGPLANE_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Address of /healthz, /readyz and /metrics (default: server.listen).
    #[arg(long, env = "RAGPLANE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "RAGPLANE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, for example `info,ragplane=debug`.
    #[arg(long, env = "RAGPLANE_LOG")]
    pub log_filter: Option<String>,
}

/// Values of `--mode`.
pub const SEARCH_MODES: [&str; 3] = ["dense", "keyword", "hybrid"];

/// Flags of `ragplane search` and `ragplane query`.
#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// Server connection.
    #[command(flatten)]
    pub conn: client::ConnArgs,
    /// Collection to search.
    #[arg(long, short, env = "RAGPLANE_COLLECTION", default_value = "default")]
    pub collection: String,
    /// Number of chunks.
    #[arg(long, short = 'k', env = "RAGPLANE_TOP_K", default_value_t = 5)]
    pub top_k: usize,
    /// Retrieval mode (default: the server's `search.default_mode`).
    #[arg(long, short, env = "RAGPLANE_SEARCH_MODE", value_parser = SEARCH_MODES)]
    pub mode: Option<String>,
    /// Print the raw JSON response.
    #[arg(long, env = "RAGPLANE_JSON")]
    pub json: bool,
    /// The query text.
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
}

/// Loads the layered configuration.
pub fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    load_config_over(args, Figment::new())
}

/// [`load_config`] with `flags` (settings given as command-line flags) over the file and the
/// environment.
fn load_config_over(args: &ConfigArgs, flags: Figment) -> anyhow::Result<Config> {
    let mut user = Figment::new();
    if let Some(path) = &args.config {
        anyhow::ensure!(
            path.exists(),
            "configuration file {} does not exist",
            path.display()
        );
        user = user.merge(Toml::file(path));
    }
    user = user
        .merge(Env::prefixed("RAGPLANE__").split("__"))
        .merge(flags);
    let mut config =
        ragplane_config::load::from_layers(user).context("failed to read the configuration")?;
    if let Some(dir) = &args.data_dir {
        config.data_dir.clone_from(dir);
    }
    Ok(config)
}

impl ServeArgs {
    /// The configuration with this command's flags applied.
    pub fn into_config(self) -> anyhow::Result<Config> {
        // The generator flags are one more layer: the file's or the environment's other
        // generation settings (max_tokens, timeouts, the pool) still apply.
        let mut flags = Figment::new();
        if let (Some(p), Some(url), Some(model)) =
            (&self.generator, &self.generator_url, &self.generator_model)
        {
            anyhow::ensure!(
                p == "ollama" || p == "openai",
                "--generator must be ollama or openai, got {p:?}"
            );
            flags = flags
                .merge(Serialized::default("generation.provider", p))
                .merge(Serialized::default("generation.url", url))
                .merge(Serialized::default("generation.model", model));
        }
        let mut c = load_config_over(&self.config, flags)?;
        if let Some(l) = self.listen {
            c.server.listen = l;
        }
        if self.model_dir.is_some() {
            c.embedding.model_dir = self.model_dir;
        }
        if self.ort_library.is_some() {
            c.embedding.ort_library = self.ort_library;
        }
        if self.disable_auth {
            c.auth.disabled = true;
        }
        if let Some(k) = self.admin_key {
            c.auth.admin_key = Some(Secret::new(k));
        }
        if self.no_workers {
            c.workers.enabled = false;
        }
        if let Some(f) = self.log_format {
            c.telemetry.log_format = parse_log_format(&f)?;
        }
        if let Some(f) = self.log_filter {
            c.telemetry.log_filter = f;
        }
        c.validate()?;
        Ok(c)
    }
}

pub(crate) fn parse_log_format(f: &str) -> anyhow::Result<LogFormat> {
    f.parse().map_err(|e| anyhow::anyhow!("--log-format {e}"))
}

/// Sets up logging to stderr and, when configured, the export of traces. Keep the guard for as
/// long as the command runs: dropping it exports the last spans.
pub fn init_telemetry(t: &TelemetryConfig) -> anyhow::Result<ragplane_telemetry::Telemetry> {
    Ok(ragplane_telemetry::init(
        "ragplane",
        t.log_format,
        &t.log_filter,
        &t.traces,
    )?)
}

/// On SIGHUP, reads the configuration again and applies its `telemetry.log_filter`; the rest of
/// the configuration takes a restart. A filter given as `--log-filter` (or `RAGPLANE_LOG`) keeps
/// its precedence over the file's, as at start. Every long-running command (`serve`, `worker`,
/// `embed-server`) listens, so that SIGHUP never ends one.
fn reload_log_filter_on_hangup(source: ConfigArgs, flag: Option<String>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; the log filter is the one set at start");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let filter = match (&flag, load_config(&source)) {
                (Some(f), Ok(c)) => {
                    if c.telemetry.log_filter != *f {
                        tracing::warn!(
                            file = %c.telemetry.log_filter,
                            "SIGHUP: --log-filter (RAGPLANE_LOG) is set and takes precedence over telemetry.log_filter"
                        );
                    }
                    f.clone()
                }
                (None, Ok(c)) => c.telemetry.log_filter,
                (_, Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "SIGHUP: the configuration could not be read");
                    continue;
                }
            };
            if let Err(e) = ragplane_telemetry::set_filter(&filter) {
                tracing::warn!(error = %e, "SIGHUP: the log filter was not applied");
            }
        }
    });
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let (source, flag) = (args.config.clone(), args.log_filter.clone());
            let config = args.into_config()?;
            let _telemetry = init_telemetry(&config.telemetry)?;
            reload_log_filter_on_hangup(source, flag);
            crate::server::run(config).await
        }
        Command::Worker(args) => {
            let mut config = load_config(&args.config)?;
            if let Some(l) = args.listen {
                config.server.listen = l;
            }
            if let Some(c) = args.concurrency {
                config.workers.concurrency = c;
            }
            if let Some(f) = &args.log_format {
                config.telemetry.log_format = parse_log_format(f)?;
            }
            if let Some(f) = &args.log_filter {
                config.telemetry.log_filter.clone_from(f);
            }
            config.validate()?;
            let _telemetry = init_telemetry(&config.telemetry)?;
            reload_log_filter_on_hangup(args.config.clone(), args.log_filter.clone());
            let queues = args.queues.iter().map(|q| q.trim().to_string()).collect();
            crate::server::run_workers(config, queues).await
        }
        Command::Migrate(args) => {
            let config = load_config(&args)?;
            let _telemetry = init_telemetry(&config.telemetry)?;
            use crate::metadata::MetadataStore;
            if let ragplane_config::MetadataConfig::Postgres(p) = &config.metadata {
                crate::metadata::PostgresStore::connect(p)?
                    .migrate()
                    .await?;
                println!("metadata database (PostgreSQL) is up to date");
                return Ok(());
            }
            let store = crate::metadata::SqliteStore::open(&config.sqlite_path()).await?;
            store.migrate().await?;
            println!(
                "metadata database {} is up to date",
                config.sqlite_path().display()
            );
            Ok(())
        }
        Command::Ingest(args) => ingest::run(args).await,
        Command::Search(args) => client::search(args, false).await,
        Command::Query(args) => client::search(args, true).await,
        Command::Eval(args) => eval::run(args).await,
        Command::Keys(args) => keys::run(args).await,
        Command::Reindex(args) => ingest::reindex(args).await,
        Command::EmbedServer(args) => {
            let (source, flag) = (args.config.clone(), args.log_filter.clone());
            let config = args.into_config()?;
            let _telemetry = init_telemetry(&config.telemetry)?;
            reload_log_filter_on_hangup(source, flag);
            crate::embed_server::run(config).await
        }
        // `main` runs it before starting the runtime; here for completeness.
        Command::ParseDocument(args) => tokio::task::spawn_blocking(|| args.run()).await?,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `toml` with the variables `env` set, in a jail: figment serialises jailed tests
    /// and restores the environment after each.
    // The closure's error type is figment's own.
    #[allow(clippy::result_large_err)]
    fn load_with(toml: &str, env: &[(&str, &str)]) -> Config {
        let mut out = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", toml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            let args = ConfigArgs {
                config: Some(jail.directory().join("c.toml")),
                data_dir: None,
            };
            out = Some(load_config(&args).map_err(|e| format!("{e:#}"))?);
            Ok(())
        });
        out.unwrap()
    }

    fn load(toml: &str) -> anyhow::Result<Config> {
        Ok(load_with(toml, &[]))
    }

    #[test]
    fn a_list_variable_fills_the_read_replicas() {
        // As the operator renders it: one variable per Secret, expanded by Kubernetes into a list.
        let c = load_with(
            "[metadata]\nbackend = \"postgres\"\n",
            &[
                ("RAGPLANE__METADATA__URL", "postgres://u:p@primary:5432/rag"),
                (
                    "RAGPLANE__METADATA__REPLICA_URLS",
                    r#"["postgres://u:p@r1:5432/rag?sslmode=require", "postgres://u:p@r2:5432/rag"]"#,
                ),
            ],
        );
        let ragplane_config::MetadataConfig::Postgres(p) = &c.metadata else {
            panic!("{:?}", c.metadata)
        };
        let urls: Vec<&str> = p.replica_urls.iter().map(|u| u.expose()).collect();
        assert_eq!(
            urls,
            [
                "postgres://u:p@r1:5432/rag?sslmode=require",
                "postgres://u:p@r2:5432/rag"
            ]
        );
        c.validate().unwrap();
    }

    #[test]
    fn choosing_a_backend_drops_the_default_backends_settings() {
        let c = load(
            "[vectors]\nbackend = \"qdrant\"\nurl = \"http://q:6334\"\n\n[queue]\nbackend = \"redis\"\n\n[redis]\nurl = \"redis://r:6379\"\n",
        )
        .unwrap();
        assert!(matches!(
            c.vectors,
            ragplane_config::VectorIndexConfig::Qdrant(_)
        ));
        assert!(matches!(c.queue, ragplane_config::QueueConfig::Redis(_)));
        assert_eq!(
            c.queue.settings().max_attempts,
            5,
            "the chosen backend's own defaults"
        );
    }

    #[test]
    // The closure's error type is figment's own.
    #[allow(clippy::result_large_err)]
    fn generation_settings_without_a_provider_are_refused_not_dropped() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("RAGPLANE__GENERATION__MAX_TOKENS", "16");
            let args = ConfigArgs {
                config: None,
                data_dir: None,
            };
            let err = load_config(&args).expect_err("max_tokens without a provider");
            assert!(format!("{err:#}").contains("max_tokens"), "{err:#}");
            Ok(())
        });
    }

    #[test]
    // The closure's error type is figment's own.
    #[allow(clippy::result_large_err)]
    fn the_generator_flags_keep_the_other_generation_settings() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("RAGPLANE__GENERATION__MAX_TOKENS", "16");
            let cli = Cli::try_parse_from([
                "ragplane",
                "serve",
                "--generator",
                "ollama",
                "--generator-url",
                "http://127.0.0.1:11434",
                "--generator-model",
                "m",
            ])
            .map_err(|e| e.to_string())?;
            let Command::Serve(args) = cli.command else {
                panic!("not serve")
            };
            let c = args.into_config().map_err(|e| format!("{e:#}"))?;
            let ragplane_config::GenerationConfig::Ollama(ep) = &c.generation else {
                panic!("{:?}", c.generation)
            };
            assert_eq!(
                (ep.url.as_str(), ep.model.as_str(), ep.max_tokens),
                ("http://127.0.0.1:11434", "m", 16)
            );
            Ok(())
        });
    }

    #[test]
    fn a_setting_of_the_default_backend_keeps_its_other_defaults() {
        let c = load("[queue]\nmax_attempts = 9\n").unwrap();
        assert!(matches!(c.queue, ragplane_config::QueueConfig::Sqlite(_)));
        assert_eq!(c.queue.settings().max_attempts, 9);
        assert_eq!(c.queue.settings().visibility_timeout_secs, 300);
    }
}
