//! The scale-out backends of a RagCluster rendered into the data-plane config: PostgreSQL
//! metadata, Redis queues and caches, S3 originals and the shared vector index.
//!
//! With Qdrant, every data-plane collection lives in one Qdrant collection
//! (`spec.qdrant.collection`), partitioned by a tenant payload index. When a Collection resource
//! of the cluster names that Qdrant collection, its layout (shards, replication, HNSW,
//! quantization, tenant field) is rendered too, so that whichever creates the collection first,
//! the operator or a data-plane pod, creates it the same way.
//!
//! Secrets never enter the ConfigMap. Each secret-bearing setting is left out of the rendered
//! TOML and reaches the pods as an environment variable from its Secret
//! (`RAGPLANE__METADATA__URL`, `RAGPLANE__REDIS__URL`, …), which the data plane layers over the
//! file. A list of secrets, such as the read replicas' URLs, becomes one variable per Secret and
//! a list variable that refers to them with Kubernetes' `$(NAME)` expansion.

use ragplane_config::{
    Config, JobQueueSettings, MetadataConfig, ObjectStoreConfig, PostgresConfig,
    PostgresIndexConfig, QdrantHnswConfig, QdrantIndexConfig, QdrantQuantization, QuantizationKind,
    QueueConfig, RedisConfig, S3Config, Secret, VectorIndexConfig,
};

use super::validate::{qdrant_service_name, CaBackend, QdrantMode};
use crate::crd::collection::{self as crd_collection, Collection};
use crate::crd::common::SecretKeyRef;
use crate::crd::rag_cluster::RagClusterSpec;

/// A value that stands in for a secret until the pod's environment supplies it; the rendered
/// TOML never contains it (see [`strip_secrets`]).
const FROM_ENV: &str = "from-secret://set-by-environment";

/// A secret-bearing setting: the variable the data plane reads and where its value comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretEnv {
    /// Environment variable the data plane reads.
    pub name: String,
    /// Where its value comes from.
    pub from: EnvSource,
}

/// The value of a [`SecretEnv`].
#[derive(Clone, Debug, PartialEq)]
pub enum EnvSource {
    /// A key of a Secret.
    Secret(SecretKeyRef),
    /// A value built from variables declared before it, with Kubernetes' `$(NAME)` expansion.
    Composed(String),
}

/// Environment variable of the `index`th read replica's URL.
fn replica_var(index: usize) -> String {
    format!("RAGPLANE_POSTGRES_REPLICA_{index}")
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
    shared_collection: Option<&Collection>,
    config: &mut Config,
) -> Result<Vec<SecretEnv>, String> {
    let shared_name = spec
        .qdrant
        .as_ref()
        .map_or("ragplane", |q| q.collection_name());
    let qdrant_config = |url: &str| -> Result<QdrantIndexConfig, String> {
        let mut q: QdrantIndexConfig =
            toml::from_str(&format!("url = \"{url}\"")).map_err(|e| e.to_string())?;
        q.collection = shared_name.to_string();
        if let Some(c) = shared_collection {
            apply_layout(&c.spec, &mut q);
        }
        Ok(q)
    };
    let mut env = Vec::new();
    let secret = |name: &str, from: &SecretKeyRef| SecretEnv {
        name: name.into(),
        from: EnvSource::Secret(from.clone()),
    };
    if let Some(pg) = &spec.postgres {
        let mut p: PostgresConfig = toml::from_str(&format!("url = \"postgres://{FROM_ENV}\""))
            .map_err(|e| e.to_string())?;
        p.url = placeholder_url("postgres");
        p.ca_file = pg
            .ca_secret_ref
            .as_ref()
            .map(|_| CaBackend::Postgres.file());
        config.metadata = MetadataConfig::Postgres(p);
        env.push(secret("RAGPLANE__METADATA__URL", &pg.url_secret_ref));
        if !pg.read_replica_url_secret_refs.is_empty() {
            let mut refs = Vec::new();
            for (i, r) in pg.read_replica_url_secret_refs.iter().enumerate() {
                env.push(secret(&replica_var(i), r));
                refs.push(format!("\"$({})\"", replica_var(i)));
            }
            // The data plane parses `[..]` in a variable as a list.
            env.push(SecretEnv {
                name: "RAGPLANE__METADATA__REPLICA_URLS".into(),
                from: EnvSource::Composed(format!("[{}]", refs.join(", "))),
            });
        }
    }
    if let Some(r) = &spec.redis {
        // The scheme only satisfies validation; the URL comes from the Secret.
        let tls = r.ca_secret_ref.is_some();
        config.redis = Some(RedisConfig {
            url: placeholder_url(if tls { "rediss" } else { "redis" }),
            ca_file: tls.then(|| CaBackend::Redis.file()),
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
        s.ca_file = s3.ca_secret_ref.as_ref().map(|_| CaBackend::S3.file());
        config.objects = ObjectStoreConfig::S3(Box::new(s));
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
                v.ca_file = pg
                    .ca_secret_ref
                    .as_ref()
                    .map(|_| CaBackend::Postgres.file());
                config.vectors = VectorIndexConfig::Postgres(v);
                env.push(secret("RAGPLANE__VECTORS__URL", &pg.url_secret_ref));
            }
        }
    }
    Ok(env)
}

