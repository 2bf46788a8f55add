//! What is on the devices now, per process and chip, as the record stream says: the model the
//! live views share (`tt-tracer top`, the metrics exporter). Pure: fed by records only, no
//! clock, no I/O.
//!
//! Buffers are booked per allocator owner (a chip's own allocator, a mesh's lock-step one) and
//! type, with the figures the records carry (the collector's books, not sums kept here); a chip
//! holds its own allocator's buffers plus, at their size, every buffer of each mesh it is part of
//! (tt-metal places a mesh buffer once, at the same address on every chip of the mesh).

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    collector::{
        identity::Cgroup, ledger::Tally, memory::BufferType, Cleanup, ExitStatus, KernelClass,
        Record,
    },
    roles::Role,
};

/// Whose allocator a buffer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// The chip's own allocator.
    Chip(i64),
    /// A mesh's lock-step allocator.
    Mesh(u32),
    /// Not known (the probes saw no allocator for it).
    Unknown,
}

impl Owner {
    /// The owner a buffer record names: its chip's allocator, else its mesh's.
    pub fn of(chip: Option<i64>, mesh: Option<u32>) -> Owner {
        match (chip, mesh) {
            (Some(c), _) => Owner::Chip(c),
            (None, Some(m)) => Owner::Mesh(m),
            (None, None) => Owner::Unknown,
        }
    }
}

/// Live figures of some buffers: bytes and count now, and the most bytes ever at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Books {
    pub bytes: u64,
    pub count: u64,
    pub peak: u64,
}

impl Books {
    fn set(&mut self, bytes: u64, count: u64) {
        self.bytes = bytes;
        self.count = count;
        self.peak = self.peak.max(bytes);
    }
}

/// One chip as one process sees it. The chip `None` holds the buffers no chip can be named for
/// (an unknown allocator, or a mesh whose chips are not known).
#[derive(Clone, Debug, Default)]
pub struct ChipLive {
    /// Opened and not closed since.
    pub open: bool,
    /// Per buffer type: this chip's share of every allocator it is part of.
    pub buffers: BTreeMap<BufferType, Books>,
    pub circular_buffers: Books,
    /// Kernel binaries loaded onto it so far: system (fabric, dispatch, init).
    pub system_kernels: Tally,
    /// Application kernels loaded onto it so far (written to cores, or in a program's binary
    /// buffer).
    pub application_kernels: Tally,
    /// What its buffers held when the process exited (released by the exit).
    pub left: Books,
}

impl ChipLive {
    /// Bytes of `t` live now.
    pub fn live(&self, t: BufferType) -> u64 {
        self.buffers.get(&t).map_or(0, |b| b.bytes)
    }

    /// Most bytes of `t` ever live at once.
    pub fn peak(&self, t: BufferType) -> u64 {
        self.buffers.get(&t).map_or(0, |b| b.peak)
    }
}

/// A bring-up phase (or other context) running on one of the process's threads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveContext {
    pub tid: u32,
    pub role: Role,
    pub chip: Option<i64>,
    pub since_ns: u64,
}

/// How a process ended and what it left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exited {
    pub status: ExitStatus,
    pub exit_ns: u64,
    /// Device buffers it still held (released by the exit).
    pub leaked_buffers: u64,
    pub leaked_bytes: u64,
}

/// One traced process.
#[derive(Clone, Debug, Default)]
pub struct ProcessLive {
    pub pid: u32,
    pub comm: Option<String>,
    pub cgroup: Option<Cgroup>,
    /// The library id its first event came from.
    pub library: Option<u16>,
    /// Mesh → its chips (from the records that announce the mesh).
    pub meshes: BTreeMap<u32, Vec<i64>>,
    /// Per allocator owner and buffer type, the owner's books.
    pub owners: BTreeMap<(Owner, BufferType), Books>,
    pub chips: BTreeMap<Option<i64>, ChipLive>,
    /// Contexts entered and not left, oldest first.
    pub contexts: Vec<ActiveContext>,
    /// The ttnn operation running now (the last one begun, on any of its threads).
    pub operation: Option<String>,
    /// Workloads enqueued so far.
    pub enqueued: u64,
    pub exited: Option<Exited>,
}

impl ProcessLive {
    fn new(pid: u32) -> ProcessLive {
        ProcessLive {
            pid,
            ..ProcessLive::default()
        }
    }

