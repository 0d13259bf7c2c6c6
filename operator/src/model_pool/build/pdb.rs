//! The PodDisruptionBudget of a ModelPool.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model_pool::validate::ValidatedPool;

/// `<pool>`: a drain or eviction takes one model server at a time, so a pool of two or more
/// keeps answering while nodes are cycled.
pub fn build_pdb(p: &ValidatedPool) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: super::meta(p, p.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(super::selector(p)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
