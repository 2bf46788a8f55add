//! The reader: drains both ring buffers, decodes events, orders them, feeds the collector.

use std::{future::Future, os::fd::AsRawFd, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tracer_common::Event;

use crate::{
    collector::{Collector, Record},
    errors::{Error, Result},
    loader::{Probes, Rings},
};

/// How often the reader looks at the payload ring when no wake-up came (probes wake it only
/// when a batch has built up).
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

pub struct Session {
    pub probes: Probes,
    payload: AsyncFd<RingBuf<MapData>>,
    lifecycle: AsyncFd<RingBuf<MapData>>,
    pub collector: Collector,
    /// Ring records too short to be an event (never expected; counted, not trusted).
    pub malformed: u64,
    batch: Vec<Event>,
}

fn decode(bytes: &[u8]) -> Option<Event> {
    Event::from_bytes(bytes)
}

impl Session {
    pub fn new(probes: Probes, rings: Rings) -> Result<Session> {
        let wrap = |r: RingBuf<MapData>| {
            let fd = r.as_raw_fd();
            // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd, so the fd stays
            // open for as long as it is registered.
            unsafe { AsyncFd::register(r) }
                .map_err(|e| Error::Other(format!("polling ring buffer fd {fd}: {e}")))
        };
        Ok(Session {
            probes,
            payload: wrap(rings.payload)?,
            lifecycle: wrap(rings.lifecycle)?,
            collector: Collector::new(),
            malformed: 0,
            batch: Vec::with_capacity(4096),
        })
    }

    /// Reads everything waiting in both rings and applies it in time order. The lifecycle ring
    /// is read first: every payload event that precedes a process exit is already in the payload
    /// ring by then, so sorting the batch puts the exit after them.
    pub fn drain(&mut self, on_record: &mut dyn FnMut(&Record)) -> usize {
        self.probes.flush_log();
        self.batch.clear();
        for ring in [self.lifecycle.get_mut(), self.payload.get_mut()] {
            while let Some(item) = ring.next() {
                match decode(&item) {
                    Some(ev) => self.batch.push(ev),
                    None => self.malformed += 1,
                }
            }
        }
        self.batch.sort_by_key(|e| e.ts_ns);
        for ev in &self.batch {
            if let Some(rec) = self.collector.apply(ev) {
                on_record(&rec);
            }
        }
        self.batch.len()
    }

    /// Runs the reader until `stop` completes (then drains once more).
    pub async fn run_until<F: Future>(
        &mut self,
        stop: F,
        on_record: &mut dyn FnMut(&Record),
    ) -> F::Output {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                out = &mut stop => {
                    self.drain(on_record);
                    return out;
                }
                g = self.payload.readable() => { if let Ok(mut g) = g { g.clear_ready(); } }
                g = self.lifecycle.readable() => { if let Ok(mut g) = g { g.clear_ready(); } }
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            self.drain(on_record);
        }
    }

    /// Ends tracing: the probes are detached after this process exits (see
    /// [`Probes::detach_in_background`]).
    pub fn detach_in_background(self) {
        let Session {
            probes,
            payload,
            lifecycle,
            ..
        } = self;
        // The rings are plain fds (their pages go with the process).
        std::mem::forget(payload);
        std::mem::forget(lifecycle);
        probes.detach_in_background();
    }

    /// Keeps reading until `pid`'s exit has been applied, or `timeout` passes.
    pub async fn wait_for_exit(
        &mut self,
        pid: u32,
        timeout: Duration,
        on_record: &mut dyn FnMut(&Record),
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.drain(on_record);
            if self.collector.has_ended(pid) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
