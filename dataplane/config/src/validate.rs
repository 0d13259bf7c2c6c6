//! Validation of a parsed [`Config`]: every rule that serde's types cannot express.

use crate::{
    Config, EmbeddingConfig, MetadataConfig, ObjectStoreConfig, QueueConfig, RateLimitBackend,
};

/// One invalid setting: the dotted path of the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Dotted path of the field, for example `chunking.overlap_tokens`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// All the invalid settings of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<ConfigError>);

/// Collects violations; backends' settings add theirs through it.
pub(crate) struct Checker(Vec<ConfigError>);

impl Checker {
    pub(crate) fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.0.push(ConfigError {
                field: field.into(),
                message: message.into(),
            });
        }
    }
}

impl Config {
    /// Checks the cross-field rules; lists every violation, not just the first.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker(Vec::new());
        let l = &self.limits;
        c.check(
            l.max_body_bytes >= 1024,
            "limits.max_body_bytes",
            "must be at least 1024",
        );
        c.check(
            l.max_concurrent_requests >= 1,
            "limits.max_concurrent_requests",
            "must be at least 1",
        );
        c.check(l.max_top_k >= 1, "limits.max_top_k", "must be at least 1");
        self.search.validate(&mut c);
        self.console.validate(&mut c);
        if let Some(r) = &self.rerank {
            r.validate(&mut c);
        }
        c.check(
            l.max_query_bytes >= 1,
            "limits.max_query_bytes",
            "must be at least 1",
        );
        c.check(
            l.request_timeout_secs >= 1,
            "limits.request_timeout_secs",
            "must be at least 1",
        );

        let e = &self.embedding;
        check_embedding(&mut c, e, "embedding");
        if let Some(previous) = &e.previous {
            check_embedding(&mut c, previous, "embedding.previous");
            c.check(
                previous.previous.is_none(),
                "embedding.previous.previous",
                "the previous model cannot have a previous model of its own",
            );
        }

        for (field, message) in self.telemetry.traces.problems() {
            c.check(false, field, message);
        }

        let k = &self.chunking;
        c.check(
            k.chunk_tokens >= 8,
            "chunking.chunk_tokens",
            "must be at least 8",
        );
        c.check(
            k.chunk_tokens + 2 <= e.max_seq_len,
            "chunking.chunk_tokens",
            format!(
                "must leave room for 2 special tokens within embedding.max_seq_len ({})",
                e.max_seq_len
            ),
        );
        c.check(
            k.overlap_tokens < k.chunk_tokens,
            "chunking.overlap_tokens",
            format!(
                "must be smaller than chunking.chunk_tokens ({})",
                k.chunk_tokens
            ),
        );
        c.check(
            k.max_document_bytes >= 1,
            "chunking.max_document_bytes",
            "must be at least 1",
        );
        let p = &self.parsing;
        c.check(
            p.max_memory_mib >= 64,
            "parsing.max_memory_mib",
            "must be at least 64 (the child process itself needs some)",
        );
        c.check(
            p.timeout_secs >= 1,
            "parsing.timeout_secs",
            "must be at least 1",
        );

        c.0.extend(self.vectors.validate());

        let q = self.queue.settings();
        c.check(
            q.visibility_timeout_secs >= 1,
            "queue.visibility_timeout_secs",
            "must be at least 1",
        );
        c.check(
            q.max_attempts >= 1,
            "queue.max_attempts",
            "must be at least 1",
        );

        self.check_redis(&mut c);

