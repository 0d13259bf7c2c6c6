//! The data directory's lock. Embedded stores (SQLite, local originals, the embedded vector
//! index) belong to one process at a time: a second process on the same directory, such as a
//! replacement pod that starts while the old one is still draining on the same volume, waits
//! until the first has exited instead of opening the same files.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

/// An exclusive lock on `<data_dir>/.lock`, released when dropped or when the process exits.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `dir`, waiting for its holder to exit if another process has it.
    pub async fn acquire(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("failed to open {}: {e}", path.display()))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Self { _file: file }),
            Err(Errno::WOULDBLOCK) => {}
            Err(e) => return Err(lock_error(&path, e)),
        }
        tracing::warn!(
            path = %path.display(),
            "another process uses this data directory; waiting until it exits"
        );
        let waited = path.clone();
        let file = tokio::task::spawn_blocking(move || {
            flock(&file, FlockOperation::LockExclusive)
                .map(|()| file)
                .map_err(|e| lock_error(&waited, e))
        })
        .await??;
        tracing::info!(path = %path.display(), "took over the data directory");
        Ok(Self { _file: file })
    }
}

fn lock_error(path: &Path, e: Errno) -> anyhow::Error {
    anyhow::anyhow!("failed to lock {}: {e}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_second_process_waits_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).await.unwrap();
        let path = dir.path().to_path_buf();
        let second = tokio::spawn(async move { DataDirLock::acquire(&path).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "the directory is still held");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the lock is handed over once released")
            .unwrap()
            .unwrap();
    }
}
