//! The autoscaling loop: polls Prometheus for every component with rules, asks the
//! [policy](super::policy) for a count, and writes it through the scale subresource. It records
//! each decision in `status.autoscaling` (under its own field manager), in Events and in metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};

use super::policy::{decide, Decision, History, Policy, Sample};
use super::presets::Scope;
use super::{scaling, Scaling, FIELD_MANAGER};
use crate::context::Context;
use crate::crd::common::{ComponentAutoscalingStatus, RuleValue};
use crate::crd::model_pool::{ModelPool, ModelPoolKind};
use crate::crd::rag_cluster::RagCluster;
use crate::rag_cluster::build::worker_deployment::worker_name;

/// Action of the autoscaler's Events.
const ACTION: &str = "Autoscale";
/// How often the loop looks for components whose poll is due.
const TICK: Duration = Duration::from_millis(250);
/// Longest a Prometheus query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// A status entry is rewritten at least this often while only the values change.
const STATUS_REFRESH: Duration = Duration::from_secs(60);

/// Kind of workload a component runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet (Ollama ModelPools).
    StatefulSet,
}

/// One component whose replicas the loop owns.
#[derive(Clone, Debug)]
pub struct ScaleTarget {
    /// The owning resource, for Events.
    pub owner: ObjectReference,
    /// `RagCluster` or `ModelPool`.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name of the owning resource.
    pub name: String,
    /// Component: `api`, `worker-<pool>` or `model-server`.
    pub component: String,
    /// Kind of the scaled workload.
    pub workload_kind: WorkloadKind,
    /// Name of the scaled workload.
    pub workload: String,
    /// The validated policy.
    pub policy: Box<Policy>,
    /// Prometheus base URL.
    pub prometheus_url: Option<String>,
}

impl ScaleTarget {
    fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.resource_key(),
            self.component,
            self.workload
        )
    }

    fn resource_key(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }

    fn labels(&self) -> [String; 3] {
        [
            self.namespace.clone(),
            format!("{}/{}", self.kind, self.name),
            self.component.clone(),
        ]
    }
}

/// Components of `c` with Prometheus rules; components whose spec does not validate are left to
/// the reconciler, which reports them.
pub fn cluster_targets(c: &RagCluster, default_url: Option<&str>) -> Vec<ScaleTarget> {
    let (Some(name), Some(namespace)) = (c.metadata.name.clone(), c.namespace()) else {
        return Vec::new();
    };
    let url = c.spec.prometheus_url.as_deref().or(default_url);
    let make = |component: String, workload: String, s: Result<Scaling, (String, String)>| match s {
        Ok(Scaling::Rules(policy)) => Some(ScaleTarget {
            owner: c.object_ref(&()),
            kind: "RagCluster",
            namespace: namespace.clone(),
            name: name.clone(),
            component,
            workload_kind: WorkloadKind::Deployment,
            workload,
            policy,
            prometheus_url: url.map(str::to_owned),
        }),
        _ => None,
    };
    let mut out = Vec::new();
    out.extend(make(
        "api".into(),
        format!("{name}-api"),
        scaling(
            c.spec.api.replicas,
            c.spec.api.autoscaling.as_ref(),
            Scope::Api {
                namespace: &namespace,
                cluster: &name,
            },
            "api",
        ),
    ));
    for w in &c.spec.workers {
        out.extend(make(
            format!("worker-{}", w.name),
            worker_name(&name, &w.name),
            scaling(
                w.replicas,
                w.autoscaling.as_ref(),
                Scope::Worker {
                    namespace: &namespace,
                    cluster: &name,
                    queues: &crate::crd::rag_cluster::queue_names(&w.queues),
                },
                "workers",
            ),
        ));
    }
    out
}

/// The pool's server workload, when Prometheus rules drive it.
pub fn pool_targets(p: &ModelPool, default_url: Option<&str>) -> Vec<ScaleTarget> {
    let (Some(name), Some(namespace)) = (p.metadata.name.clone(), p.namespace()) else {
        return Vec::new();
    };
    let s = scaling(
        p.spec.replicas,
        p.spec.autoscaling.as_ref(),
        Scope::ModelPool {
            namespace: &namespace,
            name: &name,
        },
        "",
    );
    let Ok(Scaling::Rules(policy)) = s else {
        return Vec::new();
    };
    vec![ScaleTarget {
        owner: p.object_ref(&()),
        kind: "ModelPool",
        namespace,
        name: name.clone(),
        component: "model-server".into(),
        workload_kind: if p.spec.kind == ModelPoolKind::Ollama {
            WorkloadKind::StatefulSet
        } else {
            WorkloadKind::Deployment
        },
        workload: name,
        policy,
        prometheus_url: p
            .spec
            .prometheus_url
            .as_deref()
            .or(default_url)
            .map(str::to_owned),
    }]
}

