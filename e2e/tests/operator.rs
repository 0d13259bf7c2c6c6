//! End-to-end tests of `ragplane-operator` against a real kube-apiserver (no kubelet, no
//! controller-manager): the operator runs as its own process and everything is checked with
//! kubectl. Each test gets its own namespace and its own operator watching only that namespace.

use std::time::{Duration, Instant};

use ragplane_e2e::cluster::{self, poll_until, Operator, TestCluster};
use ragplane_e2e::repo_root;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn example(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("examples/k8s").join(name)).expect("example exists")
}

fn uid(v: &Value) -> &str {
    v["metadata"]["uid"].as_str().expect("uid")
}

/// The controller owner reference of `child`, as `(kind, name, uid)`.
fn owner(child: &Value) -> (String, String, String) {
    let refs = child["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let controller: Vec<_> = refs.iter().filter(|r| r["controller"] == true).collect();
    assert_eq!(
        controller.len(),
        1,
        "exactly one controller owner: {refs:?}"
    );
    let r = controller[0];
    (
        r["kind"].as_str().unwrap_or_default().into(),
        r["name"].as_str().unwrap_or_default().into(),
        r["uid"].as_str().unwrap_or_default().into(),
    )
}

fn condition<'a>(v: &'a Value, type_: &str) -> Option<&'a Value> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn setup(prefix: &str) -> Option<(&'static TestCluster, String, Operator)> {
    let cluster = cluster::shared()?;
    let ns = cluster.namespace(prefix).expect("namespace");
    let operator = Operator::start(cluster, &ns).expect("operator starts");
    Some((cluster, ns, operator))
}

