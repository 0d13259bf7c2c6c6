//! Pure builders of a ModelPool's objects, one file per kind of object.

pub mod cache_pvc;
pub mod ollama_statefulset;
pub mod pdb;
pub mod server_deployment;
pub mod service;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::validate::ValidatedPool;
use crate::crd::model_pool::ModelPoolKind;
use crate::labels;

/// The workload of a pool: Ollama runs as a StatefulSet (one model cache per replica), the
/// others as a Deployment sharing one cache claim.
#[derive(Clone, Debug)]
// Built once per reconcile and consumed at once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Workload {
    /// Ollama.
    StatefulSet(StatefulSet),
    /// OpenAI-compatible or embedding server, with its cache claim.
    Deployment(Deployment, Option<PersistentVolumeClaim>),
}

/// Every object a ModelPool wants.
#[derive(Clone, Debug)]
pub struct PoolObjects {
    /// Model servers.
    pub workload: Workload,
    /// The pool's Service.
    pub service: Service,
    /// The headless Service governing an Ollama StatefulSet (`None` for a Deployment).
    pub headless: Option<Service>,
    /// At most one server of the pool down to voluntary disruptions (drains, evictions).
    pub pdb: PodDisruptionBudget,
}

/// Builds every object `p` wants.
pub fn build(p: &ValidatedPool) -> PoolObjects {
    let workload = match p.kind {
        ModelPoolKind::Ollama => {
            Workload::StatefulSet(ollama_statefulset::build_ollama_statefulset(p))
        }
        ModelPoolKind::Openai | ModelPoolKind::Embedding => Workload::Deployment(
            server_deployment::build_server_deployment(p),
            cache_pvc::build_cache_pvc(p),
        ),
    };
    PoolObjects {
        headless: matches!(workload, Workload::StatefulSet(_))
            .then(|| service::build_headless_service(p)),
        workload,
        service: service::build_service(p),
        pdb: pdb::build_pdb(p),
    }
}

/// Metadata of a child of `p`.
pub(crate) fn meta(p: &ValidatedPool, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(p.namespace.clone()),
        labels: Some(pod_labels(p)),
        owner_references: Some(vec![p.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Labels of the pool's objects and pods.
pub(crate) fn pod_labels(p: &ValidatedPool) -> std::collections::BTreeMap<String, String> {
    let mut l = labels::object("ragplane-model-server", &p.name, "model-server", "");
    l.insert(
        "ragplane.dev/model".into(),
        labels::sanitize_label(&p.model),
    );
    l.insert(
        "ragplane.dev/pool-kind".into(),
        format!("{:?}", p.kind).to_lowercase(),
    );
    l
}

/// Labels selecting the pool's pods.
pub(crate) fn selector(p: &ValidatedPool) -> std::collections::BTreeMap<String, String> {
    labels::selector("ragplane-model-server", &p.name, "model-server")
}
