//! The reader: drains both ring buffers, decodes events, orders them, feeds the collector.

use std::{future::Future, os::fd::AsRawFd, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tracer_common::{Event, EventKind};

use crate::{
    collector::{Collector, Record},
    errors::{Error, Result},
    libraries::{FoundBy, Libraries},
    loader::{Probes, Rings},
};

/// How often the reader looks at the payload ring when no wake-up came (probes wake it only
/// when a batch has built up) while events flow.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The longest it waits when nothing has come for a while: an idle host agent sleeps. Lifecycle
/// events (a library loaded, a device opened, a process ended) still wake it at once.
pub(crate) const IDLE_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The next poll interval: back to [`POLL_INTERVAL`] when the last drain applied anything,
/// else doubled, up to [`IDLE_POLL_INTERVAL`].
fn next_poll(current: Duration, applied: usize) -> Duration {
    if applied > 0 {
        POLL_INTERVAL
    } else {
        (current * 2).min(IDLE_POLL_INTERVAL)
    }
}

/// See [`Session::on_health`].
pub type HealthHook = Box<dyn FnMut(&std::collections::BTreeMap<&'static str, u64>, u64, u64)>;

pub struct Session {
    pub probes: Probes,
    /// The library files traced (and refused); grows as processes open new ones.
    pub libraries: Libraries,
    /// Told the loss counters, events applied and malformed records, at most once a second
    /// (e.g. the metrics exporter's health series).
    health_hook: Option<HealthHook>,
    last_health: Option<std::time::Instant>,
    /// Processes reported even if they never call into the library (the command of `run`, the
    /// process of `attach`); any other traced process is reported once it has.
    pub always_report: Vec<u32>,
    /// How long each process stopped for a new library waited for its probes (ns, from the
    /// stop to the SIGCONT).
    pub arming_pauses_ns: Vec<u64>,
    payload: AsyncFd<RingBuf<MapData>>,
    lifecycle: AsyncFd<RingBuf<MapData>>,
    pub collector: Collector,
    /// Ring records too short to be an event (never expected; counted, not trusted).
    pub malformed: u64,
    batch: Vec<Event>,
    /// Process exits read after the payload ring: applied with the next drain (see [`order`]).
    held_exits: Vec<Event>,
}

impl Session {
    pub fn new(probes: Probes, rings: Rings, libraries: Libraries) -> Result<Session> {
        let wrap = |r: RingBuf<MapData>| {
            let fd = r.as_raw_fd();
            // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd, so the fd stays
            // open for as long as it is registered.
            unsafe { AsyncFd::register(r) }
                .map_err(|e| Error::Other(format!("polling ring buffer fd {fd}: {e}")))
        };
        Ok(Session {
            probes,
            libraries,
            arming_pauses_ns: Vec::new(),
            always_report: Vec::new(),
            health_hook: None,
            last_health: None,
            payload: wrap(rings.payload)?,
            lifecycle: wrap(rings.lifecycle)?,
            collector: Collector::new(),
            malformed: 0,
            batch: Vec::with_capacity(4096),
            held_exits: Vec::new(),
        })
    }

    /// Reads everything waiting in both rings and applies it in time order (see [`order`]). An
    /// exit held back is applied by another pass at once (a few at most), so a process's cleanup
    /// record is not delayed until the next wake-up.
    pub(crate) fn drain(&mut self, on_record: &mut dyn FnMut(&Record)) -> usize {
        self.probes.flush_log();
        let mut applied = 0;
        for _ in 0..4 {
            applied += self.pass(on_record);
            if self.held_exits.is_empty() {
                break;
            }
        }
        self.tell_health(false);
        applied
    }

    /// Calls `hook` with the loss counters, events applied and malformed records as they
    /// move (at most once a second, and once more when the session ends).
    pub fn on_health(&mut self, hook: HealthHook) {
        self.health_hook = Some(hook);
    }

    /// Passes the health figures to the hook: now if `force`, else if a second has passed.
    pub fn tell_health(&mut self, force: bool) {
        let Some(hook) = self.health_hook.as_mut() else {
            return;
        };
        let now = std::time::Instant::now();
        if !force
            && self
                .last_health
                .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(1))
        {
            return;
        }
        self.last_health = Some(now);
        if let Ok(counters) = self.probes.counters() {
            hook(&counters, self.collector.events, self.malformed);
        }
    }

    fn pass(&mut self, on_record: &mut dyn FnMut(&Record)) -> usize {
        for r in self.libraries.take_notices() {
            on_record(&r);
        }
        self.batch.clear();
        let mut late_lifecycle = Vec::new();
        read_ring(
            self.lifecycle.get_mut(),
            &mut self.batch,
            &mut self.malformed,
        );
        read_ring(self.payload.get_mut(), &mut self.batch, &mut self.malformed);
        read_ring(
            self.lifecycle.get_mut(),
            &mut late_lifecycle,
            &mut self.malformed,
        );
        order(&mut self.batch, late_lifecycle, &mut self.held_exits);
        // A process waits, stopped, for these: first, before anything else is applied.
        let opened: Vec<Event> = self
            .batch
            .iter()
            .filter(|e| e.kind == EventKind::LibraryOpened as u8)
            .copied()
            .collect();
        if !opened.is_empty() {
            self.batch
                .retain(|e| e.kind != EventKind::LibraryOpened as u8);
            for ev in &opened {
                self.library_opened(ev);
            }
            for r in self.libraries.take_notices() {
                on_record(&r);
            }
        }
        // The operations of libraries armed since the last pass, before their events.
        self.collector
            .name_operations(self.libraries.take_operations());
        for ev in &self.batch {
            // A descendant that never touched the library (a shell, `seq`): not a tt-metal
            // process, nothing to report.
            if ev.kind == EventKind::ProcessExit as u8
                && !self.collector.knows(ev.tgid, ev.instance)
                && !self.always_report.contains(&ev.tgid)
            {
                continue;
            }
            // A process gone before /proc was read: its control group from the exit's id.
            if ev.kind == EventKind::ProcessExit as u8
                && self.collector.lacks_cgroup(ev.tgid, ev.instance)
            {
                let info = crate::collector::ProcessInfo {
                    comm: None,
                    cgroup: crate::process::cgroup_by_id(ev.fields[3]),
                };
                self.collector.describe(ev.tgid, ev.instance, info);
            }
            // The first event of a process: who it is, read while it surely runs.
            if ev.kind != EventKind::ProcessExit as u8
                && !self.collector.knows(ev.tgid, ev.instance)
            {
                self.collector
                    .describe(ev.tgid, ev.instance, crate::process::info(ev.tgid));
            }
            for rec in self.collector.apply(ev) {
                match rec {
                    Record::ProcessExited(mut cleanup) => {
                        // Checked once per exit (a map read per CPU), so the live line is honest too.
                        cleanup.complete = self.malformed == 0
                            && self
                                .probes
                                .counters()
                                .is_ok_and(|c| c.values().all(|v| *v == 0));
                        self.collector.mark_exit_incomplete(&cleanup);
                        on_record(&Record::ProcessExited(cleanup));
                    }
                    rec => on_record(&rec),
                }
            }
        }
        self.batch.len()
    }

    /// A process stopped in the kernel as it mapped a library file that had no probes:
    /// arm the file (once per inode, whatever the path) and let the process go on.
    fn library_opened(&mut self, ev: &Event) {
        let [fd, dev, ino, _] = ev.fields;
        let open = std::path::PathBuf::from(format!("/proc/{}/fd/{fd}", ev.tgid));
        let shown = std::fs::read_link(&open).unwrap_or_else(|_| open.clone());
        let seen = tracer_common::FileId { dev, ino };
        let found_by = FoundBy::Loaded {
            pid: ev.tgid,
            since_ns: ev.ts_ns,
        };
        if let Err(e) = self
            .libraries
            .arm(&mut self.probes, &open, &shown, Some(seen), found_by)
        {
            // The kernel refused the probes: said, and the process goes on untraced.
            self.libraries.notice_refused(&shown, &e, ev.tgid);
        }
        // Always: a process left stopped would be worse than one traced late.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(ev.tgid as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
        self.arming_pauses_ns
            .push(crate::kernel::monotonic_ns().saturating_sub(ev.ts_ns));
    }

    /// Runs the reader until `stop` completes (then drains once more).
    pub async fn run_until<F: Future>(
        &mut self,
        stop: F,
        on_record: &mut dyn FnMut(&Record),
    ) -> F::Output {
        tokio::pin!(stop);
        let mut poll = POLL_INTERVAL;
        loop {
            tokio::select! {
                out = &mut stop => {
                    // Twice: exits held back by the first drain are applied by the second.
                    self.drain(on_record);
                    self.drain(on_record);
                    return out;
                }
                g = self.payload.readable() => { if let Ok(mut g) = g { g.clear_ready(); } }
                g = self.lifecycle.readable() => { if let Ok(mut g) = g { g.clear_ready(); } }
                _ = tokio::time::sleep(poll) => {}
            }
            let applied = self.drain(on_record);
            poll = next_poll(poll, applied);
        }
    }

    /// Ends tracing: the probes are detached after this process exits (see
    /// [`Probes::detach_in_background`]).
    pub fn detach_in_background(mut self) {
        // No process may be stopped for a library from now on; one stopped just before is
        // let go (its library is not armed any more: nobody reads its events now).
        if let Err(e) = self.probes.set_discovery(false) {
            log::warn!("turning library discovery off: {e}");
        }
        let mut late = Vec::new();
        read_ring(self.lifecycle.get_mut(), &mut late, &mut self.malformed);
        for ev in late
            .iter()
            .filter(|e| e.kind == EventKind::LibraryOpened as u8)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(ev.tgid as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
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

fn read_ring(ring: &mut RingBuf<MapData>, into: &mut Vec<Event>, malformed: &mut u64) {
    while let Some(item) = ring.next() {
        match Event::from_bytes(&item) {
            Some(ev) => into.push(ev),
            None => *malformed += 1,
        }
    }
}

/// Puts one drain's events in the order the collector must see them. The rings are read
/// lifecycle, payload, lifecycle again (`late`):
/// - an event read in the first lifecycle pass had been submitted before the payload ring was
///   read, and so had every payload event of its thread that precedes it: sorting by time puts
///   a process's exit after all its payload events;
/// - an event submitted while the payload ring was being read (a device opened just before the
///   banks built in its constructor, whose events were read) is in `late`, and is applied now,
///   in time order, so the banks find their device;
/// - but a process exit in `late` may precede payload events of its process submitted after the
///   payload ring was read: it is held back (`held`) and applied with the next drain, whose
///   payload pass holds them all.
fn order(batch: &mut Vec<Event>, late: Vec<Event>, held: &mut Vec<Event>) {
    let exits_now = std::mem::take(held);
    for ev in late {
        if ev.kind == EventKind::ProcessExit as u8 {
            held.push(ev);
        } else {
            batch.push(ev);
        }
    }
    batch.extend(exits_now);
    batch.sort_by_key(|e| e.ts_ns);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::Role;

    fn at(kind: EventKind, role: Role, ts: u64) -> Event {
        Event::new(kind, role as u16, ts, 1, 10, 10)
    }

    #[test]
    fn polling_backs_off_when_idle_and_snaps_back_on_events() {
        let mut p = POLL_INTERVAL;
        for _ in 0..10 {
            p = next_poll(p, 0);
        }
        assert_eq!(p, IDLE_POLL_INTERVAL);
        assert_eq!(next_poll(p, 3), POLL_INTERVAL);
        assert_eq!(next_poll(POLL_INTERVAL, 0), POLL_INTERVAL * 2);
    }

    #[test]
    fn a_late_device_open_is_applied_before_the_banks_it_precedes() {
        let mut batch = vec![at(EventKind::Call, Role::BankNew, 20)];
        let late = vec![at(EventKind::Call, Role::DeviceOpen, 10)];
        let mut held = Vec::new();
        order(&mut batch, late, &mut held);
        let roles: Vec<u16> = batch.iter().map(|e| e.role).collect();
        assert_eq!(roles, [Role::DeviceOpen as u16, Role::BankNew as u16]);
        assert!(held.is_empty());
    }

    #[test]
    fn a_late_exit_waits_for_the_next_drain() {
        let exit = at(EventKind::ProcessExit, Role::DeviceInit, 30);
        let mut batch = vec![at(EventKind::Call, Role::BankNew, 20)];
        let mut held = Vec::new();
        order(&mut batch, vec![exit], &mut held);
        assert_eq!(batch.len(), 1, "the exit is not applied yet");
        assert_eq!(held.len(), 1);
        // Next drain: a payload event of the process, submitted just before it exited.
        let mut next = vec![at(EventKind::Call, Role::BankFree, 25)];
        order(&mut next, Vec::new(), &mut held);
        let kinds: Vec<u8> = next.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Call as u8, EventKind::ProcessExit as u8],
            "the exit comes after the process's last payload event"
        );
        assert!(held.is_empty());
    }
}
