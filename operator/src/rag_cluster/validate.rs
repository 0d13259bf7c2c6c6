//! Turns a RagCluster and the objects it references into a [`ValidatedCluster`]: every default and
//! every merge happens here, so builders never read the raw resource.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::{Resource, ResourceExt};
use ragplane_config::{
    Config, GenerationConfig, GeneratorEndpoint, LogFormat, RemoteEmbedderConfig, RemoteProtocol,
};

use crate::autoscale::presets::Scope;
use crate::autoscale::Scaling;
use crate::crd::common::{SecretKeyRef, StorageSpec};
use crate::crd::model_pool::{ModelPool, ModelPoolKind};
use crate::crd::rag_cluster::{queue_names, QdrantSpec, RagCluster, RagClusterSpec};

/// Where the data plane keeps embedded data inside its pods.
pub const DATA_DIR: &str = "/var/lib/ragplane";
/// Where the rendered config is mounted.
pub const CONFIG_DIR: &str = "/etc/ragplane";
/// File name of the rendered config inside the ConfigMap.
pub const CONFIG_FILE: &str = "ragplane.toml";
/// Longest job of a worker pool when its spec sets none (the data plane's default visibility
/// timeout, after which another worker may take the job anyway).
pub const DEFAULT_MAX_JOB_SECONDS: i32 = 300;
/// Seconds a draining worker gets beyond its longest job, to finish up and exit.
pub const DRAIN_MARGIN_SECONDS: i64 = 15;
/// Default Qdrant image of managed clusters: the variant that runs as a non-root user.
pub const DEFAULT_QDRANT_IMAGE: &str = "docker.io/qdrant/qdrant:v1.15.4-unprivileged";
/// Where the data-plane image keeps its models, one directory each
/// (`images/ragplane.Containerfile`; `ragplane embed-server --model-dir` in embedding pools).
pub const IMAGE_MODELS_DIR: &str = "/opt/ragplane/models";
/// The data-plane image's embedding model, in [`IMAGE_MODELS_DIR`].
pub const IMAGE_MODEL_DIR: &str = "/opt/ragplane/models/all-minilm-l6-v2-int8";
/// Where the data-plane image keeps the ONNX Runtime library.
pub const IMAGE_ORT_LIBRARY: &str = "/opt/ragplane/onnxruntime/libonnxruntime.so";
/// File name of a backend's CA in its [`CaBackend::dir`].
pub const CA_FILE: &str = "ca.pem";

/// A backend whose TLS can trust a private CA from a Secret (`spec.<backend>.caSecretRef`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaBackend {
    /// PostgreSQL: `metadata.ca_file`, and `vectors.ca_file` when the vectors live there too.
    Postgres,
    /// Redis: `redis.ca_file`.
    Redis,
    /// S3: `objects.ca_file`.
    S3,
}

impl CaBackend {
    /// The pod volume holding the CA.
    pub fn volume(self) -> &'static str {
        match self {
            Self::Postgres => "postgres-ca",
            Self::Redis => "redis-ca",
            Self::S3 => "s3-ca",
        }
    }

    /// Where the CA is mounted: beside [`CONFIG_DIR`], not inside it, so that no volume is
    /// mounted inside another.
    pub fn dir(self) -> String {
        format!("/etc/ragplane-{}", self.volume())
    }

    /// The CA's file, as the data plane's `ca_file` setting names it.
    pub fn file(self) -> std::path::PathBuf {
        std::path::Path::new(&self.dir()).join(CA_FILE)
    }

    /// The private CAs `spec` names, each with its backend.
    pub fn in_spec(spec: &RagClusterSpec) -> impl Iterator<Item = (Self, &SecretKeyRef)> {
        [
            (
                Self::Postgres,
                spec.postgres
                    .as_ref()
                    .and_then(|p| p.ca_secret_ref.as_ref()),
            ),
            (
                Self::Redis,
                spec.redis.as_ref().and_then(|r| r.ca_secret_ref.as_ref()),
            ),
            (
                Self::S3,
                spec.s3.as_ref().and_then(|s| s.ca_secret_ref.as_ref()),
            ),
        ]
        .into_iter()
        .filter_map(|(backend, ca)| Some((backend, ca?)))
    }
}

/// Where a model of the user's own (`spec.model`) is mounted.
pub const MOUNTED_MODEL_DIR: &str = "/opt/ragplane/mounted-model";
/// Key of the admin API key in the Secret the operator creates.
pub const ADMIN_KEY_SECRET_KEY: &str = "api-key";
/// Size of the data volume of a cluster with embedded backends when its spec sets none.
pub const DEFAULT_DATA_VOLUME_SIZE: &str = "1Gi";