/// Marks a Deployment or StatefulSet as fully rolled out, as a kubelet and controller-manager
/// would.
fn mark_ready(cluster: &TestCluster, ns: &str, kind: &str, name: &str) {
    let obj = cluster
        .wait_for(ns, kind, name, WAIT, |_| true)
        .expect("workload exists");
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = if kind == "statefulset" {
        serde_json::json!({"status": {"observedGeneration": generation, "replicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas, "currentReplicas": replicas,
            "updatedReplicas": replicas}})
    } else {
        serde_json::json!({"status": {"observedGeneration": generation, "replicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas}})
    };
    cluster
        .kubectl_ok(&[
            "patch",
            "-n",
            ns,
            kind,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ])
        .expect("status patch");
}

#[test]
fn examples_create_children_with_owner_references_labels_and_printer_columns() {
    let Some((cluster, ns, operator)) = setup("op-examples") else {
        return;
    };
    let started = Instant::now();
    cluster
        .apply(&ns, &example("dev-ragcluster.yaml"))
        .expect("dev example applies");
    cluster
        .apply(&ns, &example("prod-ragcluster.yaml"))
        .expect("prod example applies");
    cluster
        .apply(&ns, &example("collections.yaml"))
        .expect("collections apply");

    let prod = cluster
        .get(&ns, "ragcluster", "prod")
        .unwrap()
        .expect("prod exists");
    let children = [
        ("configmap", "prod-config", "config"),
        ("deployment", "prod-api", "api"),
        ("service", "prod-api", "api"),
        ("poddisruptionbudget", "prod-api", "api"),
        ("deployment", "prod-worker-ingest", "worker"),
        ("deployment", "prod-worker-backfill", "worker"),
        ("statefulset", "prod-qdrant", "qdrant"),
        ("service", "prod-qdrant", "qdrant"),
        ("poddisruptionbudget", "prod-qdrant", "qdrant"),
    ];
    for (kind, name, component) in children {
        let child = cluster
            .wait_for(&ns, kind, name, WAIT, |_| true)
            .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", operator.log_tail()));
        assert_eq!(
            owner(&child),
            ("RagCluster".into(), "prod".into(), uid(&prod).into()),
            "{kind}/{name}"
        );
        let labels = &child["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/instance"], "prod",
            "{kind}/{name}"
        );
        assert_eq!(
            labels["app.kubernetes.io/component"], component,
            "{kind}/{name}"
        );
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "ragplane-operator",
            "{kind}/{name}"
        );
    }
    eprintln!(
        "prod children applied {:?} after the examples",
        started.elapsed()
    );

    // The rendered config points generation at every Ollama server of the pool by name,
    // through its headless Service: maxReplicas (4) of them, for the autoscaled pool.
    let cm = cluster
        .get(&ns, "configmap", "prod-config")
        .unwrap()
        .unwrap();
    let toml = cm["data"]["ragplane.toml"].as_str().expect("config");
    for i in 0..4 {
        assert!(
            toml.contains(&format!("\"http://llm-{i}.llm-pods.{ns}.svc:11434\"")),
            "{toml}"
        );
    }
    assert!(!toml.contains("llm-4."), "{toml}");
    assert!(toml.contains("provider = \"ollama\""), "{toml}");
    // Qdrant: parallel peers behind a headless Service.
    let sts = cluster
        .get(&ns, "statefulset", "prod-qdrant")
        .unwrap()
        .unwrap();
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    assert_eq!(sts["spec"]["replicas"], 3);
    // The autoscaled API starts at its minimum.
    let api = cluster
        .wait_for(&ns, "deployment", "prod-api", WAIT, |d| {
            d["spec"]["replicas"] == 3
        })
        .unwrap();
    assert_eq!(
        api["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/ragplane/ragplane:0.1.0"
    );

    // ModelPools: GPU Ollama StatefulSet with warm-up, embedding Deployment with its cache claim.
    let llm = cluster.get(&ns, "modelpool", "llm").unwrap().unwrap();
    let sts = cluster
        .wait_for(&ns, "statefulset", "llm", WAIT, |_| true)
        .unwrap();
    assert_eq!(
        owner(&sts),
        ("ModelPool".into(), "llm".into(), uid(&llm).into())
    );
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert_eq!(pod["initContainers"][0]["name"], "pull-model");
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
    // Each Ollama pod has a DNS name through the headless Service that governs the
    // StatefulSet, and a drain takes one server at a time.
    assert_eq!(sts["spec"]["serviceName"], "llm-pods");
    let headless = cluster
        .wait_for(&ns, "service", "llm-pods", WAIT, |_| true)
        .unwrap();
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let pdb = cluster
        .wait_for(&ns, "poddisruptionbudget", "llm", WAIT, |_| true)
        .unwrap();
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert!(pod["containers"][0]["startupProbe"].is_object());
    assert!(pod["containers"][0]["livenessProbe"].is_object());
    let embeddings = cluster
        .get(&ns, "modelpool", "embeddings")
        .unwrap()
        .unwrap();
    for (kind, name) in [
        ("deployment", "embeddings"),
        ("service", "embeddings"),
        ("persistentvolumeclaim", "embeddings-model-cache"),
    ] {
        let child = cluster.wait_for(&ns, kind, name, WAIT, |_| true).unwrap();
        assert_eq!(
            owner(&child),
            (
                "ModelPool".into(),
                "embeddings".into(),
                uid(&embeddings).into()
            )
        );
    }

    // A managed Qdrant whose spec names no API key gets one: a Secret the operator creates,
    // owned by the cluster, which the peers and the data plane both read.
    cluster
        .apply(
            &ns,
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: keyed}\nspec: {qdrant: {managed: {replicas: 1}}}\n",
        )
        .unwrap();
    let key = cluster
        .wait_for(&ns, "secret", "keyed-qdrant-key", WAIT, |_| true)
        .unwrap();
    let keyed = cluster.get(&ns, "ragcluster", "keyed").unwrap().unwrap();
    assert_eq!(
        owner(&key),
        ("RagCluster".into(), "keyed".into(), uid(&keyed).into())
    );
    let env_from = |v: &Value, var: &str| {
        v["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == var)
            .map(|e| e["valueFrom"]["secretKeyRef"]["name"].clone())
    };
    let peers = cluster
        .wait_for(&ns, "statefulset", "keyed-qdrant", WAIT, |_| true)
        .unwrap();
    assert_eq!(
        env_from(&peers, "QDRANT__SERVICE__API_KEY"),
        Some("keyed-qdrant-key".into())
    );
    let api = cluster
        .wait_for(&ns, "deployment", "keyed-api", WAIT, |_| true)
        .unwrap();
    assert_eq!(
        env_from(&api, "RAGPLANE__VECTORS__API_KEY"),
        Some("keyed-qdrant-key".into())
    );

    // The dev cluster has no Qdrant objects.
    cluster
        .wait_for(&ns, "deployment", "dev-api", WAIT, |_| true)
        .unwrap();
    assert!(cluster
        .get(&ns, "statefulset", "dev-qdrant")
        .unwrap()
        .is_none());

    // Printer columns, once the operator wrote status.
    cluster
        .wait_for(&ns, "ragcluster", "prod", WAIT, |v| {
            v["status"]["workers"].is_string()
        })
        .unwrap();
    let table = cluster
        .kubectl_ok(&["get", "-n", &ns, "ragclusters,collections,modelpools"])
        .unwrap();
    for header in [
        "READY", "API", "WORKERS", "AGE", "CLUSTER", "SHARDS", "KIND", "MODEL", "REPLICAS",
    ] {
        assert!(table.contains(header), "no {header} column in:\n{table}");
    }
    let prod_line = table
        .lines()
        .find(|l| l.contains("ragcluster.ragplane.dev/prod"))
        .expect("prod row");
    assert!(
        prod_line.contains("0/3") && prod_line.contains("0/4"),
        "{prod_line}"
    );
    // The short name and the category work too.
    assert!(cluster
        .kubectl_ok(&["get", "-n", &ns, "rag"])
        .unwrap()
        .contains("prod"));
    assert!(cluster
        .kubectl_ok(&["get", "-n", &ns, "ragplane"])
        .unwrap()
        .contains("modelpool.ragplane.dev/llm"));
}

#[test]
fn invalid_resources_are_rejected_with_the_cel_message() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let ns = cluster.namespace("op-cel").unwrap();
    let cases = [
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: a}\nspec: {api: {autoscaling: {minReplicas: 5, maxReplicas: 2}}}\n",
            "spec.api.autoscaling: Invalid value",
            "minReplicas must be less than or equal to autoscaling.maxReplicas",
        ),
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: b}\nspec: {qdrant: {managed: {}, external: {url: 'http://q:6334'}}}\n",
            "spec.qdrant",
            "exactly one of qdrant.managed or qdrant.external must be set",
        ),
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: c}\nspec: {qdrant: {}}\n",
            "spec.qdrant",
            "exactly one of qdrant.managed or qdrant.external must be set",
        ),
        // Peers of a Qdrant cluster keep their identity on volumes.
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: e}\nspec: {qdrant: {managed: {replicas: 3}}}\n",
            "spec.qdrant.managed.storage",
            "a managed Qdrant of more than one peer needs storage",
        ),
        // Embedded backends keep their data in one pod.
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: h}\nspec: {api: {replicas: 2}}\n",
            "spec.api.replicas",
            "more than one API replica needs the shared backends",
        ),
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: i}\nspec: {api: {replicas: 1, autoscaling: {minReplicas: 1, maxReplicas: 3}}, postgres: {urlSecretRef: {name: pg, key: url}}, s3: {bucket: docs}}\n",
            "spec.api.replicas",
            "more than one API replica needs the shared backends spec.postgres, spec.s3 and spec.redis",
        ),
        // Worker pools: one queue, named; a queue shared with the API through Redis.
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: q1}\nspec: {redis: {urlSecretRef: {name: r, key: url}}, workers: [{name: w}]}\n",
            "spec.workers[0].queues",
            "Required value",
        ),
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: q2}\nspec: {redis: {urlSecretRef: {name: r, key: url}}, workers: [{name: w, queues: [embeddings]}]}\n",
            "spec.workers[0].queues[0]",
            "supported values: \"documents\"",
        ),
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: q3}\nspec: {redis: {urlSecretRef: {name: r, key: url}}, workers: [{name: w, queues: []}]}\n",
            "spec.workers[0].queues",
            "should have at least 1 items",
        ),
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: q4}\nspec: {workers: [{name: w, queues: [documents]}]}\n",
            "spec.workers",
            "worker pools need spec.redis",
        ),
        // The pool of the model collections switch away from is another pool.
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: p1}\nspec: {embedding: {name: emb}, previousEmbedding: {name: emb}}\n",
            "spec.previousEmbedding.name",
            "names the ModelPool that embedding uses",
        ),
        // Only an embedding pool has a dimension, and it is positive.
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: d1}\nspec: {kind: ollama, model: m, dimension: 768}\n",
            "spec.dimension",
            "only an embedding pool makes vectors",
        ),
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: d2}\nspec: {kind: embedding, model: m, dimension: 0}\n",
            "spec.dimension",
            "should be greater than or equal to 1",
        ),
        // Traces: an OTLP URL, a ratio and a known protocol.
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: t1}\nspec: {traces: {endpoint: 'jaeger:4317'}}\n",
            "spec.traces.endpoint",
            "traces.endpoint must be an http:// or https:// URL",
        ),
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: t2}\nspec: {traces: {endpoint: 'http://jaeger:4317', sampleRatio: 1.5}}\n",
            "spec.traces.sampleRatio",
            "should be less than or equal to 1",
        ),
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: t3}\nspec: {traces: {endpoint: 'http://jaeger:4318', protocol: http/json}}\n",
            "spec.traces.protocol",
            "Unsupported value: \"http/json\"",
        ),
        // A private CA for S3 needs an endpoint over TLS.
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: s1}\nspec: {s3: {bucket: docs, endpoint: 'http://minio:9000', caSecretRef: {name: s3-tls, key: ca.crt}}}\n",
            "spec.s3.caSecretRef",
            "s3.caSecretRef is only used with TLS",
        ),
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: d}\nspec: {kind: ollama, model: m, gpu: {count: -1}}\n",
            "spec.gpu.count",
            "gpu.count must be greater than or equal to 0",
        ),
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {name: e}\nspec: {cluster: x, shards: 0}\n",
            "spec.shards",
            "shards must be at least 1",
        ),
        (
            "apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {name: f}\nspec: {cluster: x, replicationFactor: 1, writeConsistencyFactor: 3}\n",
            "spec",
            "writeConsistencyFactor must be less than or equal to replicationFactor",
        ),
    ];
    for (yaml, field, message) in cases {
        let err = cluster
            .apply(&ns, yaml)
            .expect_err("the API server must reject it");
        let err = err.to_string();
        assert!(
            err.contains(field) && err.contains(message),
            "expected {field}: {message}, got {err}"
        );
    }
    // Fields Qdrant cannot change on an existing collection are immutable, each rejected
    // with its own message and field.
    cluster
        .apply(&ns, "apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {name: im}\nspec: {cluster: x, collectionName: docs, vectorSize: 384, distance: Cosine}\n")
        .unwrap();
    for (spec, field, message) in [
        (
            "{cluster: other, collectionName: docs, vectorSize: 384, distance: Cosine}",
            "spec.cluster",
            "cluster is immutable after creation",
        ),
        (
            "{cluster: x, collectionName: other, vectorSize: 384, distance: Cosine}",
            "spec.collectionName",
            "collectionName is immutable after creation",
        ),
        (
            "{cluster: x, vectorSize: 384, distance: Cosine}",
            "spec.collectionName",
            "collectionName is immutable after creation",
        ),
        (
            "{cluster: x, collectionName: docs, vectorSize: 768, distance: Cosine}",
            "spec.vectorSize",
            "vectorSize is immutable after creation",
        ),
        (
            "{cluster: x, collectionName: docs, vectorSize: 384, distance: Dot}",
            "spec.distance",
            "distance is immutable after creation",
        ),
    ] {
        let err = cluster
            .apply(&ns, &format!("apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {{name: im}}\nspec: {spec}\n"))
            .expect_err("immutable");
        let err = err.to_string();
        assert!(
            err.contains(field) && err.contains(message),
            "{field}: {message}: {err}"
        );
    }
    // Storage the API server cannot change in place is immutable too, so an edit is refused
    // up front instead of ending in a 422 on every reconcile.
    let mp = |name: &str, cache: &str| {
        format!("apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {{name: {name}}}\nspec: {{kind: embedding, model: m, replicas: 1, modelCache: {cache}}}\n")
    };
    let rc = |name: &str, extra: &str| {
        format!("apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {{name: {name}}}\nspec: {{{extra}}}\n")
    };
    for (first, edited, field, message) in [
        (
            mp("cache", "{size: 5Gi}"),
            mp("cache", "{size: 10Gi}"),
            "spec.modelCache",
            "modelCache is immutable after creation",
        ),
        (
            mp("cache2", "{size: 5Gi}"),
            mp("cache2", "{size: 5Gi, accessMode: ReadWriteMany}"),
            "spec.modelCache",
            "modelCache is immutable after creation",
        ),
        (
            rc("disk", "api: {storage: {size: 1Gi}}"),
            rc("disk", "api: {storage: {size: 2Gi}}"),
            "spec.api.storage",
            "api.storage is immutable after creation",
        ),
        (
            rc("peers", "qdrant: {managed: {storage: {size: 10Gi}}}"),
            rc("peers", "qdrant: {managed: {storage: {size: 20Gi}}}"),
            "spec.qdrant.managed.storage",
            "qdrant.managed.storage is immutable after creation",
        ),
    ] {
        cluster.apply(&ns, &first).unwrap();
        let err = cluster
            .apply(&ns, &edited)
            .expect_err("immutable")
            .to_string();
        assert!(
            err.contains(field) && err.contains(message),
            "{field}: {message}: {err}"
        );
    }
    // One access-mode rule for a shared cache claim, checked up front.
    let err = cluster
        .apply(&ns, "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: wide}\nspec: {kind: embedding, model: m, replicas: 2, modelCache: {size: 5Gi}}\n")
        .expect_err("ReadWriteOnce with two replicas")
        .to_string();
    assert!(
        err.contains("spec.modelCache.accessMode") && err.contains("runs at most one replica"),
        "{err}"
    );
    cluster
        .apply(&ns, "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: wide}\nspec: {kind: embedding, model: m, replicas: 2, modelCache: {size: 5Gi, accessMode: ReadWriteMany}}\n")
        .unwrap();
    // Only an embedding pool picks its server.
    let err = cluster
        .apply(&ns, "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: srv}\nspec: {kind: ollama, model: m, server: ragplane}\n")
        .expect_err("server on an ollama pool")
        .to_string();
    assert!(
        err.contains("spec.server") && err.contains("only an embedding pool"),
        "{err}"
    );
    // A mutable field still changes.
    cluster
        .apply(&ns, "apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {name: im}\nspec: {cluster: x, collectionName: docs, vectorSize: 384, distance: Cosine, replicationFactor: 2}\n")
        .unwrap();
    // Shards are fixed once created.
    cluster
        .apply(&ns, "apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {name: g}\nspec: {cluster: x, shards: 2}\n")
        .unwrap();
    let err = cluster
        .apply(&ns, "apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {name: g}\nspec: {cluster: x, shards: 4}\n")
        .expect_err("shards are immutable");
    assert!(
        err.to_string()
            .contains("shards is immutable after creation"),
        "{err}"
    );
}

