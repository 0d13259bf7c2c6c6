//! What every reconciler shares: the client, the Event recorder, metrics and per-object backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};

use crate::error::Error;
use crate::metrics::Metrics;

/// The data-plane image and version of RagClusters that name none.
#[derive(Clone, Debug, PartialEq)]
pub struct DataPlaneDefaults {
    /// Image repository; the tag is the cluster's version.
    pub image: String,
    /// Version a new cluster takes when its spec sets none.
    pub version: String,
}

impl DataPlaneDefaults {
    /// `image` at the operator's own version.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Qdrant gRPC clients by server URL and API key.
type QdrantClients = HashMap<(String, Option<String>), Arc<qdrant_client::Qdrant>>;

/// Shared state of the controllers.
#[derive(Clone)]
pub struct Context {
    /// API client.
    pub client: Client,
    /// Event recorder, reporting as `ragplane-operator`.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Metrics,
    /// What a RagCluster's pods run when its spec does not say.
    pub data_plane: DataPlaneDefaults,
    /// How long one reconcile may run before it is dropped and retried as a transient error.
    pub reconcile_timeout: Duration,
    /// HTTP client for Qdrant's REST API, one connection pool for every reconcile.
    pub http: reqwest::Client,
    /// gRPC clients of the Qdrant servers reconciled so far, by URL and API key, so that each
    /// reconcile reuses a server's connections.
    qdrant: Arc<Mutex<QdrantClients>>,
    failures: Arc<Mutex<HashMap<String, u32>>>,
}

/// Default of [`Context::reconcile_timeout`]: a healthy reconcile takes milliseconds, and the
/// API server gives up on a request after 60 s, so a hung call is cut well before that.
pub const DEFAULT_RECONCILE_TIMEOUT: Duration = Duration::from_secs(30);

impl Context {
    /// A context for `client`.
    pub fn new(client: Client, metrics: Metrics, data_plane: DataPlaneDefaults) -> Self {
        let reporter = Reporter {
            controller: crate::apply::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            data_plane,
            reconcile_timeout: DEFAULT_RECONCILE_TIMEOUT,
            http: reqwest::Client::new(),
            qdrant: Arc::default(),
            failures: Arc::default(),
        }
    }

    /// The gRPC client of the Qdrant server at `url`, made on first use.
    pub fn qdrant(
        &self,
        url: &str,
        api_key: Option<String>,
    ) -> crate::error::Result<Arc<qdrant_client::Qdrant>> {
        let mut clients = self.qdrant.lock().unwrap_or_else(|e| e.into_inner());
        let key = (url.to_owned(), api_key);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = Arc::new(crate::collection::qdrant::connect(url, key.1.clone())?);
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The same context with another reconcile deadline.
    #[must_use]
    pub fn with_reconcile_timeout(mut self, timeout: Duration) -> Self {
        self.reconcile_timeout = timeout;
        self
    }

    /// Publishes an Event about `object` from a reconcile; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        self.publish(&object.object_ref(&()), "Reconcile", warning, reason, note)
            .await;
    }

    /// Publishes an Event about `regarding` for `action`; failures are logged, never fatal.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        action: &str,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(%error, reason, "failed to publish an Event");
        }
    }

    /// Backoff for the next retry of `key` after a transient error: 1 s doubling up to 5 min.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_owned()).or_default();
        *n = n.saturating_add(1);
        let secs = 1u64 << (*n - 1).min(9);
        Duration::from_secs(secs.min(300))
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn reset_backoff(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }

    /// Records a reconcile error in the metrics, and what the controller should do next.
    pub fn on_error(
        &self,
        kind: &str,
        key: &str,
        error: &Error,
    ) -> kube::runtime::controller::Action {
        self.metrics.failure(kind, error.metric_label());
        if error.is_permanent() {
            tracing::warn!(kind, key, %error, "reconcile failed; waiting for a spec change");
            kube::runtime::controller::Action::await_change()
        } else {
            let delay = self.backoff(key);
            tracing::info!(kind, key, %error, ?delay, "reconcile failed; retrying");
            kube::runtime::controller::Action::requeue(delay)
        }
    }
}

/// `Kind/namespace/name`: the key of an object's backoff state and log lines.
pub fn object_key<K: Resource>(kind: &str, obj: &K) -> String {
    format!(
        "{kind}/{}/{}",
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}
