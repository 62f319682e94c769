//! What a sensor keeps on disk for the fleet: its sequence numbers (never
//! repeated, across restarts) and the spool of batches the broker has not
//! taken yet (bounded, drained oldest first).

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// Errors of the sequence file and the spool.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// The sequence file holds something else than a number.
    #[error("`{}` should hold the sensor's next sequence number; it holds `{found}` (remove it only if this sensor's name is new to the collector)", path.display())]
    BadSequence {
        path: PathBuf,
        found: String,
        #[source]
        source: std::num::ParseIntError,
    },
    /// A file or directory could not be read.
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The sequence file could not be written.
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The spool directory could not be created.
    #[error("cannot create the spool directory `{}`", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A batch could not be written to the spool.
    #[error("cannot write to the spool `{}`", dir.display())]
    Push {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A batch the broker took could not be removed.
    #[error("cannot remove `{}`", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, SpoolError>;

/// `map_err` for an I/O error of `path`.
fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Numbers reserved at once: the file is rewritten once per this many
/// items, and a crash skips at most this many (gaps are harmless).
const RESERVE: u64 = 1 << 20;

/// A sensor's sequence numbers. The file holds a high-water mark written
/// (and synced) before any number under it is used, so a number is never
/// handed out twice, even after a crash.
pub struct Sequence {
    path: PathBuf,
    next: u64,
    high: u64,
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself must survive a crash.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

impl Sequence {
    pub fn open(path: &Path) -> Result<Sequence> {
        let high = match fs::read_to_string(path) {
            Ok(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|source| SpoolError::BadSequence {
                    path: path.to_path_buf(),
                    found: s.trim().to_string(),
                    source,
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(read_error(path)(e)),
        };
        Ok(Sequence {
            path: path.to_path_buf(),
            next: high,
            high,
        })
    }

    /// The first of `n` fresh numbers.
    pub fn take(&mut self, n: u64) -> Result<u64> {
        if self.next + n > self.high {
            let high = self.next + n + RESERVE;
            write_synced(&self.path, high.to_string().as_bytes()).map_err(|source| {
                SpoolError::Write {
                    path: self.path.clone(),
                    source,
                }
            })?;
            self.high = high;
        }
        let first = self.next;
        self.next += n;
        Ok(first)
    }
}

/// What the spool did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SpoolCounts {
    /// Batches (and their items) written to the spool.
    pub spooled_batches: u64,
    pub spooled_items: u64,
    /// Batches (and items) taken from the spool by the broker.
    pub drained_batches: u64,
    pub drained_items: u64,
    /// Batches (and items) refused because the spool was full: lost, and
    /// counted.
    pub dropped_batches: u64,
    pub dropped_items: u64,
    /// In the spool now.
    pub queued_batches: u64,
    pub queued_bytes: u64,
}

/// Batches waiting for the broker, one file each, named by their first
/// sequence number (so the directory's order is the sending order).
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// (first_seq, items, bytes), oldest first.
    files: std::collections::VecDeque<(u64, u64, u64)>,
    pub counts: SpoolCounts,
}

fn name(first_seq: u64, items: u64) -> String {
    format!("{first_seq:020}-{items}.fpb")
}

impl Spool {
    /// Opens (creating) the spool in `dir`, with what an earlier run left.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool> {
        fs::create_dir_all(dir).map_err(|source| SpoolError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let mut files = Vec::new();
        for e in fs::read_dir(dir).map_err(read_error(dir))? {
            let e = e.map_err(read_error(dir))?;
            let n = e.file_name().to_string_lossy().to_string();
            let Some(stem) = n.strip_suffix(".fpb") else {
                if n.ends_with(".tmp") {
                    // A write cut short by a crash: never acknowledged as spooled.
                    let _ = fs::remove_file(e.path());
                }
                continue;
            };
            let Some((seq, items)) = stem.split_once('-') else {
                continue;
            };
            if let (Ok(seq), Ok(items)) = (seq.parse(), items.parse()) {
                let len = e.metadata().map_err(read_error(&e.path()))?.len();
                files.push((seq, items, len));
            }
        }
        files.sort();
        let mut s = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            files: files.into(),
            counts: SpoolCounts::default(),
        };
        s.recount();
        if s.counts.queued_batches > 0 {
            log::info!(
                "the spool `{}` holds {} batches ({} bytes) from before: they are sent first",
                dir.display(),
                s.counts.queued_batches,
                s.counts.queued_bytes
            );
        }
        Ok(s)
    }

    fn recount(&mut self) {
        self.counts.queued_batches = self.files.len() as u64;
        self.counts.queued_bytes = self.files.iter().map(|f| f.2).sum();
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// A batch of `bytes` fits under the bound now.
    pub fn has_room(&self, bytes: u64) -> bool {
        self.counts.queued_bytes + bytes <= self.max_bytes
    }

    /// Keeps a batch. Returns false (and counts it lost) when the spool is
    /// full: what is already spooled is kept, in order, and never replaced.
    pub fn push(&mut self, first_seq: u64, items: u64, bytes: &[u8]) -> Result<bool> {
        if !self.has_room(bytes.len() as u64) {
            self.counts.dropped_batches += 1;
            self.counts.dropped_items += items;
            return Ok(false);
        }
        let path = self.dir.join(name(first_seq, items));
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, bytes)
            .and_then(|_| fs::rename(&tmp, &path))
            .map_err(|source| SpoolError::Push {
                dir: self.dir.clone(),
                source,
            })?;
        self.files.push_back((first_seq, items, bytes.len() as u64));
        self.counts.spooled_batches += 1;
        self.counts.spooled_items += items;
        self.recount();
        Ok(true)
    }

    /// The oldest batch: (first_seq, items, bytes).
    pub fn oldest(&self) -> Result<Option<(u64, u64, Vec<u8>)>> {
        let Some(&(seq, items, _)) = self.files.front() else {
            return Ok(None);
        };
        let path = self.dir.join(name(seq, items));
        let bytes = fs::read(&path).map_err(read_error(&path))?;
        Ok(Some((seq, items, bytes)))
    }

    /// The oldest batch was taken by the broker.
    pub fn pop(&mut self) -> Result<()> {
        if let Some((seq, items, _)) = self.files.pop_front() {
            let path = self.dir.join(name(seq, items));
            fs::remove_file(&path).map_err(|source| SpoolError::Remove {
                path: path.clone(),
                source,
            })?;
            self.counts.drained_batches += 1;
            self.counts.drained_items += items;
        }
        self.recount();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fireplot-spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn sequence_numbers_never_repeat_across_restarts() {
        let d = dir("seq");
        fs::create_dir_all(&d).unwrap();
        let p = d.join("seq");
        let mut s = Sequence::open(&p).unwrap();
        assert_eq!(s.take(10).unwrap(), 0);
        assert_eq!(s.take(5).unwrap(), 10);
        // A "crash": reopened without telling it what was used.
        let mut s2 = Sequence::open(&p).unwrap();
        let next = s2.take(1).unwrap();
        assert!(next >= 15, "{next}");
        // More than one reservation at once.
        let big = s2.take(3 * RESERVE).unwrap();
        assert_eq!(big, next + 1);
        let mut s3 = Sequence::open(&p).unwrap();
        assert!(s3.take(1).unwrap() >= big + 3 * RESERVE);
        fs::write(&p, "garbage").unwrap();
        assert!(Sequence::open(&p)
            .err()
            .unwrap()
            .to_string()
            .contains("next sequence number"));
    }

    #[test]
    fn the_spool_keeps_order_and_its_bound_and_survives_a_restart() {
        let d = dir("spool");
        let mut s = Spool::open(&d, 100).unwrap();
        assert!(s.push(5, 2, &[1; 40]).unwrap());
        assert!(s.push(7, 3, &[2; 40]).unwrap());
        // Over the bound: refused and counted, the others kept.
        assert!(!s.push(10, 4, &[3; 40]).unwrap());
        assert_eq!((s.counts.dropped_batches, s.counts.dropped_items), (1, 4));
        assert_eq!(s.counts.queued_bytes, 80);
        // A leftover temporary file of a crash is removed on open.
        fs::write(d.join("x.tmp"), b"partial").unwrap();
        let mut s = Spool::open(&d, 100).unwrap();
        assert!(!d.join("x.tmp").exists());
        assert_eq!(s.counts.queued_batches, 2);
        assert_eq!(s.oldest().unwrap().unwrap(), (5, 2, vec![1; 40]));
        s.pop().unwrap();
        assert_eq!(s.oldest().unwrap().unwrap(), (7, 3, vec![2; 40]));
        s.pop().unwrap();
        assert!(s.is_empty());
        assert_eq!(s.oldest().unwrap(), None);
        assert_eq!((s.counts.drained_batches, s.counts.drained_items), (2, 5));
        // Order is by sequence, whatever order the names were listed in.
        for seq in [300u64, 20, 1000, 4] {
            s.push(seq, 1, &[0; 1]).unwrap();
        }
        let s = Spool::open(&d, 100).unwrap();
        let order: Vec<u64> = s.files.iter().map(|f| f.0).collect();
        assert_eq!(order, [4, 20, 300, 1000]);
    }
}
