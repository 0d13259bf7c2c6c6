//! The Ollama StatefulSet: each replica has its own model cache, pulls the model in an init
//! container and loads it before it reports Ready.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, ExecAction, HTTPGetAction, Lifecycle,
    LifecycleHandler, PersistentVolumeClaim, PodSpec, PodTemplateSpec, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model_pool::validate::ValidatedPool;
use crate::rag_cluster::build::env;

/// Where models are stored inside the pod.
const MODELS_DIR: &str = "/models";

/// Pulls the model with a temporary server, so the main container starts with it on disk. A
/// failed pull (or a server that dies first) fails the init container, so the pod retries with
/// backoff and shows `Init:Error` instead of starting without its model.
const PULL_SCRIPT: &str = "ollama serve & server=$!\n\
until ollama list >/dev/null 2>&1; do kill -0 \"$server\" || exit 1; sleep 1; done\n\
ollama pull \"$MODEL\"; pulled=$?\n\
kill \"$server\"\n\
exit $pulled\n";

/// Loads the model into memory (kept there by OLLAMA_KEEP_ALIVE=-1) before the probe may pass.
const LOAD_SCRIPT: &str = "until ollama list >/dev/null 2>&1; do sleep 1; done\n\
ollama run \"$MODEL\" \"\" >/dev/null\n";

