//! The Service in front of a ModelPool.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model_pool::validate::ValidatedPool;

/// `<pool>`: ClusterIP on the server's port.
pub fn build_service(p: &ValidatedPool) -> Service {
    Service {
        metadata: super::meta(p, p.name.clone()),
        spec: Some(ServiceSpec {
            selector: Some(super::selector(p)),
            ports: Some(ports(p)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The headless Service that governs an Ollama StatefulSet: each pod gets a stable DNS name,
/// `<pool>-<i>.<pool>-pods.<namespace>.svc`.
pub fn headless_name(pool: &str) -> String {
    format!("{pool}-pods")
}

/// `<pool>-pods`: headless (no cluster IP), the StatefulSet's `serviceName`. It publishes pods
/// before they are Ready: the data plane health-checks each server itself and keeps it out of
/// rotation until it answers, and a name looked up before its pod is Ready would otherwise be
/// cached as missing by cluster DNS (30 s in kubeadm's CoreDNS), keeping a ready server unused.
pub fn build_headless_service(p: &ValidatedPool) -> Service {
    Service {
        metadata: super::meta(p, headless_name(&p.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(super::selector(p)),
            ports: Some(ports(p)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn ports(p: &ValidatedPool) -> Vec<ServicePort> {
    vec![ServicePort {
        name: Some("http".into()),
        port: p.port,
        target_port: Some(IntOrString::String("http".into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }]
}
