//! The Secrets the operator owns when the spec names none: the admin key (`<name>-admin-key`)
//! and a managed Qdrant's API key (`<name>-qdrant-key`). Each is created once with a random key,
//! which the dereference step reads back on every later reconcile. The operator never writes one
//! again, so a key changes only when the platform team rotates it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use crate::rag_cluster::validate::ValidatedCluster;

/// The owned Secrets that do not exist yet. One that exists is only read, never rewritten, so
/// that a rotation stands.
pub fn build_owned_secrets(c: &ValidatedCluster) -> Vec<Secret> {
    c.owned_secrets
        .iter()
        .filter(|s| !s.exists)
        .map(|s| Secret {
            metadata: super::meta(c, s.reference.name.clone(), s.component),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                s.reference.key.clone(),
                ByteString(s.value.clone().into_bytes()),
            )])),
            ..Secret::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag_cluster::build::test_support::validated;
    use crate::rag_cluster::validate::ADMIN_KEY_SECRET_KEY;

    fn names(c: &ValidatedCluster) -> Vec<String> {
        build_owned_secrets(c)
            .into_iter()
            .map(|s| s.metadata.name.unwrap())
            .collect()
    }

    #[test]
    fn the_operator_owns_the_admin_key_only_when_the_spec_names_none() {
        let own = validated("apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: dev}\nspec: {}\n");
        let s = &build_owned_secrets(&own)[0];
        assert_eq!(s.metadata.name.as_deref(), Some("dev-admin-key"));
        assert_eq!(
            s.data.as_ref().unwrap()[ADMIN_KEY_SECRET_KEY].0,
            b"rp_test",
            "the key read or generated in the dereference step"
        );
        assert_eq!(own.admin_key.name, "dev-admin-key");
        assert_eq!(own.admin_key.key, ADMIN_KEY_SECRET_KEY);

        let theirs = validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: dev}\nspec: {adminKeySecretRef: {name: mine, key: k}}\n",
        );
        assert!(build_owned_secrets(&theirs).is_empty());
        assert_eq!(theirs.admin_key.name, "mine");

        // Once it exists it is only read: a reconcile never writes back the key it read.
        let mut existing = own.clone();
        existing.owned_secrets[0].exists = true;
        assert!(build_owned_secrets(&existing).is_empty());
        assert_eq!(existing.admin_key.name, "dev-admin-key");
    }

    #[test]
    fn a_managed_qdrant_always_has_an_api_key_that_reaches_its_peers_and_the_data_plane() {
        let c = validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: prod}\nspec: {qdrant: {managed: {replicas: 3}}}\n",
        );
        assert_eq!(names(&c), ["prod-admin-key", "prod-qdrant-key"]);
        let built = crate::rag_cluster::build::build(&c);
        let peers = built
            .qdrant
            .unwrap()
            .statefulset
            .spec
            .template
            .spec
            .unwrap();
        let key_env = peers.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "QDRANT__SERVICE__API_KEY")
            .expect("the peers require the key");
        let from = key_env
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(from.name, "prod-qdrant-key");
        assert!(c.secret_env.iter().any(|e| e.name == "RAGPLANE__VECTORS__API_KEY"
            && matches!(&e.from, crate::rag_cluster::backends::EnvSource::Secret(s) if s.name == "prod-qdrant-key")));

        // A key the spec names is used instead, and nothing is created for it.
        let theirs = validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: prod}\nspec: {qdrant: {managed: {replicas: 3, apiKeySecretRef: {name: q, key: k}}}}\n",
        );
        assert_eq!(names(&theirs), ["prod-admin-key"]);
    }
}
