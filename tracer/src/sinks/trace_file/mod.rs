//! A timeline for ui.perfetto.dev and chrome://tracing (`--trace-file`): the record stream as
//! Chrome trace-event JSON, written as it happens (docs/trace.md).
//!
//! The file is the JSON Object Format, `{"displayTimeUnit":"ns","traceEvents":[…]}`, the
//! header written at once and the closing `]}` at the end. Events go out in whole blocks (and
//! at once for a process's start and exit), so a file cut short by a crash ends after a
//! complete event: Perfetto reads events as they come and opens it as it is; chrome://tracing
//! wants the closing `]}` appended. Memory stays bounded: one block of output, and per live
//! process its threads, open spans and allocators' live bytes ([`timeline::Timeline`]).

#[cfg(test)]
mod tests;
mod timeline;

use std::{
    fs::File,
    io::Write as _,
    path::{Path, PathBuf},
};

use serde_json::Value;

use self::timeline::Timeline;
use super::{
    json_lines::{create, shift_rotated},
    Sink, DEFAULT_KEEP,
};
use crate::{collector::Record, report::Report, Error, Result};

/// Opens the file: `displayTimeUnit` first, where Perfetto looks for it.
const HEADER: &[u8] = b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
const FOOTER: &[u8] = b"\n]}\n";
/// Output is written once this much is pending.
const BLOCK: usize = 64 * 1024;

pub struct TraceFile {
    path: PathBuf,
    file: File,
    /// Whole events not yet written.
    pending: Vec<u8>,
    /// Events in the current file (the first has no comma before it).
    events: u64,
    timeline: Timeline,
    /// Events of the record at hand.
    scratch: Vec<Value>,
    /// Rotated files kept (`PATH.1` … `PATH.N`).
    keep: usize,
    /// A write failed: said once, not once per record.
    failed: bool,
    /// Closed by a rotation that could not open the new file: events are dropped, not
    /// written after the old file's end.
    closed: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

/// A new file with its header written.
fn open(path: &Path) -> Result<File> {
    let mut file = create(path)?;
    file.write_all(HEADER).map_err(io(path))?;
    Ok(file)
}

impl TraceFile {
    /// Creates (truncates) `path` and writes the header: a path that cannot be written fails
    /// here, before anything is traced.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let file = open(&path)?;
        Ok(TraceFile {
            path,
            file,
            pending: Vec::with_capacity(BLOCK),
            events: 0,
            timeline: Timeline::new(std::process::id()),
            scratch: Vec::new(),
            keep: DEFAULT_KEEP,
            failed: false,
            closed: false,
        })
    }

    /// Queues `scratch`'s events; writes them out if `now` or once a block is pending.
    fn emit(&mut self, now: bool) -> Result<()> {
        if self.closed {
            self.scratch.clear();
            return Ok(());
        }
        for v in self.scratch.drain(..) {
            if self.events > 0 {
                self.pending.extend_from_slice(b",\n");
            }
            // Writing a Value to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.pending, &v);
            self.events += 1;
        }
        if now || self.pending.len() >= BLOCK {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<()> {
        let r = self.file.write_all(&self.pending).map_err(io(&self.path));
        // Dropped even when the write failed: memory stays bounded whatever the disk does.
        self.pending.clear();
        r
    }

    /// Ends the current file properly (open spans ended, `]}`), renames it to `PATH.1`
    /// (shifting older ones), and starts a new `PATH` that stands on its own: process and
    /// thread names, open spans begun again, every counter's current value.
    pub fn rotate(&mut self) -> Result<()> {
        if !self.closed {
            self.timeline.suspend(&mut self.scratch);
            self.emit(false)?;
            self.pending.extend_from_slice(FOOTER);
            self.write_pending()?;
            self.closed = true;
        }
        // Already renamed if an earlier rotation failed to open the new file.
        if self.path.exists() {
            shift_rotated(&self.path, self.keep)?;
        }
        self.file = open(&self.path)?;
        self.closed = false;
        self.events = 0;
        self.timeline.resume(&mut self.scratch);
        self.emit(true)
    }

    fn warn_once(&mut self, e: Error) {
        if !self.failed {
            self.failed = true;
            log::warn!("trace file: {e}");
            eprintln!("tt-tracer: warning: trace file: {e}");
        }
    }
}

impl Sink for TraceFile {
    fn record(&mut self, r: &Record) {
        self.timeline
            .record(r, crate::kernel::monotonic_ns(), &mut self.scratch);
        // A process's start and end are written at once: after a crash the file still shows
        // every process that had ended.
        let now = matches!(
            r,
            Record::ProcessStarted { .. } | Record::ProcessExited(_) | Record::DeviceClosed { .. }
        );
        if let Err(e) = self.emit(now) {
            self.warn_once(e);
        }
    }

    fn finish(&mut self, _: &Report) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        // Spans still open stay open: the process was still inside them when tracing ended.
        self.emit(false)?;
        self.pending.extend_from_slice(FOOTER);
        self.write_pending()?;
        self.file.flush().map_err(io(&self.path))
    }

    fn rotate(&mut self) {
        if let Err(e) = TraceFile::rotate(self) {
            self.warn_once(e);
        }
    }
}
