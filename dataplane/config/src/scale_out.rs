//! Settings of the scale-out backends that replace the embedded ones when many API and worker
//! processes share state: PostgreSQL for metadata and S3 (or any S3-compatible server) for
//! document originals.

use serde::{Deserialize, Serialize};

use crate::validate::Checker;
use crate::Secret;

/// PostgreSQL metadata store: a write pool on the primary and read pools on the replicas.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// URL of the primary, `postgres://user:password@host:5432/db`. A secret because it may
    /// carry the password; the operator fills it from a Kubernetes Secret through
    /// `RAGPLANE__METADATA__URL`.
    pub url: Secret,
    /// URLs of read replicas. Listing, search-path reads and key lookups go to them in turn;
    /// a replica that fails to answer is skipped for `replica_retry_secs`, and when none is
    /// healthy the primary serves the read.
    #[serde(default)]
    pub replica_urls: Vec<Secret>,
    /// PEM file of the certificate authorities that sign the servers' certificates (a private
    /// CA, as in-cluster PostgreSQL operators and some managed services issue), trusted besides
    /// the system's roots. With it, every connection (primary and replicas) is TLS with the
    /// certificate and the host name verified: `sslmode=verify-full` unless a URL asks for
    /// `verify-ca`. A URL's other `sslmode`s would skip the check, so they are refused with it.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Most connections to the primary.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Connections to the primary kept open when idle.
    #[serde(default)]
    pub min_connections: u32,
    /// Most connections to each replica.
    #[serde(default = "default_max_connections")]
    pub replica_max_connections: u32,
    /// Milliseconds a query waits for a primary connection (connecting included) before the
    /// request fails with 503 and Retry-After.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Milliseconds a read waits for a replica connection before that replica is marked down
    /// and the read moves on. Kept short so that a dead replica costs little.
    #[serde(default = "default_replica_acquire_timeout_ms")]
    pub replica_acquire_timeout_ms: u64,
    /// Seconds a replica that failed stays skipped before it is tried again.
    #[serde(default = "default_replica_retry_secs")]
    pub replica_retry_secs: u64,
    /// Seconds after which an idle connection is closed.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Server-side `statement_timeout` in milliseconds; 0 turns it off.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
}

fn default_max_connections() -> u32 {
    16
}
fn default_acquire_timeout_ms() -> u64 {
    5_000
}
fn default_replica_acquire_timeout_ms() -> u64 {
    1_000
}
fn default_replica_retry_secs() -> u64 {
    10
}
fn default_idle_timeout_secs() -> u64 {
    600
}
fn default_statement_timeout_ms() -> u64 {
    30_000
}

impl PostgresConfig {
    /// Settings with the defaults and the primary at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url),
            replica_urls: Vec::new(),
            ca_file: None,
            max_connections: default_max_connections(),
            min_connections: 0,
            replica_max_connections: default_max_connections(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
            replica_acquire_timeout_ms: default_replica_acquire_timeout_ms(),
            replica_retry_secs: default_replica_retry_secs(),
            idle_timeout_secs: default_idle_timeout_secs(),
            statement_timeout_ms: default_statement_timeout_ms(),
        }
    }

    pub(crate) fn check(&self, c: &mut Checker) {
        let is_pg = |u: &str| u.starts_with("postgres://") || u.starts_with("postgresql://");
        c.check(
            is_pg(self.url.expose()),
            "metadata.url",
            "must be a postgres:// or postgresql:// URL",
        );
        for (i, u) in self.replica_urls.iter().enumerate() {
            c.check(
                is_pg(u.expose()),
                &format!("metadata.replica_urls[{i}]"),
                "must be a postgres:// or postgresql:// URL",
            );
        }
        if self.ca_file.is_some() {
            let urls = std::iter::once(("metadata.url".to_string(), &self.url)).chain(
                (self.replica_urls.iter().enumerate())
                    .map(|(i, u)| (format!("metadata.replica_urls[{i}]"), u)),
            );
            for (field, url) in urls {
                if let Some(problem) = unverified_sslmode(url.expose(), "metadata.ca_file") {
                    c.check(false, &field, problem);
                }
            }
        }
        c.check(
            self.max_connections >= 1,
            "metadata.max_connections",
            "must be at least 1",
        );
        c.check(
            self.min_connections <= self.max_connections,
            "metadata.min_connections",
            format!(
                "must be at most metadata.max_connections ({})",
                self.max_connections
            ),
        );
        c.check(
            self.replica_max_connections >= 1,
            "metadata.replica_max_connections",
            "must be at least 1",
        );
        c.check(
            self.acquire_timeout_ms >= 1,
            "metadata.acquire_timeout_ms",
            "must be at least 1",
        );
        c.check(
            self.replica_acquire_timeout_ms >= 1,
            "metadata.replica_acquire_timeout_ms",
            "must be at least 1",
        );
        c.check(
            self.replica_retry_secs >= 1,
            "metadata.replica_retry_secs",
            "must be at least 1",
        );
    }
}

