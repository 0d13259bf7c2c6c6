//! Pure builders: one function per kind of object, from a [`ValidatedCluster`] only.

pub mod api_deployment;
pub mod api_pdb;
pub mod api_service;
pub mod config_map;
pub mod data_volume;
pub mod network_policies;
pub mod owned_secrets;
pub mod qdrant_pdb;
pub mod qdrant_service;
pub mod qdrant_statefulset;
pub mod worker_deployment;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimVolumeSource, PodSpec, Probe, Secret, SecretKeySelector,
    SecretVolumeSource, Service, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::backends::EnvSource;
use super::validate::{
    QdrantMode, ValidatedCluster, CA_FILE, CONFIG_DIR, CONFIG_FILE, DATA_DIR, MOUNTED_MODEL_DIR,
};
use crate::autoscale::hpa::build_hpa;
use crate::autoscale::Scaling;
use crate::crd::common::SecretKeyRef;
use crate::labels;

/// Every object a RagCluster wants.
#[derive(Clone, Debug)]
pub struct ClusterObjects {
    /// Rendered data-plane config.
    pub config_map: ConfigMap,
    /// The operator's own Secrets that do not exist yet (admin key, managed Qdrant key).
    pub owned_secrets: Vec<Secret>,
    /// The data directory's claim, when any backend is embedded.
    pub data_volume: Option<PersistentVolumeClaim>,
    /// API Deployment.
    pub api_deployment: Deployment,
    /// API Service.
    pub api_service: Service,
    /// API PodDisruptionBudget.
    pub api_pdb: PodDisruptionBudget,
    /// One Deployment per worker pool.
    pub workers: Vec<Deployment>,
    /// Managed Qdrant, when asked for.
    pub qdrant: Option<QdrantObjects>,
    /// HorizontalPodAutoscalers of the components with CPU/memory targets.
    pub hpas: Vec<HorizontalPodAutoscaler>,
    /// NetworkPolicies, when asked for.
    pub network_policies: Vec<k8s_openapi::api::networking::v1::NetworkPolicy>,
}

/// The objects of a managed Qdrant.
#[derive(Clone, Debug)]
pub struct QdrantObjects {
    /// The peers.
    pub statefulset: StatefulSet,
    /// Headless Service for peer discovery and clients.
    pub service: Service,
    /// PodDisruptionBudget.
    pub pdb: PodDisruptionBudget,
}

/// Builds every object `c` wants.
pub fn build(c: &ValidatedCluster) -> ClusterObjects {
    ClusterObjects {
        config_map: config_map::build_config_map(c),
        owned_secrets: owned_secrets::build_owned_secrets(c),
        network_policies: network_policies::build_network_policies(c),
        data_volume: data_volume::build_data_volume(c),
        api_deployment: api_deployment::build_api_deployment(c),
        api_service: api_service::build_api_service(c),
        api_pdb: api_pdb::build_api_pdb(c),
        workers: c
            .workers
            .iter()
            .map(|w| worker_deployment::build_worker_deployment(c, w))
            .collect(),
        qdrant: match &c.qdrant {
            QdrantMode::Managed(q) => Some(QdrantObjects {
                statefulset: qdrant_statefulset::build_qdrant_statefulset(c, q),
                service: qdrant_service::build_qdrant_service(c),
                pdb: qdrant_pdb::build_qdrant_pdb(c),
            }),
            QdrantMode::Embedded | QdrantMode::External { .. } => None,
        },
        hpas: hpas(c),
    }
}

/// One HPA per component whose replicas follow CPU/memory targets, named after its Deployment.
fn hpas(c: &ValidatedCluster) -> Vec<HorizontalPodAutoscaler> {
    let mut out = Vec::new();
    if let Scaling::Hpa(t) = &c.api.scaling {
        let name = c.child("api");
        out.push(build_hpa(
            meta(c, name.clone(), "api"),
            "Deployment",
            &name,
            t,
        ));
    }
    for w in &c.workers {
        if let Scaling::Hpa(t) = &w.component.scaling {
            let name = worker_deployment::worker_name(&c.name, &w.name);
            let mut m = meta(c, name.clone(), "worker");
            if let Some(l) = m.labels.as_mut() {
                l.insert(labels::WORKER_POOL.into(), w.name.clone());
            }
            out.push(build_hpa(m, "Deployment", &name, t));
        }
    }
    out
}

