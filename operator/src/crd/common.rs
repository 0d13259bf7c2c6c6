//! Spec and status types shared by more than one custom resource.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Replica bounds and Prometheus rules for one scalable component.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas"))]
pub struct Autoscaling {
    /// Fewest replicas the autoscaler may set (0 allows scaling to zero).
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    /// Most replicas the autoscaler may set.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Prometheus rules; the desired count is the highest `ceil(value / targetPerReplica)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<ScalingRule>,
}

/// One Prometheus query that drives replicas.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRule {
    /// Name of the rule, used in Events and status.
    pub name: String,
    /// PromQL query returning one number.
    pub query: String,
    /// Value one replica can handle.
    pub target_per_replica: f64,
    /// Value below which the component may scale to zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_threshold: Option<f64>,
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

/// Container resources; a thin alias so every CRD documents them the same way.
pub type Resources = ResourceRequirements;

/// Status conditions shared by every kind: `Ready`, `Progressing` and `Degraded`.
pub type Conditions = Vec<Condition>;
