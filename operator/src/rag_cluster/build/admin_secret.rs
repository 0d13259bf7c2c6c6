//! The admin key Secret, when the spec names none: created once with a random key, which the
//! dereference step reads back on every later reconcile. The operator never writes it again, so
//! the key changes only when the platform team rotates it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use crate::rag_cluster::validate::{admin_secret_name, ValidatedCluster, ADMIN_KEY_SECRET_KEY};

/// `<name>-admin-key` while it does not exist yet; `None` when it does (it is then only read,
/// never rewritten, so that a rotation by the platform team stands) or when the spec names the
/// user's own Secret.
pub fn build_admin_secret(c: &ValidatedCluster) -> Option<Secret> {
    if c.admin_secret_exists {
        return None;
    }
    let key = c.owned_admin_key.as_ref()?;
    Some(Secret {
        metadata: super::meta(c, admin_secret_name(&c.name), "admin-key"),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            ADMIN_KEY_SECRET_KEY.to_owned(),
            ByteString(key.clone().into_bytes()),
        )])),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag_cluster::build::test_support::validated;

    #[test]
    fn the_operator_owns_the_admin_key_only_when_the_spec_names_none() {
        let own = validated("apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: dev}\nspec: {}\n");
        let s = build_admin_secret(&own).expect("an owned Secret");
        assert_eq!(s.metadata.name.as_deref(), Some("dev-admin-key"));
        assert_eq!(
            s.data.unwrap()[ADMIN_KEY_SECRET_KEY].0,
            b"rp_test",
            "the key read or generated in the dereference step"
        );
        assert_eq!(own.admin_key.name, "dev-admin-key");
        assert_eq!(own.admin_key.key, ADMIN_KEY_SECRET_KEY);

        let theirs = validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: dev}\nspec: {adminKeySecretRef: {name: mine, key: k}}\n",
        );
        assert!(build_admin_secret(&theirs).is_none());
        assert_eq!(theirs.admin_key.name, "mine");

        // Once it exists it is only read: a reconcile never writes back the key it read.
        let existing = ValidatedCluster {
            admin_secret_exists: true,
            ..own
        };
        assert!(build_admin_secret(&existing).is_none());
        assert_eq!(existing.admin_key.name, "dev-admin-key");
    }
}
