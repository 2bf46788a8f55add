//! The collector: turns decoded probe events into a per-process × per-device ledger.
//!
//! Pure: no I/O, no clocks, no kernel. Events go in through [`Collector::apply`], records for
//! the live stream come out, and [`Collector::processes`] is the final state. Processes are keyed
//! by (pid, instance) so a reused pid is never merged with a process that ended.
//!
//! - [`ledger`]: what is kept (kernels by origin, devices, meshes, processes);
//! - [`memory`]: device-memory books (buffers by type, live allocations, circular buffers);
//! - [`attribution`]: which chip or mesh a bank, and so a buffer, belongs to;
//! - [`calls`]: each role's event fields, typed;
//! - [`records`]: what is told as it happens (and the cleanup record of an exit).

mod attribution;
mod calls;
pub mod identity;
pub mod ledger;
pub mod memory;
pub mod operations;
pub mod records;

use std::collections::{BTreeMap, HashMap, VecDeque};

use tracer_common::{Event, EventKind, Origin};

use self::{
    attribution::Owner,
    calls::Call,
    ledger::MeshLedger,
    memory::{Allocation, BufferType, OwnerId},
};
pub use self::{
    identity::{Cgroup, ProcessInfo},
    ledger::{
        Cleanup, CoreType, DeviceLedger, ExitStatus, KernelClass, Kernels, Leak, ProcKey,
        ProcessLedger, Tally,
    },
    operations::{CacheOutcome, CacheProbes, OpInfo, OpLedger, Operations},
    records::Record,
};
use crate::roles::Role;

/// Ended processes kept for the final report unless told otherwise ([`Collector::with_history`]).
pub const DEFAULT_HISTORY: usize = 1024;

/// Pids of the last exits remembered for [`Collector::has_ended`], whatever the history keeps.
const RECENT_EXITS: usize = 64;

pub struct Collector {
    live: BTreeMap<ProcKey, ProcessLedger>,
    /// Ended processes, oldest first, at most `history` of them.
    ended: VecDeque<ProcessLedger>,
    history: usize,
    /// Ended processes dropped from `ended` to keep it within `history`.
    pub history_dropped: u64,
    /// What the session told about processes whose first event has not arrived yet.
    described: HashMap<ProcKey, ProcessInfo>,
    recent_exits: VecDeque<u32>,
    /// Context entry times keyed by (process, thread, depth): a context nested in one of the
    /// same role (an overload calling another) keeps its own start.
    context_starts: HashMap<(u32, u32, u8), u64>,
    /// The operation each `op_launch` attach point names, by cookie (told by the session).
    operations: HashMap<u64, OpInfo>,
    pub events: u64,
    /// Events naming a role or kind this build does not know (a newer catalog, a bad record).
    pub unknown_events: u64,
}

impl Default for Collector {
    fn default() -> Self {
        Self::with_history(DEFAULT_HISTORY)
    }
}

/// What one event yields: a [`Record::ProcessStarted`] the first time its process is seen,
/// then the event's own record.
#[derive(Debug, Default)]
pub struct Records {
    started: Option<Record>,
    record: Option<Record>,
    /// A second record of the same event (a mesh allocator's context names a new mesh).
    also: Option<Record>,
}

impl Iterator for Records {
    type Item = Record;
    fn next(&mut self) -> Option<Record> {
        self.started
            .take()
            .or_else(|| self.record.take())
            .or_else(|| self.also.take())
    }
}

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }

    /// A collector keeping at most `history` ended processes for the report (older ones are
    /// dropped and counted in `history_dropped`): memory stays bounded however many come and go.
    pub fn with_history(history: usize) -> Self {
        Collector {
            live: BTreeMap::new(),
            ended: VecDeque::new(),
            history,
            history_dropped: 0,
            described: HashMap::new(),
            recent_exits: VecDeque::new(),
            context_starts: HashMap::new(),
            operations: HashMap::new(),
            events: 0,
            unknown_events: 0,
        }
    }

    /// Whether a live ledger exists for this process instance (the session describes the
    /// ones it does not know).
    pub fn knows(&self, pid: u32, instance: u64) -> bool {
        self.live.contains_key(&ProcKey { pid, instance })
    }

    /// Whether a live process's control group is still unknown (not read from /proc in time).
    pub fn lacks_cgroup(&self, pid: u32, instance: u64) -> bool {
        self.live
            .get(&ProcKey { pid, instance })
            .is_some_and(|p| p.cgroup.is_none())
    }

    /// Who a process is (the session read it from /proc). Applied to its live ledger, or kept
    /// until its first event creates one; its `ProcessStarted` record then carries it.
    pub fn describe(&mut self, pid: u32, instance: u64, info: ProcessInfo) {
        let key = ProcKey { pid, instance };
        match self.live.get_mut(&key) {
            Some(p) => p.set_info(info),
            None => {
                self.described.insert(key, info);
            }
        }
    }

    /// Which operation each attach-point cookie names (as the libraries were armed).
    pub fn name_operations(&mut self, named: impl IntoIterator<Item = (u64, OpInfo)>) {
        self.operations.extend(named);
    }

    /// Applies one event; returns what to tell the user.
    pub fn apply(&mut self, ev: &Event) -> Records {
        self.events += 1;
        let key = ProcKey {
            pid: ev.tgid,
            instance: ev.instance,
        };
        let kind = EventKind::from_repr(ev.kind);
        match kind {
            Some(EventKind::ProcessExit) => {
                let started = ledger(&mut self.live, &mut self.described, key, ev).1;
                return Records {
                    started,
                    record: Some(self.process_exit(key, ev)),
                    also: None,
                };
            }
            // Handled by the session (it arms the library); nothing for the ledger.
            Some(EventKind::LibraryOpened) => return Records::default(),
            _ => {}
        }
        let (Some(kind), Some(role)) = (kind, Role::from_repr(ev.role)) else {
            self.unknown_events += 1;
            return Records::default();
        };
        let (proc, started) = ledger(&mut self.live, &mut self.described, key, ev);
        proc.last_ns = proc.last_ns.max(ev.ts_ns);
        let (record, also) = match kind {
            EventKind::ContextEnter if role == Role::OpLaunch => {
                match self.operations.get(&ev.context_this) {
                    Some(info) => (proc.op_began(ev, info), None),
                    None => (proc.unmatched(role, ev), None),
                }
            }
            EventKind::ContextExit if role == Role::OpLaunch => (proc.op_ended(role, ev), None),
            EventKind::ContextEnter => {
                self.context_starts
                    .insert((ev.tgid, ev.tid, ev.depth), ev.ts_ns);
                proc.context_entered(role, ev)
            }
            EventKind::ContextExit => {
                let start = self.context_starts.remove(&(ev.tgid, ev.tid, ev.depth));
                (proc.context_exited(role, ev, start), None)
            }
            EventKind::Call => match proc.call(role, Call::decode(role, ev), ev) {
                Some(record) => (record, None),
                // Nothing new to tell (a program-cache outcome told already).
                None => {
                    return Records {
                        started,
                        ..Default::default()
                    }
                }
            },
            EventKind::ProcessExit | EventKind::LibraryOpened => unreachable!("handled above"),
        };
        Records {
            started,
            record: Some(record),
            also,
        }
    }

    fn process_exit(&mut self, key: ProcKey, ev: &Event) -> Record {
        let mut proc = self
            .live
            .remove(&key)
            .expect("the ledger was created just before");
        let cleanup = proc.exited(ev);
        self.context_starts.retain(|(pid, _, _), _| *pid != key.pid);
        self.described.remove(&key);
        if self.recent_exits.len() == RECENT_EXITS {
            self.recent_exits.pop_front();
        }
        self.recent_exits.push_back(key.pid);
        self.ended.push_back(proc);
        while self.ended.len() > self.history {
            self.ended.pop_front();
            self.history_dropped += 1;
        }
        Record::ProcessExited(cleanup)
    }

    /// Records that an exit's cleanup was incomplete (events had been lost by then).
    pub fn mark_exit_incomplete(&mut self, cleanup: &Cleanup) {
        if cleanup.complete {
            return;
        }
        if let Some(p) = self.ended.iter_mut().rev().find(|p| {
            p.pid == cleanup.pid && p.exit.as_ref().map(|e| e.exit_ns) == Some(cleanup.exit_ns)
        }) {
            if let Some(e) = p.exit.as_mut() {
                e.complete = false;
            }
        }
    }

    /// Every process kept, ended ones first (in the order they ended), then live ones.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessLedger> {
        self.ended.iter().chain(self.live.values())
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Ended processes kept for the report.
    pub fn history_len(&self) -> usize {
        self.ended.len()
    }

    /// Whether the process `pid` (any instance) has ended and none of that pid is live.
    pub fn has_ended(&self, pid: u32) -> bool {
        (self.recent_exits.contains(&pid) || self.ended.iter().any(|p| p.pid == pid))
            && !self.live.keys().any(|k| k.pid == pid)
    }

    /// Per-process state outside the ledgers (for the bounded-memory check): context starts
    /// and descriptions waiting for their process.
    pub fn pending_len(&self) -> usize {
        self.context_starts.len() + self.described.len()
    }
}

