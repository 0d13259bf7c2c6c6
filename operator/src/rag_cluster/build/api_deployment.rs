//! The API Deployment.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Lifecycle, LifecycleHandler, PodTemplateSpec, SleepAction};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::rag_cluster::validate::ValidatedCluster;

/// Seconds a stopping API pod keeps serving after it left its Service's endpoints, so that
/// clients and proxies stop sending to it before it stops accepting.
pub const PRE_STOP_SLEEP_SECONDS: i64 = 5;
/// Seconds a stopping API pod has to finish its requests after the pre-stop sleep.
const SHUTDOWN_SECONDS: i64 = 30;

/// `<name>-api`: the HTTP API; queue workers run here only when no pool is defined.
pub fn build_api_deployment(c: &ValidatedCluster) -> Deployment {
    let mut extra = Vec::new();
    if !c.workers.is_empty() {
        extra.push(super::env("RAGPLANE_NO_WORKERS", "true"));
    }
    let mut pod = super::data_plane_pod(c, extra, c.api.resources.clone(), None);
    pod.containers[0].lifecycle = Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction {
                seconds: PRE_STOP_SLEEP_SECONDS,
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    });
    pod.termination_grace_period_seconds = Some(PRE_STOP_SLEEP_SECONDS + SHUTDOWN_SECONDS);
    // A pod with an embedded store owns its volume: the old pod stops before the new one opens
    // the same files. Shared backends allow a surge.
    let strategy = match c.data_volume {
        Some(_) => DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        },
        None => DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::String("25%".into())),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        },
    };
    Deployment {
        metadata: super::meta(c, c.child("api"), "api"),
        spec: DeploymentSpec {
            replicas: c.api.replicas,
            selector: LabelSelector {
                match_labels: Some(labels::selector("ragplane", &c.name, "api")),
                ..LabelSelector::default()
            },
            strategy: Some(strategy),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels::object("ragplane", &c.name, "api", &c.version)),
                    annotations: Some(super::pod_annotations(c)),
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
  workers: [{name: w, queues: [documents]}]
  redis: {urlSecretRef: {name: redis, key: url}}
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

    #[test]
    fn the_model_comes_from_the_image_or_from_the_users_claim() {
        let image = validated(YAML);
        let e = &image.config.embedding;
        assert_eq!(
            e.model_dir.as_deref(),
            Some(std::path::Path::new(
                "/opt/ragplane/models/all-minilm-l6-v2-int8"
            ))
        );
        assert!(image
            .config_toml
            .contains("ort_library = \"/opt/ragplane/onnxruntime/libonnxruntime.so\""));

        let own = validated(&format!(
            "{YAML}  model: {{claimName: models, subPath: e5, name: e5-small, dimension: 384}}\n"
        ));
        assert_eq!(
            own.config.embedding.model_dir.as_deref(),
            Some(std::path::Path::new("/opt/ragplane/mounted-model"))
        );
        assert_eq!(own.config.embedding.model_name, "e5-small");
        let pod = build_api_deployment(&own).spec.template.spec.unwrap();
        let mount = pod.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "model")
            .unwrap();
        assert_eq!(mount.mount_path, "/opt/ragplane/mounted-model");
        assert_eq!(mount.sub_path.as_deref(), Some("e5"));
        assert_eq!(mount.read_only, Some(true));
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "model")
            .unwrap();
        assert_eq!(volume.persistent_volume_claim.unwrap().claim_name, "models");
    }
}
