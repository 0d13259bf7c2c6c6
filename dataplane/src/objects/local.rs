//! Local-directory object store: one file per object, written through a temporary file and a
//! rename so that a crash never leaves half an object.

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;

use futures::TryStreamExt;

use super::{validate_key, ByteStream, ObjectError, ObjectStore, Result};

/// Objects as files under a root directory.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Uses (and creates) `root`.
    pub fn open(root: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&root).map_err(|source| ObjectError::Io {
            action: "create the root of",
            key: root.display().to_string(),
            source,
        })?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io(action: &'static str, key: &str) -> impl FnOnce(std::io::Error) -> ObjectError {
    let key = key.to_string();
    move |source| ObjectError::Io {
        action,
        key,
        source,
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io("create directory for", key))?;
        }
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        tokio::fs::write(&tmp, &body)
            .await
            .map_err(io("write", key))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(io("rename", key))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Bytes::from(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ObjectError::NotFound(key.to_string()))
            }
            Err(e) => Err(io("read", key)(e)),
        }
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream> {
        let path = self.path(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ObjectError::NotFound(key.to_string()))
            }
            Err(e) => return Err(io("open", key)(e)),
        };
        let key = key.to_string();
        Ok(Box::pin(
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
                .map_err(move |e| io("read", &key)(e)),
        ))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("delete", key)(e)),
            _ => Ok(()),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let path = self.path(prefix)?;
        match tokio::fs::remove_dir_all(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("delete", prefix)(e)),
            _ => Ok(()),
        }
    }

    async fn ping(&self) -> Result<()> {
        tokio::fs::metadata(&self.root)
            .await
            .map(|_| ())
            .map_err(io("stat", "root"))
    }
}
