//! Built-in rules: PromQL over ragplane's own metrics, scoped to one component.
//!
//! The queries assume the data-plane pods are scraped with their Kubernetes labels carried over
//! the way the Prometheus Operator's `podTargetLabels` does it (the chart's PodMonitor), so a
//! series has `namespace`, `app_kubernetes_io_instance` (the RagCluster) and
//! `app_kubernetes_io_component` (`api`, `worker`) labels.

use crate::crd::common::Preset;

/// The component a preset is expanded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// A RagCluster's API.
    Api {
        /// Namespace.
        namespace: &'a str,
        /// RagCluster name.
        cluster: &'a str,
    },
    /// A RagCluster's worker pool.
    Worker {
        /// Namespace.
        namespace: &'a str,
        /// RagCluster name.
        cluster: &'a str,
        /// Queues the pool consumes; every queue when empty.
        queues: &'a [String],
    },
    /// A ModelPool, by the URL of its Service.
    ModelPool {
        /// Namespace.
        namespace: &'a str,
        /// ModelPool name (the Service name).
        name: &'a str,
    },
}

/// The PromQL of `preset` for `scope`, or why the preset does not apply there.
pub fn expand(preset: Preset, scope: Scope<'_>) -> Result<String, String> {
    match (preset, scope) {
        // Every data-plane process of the cluster may report the shared queues, and a pool at
        // zero replicas reports nothing itself: take the highest report per queue across the
        // whole cluster, then add the pool's queues up.
        (
            Preset::QueueDepth,
            Scope::Worker {
                namespace,
                cluster,
                queues,
            },
        ) => {
            let mut matchers = cluster_matchers(namespace, cluster);
            if !queues.is_empty() {
                let alternatives: Vec<String> = queues.iter().map(|q| regex_escape(q)).collect();
                matchers.push_str(&format!(",queue=~\"{}\"", alternatives.join("|")));
            }
            Ok(format!(
                "sum(max by (queue) (ragplane_queue_depth{{{matchers}}}))"
            ))
        }
        (Preset::RequestRate, Scope::Api { namespace, cluster }) => {
            let m = api_matchers(namespace, cluster);
            Ok(format!(
                "sum(rate(ragplane_http_requests_total{{{m}}}[1m]))"
            ))
        }
        // With no traffic the quantile is NaN; report 0 then, but only while the API's series
        // exist, so missing metrics stay an error.
        (Preset::LatencyP95, Scope::Api { namespace, cluster }) => {
            let m = api_matchers(namespace, cluster);
            Ok(format!(
                "(histogram_quantile(0.95, sum by (le) (rate(ragplane_http_request_duration_seconds_bucket{{{m}}}[1m]))) >= 0) \
                 or (sum(rate(ragplane_http_request_duration_seconds_count{{{m}}}[1m])) == 0)"
            ))
        }
        // The data plane labels outstanding requests with the endpoint URL it calls: each
        // Ollama server by name (`http://<pool>-<i>.<pool>-pods.<namespace>.svc:<port>`), or
        // the pool's Service (`http://<pool>.<namespace>.svc:<port>`, `/v1` for OpenAI).
        (Preset::OutstandingRequests, Scope::ModelPool { namespace, name }) => Ok(format!(
            "sum(ragplane_llm_outstanding_requests{{namespace=\"{}\",endpoint=~\"https?://{name}(-[0-9]+\\\\.{name}-pods)?\\\\.{}\\\\.svc(\\\\.cluster\\\\.local)?(:[0-9]+)?(/.*)?\"}})",
            label_escape(namespace),
            regex_escape(namespace),
            name = regex_escape(name),
        )),
        (preset, scope) => Err(format!(
            "preset {} does not apply to {}",
            preset_name(preset),
            match scope {
                Scope::Api { .. } => "the API (use requestRate or latencyP95)",
                Scope::Worker { .. } => "a worker pool (use queueDepth)",
                Scope::ModelPool { .. } => "a ModelPool (use outstandingRequests)",
            }
        )),
    }
}

/// Whether `preset` compares against a whole-component value (`targetValue`) rather than a
/// per-replica one.
pub fn wants_target_value(preset: Preset) -> bool {
    matches!(preset, Preset::LatencyP95)
}

/// The preset's name as written in the spec.
pub fn preset_name(preset: Preset) -> &'static str {
    match preset {
        Preset::QueueDepth => "queueDepth",
        Preset::RequestRate => "requestRate",
        Preset::LatencyP95 => "latencyP95",
        Preset::OutstandingRequests => "outstandingRequests",
    }
}

fn cluster_matchers(namespace: &str, cluster: &str) -> String {
    format!(
        "namespace=\"{}\",app_kubernetes_io_instance=\"{}\"",
        label_escape(namespace),
        label_escape(cluster)
    )
}

/// The API's series, probes and scrapes left out: a saturated pod's kubelet and Prometheus
/// traffic is not load to scale on.
fn api_matchers(namespace: &str, cluster: &str) -> String {
    format!(
        "{},app_kubernetes_io_component=\"api\",route!~\"/healthz|/readyz|/metrics\"",
        cluster_matchers(namespace, cluster)
    )
}

/// A value inside a double-quoted PromQL string.
fn label_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A literal inside a PromQL regex matcher (RE2 in a double-quoted string).
fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            // One backslash for RE2, escaped once more for the PromQL string.
            out.push_str("\\\\");
        } else if c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_select_the_components_own_series() {
        let queues = vec!["documents".to_owned(), "embed.v2".to_owned()];
        let q = expand(
            Preset::QueueDepth,
            Scope::Worker {
                namespace: "rag",
                cluster: "prod",
                queues: &queues,
            },
        )
        .unwrap();
        assert_eq!(
            q,
            r#"sum(max by (queue) (ragplane_queue_depth{namespace="rag",app_kubernetes_io_instance="prod",queue=~"documents|embed\\.v2"}))"#
        );
        let api = Scope::Api {
            namespace: "rag",
            cluster: "prod",
        };
        let rps = expand(Preset::RequestRate, api).unwrap();
        assert!(
            rps.contains(r#"app_kubernetes_io_component="api""#),
            "{rps}"
        );
        assert!(expand(Preset::LatencyP95, api)
            .unwrap()
            .starts_with("(histogram_quantile(0.95, sum by (le)"));
        let llm = expand(
            Preset::OutstandingRequests,
            Scope::ModelPool {
                namespace: "rag",
                name: "llm",
            },
        )
        .unwrap();
        assert!(
            llm.contains(r#"endpoint=~"https?://llm(-[0-9]+\\.llm-pods)?\\.rag\\.svc"#),
            "{llm}"
        );
        assert!(
            rps.contains(r#"route!~"/healthz|/readyz|/metrics""#),
            "probes and scrapes are not load: {rps}"
        );
        assert!(expand(Preset::QueueDepth, api)
            .unwrap_err()
            .contains("does not apply to the API"));
    }
}
