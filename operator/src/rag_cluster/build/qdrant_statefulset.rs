//! The StatefulSet of a managed Qdrant in cluster mode.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, PersistentVolumeClaim, PodSpec,
    PodTemplateSpec, Probe, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::rag_cluster::validate::{qdrant_service_name, ManagedQdrant, ValidatedCluster};

/// An HTTP probe of Qdrant's REST port.
fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(6333),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// `<name>-qdrant`: peers start in parallel; peer 0 founds the cluster and the others bootstrap
/// from it over the headless Service. A peer that has not joined yet (no Raft state on its
/// volume) waits until peer 0's p2p port answers, instead of exiting and restarting with the
/// kubelet's growing back-off; a peer with state starts at once, whoever else is up.
pub fn build_qdrant_statefulset(c: &ValidatedCluster, q: &ManagedQdrant) -> StatefulSet {
    let sts = c.child("qdrant");
    let svc = qdrant_service_name(&c.name);
    let domain = format!("{svc}.{}.svc", c.namespace);
    let script = format!(
        "set -e\n\
         self=\"http://${{HOSTNAME}}.{domain}:6335\"\n\
         if [ \"${{HOSTNAME##*-}}\" = \"0\" ]; then exec ./entrypoint.sh --uri \"$self\"; fi\n\
         if [ ! -e ./storage/raft_state.json ]; then\n\
         \x20 until (exec 3<>/dev/tcp/{sts}-0.{domain}/6335) 2>/dev/null; do sleep 1; done\n\
         fi\n\
         exec ./entrypoint.sh --bootstrap \"http://{sts}-0.{domain}:6335\" --uri \"$self\"\n"
    );
    let mut env = vec![super::env("QDRANT__CLUSTER__ENABLED", "true")];
    if let Some(key) = &q.api_key {
        env.push(super::secret_env("QDRANT__SERVICE__API_KEY", key));
    }
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    let pod_labels = labels::object("qdrant", &c.name, "qdrant", "");
    let (volumes, claims) = match &q.storage {
        Some(storage) => (
            None,
            Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("storage".into()),
                    labels: Some(labels::selector("qdrant", &c.name, "qdrant")),
                    ..ObjectMeta::default()
                },
                spec: Some(storage.claim_spec("ReadWriteOnce")),
                ..PersistentVolumeClaim::default()
            }]),
        ),
        None => (
            Some(vec![Volume {
                name: "storage".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]),
            None,
        ),
    };
    let mut meta = super::meta(c, sts, "qdrant");
    meta.labels = Some(labels::object("qdrant", &c.name, "qdrant", ""));
    StatefulSet {
        metadata: meta,
        spec: StatefulSetSpec {
            replicas: Some(q.replicas),
            service_name: Some(svc),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(labels::selector("qdrant", &c.name, "qdrant")),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "qdrant".into(),
                        image: Some(q.image.clone()),
                        command: Some(vec!["/bin/bash".into(), "-c".into(), script]),
                        env: Some(env),
                        ports: Some(vec![
                            port("http", 6333),
                            port("grpc", 6334),
                            port("p2p", 6335),
                        ]),
                        readiness_probe: Some(probe("/readyz", 5, 3)),
                        // Replaying a large WAL at start can take long: up to 30 minutes
                        // before the liveness probe may restart a peer.
                        startup_probe: Some(probe("/livez", 10, 180)),
                        liveness_probe: Some(probe("/livez", 10, 6)),
                        resources: q.resources.clone(),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "storage".into(),
                            mount_path: "/qdrant/storage".into(),
                            ..VolumeMount::default()
                        }]),
                        security_context: Some(crate::security::restricted_container(false)),
                        ..Container::default()
                    }],
                    volumes,
                    // Peers on different nodes where there are several, so that losing a node
                    // loses at most one replica of a shard; one node still schedules them all.
                    topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                        max_skew: 1,
                        topology_key: "kubernetes.io/hostname".into(),
                        when_unsatisfiable: "ScheduleAnyway".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(labels::selector("qdrant", &c.name, "qdrant")),
                            ..LabelSelector::default()
                        }),
                        ..TopologySpreadConstraint::default()
                    }]),
                    security_context: Some(crate::security::restricted_pod(
                        crate::security::QDRANT_UID,
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
    use crate::rag_cluster::build::{build, test_support::validated};

    #[test]
    fn managed_qdrant_is_a_parallel_statefulset_with_headless_service_and_pdb() {
        let c = validated(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: prod, namespace: rag}
spec:
  qdrant:
    managed:
      replicas: 3
      storage: {size: 50Gi, storageClassName: fast}
      apiKeySecretRef: {name: qdrant, key: api-key}
"#,
        );
        let q = build(&c).qdrant.expect("managed qdrant objects");
        let spec = q.statefulset.spec;
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let pod = spec.template.spec.clone().unwrap();
        let spread = &pod.topology_spread_constraints.unwrap()[0];
        assert_eq!(spread.topology_key, "kubernetes.io/hostname");
        assert_eq!(spread.when_unsatisfiable, "ScheduleAnyway");
        let qdrant = &pod.containers[0];
        let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .clone()
                .unwrap()
        };
        assert_eq!(path(&qdrant.startup_probe), "/livez");
        assert_eq!(path(&qdrant.liveness_probe), "/livez");
        assert_eq!(path(&qdrant.readiness_probe), "/readyz");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("prod-qdrant"));
        let claim = &spec.volume_claim_templates.unwrap()[0];
        let claim_spec = claim.spec.as_ref().unwrap();
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "50Gi"
        );
        let container = &spec.template.spec.unwrap().containers[0];
        let script = &container.command.as_ref().unwrap()[2];
        assert!(
            script.contains("--bootstrap \"http://prod-qdrant-0.prod-qdrant.rag.svc:6335\""),
            "{script}"
        );
        assert!(
            script.contains("until (exec 3<>/dev/tcp/prod-qdrant-0.prod-qdrant.rag.svc/6335)"),
            "{script}"
        );
        let env = container.env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "QDRANT__CLUSTER__ENABLED"));
        assert!(env.iter().any(|e| e.name == "QDRANT__SERVICE__API_KEY"));
        let svc = q.service.spec.unwrap();
        assert_eq!(svc.cluster_ip.as_deref(), Some("None"));
        assert_eq!(svc.publish_not_ready_addresses, Some(true));
        assert_eq!(q.pdb.metadata.name.as_deref(), Some("prod-qdrant"));
    }

    /// The peers' script, run by a real bash in a directory laid out as Qdrant's image is,
    /// with a stand-in `entrypoint.sh` that records its arguments.
    #[test]
    fn peers_found_join_or_wait_as_their_state_says() {
        use std::os::unix::fs::PermissionsExt;
        use std::time::Duration;
        let c = validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: prod, namespace: rag}\n\
             spec: {qdrant: {managed: {replicas: 3, storage: {size: 1Gi}}}}\n",
        );
        let sts = build(&c)
            .qdrant
            .expect("managed qdrant objects")
            .statefulset;
        let script = sts.spec.template.spec.unwrap().containers[0]
            .command
            .clone()
            .unwrap()[2]
            .clone();
        let run = |host: &str, joined: bool| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("storage")).unwrap();
            if joined {
                std::fs::write(dir.path().join("storage/raft_state.json"), "{}").unwrap();
            }
            let entry = dir.path().join("entrypoint.sh");
            std::fs::write(&entry, "#!/bin/sh\necho \"$@\" > args\n").unwrap();
            std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755)).unwrap();
            let mut child = std::process::Command::new("bash")
                .args(["-c", &script])
                .env("HOSTNAME", host)
                .current_dir(dir.path())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            let done = child.try_wait().unwrap().is_some();
            let _ = child.kill();
            let _ = child.wait();
            (done, std::fs::read_to_string(dir.path().join("args")).ok())
        };
        let uri = "--uri http://prod-qdrant-1.prod-qdrant.rag.svc:6335";
        // Peer 0 founds the cluster at once.
        let (done, args) = run("prod-qdrant-0", false);
        assert!(done, "peer 0 waited");
        assert_eq!(
            args.as_deref().map(str::trim),
            Some("--uri http://prod-qdrant-0.prod-qdrant.rag.svc:6335")
        );
        // A peer with Raft state starts at once, whoever else is up.
        let (done, args) = run("prod-qdrant-1", true);
        assert!(done, "a peer with state waited for peer 0");
        assert_eq!(
            args.as_deref().map(str::trim),
            Some(
                format!("--bootstrap http://prod-qdrant-0.prod-qdrant.rag.svc:6335 {uri}").as_str()
            )
        );
        // A peer that has not joined waits while peer 0 cannot be reached (here: never).
        let (done, args) = run("prod-qdrant-1", false);
        assert!(
            !done && args.is_none(),
            "a new peer did not wait for peer 0"
        );
    }

    #[test]
    fn external_qdrant_builds_nothing() {
        let c = validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: x}\nspec: {qdrant: {external: {url: 'http://q:6334'}}}\n",
        );
        assert!(build(&c).qdrant.is_none());
    }
}