/// The live ledger of `key`, created (with a `ProcessStarted` record) on its first event.
fn ledger<'a>(
    live: &'a mut BTreeMap<ProcKey, ProcessLedger>,
    described: &mut HashMap<ProcKey, ProcessInfo>,
    key: ProcKey,
    ev: &Event,
) -> (&'a mut ProcessLedger, Option<Record>) {
    let mut started = None;
    let proc = live.entry(key).or_insert_with(|| {
        let mut p = ProcessLedger::new(key, ev.ts_ns);
        if let Some(info) = described.remove(&key) {
            p.set_info(info);
        }
        started = Some(p.started_record());
        p
    });
    if proc.library.is_none() && ev.library != 0 {
        proc.library = Some(ev.library);
        // Learnt only now: the start record says so if it is still to be sent.
        if let Some(Record::ProcessStarted { library, .. }) = started.as_mut() {
            *library = proc.library;
        }
    }
    (proc, started)
}

/// One handler per event: contexts entered and left, each role's call, the exit.
impl ProcessLedger {
    fn context_entered(&mut self, role: Role, ev: &Event) -> (Record, Option<Record>) {
        let also = match role {
            Role::MeshOpen => {
                self.attribution.mesh_open_began(ev.context_this);
                None
            }
            Role::MeshAllocator => Some(self.mesh_allocator_built(ev)),
            _ => None,
        };
        let entered = Record::ContextEntered {
            pid: self.pid,
            tid: ev.tid,
            ts_ns: ev.ts_ns,
            role,
            chip: self.attribution.chip_of(ev.context_this),
        };
        (entered, also)
    }

    /// A mesh's lock-step allocator: its chips are those opened in the enclosing
    /// `MeshDevice::create`, if it is one.
    fn mesh_allocator_built(&mut self, ev: &Event) -> Record {
        let index = self.meshes.len() as u32 + 1;
        let chips = if Origin::from_repr(ev.parent_origin) == Some(Origin::MeshOpen) {
            self.attribution.chips_opened_in(ev.parent_this)
        } else {
            Vec::new()
        };
        for c in &chips {
            self.device(*c).mesh = Some(index);
        }
        self.meshes.insert(
            index,
            MeshLedger {
                index,
                chips: chips.clone(),
                opened_ns: ev.ts_ns,
                ..Default::default()
            },
        );
        self.attribution
            .mesh_built(index, ev.context_this, calls::mesh_of_allocator(ev));
        Record::MeshOpened {
            pid: self.pid,
            tid: ev.tid,
            ts_ns: ev.ts_ns,
            mesh: index,
            chips,
        }
    }

    fn context_exited(&mut self, role: Role, ev: &Event, start: Option<u64>) -> Record {
        let chip = self.attribution.chip_of(ev.context_this);
        let duration_ns = start.map(|s| ev.ts_ns.saturating_sub(s));
        if let Some(d) = duration_ns {
            let phases = match chip {
                Some(c) => &mut self.device(c).phases,
                None => &mut self.phases,
            };
            let total = phases.entry(role).or_default();
            *total = total.saturating_add(d);
        }
        Record::ContextExited {
            pid: self.pid,
            tid: ev.tid,
            ts_ns: ev.ts_ns,
            role,
            chip,
            duration_ns,
        }
    }

    fn op_began(&mut self, ev: &Event, info: &OpInfo) -> Record {
        let op = self.operations.began(ev.tid, info, ev.ts_ns);
        Record::OpBegan {
            pid: self.pid,
            tid: ev.tid,
            ts_ns: ev.ts_ns,
            op,
        }
    }

    fn op_ended(&mut self, role: Role, ev: &Event) -> Record {
        match self.operations.ended(ev.tid, ev.ts_ns) {
            Some(e) => Record::OpEnded {
                pid: self.pid,
                tid: ev.tid,
                ts_ns: ev.ts_ns,
                op: e.name,
                duration_ns: e.duration_ns,
                cache: e.outcome,
            },
            None => self.unmatched(role, ev),
        }
    }

    /// The running operation's program-cache outcome: a record the first time it is told
    /// (None when told again).
    fn op_cache(&mut self, role: Role, hit: bool, ev: &Event) -> Option<Record> {
        let outcome = match hit {
            true => CacheOutcome::Hit,
            false => CacheOutcome::Miss,
        };
        match self.operations.cache_looked_up(ev.tid, outcome) {
            Some((op, true)) => Some(Record::OpProgramCache {
                pid: self.pid,
                tid: ev.tid,
                ts_ns: ev.ts_ns,
                op,
                outcome,
            }),
            Some((_, false)) => None,
            None => Some(self.unmatched(role, ev)),
        }
    }

    /// Books `f` on the row of the operation running on the event's thread; returns its name.
    fn on_current_op(
        &mut self,
        ev: &Event,
        f: impl FnOnce(&mut OpLedger),
    ) -> Option<std::sync::Arc<str>> {
        let row = self.operations.row(self.operations.current(ev.tid)?)?;
        f(row);
        Some(row.name.clone())
    }

    /// Buffers of `owner` still allocated at `now`, each naming its operation.
    fn outstanding(&self, owner: OwnerId, now: u64) -> Vec<memory::Outstanding> {
        self.live
            .of_owner(owner, now, false, &|op| self.operations.name(op))
    }

    /// The record of a call; None when it tells nothing new.
    fn call(&mut self, role: Role, call: Call, ev: &Event) -> Option<Record> {
        Some(match call {
            Call::DeviceOpen { device, chip } => self.device_opened(ev, device, chip),
            Call::KernelBinaryWrite {
                bytes,
                chip,
                address,
            } => {
                let class = KernelClass::of(Origin::from_repr(ev.origin));
                self.kernel_written(ev, class, bytes, chip, address)
            }
            Call::DeviceClose { device } => self
                .device_closed(ev, device)
                .unwrap_or_else(|| self.unmatched(role, ev)),
            Call::MeshClose { mesh } => self.mesh_closed(ev, mesh),
            Call::BankNew { bank, buffer_type } => self.bank_built(ev, bank, buffer_type),
            Call::BankAllocate {
                bank,
                size,
                address,
            } => self.allocated(ev, bank, size, address),
            Call::BankFree { bank, address } => match self.live.remove(bank, address) {
                Some(a) => self.released(ev, address, a),
                None => self.unmatched(role, ev),
            },
            Call::BankFreeAll { bank } => self.bank_cleared(ev, bank),
            Call::CbAllocate { size, device } => match self.attribution.chip_of(device) {
                Some(chip) => {
                    let op = self.on_current_op(ev, |o| o.circular_buffers.add(size));
                    let pid = self.pid;
                    let cbs = &mut self.device(chip).circular_buffers;
                    cbs.allocate(size);
                    Record::CircularBufferAllocated {
                        pid,
                        tid: ev.tid,
                        ts_ns: ev.ts_ns,
                        chip,
                        size,
                        live_bytes: cbs.live_bytes,
                        op,
                    }
                }
                None => self.unmatched(role, ev),
            },
            Call::CbFreeAll { device } => match self.attribution.chip_of(device) {
                Some(chip) => {
                    let pid = self.pid;
                    let cbs = &mut self.device(chip).circular_buffers;
                    let (count, bytes) = (cbs.live, cbs.live_bytes);
                    cbs.clear();
                    Record::CircularBuffersReleased {
                        pid,
                        tid: ev.tid,
                        ts_ns: ev.ts_ns,
                        chip,
                        count,
                        bytes,
                    }
                }
                None => self.unmatched(role, ev),
            },
            Call::WorkloadEnqueue => {
                self.workloads_enqueued += 1;
                let op = self.on_current_op(ev, |o| o.enqueues += 1);
                Record::WorkloadEnqueued {
                    pid: self.pid,
                    tid: ev.tid,
                    ts_ns: ev.ts_ns,
                    total: self.workloads_enqueued,
                    op,
                }
            }
            // The hit handler and the enqueue both tell a hit: one record.
            Call::OpCache { hit } => return self.op_cache(role, hit, ev),
            Call::FirmwareWrite {
                bytes,
                chip,
                core_type,
            } => match KernelClass::of(Origin::from_repr(ev.origin)) {
                // The same functions write ethernet kernels (EthernetKernel::configure): inside
                // fabric or dispatch bring-up they are those system kernels, not firmware.
                class @ (KernelClass::Fabric | KernelClass::Dispatch) => {
                    self.kernel_written(ev, class, bytes, chip, 0)
                }
                _ => self.firmware_written(ev, bytes, chip, CoreType::from_raw(core_type)),
            },
            // A context role reported as a plain call: only a foreign catalog could do that.
            Call::Context => self.unmatched(role, ev),
        })
    }

    /// An event about something never seen: counted, and told.
    pub(super) fn unmatched(&mut self, role: Role, ev: &Event) -> Record {
        self.unmatched += 1;
        Record::Unmatched {
            pid: self.pid,
            tid: ev.tid,
            ts_ns: ev.ts_ns,
            role,
        }
    }

    /// The chip or mesh an owner is, for records.
    fn placement(&self, owner: OwnerId) -> (Option<i64>, Option<u32>) {
        match self.attribution.owner(owner) {
            Owner::Chip(c) => (Some(c), None),
            Owner::Mesh(m) => (None, Some(m)),
            Owner::Scratch | Owner::Unattributed => (None, None),
        }
    }

