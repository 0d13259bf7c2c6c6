//! The ConfigMap holding the rendered data-plane config.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use crate::rag_cluster::validate::{ValidatedCluster, CONFIG_FILE};

/// `<name>-config` with `ragplane.toml`.
pub fn build_config_map(c: &ValidatedCluster) -> ConfigMap {
    ConfigMap {
        metadata: super::meta(c, c.child("config"), "config"),
        data: Some(BTreeMap::from([(
            CONFIG_FILE.to_owned(),
            c.config_toml.clone(),
        )])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag_cluster::build::test_support::validated;

    #[test]
    fn renders_config_the_data_plane_parses() {
        let c = validated(
            r#"
apiVersion: ragplane.dev/v1alpha1
kind: RagCluster
metadata: {name: dev}
spec:
  logFilter: debug
  traces: {endpoint: "http://jaeger.observability:4318", protocol: http/protobuf, sampleRatio: 0.25}
  workers: [{name: ingest, queues: [documents]}]
  redis: {urlSecretRef: {name: redis, key: url}}
"#,
        );
        let cm = build_config_map(&c);
        assert_eq!(cm.metadata.name.as_deref(), Some("dev-config"));
        let text = &cm.data.as_ref().unwrap()["ragplane.toml"];
        let parsed: ragplane_config::Config = toml::from_str(text).expect("data plane parses it");
        parsed.validate().unwrap();
        assert_eq!(parsed.server.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(
            parsed.data_dir,
            std::path::PathBuf::from("/var/lib/ragplane")
        );
        assert_eq!(parsed.telemetry.log_filter, "debug");
        assert_eq!(
            parsed.telemetry.traces.endpoint.as_deref(),
            Some("http://jaeger.observability:4318")
        );
        assert_eq!(
            parsed.telemetry.traces.protocol,
            Some(ragplane_config::OtlpProtocol::HttpProtobuf)
        );
        assert_eq!(parsed.telemetry.traces.sample_ratio, Some(0.25));
        assert!(
            !parsed.workers.enabled,
            "API pods leave the queues to the worker pools"
        );
        let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("RagCluster", "dev", Some(true))
        );
    }
}
