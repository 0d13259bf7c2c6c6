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
///
/// A Raft state without a term is what a start refused by the cluster leaves behind (Qdrant
/// writes the file before it asks to join); it holds nothing and is removed, so that the next
/// start joins again instead of running alone on it.
///
/// Peer 0 with no Raft state founds a cluster only when no other peer answers: one that does
/// means its volume was lost while the cluster ran, and it joins that peer instead of founding
/// a second cluster. It first asks the Service's name, which resolves to every peer, so that on
/// first creation it looks up no peer's own name before that peer has an address (cluster DNS
/// would cache the miss).
pub fn build_qdrant_statefulset(c: &ValidatedCluster, q: &ManagedQdrant) -> StatefulSet {
    let sts = c.child("qdrant");
    let svc = qdrant_service_name(&c.name);
    let domain = format!("{svc}.{}.svc", c.namespace);
    let others = q.replicas.max(1) - 1;
    let script = format!(
        "set -e\n\
         self=\"http://${{HOSTNAME}}.{domain}:6335\"\n\
         answers() {{ (exec 3<>\"/dev/tcp/$1/6335\") 2>/dev/null; }}\n\
         if [ -e ./storage/raft_state.json ] && grep -q '\"hard_state\":{{\"term\":0,' ./storage/raft_state.json; then\n\
         \x20 echo \"Raft state without a term, left by a refused start: removed\"\n\
         \x20 rm -f ./storage/raft_state.json\n\
         fi\n\
         if [ \"${{HOSTNAME##*-}}\" = \"0\" ]; then\n\
         \x20 if [ ! -e ./storage/raft_state.json ] && [ {others} -gt 0 ] && answers {domain}; then\n\
         \x20   for i in $(seq 1 {others}); do\n\
         \x20     if answers {sts}-$i.{domain}; then\n\
         \x20       echo \"no Raft state, and peer $i answers: joining its cluster\"\n\
         \x20       exec ./entrypoint.sh --bootstrap \"http://{sts}-$i.{domain}:6335\" --uri \"$self\"\n\
         \x20     fi\n\
         \x20   done\n\
         \x20   echo \"no Raft state, and a peer answers but none by name yet: not founding a second cluster\"\n\
         \x20   exit 1\n\
         \x20 fi\n\
         \x20 exec ./entrypoint.sh --uri \"$self\"\n\
         fi\n\
         if [ ! -e ./storage/raft_state.json ]; then\n\
         \x20 until answers {sts}-0.{domain}; do sleep 1; done\n\
         fi\n\
         exec ./entrypoint.sh --bootstrap \"http://{sts}-0.{domain}:6335\" --uri \"$self\"\n"
    );
    let mut env = vec![
        super::env("QDRANT__CLUSTER__ENABLED", "true"),
        // Without an error's own backtrace after it, a refused start's cause is within the
        // last 2 KiB of the log that the kubelet keeps as the termination message.
        super::env("RUST_LIB_BACKTRACE", "0"),
    ];
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
                    // A rotated API key rolls the peers, one at a time.
                    annotations: Some(std::collections::BTreeMap::from([(
                        labels::SECRETS_HASH.to_owned(),
                        q.api_key_hash.clone(),
                    )])),
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
                        // A refused start (a peer whose URI the cluster still gives to its
                        // lost predecessor) is read from here by the operator.
                        termination_message_policy: Some("FallbackToLogsOnError".into()),
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
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use crate::labels;
    use crate::rag_cluster::build::test_support::{cluster, validated};
    use crate::rag_cluster::build::{build, ClusterObjects};
    use crate::rag_cluster::validate::{validate, Dereferenced};

    /// The peers' and the API pods' Secrets hashes of `c` validated with `refs`.
    fn rolled_by(c: &crate::crd::rag_cluster::RagCluster, refs: &Dereferenced) -> (String, String) {
        let v = validate(
            c,
            refs,
            &crate::context::DataPlaneDefaults::new("ghcr.io/ragplane/ragplane"),
        )
        .expect("valid cluster");
        let ClusterObjects {
            qdrant,
            api_deployment: api,
            ..
        } = build(&v);
        let hash = |t: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>| {
            t.and_then(|m| m.annotations)
                .and_then(|a| a.get(labels::SECRETS_HASH).cloned())
                .expect("a Secrets hash on the pod template")
        };
        (
            hash(
                qdrant
                    .expect("managed qdrant")
                    .statefulset
                    .spec
                    .template
                    .metadata,
            ),
            hash(api.spec.template.metadata),
        )
    }

    /// A rotated Qdrant API key rolls the peers as it rolls the data plane, so that neither is
    /// left on the old key; another Secret's change rolls the data plane alone.
    #[test]
    fn a_rotated_api_key_rolls_the_peers() {
        // The operator's own key.
        let own = cluster(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: prod}\n\
             spec: {qdrant: {managed: {replicas: 1}}}\n",
        );
        let (a, _) = rolled_by(&own, &Dereferenced::generating(&own, "rp_one"));
        let (b, _) = rolled_by(&own, &Dereferenced::generating(&own, "rp_two"));
        assert_ne!(a, b, "the operator's key, rotated");
        // A key in the user's Secret, next to a PostgreSQL URL.
        let theirs = cluster(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: prod}\n\
             spec: {postgres: {urlSecretRef: {name: pg, key: url}},\
             qdrant: {managed: {replicas: 1, apiKeySecretRef: {name: qk, key: k}}}}\n",
        );
        let refs = |key: &str, url: &str| {
            let mut r = Dereferenced::generating(&theirs, "rp_test");
            let one = |k: &str, v: &str| {
                Some(BTreeMap::from([(
                    k.to_owned(),
                    ByteString(v.as_bytes().to_vec()),
                )]))
            };
            r.secrets.insert("qk".into(), one("k", key));
            r.secrets.insert("pg".into(), one("url", url));
            r
        };
        let (peers, api) = rolled_by(&theirs, &refs("key-1", "postgres://a"));
        let (rotated_peers, rotated_api) = rolled_by(&theirs, &refs("key-2", "postgres://a"));
        assert_ne!(
            peers, rotated_peers,
            "the user's key, rotated: the peers roll"
        );
        assert_ne!(api, rotated_api, "and so does the data plane");
        let (same_peers, moved_api) = rolled_by(&theirs, &refs("key-1", "postgres://b"));
        assert_eq!(peers, same_peers, "another Secret leaves the peers alone");
        assert_ne!(api, moved_api);
    }

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
            script.contains("until answers prod-qdrant-0.prod-qdrant.rag.svc;"),
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
        const JOINED: &str = r#"{"state":{"hard_state":{"term":3,"vote":1,"commit":9}}}"#;
        const REFUSED: &str = r#"{"state":{"hard_state":{"term":0,"vote":0,"commit":0}}}"#;
        let run_script = |script: &str, host: &str, state: Option<&str>| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("storage")).unwrap();
            if let Some(state) = state {
                std::fs::write(dir.path().join("storage/raft_state.json"), state).unwrap();
            }
            let entry = dir.path().join("entrypoint.sh");
            std::fs::write(&entry, "#!/bin/sh\necho \"$@\" > args\n").unwrap();
            std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755)).unwrap();
            let mut child = std::process::Command::new("bash")
                .args(["-c", script])
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
        let run = |host: &str, joined: bool| run_script(&script, host, joined.then_some(JOINED));
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

        // Peer 0 without Raft state while other peers answer: its volume was lost, and it
        // joins them. Names are mapped to loopback addresses and a listener plays the peers:
        // the Service's name to 127.0.0.1, peer i's to 127.0.0.<i + offset>.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let mapped = |offset: u8| {
            script
                .replace(
                    "prod-qdrant-$i.prod-qdrant.rag.svc",
                    &format!("127.0.0.$((i + {offset}))"),
                )
                .replace("answers prod-qdrant.rag.svc", "answers 127.0.0.1")
                .replace("6335", &port)
        };
        let (done, args) = run_script(&mapped(0), "prod-qdrant-0", None);
        assert!(done, "peer 0 waited");
        assert_eq!(
            args.as_deref().map(str::trim),
            Some(
                format!(
                    "--bootstrap http://127.0.0.1:{port} --uri http://prod-qdrant-0.prod-qdrant.rag.svc:{port}"
                )
                .as_str()
            ),
            "peer 0 did not join the peer that answered"
        );
        // Something answers at the Service but no peer by name: it neither founds nor joins.
        let (done, args) = run_script(&mapped(10), "prod-qdrant-0", None);
        assert!(done && args.is_none(), "peer 0 founded a second cluster");
        // The state a refused start left (no term) is no state: it joins again.
        let (_, args) = run_script(&mapped(0), "prod-qdrant-0", Some(REFUSED));
        assert!(
            args.as_deref()
                .is_some_and(|a| a.starts_with(&format!("--bootstrap http://127.0.0.1:{port}"))),
            "{args:?}"
        );
        // With its state, peer 0 starts as itself whoever answers.
        let (_, args) = run_script(&mapped(0), "prod-qdrant-0", Some(JOINED));
        assert_eq!(
            args.as_deref().map(str::trim),
            Some(format!("--uri http://prod-qdrant-0.prod-qdrant.rag.svc:{port}").as_str())
        );
        drop(listener);
    }

    #[test]
    fn external_qdrant_builds_nothing() {
        let c = validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: x}\nspec: {qdrant: {external: {url: 'http://q:6334'}}}\n",
        );
        assert!(build(&c).qdrant.is_none());
    }
}
