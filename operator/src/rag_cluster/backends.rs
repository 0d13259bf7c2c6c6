//! The scale-out backends of a RagCluster rendered into the data-plane config: PostgreSQL
//! metadata, Redis queues and caches, S3 originals and the shared vector index.
//!
//! Secrets never enter the ConfigMap. Each secret-bearing setting is left out of the rendered
//! TOML and reaches the pods as an environment variable from its Secret
//! (`RAGPLANE__METADATA__URL`, `RAGPLANE__REDIS__URL`, …), which the data plane layers over the
//! file.

use ragplane_config::{
    Config, JobQueueSettings, MetadataConfig, ObjectStoreConfig, PostgresConfig,
    PostgresIndexConfig, QdrantIndexConfig, QueueConfig, RedisConfig, S3Config, Secret,
    VectorIndexConfig,
};

use super::validate::{qdrant_service_name, QdrantMode};
use crate::crd::common::SecretKeyRef;
use crate::crd::rag_cluster::RagClusterSpec;

/// A value that stands in for a secret until the pod's environment supplies it; the rendered
/// TOML never contains it (see [`strip_secrets`]).
const FROM_ENV: &str = "from-secret://set-by-environment";

/// Where a secret-bearing setting comes from: the variable and the Secret key.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretEnv {
    /// Environment variable the data plane reads.
    pub name: String,
    /// Secret and key that fill it.
    pub from: SecretKeyRef,
}

/// Key names of an S3 credentials Secret.
const S3_KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
    ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
];

fn placeholder_url(scheme: &str) -> Secret {
    Secret::new(format!("{scheme}://{FROM_ENV}"))
}

/// Applies the spec's backends to `config`; returns the Secret-fed variables every data-plane
/// pod needs.
pub fn apply_backends(
    spec: &RagClusterSpec,
    cluster: &str,
    qdrant: &QdrantMode,
    config: &mut Config,
) -> Result<Vec<SecretEnv>, String> {
    let mut env = Vec::new();
    let secret = |name: &str, from: &SecretKeyRef| SecretEnv {
        name: name.into(),
        from: from.clone(),
    };
    if let Some(pg) = &spec.postgres {
        let mut p: PostgresConfig = toml::from_str(&format!("url = \"postgres://{FROM_ENV}\""))
            .map_err(|e| e.to_string())?;
        p.url = placeholder_url("postgres");
        config.metadata = MetadataConfig::Postgres(p);
        env.push(secret("RAGPLANE__METADATA__URL", &pg.url_secret_ref));
    }
    if let Some(r) = &spec.redis {
        config.redis = Some(RedisConfig {
            url: format!("redis://{FROM_ENV}"),
            ..RedisConfig::default()
        });
        config.queue = QueueConfig::Redis(JobQueueSettings::default());
        config.cache.redis_l2 = true;
        env.push(secret("RAGPLANE__REDIS__URL", &r.url_secret_ref));
    }
    if let Some(s3) = &spec.s3 {
        let mut s: S3Config =
            toml::from_str(&format!("bucket = \"{}\"", s3.bucket)).map_err(|e| e.to_string())?;
        s.endpoint.clone_from(&s3.endpoint);
        s.region.clone_from(&s3.region);
        config.objects = ObjectStoreConfig::S3(s);
        if let Some(name) = &s3.credentials_secret {
            for (var, key) in S3_KEYS {
                env.push(secret(
                    var,
                    &SecretKeyRef {
                        name: name.clone(),
                        key: key.into(),
                    },
                ));
            }
        }
    }
    match qdrant {
        QdrantMode::Managed(m) => {
            config.vectors = VectorIndexConfig::Qdrant(qdrant_config(&format!(
                "http://{}:6334",
                qdrant_service_name(cluster)
            ))?);
            if let Some(k) = &m.api_key {
                env.push(secret("RAGPLANE__VECTORS__API_KEY", k));
            }
        }
        QdrantMode::External { url, api_key } => {
            config.vectors = VectorIndexConfig::Qdrant(qdrant_config(url)?);
            if let Some(k) = api_key {
                env.push(secret("RAGPLANE__VECTORS__API_KEY", k));
            }
        }
        // Without Qdrant but with PostgreSQL, the vectors live in PostgreSQL too, so that every
        // API and worker pod shares them.
        QdrantMode::Embedded => {
            if let Some(pg) = &spec.postgres {
                let mut v: PostgresIndexConfig =
                    toml::from_str(&format!("url = \"postgres://{FROM_ENV}\""))
                        .map_err(|e| e.to_string())?;
                v.url = placeholder_url("postgres");
                config.vectors = VectorIndexConfig::Postgres(v);
                env.push(secret("RAGPLANE__VECTORS__URL", &pg.url_secret_ref));
            }
        }
    }
    Ok(env)
}

