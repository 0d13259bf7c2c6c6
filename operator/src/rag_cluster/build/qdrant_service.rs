//! The headless Service of a managed Qdrant: peer discovery and client access.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::rag_cluster::validate::{qdrant_service_name, ValidatedCluster};

/// `<name>-qdrant`, headless, publishing not-ready peers so they can find each other at bootstrap.
pub fn build_qdrant_service(c: &ValidatedCluster) -> Service {
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    Service {
        metadata: super::meta(c, qdrant_service_name(&c.name), "qdrant"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels::selector("qdrant", &c.name, "qdrant")),
            ports: Some(vec![
                port("http", 6333),
                port("grpc", 6334),
                port("p2p", 6335),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
