//! The API Service.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::rag_cluster::validate::ValidatedCluster;

/// `<name>-api`, ClusterIP, port `spec.api.port` to the pods' `http` port.
pub fn build_api_service(c: &ValidatedCluster) -> Service {
    Service {
        metadata: super::meta(c, c.child("api"), "api"),
        spec: Some(ServiceSpec {
            selector: Some(labels::selector("ragplane", &c.name, "api")),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: c.api_port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag_cluster::build::test_support::validated;

    #[test]
    fn service_selects_api_pods_on_the_spec_port() {
        let s = build_api_service(&validated(
            "apiVersion: ragplane.dev/v1alpha1\nkind: RagCluster\nmetadata: {name: x}\nspec: {api: {port: 80}}\n",
        ));
        let spec = s.spec.unwrap();
        assert_eq!(spec.ports.unwrap()[0].port, 80);
        assert_eq!(spec.selector.unwrap()["app.kubernetes.io/component"], "api");
    }
}
