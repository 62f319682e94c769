//! Where log lines come from: a file read once, standard input, a file
//! followed as it grows and across rotation, or the kernel's journal as
//! it is written (`journalctl -k -o json -f`, a child process).
//!
//! Facts a maintainer needs about following a file:
//! - logrotate either renames the file and a new one appears under the
//!   name (a new inode: what the old file still held is read first, then
//!   the new one from its start), or copies and truncates it in place
//!   (`copytruncate`: the file is shorter than what was read, so reading
//!   starts over);
//! - between the rename and the new file the name may be missing: that is
//!   waited out, not an error;
//! - a writer may be caught in the middle of a line: the rest is waited
//!   for (a while) before the line is read.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use thiserror::Error;

/// Why an input cannot be opened.
#[derive(Debug, Error)]
pub enum FollowError {
    /// The file cannot be opened.
    #[error("cannot open `{path}`")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `journalctl` cannot be started.
    #[error("cannot run `journalctl -k -o json -f` (give a FILE or `-` instead)")]
    Journal {
        #[source]
        source: io::Error,
    },
    /// `journalctl` started without the pipe its output was to come by.
    #[error("journalctl's output")]
    JournalOutput,
}

/// How long a read waits for the rest of a half-written line.
const HALF_LINE_WAIT: Duration = Duration::from_secs(2);
/// How often a followed file is looked at once everything was read.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How long to wait after a followed file could not be reopened.
const REOPEN_RETRY: Duration = Duration::from_millis(500);
/// Read buffer of streams: a fast pipe hands over up to its whole 64 KiB
/// at a time.
const STREAM_BUFFER: usize = 1 << 20;

/// Lines from a file that may grow and be rotated.
struct Follower {
    path: PathBuf,
    reader: BufReader<File>,
    inode: u64,
    pos: u64,
}

impl Follower {
    fn open(path: &Path) -> io::Result<Follower> {
        let f = File::open(path)?;
        let inode = f.metadata()?.ino();
        Ok(Follower {
            path: path.into(),
            reader: BufReader::new(f),
            inode,
            pos: 0,
        })
    }

    fn read_until_newline(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let n = self.reader.read_until(b'\n', buf);
        if let Ok(k) = n {
            self.pos += k as u64;
        }
        n
    }

    /// Appends the rest of a half-written line, waiting for it at most
    /// [`HALF_LINE_WAIT`] (or until `stop`).
    fn finish_line(&mut self, buf: &mut Vec<u8>, stop: &AtomicBool) {
        let mut rest = Vec::new();
        let deadline = Instant::now() + HALF_LINE_WAIT;
        while !rest.ends_with(b"\n") && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            let mut more = Vec::new();
            if let Ok(k) = self.reader.read_until(b'\n', &mut more) {
                self.pos += k as u64;
                rest.extend_from_slice(&more);
            }
        }
        buf.extend_from_slice(&rest);
    }

    /// Rotated (another file under the name) or truncated: start over.
    fn check_rotation(&mut self) -> io::Result<bool> {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return Ok(false); // between the rename and the new file
        };
        if meta.ino() != self.inode {
            // Whatever the old file still had was read before this check.
            *self = Follower::open(&self.path)?;
            return Ok(true);
        }
        if meta.len() < self.pos {
            self.reader.seek(SeekFrom::Start(0))?;
            self.pos = 0;
            return Ok(true);
        }
        Ok(false)
    }
}

enum Kind {
    Stream(BufReader<Box<dyn Read + Send>>),
    Follow(Follower),
}

/// What a read gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// A line is in the buffer (with its newline, unless the input ended,
    /// or a followed writer stalled, in the middle of one).
    Line,
    /// A followed file has nothing more for now: write out what came,
    /// then [`LineSource::wait_for_more`].
    CaughtUp,
    /// The input is over.
    End,
}

/// Where the lines come from.
pub struct LineSource {
    kind: Kind,
    /// `journalctl -f`, ended by [`LineSource::close`].
    child: Option<Child>,
}

impl LineSource {
    /// A file, read once to its end.
    pub fn file(path: &Path) -> Result<LineSource, FollowError> {
        let f = File::open(path).map_err(|source| FollowError::Open {
            path: path.into(),
            source,
        })?;
        Ok(LineSource::stream(Box::new(f)))
    }

    /// Standard input, to its end.
    pub fn stdin() -> LineSource {
        LineSource::stream(Box::new(io::stdin()))
    }

    /// A file followed as it grows and across rotation, from its start.
    pub fn follow(path: &Path) -> Result<LineSource, FollowError> {
        let f = Follower::open(path).map_err(|source| FollowError::Open {
            path: path.into(),
            source,
        })?;
        Ok(LineSource {
            kind: Kind::Follow(f),
            child: None,
        })
    }