/// What one component remembers between polls.
struct State {
    history: History,
    next_poll: Duration,
    fallback: bool,
    last_scale: Option<Time>,
    status: Option<ComponentAutoscalingStatus>,
}

/// What a poll read: the workload's current count and one sample per rule.
struct Polled {
    current: Result<Option<i32>, kube::Error>,
    samples: Vec<Sample>,
    started: Instant,
}

/// The loop's state across ticks.
pub struct Autoscaler {
    ctx: Arc<Context>,
    epoch: Instant,
    states: HashMap<String, State>,
    prometheus: HashMap<String, prometheus_http_query::Client>,
    written: HashMap<String, (Instant, Vec<ComponentAutoscalingStatus>)>,
}

/// Runs the loop until `shutdown` resolves, for resources in `namespace` (every namespace when
/// `None`); `default_url` is the Prometheus of resources that name none.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    default_url: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let client = ctx.client.clone();
    let (clusters, cluster_writer) = reflector::store::<RagCluster>();
    let (pools, pool_writer) = reflector::store::<ModelPool>();
    let cluster_api = crate::rag_cluster::scoped::<RagCluster>(&client, namespace.as_deref());
    let pool_api = crate::rag_cluster::scoped::<ModelPool>(&client, namespace.as_deref());
    let watch_clusters = watcher(cluster_api, watcher::Config::default())
        .default_backoff()
        .reflect(cluster_writer)
        .for_each(|_| async {});
    let watch_pools = watcher(pool_api, watcher::Config::default())
        .default_backoff()
        .reflect(pool_writer)
        .for_each(|_| async {});
    let mut autoscaler = Autoscaler::new(ctx);
    let main = async move {
        loop {
            tokio::time::sleep(TICK).await;
            let mut targets: Vec<ScaleTarget> = clusters
                .state()
                .iter()
                .flat_map(|c| cluster_targets(c, default_url.as_deref()))
                .collect();
            targets.extend(
                pools
                    .state()
                    .iter()
                    .flat_map(|p| pool_targets(p, default_url.as_deref())),
            );
            autoscaler.tick(&targets).await;
        }
    };
    tokio::select! {
        () = shutdown => {},
        () = watch_clusters => {},
        () = watch_pools => {},
        () = main => {},
    }
}

impl Autoscaler {
    /// A loop with no history.
    pub fn new(ctx: Arc<Context>) -> Self {
        Self {
            ctx,
            epoch: Instant::now(),
            states: HashMap::new(),
            prometheus: HashMap::new(),
            written: HashMap::new(),
        }
    }

    /// Polls every target whose poll is due, writes what changed, and forgets components that
    /// left the spec.
    pub async fn tick(&mut self, targets: &[ScaleTarget]) {
        let now = self.epoch.elapsed();
        let due: Vec<&ScaleTarget> = targets
            .iter()
            .filter(|t| {
                self.states
                    .get(&t.key())
                    .is_none_or(|s| s.next_poll <= now || s.next_poll > now + t.policy.interval)
            })
            .collect();
        for t in &due {
            if let Some(url) = &t.prometheus_url {
                if !self.prometheus.contains_key(url) {
                    match prometheus_client(url) {
                        Ok(c) => {
                            self.prometheus.insert(url.clone(), c);
                        }
                        Err(e) => tracing::warn!(url, error = %e, "invalid Prometheus URL"),
                    }
                }
            }
        }
        let polled = futures::future::join_all(due.iter().map(|t| self.poll(t))).await;
        let mut touched: BTreeMap<String, &ScaleTarget> = BTreeMap::new();
        for (t, p) in due.into_iter().zip(polled) {
            if self.act(t, p, now).await {
                touched.insert(t.resource_key(), t);
            }
        }

        // Forget what left the spec, and write each touched resource's status.
        let live: std::collections::HashSet<String> =
            targets.iter().map(ScaleTarget::key).collect();
        self.states.retain(|k, _| live.contains(k));
        for (rk, t) in touched {
            let entries = self.status_entries(t);
            let stale = self.written.get(&rk).is_none_or(|(at, old)| {
                at.elapsed() >= STATUS_REFRESH || !same_decisions(old, &entries)
            });
            if stale {
                match write_status(&self.ctx.client, t, &entries).await {
                    Ok(()) => {
                        self.written.insert(rk, (Instant::now(), entries));
                    }
                    Err(e) => {
                        tracing::warn!(resource = rk, error = %e, "failed to write autoscaling status")
                    }
                }
            }
        }
        // Resources that no longer have rules get their entries removed once.
        let resources: std::collections::HashSet<String> =
            targets.iter().map(ScaleTarget::resource_key).collect();
        let gone: Vec<String> = self
            .written
            .keys()
            .filter(|k| !resources.contains(*k))
            .cloned()
            .collect();
        for rk in gone {
            self.written.remove(&rk);
            if let Err(e) = clear_status(&self.ctx.client, &rk).await {
                tracing::debug!(resource = rk, error = %e, "failed to clear autoscaling status");
            }
        }
    }

