//! The domain error of the data plane. Every backend error converts into it, and the HTTP
//! layer maps it to a status code in exactly one place (`api::error`).

use crate::embed::EmbedError;
use crate::generate::GenerateError;
use crate::metadata::MetadataError;
use crate::objects::ObjectError;
use crate::queue::QueueError;
use crate::vectors::VectorError;

/// What went wrong while serving a request or running a job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing does not exist, or belongs to another tenant (never told apart).
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Kind of thing.
        kind: &'static str,
        /// Its name or id.
        name: String,
    },
    /// The name is taken.
    #[error("{kind} {name:?} already exists")]
    Conflict {
        /// Kind of thing.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A field is invalid.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// Field name.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The request could not be read at all.
    #[error("{0}")]
    BadRequest(String),
    /// The path does not take the request's method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body is larger than allowed.
    #[error("request body too large: {0}")]
    TooLarge(String),
    /// The media type is not supported.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No or an unknown API key.
    #[error("{0}")]
    Unauthorized(String),
    /// The key may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too much work queued; retry after the given seconds.
    #[error("{message}")]
    Overloaded {
        /// What is overloaded.
        message: String,
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// The caller's API key is over its rate limit.
    #[error("{message}")]
    RateLimited {
        /// What was exceeded.
        message: String,
        /// Seconds until a request would be allowed.
        retry_after_secs: u64,
    },
    /// A dependency is down; retry after the given seconds.
    #[error("{message}")]
    Unavailable {
        /// What is unavailable.
        message: String,
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// A server the data plane depends on (a remote embedding server) refused its request or
    /// answered with something unusable.
    #[error("{0}")]
    BadGateway(String),
    /// A collection's vectors come from another embedding model than the configured one.
    #[error("{0}")]
    ModelMismatch(String),
    /// This process embeds with the model a collection is switching away from, and the work
    /// needs the model it is switching to: another process (during a rollout, one that
    /// replaces this one) can do it.
    #[error("{0}")]
    OutdatedModel(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

/// Result alias for data-plane operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            name: name.into(),
        }
    }

    /// Whether retrying the same work later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Overloaded { .. }
                | Self::Unavailable { .. }
                | Self::BadGateway(_)
                | Self::Internal(_)
        )
    }
}

impl From<MetadataError> for Error {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::Conflict { kind, name } => Self::Conflict { kind, name },
            MetadataError::Unavailable { .. } => Self::Unavailable {
                message: e.to_string(),
                retry_after_secs: 2,
            },
            MetadataError::Database {
                source: sqlx::Error::PoolTimedOut | sqlx::Error::Io(_),
                ..
            } => Self::Unavailable {
                message: e.to_string(),
                retry_after_secs: 2,
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<QueueError> for Error {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Redis { ref source, .. }
                if source.is_io_error()
                    || source.is_timeout()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal() =>
            {
                Self::Unavailable {
                    message: e.to_string(),
                    retry_after_secs: 2,
                }
            }
            QueueError::UnknownQueue(_) => Self::invalid("queue", e.to_string()),
            QueueError::UnknownJob(id) => Self::not_found("job", id),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<ObjectError> for Error {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::NotFound(key) => Self::not_found("object", key),
            ObjectError::Unavailable { .. } => Self::Unavailable {
                message: e.to_string(),
                retry_after_secs: 2,
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<VectorError> for Error {
    fn from(e: VectorError) -> Self {
        match e {
            VectorError::Unavailable { .. } => Self::Unavailable {
                message: e.to_string(),
                retry_after_secs: 2,
            },
            VectorError::Unsupported { .. } => Self::invalid("mode", e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<EmbedError> for Error {
    fn from(e: EmbedError) -> Self {
        match e {
            EmbedError::Overloaded { .. } => Self::Overloaded {
                message: e.to_string(),
                retry_after_secs: 1,
            },
            EmbedError::Stopped | EmbedError::RemoteUnavailable(_) => Self::Unavailable {
                message: e.to_string(),
                retry_after_secs: 5,
            },
            EmbedError::RemoteOverloaded(_) => Self::Overloaded {
                message: e.to_string(),
                retry_after_secs: 1,
            },
            EmbedError::RemoteRejected(_) => Self::BadGateway(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<GenerateError> for Error {
    fn from(e: GenerateError) -> Self {
        match e {
            GenerateError::Busy {
                retry_after_secs, ..
            } => Self::Overloaded {
                message: e.to_string(),
                retry_after_secs,
            },
            GenerateError::NoHealthyEndpoint {
                retry_after_secs, ..
            } => Self::Unavailable {
                message: e.to_string(),
                retry_after_secs,
            },
            _ => Self::Unavailable {
                message: e.to_string(),
                retry_after_secs: 5,
            },
        }
    }
}
