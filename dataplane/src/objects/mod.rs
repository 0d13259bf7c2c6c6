//! Object store for original documents: the [`ObjectStore`] trait and the local-directory
//! implementation. Keys look like `tenant/collection/document`.

pub mod local;

use async_trait::async_trait;
use bytes::Bytes;

pub use local::LocalStore;

/// Errors of an object store.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No object under the key.
    #[error("object {0} does not exist")]
    NotFound(String),
    /// The key is not a safe relative path.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// The storage failed.
    #[error("failed to {action} object {key}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The key.
        key: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result alias for object store operations.
pub type Result<T, E = ObjectError> = std::result::Result<T, E>;

/// Stores document originals.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Stores `body` under `key`, replacing any previous object, atomically.
    async fn put(&self, key: &str, body: Bytes) -> Result<()>;
    /// Reads the object under `key`.
    async fn get(&self, key: &str) -> Result<Bytes>;
    /// Removes the object; a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Removes every object whose key starts with `prefix/`.
    async fn delete_prefix(&self, prefix: &str) -> Result<()>;
    /// Whether the store is reachable.
    async fn ping(&self) -> Result<()>;
}

/// Checks that a key is a relative path of plain segments.
pub fn validate_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(ObjectError::InvalidKey(key.to_string()))
    }
}
