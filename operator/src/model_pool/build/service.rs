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
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: p.port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
