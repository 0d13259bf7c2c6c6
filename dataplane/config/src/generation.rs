//! Settings of the generation endpoint pool: how requests are spread over several servers of
//! one model, when a server is taken out of rotation and let back in, and the timeouts.
//!
//! The pool's servers are listed on [`crate::GeneratorEndpoint`]: `url` for one server, `urls`
//! for more (both may be given; `url` comes first).

use serde::{Deserialize, Serialize};

use crate::GeneratorEndpoint;

/// How the generator pool routes, checks and times requests (`[generation.pool]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationPoolConfig {
    /// Requests one server handles at once. When every healthy server is at this cap, new
    /// requests get 429 with Retry-After instead of queueing.
    pub max_concurrency: usize,
    /// Milliseconds allowed to open a connection to a server.
    pub connect_timeout_ms: u64,
    /// Seconds allowed from sending a request to its first token (the server's queue and
    /// prompt processing), capped by `generation.timeout_secs`. A request that fails before
    /// its first token is retried once on another server.
    pub first_token_timeout_secs: u64,
    /// Milliseconds between health probes of every server.
    pub probe_interval_ms: u64,
    /// Consecutive failures (requests or probes) after which a server is taken out of
    /// rotation. A successful probe lets it back in.
    pub eject_after_failures: u32,
    /// Seconds sent in `Retry-After` when no server is healthy or all are at their cap.
    pub retry_after_secs: u64,
}

impl Default for GenerationPoolConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 16,
            connect_timeout_ms: 2_000,
            first_token_timeout_secs: 60,
            probe_interval_ms: 2_000,
            eject_after_failures: 3,
            retry_after_secs: 2,
        }
    }
}

impl GeneratorEndpoint {
    /// One server of `model` at `url`, every other setting at its default.
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            urls: Vec::new(),
            model: model.into(),
            api_key: None,
            timeout_secs: crate::default_generation_timeout(),
            max_tokens: crate::default_max_tokens(),
            max_tokens_limit: crate::default_max_tokens_limit(),
            pool: GenerationPoolConfig::default(),
        }
    }

    /// Every server of the pool: `url` (when set) followed by `urls`, without repeats.
    pub fn server_urls(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let first = (!self.url.is_empty()).then_some(&self.url);
        for u in first.into_iter().chain(&self.urls) {
            let u = u.trim_end_matches('/').to_string();
            if !out.contains(&u) {
                out.push(u);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, GenerationConfig};

    #[test]
    fn single_url_and_url_list_both_parse() {
        let c: Config = toml::from_str(
            r#"
            [generation]
            provider = "openai"
            model = "gemma3"
            urls = ["http://a:8000/v1", "http://b:8000/v1/"]
            [generation.pool]
            max_concurrency = 4
            "#,
        )
        .unwrap();
        let GenerationConfig::Openai(ep) = &c.generation else {
            panic!("{:?}", c.generation)
        };
        assert_eq!(ep.server_urls(), ["http://a:8000/v1", "http://b:8000/v1"]);
        assert_eq!(ep.pool.max_concurrency, 4);
        assert_eq!(ep.pool.eject_after_failures, 3);
        c.validate().unwrap();

        let old: Config = toml::from_str(
            "[generation]\nprovider = \"ollama\"\nurl = \"http://a:11434\"\nmodel = \"m\"\nurls = [\"http://a:11434\", \"http://b:11434\"]",
        )
        .unwrap();
        let GenerationConfig::Ollama(ep) = &old.generation else {
            panic!()
        };
        assert_eq!(ep.server_urls(), ["http://a:11434", "http://b:11434"]);
    }

    #[test]
    fn pool_settings_are_validated_by_path() {
        let mut ep = crate::GeneratorEndpoint::new("", "m");
        ep.pool.max_concurrency = 0;
        ep.urls = vec!["ftp://x".into()];
        let c = Config {
            generation: GenerationConfig::Ollama(ep),
            ..Config::default()
        };
        let err = c.validate().unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["generation.urls", "generation.pool.max_concurrency"],
            "{err}"
        );
    }

    #[test]
    fn the_token_limits_are_validated() {
        let fields = |max: u32, limit: u32| {
            let mut ep = crate::GeneratorEndpoint::new("http://a:11434", "m");
            (ep.max_tokens, ep.max_tokens_limit) = (max, limit);
            let c = Config {
                generation: GenerationConfig::Ollama(ep),
                ..Config::default()
            };
            c.validate().map_or_else(
                |err| err.0.iter().map(|e| e.field.clone()).collect(),
                |()| Vec::new(),
            )
        };
        assert!(fields(512, 4096).is_empty());
        assert!(fields(1, 1).is_empty());
        assert_eq!(fields(0, 4096), ["generation.max_tokens"]);
        assert_eq!(fields(1024, 512), ["generation.max_tokens_limit"]);
    }

    #[test]
    fn a_pool_serialises_and_reads_back() {
        let mut ep = crate::GeneratorEndpoint::new("http://a:11434", "m");
        ep.urls = vec!["http://b:11434".into()];
        ep.pool.probe_interval_ms = 500;
        let c = Config {
            generation: GenerationConfig::Ollama(ep),
            ..Config::default()
        };
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("[generation.pool]"), "{text}");
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c);
    }

    #[test]
    fn no_server_at_all_is_an_error() {
        let c = Config {
            generation: GenerationConfig::Openai(crate::GeneratorEndpoint::new("", "m")),
            ..Config::default()
        };
        let err = c.validate().unwrap_err();
        assert_eq!(err.0[0].field, "generation.url", "{err}");
    }
}