        for origin in &self.server.cors_allowed_origins {
            let ok = is_origin(origin);
            c.check(
                ok,
                "server.cors_allowed_origins",
                format!("{origin:?} is not an origin (scheme://host[:port], no path, no '*')"),
            );
        }
        c.check(
            self.workers.concurrency >= 1,
            "workers.concurrency",
            "must be at least 1",
        );
        if let Some(instance) = &self.workers.instance {
            c.check(
                !instance.is_empty()
                    && instance.len() <= 200
                    && !instance
                        .chars()
                        .any(|ch| ch.is_whitespace() || ch.is_control()),
                "workers.instance",
                "must be 1 to 200 characters without spaces or control characters",
            );
        }
        c.check(
            self.workers.poll_interval_ms >= 1,
            "workers.poll_interval_ms",
            "must be at least 1",
        );
        c.check(
            self.limits.max_ingest_backlog >= 1,
            "limits.max_ingest_backlog",
            "must be at least 1",
        );
        c.check(
            self.limits.max_tenant_ingest_backlog >= 1,
            "limits.max_tenant_ingest_backlog",
            "must be at least 1",
        );
        c.check(
            self.workers.max_job_seconds >= 1,
            "workers.max_job_seconds",
            "must be at least 1",
        );
        c.check(
            self.workers.orphan_check_secs >= 1,
            "workers.orphan_check_secs",
            "must be at least 1",
        );
        c.check(
            self.cache.embedding_capacity >= 1,
            "cache.embedding_capacity",
            "must be at least 1",
        );
        c.check(
            self.cache.result_capacity >= 1,
            "cache.result_capacity",
            "must be at least 1",
        );

        if let Some(ep) = self.generation.endpoint() {
            c.check(
                !ep.server_urls().is_empty(),
                "generation.url",
                "set url or urls to at least one server",
            );
            let bad: Vec<String> = ep
                .server_urls()
                .into_iter()
                .filter(|u| !(u.starts_with("http://") || u.starts_with("https://")))
                .collect();
            c.check(
                bad.is_empty(),
                if ep.url.is_empty() || bad.iter().all(|b| *b != ep.url) {
                    "generation.urls"
                } else {
                    "generation.url"
                },
                format!("must be http:// or https:// URLs, got {bad:?}"),
            );
            c.check(
                !ep.model.is_empty(),
                "generation.model",
                "must not be empty",
            );
            c.check(
                ep.timeout_secs >= 1,
                "generation.timeout_secs",
                "must be at least 1",
            );
            c.check(
                ep.max_tokens >= 1,
                "generation.max_tokens",
                "must be at least 1",
            );
            c.check(
                ep.max_tokens_limit >= ep.max_tokens,
                "generation.max_tokens_limit",
                format!("must be at least generation.max_tokens ({})", ep.max_tokens),
            );
            let p = &ep.pool;
            c.check(
                p.max_concurrency >= 1,
                "generation.pool.max_concurrency",
                "must be at least 1",
            );
            c.check(
                p.connect_timeout_ms >= 1,
                "generation.pool.connect_timeout_ms",
                "must be at least 1",
            );
            c.check(
                p.first_token_timeout_secs >= 1,
                "generation.pool.first_token_timeout_secs",
                "must be at least 1",
            );
            c.check(
                p.probe_interval_ms >= 100,
                "generation.pool.probe_interval_ms",
                "must be at least 100",
            );
            c.check(
                p.eject_after_failures >= 1,
                "generation.pool.eject_after_failures",
                "must be at least 1",
            );
            c.check(
                p.retry_after_secs >= 1,
                "generation.pool.retry_after_secs",
                "must be at least 1",
            );
        }

        c.0.extend(crate::embed_server::check(self));
        if let MetadataConfig::Postgres(p) = &self.metadata {
            p.check(&mut c);
        }
        if let ObjectStoreConfig::S3(s) = &self.objects {
            s.check(&mut c);
        }

        if c.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(c.0))
        }
    }
}

