//! Server-side apply under the operator's one field manager, and the `Applied` marker that status
//! computation requires.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
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

/// Server-side applies `object` in `namespace`, forcing ownership of the fields it sets.
pub async fn apply<K>(
    client: &Client,
    namespace: &str,
    object: &K,
) -> Result<Applied<K>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&object.name_any(), &params, &Patch::Apply(object))
        .await
        .map(Applied)
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
