//! Object store for original documents: the [`ObjectStore`] trait, the local-directory
//! implementation and the S3 one. Keys look like `tenant/collection/document`.

pub mod local;
pub mod s3;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use local::LocalStore;
pub use s3::S3Store;

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
    /// The configured bucket does not exist.
    #[error("S3 bucket {bucket:?} does not exist at {endpoint}")]
    BucketNotFound {
        /// The bucket.
        bucket: String,
        /// Where it was looked for.
        endpoint: String,
    },
    /// The server refused the credentials (unknown key, wrong secret, or no permission).
    #[error("S3 refused the credentials for bucket {bucket:?} ({code}): check the access key, the secret key and the bucket policy")]
    Credentials {
        /// The bucket.
        bucket: String,
        /// The server's error code, for example `InvalidAccessKeyId` or `SignatureDoesNotMatch`.
        code: String,
    },
    /// The store cannot be reached or is overloaded; retrying later may succeed.
    #[error("failed to {action} object {key}: the object store is unavailable: {message}")]
    Unavailable {
        /// What was being done.
        action: &'static str,
        /// The key.
        key: String,
        /// The underlying error.
        message: String,
    },
    /// The private CA configured for the store cannot be used.
    #[error(transparent)]
    CaFile(#[from] crate::tls::CaFileError),
    /// Any other error of a remote store.
    #[error("failed to {action} object {key} in bucket {bucket:?}: {message}")]
    Remote {
        /// What was being done.
        action: &'static str,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The underlying error.
        message: String,
    },
}

/// Result alias for object store operations.
pub type Result<T, E = ObjectError> = std::result::Result<T, E>;

/// An object's bytes as a stream of chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Stores document originals.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Stores `body` under `key`, replacing any previous object, atomically.
    async fn put(&self, key: &str, body: Bytes) -> Result<()>;
    /// Reads the object under `key`.
    async fn get(&self, key: &str) -> Result<Bytes>;
    /// Reads the object under `key` as a stream of chunks, so that a large object is never
    /// held whole in memory. A missing object fails here, before the stream starts.
    async fn get_stream(&self, key: &str) -> Result<ByteStream>;
    /// Removes the object; a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Removes every object whose key starts with `prefix/`.
    async fn delete_prefix(&self, prefix: &str) -> Result<()>;
    /// Whether the store is reachable.
    async fn ping(&self) -> Result<()>;
}

/// Opens the object store the configuration selects. The S3 store checks at once that its
/// bucket exists and that the credentials are accepted.
pub async fn open(config: &ragplane_config::Config) -> Result<Arc<dyn ObjectStore>> {
    Ok(match &config.objects {
        ragplane_config::ObjectStoreConfig::Local { .. } => {
            Arc::new(LocalStore::open(config.objects_dir())?)
        }
        ragplane_config::ObjectStoreConfig::S3(c) => Arc::new(S3Store::connect(c).await?),
    })
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