/// Metadata of a child named `name` with `component` labels.
pub(crate) fn meta(c: &ValidatedCluster, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(c.namespace.clone()),
        labels: Some(labels::object("ragplane", &c.name, component, &c.version)),
        owner_references: Some(vec![c.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// An environment variable read from a Secret key.
pub(crate) fn secret_env(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// A plain environment variable.
pub(crate) fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// A container environment variable holding a field of its pod (`metadata.name`, ...).
pub(crate) fn env_from_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Hex FNV-1a hash of a byte sequence; stable across builds and platforms.
pub(crate) fn fnv_hex<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.into_iter().flatten() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Hash of the rendered config.
pub(crate) fn config_hash(c: &ValidatedCluster) -> String {
    fnv_hex([c.config_toml.as_bytes()])
}

/// Pod-template annotations of a data-plane pod: a changed config or Secret rolls the pods.
pub(crate) fn pod_annotations(c: &ValidatedCluster) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        (labels::CONFIG_HASH.to_owned(), config_hash(c)),
        (labels::SECRETS_HASH.to_owned(), c.secrets_hash.clone()),
    ])
}

/// Longest start (migrations, model load) the startup probe allows: 60 tries 5 s apart.
const STARTUP_PROBE_FAILURES: i32 = 60;

/// The pod spec of a data-plane process (API or worker).
pub(crate) fn data_plane_pod(
    c: &ValidatedCluster,
    extra_env: Vec<EnvVar>,
    resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    node_selector: Option<std::collections::BTreeMap<String, String>>,
) -> PodSpec {
    let mut env_vars = vec![
        env("RAGPLANE_CONFIG", format!("{CONFIG_DIR}/{CONFIG_FILE}")),
        secret_env("RAGPLANE_ADMIN_KEY", &c.admin_key),
    ];
    env_vars.extend(c.secret_env.iter().map(|e| match &e.from {
        EnvSource::Secret(r) => secret_env(&e.name, r),
        EnvSource::Composed(value) => env(&e.name, value.clone()),
    }));
    env_vars.extend(extra_env);
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let data = match &c.data_volume {
        Some(_) => Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: data_volume::data_volume_name(c),
                read_only: None,
            }),
            ..Volume::default()
        },
        None => Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    };
    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "data".into(),
            mount_path: DATA_DIR.into(),
            ..VolumeMount::default()
        },
    ];
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: c.child("config"),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        data,
    ];
    if let Some(m) = &c.model {
        mounts.push(VolumeMount {
            name: "model".into(),
            mount_path: MOUNTED_MODEL_DIR.into(),
            sub_path: m.sub_path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "model".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: m.claim_name.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
    }
    for (backend, ca) in &c.cas {
        mounts.push(VolumeMount {
            name: backend.volume().into(),
            mount_path: backend.dir(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: backend.volume().into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(ca.name.clone()),
                items: Some(vec![KeyToPath {
                    key: ca.key.clone(),
                    path: CA_FILE.into(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    PodSpec {
        containers: vec![Container {
            name: "ragplane".into(),
            image: Some(c.image.clone()),
            image_pull_policy: c.image_pull_policy.clone(),
            args: Some(vec![
                "serve".into(),
                "--config".into(),
                format!("{CONFIG_DIR}/{CONFIG_FILE}"),
            ]),
            env: Some(env_vars),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            }]),
            // Liveness starts only once the startup probe passed: migrations and the model load
            // may take longer than the liveness window.
            startup_probe: Some(probe("/healthz", 5, STARTUP_PROBE_FAILURES)),
            readiness_probe: Some(probe("/readyz", 5, 3)),
            liveness_probe: Some(probe("/healthz", 10, 3)),
            resources,
            security_context: Some(crate::security::restricted_container(true)),
            volume_mounts: Some(mounts),
            ..Container::default()
        }],
        volumes: Some(volumes),
        node_selector,
        security_context: Some(crate::security::restricted_pod(
            crate::security::DATA_PLANE_UID,
        )),
        termination_grace_period_seconds: Some(30),
        ..PodSpec::default()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Inline-YAML fixtures for the builder tests.

    use crate::crd::rag_cluster::RagCluster;
    use crate::rag_cluster::validate::{validate, Dereferenced, ValidatedCluster};

    /// Parses a RagCluster from YAML, giving it a uid so it can own children.
    pub fn cluster(yaml: &str) -> RagCluster {
        let mut c: RagCluster = serde_yaml::from_str(yaml).expect("valid RagCluster YAML");
        c.metadata.uid = Some("uid-1".into());
        c.metadata.namespace.get_or_insert_with(|| "ns".into());
        c
    }

    /// Validates YAML without references.
    pub fn validated(yaml: &str) -> ValidatedCluster {
        let c = cluster(yaml);
        validate(
            &c,
            &Dereferenced::generating(&c, "rp_test"),
            &crate::context::DataPlaneDefaults::new("ghcr.io/ragplane/ragplane"),
        )
        .expect("valid cluster")
    }
}