/// Why a RagCluster cannot be turned into objects.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The spec is inconsistent.
    #[error("spec.{field}: {message}")]
    Field {
        /// Path of the offending field below `spec`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The resource lacks metadata the API server always sets.
    #[error("the resource has no {0}")]
    Metadata(&'static str),
    /// The config could not be rendered.
    #[error("failed to render the data-plane config: {0}")]
    Render(String),
}

/// Objects a RagCluster references, read in the dereference step.
#[derive(Clone, Debug, Default)]
pub struct Dereferenced {
    /// The ModelPool named by `spec.generation`.
    pub generation_pool: Option<ModelPool>,
    /// The ModelPool named by `spec.embedding`.
    pub embedding_pool: Option<ModelPool>,
    /// The ModelPool named by `spec.previousEmbedding`.
    pub previous_embedding_pool: Option<ModelPool>,
    /// The Collection resource of this cluster that describes the shared Qdrant collection.
    pub shared_collection: Option<crate::crd::collection::Collection>,
    /// Data of every Secret the pods read (see [`referenced_secrets`]), by name, as the pods
    /// will read it: one of the operator's own holds the key it is about to be created with
    /// ([`Self::own`]); `None` for another that does not exist yet.
    pub secrets: BTreeMap<String, Option<BTreeMap<String, ByteString>>>,
    /// The value of each of the operator's own Secrets ([`owned_secrets`]), by name: the key
    /// the Secret holds, or a new random one when it does not exist yet.
    pub owned: BTreeMap<String, OwnedValue>,
}

/// The value of one of the operator's own Secrets, read or generated in the dereference step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedValue {
    /// The key.
    pub value: String,
    /// Whether the Secret already holds it; such a Secret is only read, never written again,
    /// so that a rotation by the platform team stands.
    pub exists: bool,
}

impl Dereferenced {
    /// Records the value of one of the operator's own Secrets, read or generated. One that does
    /// not hold it yet also gets it in [`Self::secrets`], as it is about to be created with it,
    /// so that creating it changes nothing the pods are built from.
    pub fn own(&mut self, r: SecretKeyRef, value: OwnedValue) {
        if !value.exists {
            self.secrets
                .entry(r.name.clone())
                .or_default()
                .get_or_insert_with(BTreeMap::new)
                .insert(r.key, ByteString(value.value.clone().into_bytes()));
        }
        self.owned.insert(r.name, value);
    }

    /// The value `r` names, as the pods will read it; `None` while it does not exist.
    pub fn value_of(&self, r: &SecretKeyRef) -> Option<&[u8]> {
        self.secrets
            .get(&r.name)?
            .as_ref()?
            .get(&r.key)
            .map(|v| v.0.as_slice())
    }

    /// References with `value` generated for every Secret the operator owns for `cluster`.
    #[cfg(test)]
    pub fn generating(cluster: &RagCluster, value: &str) -> Self {
        let mut refs = Self::default();
        for (r, _) in owned_secrets(cluster) {
            let v = OwnedValue {
                value: value.into(),
                exists: false,
            };
            refs.own(r, v);
        }
        refs
    }
}

/// A Secret the operator creates, once, with a random key, because the spec names none.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedSecret {
    /// Its name and key.
    pub reference: SecretKeyRef,
    /// The key's value.
    pub value: String,
    /// Whether it exists already (then it is not written).
    pub exists: bool,
    /// The component label of the Secret (`admin-key`, `qdrant-key`).
    pub component: &'static str,
}

/// Hash of the data of every Secret the data-plane pods read, on their pod templates so that
/// a changed Secret rolls them. The operator's own Secrets are in `refs` as they are about to
/// be created ([`Dereferenced::own`]), so creating one rolls nothing.
fn secrets_hash(refs: &Dereferenced) -> String {
    super::build::fnv_hex(refs.secrets.iter().flat_map(|(name, data)| {
        let entries = data.iter().flatten().flat_map(|(k, v)| {
            [
                k.as_bytes(),
                b"=".as_slice(),
                v.0.as_slice(),
                b"\n".as_slice(),
            ]
        });
        [name.as_bytes(), b":".as_slice()]
            .into_iter()
            .chain(entries)
            .chain([b";".as_slice()])
    }))
}

