//! The embedded index's write-ahead log: length- and CRC-framed postcard records.
//!
//! Every change is appended and fsynced before it is applied in memory, so a crash loses
//! nothing that was acknowledged. A record cut short by a crash (a torn tail) fails its length
//! or CRC check; reading stops there and the file is truncated to the last whole record.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io, Point, Result, VectorError};

/// One logged change.
#[derive(Debug, Serialize, Deserialize)]
pub enum Record {
    /// Points inserted or replaced.
    Upsert(Vec<Point>),
    /// Every point of a document removed.
    DeleteDocument(String),
    /// The points of a document from this chunk index on removed (added after the first
    /// release; older logs simply never contain it).
    DeleteChunksFrom(String, u32),
}

/// Appends records to a log file.
pub struct WalWriter {
    file: File,
    path: PathBuf,
    len: u64,
}

impl WalWriter {
    /// Opens `path` for appending, creating it when missing.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io("open", path))?;
        let len = file.metadata().map_err(io("stat", path))?.len();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            len,
        })
    }

    /// Appends one record and fsyncs it.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        let body = postcard::to_stdvec(record).map_err(|e| VectorError::Corrupt {
            path: self.path.display().to_string(),
            message: format!("failed to encode record: {e}"),
        })?;
        let len = u32::try_from(body.len()).map_err(|_| VectorError::Corrupt {
            path: self.path.display().to_string(),
            message: "record larger than 4 GiB".into(),
        })?;
        let mut frame = Vec::with_capacity(body.len() + 8);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        frame.extend_from_slice(&body);
        self.file
            .write_all(&frame)
            .map_err(io("append to", &self.path))?;
        self.file.sync_data().map_err(io("sync", &self.path))?;
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.len
    }
}

/// Reads every whole record of `path` (missing file: none) and truncates a torn tail.
pub fn replay(path: &Path) -> Result<Vec<Record>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("open", path)(e)),
    };
    let total = file.metadata().map_err(io("stat", path))?.len();
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut good: u64 = 0;
    loop {
        let mut header = [0u8; 8];
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io("read", path)(e)),
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if good + 8 + len > total {
            break;
        }
        let mut body = vec![0u8; len as usize];
        reader.read_exact(&mut body).map_err(io("read", path))?;
        if crc32fast::hash(&body) != crc {
            break;
        }
        match postcard::from_bytes::<Record>(&body) {
            Ok(r) => records.push(r),
            Err(_) => break,
        }
        good += 8 + len;
    }
    if good < total {
        tracing::warn!(path = %path.display(), kept = good, dropped = total - good, "truncating torn write-ahead log tail");
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io("open", path))?;
        f.set_len(good).map_err(io("truncate", path))?;
        f.sync_all().map_err(io("sync", path))?;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::Payload;

    fn point(id: u64) -> Point {
        Point {
            metadata: Default::default(),
            id,
            vector: vec![0.5; 4],
            payload: Payload {
                tenant: "t".into(),
                collection: "c".into(),
                document: "d".into(),
                title: "t".into(),
                chunk: 0,
                text: "x".into(),
            },
        }
    }

    #[test]
    fn records_round_trip_and_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = WalWriter::open(&path).unwrap();
        w.append(&Record::Upsert(vec![point(1), point(2)])).unwrap();
        w.append(&Record::DeleteDocument("d".into())).unwrap();
        let whole = w.len();
        // Simulate a crash in the middle of a third record.
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9]).unwrap();
        drop(f);

        let records = replay(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert!(matches!(&records[0], Record::Upsert(p) if p.len() == 2 && p[1].id == 2));
        assert!(matches!(&records[1], Record::DeleteDocument(d) if d == "d"));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            whole,
            "torn tail truncated"
        );
    }

    #[test]
    fn missing_log_replays_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(replay(&dir.path().join("nope")).unwrap().is_empty());
    }
}
