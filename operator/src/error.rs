//! Reconcile errors, split into permanent ones (wait for a spec change) and transient ones (retry
//! with backoff). Each variant's name is its metric and Event label.

/// A reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be turned into objects; only a spec change helps.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A referenced object (ModelPool, RagCluster, Secret) does not exist yet.
    #[error("failed to find {kind} {name:?}")]
    MissingReference {
        /// Kind of the missing object.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// An API server call failed.
    #[error("failed to {action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A Qdrant call failed.
    #[error("failed to {action} in Qdrant: {message}")]
    Qdrant {
        /// What was being done.
        action: String,
        /// The client error, as text.
        message: String,
    },
    /// The finalizer machinery failed.
    #[error("finalizer failed: {0}")]
    Finalizer(String),
    /// The reconcile ran past the operator's deadline: an API server or Qdrant call hung. The
    /// pipeline is idempotent, so it is dropped where it stood and retried.
    #[error("reconcile took longer than {}s", .0.as_secs_f64())]
    Timeout(std::time::Duration),
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an API error with what was being done.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }

    /// Whether retrying without a spec change is pointless.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::InvalidSpec(_) => true,
            // The API server rejected what we sent (schema, immutable field): retrying the same
            // body fails the same way.
            Self::Kube {
                source: kube::Error::Api(status),
                ..
            } => status.code == 400 || status.code == 422,
            Self::MissingReference { .. }
            | Self::Kube { .. }
            | Self::Qdrant { .. }
            | Self::Finalizer(_)
            | Self::Timeout(_) => false,
        }
    }

    /// Every value of [`Error::metric_label`], so that the error counters can start at zero.
    pub const METRIC_LABELS: [&'static str; 6] = [
        "InvalidSpec",
        "MissingReference",
        "KubeError",
        "QdrantError",
        "FinalizerError",
        "Timeout",
    ];

    /// The variant name, used as metric label and Event reason.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::MissingReference { .. } => "MissingReference",
            Self::Kube { .. } => "KubeError",
            Self::Qdrant { .. } => "QdrantError",
            Self::Finalizer(_) => "FinalizerError",
            Self::Timeout(_) => "Timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_and_transient_errors_are_told_apart() {
        assert!(Error::InvalidSpec("x".into()).is_permanent());
        let missing = Error::MissingReference {
            kind: "ModelPool",
            name: "llm".into(),
        };
        assert!(!missing.is_permanent());
        assert_eq!(missing.metric_label(), "MissingReference");
        assert!(Error::METRIC_LABELS.contains(&missing.metric_label()));
        assert!(Error::METRIC_LABELS.contains(&Error::InvalidSpec("x".into()).metric_label()));
        let qdrant = Error::Qdrant {
            action: "create".into(),
            message: "unavailable".into(),
        };
        assert!(!qdrant.is_permanent());
    }
}