    /// Every buffer of a bank released at once (device or mesh close).
    fn bank_cleared(&mut self, ev: &Event, bank: u64) -> Record {
        let (buffer_type, owner) = self.attribution.bank(bank);
        let (mut count, mut bytes) = (0u64, 0u64);
        for (address, a) in self.live.drain_bank(bank) {
            if a.kernel_binaries {
                self.released(ev, address, a);
            } else {
                self.books(a.owner).clear(a.buffer_type, a.size);
                if let Some(row) = a.op.and_then(|op| self.operations.row(op)) {
                    row.live.remove(a.size);
                    row.released_at_close.add(a.size);
                }
                count += 1;
                bytes = bytes.saturating_add(a.size);
            }
        }
        let (chip, mesh) = self.placement(owner);
        Record::BuffersCleared {
            pid: self.pid,
            tid: ev.tid,
            ts_ns: ev.ts_ns,
            chip,
            mesh,
            buffer_type,
            count,
            bytes,
            live_bytes: self.live_bytes(owner, buffer_type),
        }
    }

    fn live_bytes(&mut self, owner: OwnerId, t: BufferType) -> u64 {
        self.books(owner)
            .by_type
            .get(&t)
            .map_or(0, |b| b.live_bytes)
    }

    fn device_opened(&mut self, ev: &Event, device: u64, chip: i64) -> Record {
        self.attribution.device_opened(device, chip);
        if Origin::from_repr(ev.origin) == Some(Origin::MeshOpen) {
            self.attribution.chip_opened_in_mesh(ev.context_this, chip);
        }
        let d = self.device(chip);
        d.opened_ns = Some(ev.ts_ns);
        d.closed_ns = None;
        Record::DeviceOpened {
            pid: self.pid,
            ts_ns: ev.ts_ns,
            chip,
        }
    }

    fn kernel_written(
        &mut self,
        ev: &Event,
        class: KernelClass,
        bytes: u64,
        chip: i64,
        address: u64,
    ) -> Record {
        let op = self.on_current_op(ev, |o| o.kernels.add(bytes));
        let d = self.device(chip);
        d.loaded.add_class(class, bytes);
        d.resident.add_class(class, bytes);
        d.first_load_ns.get_or_insert(ev.ts_ns);
        d.last_load_ns = Some(ev.ts_ns);
        Record::KernelLoaded {
            pid: self.pid,
            tid: ev.tid,
            ts_ns: ev.ts_ns,
            chip,
            class,
            bytes,
            address,
            op,
        }
    }

    fn firmware_written(
        &mut self,
        ev: &Event,
        bytes: u64,
        chip: i64,
        core_type: CoreType,
    ) -> Record {
        let d = self.device(chip);
        d.loaded.add_firmware(bytes);
        d.resident.add_firmware(bytes);
        d.firmware_by_core.entry(core_type).or_default().add(bytes);
        Record::FirmwareLoaded {
            pid: self.pid,
            tid: ev.tid,
            ts_ns: ev.ts_ns,
            chip,
            core_type,
            bytes,
        }
    }

    /// None when the device was never seen opened.
    fn device_closed(&mut self, ev: &Event, device: u64) -> Option<Record> {
        let chip = self.attribution.chip_of(device)?;
        let owner = self.attribution.owner_id(Owner::Chip(chip));
        let outstanding = self.outstanding(owner, ev.ts_ns);
        let d = self.device(chip);
        d.closed_ns = Some(ev.ts_ns);
        d.outstanding_at_close = outstanding;
        let released = std::mem::take(&mut d.resident);
        Some(Record::DeviceClosed {
            pid: self.pid,
            ts_ns: ev.ts_ns,
            chip,
            released,
        })
    }

    fn mesh_closed(&mut self, ev: &Event, mesh_device: u64) -> Record {
        let mesh = self.attribution.mesh_of_device(mesh_device);
        let mut outstanding = 0;
        if let Some(m) = mesh {
            let owner = self.attribution.owner_id(Owner::Mesh(m));
            let o = self.outstanding(owner, ev.ts_ns);
            outstanding = o.len() as u64;
            if let Some(ml) = self.meshes.get_mut(&m) {
                ml.closed_ns = Some(ev.ts_ns);
                ml.outstanding_at_close = o;
            }
        }
        Record::MeshClosed {
            pid: self.pid,
            ts_ns: ev.ts_ns,
            mesh,
            outstanding,
        }
    }

    fn bank_built(&mut self, ev: &Event, bank: u64, buffer_type: BufferType) -> Record {
        let owner = self
            .attribution
            .owner_of_new_bank(Origin::from_repr(ev.origin), ev.context_this);
        match owner {
            Owner::Chip(c) => *self.device(c).banks.entry(buffer_type).or_default() += 1,
            Owner::Mesh(m) => {
                if let Some(ml) = self.meshes.get_mut(&m) {
                    *ml.banks.entry(buffer_type).or_default() += 1;
                }
            }
            Owner::Scratch => self.scratch_banks += 1,
            Owner::Unattributed => self.unattributed_banks += 1,
        }
        self.attribution.bank_built(bank, buffer_type, owner);
        let id = self.attribution.owner_id(owner);
        Record::BankBuilt {
            pid: self.pid,
            tid: ev.tid,
            ts_ns: ev.ts_ns,
            buffer_type,
            owner: self.attribution.owner_name(id),
        }
    }

    fn allocated(&mut self, ev: &Event, bank: u64, size: u64, address: u64) -> Record {
        let (buffer_type, owner) = self.attribution.bank(bank);
        let kernel_binaries = Origin::from_repr(ev.origin) == Some(Origin::Program);
        let op = self.operations.current(ev.tid);
        let op_name = self.on_current_op(ev, |row| match kernel_binaries {
            true => row.kernels.add(size),
            false => {
                row.buffers.entry(buffer_type).or_default().add(size);
                row.live.add(size);
            }
        });
        let a = Allocation {
            size,
            allocated_ns: ev.ts_ns,
            owner,
            buffer_type,
            kernel_binaries,
            // Kernel binaries are not the operation's buffers: nothing to give back on free.
            op: op.filter(|_| !kernel_binaries),
        };
        if let Some(old) = self.live.insert(bank, address, a) {
            // The same address again without a free we saw: book the old one freed.
            self.unmatched += 1;
            self.released(ev, address, old);
        }
        if !kernel_binaries {
            self.books(owner).allocate(buffer_type, size);
            let (chip, mesh) = self.placement(owner);
            return Record::BufferAllocated {
                pid: self.pid,
                tid: ev.tid,
                ts_ns: ev.ts_ns,
                chip,
                mesh,
                buffer_type,
                size,
                address,
                live_bytes: self.live_bytes(owner, buffer_type),
                op: op_name,
            };
        }
        // A program's binaries, placed for the dispatch firmware to copy to the cores: they are
        // application kernels on every chip the buffer occupies, not an ordinary buffer.
        let chips = self.chips_of(owner);
        if chips.is_empty() {
            self.unplaced_program_buffers.add_bytes(size);
        }
        for &c in &chips {
            let d = self.device(c);
            d.loaded.add_program_buffer(size);
            d.resident.add_program_buffer(size);
            d.first_load_ns.get_or_insert(ev.ts_ns);
            d.last_load_ns = Some(ev.ts_ns);
        }
        Record::ProgramBinariesPlaced {
            pid: self.pid,
            tid: ev.tid,
            ts_ns: ev.ts_ns,
            chips,
            bytes: size,
            address,
            buffer_type,
            op: op_name,
        }
    }

    /// A buffer freed one by one: back out of its books, or, for a program's binaries, off its
    /// chips' resident kernels.
    fn released(&mut self, ev: &Event, address: u64, a: Allocation) -> Record {
        if a.kernel_binaries {
            let chips = self.chips_of(a.owner);
            for &c in &chips {
                self.device(c).resident.remove_program_buffer(a.size);
            }
            return Record::ProgramBinariesFreed {
                pid: self.pid,
                tid: ev.tid,
                ts_ns: ev.ts_ns,
                chips,
                bytes: a.size,
                address,
            };
        }
        self.books(a.owner).free(a.buffer_type, a.size);
        if let Some(row) = a.op.and_then(|op| self.operations.row(op)) {
            row.live.remove(a.size);
        }
        let (chip, mesh) = self.placement(a.owner);
        Record::BufferFreed {
            pid: self.pid,
            tid: ev.tid,
            ts_ns: ev.ts_ns,
            chip,
            mesh,
            buffer_type: a.buffer_type,
            size: a.size,
            address,
            live_bytes: self.live_bytes(a.owner, a.buffer_type),
        }
    }

