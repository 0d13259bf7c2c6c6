//! Hands a workload's `spec.replicas` from the reconciler's field manager to the autoscaler's
//! before the reconciler stops applying it.
//!
//! Under server-side apply, a field its only manager stops applying is removed, and a removed
//! `replicas` defaults to 1: switching a component from fixed replicas to autoscaling would scale
//! it to one replica for a moment. Kubernetes' documented remedy is to apply the current value
//! under the new owner first; then dropping it from the reconciler's apply leaves it in place.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::apply::Applied;

/// Whether the reconciler's apply owns `spec.replicas` in `fields`.
pub fn reconciler_owns_replicas(fields: &[ManagedFieldsEntry]) -> bool {
    fields.iter().any(|f| {
        f.manager.as_deref() == Some(crate::apply::FIELD_MANAGER)
            && f.operation.as_deref() == Some("Apply")
            && f.fields_v1
                .as_ref()
                .and_then(|v| v.0.get("f:spec"))
                .and_then(|s| s.get("f:replicas"))
                .is_some()
    })
}

/// If the reconciler owns `name`'s replicas, applies the current count under the autoscaler's
/// field manager, so the reconciler's next apply (without replicas) keeps it.
pub async fn release_replicas<K>(client: &Client, ns: &str, name: &str) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let Some(live) = api.get_metadata_opt(name).await? else {
        return Ok(());
    };
    if !reconciler_owns_replicas(live.metadata.managed_fields.as_deref().unwrap_or_default()) {
        return Ok(());
    }
    let scale = api.get_scale(name).await?;
    let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(1);
    let dt = K::DynamicType::default();
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&dt),
        "kind": K::kind(&dt),
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    tracing::info!(name, replicas, "handing replicas over to the autoscaler");
    api.patch(
        name,
        &PatchParams::apply(super::FIELD_MANAGER),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Raises the just-applied workload's replicas from `current` to `minimum` through the scale
/// subresource when it has fewer, and reads it back; returns it as it was when it had enough.
/// An autoscaled workload's replicas are not in the reconciler's apply, so the API server
/// starts it at 1; the scale subresource raises it without taking the count from whoever moves
/// it later (the autoscaler, or nobody for autoscaling bounds with no rules).
pub async fn raise_replicas<K>(
    client: &Client,
    ns: &str,
    applied: Applied<K>,
    current: i32,
    minimum: i32,
) -> Result<Applied<K>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    if current >= minimum {
        return Ok(applied);
    }
    let name = applied.get().name_any();
    let name = name.as_str();
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({"spec": {"replicas": minimum}});
    tracing::info!(
        name,
        current,
        minimum,
        "raising replicas to the autoscaling minimum"
    );
    api.patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    api.get(name).await.map(Applied::read_back)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;

    #[test]
    fn finds_the_reconcilers_claim_on_replicas() {
        let entry = |manager: &str, op: &str, fields: serde_json::Value| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(op.into()),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        };
        let replicas = serde_json::json!({"f:spec": {"f:replicas": {}, "f:template": {}}});
        let template = serde_json::json!({"f:spec": {"f:template": {}}});
        assert!(reconciler_owns_replicas(&[entry(
            "ragplane-operator",
            "Apply",
            replicas.clone()
        )]));
        assert!(!reconciler_owns_replicas(&[entry(
            "ragplane-operator",
            "Apply",
            template
        )]));
        assert!(!reconciler_owns_replicas(&[entry(
            "ragplane-autoscaler",
            "Update",
            replicas
        )]));
    }
}