    /// The status entries of every component of `t`'s resource.
    fn status_entries(&self, t: &ScaleTarget) -> Vec<ComponentAutoscalingStatus> {
        let prefix = format!("{}/", t.resource_key());
        let mut entries: Vec<ComponentAutoscalingStatus> = self
            .states
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(_, s)| s.status.clone())
            .collect();
        entries.sort_by(|a, b| a.component.cmp(&b.component));
        entries
    }

    /// Reads the workload's count and every rule's value.
    async fn poll(&self, t: &ScaleTarget) -> Polled {
        let started = Instant::now();
        let current = get_replicas(&self.ctx.client, t).await;
        let client = t
            .prometheus_url
            .as_ref()
            .and_then(|u| self.prometheus.get(u));
        let samples = match client {
            None => {
                let why = match &t.prometheus_url {
                    None => "no Prometheus URL: set spec.prometheusUrl or the operator's --prometheus-url".to_owned(),
                    Some(u) => format!("invalid Prometheus URL {u:?}"),
                };
                vec![Sample::Failed(why); t.policy.rules.len()]
            }
            Some(c) => {
                futures::future::join_all(t.policy.rules.iter().map(|r| query(c, &r.query))).await
            }
        };
        Polled {
            current,
            samples,
            started,
        }
    }

    /// Decides and writes one component's count; false when there was nothing to decide on.
    async fn act(&mut self, t: &ScaleTarget, polled: Polled, now: Duration) -> bool {
        let key = t.key();
        let current = match polled.current {
            Ok(Some(n)) => n,
            // The reconciler has not created the workload yet.
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(component = key, error = %e, "failed to read the scale subresource");
                return false;
            }
        };
        let state = self.states.entry(key.clone()).or_insert_with(|| State {
            history: History::new(now, current),
            next_poll: now,
            fallback: false,
            last_scale: None,
            status: None,
        });
        let decision = decide(&t.policy, current, &polled.samples, &state.history, now);
        let Decision {
            desired,
            reason,
            outcomes,
            fallback_active,
            history,
        } = decision;
        state.history = history;
        state.next_poll = now + t.policy.interval;

        let m = self.ctx.metrics.autoscaler();
        let labels = t.labels();
        let l: Vec<&str> = labels.iter().map(String::as_str).collect();
        m.current
            .with_label_values(l.as_slice())
            .set(i64::from(current));
        m.desired
            .with_label_values(l.as_slice())
            .set(i64::from(desired));
        m.fallback
            .with_label_values(l.as_slice())
            .set(i64::from(fallback_active));
        let mut rl = l.clone();
        rl.push(reason.label());
        m.decisions.with_label_values(rl.as_slice()).inc();
        if outcomes.iter().any(|(_, o)| o.is_err()) {
            m.poll_errors.with_label_values(l.as_slice()).inc();
        }
        for (rule, outcome) in &outcomes {
            if let Ok(v) = outcome {
                let mut rl = l.clone();
                rl.push(rule.as_str());
                m.value.with_label_values(rl.as_slice()).set(*v);
            }
        }

        if desired != current {
            match write_replicas(&self.ctx.client, t, desired).await {
                Ok(()) => {
                    state.last_scale = Some(Time(k8s_openapi::jiff::Timestamp::now()));
                    let mut dl = l.clone();
                    dl.push(if desired > current { "up" } else { "down" });
                    m.scales.with_label_values(dl.as_slice()).inc();
                    tracing::info!(component = key, current, desired, %reason, "scaled");
                    self.ctx
                        .publish(
                            &t.owner,
                            ACTION,
                            false,
                            "Scaled",
                            format!(
                                "{} scaled from {current} to {desired}: {reason}",
                                t.component
                            ),
                        )
                        .await;
                }
                Err(e) => {
                    tracing::warn!(component = key, desired, error = %e, "failed to write replicas");
                    self.ctx
                        .publish(
                            &t.owner,
                            ACTION,
                            true,
                            "ScaleFailed",
                            format!("failed to scale {} to {desired}: {e}", t.component),
                        )
                        .await;
                }
            }
        }
        if fallback_active != state.fallback {
            state.fallback = fallback_active;
            let (warning, event, note) = if fallback_active {
                (
                    true,
                    "AutoscalingFallback",
                    format!("{}: {reason}", t.component),
                )
            } else {
                (
                    false,
                    "AutoscalingRecovered",
                    format!("{}: the rules decide again", t.component),
                )
            };
            self.ctx
                .publish(&t.owner, ACTION, warning, event, note)
                .await;
        }
        m.poll_duration
            .observe(polled.started.elapsed().as_secs_f64());
        state.status = Some(ComponentAutoscalingStatus {
            component: t.component.clone(),
            current_replicas: current,
            desired_replicas: desired,
            values: outcomes
                .into_iter()
                .map(|(rule, o)| match o {
                    Ok(v) => RuleValue {
                        rule,
                        value: Some(v),
                        error: None,
                    },
                    Err(e) => RuleValue {
                        rule,
                        value: None,
                        error: Some(e),
                    },
                })
                .collect(),
            reason: reason.to_string(),
            fallback_active,
            consecutive_failures: i32::try_from(state.history.failures).unwrap_or(i32::MAX),
            last_scale_time: state.last_scale.clone(),
            observed_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        });
        true
    }
}