    /// The chips an owner's buffers lie on (`[None]` when they cannot be named).
    pub fn chips_of(&self, owner: Owner) -> Vec<Option<i64>> {
        match owner {
            Owner::Chip(c) => vec![Some(c)],
            Owner::Mesh(m) => match self.meshes.get(&m) {
                Some(chips) if !chips.is_empty() => chips.iter().copied().map(Some).collect(),
                _ => vec![None],
            },
            Owner::Unknown => vec![None],
        }
    }

    /// The context most recently entered and still active on `chip` (or on no chip in
    /// particular), if any.
    pub fn context_on(&self, chip: Option<i64>) -> Option<&ActiveContext> {
        self.contexts
            .iter()
            .rev()
            .find(|c| c.chip.is_none() || chip.is_none() || c.chip == chip)
    }

    /// Recomputes every chip's share of buffer type `t` from the owners' books.
    fn rebook(&mut self, t: BufferType) {
        let mut sums: BTreeMap<Option<i64>, (u64, u64)> = BTreeMap::new();
        for ((owner, ty), books) in &self.owners {
            if *ty != t {
                continue;
            }
            for chip in self.chips_of(*owner) {
                let s = sums.entry(chip).or_default();
                s.0 = s.0.saturating_add(books.bytes);
                s.1 = s.1.saturating_add(books.count);
            }
        }
        for (chip, live) in self.chips.iter_mut() {
            if !sums.contains_key(chip) {
                if let Some(b) = live.buffers.get_mut(&t) {
                    b.set(0, 0);
                }
            }
        }
        for (chip, (bytes, count)) in sums {
            self.chips
                .entry(chip)
                .or_default()
                .buffers
                .entry(t)
                .or_default()
                .set(bytes, count);
        }
    }

    /// Sets owner's books of `t` (`count` changed by `delta`) and every chip's share.
    fn book(&mut self, owner: Owner, t: BufferType, live_bytes: u64, delta: i64) {
        let b = self.owners.entry((owner, t)).or_default();
        let count = b.count.saturating_add_signed(delta);
        b.set(live_bytes, count);
        self.rebook(t);
    }

    fn exit(&mut self, cleanup: &Cleanup) {
        self.exited = Some(Exited {
            status: cleanup.status,
            exit_ns: cleanup.exit_ns,
            leaked_buffers: cleanup.leaks.len() as u64,
            leaked_bytes: cleanup
                .leaks
                .iter()
                .fold(0u64, |s, l| s.saturating_add(l.buffer.size)),
        });
        if self.comm.is_none() {
            self.comm.clone_from(&cleanup.comm);
        }
        self.contexts.clear();
        // The exit released everything: what each chip held is what it left.
        for chip in self.chips.values_mut() {
            let (bytes, count) = chip.buffers.values().fold((0u64, 0u64), |s, b| {
                (s.0.saturating_add(b.bytes), s.1.saturating_add(b.count))
            });
            chip.left = Books {
                bytes,
                count,
                peak: bytes,
            };
            for b in chip.buffers.values_mut() {
                b.set(0, 0);
            }
            chip.circular_buffers.set(0, 0);
            chip.open = false;
        }
        for b in self.owners.values_mut() {
            b.set(0, 0);
        }
    }
}

/// Every traced process, and the libraries armed or refused.
#[derive(Clone, Debug, Default)]
pub struct LiveState {
    processes: BTreeMap<u32, ProcessLive>,
    /// Library ids armed (from their records, or a process's first event).
    pub libraries: BTreeSet<u16>,
    /// Library files refused.
    pub refused: u64,
}

impl LiveState {
    pub fn new() -> LiveState {
        LiveState::default()
    }

    pub fn processes(&self) -> impl Iterator<Item = &ProcessLive> {
        self.processes.values()
    }

    pub fn process(&self, pid: u32) -> Option<&ProcessLive> {
        self.processes.get(&pid)
    }

    /// Forgets a process (an ended one whose time to be shown is over).
    pub fn remove(&mut self, pid: u32) -> Option<ProcessLive> {
        self.processes.remove(&pid)
    }

    /// The process's entry; a pid seen again after its exit is a new process (pid reuse).
    fn entry(&mut self, pid: u32) -> &mut ProcessLive {
        if self.processes.get(&pid).is_some_and(|p| p.exited.is_some()) {
            self.processes.remove(&pid);
        }
        self.processes
            .entry(pid)
            .or_insert_with(|| ProcessLive::new(pid))
    }

    /// Whether `r` is about a pid whose entry has ended: applying it starts a new process.
    pub fn starts_over(&self, r: &Record) -> Option<u32> {
        let pid = pid_of(r)?;
        if matches!(r, Record::ProcessExited(_)) {
            return None;
        }
        self.processes
            .get(&pid)
            .is_some_and(|p| p.exited.is_some())
            .then_some(pid)
    }

