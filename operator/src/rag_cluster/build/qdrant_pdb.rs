//! The PodDisruptionBudget of a managed Qdrant.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::rag_cluster::validate::ValidatedCluster;

/// `<name>-qdrant`: one peer at a time, so a replicated shard always keeps a copy.
pub fn build_qdrant_pdb(c: &ValidatedCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: super::meta(c, c.child("qdrant"), "qdrant"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector("qdrant", &c.name, "qdrant")),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