fn qdrant_config(url: &str) -> Result<QdrantIndexConfig, String> {
    toml::from_str(&format!("url = \"{url}\"")).map_err(|e| e.to_string())
}

/// The config as TOML without the placeholders that the pods' environment fills.
pub fn strip_secrets(config: &Config) -> Result<String, String> {
    let mut value = toml::Value::try_from(config).map_err(|e| e.to_string())?;
    if let Some(root) = value.as_table_mut() {
        for section in ["metadata", "vectors", "redis"] {
            if let Some(t) = root.get_mut(section).and_then(toml::Value::as_table_mut) {
                t.retain(|_, v| !v.as_str().is_some_and(|s| s.contains(FROM_ENV)));
            }
        }
    }
    toml::to_string(&value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag_cluster::build::test_support::validated;

    #[test]
    fn scale_out_backends_render_without_secrets() {
        let c = validated(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: prod}
spec:
  workers: [{name: ingest, queues: [documents]}]
  postgres: {urlSecretRef: {name: pg, key: url}}
  redis: {urlSecretRef: {name: redis, key: url}}
  s3: {bucket: docs, endpoint: "http://minio:9000", region: eu-west-1, credentialsSecret: s3-creds}
  qdrant: {external: {url: "http://qdrant:6334", apiKeySecretRef: {name: q, key: key}}}
"#,
        );
        let text = &c.config_toml;
        assert!(
            !text.contains(FROM_ENV),
            "no placeholder in the ConfigMap:\n{text}"
        );
        let names: Vec<&str> = c.secret_env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "RAGPLANE__METADATA__URL",
                "RAGPLANE__REDIS__URL",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "RAGPLANE__VECTORS__API_KEY"
            ]
        );
        // The data plane reads the file with the variables the pod gets from the Secrets.
        let value: toml::Value = toml::from_str(text).unwrap();
        let mut v = value.clone();
        let t = v.as_table_mut().unwrap();
        t.get_mut("metadata")
            .unwrap()
            .as_table_mut()
            .unwrap()
            .insert("url".into(), "postgres://u:p@pg:5432/rag".into());
        t.get_mut("redis")
            .unwrap()
            .as_table_mut()
            .unwrap()
            .insert("url".into(), "redis://redis:6379".into());
        let parsed: Config = v.try_into().unwrap();
        parsed.validate().unwrap();
        assert!(matches!(parsed.metadata, MetadataConfig::Postgres(_)));
        assert!(matches!(parsed.queue, QueueConfig::Redis(_)));
        assert!(parsed.cache.redis_l2);
        match &parsed.objects {
            ObjectStoreConfig::S3(s) => {
                assert_eq!(s.bucket, "docs");
                assert_eq!(s.endpoint.as_deref(), Some("http://minio:9000"));
            }
            other => panic!("{other:?}"),
        }
        match &parsed.vectors {
            VectorIndexConfig::Qdrant(q) => assert_eq!(q.url, "http://qdrant:6334"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn postgres_without_qdrant_keeps_the_vectors_in_postgres() {
        let c = validated(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: mid}
spec:
  postgres: {urlSecretRef: {name: pg, key: url}}
"#,
        );
        assert!(matches!(c.config.vectors, VectorIndexConfig::Postgres(_)));
        assert!(c
            .secret_env
            .iter()
            .any(|e| e.name == "RAGPLANE__VECTORS__URL" && e.from.name == "pg"));
    }

    #[test]
    fn the_default_cluster_stays_embedded() {
        let c = validated(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: dev}
spec: {}
"#,
        );
        assert!(c.secret_env.is_empty());
        assert!(matches!(c.config.vectors, VectorIndexConfig::Embedded(_)));
    }
}
