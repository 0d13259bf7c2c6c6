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

/// `<pool>-pods`: headless (no cluster IP), the StatefulSet's `serviceName`.
pub fn build_headless_service(p: &ValidatedPool) -> Service {
    Service {
        metadata: super::meta(p, headless_name(&p.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
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