impl Config {
    fn check_redis(&self, c: &mut Checker) {
        let needs = |on: bool, field: &str, what: &str, c: &mut Checker| {
            c.check(
                !on || self.redis.is_some(),
                field,
                format!("{what} needs a [redis] section"),
            );
        };
        needs(
            matches!(self.queue, QueueConfig::Redis(_)),
            "queue.backend",
            "the redis queue",
            c,
        );
        needs(
            self.cache.redis_l2,
            "cache.redis_l2",
            "the Redis cache layer",
            c,
        );
        let r = &self.rate_limit;
        needs(
            r.enabled && r.backend == RateLimitBackend::Redis,
            "rate_limit.backend",
            "the shared rate limiter",
            c,
        );
        if r.enabled {
            c.check(
                r.requests_per_second.is_finite() && r.requests_per_second > 0.0,
                "rate_limit.requests_per_second",
                "must be a positive number",
            );
            c.check(r.burst >= 1, "rate_limit.burst", "must be at least 1");
        }
        if let Some(redis) = &self.redis {
            let url = redis.url.expose();
            let tls = url.starts_with("rediss://");
            c.check(
                tls || url.starts_with("redis://")
                    || url.starts_with("redis+unix://")
                    || url.starts_with("unix://"),
                "redis.url",
                // Only the scheme: the URL may hold a password.
                format!(
                    "must be a redis://, rediss:// or unix:// URL, got one starting {:?}",
                    url.split("://").next().unwrap_or_default()
                ),
            );
            c.check(
                tls || redis.ca_file.is_none(),
                "redis.ca_file",
                "is only used with TLS: set a rediss:// redis.url",
            );
            c.check(
                !url.contains("#insecure"),
                "redis.url",
                "#insecure is not supported: the server's certificate is always verified \
                 (trust a private CA with redis.ca_file)",
            );
            c.check(
                redis.command_timeout_ms >= 1,
                "redis.command_timeout_ms",
                "must be at least 1",
            );
            c.check(
                redis.connect_timeout_ms >= 1,
                "redis.connect_timeout_ms",
                "must be at least 1",
            );
        }
    }
}

/// Whether `o` is an origin: `http` or `https`, `://`, a host of letters, digits, dots and
/// dashes (or a bracketed IPv6 address), an optional port, and nothing after.
fn is_origin(o: &str) -> bool {
    let Some(rest) = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
    else {
        return false;
    };
    let (host_ok, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, tail)) => (
                !addr.is_empty() && addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':'),
                tail,
            ),
            None => return false,
        },
        None => {
            let end = rest.find(':').unwrap_or(rest.len());
            let host = &rest[..end];
            (
                !host.is_empty()
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                &rest[end..],
            )
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.parse::<u16>().is_ok());
    host_ok && port_ok
}