/// `<pool>`: Ollama replicas.
pub fn build_ollama_statefulset(p: &ValidatedPool) -> StatefulSet {
    let mut env_vars = vec![
        env("MODEL", p.model.clone()),
        env("OLLAMA_HOST", format!("0.0.0.0:{}", p.port)),
        env("OLLAMA_MODELS", MODELS_DIR),
        env("OLLAMA_KEEP_ALIVE", "-1"),
        // Ollama keeps its identity key under $HOME; the pods run as a user without one.
        env("HOME", MODELS_DIR),
    ];
    env_vars.sort_by(|a, b| a.name.cmp(&b.name));
    let mount = VolumeMount {
        name: "models".into(),
        mount_path: MODELS_DIR.into(),
        ..VolumeMount::default()
    };
    let sh = |script: &str| {
        Some(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            script.to_owned(),
        ])
    };
    let readiness = if p.warmup {
        Probe {
            exec: Some(ExecAction {
                command: sh("ollama ps | grep -qF \"$MODEL\""),
            }),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            ..Probe::default()
        }
    } else {
        Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/".into()),
                port: IntOrString::String("http".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            ..Probe::default()
        }
    };
    let http_root = |period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/".into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let server = Container {
        name: "ollama".into(),
        image: Some(p.image.clone()),
        args: (!p.args.is_empty()).then(|| p.args.clone()),
        env: Some(env_vars.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: p.port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(readiness),
        // Loading a large model from disk can take minutes: the startup probe allows 30, and
        // only then may the liveness probe restart a server that stopped answering.
        startup_probe: Some(http_root(10, 180)),
        liveness_probe: Some(http_root(10, 6)),
        lifecycle: p.warmup.then(|| Lifecycle {
            post_start: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: sh(LOAD_SCRIPT),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: p.resources.clone(),
        volume_mounts: Some(vec![mount.clone()]),
        security_context: Some(crate::security::restricted_container(false)),
        ..Container::default()
    };
    let init = p.warmup.then(|| {
        vec![Container {
            name: "pull-model".into(),
            image: Some(p.image.clone()),
            command: sh(PULL_SCRIPT),
            env: Some(env_vars),
            volume_mounts: Some(vec![mount]),
            security_context: Some(crate::security::restricted_container(false)),
            ..Container::default()
        }]
    });
    let (volumes, claims) = match &p.cache {
        Some(cache) => (
            None,
            Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("models".into()),
                    labels: Some(super::selector(p)),
                    ..ObjectMeta::default()
                },
                spec: Some(cache.storage().claim_spec("ReadWriteOnce")),
                ..PersistentVolumeClaim::default()
            }]),
        ),
        None => (
            Some(vec![Volume {
                name: "models".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]),
            None,
        ),
    };
    StatefulSet {
        metadata: super::meta(p, p.name.clone()),
        spec: StatefulSetSpec {
            replicas: p.replicas,
            service_name: Some(super::service::headless_name(&p.name)),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(super::selector(p)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(super::pod_labels(p)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    init_containers: init,
                    containers: vec![server],
                    volumes,
                    node_selector: (!p.node_selector.is_empty()).then(|| p.node_selector.clone()),
                    tolerations: (!p.tolerations.is_empty()).then(|| p.tolerations.clone()),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(crate::security::restricted_pod(
                        crate::security::DATA_PLANE_UID,
                    )),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

#[cfg(test)]
mod tests {
    use crate::model_pool::build::{build, Workload};
    use crate::model_pool::validate::validated;

    const GPU_POOL: &str = r#"
apiVersion: ragplane.dev/v1alpha1
kind: ModelPool
metadata: {name: llm, namespace: rag}
spec:
  kind: ollama
  model: "llama3.1:8b"
  replicas: 2
  gpu: {count: 1}
  nodeSelector: {nvidia.com/gpu.present: "true"}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  modelCache: {size: 40Gi, storageClassName: fast}
"#;

    #[test]
    fn ollama_pool_pulls_and_loads_before_ready_on_gpu_nodes() {
        let objects = build(&validated(GPU_POOL));
        let Workload::StatefulSet(sts) = objects.workload else {
            panic!("ollama runs as a StatefulSet")
        };
        let spec = sts.spec;
        assert_eq!(spec.replicas, Some(2));
        let claim = &spec.volume_claim_templates.unwrap()[0];
        assert_eq!(
            claim
                .spec
                .as_ref()
                .unwrap()
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "40Gi"
        );
        let pod = spec.template.spec.unwrap();
        let init = &pod.init_containers.unwrap()[0];
        assert!(init.command.as_ref().unwrap()[2].contains("ollama pull \"$MODEL\""));
        let c = &pod.containers[0];
        assert!(c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == "MODEL" && e.value.as_deref() == Some("llama3.1:8b")));
        let probe = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        assert!(probe.command.as_ref().unwrap()[2].contains("ollama ps"));
        assert!(c.lifecycle.as_ref().unwrap().post_start.is_some());
        assert_eq!(
            c.resources.as_ref().unwrap().limits.as_ref().unwrap()["nvidia.com/gpu"].0,
            "1"
        );
        assert_eq!(pod.node_selector.unwrap()["nvidia.com/gpu.present"], "true");
        assert_eq!(
            pod.tolerations.unwrap()[0].key.as_deref(),
            Some("nvidia.com/gpu")
        );
        let svc = objects.service.spec.unwrap();
        assert_eq!(svc.ports.unwrap()[0].port, 11434);
    }

    /// The pull script, run by a real shell against a stand-in `ollama` that fails or
    /// succeeds to pull: the init container's exit status must follow the pull's.
    #[test]
    fn the_pull_script_fails_when_the_pull_fails() {
        use std::os::unix::fs::PermissionsExt;
        for (pull_status, want_success) in [(1, false), (0, true)] {
            let dir = tempfile::tempdir().unwrap();
            let fake = dir.path().join("ollama");
            std::fs::write(
                &fake,
                format!(
                    "#!/bin/sh\ncase \"$1\" in\n  serve) exec sleep 30 ;;\n  list) exit 0 ;;\n  pull) exit {pull_status} ;;\nesac\n"
                ),
            )
            .unwrap();
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
            let status = std::process::Command::new("/bin/sh")
                .args(["-c", super::PULL_SCRIPT])
                .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
                .env("MODEL", "m")
                .status()
                .unwrap();
            assert_eq!(status.success(), want_success, "pull exited {pull_status}");
        }
    }

    #[test]
    fn servers_have_startup_and_liveness_probes_a_headless_service_and_a_pdb() {
        let objects = build(&validated(GPU_POOL));
        let Workload::StatefulSet(sts) = objects.workload else {
            panic!("ollama runs as a StatefulSet")
        };
        let headless = objects.headless.expect("a headless Service");
        assert_eq!(sts.spec.service_name, headless.metadata.name);
        let spec = headless.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        // Names resolve before Ready, so DNS never caches a starting server as missing.
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let c = &sts.spec.template.spec.unwrap().containers[0];
        let startup = c.startup_probe.as_ref().unwrap();
        assert_eq!(
            startup.period_seconds.unwrap() * startup.failure_threshold.unwrap(),
            1800
        );
        assert!(c.liveness_probe.as_ref().unwrap().http_get.is_some());
        let pdb = objects.pdb.spec.unwrap();
        assert_eq!(
            pdb.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
        );
    }

    #[test]
    fn without_warmup_readiness_is_the_http_root() {
        let objects = build(&validated(&format!("{GPU_POOL}  warmup: false\n")));
        let Workload::StatefulSet(sts) = objects.workload else {
            panic!("ollama runs as a StatefulSet")
        };
        let pod = sts.spec.template.spec.unwrap();
        assert!(pod.init_containers.is_none());
        assert!(pod.containers[0]
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .is_some());
    }
}