    /// The kernel's journal from now on, as `journalctl -k -o json -f`
    /// writes it.
    pub fn journal() -> Result<LineSource, FollowError> {
        let mut c = Command::new("journalctl")
            .args(["-k", "-o", "json", "-f", "-n", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|source| FollowError::Journal { source })?;
        let Some(out) = c.stdout.take() else {
            // Not reached: the pipe was asked for.
            let _ = c.kill();
            let _ = c.wait();
            return Err(FollowError::JournalOutput);
        };
        let mut s = LineSource::stream(Box::new(out));
        s.child = Some(c);
        Ok(s)
    }

    fn stream(r: Box<dyn Read + Send>) -> LineSource {
        LineSource {
            kind: Kind::Stream(BufReader::with_capacity(STREAM_BUFFER, r)),
            child: None,
        }
    }

    /// The child process's id (`journalctl`), for a signal to end it so
    /// that a blocked read sees its end.
    pub fn child_pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Replaces `buf` with the next line. A followed file's half-written
    /// line is completed first (waiting at most [`HALF_LINE_WAIT`], or
    /// until `stop`).
    pub fn read_line(&mut self, buf: &mut Vec<u8>, stop: &AtomicBool) -> io::Result<Got> {
        buf.clear();
        match &mut self.kind {
            Kind::Stream(r) => match r.read_until(b'\n', buf)? {
                0 => Ok(Got::End),
                _ => Ok(Got::Line),
            },
            Kind::Follow(f) => match f.read_until_newline(buf)? {
                0 => Ok(Got::CaughtUp),
                _ => {
                    if !buf.ends_with(b"\n") {
                        f.finish_line(buf, stop);
                    }
                    Ok(Got::Line)
                }
            },
        }
    }

    /// A stream that paused (a pipe, `journalctl -f`) and whose buffered
    /// input is all read: what came so far should be written now, not at
    /// the end. (A fast pipe fills the buffer, so batches stay hundreds of
    /// events.)
    pub fn paused(&self) -> bool {
        match &self.kind {
            Kind::Stream(r) => r.buffer().is_empty(),
            Kind::Follow(_) => false,
        }
    }

    /// After [`Got::CaughtUp`]: reopens a rotated or truncated file, or
    /// waits a little for the file to grow.
    pub fn wait_for_more(&mut self) {
        let Kind::Follow(f) = &mut self.kind else {
            return;
        };
        match f.check_rotation() {
            Ok(true) => log::info!("{} was rotated; reading the new file", f.path.display()),
            Ok(false) => std::thread::sleep(IDLE_POLL),
            Err(e) => {
                log::warn!("cannot reopen {}: {e}; retrying", f.path.display());
                std::thread::sleep(REOPEN_RETRY);
            }
        }
    }

    /// Ends the `journalctl` child, if there is one.
    pub fn close(self) {
        if let Some(mut c) = self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::input::test_support::temp;

    fn line(s: &mut LineSource, stop: &AtomicBool) -> Option<String> {
        let mut buf = Vec::new();
        match s.read_line(&mut buf, stop).expect("read") {
            Got::Line => Some(String::from_utf8(buf).expect("text")),
            Got::CaughtUp | Got::End => None,
        }
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open for appending");
        f.write_all(text.as_bytes()).expect("append");
    }

    #[test]
    fn a_followed_file_is_read_across_a_rename_and_a_truncation() {
        let stop = AtomicBool::new(false);
        let path = temp("rotated.log");
        let _ = std::fs::remove_file(&path);
        append(&path, "one\ntwo\n");
        let mut s = LineSource::follow(&path).expect("follow");
        assert_eq!(line(&mut s, &stop).as_deref(), Some("one\n"));
        assert_eq!(line(&mut s, &stop).as_deref(), Some("two\n"));
        let mut buf = Vec::new();
        assert_eq!(s.read_line(&mut buf, &stop).unwrap(), Got::CaughtUp);
        assert!(!s.paused(), "a followed file is written out when caught up");

        // Rotation by rename: the old file's last line, then the new file.
        append(&path, "three\n");
        std::fs::rename(&path, path.with_extension("log.1")).expect("rename");
        s.wait_for_more(); // the name is missing for now: nothing happens
        append(&path, "four\n");
        assert_eq!(line(&mut s, &stop).as_deref(), Some("three\n"));
        assert_eq!(line(&mut s, &stop), None);
        s.wait_for_more();
        assert_eq!(line(&mut s, &stop).as_deref(), Some("four\n"));

        // copytruncate: the file is cut and written again from the start.
        assert_eq!(line(&mut s, &stop), None);
        std::fs::write(&path, "").expect("truncate");
        s.wait_for_more();
        append(&path, "five\n");
        assert_eq!(line(&mut s, &stop).as_deref(), Some("five\n"));
        s.close();
    }

    #[test]
    fn a_half_written_line_is_waited_for() {
        let stop = AtomicBool::new(false);
        let path = temp("half.log");
        std::fs::write(&path, "SRC=1.2").expect("write");
        let mut s = LineSource::follow(&path).expect("follow");
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                append(&path, ".3.4 DST=5.6.7.8\nnext\n");
            })
        };
        assert_eq!(
            line(&mut s, &stop).as_deref(),
            Some("SRC=1.2.3.4 DST=5.6.7.8\n")
        );
        writer.join().expect("writer");
        assert_eq!(line(&mut s, &stop).as_deref(), Some("next\n"));
        // A stop does not wait for the rest.
        append(&path, "cut");
        stop.store(true, Ordering::Relaxed);
        let t = Instant::now();
        assert_eq!(line(&mut s, &stop).as_deref(), Some("cut"));
        assert!(t.elapsed() < HALF_LINE_WAIT);
    }

    #[test]
    fn a_file_is_read_once_to_its_end() {
        let stop = AtomicBool::new(false);
        let path = temp("once.log");
        std::fs::write(&path, "a\nb").expect("write");
        let mut s = LineSource::file(&path).expect("open");
        assert_eq!(line(&mut s, &stop).as_deref(), Some("a\n"));
        assert!(!s.paused(), "the rest is buffered");
        assert_eq!(
            line(&mut s, &stop).as_deref(),
            Some("b"),
            "no wait for the rest"
        );
        assert!(s.paused());
        let mut buf = vec![b'x'];
        assert_eq!(s.read_line(&mut buf, &stop).unwrap(), Got::End);
        assert!(buf.is_empty());
        assert!(s.child_pid().is_none());
        let e = LineSource::file(&temp("missing.log"))
            .err()
            .expect("missing");
        assert!(e.to_string().starts_with("cannot open `"), "{e}");
        assert!(matches!(e, FollowError::Open { .. }));
    }
}