/// The rules of one embedding section, `[embedding]` or `[embedding.previous]` (`at`).
fn check_embedding(c: &mut Checker, e: &EmbeddingConfig, at: &str) {
    let field = |name: &str| format!("{at}.{name}");
    c.check(e.dimension >= 1, &field("dimension"), "must be at least 1");
    c.check(e.sessions >= 1, &field("sessions"), "must be at least 1");
    c.check(
        (0..=19).contains(&e.bulk_nice),
        &field("bulk_nice"),
        "must be between 0 and 19",
    );
    c.check(
        (8..=512).contains(&e.max_seq_len),
        &field("max_seq_len"),
        "must be between 8 and 512",
    );
    c.check(
        e.max_batch_tokens >= e.max_seq_len,
        &field("max_batch_tokens"),
        format!("must be at least {at}.max_seq_len ({})", e.max_seq_len),
    );
    c.check(
        e.bulk_batch_tokens >= e.max_seq_len,
        &field("bulk_batch_tokens"),
        format!("must be at least {at}.max_seq_len ({})", e.max_seq_len),
    );
    c.check(
        e.queue_capacity >= 1,
        &field("queue_capacity"),
        "must be at least 1",
    );
    if let Some(o) = &e.ollama {
        for (name, message) in o.problems() {
            let name = name.strip_prefix("embedding.").unwrap_or(name);
            c.check(false, &field(name), message);
        }
    }
    c.check(
        !(e.ollama.is_some() && e.remote.is_some()),
        &field("remote"),
        format!("set either {at}.remote (embed-server) or {at}.ollama, not both"),
    );
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn cors_origins_are_origins_and_nothing_more() {
        for ok in [
            "https://app.example.com",
            "http://localhost:3000",
            "http://[::1]:8080",
            "https://a-b.c",
        ] {
            assert!(super::is_origin(ok), "{ok}");
        }
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ftp://x",
            "https://",
            "http://host:port",
            "http://host:99999",
            "https://*.example.com",
        ] {
            assert!(!super::is_origin(bad), "{bad}");
        }
        let mut c = Config::default();
        c.server.cors_allowed_origins = vec!["*".into()];
        let err = c.validate().unwrap_err();
        assert_eq!(err.0[0].field, "server.cors_allowed_origins");
    }

    #[test]
    fn every_violation_is_listed_with_its_field() {
        let mut c = Config::default();
        c.chunking.overlap_tokens = c.chunking.chunk_tokens;
        c.embedding.sessions = 0;
        let err = c.validate().unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["embedding.sessions", "chunking.overlap_tokens"]);
        assert!(
            err.to_string()
                .contains("must be smaller than chunking.chunk_tokens (200)"),
            "{err}"
        );
    }

    #[test]
    fn the_previous_model_is_checked_under_its_own_path() {
        let mut c = Config::default();
        let mut previous = crate::EmbeddingConfig {
            dimension: 0,
            ollama: Some(crate::OllamaEmbeddingConfig {
                url: "ollama:11434".into(),
                model: "all-minilm".into(),
                dimension: 256,
                max_batch: 16,
                timeout_secs: 60,
            }),
            ..Default::default()
        };
        previous.previous = Some(Box::default());
        c.embedding.previous = Some(Box::new(previous));
        let err = c.validate().unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "embedding.previous.dimension",
                "embedding.previous.ollama.url",
                "embedding.previous.previous"
            ]
        );
    }

    #[test]
    fn redis_features_need_the_redis_section() {
        let mut c = Config {
            queue: crate::QueueConfig::Redis(crate::JobQueueSettings::default()),
            ..Config::default()
        };
        c.cache.redis_l2 = true;
        c.rate_limit.enabled = true;
        c.rate_limit.backend = crate::RateLimitBackend::Redis;
        let err = c.validate().unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["queue.backend", "cache.redis_l2", "rate_limit.backend"]
        );
        c.redis = Some(crate::RedisConfig {
            url: crate::Secret::new("http://x"),
            ..crate::RedisConfig::default()
        });
        let err = c.validate().unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].field, "redis.url");
        // A wrong URL's password stays out of the message.
        c.redis = Some(crate::RedisConfig {
            url: crate::Secret::new("http://user:hunter2@x"),
            ..crate::RedisConfig::default()
        });
        let err = c.validate().unwrap_err();
        assert!(
            !err.0[0].message.contains("hunter2"),
            "{}",
            err.0[0].message
        );
        // TLS, with a private CA or the system's roots; never without verification.
        let tls = |url: &str, ca: Option<&str>| {
            let mut c = c.clone();
            c.redis = Some(crate::RedisConfig {
                url: crate::Secret::new(url),
                ca_file: ca.map(Into::into),
                ..crate::RedisConfig::default()
            });
            c.validate().map_or_else(
                |e| e.0.into_iter().map(|e| e.field).collect(),
                |()| Vec::new(),
            )
        };
        assert!(tls("rediss://:hunter2@x:6380", None).is_empty());
        assert!(tls("rediss://x:6380/0", Some("/etc/ca.pem")).is_empty());
        assert_eq!(tls("redis://x", Some("/etc/ca.pem")), ["redis.ca_file"]);
        assert_eq!(tls("rediss://x:6380/#insecure", None), ["redis.url"]);
    }

    #[test]
    fn chunks_must_fit_the_model() {
        let mut c = Config::default();
        c.chunking.chunk_tokens = 300;
        let err = c.validate().unwrap_err();
        assert_eq!(err.0[0].field, "chunking.chunk_tokens");
    }
}
