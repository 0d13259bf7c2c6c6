//! Local-directory object store: one file per object, written through a temporary file and a
//! rename so that a crash never leaves half an object.

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;

use super::{validate_key, ObjectError, ObjectStore, Result};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path().join("objects")).unwrap();
        s.put("t1/c1/d1", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(
            s.get("t1/c1/d1").await.unwrap(),
            Bytes::from_static(b"hello")
        );
        s.put("t1/c1/d1", Bytes::from_static(b"again"))
            .await
            .unwrap();
        assert_eq!(
            s.get("t1/c1/d1").await.unwrap(),
            Bytes::from_static(b"again")
        );
        s.delete("t1/c1/d1").await.unwrap();
        assert!(matches!(
            s.get("t1/c1/d1").await,
            Err(ObjectError::NotFound(_))
        ));
        s.delete("t1/c1/d1").await.unwrap();
        s.put("t1/c2/x", Bytes::from_static(b"1")).await.unwrap();
        s.delete_prefix("t1/c2").await.unwrap();
        assert!(matches!(
            s.get("t1/c2/x").await,
            Err(ObjectError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path().to_path_buf()).unwrap();
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(
                matches!(
                    s.put(bad, Bytes::new()).await,
                    Err(ObjectError::InvalidKey(_))
                ),
                "{bad}"
            );
        }
    }
}
