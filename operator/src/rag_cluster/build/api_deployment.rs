//! The API Deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::rag_cluster::validate::ValidatedCluster;

/// `<name>-api`: the stateless HTTP API; queue workers run here only when no pool is defined.
pub fn build_api_deployment(c: &ValidatedCluster) -> Deployment {
    let mut extra = Vec::new();
    if !c.workers.is_empty() {
        extra.push(super::env("RAGPLANE_NO_WORKERS", "true"));
    }
    let pod = super::data_plane_pod(c, extra, c.api.resources.clone(), None);
    Deployment {
        metadata: super::meta(c, c.child("api"), "api"),
        spec: DeploymentSpec {
            replicas: c.api.replicas,
            selector: LabelSelector {
                match_labels: Some(labels::selector("ragplane", &c.name, "api")),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels::object("ragplane", &c.name, "api", &c.version)),
                    annotations: Some(BTreeMap::from([(
                        labels::CONFIG_HASH.to_owned(),
                        super::config_hash(c),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag_cluster::build::test_support::validated;

    const YAML: &str = r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: prod, namespace: rag}
spec:
  version: "0.2.0"
  api:
    replicas: 3
    resources: {requests: {cpu: 500m, memory: 512Mi}}
  adminKeySecretRef: {name: admin, key: key}
"#;

    #[test]
    fn api_deployment_runs_the_data_plane_with_the_config() {
        let d = build_api_deployment(&validated(YAML));
        assert_eq!(d.metadata.name.as_deref(), Some("prod-api"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("rag"));
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(3));
        let selector = spec.selector.match_labels.unwrap();
        assert_eq!(selector["app.kubernetes.io/instance"], "prod");
        assert_eq!(selector["app.kubernetes.io/component"], "api");
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        assert!(selector
            .iter()
            .all(|(k, v)| template_labels.get(k) == Some(v)));
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("ghcr.io/ragplane/ragplane:0.2.0"));
        assert_eq!(
            c.args.as_deref().unwrap(),
            ["serve", "--config", "/etc/ragplane/ragplane.toml"]
        );
        let env = c.env.as_ref().unwrap();
        let admin = env.iter().find(|e| e.name == "RAGPLANE_ADMIN_KEY").unwrap();
        assert_eq!(
            admin
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "admin"
        );
        assert!(
            env.iter().all(|e| e.name != "RAGPLANE_NO_WORKERS"),
            "no pools: API runs workers"
        );
        assert_eq!(
            pod.volumes.unwrap()[0].config_map.as_ref().unwrap().name,
            "prod-config"
        );
        assert_eq!(
            c.security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
        assert_eq!(
            c.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"].0,
            "500m"
        );
    }

    #[test]
    fn autoscaled_api_leaves_replicas_to_the_autoscaler() {
        let d = build_api_deployment(&validated(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: a}
spec:
  api:
    autoscaling: {minReplicas: 2, maxReplicas: 6}
  workers: [{name: w}]
"#,
        ));
        let spec = d.spec;
        assert_eq!(spec.replicas, None);
        let env = spec.template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        assert!(env.iter().any(|e| e.name == "RAGPLANE_NO_WORKERS"));
    }

    #[test]
    fn config_change_changes_the_pod_template() {
        let a = build_api_deployment(&validated(YAML));
        let b = build_api_deployment(&validated(&format!("{YAML}  logFilter: debug\n")));
        let hash = |d: &Deployment| {
            d.spec
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[labels::CONFIG_HASH]
                .clone()
        };
        assert_ne!(hash(&a), hash(&b));
    }
}