const EDITABLE: &str = r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: edit}
spec:
  api: {replicas: 1}
  redis: {urlSecretRef: {name: redis, key: url}}
  workers:
    - {name: ingest, queues: [documents], replicas: 1}
    - {name: bulk, queues: [documents], replicas: 1}
"#;

#[test]
fn editing_the_spec_updates_and_prunes_children() {
    let Some((cluster, ns, operator)) = setup("op-edit") else {
        return;
    };
    cluster.apply(&ns, EDITABLE).unwrap();
    for name in ["edit-api", "edit-worker-ingest", "edit-worker-bulk"] {
        cluster
            .wait_for(&ns, "deployment", name, WAIT, |_| true)
            .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
    }
    let hash = |d: &Value| {
        d["spec"]["template"]["metadata"]["annotations"]["ragplane.dev/config-hash"].clone()
    };
    let before = hash(&cluster.get(&ns, "deployment", "edit-api").unwrap().unwrap());

    let edited = r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: edit}
spec:
  api: {replicas: 3, port: 80}
  postgres: {urlSecretRef: {name: pg, key: url}}
  redis: {urlSecretRef: {name: redis, key: url}}
  s3: {bucket: docs}
  logFilter: debug
  workers:
    - {name: ingest, queues: [documents], replicas: 5, concurrency: 3}
