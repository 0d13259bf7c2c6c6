//! Spec and status types shared by more than one custom resource.

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaimSpec, ResourceRequirements, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Replica bounds and what drives the count of one scalable component: Prometheus `rules`
/// (written by the operator through the scale subresource), or CPU/memory targets (a generated
/// HorizontalPodAutoscaler). Never both, so exactly one writer owns the replica count.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas"))]
#[x_kube(validation = Rule::new("!(has(self.rules) && size(self.rules) > 0 && (has(self.cpuUtilization) || has(self.memoryUtilization)))").message("autoscaling.rules cannot be combined with cpuUtilization or memoryUtilization: one writer owns the replica count"))]
#[x_kube(validation = Rule::new("!(has(self.cpuUtilization) || has(self.memoryUtilization)) || self.minReplicas >= 1").message("autoscaling.minReplicas must be at least 1 with cpuUtilization or memoryUtilization (a HorizontalPodAutoscaler cannot scale to zero)"))]
#[x_kube(validation = Rule::new("!has(self.fallback) || !has(self.fallback.replicas) || (self.fallback.replicas >= self.minReplicas && self.fallback.replicas <= self.maxReplicas)").message("autoscaling.fallback.replicas must lie within minReplicas and maxReplicas"))]
pub struct Autoscaling {
    /// Fewest replicas the autoscaler may set (0 allows scaling to zero).
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    /// Most replicas the autoscaler may set.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Prometheus rules; the desired count is the highest recommendation across them, each
    /// `ceil(value / targetPerReplica)` (or `ceil(current * value / targetValue)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub rules: Vec<ScalingRule>,
    /// Average CPU utilisation (percent of requests) to hold; generates a HorizontalPodAutoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub cpu_utilization: Option<i32>,
    /// Average memory utilisation (percent of requests) to hold; generates a
    /// HorizontalPodAutoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub memory_utilization: Option<i32>,
    /// Seconds between two Prometheus polls of this component's rules (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub polling_interval_seconds: Option<i32>,
    /// Stabilization windows, step limits and the cooldown before scaling to zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<ScalingBehavior>,
    /// What to do when Prometheus fails or a rule has no usable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

impl Autoscaling {
    /// Whether Prometheus rules drive this component (the operator writes its replicas).
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Whether CPU or memory targets drive this component (a generated HorizontalPodAutoscaler).
    pub fn has_resource_targets(&self) -> bool {
        self.cpu_utilization.is_some() || self.memory_utilization.is_some()
    }
}

/// One Prometheus query that drives replicas: either a PromQL `query` or a built-in `preset`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.query) != has(self.preset)").message("exactly one of query or preset must be set in an autoscaling rule"))]
#[x_kube(validation = Rule::new("has(self.targetPerReplica) != has(self.targetValue)").message("exactly one of targetPerReplica or targetValue must be set in an autoscaling rule"))]
#[x_kube(validation = Rule::new("!has(self.targetPerReplica) || self.targetPerReplica > 0.0").message("targetPerReplica must be greater than 0"))]
#[x_kube(validation = Rule::new("!has(self.targetValue) || self.targetValue > 0.0").message("targetValue must be greater than 0"))]
#[x_kube(validation = Rule::new("!has(self.activationThreshold) || self.activationThreshold >= 0.0").message("activationThreshold must be greater than or equal to 0"))]
pub struct ScalingRule {
    /// Name of the rule, unique in the component; used in Events, status and metrics.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// PromQL query returning one number (an instant vector of one series, or a scalar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// A built-in query over ragplane's own metrics, scoped to this component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// Value one replica can handle: desired replicas are `ceil(value / targetPerReplica)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_per_replica: Option<f64>,
    /// Value the whole component should hold (for example a p95 latency in seconds): desired
    /// replicas are `ceil(currentReplicas * value / targetValue)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_value: Option<f64>,
    /// The component scales from zero only when a value is above this, and to zero (when
    /// `minReplicas` is 0) only when every value is at or below it (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_threshold: Option<f64>,
    /// How an empty query result is read: `error` (the default; counts towards the fallback) or
    /// `zero`, for queries that return nothing when there is nothing to do.
    #[serde(default, skip_serializing_if = "is_default")]
    pub empty_result: EmptyResult,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Built-in rules over ragplane's own metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Preset {
    /// Worker pools: jobs waiting plus in flight in the pool's queues (`ragplane_queue_depth`).
    QueueDepth,
    /// API: requests per second (`ragplane_http_requests_total`); use `targetPerReplica`.
    RequestRate,
    /// API: p95 request latency in seconds (`ragplane_http_request_duration_seconds`); use
    /// `targetValue`.
    LatencyP95,
    /// ModelPools: requests the data plane has outstanding at the pool
    /// (`ragplane_llm_outstanding_requests`).
    OutstandingRequests,
}

/// How an empty query result is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EmptyResult {
    /// An empty result is a failed poll (never silently zero).
    #[default]
    Error,
    /// An empty result means zero.
    Zero,
}