    /// The process is gone: everything still resident or allocated is released by its exit.
    fn exited(&mut self, ev: &Event) -> Cleanup {
        // Not read from /proc in time (a short process): the name the kernel had at exit.
        if self.comm.is_none() {
            self.comm = exit_comm(ev);
        }
        let mut released = Kernels::default();
        let mut devices = Vec::new();
        for d in self.devices.values_mut() {
            if !d.resident.is_empty() {
                devices.push(d.chip);
            }
            released.merge(&std::mem::take(&mut d.resident));
        }
        let mut leaks: Vec<Leak> = Vec::new();
        for id in self.attribution.owner_ids() {
            for buffer in self.outstanding(id, ev.ts_ns) {
                leaks.push(Leak {
                    owner: self.attribution.owner_name(id),
                    buffer,
                });
            }
        }
        leaks.sort_by_key(|l| (l.buffer.allocated_ns, l.buffer.address));
        self.live.clear();
        self.operations.forget_threads();
        // Its objects' addresses mean nothing any more: an ended ledger keeps only its books.
        self.attribution = Default::default();
        let cleanup = Cleanup {
            pid: self.pid,
            comm: self.comm.clone(),
            cgroup: self.cgroup.clone(),
            exit_ns: ev.ts_ns,
            status: ExitStatus::from_raw(ev.fields[0]),
            released,
            devices,
            leaks,
            complete: true,
        };
        self.last_ns = self.last_ns.max(ev.ts_ns);
        self.exit = Some(cleanup.clone());
        cleanup
    }
}

/// The command name a `ProcessExit` event carries (fields 1-2, NUL-padded), if any.
fn exit_comm(ev: &Event) -> Option<String> {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&ev.fields[1].to_le_bytes());
    bytes[8..].copy_from_slice(&ev.fields[2].to_le_bytes());
    let len = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    (len > 0).then(|| String::from_utf8_lossy(&bytes[..len]).into_owned())
}

#[cfg(test)]
mod tests {

    use super::{memory::BufferType, *};
    use crate::report;

    const FABRIC: u64 = 56 * 1024;
    const DISPATCH: u64 = 46 * 1024;

    fn ev(pid: u32, kind: EventKind, role: Option<Role>, origin: Origin, fields: &[u64]) -> Event {
        let mut e = Event::new(kind, role.map(|r| r as u16).unwrap_or(0), 1000, 7, pid, pid);
        e.origin = origin as u8;
        e.fields[..fields.len()].copy_from_slice(fields);
        e
    }

    fn open(pid: u32, dev: u64, chip: u64) -> Event {
        ev(
            pid,
            EventKind::Call,
            Some(Role::DeviceOpen),
            Origin::Application,
            &[dev, chip],
        )
    }
    fn write(pid: u32, origin: Origin, chip: u64, bytes: u64) -> Event {
        ev(
            pid,
            EventKind::Call,
            Some(Role::KernelBinaryWrite),
            origin,
            &[bytes, chip, 0x4000],
        )
    }
    fn healthy_device(c: &mut Collector, pid: u32, dev: u64, chip: u64) {
        c.apply(&open(pid, dev, chip)).last();
        for _ in 0..2 {
            c.apply(&write(pid, Origin::Fabric, chip, FABRIC)).last();
            c.apply(&write(pid, Origin::Dispatch, chip, DISPATCH))
                .last();
        }
    }

    #[test]
    fn system_kernels_of_a_healthy_device_are_204_kib() {
        let mut c = Collector::new();
        healthy_device(&mut c, 10, 0xd0, 0);
        c.apply(&write(10, Origin::Application, 0, 4096)).last();
        c.apply(&write(10, Origin::Program, 0, 8192)).last();
        let p = c.processes().next().unwrap();
        let d = &p.devices[&0];
        assert_eq!(
            d.loaded.fabric,
            Tally {
                count: 2,
                bytes: 2 * FABRIC
            }
        );
        assert_eq!(
            d.loaded.dispatch,
            Tally {
                count: 2,
                bytes: 2 * DISPATCH
            }
        );
        assert_eq!(
            d.loaded.system(),
            Tally {
                count: 4,
                bytes: 204 * 1024
            }
        );
        assert_eq!(
            d.loaded.application,
            Tally {
                count: 2,
                bytes: 12288
            }
        );
        assert_eq!(d.loaded.total().count, 6);
    }

    #[test]
    fn kernels_go_to_the_chip_named_by_the_write() {
        let mut c = Collector::new();
        healthy_device(&mut c, 10, 0xd0, 0);
        healthy_device(&mut c, 10, 0xd1, 1);
        c.apply(&write(10, Origin::Application, 1, 100)).last();
        let p = c.processes().next().unwrap();
        assert_eq!(p.devices[&0].loaded.application.count, 0);
        assert_eq!(
            p.devices[&1].loaded.application,
            Tally {
                count: 1,
                bytes: 100
            }
        );
    }

    #[test]
    fn device_close_releases_that_device_only() {
        let mut c = Collector::new();
        healthy_device(&mut c, 10, 0xd0, 0);
        healthy_device(&mut c, 10, 0xd1, 1);
        let r = c
            .apply(&ev(
                10,
                EventKind::Call,
                Some(Role::DeviceClose),
                Origin::Application,
                &[0xd1],
            ))
            .last();
        match r {
            Some(Record::DeviceClosed {
                chip: 1, released, ..
            }) => assert_eq!(released.system().bytes, 204 * 1024),
            other => panic!("{other:?}"),
        }
        let p = c.processes().next().unwrap();
        assert!(p.devices[&1].resident.is_empty());
        assert_eq!(p.devices[&1].loaded.system().count, 4, "history is kept");
        assert_eq!(p.devices[&0].resident.system().count, 4);
        // Closing an unknown device is counted, not guessed.
        c.apply(&ev(
            10,
            EventKind::Call,
            Some(Role::DeviceClose),
            Origin::Application,
            &[0xee],
        ))
        .last();
        assert_eq!(c.processes().next().unwrap().unmatched, 1);
    }

    #[test]
    fn a_process_never_described_is_named_by_its_exit_event() {
        let mut c = Collector::new();
        c.apply(&write(77, Origin::Application, 0, 64)).last();
        let name = u64::from_le_bytes(*b"tt_drive");
        let tail = u64::from_le_bytes(*b"r\0\0\0\0\0\0\0");
        let r = c
            .apply(&ev(
                77,
                EventKind::ProcessExit,
                None,
                Origin::Application,
                &[0, name, tail, 0],
            ))
            .last();
        let Some(Record::ProcessExited(cl)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(cl.comm.as_deref(), Some("tt_driver"));

        // What /proc said first stays: the exit's name only fills a gap.
        let mut c = Collector::new();
        c.describe(
            78,
            1,
            ProcessInfo {
                comm: Some("python3".into()),
                cgroup: None,
            },
        );
        let mut first = write(78, Origin::Application, 0, 64);
        first.instance = 1;
        c.apply(&first).last();
        let mut exit = ev(
            78,
            EventKind::ProcessExit,
            None,
            Origin::Application,
            &[0, name, tail, 0],
        );
        exit.instance = 1;
        let Some(Record::ProcessExited(cl)) = c.apply(&exit).last() else {
            panic!("no exit record")
        };
        assert_eq!(cl.comm.as_deref(), Some("python3"));
    }

    #[test]
    fn process_exit_releases_everything_and_reports_the_signal() {
        let mut c = Collector::new();
        healthy_device(&mut c, 12345, 0xd0, 0);
        c.apply(&write(12345, Origin::Application, 0, 3000)).last();
        let r = c
            .apply(&ev(
                12345,
                EventKind::ProcessExit,
                None,
                Origin::Application,
                &[9],
            ))
            .last();
        let Some(Record::ProcessExited(cl)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(cl.status, ExitStatus::Signal(9));
        assert_eq!(
            cl.released.fabric,
            Tally {
                count: 2,
                bytes: 2 * FABRIC
            }
        );
        assert_eq!(
            cl.released.dispatch,
            Tally {
                count: 2,
                bytes: 2 * DISPATCH
            }
        );
        assert_eq!(cl.released.application.bytes, 3000);
        assert_eq!(cl.devices, vec![0]);
        assert_eq!(c.live_count(), 0);
        assert!(c.has_ended(12345));
    }

    #[test]
    fn a_reused_pid_is_a_new_process() {
        let mut c = Collector::new();
        healthy_device(&mut c, 5, 0xd0, 0);
        c.apply(&ev(
            5,
            EventKind::ProcessExit,
            None,
            Origin::Application,
            &[0],
        ))
        .last();
        let mut again = write(5, Origin::Application, 0, 10);
        again.instance = 99;
        c.apply(&again).last();
        let all: Vec<_> = c.processes().collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].instance, 99);
        assert_eq!(
            all[1].devices[&0].loaded.total(),
            Tally {
                count: 1,
                bytes: 10
            }
        );
        assert!(!c.has_ended(5));
    }

    #[test]
    fn nested_contexts_of_one_role_keep_their_own_durations() {
        let mut c = Collector::new();
        let ctx = |kind, depth: u8, ts| {
            let mut e = ev(
                1,
                kind,
                Some(Role::ScratchAllocator),
                Origin::ScratchAllocator,
                &[],
            );
            e.depth = depth;
            e.ts_ns = ts;
            e
        };
        c.apply(&ctx(EventKind::ContextEnter, 1, 100)).last();
        c.apply(&ctx(EventKind::ContextEnter, 2, 110)).last();
        c.apply(&ctx(EventKind::ContextExit, 2, 150)).last();
        let r = c.apply(&ctx(EventKind::ContextExit, 1, 200)).last();
        assert!(
            matches!(
                r,
                Some(Record::ContextExited {
                    duration_ns: Some(100),
                    ..
                })
            ),
            "{r:?}"
        );
        let p = c.processes().next().unwrap();
        assert_eq!(p.phases[&Role::ScratchAllocator], 40 + 100);
    }

