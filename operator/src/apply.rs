//! Server-side apply under the operator's one field manager, and the `Applied` marker that status
//! computation requires.
//!
//! A server-side apply that changes nothing is not a write: the API server keeps the object and
//! its resourceVersion. `ragplane_operator_applies_changed_total{kind}` counts the applies that
//! did change their object, so a steady state (no count) can be told from an operator that keeps
//! rewriting something (a count on every reconcile).

use std::fmt::Debug;
use std::sync::LazyLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};

use crate::context::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "ragplane-operator";

/// An object as the API server returned it from an apply: status can only be computed from these,
/// never from the desired objects (the field is private, so only this module creates one).
#[derive(Clone, Debug)]
pub struct Applied<K>(K);

impl<K> Applied<K> {
    /// The object as stored by the API server, status included.
    pub fn get(&self) -> &K {
        &self.0
    }

    /// Wraps an object just read back from the API server after a write other than apply.
    pub(crate) fn read_back(object: K) -> Self {
        Self(object)
    }

    /// Wraps an object as if the API server had returned it; for tests of status computation.
    #[cfg(test)]
    pub(crate) fn from_server(object: K) -> Self {
        Self(object)
    }
}

/// An object's kind, namespace and name.
type ObjectKey = (String, String, String);

/// The resourceVersion each object had after the operator's last apply to it. Bounded: an
/// object not applied for an hour (deleted, or its owner gone) is forgotten, where a map would
/// keep every object the operator ever touched. Live objects are applied again at every
/// recheck, minutes apart; a forgotten one only loses the shortcut in [`changed`].
static LAST_APPLIED: LazyLock<moka::sync::Cache<ObjectKey, String>> = LazyLock::new(|| {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_idle(std::time::Duration::from_secs(3600))
        .build()
});

/// Whether an apply that started at `started` (Unix seconds) changed the object it returned:
/// its resourceVersion moved since the operator's `previous` apply (a status update by another
/// controller moves it too), and the operator's own managed-fields entry was stamped during
/// this apply (the API server stamps it only when the manager's fields change).
pub fn changed(previous: Option<&str>, after: &ObjectMeta, started: i64) -> bool {
    if previous.is_some() && previous == after.resource_version.as_deref() {
        return false;
    }
    after.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER)
            && m.operation.as_deref() == Some("Apply")
            && m.subresource.is_none()
            && m.time.as_ref().is_some_and(|t| t.0.as_second() >= started)
    })
}

/// Server-side applies `object` in `namespace`, forcing ownership of the fields it sets, and
/// counts the apply in `ctx`'s metrics when it changed the object.
pub async fn apply<K>(ctx: &Context, namespace: &str, object: &K) -> Result<Applied<K>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let started = k8s_openapi::jiff::Timestamp::now().as_second();
    let stored = api
        .patch(&object.name_any(), &params, &Patch::Apply(object))
        .await?;
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let key = (kind.clone(), namespace.to_owned(), object.name_any());
    let meta = stored.meta();
    // One reconcile at a time per object, so the read and the write below do not race.
    let previous = LAST_APPLIED.get(&key);
    match &meta.resource_version {
        Some(rv) => LAST_APPLIED.insert(key, rv.clone()),
        None => LAST_APPLIED.invalidate(&key),
    }
    if changed(previous.as_deref(), meta, started) {
        ctx.metrics.apply_changed(&kind);
        tracing::debug!(kind, namespace, name = %object.name_any(), "apply changed the object");
    }
    Ok(Applied(stored))
}

/// Server-side applies `status` to `object`'s status subresource under the same field manager.
pub async fn apply_status<K>(
    client: &Client,
    object: &K,
    status: &impl Serialize,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let dt = K::DynamicType::default();
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&dt),
        "kind": K::kind(&dt),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&object.name_any(), &params, &Patch::Apply(&patch))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    use super::*;

    fn meta(rv: &str, manager: &str, stamped: i64) -> ObjectMeta {
        ObjectMeta {
            resource_version: Some(rv.into()),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some("Apply".into()),
                time: Some(Time(
                    k8s_openapi::jiff::Timestamp::from_second(stamped).unwrap(),
                )),
                ..ManagedFieldsEntry::default()
            }]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn only_applies_that_stamped_the_operators_fields_count_as_changes() {
        // A no-op: same resourceVersion as after the last apply.
        assert!(!changed(Some("5"), &meta("5", FIELD_MANAGER, 1000), 1000));
        // Our fields changed during this apply.
        assert!(changed(Some("5"), &meta("6", FIELD_MANAGER, 1000), 1000));
        // The object moved (say, a status update) but our fields are as they were.
        assert!(!changed(Some("5"), &meta("7", FIELD_MANAGER, 900), 1000));
        // Another manager's stamp is not ours.
        assert!(!changed(
            Some("5"),
            &meta("8", "kube-controller-manager", 1000),
            1000
        ));
        // The first apply this process makes counts when it wrote.
        assert!(changed(None, &meta("9", FIELD_MANAGER, 1001), 1000));
        assert!(!changed(None, &meta("9", FIELD_MANAGER, 10), 1000));
    }
}