/// Whether two sets of entries differ only in their values' freshness.
fn same_decisions(a: &[ComponentAutoscalingStatus], b: &[ComponentAutoscalingStatus]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.component == y.component
                && x.current_replicas == y.current_replicas
                && x.desired_replicas == y.desired_replicas
                && x.fallback_active == y.fallback_active
                && x.consecutive_failures == y.consecutive_failures
                && x.last_scale_time == y.last_scale_time
                && x.values
                    .iter()
                    .map(|v| v.error.is_some())
                    .eq(y.values.iter().map(|v| v.error.is_some()))
        })
}

fn prometheus_client(url: &str) -> Result<prometheus_http_query::Client, String> {
    let http = reqwest::Client::builder()
        .timeout(QUERY_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    prometheus_http_query::Client::from(http, url).map_err(|e| e.to_string())
}

/// One instant query as a sample: one series or a scalar is a value; nothing is `Empty`.
async fn query(client: &prometheus_http_query::Client, promql: &str) -> Sample {
    use prometheus_http_query::response::Data;
    match client.query(promql).get().await {
        Err(e) => Sample::Failed(format!("failed to query Prometheus: {e}")),
        Ok(r) => match r.data() {
            Data::Scalar(s) => Sample::Value(s.value()),
            Data::Vector(v) => match v.as_slice() {
                [] => Sample::Empty,
                [one] => Sample::Value(one.sample().value()),
                many => Sample::Failed(format!(
                    "the query returned {} series; aggregate it to one (for example with sum())",
                    many.len()
                )),
            },
            Data::Matrix(_) => {
                Sample::Failed("the query returned a range vector; use an instant query".into())
            }
        },
    }
}

/// The workload's `spec.replicas` through the scale subresource; `None` when it does not exist.
async fn get_replicas(client: &Client, t: &ScaleTarget) -> Result<Option<i32>, kube::Error> {
    let scale = match t.workload_kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client.clone(), &t.namespace)
                .get_scale(&t.workload)
                .await
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client.clone(), &t.namespace)
                .get_scale(&t.workload)
                .await
        }
    };
    match scale {
        Ok(s) => Ok(Some(s.spec.and_then(|s| s.replicas).unwrap_or(0))),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `replicas` through the scale subresource under the autoscaler's field manager.
pub async fn write_replicas(
    client: &Client,
    t: &ScaleTarget,
    replicas: i32,
) -> Result<(), kube::Error> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let patch = Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}}));
    match t.workload_kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client.clone(), &t.namespace)
                .patch_scale(&t.workload, &params, &patch)
                .await?;
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client.clone(), &t.namespace)
                .patch_scale(&t.workload, &params, &patch)
                .await?;
        }
    }
    Ok(())
}

async fn write_status(
    client: &Client,
    t: &ScaleTarget,
    entries: &[ComponentAutoscalingStatus],
) -> Result<(), kube::Error> {
    apply_status(client, t.kind, &t.namespace, &t.name, entries).await
}

async fn clear_status(client: &Client, resource_key: &str) -> Result<(), kube::Error> {
    let mut parts = resource_key.splitn(3, '/');
    let (Some(kind), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(());
    };
    let kind = if kind == "ModelPool" {
        "ModelPool"
    } else {
        "RagCluster"
    };
    apply_status(client, kind, ns, name, &[]).await
}