    /// A two-chip mesh as tt-metal 0.81 builds it: devices opened inside MeshDevice::create,
    /// each chip's own allocator, then the mesh's lock-step allocator; buffers go to the mesh.
    #[test]
    fn mesh_buffers_are_booked_to_the_mesh_and_its_chips() {
        let mut c = Collector::new();
        let pid = 7;
        let with = |mut e: Event, origin: Origin, this: u64| {
            e.origin = origin as u8;
            e.context_this = this;
            e
        };
        let enter = |role, origin: Origin, this: u64, fields: &[u64], parent: (Origin, u64)| {
            let mut e = with(
                ev(pid, EventKind::ContextEnter, Some(role), origin, fields),
                origin,
                this,
            );
            e.parent_origin = parent.0 as u8;
            e.parent_this = parent.1;
            e
        };
        const TOKEN: u64 = 0x7ff0; // MeshDevice::create's result pointer
        c.apply(&enter(
            Role::MeshOpen,
            Origin::MeshOpen,
            TOKEN,
            &[],
            (Origin::Application, 0),
        ))
        .last();
        for (dev, chip) in [(0xd0, 0), (0xd1, 1)] {
            c.apply(&with(open(pid, dev, chip), Origin::MeshOpen, TOKEN))
                .last();
            c.apply(&enter(
                Role::DeviceAllocator,
                Origin::DeviceAllocator,
                dev,
                &[],
                (Origin::MeshOpen, TOKEN),
            ))
            .last();
            let bank = ev(
                pid,
                EventKind::Call,
                Some(Role::BankNew),
                Origin::DeviceAllocator,
                &[0xb000 + dev, 0],
            );
            c.apply(&with(bank, Origin::DeviceAllocator, dev)).last();
        }
        c.apply(&enter(
            Role::MeshAllocator,
            Origin::MeshAllocator,
            0x1111,
            &[0x2222],
            (Origin::MeshOpen, TOKEN),
        ))
        .last();
        for (bank, ty) in [(0xb1, 0), (0xb2, 1)] {
            let e = ev(
                pid,
                EventKind::Call,
                Some(Role::BankNew),
                Origin::MeshAllocator,
                &[bank, ty],
            );
            c.apply(&with(e, Origin::MeshAllocator, 0x1111)).last();
        }
        let alloc = |bank, size, addr| {
            let mut e = ev(
                pid,
                EventKind::Call,
                Some(Role::BankAllocate),
                Origin::Application,
                &[bank, size],
            );
            e.ret = addr;
            e
        };
        c.apply(&alloc(0xb1, 2048, 0x1000)).last();
        c.apply(&alloc(0xb1, 8192, 0x2000)).last();
        c.apply(&alloc(0xb2, 4096, 0x1000)).last(); // same address, other bank (L1)
        c.apply(&ev(
            pid,
            EventKind::Call,
            Some(Role::BankFree),
            Origin::Application,
            &[0xb1, 0x2000],
        ))
        .last();
        c.apply(&ev(
            pid,
            EventKind::Call,
            Some(Role::BankFree),
            Origin::Application,
            &[0xb1, 0x9999],
        ))
        .last();
        // Mesh close: outstanding buffers listed, then tt-metal clears the banks.
        c.apply(&ev(
            pid,
            EventKind::Call,
            Some(Role::MeshClose),
            Origin::Application,
            &[0x2222],
        ))
        .last();
        c.apply(&ev(
            pid,
            EventKind::Call,
            Some(Role::BankFreeAll),
            Origin::Application,
            &[0xb1],
        ))
        .last();

        let p = c.processes().next().unwrap();
        let mesh = &p.meshes[&1];
        assert_eq!(mesh.chips, vec![0, 1]);
        assert_eq!(p.devices[&0].mesh, Some(1));
        assert_eq!(
            p.devices[&1].banks[&BufferType::Dram],
            1,
            "the chip's own allocator"
        );
        assert_eq!(mesh.banks.len(), 2);
        let dram = mesh.memory.by_type[&BufferType::Dram];
        assert_eq!(
            (dram.allocs, dram.alloc_bytes, dram.frees, dram.free_bytes),
            (2, 10240, 1, 8192)
        );
        assert_eq!((dram.cleared, dram.live, dram.peak_bytes), (1, 0, 10240));
        let l1 = mesh.memory.by_type[&BufferType::L1];
        assert_eq!((l1.allocs, l1.live_bytes), (1, 4096));
        let out: Vec<_> = mesh
            .outstanding_at_close
            .iter()
            .map(|o| (o.buffer_type, o.address, o.size))
            .collect();
        assert_eq!(
            out,
            vec![
                (BufferType::Dram, 0x1000, 2048),
                (BufferType::L1, 0x1000, 4096)
            ]
        );
        assert_eq!(p.unmatched, 1, "the free of an address never allocated");
        assert_eq!(p.unattributed_banks, 0);
        assert!(
            p.devices[&0].memory.is_empty(),
            "nothing on the chip's own allocator"
        );

        // The L1 buffer is still live at exit: a leak of the mesh.
        let Some(Record::ProcessExited(cl)) = c
            .apply(&ev(
                pid,
                EventKind::ProcessExit,
                None,
                Origin::Application,
                &[9],
            ))
            .last()
        else {
            panic!()
        };
        assert_eq!(cl.leaks.len(), 1);
        assert_eq!(
            (cl.leaks[0].owner.as_str(), cl.leaks[0].buffer.size),
            ("mesh 1", 4096)
        );
    }

    #[test]
    fn circular_buffers_per_chip() {
        let mut c = Collector::new();
        c.apply(&open(3, 0xd0, 0)).last();
        c.apply(&open(3, 0xd1, 1)).last();
        for _ in 0..3 {
            c.apply(&ev(
                3,
                EventKind::Call,
                Some(Role::CbAllocate),
                Origin::Application,
                &[0x100, 4096, 0xd1],
            ))
            .last();
        }
        c.apply(&ev(
            3,
            EventKind::Call,
            Some(Role::CbFreeAll),
            Origin::Application,
            &[0xd1],
        ))
        .last();
        c.apply(&ev(
            3,
            EventKind::Call,
            Some(Role::CbAllocate),
            Origin::Application,
            &[0x100, 4096, 0xee],
        ))
        .last();
        let p = c.processes().next().unwrap();
        let cb = p.devices[&1].circular_buffers;
        assert_eq!(
            (cb.allocs, cb.alloc_bytes, cb.live, cb.peak_bytes, cb.clears),
            (3, 12288, 0, 12288, 1)
        );
        assert_eq!(p.devices[&0].circular_buffers.allocs, 0);
        assert_eq!(p.unmatched, 1, "a CB on a device never opened");
    }

    #[test]
    fn unknown_roles_are_counted_not_applied() {
        let mut c = Collector::new();
        let mut e = write(1, Origin::Application, 0, 1);
        e.role = 999;
        assert!(c.apply(&e).last().is_none());
        assert_eq!(c.unknown_events, 1);
        assert_eq!(c.processes().count(), 0);
    }

    /// Fast dispatch: a program's binaries go into a device buffer placed inside
    /// `program_binaries`. They are application kernels on the buffer's chip(s), resident until
    /// the buffer is freed, never an ordinary buffer.
    #[test]
    fn program_binary_buffers_are_application_kernels_until_freed() {
        let mut c = Collector::new();
        let pid = 9;
        healthy_device(&mut c, pid, 0xd0, 0);
        // The chip's own DRAM bank, built inside its allocator.
        let mut enter = ev(
            pid,
            EventKind::ContextEnter,
            Some(Role::DeviceAllocator),
            Origin::DeviceAllocator,
            &[],
        );
        enter.context_this = 0xd0;
        c.apply(&enter).last();
        let mut bank = ev(
            pid,
            EventKind::Call,
            Some(Role::BankNew),
            Origin::DeviceAllocator,
            &[0xb0, 0],
        );
        bank.context_this = 0xd0;
        c.apply(&bank).last();
        let alloc = |origin: Origin, size: u64, addr: u64| {
            let mut e = ev(
                pid,
                EventKind::Call,
                Some(Role::BankAllocate),
                origin,
                &[0xb0, size],
            );
            e.ret = addr;
            e
        };
        let r = c.apply(&alloc(Origin::Program, 6144, 0x8000)).last();
        assert!(
            matches!(&r, Some(Record::ProgramBinariesPlaced { chips, bytes: 6144, .. }) if chips == &[0]),
            "{r:?}"
        );
        c.apply(&alloc(Origin::Program, 2048, 0x9000)).last();
        c.apply(&alloc(Origin::Application, 4096, 0xa000)).last(); // an ordinary buffer
        let p = c.processes().next().unwrap();
        let d = &p.devices[&0];
        assert_eq!(
            d.loaded.program_buffers,
            Tally {
                count: 2,
                bytes: 8192
            }
        );
        assert_eq!(d.loaded.applications().bytes, 8192);
        assert_eq!(
            d.loaded.system().bytes,
            204 * 1024,
            "system kernels untouched"
        );
        let dram = d.memory.by_type[&BufferType::Dram];
        assert_eq!(
            (dram.allocs, dram.alloc_bytes),
            (1, 4096),
            "only the ordinary buffer"
        );
        // The program is destroyed: its buffer freed, its kernels gone from the device.
        c.apply(&ev(
            pid,
            EventKind::Call,
            Some(Role::BankFree),
            Origin::Application,
            &[0xb0, 0x8000],
        ))
        .last();
        let p = c.processes().next().unwrap();
        assert_eq!(
            p.devices[&0].resident.program_buffers,
            Tally {
                count: 1,
                bytes: 2048
            }
        );
        assert_eq!(p.devices[&0].memory.by_type[&BufferType::Dram].frees, 0);
        // The exit releases the rest, and lists only the ordinary buffer as a leak.
        let Some(Record::ProcessExited(cl)) = c
            .apply(&ev(
                pid,
                EventKind::ProcessExit,
                None,
                Origin::Application,
                &[0],
            ))
            .last()
        else {
            panic!()
        };
        assert_eq!(
            cl.released.program_buffers,
            Tally {
                count: 1,
                bytes: 2048
            }
        );
        assert_eq!(cl.leaks.len(), 1);
        assert_eq!(cl.leaks[0].buffer.size, 4096);
    }

