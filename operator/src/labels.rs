//! Labels and names shared by every object the operator creates.

use std::collections::BTreeMap;

/// Label naming who manages an object.
pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
/// Value of `app.kubernetes.io/managed-by` on every child.
pub const MANAGED_BY: &str = "ragplane-operator";
/// Label naming the component (`api`, `worker`, `qdrant`, `config`, `model-server`).
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// Label naming the owning resource.
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// Label naming the application.
pub const NAME: &str = "app.kubernetes.io/name";
/// Label naming a worker pool.
pub const WORKER_POOL: &str = "ragplane.dev/worker-pool";
/// Pod-template annotation holding a hash of the rendered config, so a config change rolls pods.
pub const CONFIG_HASH: &str = "ragplane.dev/config-hash";
/// Pod-template annotation holding a hash of the Secrets the pods read, so a rotated Secret rolls
/// them.
pub const SECRETS_HASH: &str = "ragplane.dev/secrets-hash";

/// Labels that select the pods of one component of one owner. Never change these for an existing
/// object: a Deployment's selector is immutable.
pub fn selector(app: &str, instance: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_owned(), app.to_owned()),
        (INSTANCE.to_owned(), instance.to_owned()),
        (COMPONENT.to_owned(), component.to_owned()),
    ])
}

/// Label selector matching every child of this operator.
pub fn managed() -> String {
    format!("{MANAGED_BY_KEY}={MANAGED_BY}")
}

/// Selector labels plus `managed-by` and the version.
pub fn object(
    app: &str,
    instance: &str,
    component: &str,
    version: &str,
) -> BTreeMap<String, String> {
    let mut labels = selector(app, instance, component);
    labels.insert(MANAGED_BY_KEY.into(), MANAGED_BY.into());
    labels.insert("app.kubernetes.io/part-of".into(), "ragplane".into());
    if !version.is_empty() {
        labels.insert("app.kubernetes.io/version".into(), sanitize_label(version));
    }
    labels
}

/// A label value from free text: at most 63 characters of `[A-Za-z0-9._-]`, trimmed to start and
/// end alphanumerically.
pub fn sanitize_label(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_sanitized() {
        assert_eq!(sanitize_label("ghcr.io/x:0.1.0"), "ghcr.io_x_0.1.0");
        assert_eq!(sanitize_label("llama3.1:8b"), "llama3.1_8b");
        assert_eq!(sanitize_label(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn the_children_selector_matches_the_children_labels() {
        let labels = object("ragplane", "rc", "api", "0.1.0");
        let selector = managed();
        let (key, value) = selector.split_once('=').unwrap();
        assert_eq!(labels.get(key).map(String::as_str), Some(value));
    }
}
