//! The PersistentVolumeClaim of the data directory of a cluster with embedded backends, so that
//! SQLite, the local originals and the embedded index survive a pod restart.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::rag_cluster::validate::ValidatedCluster;

/// Name of the claim: `<name>-data`.
pub fn data_volume_name(c: &ValidatedCluster) -> String {
    c.child("data")
}

/// `<name>-data`, or `None` when every backend is shared.
pub fn build_data_volume(c: &ValidatedCluster) -> Option<PersistentVolumeClaim> {
    let storage = c.data_volume.as_ref()?;
    Some(PersistentVolumeClaim {
        metadata: super::meta(c, data_volume_name(c), "data"),
        // One API pod writes it (a CEL rule keeps embedded clusters at one replica).
        spec: Some(storage.claim_spec("ReadWriteOnce")),
        ..PersistentVolumeClaim::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag_cluster::build::api_deployment::build_api_deployment;
    use crate::rag_cluster::build::test_support::validated;

    #[test]
    fn embedded_backends_keep_their_data_on_a_claim_and_recreate_the_pod() {
        let c = validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: dev}\nspec:\n  api: {replicas: 1, storage: {size: 5Gi, storageClassName: fast}}\n",
        );
        let pvc = build_data_volume(&c).expect("a claim");
        assert_eq!(pvc.metadata.name.as_deref(), Some("dev-data"));
        let spec = pvc.spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"].0,
            "5Gi"
        );
        let d = build_api_deployment(&c).spec;
        assert_eq!(d.strategy.unwrap().type_.as_deref(), Some("Recreate"));
        let pod = d.template.spec.unwrap();
        let data = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "data")
            .unwrap();
        assert_eq!(data.persistent_volume_claim.unwrap().claim_name, "dev-data");
        assert!(data.empty_dir.is_none());
    }

    #[test]
    fn shared_backends_need_no_claim() {
        let c = validated(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: prod}
spec:
  api: {replicas: 3}
  postgres: {urlSecretRef: {name: pg, key: url}}
  redis: {urlSecretRef: {name: redis, key: url}}
  s3: {bucket: docs}
"#,
        );
        assert!(build_data_volume(&c).is_none());
        let d = build_api_deployment(&c).spec;
        assert_eq!(d.strategy.unwrap().type_.as_deref(), Some("RollingUpdate"));
        let pod = d.template.spec.unwrap();
        let data = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "data")
            .unwrap();
        assert!(data.empty_dir.is_some());
    }
}