/// A RagCluster with every default applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedCluster {
    /// Resource name; prefix of every child's name.
    pub name: String,
    /// Namespace of the resource and its children.
    pub namespace: String,
    /// Controller owner reference every child carries.
    pub owner: OwnerReference,
    /// Data-plane image.
    pub image: String,
    /// Version label value.
    pub version: String,
    /// Image pull policy.
    pub image_pull_policy: Option<String>,
    /// The API component.
    pub api: Component,
    /// API Service port.
    pub api_port: i32,
    /// PodDisruptionBudget `maxUnavailable` of the API.
    pub api_max_unavailable: i32,
    /// Worker pools.
    pub workers: Vec<WorkerPool>,
    /// Vector store.
    pub qdrant: QdrantMode,
    /// The data-plane config rendered into the ConfigMap.
    pub config: Config,
    /// `config` as TOML.
    pub config_toml: String,
    /// Secret key holding the admin key: the spec's, or the operator's own Secret.
    pub admin_key: SecretKeyRef,
    /// The Secrets the operator owns: the admin key and a managed Qdrant's API key, each when
    /// the spec names none.
    pub owned_secrets: Vec<OwnedSecret>,
    /// Secret-fed environment variables of every data-plane pod (backend URLs, keys).
    pub secret_env: Vec<super::backends::SecretEnv>,
    /// Persistent volume of the data directory, when any backend is embedded.
    pub data_volume: Option<StorageSpec>,
    /// Hash of the data of every Secret the pods read; a changed Secret rolls them.
    pub secrets_hash: String,
    /// A model of the user's own, mounted in place of the image's.
    pub model: Option<crate::crd::rag_cluster::ModelVolume>,
    /// The Secret keys of the backends' private CAs, each mounted at its [`CaBackend::dir`].
    pub cas: Vec<(CaBackend, SecretKeyRef)>,
    /// Peers allowed in besides the data plane, when NetworkPolicies are on.
    pub network_policy: Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>>,
    /// The ModelPools the data plane calls, with their ports.
    pub model_pools: Vec<(String, i32)>,
}

/// A Deployment-backed component.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    /// Replicas to write; `None` when autoscaling owns the count.
    pub replicas: Option<i32>,
    /// Replicas expected for readiness (`replicas`, or the autoscaling minimum).
    pub desired: i32,
    /// Container resources.
    pub resources: Option<ResourceRequirements>,
    /// Who writes the replica count.
    pub scaling: Scaling,
}

/// A validated worker pool.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerPool {
    /// Pool name.
    pub name: String,
    /// Queues it consumes.
    pub queues: Vec<String>,
    /// Jobs at once per worker.
    pub concurrency: Option<i32>,
    /// Replicas and resources.
    pub component: Component,
    /// Node selector.
    pub node_selector: BTreeMap<String, String>,
    /// Pods' `terminationGracePeriodSeconds`: the longest job plus a margin, so a worker scaled
    /// in drains its in-flight jobs instead of being killed mid-job.
    pub termination_grace_seconds: i64,
}

/// How the vector store is provided.
#[derive(Clone, Debug, PartialEq)]
pub enum QdrantMode {
    /// The data plane's embedded index (no Qdrant).
    Embedded,
    /// A StatefulSet run by the operator.
    Managed(ManagedQdrant),
    /// Qdrant run elsewhere.
    External {
        /// gRPC URL.
        url: String,
        /// API key Secret.
        api_key: Option<SecretKeyRef>,
    },
}

/// A validated managed Qdrant.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedQdrant {
    /// Peers.
    pub replicas: i32,
    /// Image.
    pub image: String,
    /// Per-peer storage; `None` means ephemeral `emptyDir`.
    pub storage: Option<StorageSpec>,
    /// Resources.
    pub resources: Option<ResourceRequirements>,
    /// API key Secret.
    pub api_key: Option<SecretKeyRef>,
    /// Hash of the API key's value, on the peers' pod template: a rotated key rolls them, as it
    /// rolls the data plane, instead of leaving them on the old one.
    pub api_key_hash: String,
}