    /// Application kernels in a mesh buffer are on every chip of the mesh.
    #[test]
    fn a_mesh_program_buffer_is_on_every_chip_of_the_mesh() {
        let mut c = Collector::new();
        let pid = 11;
        const TOKEN: u64 = 0x7ff0;
        let mut open_mesh = ev(
            pid,
            EventKind::ContextEnter,
            Some(Role::MeshOpen),
            Origin::MeshOpen,
            &[],
        );
        open_mesh.context_this = TOKEN;
        c.apply(&open_mesh).last();
        for (dev, chip) in [(0xd0, 0), (0xd1, 1)] {
            let mut o = open(pid, dev, chip);
            o.origin = Origin::MeshOpen as u8;
            o.context_this = TOKEN;
            c.apply(&o).last();
        }
        let mut mesh_alloc = ev(
            pid,
            EventKind::ContextEnter,
            Some(Role::MeshAllocator),
            Origin::MeshAllocator,
            &[0x2222],
        );
        mesh_alloc.context_this = 0x1111;
        mesh_alloc.parent_origin = Origin::MeshOpen as u8;
        mesh_alloc.parent_this = TOKEN;
        c.apply(&mesh_alloc).last();
        let mut bank = ev(
            pid,
            EventKind::Call,
            Some(Role::BankNew),
            Origin::MeshAllocator,
            &[0xb1, 0],
        );
        bank.context_this = 0x1111;
        c.apply(&bank).last();
        let mut e = ev(
            pid,
            EventKind::Call,
            Some(Role::BankAllocate),
            Origin::Program,
            &[0xb1, 1000],
        );
        e.ret = 0x4000;
        c.apply(&e).last();
        let p = c.processes().next().unwrap();
        for chip in [0, 1] {
            assert_eq!(
                p.devices[&chip].loaded.program_buffers.bytes, 1000,
                "chip {chip}"
            );
        }
        assert!(p.meshes[&1].memory.is_empty());
    }

    /// Firmware outside bring-up contexts is firmware, by core type; the same write inside
    /// configure_fabric is a fabric (ethernet) kernel.
    #[test]
    fn firmware_has_its_own_line_and_fabric_ethernet_kernels_stay_fabric() {
        let mut c = Collector::new();
        c.apply(&open(4, 0xd0, 0)).last();
        let fw = |origin: Origin, bytes: u64, core: u64| {
            ev(
                4,
                EventKind::Call,
                Some(Role::FirmwareWrite),
                origin,
                &[bytes, 0, core],
            )
        };
        let r = c.apply(&fw(Origin::Application, 1000, 0)).last();
        assert!(
            matches!(
                r,
                Some(Record::FirmwareLoaded {
                    core_type: CoreType::Tensix,
                    bytes: 1000,
                    ..
                })
            ),
            "{r:?}"
        );
        c.apply(&fw(Origin::DeviceInit, 3000, 0)).last();
        c.apply(&fw(Origin::Application, 500, 1)).last();
        c.apply(&fw(Origin::Fabric, FABRIC, 1)).last();
        let p = c.processes().next().unwrap();
        let d = &p.devices[&0];
        assert_eq!(
            d.loaded.firmware,
            Tally {
                count: 3,
                bytes: 4500
            }
        );
        assert_eq!(
            d.firmware_by_core[&CoreType::Tensix],
            Tally {
                count: 2,
                bytes: 4000
            }
        );
        assert_eq!(
            d.firmware_by_core[&CoreType::ActiveEth],
            Tally {
                count: 1,
                bytes: 500
            }
        );
        assert_eq!(
            d.loaded.fabric,
            Tally {
                count: 1,
                bytes: FABRIC
            }
        );
        assert_eq!(
            d.loaded.system().bytes,
            FABRIC,
            "firmware is not a system kernel"
        );
        assert_eq!(d.loaded.total().bytes, FABRIC + 4500);
    }

    /// Sizes and timestamps are the traced process's, not to be trusted: the event_decoder fuzz
    /// target's first crash was two kernel writes whose byte counts overflowed `Tally::add`
    /// (here reduced, with the same overflow in every other total the ledger and report keep).
    #[test]
    fn garbage_sizes_and_times_saturate_instead_of_overflowing() {
        let mut c = Collector::new();
        c.apply(&open(1, 0xd0, 0)).last();
        for origin in [Origin::Dispatch, Origin::Dispatch, Origin::Application] {
            c.apply(&write(1, origin, 0, 0xffff_ffff_fffe_b800)).last();
        }
        c.apply(&ev(
            1,
            EventKind::Call,
            Some(Role::BankNew),
            Origin::Application,
            &[0xb1, 0],
        ))
        .last();
        for addr in [0x1000, 0x2000, 0x3000] {
            let mut e = ev(
                1,
                EventKind::Call,
                Some(Role::BankAllocate),
                Origin::Application,
                &[0xb1, u64::MAX],
            );
            e.ret = addr;
            c.apply(&e).last();
        }
        for _ in 0..2 {
            c.apply(&ev(
                1,
                EventKind::Call,
                Some(Role::CbAllocate),
                Origin::Application,
                &[0x100, u64::MAX, 0xd0],
            ))
            .last();
        }
        for (kind, ts) in [
            (EventKind::ContextEnter, 0),
            (EventKind::ContextExit, u64::MAX),
            (EventKind::ContextEnter, 0),
            (EventKind::ContextExit, u64::MAX),
        ] {
            let mut e = ev(1, kind, Some(Role::DeviceInit), Origin::DeviceInit, &[]);
            e.ts_ns = ts;
            c.apply(&e).last();
        }
        let p = c.processes().next().unwrap();
        let d = &p.devices[&0];
        assert_eq!(d.loaded.dispatch.bytes, u64::MAX);
        assert_eq!(d.loaded.total().bytes, u64::MAX);
        assert_eq!(
            p.unattributed.by_type[&BufferType::Dram].live_bytes,
            u64::MAX
        );
        assert_eq!(d.circular_buffers.alloc_bytes, u64::MAX);
        assert_eq!(p.phases[&Role::DeviceInit], u64::MAX);
        c.apply(&ev(
            1,
            EventKind::ProcessExit,
            None,
            Origin::Application,
            &[0],
        ))
        .last();
        let report = crate::report::Report::new(&c, &[], BTreeMap::new(), 0);
        assert!(report.to_text().contains("leaked:"));
    }

    fn records(c: &mut Collector, e: &Event) -> Vec<Record> {
        c.apply(e).collect()
    }

    /// Builds a chip's own DRAM bank (0xb0) on device 0xd0 = chip 0 of process `pid`.
    fn chip_bank(c: &mut Collector, pid: u32) {
        c.apply(&open(pid, 0xd0, 0)).last();
        let mut enter = ev(
            pid,
            EventKind::ContextEnter,
            Some(Role::DeviceAllocator),
            Origin::DeviceAllocator,
            &[],
        );
        enter.context_this = 0xd0;
        c.apply(&enter).last();
        let mut bank = ev(
            pid,
            EventKind::Call,
            Some(Role::BankNew),
            Origin::DeviceAllocator,
            &[0xb0, 0],
        );
        bank.context_this = 0xd0;
        let r = records(c, &bank);
        assert!(
            matches!(&r[..], [Record::BankBuilt { buffer_type: BufferType::Dram, owner, .. }] if owner == "chip 0"),
            "{r:?}"
        );
    }