/// Copies a Collection resource's layout into the data plane's Qdrant settings.
fn apply_layout(spec: &crd_collection::CollectionSpec, q: &mut QdrantIndexConfig) {
    let count = |n: i32| u32::try_from(n.max(1)).unwrap_or(1);
    let size = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
    q.shard_number = count(spec.shards);
    q.replication_factor = count(spec.replication_factor);
    q.write_consistency_factor = count(spec.write_consistency_factor);
    q.on_disk = spec.on_disk;
    q.tenant_field.clone_from(&spec.tenancy.payload_field);
    if let Some(h) = &spec.hnsw {
        q.hnsw = QdrantHnswConfig {
            m: size(h.m),
            ef_construct: size(h.ef_construct),
            full_scan_threshold: size(h.full_scan_threshold),
            payload_m: size(h.payload_m),
            on_disk: h.on_disk,
        };
    }
    q.quantization = spec.quantization.as_ref().map(|z| QdrantQuantization {
        kind: match z.kind {
            crd_collection::QuantizationKind::Scalar => QuantizationKind::Scalar,
            crd_collection::QuantizationKind::Binary => QuantizationKind::Binary,
        },
        quantile: z.quantile,
        always_ram: z.always_ram,
    });
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
    use crate::rag_cluster::build::test_support::{cluster, validated};
    use crate::rag_cluster::validate::{validate, Dereferenced};
    use kube::ResourceExt;

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
    fn each_private_ca_is_mounted_as_its_backends_ca_file() {
        let spec = r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: prod}
spec:
  workers: [{name: ingest, queues: [documents]}]
  postgres: {urlSecretRef: {name: pg, key: url}, caSecretRef: {name: pg-tls, key: ca.crt}}
  redis: {urlSecretRef: {name: redis, key: url}, caSecretRef: {name: redis-tls, key: ca.crt}}
  s3: {bucket: originals, endpoint: "https://minio.store:9000", caSecretRef: {name: s3-tls, key: ca.crt}}
"#;
        let c = validated(spec);
        let file = |dir: &str| format!("/etc/ragplane-{dir}-ca/ca.pem");
        // The rendered config names each file; the URLs still come from their Secrets.
        let value: toml::Value = toml::from_str(&c.config_toml).unwrap();
        for (section, dir) in [
            ("metadata", "postgres"),
            // Without Qdrant the vectors live in PostgreSQL too, over the same TLS.
            ("vectors", "postgres"),
            ("redis", "redis"),
            ("objects", "s3"),
        ] {
            assert_eq!(
                value[section]["ca_file"].as_str(),
                Some(file(dir).as_str()),
                "{section}"
            );
        }
        assert!(value["redis"].get("url").is_none(), "{}", c.config_toml);
        let mut v = value.clone();
        for (section, url) in [
            ("metadata", "postgres://pg/rag"),
            ("vectors", "postgres://pg/rag?sslmode=verify-ca"),
            ("redis", "rediss://redis:6380"),
        ] {
            v[section]
                .as_table_mut()
                .unwrap()
                .insert("url".into(), url.into());
        }
        let parsed: Config = v.try_into().unwrap();
        parsed.validate().unwrap();
        // Every data-plane pod mounts each Secret's key as that file.
        let objects = crate::rag_cluster::build::build(&c);
        let pods = [
            objects.api_deployment.spec.template.spec.unwrap(),
            objects.workers[0].spec.template.spec.clone().unwrap(),
        ];
        for pod in pods {
            for dir in ["postgres", "redis", "s3"] {
                let name = format!("{dir}-ca");
                let volume = (pod.volumes.clone().unwrap().into_iter())
                    .find(|v| v.name == name)
                    .unwrap_or_else(|| panic!("a {name} volume"));
                let secret = volume.secret.unwrap();
                assert_eq!(
                    secret.secret_name.as_deref(),
                    Some(format!("{}-tls", if dir == "postgres" { "pg" } else { dir }).as_str())
                );
                let item = &secret.items.unwrap()[0];
                assert_eq!(
                    (item.key.as_str(), item.path.as_str()),
                    ("ca.crt", "ca.pem")
                );
                let mount = (pod.containers[0].volume_mounts.clone().unwrap().into_iter())
                    .find(|m| m.name == name)
                    .expect("mounted");
                assert_eq!(
                    Some(mount.mount_path),
                    file(dir).strip_suffix("/ca.pem").map(Into::into)
                );
                assert_eq!(mount.read_only, Some(true));
            }
        }
        // A rotated CA rolls the pods.
        let secrets = crate::rag_cluster::validate::referenced_secrets(&cluster(spec));
        for name in ["pg-tls", "redis-tls", "s3-tls"] {
            assert!(secrets.contains(name), "{name}: {secrets:?}");
        }
    }

    #[test]
    fn read_replicas_come_from_their_secrets_through_one_list_variable() {
        let c = validated(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: prod}
spec:
  postgres:
    urlSecretRef: {name: pg, key: url}
    readReplicaUrlSecretRefs: [{name: pg-r1, key: url}, {name: pg-r2, key: url}]
"#,
        );
        let env: Vec<(&str, &EnvSource)> = c
            .secret_env
            .iter()
            .map(|e| (e.name.as_str(), &e.from))
            .collect();
        let from = |name: &str| {
            EnvSource::Secret(SecretKeyRef {
                name: name.into(),
                key: "url".into(),
            })
        };
        // Kubernetes expands $(NAME) only for variables declared earlier in the list.
        assert_eq!(
            env[..4],
            [
                ("RAGPLANE__METADATA__URL", &from("pg")),
                ("RAGPLANE_POSTGRES_REPLICA_0", &from("pg-r1")),
                ("RAGPLANE_POSTGRES_REPLICA_1", &from("pg-r2")),
                (
                    "RAGPLANE__METADATA__REPLICA_URLS",
                    &EnvSource::Composed(
                        r#"["$(RAGPLANE_POSTGRES_REPLICA_0)", "$(RAGPLANE_POSTGRES_REPLICA_1)"]"#
                            .into()
                    )
                ),
            ]
        );
        assert!(!c.config_toml.contains("replica_urls = [\""));
    }

    #[test]
    fn the_collection_resource_of_the_shared_qdrant_collection_sets_its_layout() {
        let yaml = r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: prod}
