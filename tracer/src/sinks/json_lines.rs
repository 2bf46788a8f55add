//! Every record as one JSON object per line (`--events-file`), with rotation: by request
//! ([`JsonLines::rotate`], e.g. on SIGHUP) or when the file reaches `max_bytes`.

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
};

use super::Sink;
use crate::{collector::Record, report::Report, Error, Result};

/// Rotated files kept by default (`PATH.1` … `PATH.3`).
pub const DEFAULT_KEEP: usize = 3;

pub struct JsonLines {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the current file.
    written: u64,
    /// Rotate before a line would take the file past this (None: never by size).
    max_bytes: Option<u64>,
    keep: usize,
    /// A write or rotation failed: said once, not once per record.
    failed: bool,
}

pub(super) fn create(path: &Path) -> Result<File> {
    File::create(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `PATH.n`
pub(super) fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Shifts `PATH.1` → `PATH.2` … (dropping the oldest beyond `keep`) and renames `PATH` to
/// `PATH.1`, for a new `PATH` to be created.
pub(super) fn shift_rotated(path: &Path, keep: usize) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    for n in (1..keep).rev() {
        let from = numbered(path, n);
        if from.exists() {
            std::fs::rename(&from, numbered(path, n + 1)).map_err(io(&from))?;
        }
    }
    std::fs::rename(path, numbered(path, 1)).map_err(io(path))
}

impl JsonLines {
    /// Creates (truncates) `path`.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let out = BufWriter::new(create(&path)?);
        Ok(JsonLines {
            path,
            out,
            written: 0,
            max_bytes: None,
            keep: DEFAULT_KEEP,
            failed: false,
        })
    }

    /// Rotates automatically once the file would grow past `bytes`.
    pub fn max_bytes(mut self, bytes: Option<u64>) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// How many rotated files to keep (`PATH.1` newest … `PATH.N`); at least 1.
    pub fn keep(mut self, n: usize) -> Self {
        self.keep = n.max(1);
        self
    }

    /// Closes the file, shifts `PATH.1` → `PATH.2` … (dropping the oldest beyond `keep`),
    /// renames it to `PATH.1` and starts a new, empty `PATH`.
    pub fn rotate(&mut self) -> Result<()> {
        self.out.flush().map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        shift_rotated(&self.path, self.keep)?;
        self.out = BufWriter::new(create(&self.path)?);
        self.written = 0;
        Ok(())
    }

    fn write(&mut self, r: &Record) -> Result<()> {
        let mut line = serde_json::to_vec(r)
            .map_err(|e| Error::Other(format!("serialising a record: {e}")))?;
        line.push(b'\n');
        if let Some(max) = self.max_bytes {
            // A file holds at least one line, however long.
            if self.written > 0 && self.written + line.len() as u64 > max {
                self.rotate()?;
            }
        }
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        self.out.write_all(&line).map_err(io)?;
        self.written += line.len() as u64;
        // Lifecycle records are flushed at once: a reader may be waiting for them.
        if matches!(
            r,
            Record::ProcessStarted { .. } | Record::ProcessExited(_) | Record::DeviceClosed { .. }
        ) {
            self.out.flush().map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn warn_once(&mut self, e: Error) {
        if !self.failed {
            self.failed = true;
            log::warn!("events file: {e}");
            eprintln!("tt-tracer: warning: events file: {e}");
        }
    }
}

impl Sink for JsonLines {
    fn record(&mut self, r: &Record) {
        if let Err(e) = self.write(r) {
            self.warn_once(e);
        }
    }

    fn finish(&mut self, _: &Report) -> Result<()> {
        self.out.flush().map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn rotate(&mut self) {
        if let Err(e) = JsonLines::rotate(self) {
            self.warn_once(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(total: u64) -> Record {
        Record::WorkloadEnqueued {
            pid: 1,
            tid: 1,
            ts_ns: 0,
            total,
            op: None,
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tt-tracer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn lines(p: &Path) -> usize {
        std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
    }

    #[test]
    fn rotation_shifts_and_keeps_n() {
        let d = dir("rotate");
        let path = d.join("events.jsonl");
        let mut j = JsonLines::create(&path).unwrap().keep(2);
        for round in 1..=4 {
            for i in 0..round {
                Sink::record(&mut j, &rec(i));
            }
            JsonLines::rotate(&mut j).unwrap();
        }
        Sink::record(&mut j, &rec(0));
        j.finish(&Report::new(
            &Default::default(),
            &[],
            Default::default(),
            0,
        ))
        .unwrap();
        assert_eq!(lines(&path), 1);
        assert_eq!(lines(&numbered(&path, 1)), 4, "the newest rotated file");
        assert_eq!(lines(&numbered(&path, 2)), 3);
        assert!(!numbered(&path, 3).exists(), "only 2 kept");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_size_cap_rotates_by_itself() {
        let d = dir("cap");
        let path = d.join("events.jsonl");
        let line = serde_json::to_vec(&rec(0)).unwrap().len() as u64 + 1;
        let mut j = JsonLines::create(&path).unwrap().max_bytes(Some(3 * line));
        for _ in 0..7 {
            Sink::record(&mut j, &rec(0));
        }
        j.finish(&Report::new(
            &Default::default(),
            &[],
            Default::default(),
            0,
        ))
        .unwrap();
        assert_eq!(lines(&path), 1);
        assert_eq!(lines(&numbered(&path, 1)), 3);
        assert_eq!(lines(&numbered(&path, 2)), 3);
        std::fs::remove_dir_all(d).unwrap();
    }
}