    #[test]
    fn the_first_event_of_a_process_starts_it_with_what_is_known() {
        let mut c = Collector::new();
        assert!(!c.knows(21, 7));
        c.describe(
            21,
            7,
            ProcessInfo {
                comm: Some("python3".into()),
                cgroup: Some(Cgroup::from_path("/system.slice/tt.service")),
            },
        );
        let mut e = open(21, 0xd0, 0);
        e.library = 2;
        let r = records(&mut c, &e);
        match &r[..] {
            [Record::ProcessStarted {
                pid: 21,
                instance: 7,
                library: Some(2),
                comm: Some(comm),
                cgroup: Some(cg),
                ..
            }, Record::DeviceOpened { chip: 0, .. }] => {
                assert_eq!(comm, "python3");
                assert_eq!(cg.systemd_unit.as_deref(), Some("tt.service"));
            }
            other => panic!("{other:?}"),
        }
        assert!(c.knows(21, 7));
        // Seen once: no second start.
        assert_eq!(records(&mut c, &open(21, 0xd1, 1)).len(), 1);
        let p = c.processes().next().unwrap();
        assert_eq!(p.library, Some(2));
        // The cleanup names it too.
        let r = records(
            &mut c,
            &ev(21, EventKind::ProcessExit, None, Origin::Application, &[0]),
        );
        let [Record::ProcessExited(cl)] = &r[..] else {
            panic!("{r:?}")
        };
        assert_eq!(cl.comm.as_deref(), Some("python3"));
        assert!(cl.cgroup.is_some());
        assert!(report::cleanup_line(cl).contains("pid 21 (python3, unit tt.service)"));
    }

    #[test]
    fn describing_a_live_process_updates_its_ledger() {
        let mut c = Collector::new();
        c.apply(&open(3, 0xd0, 0)).last();
        c.describe(
            3,
            7,
            ProcessInfo {
                comm: Some("worker".into()),
                cgroup: None,
            },
        );
        assert_eq!(
            c.processes().next().unwrap().comm.as_deref(),
            Some("worker")
        );
        assert_eq!(c.pending_len(), 0);
    }

    #[test]
    fn buffers_and_their_owners_live_bytes_are_told() {
        let mut c = Collector::new();
        chip_bank(&mut c, 4);
        let alloc = |size, addr| {
            let mut e = ev(
                4,
                EventKind::Call,
                Some(Role::BankAllocate),
                Origin::Application,
                &[0xb0, size],
            );
            e.ret = addr;
            e
        };
        records(&mut c, &alloc(1000, 0x1000));
        let r = records(&mut c, &alloc(500, 0x2000));
        assert!(
            matches!(
                r[..],
                [Record::BufferAllocated {
                    chip: Some(0),
                    mesh: None,
                    buffer_type: BufferType::Dram,
                    size: 500,
                    address: 0x2000,
                    live_bytes: 1500,
                    ..
                }]
            ),
            "{r:?}"
        );
        let free = ev(
            4,
            EventKind::Call,
            Some(Role::BankFree),
            Origin::Application,
            &[0xb0, 0x1000],
        );
        let r = records(&mut c, &free);
        assert!(
            matches!(
                r[..],
                [Record::BufferFreed {
                    chip: Some(0),
                    size: 1000,
                    address: 0x1000,
                    live_bytes: 500,
                    ..
                }]
            ),
            "{r:?}"
        );
        // Freed again: nothing to free, told as unmatched.
        let r = records(&mut c, &free);
        assert!(
            matches!(
                r[..],
                [Record::Unmatched {
                    role: Role::BankFree,
                    ..
                }]
            ),
            "{r:?}"
        );
        let r = records(
            &mut c,
            &ev(
                4,
                EventKind::Call,
                Some(Role::BankFreeAll),
                Origin::Application,
                &[0xb0],
            ),
        );
        assert!(
            matches!(
                r[..],
                [Record::BuffersCleared {
                    chip: Some(0),
                    count: 1,
                    bytes: 500,
                    live_bytes: 0,
                    ..
                }]
            ),
            "{r:?}"
        );
    }

    #[test]
    fn a_program_binary_buffer_freed_is_told() {
        let mut c = Collector::new();
        chip_bank(&mut c, 5);
        let mut e = ev(
            5,
            EventKind::Call,
            Some(Role::BankAllocate),
            Origin::Program,
            &[0xb0, 4096],
        );
        e.ret = 0x8000;
        records(&mut c, &e);
        let r = records(
            &mut c,
            &ev(
                5,
                EventKind::Call,
                Some(Role::BankFree),
                Origin::Application,
                &[0xb0, 0x8000],
            ),
        );
        assert!(
            matches!(&r[..], [Record::ProgramBinariesFreed { chips, bytes: 4096, address: 0x8000, .. }] if chips == &[0]),
            "{r:?}"
        );
    }

    #[test]
    fn circular_buffers_workloads_and_meshes_are_told() {
        let mut c = Collector::new();
        c.apply(&open(6, 0xd0, 0)).last();
        let cb = ev(
            6,
            EventKind::Call,
            Some(Role::CbAllocate),
            Origin::Application,
            &[0x100, 2048, 0xd0],
        );
        records(&mut c, &cb);
        let r = records(&mut c, &cb);
        assert!(
            matches!(
                r[..],
                [Record::CircularBufferAllocated {
                    chip: 0,
                    size: 2048,
                    live_bytes: 4096,
                    ..
                }]
            ),
            "{r:?}"
        );
        let r = records(
            &mut c,
            &ev(
                6,
                EventKind::Call,
                Some(Role::CbFreeAll),
                Origin::Application,
                &[0xd0],
            ),
        );
        assert!(
            matches!(
                r[..],
                [Record::CircularBuffersReleased {
                    chip: 0,
                    count: 2,
                    bytes: 4096,
                    ..
                }]
            ),
            "{r:?}"
        );
        let wl = ev(
            6,
            EventKind::Call,
            Some(Role::WorkloadEnqueue),
            Origin::Application,
            &[],
        );
        records(&mut c, &wl);
        let r = records(&mut c, &wl);
        assert!(
            matches!(r[..], [Record::WorkloadEnqueued { total: 2, .. }]),
            "{r:?}"
        );
        // A mesh allocator's context: entered, and a mesh opened.
        let mut e = ev(
            6,
            EventKind::ContextEnter,
            Some(Role::MeshAllocator),
            Origin::MeshAllocator,
            &[0x2222],
        );
        e.context_this = 0x1111;
        let r = records(&mut c, &e);
        assert!(
            matches!(
                &r[..],
                [
                    Record::ContextEntered {
                        role: Role::MeshAllocator,
                        ..
                    },
                    Record::MeshOpened { mesh: 1, .. }
                ]
            ),
            "{r:?}"
        );
    }

    #[test]
    fn an_exit_of_a_process_never_seen_starts_and_ends_it() {
        let mut c = Collector::new();
        let r = records(
            &mut c,
            &ev(8, EventKind::ProcessExit, None, Origin::Application, &[0]),
        );
        assert!(
            matches!(
                r[..],
                [
                    Record::ProcessStarted { pid: 8, .. },
                    Record::ProcessExited(_)
                ]
            ),
            "{r:?}"
        );
    }

    /// Ended processes leave the live ledger; only `history` of them are kept, and nothing
    /// else grows with the number of processes that came and went.
    #[test]
    fn memory_stays_bounded_however_many_processes_end() {
        let mut c = Collector::with_history(100);
        for pid in 1..=10_000u32 {
            c.describe(
                pid,
                7,
                ProcessInfo {
                    comm: Some("p".into()),
                    cgroup: None,
                },
            );
            c.apply(&open(pid, 0xd0, 0)).last();
            let mut enter = ev(
                pid,
                EventKind::ContextEnter,
                Some(Role::DeviceInit),
                Origin::DeviceInit,
                &[],
            );
            enter.tid = pid + 1; // a thread that never leaves its context
            c.apply(&enter).last();
            c.apply(&ev(
                pid,
                EventKind::Call,
                Some(Role::BankNew),
                Origin::Application,
                &[0xb1, 0],
            ))
            .last();
            let mut alloc = ev(
                pid,
                EventKind::Call,
                Some(Role::BankAllocate),
                Origin::Application,
                &[0xb1, 64],
            );
            alloc.ret = 0x1000;
            c.apply(&alloc).last();
            let r = records(
                &mut c,
                &ev(pid, EventKind::ProcessExit, None, Origin::Application, &[0]),
            );
            assert!(matches!(r.last(), Some(Record::ProcessExited(_))));
        }
        assert_eq!(c.live_count(), 0);
        assert_eq!(c.history_len(), 100);
        assert_eq!(c.history_dropped, 9_900);
        assert_eq!(c.pending_len(), 0, "context starts and descriptions");
        assert!(c.processes().all(|p| p.live_allocations() == 0));
        assert!(c.has_ended(10_000));
        let report = crate::report::Report::new(&c, &[], BTreeMap::new(), 0);
        assert_eq!(report.processes.len(), 100);
        assert_eq!(report.history_dropped, 9_900);
        assert_eq!(report.processes[0].pid, 9_901, "the oldest kept");
    }
}

#[cfg(test)]
mod operation_tests {
    use super::{memory::BufferType, *};

    const PID: u32 = 40;
    const ADD: u64 = 11; // attach-point cookies
    const MATMUL: u64 = 12;