/// Stabilization and step limits, HPA-style.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingBehavior {
    /// Scaling up (default: no window, no step limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingDirection>,
    /// Scaling down (default: a 300 s window, no step limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingDirection>,
    /// Seconds every rule must have stayed at or below its activation threshold before the
    /// component scales to zero (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_to_zero_cooldown_seconds: Option<i32>,
}

/// Window and step of one direction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingDirection {
    /// Seconds of recommendations considered: scaling down uses the highest in the window,
    /// scaling up the lowest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: Option<i32>,
    /// Most replicas added or removed by one decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_step: Option<i32>,
}

/// What to do when polls fail.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.onFailure != 'static' || has(self.replicas)").message("fallback.replicas is required when onFailure is static"))]
pub struct Fallback {
    /// Consecutive failed polls before the fallback applies (default 3).
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1))]
    pub failure_threshold: i32,
    /// `keepCurrent` holds the current count (within the bounds); `static` sets `replicas`, from
    /// zero too.
    #[serde(default)]
    pub on_failure: FallbackMode,
    /// Replicas while the fallback is active with `onFailure: static`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
}

fn default_failure_threshold() -> i32 {
    3
}

/// The fallback's action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FallbackMode {
    /// Keep the current replica count, clamped to the bounds.
    #[default]
    KeepCurrent,
    /// Set `fallback.replicas`.
    Static,
}

/// What the autoscaler last decided for one component; written only by the autoscaler.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentAutoscalingStatus {
    /// Component: `api`, `worker-<pool>` or `model-server`.
    pub component: String,
    /// Replicas read from the scale subresource at the last poll.
    pub current_replicas: i32,
    /// Replicas the last decision asked for.
    pub desired_replicas: i32,
    /// The last value of each rule; absent for a rule whose poll failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<RuleValue>,
    /// Why the last decision came out as it did.
    pub reason: String,
    /// Whether the fallback replaced the rules' recommendation.
    pub fallback_active: bool,
    /// Consecutive failed polls.
    pub consecutive_failures: i32,
    /// When the autoscaler last changed the replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// When the values above were read. While only values change, the entry is rewritten at
    /// most once a minute; any change of decision is written at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_time: Option<Time>,
}

/// One rule's value at the last poll.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleValue {
    /// Rule name.
    pub rule: String,
    /// Value returned by Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Why there is no value, when the poll failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A key in a Secret in the resource's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// A persistent volume request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the volume, for example `20Gi`.
    pub size: String,
    /// Storage class; the cluster default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl StorageSpec {
    /// The spec of a claim of this size and class with one access mode.
    pub fn claim_spec(&self, access_mode: &str) -> PersistentVolumeClaimSpec {
        PersistentVolumeClaimSpec {
            access_modes: Some(vec![access_mode.into()]),
            storage_class_name: self.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), Quantity(self.size.clone()))].into()),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }
    }
}

/// Container resources; a thin alias so every CRD documents them the same way.
pub type Resources = ResourceRequirements;

/// Status conditions shared by every kind: `Ready`, `Progressing` and `Degraded`.
pub type Conditions = Vec<Condition>;