    /// Applies one record; returns the pid whose entry it changed, if any.
    pub fn apply(&mut self, r: &Record) -> Option<u32> {
        match r {
            Record::LibraryTraced { id, .. } => {
                self.libraries.insert(*id);
                return None;
            }
            Record::LibraryRefused { .. } => {
                self.refused += 1;
                return None;
            }
            Record::ProcessExited(cleanup) => {
                // A second exit of the same pid (never expected) must not start a new entry.
                let p = self
                    .processes
                    .entry(cleanup.pid)
                    .or_insert_with(|| ProcessLive::new(cleanup.pid));
                p.exit(cleanup);
                return Some(cleanup.pid);
            }
            _ => {}
        }
        let pid = pid_of(r)?;
        if let Record::ProcessStarted {
            library: Some(id), ..
        } = r
        {
            self.libraries.insert(*id);
        }
        let p = self.entry(pid);
        match r {
            Record::ProcessStarted {
                library,
                comm,
                cgroup,
                ..
            } => {
                p.library = p.library.or(*library);
                if comm.is_some() {
                    p.comm.clone_from(comm);
                }
                if cgroup.is_some() {
                    p.cgroup.clone_from(cgroup);
                }
            }
            Record::DeviceOpened { chip, .. } => {
                p.chips.entry(Some(*chip)).or_default().open = true;
            }
            Record::DeviceClosed { chip, .. } => {
                p.chips.entry(Some(*chip)).or_default().open = false;
            }
            Record::ContextEntered {
                tid,
                ts_ns,
                role,
                chip,
                ..
            } => p.contexts.push(ActiveContext {
                tid: *tid,
                role: *role,
                chip: *chip,
                since_ns: *ts_ns,
            }),
            Record::ContextExited { tid, role, .. } => {
                if let Some(i) = p
                    .contexts
                    .iter()
                    .rposition(|c| c.tid == *tid && c.role == *role)
                {
                    p.contexts.remove(i);
                }
            }
            Record::KernelLoaded {
                chip, class, bytes, ..
            } => {
                let c = p.chips.entry(Some(*chip)).or_default();
                match class {
                    KernelClass::Application => c.application_kernels.add(*bytes),
                    KernelClass::Fabric | KernelClass::Dispatch | KernelClass::Init => {
                        c.system_kernels.add(*bytes)
                    }
                }
            }
            Record::ProgramBinariesPlaced { chips, bytes, .. } => {
                for chip in chips {
                    p.chips
                        .entry(Some(*chip))
                        .or_default()
                        .application_kernels
                        .add(*bytes);
                }
            }
            Record::MeshOpened { mesh, chips, .. } => {
                p.meshes.insert(*mesh, chips.clone());
                for chip in chips {
                    p.chips.entry(Some(*chip)).or_default();
                }
                // Buffers booked before the mesh's chips were known move onto them.
                let types: BTreeSet<BufferType> = p
                    .owners
                    .keys()
                    .filter(|(o, _)| *o == Owner::Mesh(*mesh))
                    .map(|(_, t)| *t)
                    .collect();
                for t in types {
                    p.rebook(t);
                }
            }
            Record::BufferAllocated {
                chip,
                mesh,
                buffer_type,
                live_bytes,
                ..
            } => p.book(Owner::of(*chip, *mesh), *buffer_type, *live_bytes, 1),
            Record::BufferFreed {
                chip,
                mesh,
                buffer_type,
                live_bytes,
                ..
            } => p.book(Owner::of(*chip, *mesh), *buffer_type, *live_bytes, -1),
            Record::BuffersCleared {
                chip,
                mesh,
                buffer_type,
                count,
                live_bytes,
                ..
            } => p.book(
                Owner::of(*chip, *mesh),
                *buffer_type,
                *live_bytes,
                -(i64::try_from(*count).unwrap_or(i64::MAX)),
            ),
            Record::CircularBufferAllocated {
                chip, live_bytes, ..
            } => {
                let cb = &mut p.chips.entry(Some(*chip)).or_default().circular_buffers;
                let count = cb.count.saturating_add(1);
                cb.set(*live_bytes, count);
            }
            Record::CircularBuffersReleased { chip, .. } => {
                p.chips
                    .entry(Some(*chip))
                    .or_default()
                    .circular_buffers
                    .set(0, 0);
            }
            Record::WorkloadEnqueued { total, .. } => p.enqueued = p.enqueued.max(*total),
            Record::OpBegan { op, .. } => p.operation = Some(op.to_string()),
            Record::OpEnded { .. } => p.operation = None,
            // Firmware, bank construction, program-binary frees, mesh close and unmatched
            // events only make the process known.
            Record::FirmwareLoaded { .. }
            | Record::BankBuilt { .. }
            | Record::ProgramBinariesFreed { .. }
            | Record::MeshClosed { .. }
            | Record::OpProgramCache { .. }
            | Record::Unmatched { .. } => {}
            Record::LibraryTraced { .. }
            | Record::LibraryRefused { .. }
            | Record::ProcessExited(_) => unreachable!("handled above"),
        }
        Some(pid)
    }
}