spec:
  qdrant: {external: {url: "http://qdrant:6334"}, collection: docs}
"#;
        let layout: Collection = serde_yaml::from_str(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: Collection
metadata: {name: docs, namespace: ns}
spec:
  cluster: prod
  shards: 6
  replicationFactor: 3
  writeConsistencyFactor: 2
  onDisk: true
  hnsw: {m: 0, payloadM: 16, efConstruct: 200}
  quantization: {type: scalar, quantile: 0.99, alwaysRam: true}
  tenancy: {payloadField: org}
"#,
        )
        .unwrap();
        let refs = Dereferenced {
            shared_collection: Some(layout),
            ..Dereferenced::generating(&cluster(yaml), "rp_test")
        };
        let c = validate(
            &cluster(yaml),
            &refs,
            &crate::context::DataPlaneDefaults::new("img"),
        )
        .unwrap();
        let VectorIndexConfig::Qdrant(q) = &c.config.vectors else {
            panic!("{:?}", c.config.vectors)
        };
        assert_eq!(q.collection, "docs");
        assert_eq!(
            (
                q.shard_number,
                q.replication_factor,
                q.write_consistency_factor
            ),
            (6, 3, 2)
        );
        assert!(q.on_disk);
        assert_eq!(q.tenant_field, "org");
        assert_eq!(
            (q.hnsw.m, q.hnsw.payload_m, q.hnsw.ef_construct),
            (Some(0), Some(16), Some(200))
        );
        let z = q.quantization.as_ref().unwrap();
        assert_eq!(
            (z.kind, z.quantile, z.always_ram),
            (QuantizationKind::Scalar, Some(0.99), true)
        );

        // Without the resource: the named collection with the data plane's defaults.
        let plain = validated(yaml);
        let VectorIndexConfig::Qdrant(q) = &plain.config.vectors else {
            panic!()
        };
        assert_eq!((q.collection.as_str(), q.shard_number), ("docs", 1));
    }

    #[test]
    fn only_a_collection_of_this_cluster_with_the_shared_name_is_taken() {
        let make = |name: &str, cluster: &str, qdrant: Option<&str>| -> Collection {
            let mut c: Collection = serde_yaml::from_str(&format!(
                "apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {{name: {name}}}\nspec: {{cluster: {cluster}}}\n"
            ))
            .unwrap();
            c.spec.collection_name = qdrant.map(String::from);
            c
        };
        let found = crate::rag_cluster::shared_collection(
            vec![
                make("ragplane", "other", None),
                make("a", "prod", Some("elsewhere")),
                make("b", "prod", Some("ragplane")),
            ],
            "prod",
            "ragplane",
        );
        assert_eq!(found.map(|c| c.name_any()).as_deref(), Some("b"));
    }

    #[test]
    fn the_embedding_pool_becomes_the_remote_embedder() {
        let pool: crate::crd::model_pool::ModelPool = serde_yaml::from_str(
            "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: emb, namespace: ns}\nspec: {kind: embedding, model: sentence-transformers/all-MiniLM-L6-v2}\n",
        )
        .unwrap();
        let yaml = "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: prod}\nspec: {embedding: {name: emb}}\n";
        let refs = Dereferenced {
            embedding_pool: Some(pool),
            ..Dereferenced::generating(&cluster(yaml), "rp_test")
        };
        let c = validate(
            &cluster(yaml),
            &refs,
            &crate::context::DataPlaneDefaults::new("img"),
        )
        .unwrap();
        let e = &c.config.embedding;
        assert_eq!(e.model_name, "sentence-transformers/all-MiniLM-L6-v2");
        let remote = e.remote.as_ref().unwrap();
        assert_eq!(remote.endpoints, ["http://emb.ns.svc:8080"]);
        assert_eq!(remote.protocol, ragplane_config::RemoteProtocol::Openai);
        assert!(
            c.config_toml.contains("[embedding.remote]"),
            "{}",
            c.config_toml
        );
        // Without the reference the pods embed in process.
        assert!(
            validated(yaml.replace("{embedding: {name: emb}}", "{}").as_str())
                .config
                .embedding
                .remote
                .is_none()
        );
    }

    #[test]
    fn a_previous_embedding_pool_keeps_answering_while_collections_switch() {
        let pool = |name: &str, model: &str, dimension: &str| {
            serde_yaml::from_str::<crate::crd::model_pool::ModelPool>(&format!(
                "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {{name: {name}, namespace: ns}}\nspec: {{kind: embedding, model: {model}{dimension}}}\n"
            ))
            .unwrap()
        };
        let yaml = "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: prod}\nspec: {embedding: {name: bge}, previousEmbedding: {name: minilm}}\n";
        let refs = Dereferenced {
            embedding_pool: Some(pool("bge", "BAAI/bge-base-en-v1.5", ", dimension: 768")),
            previous_embedding_pool: Some(pool(
                "minilm",
                "sentence-transformers/all-MiniLM-L6-v2",
                "",
            )),
            ..Dereferenced::generating(&cluster(yaml), "rp_test")
        };
        let defaults = crate::context::DataPlaneDefaults::new("img");
        let c = validate(&cluster(yaml), &refs, &defaults).unwrap();
        let e = &c.config.embedding;
        assert_eq!(
            (e.model_name.as_str(), e.dimension),
            ("BAAI/bge-base-en-v1.5", 768)
        );
        let previous = e.previous.as_ref().expect("[embedding.previous]");
        assert_eq!(
            (previous.model_name.as_str(), previous.dimension),
            ("sentence-transformers/all-MiniLM-L6-v2", 384)
        );
        assert_eq!(
            previous.remote.as_ref().unwrap().endpoints,
            ["http://minilm.ns.svc:8080"]
        );
        assert!(
            c.config_toml.contains("[embedding.previous.remote]"),
            "{}",
            c.config_toml
        );
        c.config.validate().expect("a valid data-plane config");
        // Both pools' Services are reachable through the network policy's egress list.
        assert_eq!(c.model_pools.len(), 2, "{:?}", c.model_pools);
        // A previous pool of another kind is refused, naming the field.
        let refs = Dereferenced {
            previous_embedding_pool: Some(
                serde_yaml::from_str(
                    "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: minilm, namespace: ns}\nspec: {kind: ollama, model: gemma3}\n",
                )
                .unwrap(),
            ),
            ..refs
        };
        let err = validate(&cluster(yaml), &refs, &defaults).unwrap_err();
        assert!(err.to_string().contains("previousEmbedding.name"), "{err}");
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
            .any(|e| e.name == "RAGPLANE__VECTORS__URL"
                && matches!(&e.from, EnvSource::Secret(r) if r.name == "pg")));
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