/// Server-side applies `status.autoscaling` under the autoscaler's field manager.
async fn apply_status(
    client: &Client,
    kind: &str,
    ns: &str,
    name: &str,
    entries: &[ComponentAutoscalingStatus],
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "apiVersion": "ragplane.dev/v1alpha1",
        "kind": kind,
        "status": {"autoscaling": entries},
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    if kind == "ModelPool" {
        Api::<ModelPool>::namespaced(client.clone(), ns)
            .patch_status(name, &params, &Patch::Apply(&patch))
            .await?;
    } else {
        Api::<RagCluster>::namespaced(client.clone(), ns)
            .patch_status(name, &params, &Patch::Apply(&patch))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mock_client, Exchange};
    use crate::metrics::Metrics;
    use http::{Method, StatusCode};

    fn cluster() -> RagCluster {
        let mut c: RagCluster = serde_yaml::from_str(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: rc, namespace: rag, uid: uid-1}
spec:
  workers:
    - name: w
      queues: [documents]
      autoscaling:
        minReplicas: 0
        maxReplicas: 5
        rules: [{name: queue, preset: queueDepth, targetPerReplica: 5}]
        fallback: {failureThreshold: 1, onFailure: static, replicas: 3}
  redis: {urlSecretRef: {name: redis, key: url}}
"#,
        )
        .expect("valid RagCluster");
        c.metadata.namespace = Some("rag".into());
        c
    }

    #[test]
    fn targets_are_the_components_with_rules() {
        let targets = cluster_targets(&cluster(), Some("http://prom:9090"));
        assert_eq!(targets.len(), 1, "the API has fixed replicas");
        let t = &targets[0];
        assert_eq!(
            (t.component.as_str(), t.workload.as_str()),
            ("worker-w", "rc-worker-w")
        );
        assert_eq!(t.prometheus_url.as_deref(), Some("http://prom:9090"));
        assert!(t.policy.rules[0].query.contains(r#"queue=~"documents""#));
    }

    /// With no Prometheus to ask and a failure threshold of 1, the static fallback scales the
    /// pool from zero: read the scale subresource, write the new count through it under the
    /// autoscaler's field manager, publish the Events, then apply `status.autoscaling`.
    #[tokio::test]
    async fn fallback_writes_the_scale_subresource_then_status() {
        let scale = "/apis/apps/v1/namespaces/rag/deployments/rc-worker-w/scale";
        let scale_reply = |n: i32| {
            serde_json::json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": "rc-worker-w", "namespace": "rag"},
                "spec": {"replicas": n}, "status": {"replicas": n}})
        };
        let event = |reason, type_| Exchange::event(type_, reason, "rc");
        let (client, server) = mock_client(vec![
            Exchange::reply(Method::GET, scale, StatusCode::OK, scale_reply(0)),
            Exchange {
                reply: Some(scale_reply(3)),
                ..Exchange::echo(
                    Method::PATCH,
                    &format!("{scale}?&fieldManager=ragplane-autoscaler"),
                    |b| assert_eq!(b, &serde_json::json!({"spec": {"replicas": 3}})),
                )
            },
            event("Scaled", "Normal"),
            event("AutoscalingFallback", "Warning"),
            Exchange::echo(
                Method::PATCH,
                "/apis/ragplane.dev/v1alpha1/namespaces/rag/ragclusters/rc/status?&force=true&fieldManager=ragplane-autoscaler",
                |b| {
                    let e = &b["status"]["autoscaling"][0];
                    assert_eq!(e["component"], "worker-w");
                    assert_eq!((e["currentReplicas"].as_i64(), e["desiredReplicas"].as_i64()), (Some(0), Some(3)));
                    assert_eq!(e["fallbackActive"], true);
                    assert!(e["values"][0]["error"].as_str().unwrap().contains("no Prometheus URL"));
                    assert!(b["status"].get("conditions").is_none(), "only the autoscaler's field");
                },
            ),
        ]);
        let ctx = Arc::new(Context::new(
            client,
            Metrics::new(),
            crate::context::DataPlaneDefaults::new("img"),
        ));
        let mut autoscaler = Autoscaler::new(ctx.clone());
        autoscaler.tick(&cluster_targets(&cluster(), None)).await;
        server.await.expect("every expected request was made");
        let metrics = ctx.metrics.render();
        assert!(metrics.contains(r#"ragplane_operator_autoscaler_desired_replicas{component="worker-w",namespace="rag",resource="RagCluster/rc"} 3"#), "{metrics}");
        assert!(metrics.contains(r#"direction="up""#), "{metrics}");
    }
}