    fn ev(kind: EventKind, role: Role, origin: Origin, fields: &[u64]) -> Event {
        let mut e = Event::new(kind, role as u16, 1000, 7, PID, PID);
        e.origin = origin as u8;
        e.fields[..fields.len()].copy_from_slice(fields);
        e
    }
    fn at(mut e: Event, ts: u64) -> Event {
        e.ts_ns = ts;
        e
    }
    fn op(kind: EventKind, cookie: u64, ts: u64) -> Event {
        let mut e = at(ev(kind, Role::OpLaunch, Origin::Op, &[]), ts);
        e.context_this = cookie;
        e
    }
    fn alloc(size: u64, addr: u64, origin: Origin) -> Event {
        let mut e = ev(EventKind::Call, Role::BankAllocate, origin, &[0xb0, size]);
        e.ret = addr;
        e
    }
    fn info(name: &str, hit: bool, enqueue: bool) -> OpInfo {
        OpInfo {
            name: name.into(),
            path: format!("ttnn::operations::{name}"),
            cache: CacheProbes { hit, enqueue },
        }
    }

    /// A collector whose process has chip 0's own DRAM bank 0xb0 (device 0xd0).
    fn with_bank(ops: [(u64, OpInfo); 2]) -> Collector {
        let mut c = Collector::new();
        c.name_operations(ops);
        c.apply(&ev(
            EventKind::Call,
            Role::DeviceOpen,
            Origin::Application,
            &[0xd0, 0],
        ))
        .last();
        let mut enter = ev(
            EventKind::ContextEnter,
            Role::DeviceAllocator,
            Origin::DeviceAllocator,
            &[],
        );
        enter.context_this = 0xd0;
        c.apply(&enter).last();
        let mut bank = ev(
            EventKind::Call,
            Role::BankNew,
            Origin::DeviceAllocator,
            &[0xb0, 0],
        );
        bank.context_this = 0xd0;
        c.apply(&bank).last();
        let mut exit = ev(
            EventKind::ContextExit,
            Role::DeviceAllocator,
            Origin::DeviceAllocator,
            &[],
        );
        exit.context_this = 0xd0;
        c.apply(&exit).last();
        c
    }

    #[test]
    fn what_runs_inside_an_operation_is_its_own_and_leaks_name_it() {
        let mut c = with_bank([
            (ADD, info("Add", true, true)),
            (MATMUL, info("Matmul", true, true)),
        ]);
        // Tensor creation: no operation.
        c.apply(&alloc(2048, 0x1000, Origin::Application)).last();
        // add: a miss (enqueue says so), an output and three CBs; then a hit.
        let began: Vec<Record> = c.apply(&op(EventKind::ContextEnter, ADD, 2000)).collect();
        assert!(
            matches!(&began[..], [Record::OpBegan { op, .. }] if &**op == "Add"),
            "{began:?}"
        );
        let r = c.apply(&alloc(4096, 0x2000, Origin::Op)).last();
        assert!(
            matches!(&r, Some(Record::BufferAllocated { op: Some(o), .. }) if &**o == "Add"),
            "{r:?}"
        );
        for _ in 0..3 {
            c.apply(&ev(
                EventKind::Call,
                Role::CbAllocate,
                Origin::Op,
                &[0x10, 1024, 0xd0],
            ))
            .last();
        }
        let r = c
            .apply(&ev(EventKind::Call, Role::OpEnqueue, Origin::Op, &[0x100]))
            .last();
        assert!(
            matches!(
                &r,
                Some(Record::OpProgramCache {
                    outcome: CacheOutcome::Miss,
                    ..
                })
            ),
            "{r:?}"
        );
        let r = c
            .apply(&ev(
                EventKind::Call,
                Role::WorkloadEnqueue,
                Origin::Op,
                &[0x5],
            ))
            .last();
        assert!(
            matches!(&r, Some(Record::WorkloadEnqueued { op: Some(_), .. })),
            "{r:?}"
        );
        let r = c.apply(&op(EventKind::ContextExit, ADD, 5000)).last();
        assert!(
            matches!(
                &r,
                Some(Record::OpEnded {
                    duration_ns: 3000,
                    cache: Some(CacheOutcome::Miss),
                    ..
                })
            ),
            "{r:?}"
        );
        c.apply(&op(EventKind::ContextEnter, ADD, 6000)).last();
        // The hit handler, then the enqueue (low byte 1, garbage above): one record.
        let hit = c
            .apply(&ev(EventKind::Call, Role::OpCacheHit, Origin::Op, &[]))
            .last();
        assert!(matches!(
            hit,
            Some(Record::OpProgramCache {
                outcome: CacheOutcome::Hit,
                ..
            })
        ));
        let again: Vec<Record> = c
            .apply(&ev(
                EventKind::Call,
                Role::OpEnqueue,
                Origin::Op,
                &[0xff00_0001],
            ))
            .collect();
        assert!(again.is_empty(), "told once: {again:?}");
        c.apply(&alloc(4096, 0x3000, Origin::Op)).last();
        // Freed by the program: no longer the operation's live bytes.
        c.apply(&ev(
            EventKind::Call,
            Role::BankFree,
            Origin::Op,
            &[0xb0, 0x2000],
        ))
        .last();
        c.apply(&op(EventKind::ContextExit, ADD, 6500)).last();
        // An operation that ends without any cache signal: unknown.
        c.apply(&op(EventKind::ContextEnter, MATMUL, 7000)).last();
        c.apply(&op(EventKind::ContextExit, MATMUL, 7100)).last();

        let p = c.processes().next().unwrap();
        let add = &p.operations.table[0];
        assert_eq!(
            (
                &*add.name,
                add.launches,
                add.cache_hits,
                add.cache_misses,
                add.cache_unknown,
                add.time_ns
            ),
            ("Add", 2, 1, 1, 0, 3500)
        );
        assert_eq!(
            add.buffers[&BufferType::Dram],
            Tally {
                count: 2,
                bytes: 8192
            }
        );
        assert_eq!(
            add.circular_buffers,
            Tally {
                count: 3,
                bytes: 3072
            }
        );
        assert_eq!(
            (add.enqueues, add.live),
            (
                1,
                Tally {
                    count: 1,
                    bytes: 4096
                }
            )
        );
        let matmul = &p.operations.table[1];
        assert_eq!((matmul.launches, matmul.cache_unknown), (1, 1));

        // The process dies: its leaks name who allocated them.
        let r = c
            .apply(&ev(
                EventKind::ProcessExit,
                Role::DeviceOpen,
                Origin::Application,
                &[9],
            ))
            .last();
        let Some(Record::ProcessExited(cl)) = r else {
            panic!("{r:?}")
        };
        let owners: Vec<(u64, Option<&str>)> = cl
            .leaks
            .iter()
            .map(|l| (l.buffer.address, l.buffer.op.as_deref()))
            .collect();
        assert_eq!(owners, [(0x1000, None), (0x3000, Some("Add"))]);
    }

    #[test]
    fn with_the_hit_handler_alone_a_launch_without_it_missed() {
        // 0.62: no enqueue signal; the hit handler is out of line for every operation.
        let mut c = with_bank([
            (ADD, info("Add", true, false)),
            (MATMUL, info("Matmul", false, false)),
        ]);
        c.apply(&op(EventKind::ContextEnter, ADD, 10)).last();
        c.apply(&op(EventKind::ContextExit, ADD, 20)).last();
        c.apply(&op(EventKind::ContextEnter, ADD, 30)).last();
        c.apply(&ev(EventKind::Call, Role::OpCacheHit, Origin::Op, &[]))
            .last();
        c.apply(&op(EventKind::ContextExit, ADD, 40)).last();
        // Nested: an operation launched inside another owns what happens inside it.
        c.apply(&op(EventKind::ContextEnter, MATMUL, 50)).last();
        c.apply(&op(EventKind::ContextEnter, ADD, 60)).last();
        c.apply(&alloc(100, 0x4000, Origin::Op)).last();
        c.apply(&op(EventKind::ContextExit, ADD, 70)).last();
        c.apply(&alloc(200, 0x5000, Origin::Op)).last();
        c.apply(&op(EventKind::ContextExit, MATMUL, 80)).last();
        // An unnamed cookie, and an exit without its entry: counted, not guessed.
        let r = c.apply(&op(EventKind::ContextEnter, 99, 90)).last();
        assert!(matches!(r, Some(Record::Unmatched { .. })), "{r:?}");
        let r = c.apply(&op(EventKind::ContextExit, 99, 95)).last();
        assert!(matches!(r, Some(Record::Unmatched { .. })), "{r:?}");

        let p = c.processes().next().unwrap();
        let add = &p.operations.table[0];
        assert_eq!((add.launches, add.cache_hits, add.cache_misses), (3, 1, 2));
        assert_eq!(
            add.live,
            Tally {
                count: 1,
                bytes: 100
            }
        );
        let matmul = &p.operations.table[1];
        assert_eq!((matmul.launches, matmul.cache_unknown), (1, 1));
        assert_eq!(
            matmul.live,
            Tally {
                count: 1,
                bytes: 200
            }
        );
        assert_eq!(p.operations.running(), 0);
        assert_eq!(p.unmatched, 2);
    }
}
