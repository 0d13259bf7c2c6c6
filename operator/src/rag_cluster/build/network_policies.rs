//! NetworkPolicies, when `spec.networkPolicy.enabled`: only this cluster's data plane (API and
//! workers) reaches its managed Qdrant and the ModelPools it calls.
//!
//! - `<name>-qdrant`: the peers take the data plane's REST and gRPC calls, each other's traffic
//!   (Raft, shard transfers), and the operator's gRPC calls (the Collection controller).
//! - `<name>-to-<pool>`: a ModelPool's servers take the data plane's calls on their port. A pool
//!   shared by several clusters gets one policy from each; NetworkPolicies add up.
//!
//! `allowFrom` peers are let in on every port of every policy. The policies restrict ingress
//! only, and only where the CNI enforces them.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::rag_cluster::validate::{QdrantMode, ValidatedCluster};

/// Name of the policy guarding ModelPool `pool` for `cluster`.
pub fn pool_policy_name(cluster: &str, pool: &str) -> String {
    format!("{cluster}-to-{pool}")
}

fn selecting(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..LabelSelector::default()
    }
}

/// This cluster's API and worker pods.
fn data_plane(c: &ValidatedCluster) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(selecting(BTreeMap::from([
            (labels::NAME.to_owned(), "ragplane".to_owned()),
            (labels::INSTANCE.to_owned(), c.name.clone()),
        ]))),
        ..NetworkPolicyPeer::default()
    }
}

fn ports(numbers: &[i32]) -> Vec<NetworkPolicyPort> {
    numbers
        .iter()
        .map(|p| NetworkPolicyPort {
            port: Some(IntOrString::Int(*p)),
            protocol: Some("TCP".into()),
            ..NetworkPolicyPort::default()
        })
        .collect()
}

fn policy(
    c: &ValidatedCluster,
    name: String,
    pods: BTreeMap<String, String>,
    mut ingress: Vec<NetworkPolicyIngressRule>,
    allow_from: &[NetworkPolicyPeer],
) -> NetworkPolicy {
    if !allow_from.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(allow_from.to_vec()),
            ports: None,
        });
    }
    NetworkPolicy {
        metadata: super::meta(c, name, "network-policy"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selecting(pods)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// Every policy `c` asks for; none when they are off.
pub fn build_network_policies(c: &ValidatedCluster) -> Vec<NetworkPolicy> {
    let Some(allow_from) = &c.network_policy else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let QdrantMode::Managed(_) = c.qdrant {
        let peers = labels::selector("qdrant", &c.name, "qdrant");
        let operator = NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector::default()),
            pod_selector: Some(selecting(BTreeMap::from([(
                labels::NAME.to_owned(),
                "ragplane-operator".to_owned(),
            )]))),
            ..NetworkPolicyPeer::default()
        };
        let ingress = vec![
            NetworkPolicyIngressRule {
                from: Some(vec![data_plane(c)]),
                ports: Some(ports(&[6333, 6334])),
            },
            NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(selecting(peers.clone())),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: None,
            },
            // The operator: gRPC for collections, REST for the peer list.
            NetworkPolicyIngressRule {
                from: Some(vec![operator]),
                ports: Some(ports(&[6333, 6334])),
            },
        ];
        out.push(policy(c, c.child("qdrant"), peers, ingress, allow_from));
    }
    for (pool, port) in &c.model_pools {
        let servers = labels::selector("ragplane-model-server", pool, "model-server");
        let ingress = vec![NetworkPolicyIngressRule {
            from: Some(vec![data_plane(c)]),
            ports: Some(ports(&[*port])),
        }];
        out.push(policy(
            c,
            pool_policy_name(&c.name, pool),
            servers,
            ingress,
            allow_from,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag_cluster::build::test_support::validated;

    #[test]
    fn off_unless_enabled() {
        let c = validated("apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: prod}\nspec: {qdrant: {managed: {replicas: 3}}}\n");
        assert!(build_network_policies(&c).is_empty());
    }

    #[test]
    fn only_the_data_plane_peers_and_the_operator_reach_qdrant() {
        let mut c = validated("apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: prod}\nspec: {qdrant: {managed: {replicas: 3}}, networkPolicy: {enabled: true, allowFrom: [{namespaceSelector: {matchLabels: {name: monitoring}}}]}}\n");
        c.model_pools = vec![("llm".into(), 11434)];
        let built = build_network_policies(&c);
        let names: Vec<_> = built
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["prod-qdrant", "prod-to-llm"]);
        let q = built[0].spec.clone().unwrap();
        assert_eq!(
            q.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/name"],
            "qdrant"
        );
        let rules = q.ingress.unwrap();
        // Data plane on REST and gRPC, peers on every port, the operator on gRPC, allowFrom.
        assert_eq!(rules.len(), 4);
        let dp = rules[0].from.as_ref().unwrap()[0]
            .pod_selector
            .clone()
            .unwrap();
        assert_eq!(
            dp.match_labels.unwrap()["app.kubernetes.io/instance"],
            "prod"
        );
        assert!(rules[1].ports.is_none());
        assert!(rules[3].from.as_ref().unwrap()[0]
            .namespace_selector
            .is_some());
        let llm = built[1].spec.clone().unwrap();
        assert_eq!(
            llm.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
            "llm"
        );
        assert_eq!(
            llm.ingress.unwrap()[0].ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(11434))
        );
    }
}
