//! The API PodDisruptionBudget.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::rag_cluster::validate::ValidatedCluster;

/// `<name>-api`: at most `spec.api.maxUnavailable` API pods evicted at once.
pub fn build_api_pdb(c: &ValidatedCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: super::meta(c, c.child("api"), "api"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(c.api_max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector("ragplane", &c.name, "api")),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag_cluster::build::test_support::validated;

    #[test]
    fn pdb_limits_api_evictions() {
        let p = build_api_pdb(&validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: x}\nspec: {}\n",
        ));
        let spec = p.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/component"],
            "api"
        );
    }
}