/// The process a record is about (None for library records).
pub fn pid_of(r: &Record) -> Option<u32> {
    Some(match r {
        Record::ProcessStarted { pid, .. }
        | Record::DeviceOpened { pid, .. }
        | Record::ContextEntered { pid, .. }
        | Record::ContextExited { pid, .. }
        | Record::KernelLoaded { pid, .. }
        | Record::FirmwareLoaded { pid, .. }
        | Record::ProgramBinariesPlaced { pid, .. }
        | Record::DeviceClosed { pid, .. }
        | Record::MeshClosed { pid, .. }
        | Record::MeshOpened { pid, .. }
        | Record::BankBuilt { pid, .. }
        | Record::BufferAllocated { pid, .. }
        | Record::BufferFreed { pid, .. }
        | Record::BuffersCleared { pid, .. }
        | Record::ProgramBinariesFreed { pid, .. }
        | Record::CircularBufferAllocated { pid, .. }
        | Record::CircularBuffersReleased { pid, .. }
        | Record::WorkloadEnqueued { pid, .. }
        | Record::OpBegan { pid, .. }
        | Record::OpProgramCache { pid, .. }
        | Record::OpEnded { pid, .. }
        | Record::Unmatched { pid, .. } => *pid,
        Record::ProcessExited(c) => c.pid,
        Record::LibraryTraced { .. } | Record::LibraryRefused { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{collector::memory::BufferType::*, sinks::test_records::*};

    #[test]
    fn mesh_buffers_count_on_every_chip_and_chip_buffers_on_their_own() {
        let mut s = LiveState::new();
        for r in [
            mesh(1, 5, &[0, 1]),
            alloc(1, None, Some(5), Dram, 8),
            alloc(1, Some(1), None, Dram, 4),
            alloc(1, None, None, L1, 2),
            free(1, None, Some(5), Dram, 0),
        ] {
            s.apply(&r);
        }
        let p = s.process(1).unwrap();
        assert_eq!(
            p.chips[&Some(0)].buffers[&Dram],
            Books {
                bytes: 0,
                count: 0,
                peak: 8
            }
        );
        assert_eq!(
            p.chips[&Some(1)].buffers[&Dram],
            Books {
                bytes: 4,
                count: 1,
                peak: 12
            }
        );
        assert_eq!(p.chips[&None].live(L1), 2);
    }

    #[test]
    fn buffers_booked_before_the_mesh_is_known_move_onto_its_chips() {
        let mut s = LiveState::new();
        s.apply(&alloc(1, None, Some(5), Dram, 8));
        assert_eq!(s.process(1).unwrap().chips[&None].live(Dram), 8);
        s.apply(&mesh(1, 5, &[2, 3]));
        let p = s.process(1).unwrap();
        assert_eq!(p.chips[&None].live(Dram), 0);
        assert_eq!(p.chips[&Some(2)].live(Dram), 8);
        assert_eq!(p.chips[&Some(3)].live(Dram), 8);
    }

    #[test]
    fn contexts_are_active_between_enter_and_exit_on_their_thread() {
        let mut s = LiveState::new();
        let enter = |tid, role| Record::ContextEntered {
            pid: 1,
            tid,
            ts_ns: 1,
            role,
            chip: Some(0),
        };
        s.apply(&enter(1, Role::DeviceInit));
        s.apply(&enter(2, Role::FabricContext));
        let now = |s: &LiveState| s.process(1).unwrap().context_on(Some(0)).map(|c| c.role);
        assert_eq!(now(&s), Some(Role::FabricContext));
        s.apply(&Record::ContextExited {
            pid: 1,
            tid: 2,
            ts_ns: 2,
            role: Role::FabricContext,
            chip: Some(0),
            duration_ns: Some(1),
        });
        assert_eq!(now(&s), Some(Role::DeviceInit));
        assert_eq!(s.process(1).unwrap().context_on(Some(4)), None);
    }
}