"#;
    cluster.apply(&ns, edited).unwrap();
    let api = cluster
        .wait_for(&ns, "deployment", "edit-api", WAIT, |d| {
            d["spec"]["replicas"] == 3
        })
        .unwrap();
    assert_ne!(hash(&api), before, "a config change rolls the pods");
    cluster
        .wait_for(&ns, "service", "edit-api", WAIT, |s| {
            s["spec"]["ports"][0]["port"] == 80
        })
        .unwrap();
    cluster
        .wait_for(&ns, "configmap", "edit-config", WAIT, |c| {
            c["data"]["ragplane.toml"]
                .as_str()
                .is_some_and(|t| t.contains("log_filter = \"debug\""))
        })
        .unwrap();
    let ingest = cluster
        .wait_for(&ns, "deployment", "edit-worker-ingest", WAIT, |d| {
            d["spec"]["replicas"] == 5
        })
        .unwrap();
    let env = ingest["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("RAGPLANE__WORKERS__CONCURRENCY"), "{env}");
    // The removed pool's Deployment is deleted.
    let start = Instant::now();
    while cluster
        .get(&ns, "deployment", "edit-worker-bulk")
        .unwrap()
        .is_some()
    {
        assert!(
            start.elapsed() < WAIT,
            "edit-worker-bulk was not pruned\n{}",
            operator.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Edits to a child are reverted: the operator owns those fields.
    cluster
        .kubectl_ok(&[
            "scale",
            "-n",
            &ns,
            "deployment/edit-worker-ingest",
            "--replicas=1",
        ])
        .unwrap();
    cluster
        .wait_for(&ns, "deployment", "edit-worker-ingest", WAIT, |d| {
            d["spec"]["replicas"] == 5
        })
        .unwrap();
}

#[test]
fn the_shared_qdrant_collection_takes_its_layout_from_its_collection_resource() {
    let Some((cluster, ns, operator)) = setup("op-layout") else {
        return;
    };
    cluster
        .apply(
            &ns,
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: lay}
spec:
  qdrant: {external: {url: "http://127.0.0.1:1"}, collection: shared}
  postgres:
    urlSecretRef: {name: pg, key: url}
    readReplicaUrlSecretRefs: [{name: pg, key: replica-a}, {name: pg, key: replica-b}]
"#,
        )
        .unwrap();
    let config = |check: &'static str| {
        cluster
            .wait_for(&ns, "configmap", "lay-config", WAIT, move |c| {
                c["data"]["ragplane.toml"]
                    .as_str()
                    .is_some_and(|t| t.contains(check))
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()))
    };
    config("collection = \"shared\"");
    // The read replicas reach the pods through a list variable over one variable per Secret.
    let api = cluster
        .wait_for(&ns, "deployment", "lay-api", WAIT, |_| true)
        .unwrap();
    let env = api["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("RAGPLANE_POSTGRES_REPLICA_1"), "{env}");
    assert!(
        env.contains(r#"[\"$(RAGPLANE_POSTGRES_REPLICA_0)\", \"$(RAGPLANE_POSTGRES_REPLICA_1)\"]"#),
        "{env}"
    );

    // A Collection resource of this cluster for the shared collection sets its layout; one for
    // another cluster does not.
    cluster
        .apply(
            &ns,
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: Collection
metadata: {name: other}
spec: {cluster: elsewhere, collectionName: shared, shards: 9}
---
apiVersion: ragplane.dev/v1alpha1
kind: Collection
metadata: {name: shared}
spec: {cluster: lay, shards: 3, replicationFactor: 2, tenancy: {payloadField: org}}
"#,
        )
        .unwrap();
    let cm = config("shard_number = 3");
    let toml = cm["data"]["ragplane.toml"].as_str().unwrap_or_default();
    assert!(toml.contains("replication_factor = 2"), "{toml}");
    assert!(toml.contains("tenant_field = \"org\""), "{toml}");
    // Editing the Collection re-renders the config (the RagCluster controller watches them).
    cluster
        .apply(
            &ns,
            "apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {name: shared}\nspec: {cluster: lay, shards: 3, replicationFactor: 3, tenancy: {payloadField: org}}\n",
        )
        .unwrap();
    config("replication_factor = 3");
}

#[test]
fn readiness_follows_workload_status_into_conditions() {
    let Some((cluster, ns, operator)) = setup("op-ready") else {
        return;
    };
    cluster
        .apply(
            &ns,
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: ModelPool
metadata: {name: llm}
spec: {kind: ollama, model: "llama3.1:8b", replicas: 1}
---
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: r}
spec:
  api: {replicas: 2}
  postgres: {urlSecretRef: {name: pg, key: url}}
  redis: {urlSecretRef: {name: redis, key: url}}
  s3: {bucket: docs}
  workers: [{name: w, queues: [documents], replicas: 1}]
  generation: {name: llm}
"#,
        )
        .unwrap();
    let not_ready = cluster
        .wait_for(&ns, "ragcluster", "r", WAIT, |v| {
            condition(v, "Ready").is_some()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
    let generation = not_ready["metadata"]["generation"].clone();
    let ready = condition(&not_ready, "Ready").unwrap();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["observedGeneration"], generation);
    assert_eq!(
        condition(&not_ready, "Progressing").unwrap()["status"],
        "True"
    );

    mark_ready(cluster, &ns, "deployment", "r-api");
    mark_ready(cluster, &ns, "deployment", "r-worker-w");
    let out = cluster
        .kubectl_with_input(
            &[
                "wait",
                "-n",
                &ns,
                "--for=condition=Ready",
                "ragcluster/r",
                "--timeout=60s",
            ],
            None,
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        operator.log_tail()
    );
    let r = cluster.get(&ns, "ragcluster", "r").unwrap().unwrap();
    assert_eq!(r["status"]["api"], "2/2");
    assert_eq!(r["status"]["workers"], "1/1");
    assert_eq!(
        r["status"]["observedGeneration"],
        r["metadata"]["generation"]
    );
    // The generation pool is still warming (not Ready, not Degraded by its own account): the
    // cluster is progressing, not degraded.
    let progressing = condition(&r, "Progressing").unwrap();
    assert_eq!(
        (&progressing["status"], &progressing["reason"]),
        (&"True".into(), &"ModelPoolWarming".into()),
        "{progressing}"
    );
    assert_eq!(condition(&r, "Degraded").unwrap()["status"], "False");

    mark_ready(cluster, &ns, "statefulset", "llm");
    let out = cluster
        .kubectl_with_input(
            &[
                "wait",
                "-n",
                &ns,
                "--for=condition=Ready",
                "modelpool/llm",
                "--timeout=60s",
            ],
            None,
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let llm = cluster.get(&ns, "modelpool", "llm").unwrap().unwrap();
    assert_eq!(
        llm["status"]["readyEndpoints"][0],
        format!("http://llm.{ns}.svc:11434")
    );
    // Once the pool is Ready, nothing is in progress any more.
    cluster
        .wait_for(&ns, "ragcluster", "r", WAIT, |v| {
            condition(v, "Degraded").is_some_and(|c| c["status"] == "False")
                && condition(v, "Progressing").is_some_and(|c| c["status"] == "False")
        })
        .unwrap();

    // Scaling up makes it un-ready until the new replicas report ready.
    cluster
        .kubectl_ok(&[
            "patch",
            "-n",
            &ns,
            "ragcluster/r",
            "--type=merge",
            "-p",
            r#"{"spec":{"api":{"replicas":4}}}"#,
        ])
        .unwrap();
    let r = cluster
        .wait_for(&ns, "ragcluster", "r", WAIT, |v| {
            v["status"]["observedGeneration"] == v["metadata"]["generation"]
                && condition(v, "Ready").is_some_and(|c| c["status"] == "False")
        })
        .unwrap();
    assert_eq!(r["status"]["api"], "2/4");
}

#[test]
fn operator_restart_converges_without_duplicates() {
    let Some((cluster, ns, mut first)) = setup("op-restart") else {
        return;
    };
    cluster
        .apply(&ns, &example("prod-ragcluster.yaml"))
        .unwrap();
    // Kill the first operator as soon as it has started writing children.
    cluster
        .wait_for(&ns, "configmap", "prod-config", WAIT, |_| true)
        .unwrap_or_else(|e| panic!("{e}\n{}", first.log_tail()));
    first.kill();
    let second = Operator::start(cluster, &ns).unwrap();
    for (kind, name) in [
        ("deployment", "prod-api"),
        ("deployment", "prod-worker-ingest"),
        ("deployment", "prod-worker-backfill"),
        ("statefulset", "prod-qdrant"),
        ("statefulset", "llm"),
        ("deployment", "embeddings"),
    ] {
        cluster
            .wait_for(&ns, kind, name, WAIT, |_| true)
            .unwrap_or_else(|e| panic!("{e}\n{}", second.log_tail()));
    }
    cluster
        .wait_for(&ns, "ragcluster", "prod", WAIT, |v| {
            v["status"]["api"].is_string()
        })
        .unwrap();
    let count = |kind: &str, selector: &str| {
        let out = cluster
            .kubectl_ok(&["get", "-n", &ns, kind, "-l", selector, "-o", "name"])
            .unwrap();
        out.lines().count()
    };
    // The second operator takes the Lease once the killed one's expires; it then reconciles
    // everything the first wrote.
    cluster
        .wait_for(&ns, "lease", "ragplane-operator", WAIT, |l| {
            l["spec"]["leaseTransitions"].as_i64().unwrap_or(0) >= 1
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", second.log_tail()));
    let prod = "app.kubernetes.io/instance=prod";
    assert_eq!(count("deployments", prod), 3, "api + two worker pools");
    assert_eq!(count("statefulsets", prod), 1);
    assert_eq!(count("services", prod), 2);
    assert_eq!(count("poddisruptionbudgets", prod), 2);
    assert_eq!(count("configmaps", prod), 1);
    // Steady state: further reconciles write nothing. A no-op server-side apply keeps the
    // resourceVersion, so comparing it could not fail; the operator counts its applies that
    // changed an object instead.
    let changed = || second.metric("ragplane_operator_applies_changed_total", &[]);
    let deadline = Instant::now() + WAIT;
    let mut settled = changed();
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = changed();
        if now == settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "applies never settle\n{}",
            second.log_tail()
        );
        settled = now;
    }
    reconcile_again(cluster, &ns, "ragcluster/prod", &second);
    assert_eq!(
        changed(),
        settled,
        "a reconcile without a change wrote\n{}",
        second.log_tail()
    );
    // A change is counted: the log filter reaches the ConfigMap.
    let spec = cluster.get(&ns, "ragcluster", "prod").unwrap().unwrap();
    let filter = if spec["spec"]["logFilter"] == "debug" {
        "info"
    } else {
        "debug"
    };
    cluster
        .kubectl_ok(&[
            "patch",
            "-n",
            &ns,
            "ragcluster/prod",
            "--type=merge",
            "-p",
            &format!("{{\"spec\":{{\"logFilter\":\"{filter}\"}}}}"),
        ])
        .unwrap();
    poll_until(
        WAIT,
        "the change was not applied",
        || changed() > settled,
        || second.log_tail(),
    );
}

/// `spec.networkPolicy` renders a policy for the managed Qdrant and one per referenced
/// ModelPool, and turning it off removes them.
#[test]
fn network_policies_follow_the_spec() {
    let Some((cluster, ns, operator)) = setup("op-netpol") else {
        return;
    };
    let manifest = |enabled: bool| {
        format!(
            "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {{name: llm}}\nspec: {{kind: ollama, model: m}}\n---\n\
             apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {{name: np}}\n\
             spec: {{qdrant: {{managed: {{replicas: 1}}}}, generation: {{name: llm}}, networkPolicy: {{enabled: {enabled}}}}}\n"
        )
    };
    cluster.apply(&ns, &manifest(true)).unwrap();
    let qdrant = cluster
        .wait_for(&ns, "networkpolicy", "np-qdrant", WAIT, |_| true)
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
    assert_eq!(
        qdrant["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "qdrant"
    );
    let llm = cluster
        .wait_for(&ns, "networkpolicy", "np-to-llm", WAIT, |_| true)
        .unwrap();
    let rule = &llm["spec"]["ingress"][0];
    assert_eq!(rule["ports"][0]["port"], 11434);
    assert_eq!(
        rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "np"
    );
    cluster.apply(&ns, &manifest(false)).unwrap();
    poll_until(
        WAIT,
        "policies left after turning them off",
        || {
            ["np-qdrant", "np-to-llm"]
                .iter()
                .all(|n| cluster.get(&ns, "networkpolicy", n).unwrap().is_none())
        },
        || operator.log_tail(),
    );
}

/// Annotates `object` three times and waits until `operator` has reconciled its kind at least
/// twice more: reconciles that find nothing to change.
fn reconcile_again(cluster: &TestCluster, ns: &str, object: &str, operator: &Operator) {
    let kind = match object.split('/').next() {
        Some("ragcluster") => "RagCluster",
        Some("collection") => "Collection",
        other => panic!("no kind for {other:?}"),
    };
    let label = format!("kind=\"{kind}\"");
    let reconciles = || operator.metric("ragplane_operator_reconciles_total", &[&label]);
    let before = reconciles();
    for i in 0..3 {
        cluster
            .kubectl_ok(&[
                "annotate",
                "--overwrite",
                "-n",
                ns,
                object,
                &format!("e2e/poke={i}"),
            ])
            .unwrap_or_else(|e| panic!("annotate {object}: {e}"));
    }
    poll_until(
        WAIT,
        "no reconciles after annotating",
        || reconciles() >= before + 2.0,
        || operator.log_tail(),
    );
}

#[test]
fn collection_finalizer_follows_the_deletion_policy() {
    let Some((cluster, ns, operator)) = setup("op-final") else {
        return;
    };
    // Qdrant is unreachable here (nothing listens on port 1): reconciles fail transiently.
    cluster
        .apply(
            &ns,
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: c}
spec: {qdrant: {external: {url: "http://127.0.0.1:1"}}}
---
apiVersion: ragplane.dev/v1alpha1
kind: Collection
metadata: {name: keep}
spec: {cluster: c, deletionPolicy: Retain}
---
apiVersion: ragplane.dev/v1alpha1
kind: Collection
metadata: {name: drop}
spec: {cluster: c, deletionPolicy: Delete}
"#,
        )
        .unwrap();
    for name in ["keep", "drop"] {
        let c = cluster
            .wait_for(&ns, "collection", name, WAIT, |v| {
                v["metadata"]["finalizers"]
                    .to_string()
                    .contains("ragplane.dev/collection")
                    && condition(v, "Ready").is_some()
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
        let ready = condition(&c, "Ready").unwrap();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "QdrantError", "{ready}");
    }
    // The failures are reported as Warning Events on the resource.
    let events = cluster
        .kubectl_ok(&[
            "get",
            "events.events.k8s.io",
            "-n",
            &ns,
            "--field-selector",
            "regarding.name=drop",
            "-o",
            "json",
        ])
        .unwrap();
    let events: Value = serde_json::from_str(&events).unwrap();
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "Warning" && e["reason"] == "QdrantError"),
        "{events:#}"
    );
    // Retain: deleting never needs Qdrant.
    cluster
        .kubectl_ok(&["delete", "-n", &ns, "collection/keep", "--wait=false"])
        .unwrap();
    let start = Instant::now();
    while cluster.get(&ns, "collection", "keep").unwrap().is_some() {
        assert!(
            start.elapsed() < WAIT,
            "Retain collection was not released\n{}",
            operator.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Delete: the finalizer holds the resource while Qdrant cannot be reached.
    cluster
        .kubectl_ok(&["delete", "-n", &ns, "collection/drop", "--wait=false"])
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let held = cluster
        .get(&ns, "collection", "drop")
        .unwrap()
        .expect("held by the finalizer");
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    // Switching the policy to Retain releases it.
    cluster
        .kubectl_ok(&[
            "patch",
            "-n",
            &ns,
            "collection/drop",
            "--type=merge",
            "-p",
            r#"{"spec":{"deletionPolicy":"Retain"}}"#,
        ])
        .unwrap();
    let start = Instant::now();
    while cluster.get(&ns, "collection", "drop").unwrap().is_some() {
        assert!(
            start.elapsed() < WAIT,
            "collection was not released\n{}",
            operator.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Deleting the RagCluster needs no finalizer: its children carry owner references that a
    // real cluster's garbage collector follows (this harness runs none).
    let c = cluster.get(&ns, "ragcluster", "c").unwrap().unwrap();
    let api = cluster
        .wait_for(&ns, "deployment", "c-api", WAIT, |_| true)
        .unwrap();
    assert_eq!(owner(&api).2, uid(&c));
    cluster
        .kubectl_ok(&["delete", "-n", &ns, "ragcluster/c"])
        .unwrap();
    assert!(cluster.get(&ns, "ragcluster", "c").unwrap().is_none());
}

#[test]
fn metrics_and_health_endpoints_answer() {
    let Some((cluster, ns, operator)) = setup("op-metrics") else {
        return;
    };
    cluster.apply(&ns, &example("dev-ragcluster.yaml")).unwrap();
    cluster
        .wait_for(&ns, "ragcluster", "dev", WAIT, |v| {
            v["status"]["api"].is_string()
        })
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (health, metrics) = rt.block_on(async {
        let get = |path: &str| reqwest::get(format!("{}{path}", operator.metrics_url));
        let health = get("/healthz").await.unwrap().status();
        let metrics = get("/metrics").await.unwrap().text().await.unwrap();
        (health, metrics)
    });
    assert!(health.is_success());
    assert!(
        metrics.contains("ragplane_operator_reconciles_total{kind=\"RagCluster\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("ragplane_operator_leader 1"), "{metrics}");
}

#[test]
fn collection_against_a_real_qdrant() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        eprintln!("SKIPPED: QDRANT_URL is not set; the Collection tests against a real Qdrant need one (gRPC URL, e.g. http://127.0.0.1:6334)");
        return;
    };
    let Some((cluster, ns, operator)) = setup("op-qdrant") else {
        return;
    };
    let name = format!("e2e-{ns}");
    cluster
        .apply(
            &ns,
            &format!(
                r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {{name: q}}
spec: {{qdrant: {{external: {{url: "{url}"}}}}}}
---
apiVersion: ragplane.dev/v1alpha1
kind: Collection
metadata: {{name: docs}}
spec:
  cluster: q
  collectionName: {name}
  vectorSize: 8
  shards: 2
  hnsw: {{m: 8}}
  quantization: {{type: scalar}}
  deletionPolicy: Delete
"#
            ),
        )
        .unwrap();
    let out = cluster
        .kubectl_with_input(
            &[
                "wait",
                "-n",
                &ns,
                "--for=condition=Ready",
                "collection/docs",
                "--timeout=60s",
            ],
            None,
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        operator.log_tail()
    );
    let c = cluster.get(&ns, "collection", "docs").unwrap().unwrap();
    assert_eq!(c["status"]["pointsCount"], 0);
    // The collection has the sparse vector the data plane's keyword search writes, with IDF.
    // Qdrant's REST port is the gRPC port less one (scripts/services/qdrant.sh).
    let grpc_port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let rest = format!("http://127.0.0.1:{}/collections/{name}", grpc_port - 1);
    let out = std::process::Command::new("curl")
        .args(["-sf", &rest])
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        info["result"]["config"]["params"]["sparse_vectors"]["keyword"]["modifier"], "idf",
        "{info}"
    );
    assert!(
        c["status"]["shards"]
            .as_array()
            .is_some_and(|s| s.len() >= 2),
        "{c}"
    );
    // Steady state: further reconciles (each annotation triggers one) send Qdrant nothing.
    let writes = || {
        operator.metric(
            "ragplane_operator_qdrant_writes_total",
            &[&format!("namespace=\"{ns}\""), "collection=\"docs\""],
        )
    };
    let settled = writes();
    assert!(
        settled >= 2.0,
        "creation and the tenant index are writes: {settled}"
    );
    reconcile_again(cluster, &ns, "collection/docs", &operator);
    assert_eq!(
        writes(),
        settled,
        "a steady collection was written to\n{}",
        operator.log_tail()
    );
    // A change is one write: the update of what differs.
    cluster
        .apply(&ns, &format!("apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {{name: docs}}\nspec: {{cluster: q, collectionName: {name}, vectorSize: 8, shards: 2, hnsw: {{m: 16}}, quantization: {{type: scalar}}, deletionPolicy: Delete}}\n"))
        .unwrap();
    poll_until(
        Duration::from_secs(30),
        "the change was not written",
        || writes() >= settled + 1.0,
        || operator.log_tail(),
    );
    let out = std::process::Command::new("curl")
        .args(["-sf", &rest])
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(info["result"]["config"]["hnsw_config"]["m"], 16, "{info}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(writes(), settled + 1.0, "one change, one write");
    cluster
        .kubectl_ok(&["delete", "-n", &ns, "collection/docs", "--timeout=60s"])
        .unwrap();
    assert!(cluster.get(&ns, "collection", "docs").unwrap().is_none());
    let exists = |collection: &str| {
        let url = format!(
            "http://127.0.0.1:{}/collections/{collection}/exists",
            grpc_port - 1
        );
        let out = std::process::Command::new("curl")
            .args(["-sf", &url])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["result"]["exists"].as_bool()
    };
    assert_eq!(
        exists(&name),
        Some(false),
        "deletionPolicy Delete removed it"
    );

    // The Delete policy of an external Qdrant holds after the RagCluster is gone: the status
    // recorded where the collection lives.
    let orphan = format!("{name}-orphan");
    cluster
        .apply(
            &ns,
            &format!("apiVersion: ragplane.dev/v1alpha1\nkind: Collection\nmetadata: {{name: orphan}}\nspec: {{cluster: q, collectionName: {orphan}, vectorSize: 8, deletionPolicy: Delete}}\n"),
        )
        .unwrap();
    cluster
        .wait_for(&ns, "collection", "orphan", WAIT, |v| {
            condition(v, "Ready").is_some_and(|c| c["status"] == "True")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
    assert_eq!(exists(&orphan), Some(true));
    cluster
        .kubectl_ok(&["delete", "-n", &ns, "ragcluster/q", "--timeout=60s"])
        .unwrap();
    cluster
        .kubectl_ok(&["delete", "-n", &ns, "collection/orphan", "--timeout=60s"])
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
    assert_eq!(
        exists(&orphan),
        Some(false),
        "deleted without its RagCluster"
    );
}

/// The JSON answer of a Qdrant REST call (`curl` with `args`), or `Null`.
fn qdrant_rest(args: &[&str]) -> Value {
    std::process::Command::new("curl")
        .args(["-sf", "-H", "content-type: application/json"])
        .args(args)
        .output()
        .ok()
        .and_then(|out| serde_json::from_slice(&out.stdout).ok())
        .unwrap_or(Value::Null)
}

/// Raising `replicationFactor` replicates every shard to another peer, and `Ready` waits for
/// the new replicas to be `Active`; lowering it drops copies. A peer left holding nothing (as
/// one that joined later) gets shards moved onto it once the operator can list the peers.
/// Needs a Qdrant cluster of three or more peers.
#[test]
fn collection_replication_against_a_real_qdrant_cluster() {
    let Ok(url) = std::env::var("QDRANT_CLUSTER_URL") else {
        eprintln!("SKIPPED: QDRANT_CLUSTER_URL is not set; the replication test needs the gRPC URL of a Qdrant cluster of three or more peers");
        return;
    };
    let Some((cluster, ns, operator)) = setup("op-qrepl") else {
        return;
    };
    let name = format!("e2e-{ns}");
    // The peer list (httpUrl) is given only for the rebalancing step at the end.
    let rag_cluster = |http: Option<&str>| {
        let http = http
            .map(|h| format!(", httpUrl: \"{h}\""))
            .unwrap_or_default();
        format!(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {{name: q}}
spec: {{qdrant: {{external: {{url: "{url}"{http}}}}}}}
"#
        )
    };
    let collection = |factor: u32| {
        format!(
            r#"{}
---
apiVersion: ragplane.dev/v1alpha1
kind: Collection
metadata: {{name: docs}}
spec: {{cluster: q, collectionName: {name}, vectorSize: 8, shards: 3, replicationFactor: {factor}, deletionPolicy: Delete}}
"#,
            rag_cluster(None)
        )
    };
    let ready = || {
        let out = cluster
            .kubectl_ok(&[
                "wait",
                "-n",
                &ns,
                "--for=condition=Ready",
                "collection/docs",
                "--timeout=120s",
            ])
            .map_err(|e| format!("{e}\n{}", operator.log_tail()));
        out.unwrap();
        cluster.get(&ns, "collection", "docs").unwrap().unwrap()
    };
    // Replicas by shard, every one of them Active.
    let replicas = |c: &Value| {
        let mut by_shard: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
        for r in c["status"]["shards"].as_array().unwrap() {
            assert_eq!(r["state"], "Active", "{c}");
            by_shard
                .entry(r["shardId"].as_i64().unwrap())
                .or_default()
                .push(r["peerId"].as_str().unwrap().to_string());
        }
        by_shard
    };
    cluster.apply(&ns, &collection(1)).unwrap();
    let c = ready();
    assert!(replicas(&c).values().all(|p| p.len() == 1), "{c}");

    cluster.apply(&ns, &collection(2)).unwrap();
    let start = Instant::now();
    let c = loop {
        let c = ready();
        let r = replicas(&c);
        if c["status"]["observedGeneration"] == c["metadata"]["generation"]
            && r.len() == 3
            && r.values().all(|p| p.len() == 2)
        {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{c}\n{}",
            operator.log_tail()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    for peers in replicas(&c).values() {
        assert_ne!(
            peers[0], peers[1],
            "two replicas of a shard on one peer: {c}"
        );
    }

    // Lowering the factor is carried out too: back to one copy of each shard.
    cluster.apply(&ns, &collection(1)).unwrap();
    let start = Instant::now();
    let c = loop {
        let c = ready();
        let r = replicas(&c);
        if c["status"]["observedGeneration"] == c["metadata"]["generation"]
            && r.len() == 3
            && r.values().all(|p| p.len() == 1)
        {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{c}\n{}",
            operator.log_tail()
        );
        std::thread::sleep(Duration::from_secs(1));
    };

    // A peer holding nothing, as one that joined later: every copy on it is moved away by
    // hand. Without the peer list the operator cannot see it.
    let Ok(http) = std::env::var("QDRANT_CLUSTER_HTTP_URL") else {
        eprintln!("SKIPPED: moving shards onto a peer holding none: QDRANT_CLUSTER_HTTP_URL (the cluster's REST URL) is not set");
        cluster
            .kubectl_ok(&["delete", "-n", &ns, "collection/docs", "--timeout=60s"])
            .unwrap();
        return;
    };
    let cluster_info = qdrant_rest(&[&format!("{http}/cluster")]);
    let peers: Vec<String> = cluster_info["result"]["peers"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    assert!(peers.len() >= 3, "{cluster_info}");
    // Not the peer the operator's gRPC calls reach: that one it always knows of.
    let reached = cluster_info["result"]["peer_id"].to_string();
    let by_shard = replicas(&c);
    let empty = by_shard
        .values()
        .flatten()
        .find(|p| **p != reached)
        .unwrap_or_else(|| panic!("every shard on peer {reached}: {c}"))
        .clone();
    let other = peers.iter().find(|p| **p != empty).unwrap().clone();
    for (shard, on) in &by_shard {
        if on[0] == empty {
            let body = format!(
                r#"{{"move_shard": {{"shard_id": {shard}, "from_peer_id": {empty}, "to_peer_id": {other}}}}}"#
            );
            let answer = qdrant_rest(&[
                "-X",
                "POST",
                &format!("{http}/collections/{name}/cluster"),
                "-d",
                &body,
            ]);
            assert_eq!(answer["result"], true, "{body}: {answer}");
        }
    }
    let layout = || qdrant_rest(&[&format!("{http}/collections/{name}/cluster")]);
    // The peers holding a copy, from Qdrant itself (the status lags a reconcile behind), and
    // whether no transfer is running.
    let held = || {
        let l = layout();
        let r = &l["result"];
        let peers: Vec<String> = r["local_shards"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|_| r["peer_id"].to_string())
            .chain(
                r["remote_shards"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| s["peer_id"].to_string()),
            )
            .collect();
        let settled = r["shard_transfers"].as_array().is_some_and(Vec::is_empty);
        (peers, settled)
    };
    poll_until(
        Duration::from_secs(60),
        "the moves by hand to finish and leave a peer empty",
        || {
            let (peers, settled) = held();
            settled && peers.len() == 3 && !peers.contains(&empty)
        },
        || format!("{}\n{}", layout(), operator.log_tail()),
    );
    // With the peer list, the operator moves a shard onto the empty peer (a Rebalancing event),
    // one copy per peer.
    cluster.apply(&ns, &rag_cluster(Some(&http))).unwrap();
    let rebalanced = || {
        cluster
            .kubectl_ok(&[
                "get",
                "events",
                "-n",
                &ns,
                "--field-selector",
                "reason=Rebalancing",
                "-o",
                "name",
            ])
            .is_ok_and(|e| !e.trim().is_empty())
    };
    poll_until(
        Duration::from_secs(150),
        "the operator to move a shard back onto the empty peer",
        || {
            let (peers, settled) = held();
            let distinct: std::collections::BTreeSet<&String> = peers.iter().collect();
            settled && distinct.len() == 3 && peers.contains(&empty) && rebalanced()
        },
        || format!("peer {empty}: {}\n{}", layout(), operator.log_tail()),
    );
    cluster
        .kubectl_ok(&["delete", "-n", &ns, "collection/docs", "--timeout=60s"])
        .unwrap();
}

/// `helm`: `$HELM`, else on PATH; `None` after a SKIPPED line unless `RAGPLANE_REQUIRE_HELM=1`.
fn helm() -> Option<String> {
    let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".into());
    let found = std::process::Command::new(&helm)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(helm);
    }
    let why = format!("{helm} not found; the chart RBAC test needs helm (set HELM)");
    assert!(
        std::env::var("RAGPLANE_REQUIRE_HELM").as_deref() != Ok("1"),
        "{why}"
    );
    eprintln!("SKIPPED: {why}");
    None
}

/// A kubeconfig that acts as ServiceAccount `sa` of `ns` (impersonation by the admin).
fn acting_as(cluster: &TestCluster, ns: &str, sa: &str) -> std::path::PathBuf {
    let kubeconfig = cluster.dir().join(format!("kubeconfig-{ns}-{sa}"));
    let mut config: Value = serde_json::from_str(
        &cluster
            .kubectl_ok(&["config", "view", "--raw", "-o", "json"])
            .expect("the admin kubeconfig"),
    )
    .expect("kubeconfig JSON");
    for user in config["users"].as_array_mut().expect("users") {
        user["user"]["as"] = Value::String(format!("system:serviceaccount:{ns}:{sa}"));
    }
    std::fs::write(&kubeconfig, config.to_string()).expect("write the kubeconfig");
    kubeconfig
}

/// The leader stops when it cannot renew its Lease. Here the API server refuses the renewal
/// once the operator's permission on Leases is withdrawn: the operator must exit instead of
/// reconciling on after its Lease expires (a standby would take it over by then).
#[test]
fn leader_stops_when_it_cannot_renew_its_lease() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let ns = cluster.namespace("op-lease").unwrap();
    // A ServiceAccount allowed Leases and nothing else: the controllers only log refusals.
    cluster
        .apply(
            &ns,
            &format!(
                r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: lease-only}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: leases}}
rules:
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: leases}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: leases}}
subjects: [{{kind: ServiceAccount, name: lease-only, namespace: {ns}}}]
"#
            ),
        )
        .unwrap();
    let kubeconfig = acting_as(cluster, &ns, "lease-only");
    let mut operator = Operator::start_with_kubeconfig(cluster, &ns, &kubeconfig).unwrap();
    cluster
        .wait_for(&ns, "lease", "ragplane-operator", WAIT, |l| {
            l["spec"]["holderIdentity"].is_string()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
    // Renewals go through (the Lease lasts 4 s and is renewed every 3 s or so).
    assert!(
        operator.wait_exit(Duration::from_secs(10)).is_none(),
        "the leader exited while it could renew:\n{}",
        operator.log_tail()
    );
    let renewed = cluster
        .get(&ns, "lease", "ragplane-operator")
        .unwrap()
        .unwrap();
    cluster
        .kubectl_ok(&["delete", "rolebinding", "-n", &ns, "leases"])
        .unwrap();
    let revoked = Instant::now();
    let status = operator
        .wait_exit(Duration::from_secs(12))
        .unwrap_or_else(|| {
            panic!(
                "the leader still runs 12 s after it lost the right to renew a 4 s Lease:\n{}",
                operator.log_tail()
            )
        });
    assert!(!status.success(), "{status}");
    let log = std::fs::read_to_string(&operator.log).unwrap();
    assert!(
        log.contains("cannot renew the leader Lease"),
        "{}",
        operator.log_tail()
    );
    eprintln!(
        "the leader exited {:.1} s after its Lease permission was withdrawn (Lease renewed at \
         {})",
        revoked.elapsed().as_secs_f64(),
        renewed["spec"]["renewTime"]
    );
}

#[test]
fn chart_rbac_is_enough_for_the_operator_and_no_more() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let Some(helm) = helm() else { return };
    let ns = cluster.namespace("op-rbac").unwrap();
    let chart = repo_root().join("charts/ragplane");
    let rendered = std::process::Command::new(&helm)
        .args([
            "template",
            "rp",
            &chart.to_string_lossy(),
            "--namespace",
            &ns,
            "--kube-version",
            "1.37.2",
        ])
        .args(["--set", &format!("watchNamespaces={{{ns}}}")])
        .args([
            "--show-only",
            "templates/rbac.yaml",
            "--show-only",
            "templates/serviceaccount.yaml",
        ])
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    cluster
        .apply(&ns, &String::from_utf8_lossy(&rendered.stdout))
        .unwrap();

    let sa = format!("system:serviceaccount:{ns}:rp-ragplane");
    let kubeconfig = acting_as(cluster, &ns, "rp-ragplane");
    let operator = Operator::start_with_kubeconfig(cluster, &ns, &kubeconfig).unwrap();

    cluster
        .apply(
            &ns,
            r#"
apiVersion: v1
kind: Secret
metadata: {name: qdrant}
stringData: {api-key: secret}
---
apiVersion: ragplane.dev/v1alpha1
kind: ModelPool
metadata: {name: llm}
spec: {kind: ollama, model: m}
---
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: rbac}
spec:
  api: {replicas: 1, autoscaling: {minReplicas: 2, maxReplicas: 3}}
  postgres: {urlSecretRef: {name: pg, key: url}}
  redis: {urlSecretRef: {name: redis, key: url}}
  s3: {bucket: docs}
  workers: [{name: w, queues: [documents]}]
  generation: {name: llm}
  qdrant: {external: {url: "http://127.0.0.1:1", apiKeySecretRef: {name: qdrant, key: api-key}}}
---
apiVersion: ragplane.dev/v1alpha1
kind: Collection
metadata: {name: docs}
spec: {cluster: rbac}
"#,
        )
        .unwrap();
    // Every write the operator makes succeeds as the ServiceAccount: children, scale, status,
    // finalizers, Events, the Lease, the admin key Secret; and reading the API key Secret.
    cluster
        .wait_for(&ns, "deployment", "rbac-api", WAIT, |d| {
            d["spec"]["replicas"] == 2
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
    cluster
        .wait_for(&ns, "deployment", "rbac-worker-w", WAIT, |_| true)
        .unwrap();
    cluster
        .wait_for(&ns, "statefulset", "llm", WAIT, |_| true)
        .unwrap();
    cluster
        .wait_for(&ns, "ragcluster", "rbac", WAIT, |v| {
            condition(v, "Ready").is_some()
        })
        .unwrap();
    cluster
        .wait_for(&ns, "modelpool", "llm", WAIT, |v| {
            condition(v, "Ready").is_some()
        })
        .unwrap();
    let docs = cluster
        .wait_for(&ns, "collection", "docs", WAIT, |v| {
            v["metadata"]["finalizers"].is_array() && condition(v, "Ready").is_some()
        })
        .unwrap();
    // It got past the Secret to Qdrant itself, which is unreachable here.
    assert_eq!(
        condition(&docs, "Ready").unwrap()["reason"],
        "QdrantError",
        "{docs:#}\n{}",
        operator.log_tail()
    );
    assert!(cluster
        .get(&ns, "lease", "ragplane-operator")
        .unwrap()
        .is_some());
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    assert!(
        !log.contains("forbidden"),
        "RBAC denied something:\n{}",
        operator.log_tail()
    );

    // Least privilege: Secrets are read and watched (a rotated one rolls the pods) but never
    // deleted; nothing outside the watched namespace.
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i", "--as", sa.as_str()];
        all.extend_from_slice(args);
        let out = cluster.kubectl_with_input(&all, None).unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(can(&["get", "secrets", "-n", &ns]), "yes");
    assert_eq!(can(&["watch", "secrets", "-n", &ns]), "yes");
    assert_eq!(can(&["delete", "secrets", "-n", &ns]), "no");
    assert_eq!(can(&["get", "secrets", "-n", "default"]), "no");
    assert_eq!(can(&["create", "deployments", "-n", "default"]), "no");
    assert_eq!(can(&["create", "pods", "-n", &ns]), "no");
    assert_eq!(can(&["delete", "ragclusters", "-n", &ns]), "no");
}

/// The pod template of a workload as a Pod, with the claims a StatefulSet would add as volumes.
fn pod_of(workload: &Value) -> Value {
    let template = &workload["spec"]["template"];
    let mut spec = template["spec"].clone();
    if let Some(claims) = workload["spec"]["volumeClaimTemplates"].as_array() {
        let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
        let mut volumes = volumes;
        for c in claims {
            volumes.push(serde_json::json!({
                "name": c["metadata"]["name"],
                "persistentVolumeClaim": {"claimName": c["metadata"]["name"]},
            }));
        }
        spec["volumes"] = Value::Array(volumes);
    }
    let name = workload["metadata"]["name"]
        .as_str()
        .expect("a named workload");
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{name}-pod"),
            "labels": template["metadata"]["labels"],
        },
        "spec": spec,
    })
}

/// Every pod the operator would start is admitted under the Pod Security "restricted" level:
/// each workload's pod template is created as a Pod with a server-side dry run, which runs
/// admission, in a namespace that enforces the level.
#[test]
fn every_pod_the_operator_creates_passes_the_restricted_pod_security_level() {
    let Some((cluster, ns, operator)) = setup("op-psa") else {
        return;
    };
    cluster
        .kubectl_ok(&[
            "label",
            "namespace",
            &ns,
            "pod-security.kubernetes.io/enforce=restricted",
        ])
        .unwrap();
    let create = |pod: &Value| {
        cluster
            .kubectl_with_input(
                &["create", "--dry-run=server", "-n", &ns, "-f", "-"],
                Some(&pod.to_string()),
            )
            .unwrap()
    };
    // The namespace does enforce it: a pod with default security settings is refused.
    let loose = create(&serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "loose"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}));
    assert!(
        String::from_utf8_lossy(&loose.stderr).contains("violates PodSecurity \"restricted"),
        "{}",
        String::from_utf8_lossy(&loose.stderr)
    );

    cluster
        .apply(&ns, &example("prod-ragcluster.yaml"))
        .unwrap();
    cluster.apply(&ns, &example("dev-ragcluster.yaml")).unwrap();
    let expected = [
        ("deployment", "prod-api"),
        ("deployment", "prod-worker-ingest"),
        ("deployment", "prod-worker-backfill"),
        ("statefulset", "prod-qdrant"),
        ("statefulset", "llm"),
        ("deployment", "embeddings"),
        ("deployment", "dev-api"),
    ];
    for (kind, name) in expected {
        let workload = cluster
            .wait_for(&ns, kind, name, WAIT, |_| true)
            .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
        let out = create(&pod_of(&workload));
        assert!(
            out.status.success(),
            "the pod of {kind}/{name} is refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// With no admin key Secret named, the operator creates one and never changes it; the pods read
/// it, keep their data on a claim, and roll when a Secret they read changes.
#[test]
fn the_admin_key_lives_in_a_secret_and_a_changed_secret_rolls_the_pods() {
    let Some((cluster, ns, operator)) = setup("op-secrets") else {
        return;
    };
    cluster.apply(&ns, &example("dev-ragcluster.yaml")).unwrap();
    let secret = cluster
        .wait_for(&ns, "secret", "dev-admin-key", WAIT, |s| {
            s["data"]["api-key"].is_string()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
    assert_eq!(owner(&secret).0, "RagCluster");
    let key = secret["data"]["api-key"].as_str().unwrap().to_owned();
    cluster
        .wait_for(&ns, "ragcluster", "dev", WAIT, |c| {
            c["status"]["adminKeySecret"] == "dev-admin-key"
        })
        .unwrap();
    let claim = cluster
        .wait_for(&ns, "persistentvolumeclaim", "dev-data", WAIT, |_| true)
        .unwrap();
    assert_eq!(owner(&claim).1, "dev");

    let api = cluster
        .wait_for(&ns, "deployment", "dev-api", WAIT, |_| true)
        .unwrap();
    let pod = &api["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let admin_env = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "RAGPLANE_ADMIN_KEY")
        .expect("the admin key reaches the pod");
    assert_eq!(
        admin_env["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "dev-admin-key", "key": "api-key", "optional": false})
    );
    let data = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "data")
        .unwrap();
    assert_eq!(data["persistentVolumeClaim"]["claimName"], "dev-data");
    assert_eq!(api["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(container["startupProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
    let secrets_hash = template_annotation(&api, SECRETS_HASH);
    let config_hash = template_annotation(&api, "ragplane.dev/config-hash");

    // Later reconciles keep the key: a spec change rolls the config, not the key.
    cluster
        .apply(
            &ns,
            &format!(
                "{}  logFilter: debug\n",
                example("dev-ragcluster.yaml").replace("  logFilter: info,ragplane=debug\n", "")
            ),
        )
        .unwrap();
    let api = cluster
        .wait_for(&ns, "deployment", "dev-api", WAIT, |d| {
            template_annotation(d, "ragplane.dev/config-hash") != config_hash
        })
        .unwrap();
    assert_eq!(template_annotation(&api, SECRETS_HASH), secrets_hash);
    let again = cluster
        .get(&ns, "secret", "dev-admin-key")
        .unwrap()
        .unwrap();
    assert_eq!(again["data"]["api-key"], key.as_str());

    // Rotating the key rolls the pods, and the operator keeps the new key.
    rotate_secret(
        cluster,
        &ns,
        "dev-admin-key",
        "rp_rotated_by_the_platform_team",
    );
    cluster
        .wait_for(&ns, "deployment", "dev-api", WAIT, |d| {
            template_annotation(d, SECRETS_HASH) != secrets_hash
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
    let rotated = cluster
        .get(&ns, "secret", "dev-admin-key")
        .unwrap()
        .unwrap();
    assert_ne!(rotated["data"]["api-key"], key.as_str());
}

/// The annotation of the Secrets' hash on a workload's pod template.
const SECRETS_HASH: &str = "ragplane.dev/secrets-hash";

/// Annotation `name` of workload `d`'s pod template, empty when it has none.
fn template_annotation(d: &Value, name: &str) -> String {
    d["spec"]["template"]["metadata"]["annotations"][name]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Sets the `api-key` of Secret `name` to `value`, as a platform team rotating it would.
fn rotate_secret(cluster: &TestCluster, ns: &str, name: &str, value: &str) {
    let patch = serde_json::json!({"stringData": {"api-key": value}}).to_string();
    cluster
        .kubectl_ok(&[
            "patch",
            "-n",
            ns,
            "secret",
            name,
            "--type=merge",
            "-p",
            &patch,
        ])
        .unwrap_or_else(|e| panic!("rotate {name}: {e}"));
}

/// Rotating a managed Qdrant's API key rolls its peers as well as the data plane, so that
/// neither stays on the old key.
#[test]
fn a_rotated_qdrant_key_rolls_the_peers_and_the_data_plane() {
    let Some((cluster, ns, operator)) = setup("op-qkey") else {
        return;
    };
    cluster
        .apply(
            &ns,
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: vq}\nspec: {qdrant: {managed: {replicas: 1}}}\n",
        )
        .unwrap();
    let hash = |d: &Value| template_annotation(d, SECRETS_HASH);
    cluster
        .wait_for(&ns, "secret", "vq-qdrant-key", WAIT, |s| {
            s["data"]["api-key"].is_string()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
    let peers = cluster
        .wait_for(&ns, "statefulset", "vq-qdrant", WAIT, |s| {
            !hash(s).is_empty()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
    let api = cluster
        .wait_for(&ns, "deployment", "vq-api", WAIT, |_| true)
        .unwrap();
    let (peers_before, api_before) = (hash(&peers), hash(&api));
    // The operator created the key: a later reconcile rolls neither the peers nor the data
    // plane, which were created with the key's hash before its Secret existed.
    reconcile_again(cluster, &ns, "ragcluster/vq", &operator);
    for (kind, name) in [("statefulset", "vq-qdrant"), ("deployment", "vq-api")] {
        let workload = cluster.get(&ns, kind, name).unwrap().unwrap();
        assert_eq!(
            workload["metadata"]["generation"],
            1,
            "{kind} {name} was changed after it was created\n{}",
            operator.log_tail()
        );
    }
    assert_eq!(
        hash(
            &cluster
                .get(&ns, "statefulset", "vq-qdrant")
                .unwrap()
                .unwrap()
        ),
        peers_before
    );
    rotate_secret(
        cluster,
        &ns,
        "vq-qdrant-key",
        "rotated-by-the-platform-team",
    );
    cluster
        .wait_for(&ns, "statefulset", "vq-qdrant", WAIT, |s| {
            hash(s) != peers_before
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
    cluster
        .wait_for(&ns, "deployment", "vq-api", WAIT, |d| hash(d) != api_before)
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
}

/// A ModelPool with autoscaling bounds and no rules starts at its minimum, whichever workload
/// serves it; the count is not the reconciler's, so it is raised, not applied.
#[test]
fn a_model_pool_with_bounds_only_starts_at_its_minimum() {
    let Some((cluster, ns, operator)) = setup("op-bounds") else {
        return;
    };
    cluster
        .apply(
            &ns,
            "apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: emb}\nspec: {kind: embedding, model: m, autoscaling: {minReplicas: 2, maxReplicas: 4}}\n---\n\
             apiVersion: ragplane.dev/v1alpha1\nkind: ModelPool\nmetadata: {name: gen}\nspec: {kind: ollama, model: m, autoscaling: {minReplicas: 3, maxReplicas: 4}}\n",
        )
        .unwrap();
    for (kind, name, minimum) in [("deployment", "emb", 2), ("statefulset", "gen", 3)] {
        cluster
            .wait_for(&ns, kind, name, WAIT, |w| w["spec"]["replicas"] == minimum)
            .unwrap_or_else(|e| panic!("{kind} {name}: {e}\n{}", operator.log_tail()));
    }
}

/// A cluster that sets no version keeps the one it was created with when a newer operator
/// takes over; naming a version rolls it.
#[test]
fn an_operator_upgrade_rolls_no_cluster_until_its_version_changes() {
    let Some(cluster) = cluster::shared() else {
        return;
    };
    let ns = cluster.namespace("op-version").unwrap();
    let image = |d: &Value| {
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let spec = |name: &str, extra: &str| {
        format!("apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {{name: {name}}}\nspec:\n  api: {{replicas: 1}}\n{extra}")
    };
    let mut old = Operator::start_with_env(cluster, &ns, &[("RAGPLANE_VERSION", "0.1.0")]).unwrap();
    cluster.apply(&ns, &spec("pinned", "")).unwrap();
    cluster
        .wait_for(&ns, "deployment", "pinned-api", WAIT, |d| {
            image(d).ends_with(":0.1.0")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", old.log_tail()));
    cluster
        .wait_for(&ns, "ragcluster", "pinned", WAIT, |c| {
            c["status"]["version"] == "0.1.0"
        })
        .unwrap();
    old.kill();

    let new = Operator::start_with_env(cluster, &ns, &[("RAGPLANE_VERSION", "0.2.0")]).unwrap();
    cluster.apply(&ns, &spec("fresh", "")).unwrap();
    cluster
        .wait_for(&ns, "deployment", "fresh-api", WAIT, |d| {
            image(d).ends_with(":0.2.0")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", new.log_tail()));
    // The new operator reconciles the old cluster (its log level changes) without rolling its
    // version.
    cluster
        .apply(&ns, &spec("pinned", "  logFilter: debug\n"))
        .unwrap();
    let pinned = cluster
        .wait_for(&ns, "configmap", "pinned-config", WAIT, |c| {
            c["data"]["ragplane.toml"]
                .as_str()
                .is_some_and(|t| t.contains("log_filter = \"debug\""))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", new.log_tail()));
    assert!(pinned.is_object());
    let d = cluster
        .get(&ns, "deployment", "pinned-api")
        .unwrap()
        .unwrap();
    assert!(image(&d).ends_with(":0.1.0"), "{}", image(&d));

    cluster
        .apply(
            &ns,
            &spec("pinned", "  logFilter: debug\n  version: \"0.2.0\"\n"),
        )
        .unwrap();
    cluster
        .wait_for(&ns, "deployment", "pinned-api", WAIT, |d| {
            image(d).ends_with(":0.2.0")
        })
        .unwrap();
    cluster
        .wait_for(&ns, "ragcluster", "pinned", WAIT, |c| {
            c["status"]["version"] == "0.2.0"
        })
        .unwrap();
}