impl ValidatedCluster {
    /// Name of the child `suffix` of this cluster.
    pub fn child(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// In-cluster URL of the API.
    pub fn endpoint(&self) -> String {
        format!(
            "http://{}.{}.svc:{}",
            self.child("api"),
            self.namespace,
            self.api_port
        )
    }
}

/// Name of the admin key Secret the operator creates for `cluster`.
pub fn admin_secret_name(cluster: &str) -> String {
    format!("{cluster}-admin-key")
}

/// Name of the Qdrant API key Secret the operator creates for `cluster`'s managed Qdrant.
pub fn qdrant_secret_name(cluster: &str) -> String {
    format!("{cluster}-qdrant-key")
}

/// The API key of `cluster`'s managed Qdrant: the spec's Secret, or the operator's own, so that
/// a managed Qdrant never runs without one.
pub fn managed_qdrant_key(
    cluster: &RagCluster,
    m: &crate::crd::rag_cluster::ManagedQdrant,
) -> SecretKeyRef {
    m.api_key_secret_ref
        .clone()
        .unwrap_or_else(|| SecretKeyRef {
            name: qdrant_secret_name(&cluster.name_any()),
            key: ADMIN_KEY_SECRET_KEY.into(),
        })
}

/// The Secrets the operator creates for `cluster` because the spec names none, with their
/// component labels: the admin key, and a managed Qdrant's API key.
pub fn owned_secrets(cluster: &RagCluster) -> Vec<(SecretKeyRef, &'static str)> {
    let spec = &cluster.spec;
    let mut out = Vec::new();
    if spec.admin_key_secret_ref.is_none() {
        out.push((
            SecretKeyRef {
                name: admin_secret_name(&cluster.name_any()),
                key: ADMIN_KEY_SECRET_KEY.into(),
            },
            "admin-key",
        ));
    }
    if let Some(m) = spec.qdrant.as_ref().and_then(|q| q.managed.as_ref()) {
        if m.api_key_secret_ref.is_none() {
            out.push((managed_qdrant_key(cluster, m), "qdrant-key"));
        }
    }
    out
}

/// Names of the Secrets whose keys the data-plane pods of `cluster` read.
pub fn referenced_secrets(cluster: &RagCluster) -> BTreeSet<String> {
    let spec = &cluster.spec;
    let mut out = BTreeSet::new();
    out.insert(spec.admin_key_secret_ref.as_ref().map_or_else(
        || admin_secret_name(&cluster.name_any()),
        |r| r.name.clone(),
    ));
    if let Some(pg) = &spec.postgres {
        out.insert(pg.url_secret_ref.name.clone());
        out.extend(
            pg.read_replica_url_secret_refs
                .iter()
                .map(|r| r.name.clone()),
        );
    }
    if let Some(r) = &spec.redis {
        out.insert(r.url_secret_ref.name.clone());
    }
    if let Some(name) = spec.s3.as_ref().and_then(|s| s.credentials_secret.clone()) {
        out.insert(name);
    }
    out.extend(CaBackend::in_spec(spec).map(|(_, ca)| ca.name.clone()));
    if let Some(q) = &spec.qdrant {
        let key = q
            .managed
            .as_ref()
            .map(|m| managed_qdrant_key(cluster, m))
            .or_else(|| {
                q.external
                    .as_ref()
                    .and_then(|e| e.api_key_secret_ref.clone())
            });
        out.extend(key.map(|k| k.name));
    }
    out
}

/// Name of the headless Service of a cluster's managed Qdrant.
pub fn qdrant_service_name(cluster: &str) -> String {
    format!("{cluster}-qdrant")
}

/// Validates `cluster` against what it references.
pub fn validate(
    cluster: &RagCluster,
    refs: &Dereferenced,
    defaults: &crate::context::DataPlaneDefaults,
) -> Result<ValidatedCluster, ValidationError> {
    let name = cluster
        .metadata
        .name
        .clone()
        .ok_or(ValidationError::Metadata("name"))?;
    let namespace = cluster
        .namespace()
        .ok_or(ValidationError::Metadata("namespace"))?;
    let owner = cluster
        .controller_owner_ref(&())
        .ok_or(ValidationError::Metadata("uid"))?;
    let spec = &cluster.spec;
    // An omitted version keeps the one the cluster runs, so that upgrading the operator rolls
    // no cluster; only a new cluster takes the operator's own version.
    let version = spec
        .version
        .clone()
        .or_else(|| cluster.status.as_ref().and_then(|s| s.version.clone()))
        .unwrap_or_else(|| defaults.version.clone());
    let image = spec
        .image
        .clone()
        .unwrap_or_else(|| format!("{}:{version}", defaults.image));

    let api = component(
        spec.api.replicas,
        spec.api.autoscaling.as_ref(),
        &spec.api.resources,
        Scope::Api {
            namespace: &namespace,
            cluster: &name,
        },
        "api",
    )?;
    // The CRD's rule says the same; this holds for objects written before it existed.
    if !spec.workers.is_empty() && spec.redis.is_none() {
        return Err(field(
            "workers",
            "worker pools need spec.redis, the queue they share with the API",
        ));
    }
    let mut workers = Vec::with_capacity(spec.workers.len());
    for (i, w) in spec.workers.iter().enumerate() {
        if workers.iter().any(|v: &WorkerPool| v.name == w.name) {
            return Err(field(
                format!("workers[{i}].name"),
                format!("duplicate pool name {:?}", w.name),
            ));
        }
        workers.push(WorkerPool {
            name: w.name.clone(),
            queues: queue_names(&w.queues),
            concurrency: w.concurrency,
            component: component(
                w.replicas,
                w.autoscaling.as_ref(),
                &w.resources,
                Scope::Worker {
                    namespace: &namespace,
                    cluster: &name,
                    queues: &queue_names(&w.queues),
                },
                &format!("workers[{i}]"),
            )?,
            node_selector: w.node_selector.clone(),
            termination_grace_seconds: i64::from(
                w.max_job_seconds.unwrap_or(DEFAULT_MAX_JOB_SECONDS),
            ) + DRAIN_MARGIN_SECONDS,
        });
    }

    let qdrant = match &spec.qdrant {
        None => QdrantMode::Embedded,
        Some(QdrantSpec {
            managed: Some(m),
            external: None,
            ..
        }) => {
            let key = managed_qdrant_key(cluster, m);
            QdrantMode::Managed(ManagedQdrant {
                replicas: m.replicas,
                image: m
                    .image
                    .clone()
                    .unwrap_or_else(|| DEFAULT_QDRANT_IMAGE.into()),
                storage: m.storage.clone(),
                resources: m.resources.clone(),
                api_key_hash: super::build::fnv_hex([refs.value_of(&key).unwrap_or_default()]),
                api_key: Some(key),
            })
        }
        Some(QdrantSpec {
            managed: None,
            external: Some(e),
            ..
        }) => QdrantMode::External {
            url: e.url.clone(),
            api_key: e.api_key_secret_ref.clone(),
        },
        Some(_) => {
            return Err(field(
                "qdrant",
                "exactly one of qdrant.managed or qdrant.external must be set",
            ))
        }
    };

    let generation = match (&spec.generation, &refs.generation_pool) {
        (None, _) => GenerationConfig::None {},
        (Some(r), Some(pool)) => generation_config(pool, r.model.as_deref(), &namespace)?,
        (Some(r), None) => {
            return Err(field(
                "generation.name",
                format!("ModelPool {:?} was not dereferenced", r.name),
            ))
        }
    };
    for (at, reference, pool) in [
        ("embedding", &spec.embedding, &refs.embedding_pool),
        (
            "previousEmbedding",
            &spec.previous_embedding,
            &refs.previous_embedding_pool,
        ),
    ] {
        if let (Some(r), Some(pool)) = (reference, pool) {
            if pool.spec.kind != ModelPoolKind::Embedding {
                return Err(field(
                    format!("{at}.name"),
                    format!(
                        "ModelPool {:?} has kind {:?}, expected embedding",
                        r.name, pool.spec.kind
                    ),
                ));
            }
        }
    }

    let mut config = Config {
        data_dir: DATA_DIR.into(),
        generation,
        ..Config::default()
    };
    // The model and ONNX Runtime come from the image (or the user's claim) at fixed paths, never
    // from a home directory.
    config.embedding.ort_library = Some(IMAGE_ORT_LIBRARY.into());
    config.embedding.model_dir = Some(IMAGE_MODEL_DIR.into());
    if let Some(m) = &spec.model {
        config.embedding.model_dir = Some(MOUNTED_MODEL_DIR.into());
        config.embedding.model_name.clone_from(&m.name);
    }
    if let Some(pool) = &refs.embedding_pool {
        pool_embedder(&mut config.embedding, pool, &namespace);
    }
    if let Some(d) = spec.embedding_dimension(refs.embedding_pool.as_ref()) {
        config.embedding.dimension = dimension(d, "embedding")?;
    }
    if let Some(pool) = &refs.previous_embedding_pool {
        let mut previous = ragplane_config::EmbeddingConfig {
            ort_library: config.embedding.ort_library.clone(),
            model_dir: Some(IMAGE_MODEL_DIR.into()),
            ..ragplane_config::EmbeddingConfig::default()
        };
        pool_embedder(&mut previous, pool, &namespace);
        if let Some(d) = pool.spec.dimension {
            previous.dimension = dimension(d, "previousEmbedding")?;
        }
        config.embedding.previous = Some(Box::new(previous));
    }
    config.server.listen = std::net::SocketAddr::from(([0, 0, 0, 0], 8080));
    config.telemetry.log_format = LogFormat::Json;
    if let Some(filter) = &spec.log_filter {
        config.telemetry.log_filter.clone_from(filter);
    }
    if let Some(t) = &spec.traces {
        config.telemetry.traces = ragplane_config::TracesConfig {
            endpoint: Some(t.endpoint.clone()),
            protocol: t.protocol.map(Into::into),
            sample_ratio: t.sample_ratio,
            service_name: None,
        };
    }
    // With dedicated worker pools the API pods only serve HTTP.
    config.workers.enabled = workers.is_empty();
    let secret_env = super::backends::apply_backends(
        spec,
        &name,
        &qdrant,
        refs.shared_collection.as_ref(),
        &mut config,
    )
    .map_err(ValidationError::Render)?;
    config
        .validate()
        .map_err(|e| ValidationError::Render(e.to_string()))?;
    let config_toml = super::backends::strip_secrets(&config).map_err(ValidationError::Render)?;

    let owned_secrets = owned_secrets(cluster)
        .into_iter()
        .map(|(reference, component)| {
            let owned = refs.owned.get(&reference.name).ok_or_else(|| {
                field(
                    component,
                    format!("no key was read or generated for Secret {}", reference.name),
                )
            })?;
            Ok(OwnedSecret {
                value: owned.value.clone(),
                exists: owned.exists,
                reference,
                component,
            })
        })
        .collect::<Result<Vec<_>, ValidationError>>()?;
    let admin_key = spec
        .admin_key_secret_ref
        .clone()
        .unwrap_or_else(|| SecretKeyRef {
            name: admin_secret_name(&name),
            key: ADMIN_KEY_SECRET_KEY.into(),
        });
    // Embedded metadata, queue, originals or vectors live in the pod's data directory, which
    // must then survive a restart.
    let embedded = spec.postgres.is_none() || spec.s3.is_none() || spec.redis.is_none();
    let data_volume = embedded.then(|| {
        spec.api.storage.clone().unwrap_or_else(|| StorageSpec {
            size: DEFAULT_DATA_VOLUME_SIZE.into(),
            storage_class_name: None,
        })
    });
    let secrets_hash = secrets_hash(refs);

    Ok(ValidatedCluster {
        name,
        namespace,
        owner,
        image,
        version,
        image_pull_policy: spec.image_pull_policy.clone(),
        api,
        api_port: spec.api.port,
        api_max_unavailable: spec.api.max_unavailable,
        workers,
        qdrant,
        config,
        config_toml,
        admin_key,
        owned_secrets,
        secret_env,
        data_volume,
        secrets_hash,
        model: spec.model.clone(),
        cas: CaBackend::in_spec(spec)
            .map(|(backend, ca)| (backend, ca.clone()))
            .collect(),
        network_policy: spec
            .network_policy
            .as_ref()
            .filter(|p| p.enabled)
            .map(|p| p.allow_from.clone()),
        model_pools: [
            &refs.generation_pool,
            &refs.embedding_pool,
            &refs.previous_embedding_pool,
        ]
        .into_iter()
        .flatten()
        .map(|p| (p.name_any(), crate::model_pool::validate::port(p.spec.kind)))
        .collect(),
    })
}

/// A stated embedding dimension, which the CRDs' schemas keep at 1 or more.
fn dimension(d: i32, at: &str) -> Result<usize, ValidationError> {
    usize::try_from(d).map_err(|_| field(at, format!("dimension {d} must be at least 1")))
}

/// Makes `embedding` embed with `pool`, which serves OpenAI's /v1/embeddings
/// (text-embeddings-inference does, and so does `ragplane embed-server`); its model name keys
/// the embedding cache, and its dimension (set by the caller) is checked on every answer.
fn pool_embedder(
    embedding: &mut ragplane_config::EmbeddingConfig,
    pool: &ModelPool,
    namespace: &str,
) {
    let url = crate::model_pool::validate::service_url(&pool.name_any(), namespace, pool.spec.kind);
    embedding.model_name.clone_from(&pool.spec.model);
    embedding.remote = Some(RemoteEmbedderConfig {
        endpoints: vec![url],
        protocol: RemoteProtocol::Openai,
        ..RemoteEmbedderConfig::default()
    });
}

fn field(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError::Field {
        field: field.into(),
        message: message.into(),
    }
}

fn component(
    replicas: i32,
    autoscaling: Option<&crate::crd::common::Autoscaling>,
    resources: &Option<ResourceRequirements>,
    scope: crate::autoscale::presets::Scope<'_>,
    path: &str,
) -> Result<Component, ValidationError> {
    let scaling = crate::autoscale::scaling(replicas, autoscaling, scope, path)
        .map_err(|(f, m)| field(f, m))?;
    Ok(Component {
        replicas: scaling.fixed(),
        desired: scaling.desired(),
        resources: resources.clone(),
        scaling,
    })
}

/// Most per-pod endpoints rendered for one Ollama pool.
const MAX_POD_ENDPOINTS: i32 = 64;

/// Each Ollama server of `pool` by its stable name through the pool's headless Service, so that
/// the data plane's health-checked pool sees every server and fails over when one goes: one
/// ClusterIP URL would hide them behind kube-proxy. An autoscaled pool gets `maxReplicas`
/// names; those with no pod behind them are ejected by the health probes until one starts.
/// `None` for a pool of no replicas.
fn ollama_pod_urls(pool: &ModelPool, namespace: &str) -> Option<Vec<String>> {
    let name = pool.name_any();
    let count = pool
        .spec
        .autoscaling
        .as_ref()
        .map_or(pool.spec.replicas, |a| a.max_replicas)
        .clamp(0, MAX_POD_ENDPOINTS);
    let headless = crate::model_pool::build::service::headless_name(&name);
    let port = crate::model_pool::validate::port(ModelPoolKind::Ollama);
    (count > 0).then(|| {
        (0..count)
            .map(|i| format!("http://{name}-{i}.{headless}.{namespace}.svc:{port}"))
            .collect()
    })
}

/// The generation section for a ModelPool: every Ollama server by name, or the Service of an
/// OpenAI-compatible pool.
fn generation_config(
    pool: &ModelPool,
    model: Option<&str>,
    namespace: &str,
) -> Result<GenerationConfig, ValidationError> {
    let model = model.unwrap_or(&pool.spec.model);
    let url = crate::model_pool::validate::service_url(&pool.name_any(), namespace, pool.spec.kind);
    // Deserialising keeps the config crate's own defaults for the fields not set here.
    let endpoint = |url: String| -> Result<GeneratorEndpoint, ValidationError> {
        serde_json::from_value(serde_json::json!({ "url": url, "model": model }))
            .map_err(|e| ValidationError::Render(e.to_string()))
    };
    match pool.spec.kind {
        ModelPoolKind::Ollama => match ollama_pod_urls(pool, namespace) {
            Some(urls) => {
                serde_json::from_value(serde_json::json!({ "urls": urls, "model": model }))
                    .map(GenerationConfig::Ollama)
                    .map_err(|e| ValidationError::Render(e.to_string()))
            }
            None => Ok(GenerationConfig::Ollama(endpoint(url)?)),
        },
        ModelPoolKind::Openai => Ok(GenerationConfig::Openai(endpoint(format!("{url}/v1"))?)),
        ModelPoolKind::Embedding => Err(field(
            "generation.name",
            format!(
                "ModelPool {:?} has kind embedding, expected ollama or openai",
                pool.name_any()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::DataPlaneDefaults;
    use crate::crd::rag_cluster::RagClusterStatus;
    use crate::rag_cluster::build::test_support::cluster;

    fn image(c: &RagCluster, operator_version: &str) -> String {
        let defaults = DataPlaneDefaults {
            image: "repo/ragplane".into(),
            version: operator_version.into(),
        };
        let refs = Dereferenced::generating(c, "rp_test");
        validate(c, &refs, &defaults).unwrap().image
    }

    #[test]
    fn an_omitted_version_stays_at_the_one_the_cluster_runs() {
        let mut c = cluster(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: a}\nspec: {}\n",
        );
        assert_eq!(image(&c, "0.2.0"), "repo/ragplane:0.2.0", "a new cluster");
        c.status = Some(RagClusterStatus {
            version: Some("0.1.0".into()),
            ..RagClusterStatus::default()
        });
        assert_eq!(
            image(&c, "0.2.0"),
            "repo/ragplane:0.1.0",
            "an operator upgrade rolls nothing"
        );
        c.spec.version = Some("0.2.0".into());
        assert_eq!(
            image(&c, "0.2.0"),
            "repo/ragplane:0.2.0",
            "an explicit upgrade"
        );
    }

    #[test]
    fn secrets_the_pods_read_are_hashed_so_a_change_rolls_them() {
        let c = cluster(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: a}
spec:
  postgres: {urlSecretRef: {name: pg, key: url}, readReplicaUrlSecretRefs: [{name: pg-ro, key: url}]}
  redis: {urlSecretRef: {name: redis, key: url}}
  s3: {bucket: docs, credentialsSecret: s3}
  qdrant: {external: {url: "http://q:6334", apiKeySecretRef: {name: qdrant, key: k}}}
"#,
        );
        let names: Vec<String> = referenced_secrets(&c).into_iter().collect();
        assert_eq!(
            names,
            ["a-admin-key", "pg", "pg-ro", "qdrant", "redis", "s3"]
        );
        let hash = |url: &[u8]| {
            let mut refs = Dereferenced::generating(&c, "rp_test");
            for n in &names {
                refs.secrets.entry(n.clone()).or_insert(None);
            }
            refs.secrets.insert(
                "pg".into(),
                Some(BTreeMap::from([("url".into(), ByteString(url.to_vec()))])),
            );
            validate(&c, &refs, &DataPlaneDefaults::new("r"))
                .unwrap()
                .secrets_hash
        };
        assert_eq!(hash(b"postgres://a"), hash(b"postgres://a"));
        assert_ne!(hash(b"postgres://a"), hash(b"postgres://b"));
    }

    #[test]
    fn creating_the_operators_own_secret_rolls_nothing() {
        let c = cluster(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: a}\nspec: {}\n",
        );
        let hash = |refs: &Dereferenced| {
            validate(&c, refs, &DataPlaneDefaults::new("r"))
                .unwrap()
                .secrets_hash
        };
        let admin = || SecretKeyRef {
            name: "a-admin-key".into(),
            key: ADMIN_KEY_SECRET_KEY.into(),
        };
        // The first reconcile, as the dereference step makes it: the Secret is read missing,
        // then a key is generated for it.
        let mut before = Dereferenced::default();
        before.secrets.insert("a-admin-key".into(), None);
        let generated = OwnedValue {
            value: "rp_first".into(),
            exists: false,
        };
        before.own(admin(), generated);
        // A later one: the Secret is read back holding `key`.
        let holding = |key: &str| {
            let mut refs = Dereferenced::default();
            let data = BTreeMap::from([(
                ADMIN_KEY_SECRET_KEY.into(),
                ByteString(key.as_bytes().to_vec()),
            )]);
            refs.secrets.insert("a-admin-key".into(), Some(data));
            let read = OwnedValue {
                value: key.into(),
                exists: true,
            };
            refs.own(admin(), read);
            refs
        };
        // Created with the key the first reconcile generated: nothing rolls.
        assert_eq!(hash(&before), hash(&holding("rp_first")));
        // A rotation by the platform team still rolls the pods.
        assert_ne!(hash(&before), hash(&holding("rp_second")));
    }

    #[test]
    fn generation_reaches_each_ollama_server_by_name() {
        let pool = |spec: &str| -> ModelPool {
            serde_yaml::from_str(&format!(
                "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {{name: llm, namespace: rag}}\nspec: {spec}\n"
            ))
            .unwrap()
        };
        let urls = |spec: &str| match generation_config(&pool(spec), None, "rag").unwrap() {
            GenerationConfig::Ollama(e) => (e.url, e.urls),
            other => panic!("{other:?}"),
        };
        let (url, fixed) = urls("{kind: ollama, model: m, replicas: 2}");
        assert!(url.is_empty());
        assert_eq!(
            fixed,
            [
                "http://llm-0.llm-pods.rag.svc:11434",
                "http://llm-1.llm-pods.rag.svc:11434"
            ]
        );
        let (_, scaled) = urls(
            "{kind: ollama, model: m, replicas: 1, autoscaling: {minReplicas: 1, maxReplicas: 3}}",
        );
        assert_eq!(scaled.len(), 3);
        // No replica: the Service, which answers once there is one.
        let (url, none) = urls("{kind: ollama, model: m, replicas: 0}");
        assert_eq!((url.as_str(), none.len()), ("http://llm.rag.svc:11434", 0));
        // An OpenAI-compatible pool is reached through its Service.
        let GenerationConfig::Openai(e) =
            generation_config(&pool("{kind: openai, model: m}"), None, "rag").unwrap()
        else {
            panic!("openai")
        };
        assert_eq!(e.url, "http://llm.rag.svc:8000/v1");
    }
}