/// Why a PostgreSQL URL's `sslmode` cannot go with a CA file (the setting `ca_setting`): any
/// mode but `verify-ca` and `verify-full` (or none, which then means `verify-full`) would accept
/// an unverified server. Only the mode is named, never the URL, which may hold a password.
pub(crate) fn unverified_sslmode(url: &str, ca_setting: &str) -> Option<String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let mode = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == "sslmode" || *k == "ssl-mode")
        .map(|(_, v)| v)
        .next_back()?;
    (!matches!(mode, "verify-ca" | "verify-full")).then(|| {
        format!(
            "sslmode={mode} does not verify the server's certificate, so {ca_setting} would go \
             unused: use sslmode=verify-full (the default with {ca_setting}) or verify-ca"
        )
    })
}

/// The smallest part S3 accepts in a multipart upload (all but the last part).
pub const S3_MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

/// S3 or an S3-compatible server (MinIO, Garage, Ceph RGW, …).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Bucket holding the originals; it must exist.
    pub bucket: String,
    /// Prefix put before every key, so that several clusters can share a bucket (for example
    /// `prod/`). Empty by default.
    #[serde(default)]
    pub prefix: String,
    /// Region. When absent it comes from `AWS_REGION` or the AWS profile, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible server, for example `http://minio:9000`. When absent
    /// the AWS endpoint for the region is used (or `AWS_ENDPOINT_URL`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-hosted style
    /// (`bucket.endpoint/key`). Most S3-compatible servers need it.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// Access key id. When absent (with `secret_access_key`), credentials come from the
    /// standard AWS chain: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, web identity, profile,
    /// instance metadata.
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    /// Secret access key; set together with `access_key_id`.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary credentials.
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// Objects larger than this many bytes are uploaded in parts.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold_bytes: u64,
    /// Size of each part of a multipart upload, in bytes (at least 5 MiB).
    #[serde(default = "default_part_size")]
    pub multipart_part_bytes: u64,
    /// Parts uploaded at once.
    #[serde(default = "default_multipart_concurrency")]
    pub multipart_concurrency: usize,
    /// PEM file of the certificate authorities that sign an `https://` endpoint's certificate
    /// (a private CA, as in-cluster MinIO or Ceph RGW deployments use), trusted instead of the
    /// system's roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Seconds allowed to open a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds allowed for one operation, retries included.
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout_secs: u64,
    /// Attempts per request (1 means no retries).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_true() -> bool {
    true
}
fn default_multipart_threshold() -> u64 {
    16 * 1024 * 1024
}
fn default_part_size() -> u64 {
    8 * 1024 * 1024
}
fn default_multipart_concurrency() -> usize {
    4
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_operation_timeout() -> u64 {
    120
}
fn default_max_attempts() -> u32 {
    3
}

impl S3Config {
    /// Settings with the defaults for `bucket`.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            region: None,
            endpoint: None,
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            multipart_threshold_bytes: default_multipart_threshold(),
            multipart_part_bytes: default_part_size(),
            multipart_concurrency: default_multipart_concurrency(),
            ca_file: None,
            connect_timeout_secs: default_connect_timeout(),
            operation_timeout_secs: default_operation_timeout(),
            max_attempts: default_max_attempts(),
        }
    }

    pub(crate) fn check(&self, c: &mut Checker) {
        let b = &self.bucket;
        c.check(
            (3..=63).contains(&b.len())
                && b.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ".-".contains(ch))
                && b.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && b.ends_with(|ch: char| ch.is_ascii_alphanumeric()),
            "objects.bucket",
            format!("{b:?} is not a valid bucket name (3-63 of a-z, 0-9, '.', '-', starting and ending with a letter or digit)"),
        );
        c.check(
            self.prefix.is_empty()
                || (!self.prefix.starts_with('/') && !self.prefix.contains("//")),
            "objects.prefix",
            "must not start with '/' or contain '//'",
        );
        if let Some(e) = &self.endpoint {
            c.check(
                e.starts_with("http://") || e.starts_with("https://"),
                "objects.endpoint",
                format!("must be an http:// or https:// URL, got {e:?}"),
            );
        }
        c.check(
            self.ca_file.is_none()
                || self
                    .endpoint
                    .as_ref()
                    .is_some_and(|e| e.starts_with("https://")),
            "objects.ca_file",
            "is only used with a private endpoint over TLS: set an https:// objects.endpoint",
        );
        if let Some(r) = &self.region {
            c.check(!r.is_empty(), "objects.region", "must not be empty");
        }
        c.check(
            self.access_key_id.is_some() == self.secret_access_key.is_some(),
            "objects.secret_access_key",
            "objects.access_key_id and objects.secret_access_key must be set together",
        );
        c.check(
            (S3_MIN_PART_BYTES..=5 * 1024 * 1024 * 1024).contains(&self.multipart_part_bytes),
            "objects.multipart_part_bytes",
            "must be between 5 MiB (5242880) and 5 GiB",
        );
        c.check(
            self.multipart_threshold_bytes >= S3_MIN_PART_BYTES,
            "objects.multipart_threshold_bytes",
            "must be at least 5 MiB (5242880)",
        );
        c.check(
            self.multipart_concurrency >= 1,
            "objects.multipart_concurrency",
            "must be at least 1",
        );
        c.check(
            self.connect_timeout_secs >= 1,
            "objects.connect_timeout_secs",
            "must be at least 1",
        );
        c.check(
            self.operation_timeout_secs >= 1,
            "objects.operation_timeout_secs",
            "must be at least 1",
        );
        c.check(
            self.max_attempts >= 1,
            "objects.max_attempts",
            "must be at least 1",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, MetadataConfig, ObjectStoreConfig};

    #[test]
    fn postgres_and_s3_parse_from_toml_with_defaults() {
        let c: Config = toml::from_str(
            r#"
            [metadata]
            backend = "postgres"
            url = "postgres://rag:pw@db:5432/rag"
            replica_urls = ["postgres://rag:pw@replica-1:5432/rag"]
            [objects]
            backend = "s3"
            bucket = "rag-originals"
            endpoint = "http://minio:9000"
            access_key_id = "AKIA"
            secret_access_key = "very-secret"
            "#,
        )
        .unwrap();
        let MetadataConfig::Postgres(p) = &c.metadata else {
            panic!("expected postgres, got {:?}", c.metadata)
        };
        assert_eq!(p.replica_urls.len(), 1);
        assert_eq!(p.max_connections, 16);
        let ObjectStoreConfig::S3(s) = &c.objects else {
            panic!("expected s3, got {:?}", c.objects)
        };
        assert!(s.path_style);
        assert_eq!(s.multipart_part_bytes, 8 * 1024 * 1024);
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("very-secret") && !debug.contains("pw@"),
            "{debug}"
        );
        c.validate().unwrap();
        let back: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn invalid_settings_name_their_dotted_paths() {
        let mut p = super::PostgresConfig::new("mysql://x");
        p.replica_urls.push(crate::Secret::new("http://replica"));
        p.min_connections = 40;
        let mut s = super::S3Config::new("Bad_Bucket");
        s.multipart_part_bytes = 1024;
        s.access_key_id = Some(crate::Secret::new("AKIA"));
        s.endpoint = Some("minio:9000".into());
        let c = Config {
            metadata: MetadataConfig::Postgres(p),
            objects: ObjectStoreConfig::S3(Box::new(s)),
            ..Config::default()
        };
        let err = c.validate().unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.url",
                "metadata.replica_urls[0]",
                "metadata.min_connections",
                "objects.bucket",
                "objects.endpoint",
                "objects.secret_access_key",
                "objects.multipart_part_bytes",
            ]
        );
    }

    /// A private CA goes only with connections that verify against it: PostgreSQL's
    /// `verify-ca`/`verify-full` (or no sslmode, which then verifies fully), S3 over `https://`.
    /// The password in a URL never reaches the message.
    #[test]
    fn a_private_ca_goes_only_with_verified_tls() {
        let fields = |pg: &[&str], vectors: &str, s3: Option<&str>| {
            let mut p = super::PostgresConfig::new(pg[0]);
            p.replica_urls = pg[1..].iter().map(|u| crate::Secret::new(*u)).collect();
            p.ca_file = Some("/etc/pg-ca.pem".into());
            let mut v = crate::PostgresIndexConfig::new(vectors);
            v.ca_file = Some("/etc/pg-ca.pem".into());
            let mut s = super::S3Config::new("originals");
            s.endpoint = s3.map(Into::into);
            s.ca_file = Some("/etc/s3-ca.pem".into());
            let c = Config {
                metadata: MetadataConfig::Postgres(p),
                vectors: crate::VectorIndexConfig::Postgres(v),
                objects: ObjectStoreConfig::S3(Box::new(s)),
                ..Config::default()
            };
            c.validate().map_or_else(
                |e| {
                    assert!(!e.to_string().contains("hunter2"), "{e}");
                    e.0.into_iter().map(|e| e.field).collect()
                },
                |()| Vec::new(),
            )
        };
        assert!(fields(
            &[
                "postgres://u:hunter2@db/rag",
                "postgres://db-r/rag?sslmode=verify-ca"
            ],
            "postgres://db/rag?application_name=x&sslmode=verify-full",
            Some("https://minio.store:9000"),
        )
        .is_empty());
        assert_eq!(
            fields(
                &[
                    "postgres://u:hunter2@db/rag?sslmode=require",
                    "postgres://db-r/rag"
                ],
                "postgres://u:hunter2@db/rag?sslmode=prefer",
                Some("http://minio.store:9000"),
            ),
            ["vectors.url", "metadata.url", "objects.ca_file"]
        );
        assert_eq!(
            fields(
                &["postgres://db/rag", "postgres://db-r/rag?sslmode=disable"],
                "postgres://db/rag",
                None,
            ),
            ["metadata.replica_urls[0]", "objects.ca_file"]
        );
        let message =
            super::unverified_sslmode("postgres://db/rag?sslmode=allow", "metadata.ca_file");
        assert!(message.is_some_and(|m| m.contains("sslmode=allow") && m.contains("verify-full")));
    }
}
