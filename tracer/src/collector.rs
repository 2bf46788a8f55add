//! The collector: turns decoded probe events into a per-process × per-device ledger.
//!
//! Pure: no I/O, no clocks, no kernel. Events go in through [`Collector::apply`], records for
//! the live stream come out, and [`Collector::report`] is the final state. Processes are keyed by
//! (pid, instance) so a reused pid is never merged with a process that ended.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use tracer_common::{Event, EventKind, Origin};

use crate::{
    memory::{
        Allocation, BufferType, CircularBuffers, LiveAllocations, MemoryBooks, Outstanding, OwnerId,
    },
    roles::Role,
};

/// A process instance: pid plus when the tracer first saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ProcKey {
    pub pid: u32,
    pub instance: u64,
}

/// Count and bytes of kernel binaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub count: u64,
    pub bytes: u64,
}

/// Byte totals saturate: sizes are read from the traced process's memory and arguments, so a
/// garbage or hostile value (a vector with end < begin, a corrupt argument) must not overflow
/// (a panic with overflow checks, a wrapped total without). Found by the event_decoder fuzz target.
impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }
    fn merge(&mut self, o: &Tally) {
        self.count += o.count;
        self.bytes = self.bytes.saturating_add(o.bytes);
    }
}

/// Kernel binaries by origin. Fabric and dispatch are the system kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Kernels {
    pub fabric: Tally,
    pub dispatch: Tally,
    /// Written during device initialisation outside fabric/dispatch bring-up.
    pub init: Tally,
    pub application: Tally,
}

impl Kernels {
    pub fn system(&self) -> Tally {
        let mut t = self.fabric;
        t.merge(&self.dispatch);
        t.merge(&self.init);
        t
    }
    pub fn total(&self) -> Tally {
        let mut t = self.system();
        t.merge(&self.application);
        t
    }
    pub fn is_empty(&self) -> bool {
        self.total().count == 0
    }
    fn slot(&mut self, class: KernelClass) -> &mut Tally {
        match class {
            KernelClass::Fabric => &mut self.fabric,
            KernelClass::Dispatch => &mut self.dispatch,
            KernelClass::Init => &mut self.init,
            KernelClass::Application => &mut self.application,
        }
    }
    fn merge(&mut self, o: &Kernels) {
        self.fabric.merge(&o.fabric);
        self.dispatch.merge(&o.dispatch);
        self.init.merge(&o.init);
        self.application.merge(&o.application);
    }
}

/// What a kernel binary is, from the context active on its thread when it was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelClass {
    Fabric,
    Dispatch,
    Init,
    Application,
}

impl KernelClass {
    pub fn of(origin: Option<Origin>) -> KernelClass {
        match origin {
            Some(Origin::Fabric) => KernelClass::Fabric,
            Some(Origin::Dispatch) => KernelClass::Dispatch,
            // Written while a device or mesh is being brought up (firmware): system, not user.
            Some(
                Origin::DeviceInit
                | Origin::MeshOpen
                | Origin::DeviceAllocator
                | Origin::MeshAllocator
                | Origin::ScratchAllocator,
            ) => KernelClass::Init,
            Some(Origin::Application | Origin::Program) | None => KernelClass::Application,
        }
    }
    pub fn is_system(self) -> bool {
        self != KernelClass::Application
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DeviceLedger {
    pub chip: i64,
    pub opened_ns: Option<u64>,
    pub closed_ns: Option<u64>,
    /// Every kernel binary written to the device while traced.
    pub loaded: Kernels,
    /// Kernels still on the device (released at device close or process exit).
    pub resident: Kernels,
    pub first_load_ns: Option<u64>,
    pub last_load_ns: Option<u64>,
    /// Buffers of the chip's own allocator (a mesh's lock-step buffers are in its mesh).
    pub memory: MemoryBooks,
    pub circular_buffers: CircularBuffers,
    /// The chip's own buffers still allocated when it closed.
    pub outstanding_at_close: Vec<Outstanding>,
    /// The mesh whose lock-step allocator also places buffers on this chip, if any.
    pub mesh: Option<u32>,
    /// Banks of the chip's own allocator, by type.
    pub banks: BTreeMap<BufferType, u32>,
    /// Time spent in each context that configured this device (fabric, dispatch, allocator),
    /// summed, ns.
    pub phases: BTreeMap<Role, u64>,
}

/// A mesh: its lock-step allocator places every buffer at the same address on all its chips.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MeshLedger {
    /// 1, 2, … in the order the process built them.
    pub index: u32,
    /// Chips opened while the mesh was being created (empty if they were opened before).
    pub chips: Vec<i64>,
    pub opened_ns: u64,
    pub closed_ns: Option<u64>,
    /// Banks of the mesh allocator, by type.
    pub banks: BTreeMap<BufferType, u32>,
    /// Buffers of the mesh allocator: each occupies its size on every chip of the mesh.
    pub memory: MemoryBooks,
    pub outstanding_at_close: Vec<Outstanding>,
}

/// Who a bank's allocations belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Chip(i64),
    Mesh(u32),
    /// A throw-away allocator (bank tables); never allocates.
    Scratch,
    /// A bank built where no known context said whose it is.
    Unattributed,
}

/// A buffer still allocated when its process exited.
#[derive(Clone, Debug, Serialize)]
pub struct Leak {
    /// "chip N", "mesh N" or "unattributed".
    pub owner: String,
    #[serde(flatten)]
    pub buffer: Outstanding,
}

/// How a process ended, from the kernel's wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
    Unknown,
}

impl ExitStatus {
    /// From `task_struct.exit_code` (a wait status); u64::MAX when unknown.
    pub fn from_raw(raw: u64) -> ExitStatus {
        if raw > u32::MAX as u64 {
            return ExitStatus::Unknown;
        }
        let raw = raw as i32;
        match raw & 0x7f {
            0 => ExitStatus::Code((raw >> 8) & 0xff),
            sig => ExitStatus::Signal(sig),
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
            ExitStatus::Unknown => f.write_str("status unknown"),
        }
    }
}

/// What was still on a process's devices when it exited, and is now released.
#[derive(Clone, Debug, Serialize)]
pub struct Cleanup {
    pub pid: u32,
    pub exit_ns: u64,
    pub status: ExitStatus,
    pub released: Kernels,
    pub devices: Vec<i64>,
    /// Device buffers still allocated at exit (released by the exit), oldest first.
    pub leaks: Vec<Leak>,
}

#[derive(Debug, Serialize)]
pub struct ProcessLedger {
    pub pid: u32,
    pub instance: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub devices: BTreeMap<i64, DeviceLedger>,
    pub exit: Option<Cleanup>,
    pub meshes: BTreeMap<u32, MeshLedger>,
    /// Buffers whose owner is unknown (banks built outside any allocator context).
    pub unattributed: MemoryBooks,
    /// Banks built for throw-away bank-table allocators.
    pub scratch_banks: u32,
    /// Banks built outside any known allocator context (0 when attribution is complete).
    pub unattributed_banks: u32,
    pub workloads_enqueued: u64,
    /// Time spent in contexts not tied to one device (device init, mesh open, program
    /// uploads), summed, ns.
    pub phases: BTreeMap<Role, u64>,
    /// Events that referred to something unknown (closing a device never opened, freeing an
    /// address never allocated, a CB on an unknown device).
    pub unmatched: u64,
    #[serde(skip)]
    device_ptrs: HashMap<u64, i64>,
    #[serde(skip)]
    owners: Vec<Owner>,
    #[serde(skip)]
    banks: HashMap<u64, (BufferType, OwnerId)>,
    #[serde(skip)]
    mesh_by_impl: HashMap<u64, u32>,
    #[serde(skip)]
    mesh_by_device: HashMap<u64, u32>,
    /// Chips opened inside each MeshDevice::create call (keyed by its result pointer).
    #[serde(skip)]
    mesh_opens: HashMap<u64, Vec<i64>>,
    #[serde(skip)]
    live: LiveAllocations,
}

impl ProcessLedger {
    fn new(key: ProcKey, ts: u64) -> Self {
        ProcessLedger {
            pid: key.pid,
            instance: key.instance,
            first_ns: ts,
            last_ns: ts,
            devices: BTreeMap::new(),
            exit: None,
            meshes: BTreeMap::new(),
            unattributed: MemoryBooks::default(),
            scratch_banks: 0,
            unattributed_banks: 0,
            workloads_enqueued: 0,
            phases: BTreeMap::new(),
            unmatched: 0,
            device_ptrs: HashMap::new(),
            owners: Vec::new(),
            banks: HashMap::new(),
            mesh_by_impl: HashMap::new(),
            mesh_by_device: HashMap::new(),
            mesh_opens: HashMap::new(),
            live: LiveAllocations::default(),
        }
    }
    fn owner_id(&mut self, o: Owner) -> OwnerId {
        match self.owners.iter().position(|x| *x == o) {
            Some(i) => i as OwnerId,
            None => {
                self.owners.push(o);
                (self.owners.len() - 1) as OwnerId
            }
        }
    }
    fn owner_name(&self, id: OwnerId) -> String {
        match self.owners.get(id as usize) {
            Some(Owner::Chip(c)) => format!("chip {c}"),
            Some(Owner::Mesh(m)) => format!("mesh {m}"),
            Some(Owner::Scratch) => "scratch allocator".into(),
            _ => "unattributed".into(),
        }
    }
    fn books(&mut self, id: OwnerId) -> &mut MemoryBooks {
        match self.owners.get(id as usize).copied() {
            Some(Owner::Chip(c)) => &mut self.device(c).memory,
            Some(Owner::Mesh(m)) if self.meshes.contains_key(&m) => {
                &mut self.meshes.get_mut(&m).unwrap().memory
            }
            _ => &mut self.unattributed,
        }
    }
    /// Live device buffers the process holds now.
    pub fn live_allocations(&self) -> usize {
        self.live.len()
    }
    fn device(&mut self, chip: i64) -> &mut DeviceLedger {
        self.devices.entry(chip).or_insert_with(|| DeviceLedger {
            chip,
            ..Default::default()
        })
    }
    pub fn loaded(&self) -> Kernels {
        let mut k = Kernels::default();
        for d in self.devices.values() {
            k.merge(&d.loaded);
        }
        k
    }
}

/// One thing worth telling the user as it happens.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    DeviceOpened {
        pid: u32,
        ts_ns: u64,
        chip: i64,
    },
    ContextEntered {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        role: Role,
        chip: Option<i64>,
    },
    ContextExited {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        role: Role,
        chip: Option<i64>,
        duration_ns: Option<u64>,
    },
    KernelLoaded {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        chip: i64,
        class: KernelClass,
        bytes: u64,
        address: u64,
    },
    DeviceClosed {
        pid: u32,
        ts_ns: u64,
        chip: i64,
        released: Kernels,
    },
    MeshClosed {
        pid: u32,
        ts_ns: u64,
        mesh: Option<u32>,
        outstanding: u64,
    },
    ProcessExited(Cleanup),
}

#[derive(Default)]
pub struct Collector {
    live: BTreeMap<ProcKey, ProcessLedger>,
    ended: Vec<ProcessLedger>,
    /// Context entry times per (thread, role), for durations.
    /// Keyed by (process, thread, depth): a context nested in one of the same role (an overload calling
    /// another) keeps its own start.
    context_starts: HashMap<(u32, u32, u8), u64>,
    pub events: u64,
    /// Events naming a role this build does not know (a newer catalog).
    pub unknown_events: u64,
}

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event; returns what to tell the user.
    pub fn apply(&mut self, ev: &Event) -> Option<Record> {
        self.events += 1;
        let key = ProcKey {
            pid: ev.tgid,
            instance: ev.instance,
        };
        let kind = EventKind::from_u8(ev.kind);
        if kind == Some(EventKind::ProcessExit) {
            return self.process_exit(key, ev);
        }
        let (Some(kind), Some(role)) = (kind, Role::from_u16(ev.role)) else {
            self.unknown_events += 1;
            return None;
        };
        let proc = self
            .live
            .entry(key)
            .or_insert_with(|| ProcessLedger::new(key, ev.ts_ns));
        proc.last_ns = proc.last_ns.max(ev.ts_ns);
        let field = |name: &str| role.field_index(name).map(|i| ev.fields[i]).unwrap_or(0);

        match kind {
            EventKind::ContextEnter => {
                self.context_starts
                    .insert((ev.tgid, ev.tid, ev.depth), ev.ts_ns);
                match role {
                    Role::MeshOpen => {
                        proc.mesh_opens.insert(ev.context_this, Vec::new());
                    }
                    Role::MeshAllocator => {
                        let index = proc.meshes.len() as u32 + 1;
                        let chips = if Origin::from_u8(ev.parent_origin) == Some(Origin::MeshOpen) {
                            proc.mesh_opens
                                .get(&ev.parent_this)
                                .cloned()
                                .unwrap_or_default()
                        } else {
                            Vec::new()
                        };
                        for c in &chips {
                            proc.device(*c).mesh = Some(index);
                        }
                        proc.meshes.insert(
                            index,
                            MeshLedger {
                                index,
                                chips,
                                opened_ns: ev.ts_ns,
                                ..Default::default()
                            },
                        );
                        proc.mesh_by_impl.insert(ev.context_this, index);
                        proc.mesh_by_device.insert(field("mesh"), index);
                    }
                    _ => {}
                }
                let chip = proc.device_ptrs.get(&ev.context_this).copied();
                Some(Record::ContextEntered {
                    pid: key.pid,
                    tid: ev.tid,
                    ts_ns: ev.ts_ns,
                    role,
                    chip,
                })
            }
            EventKind::ContextExit => {
                let start = self.context_starts.remove(&(ev.tgid, ev.tid, ev.depth));
                let chip = proc.device_ptrs.get(&ev.context_this).copied();
                if let Some(d) = start.map(|s| ev.ts_ns.saturating_sub(s)) {
                    let phases = match chip {
                        Some(c) => &mut proc.device(c).phases,
                        None => &mut proc.phases,
                    };
                    // Saturating: timestamps come from the probes and are not trusted.
                    let total = phases.entry(role).or_default();
                    *total = total.saturating_add(d);
                }
                Some(Record::ContextExited {
                    pid: key.pid,
                    tid: ev.tid,
                    ts_ns: ev.ts_ns,
                    role,
                    chip,
                    duration_ns: start.map(|s| ev.ts_ns.saturating_sub(s)),
                })
            }
            EventKind::Call => match role {
                Role::DeviceOpen => {
                    let chip = field("chip") as u32 as i32 as i64;
                    proc.device_ptrs.insert(field("device"), chip);
                    if Origin::from_u8(ev.origin) == Some(Origin::MeshOpen) {
                        proc.mesh_opens
                            .entry(ev.context_this)
                            .or_default()
                            .push(chip);
                    }
                    let d = proc.device(chip);
                    d.opened_ns = Some(ev.ts_ns);
                    d.closed_ns = None;
                    Some(Record::DeviceOpened {
                        pid: key.pid,
                        ts_ns: ev.ts_ns,
                        chip,
                    })
                }
                Role::KernelBinaryWrite => {
                    let chip = field("chip") as u32 as i32 as i64;
                    let bytes = field("bytes");
                    let class = KernelClass::of(Origin::from_u8(ev.origin));
                    let d = proc.device(chip);
                    d.loaded.slot(class).add(bytes);
                    d.resident.slot(class).add(bytes);
                    d.first_load_ns.get_or_insert(ev.ts_ns);
                    d.last_load_ns = Some(ev.ts_ns);
                    Some(Record::KernelLoaded {
                        pid: key.pid,
                        tid: ev.tid,
                        ts_ns: ev.ts_ns,
                        chip,
                        class,
                        bytes,
                        address: field("address"),
                    })
                }
                Role::DeviceClose => {
                    let Some(&chip) = proc.device_ptrs.get(&field("device")) else {
                        proc.unmatched += 1;
                        return None;
                    };
                    let owner = proc.owner_id(Owner::Chip(chip));
                    let outstanding = proc.live.of_owner(owner, ev.ts_ns);
                    let d = proc.device(chip);
                    d.closed_ns = Some(ev.ts_ns);
                    d.outstanding_at_close = outstanding;
                    let released = std::mem::take(&mut d.resident);
                    Some(Record::DeviceClosed {
                        pid: key.pid,
                        ts_ns: ev.ts_ns,
                        chip,
                        released,
                    })
                }
                Role::MeshClose => {
                    let mesh = proc.mesh_by_device.get(&field("mesh")).copied();
                    let mut outstanding = 0;
                    if let Some(m) = mesh {
                        let owner = proc.owner_id(Owner::Mesh(m));
                        let o = proc.live.of_owner(owner, ev.ts_ns);
                        outstanding = o.len() as u64;
                        let ml = proc.meshes.get_mut(&m).expect("mesh registered");
                        ml.closed_ns = Some(ev.ts_ns);
                        ml.outstanding_at_close = o;
                    }
                    Some(Record::MeshClosed {
                        pid: key.pid,
                        ts_ns: ev.ts_ns,
                        mesh,
                        outstanding,
                    })
                }
                Role::BankNew => {
                    let owner = match Origin::from_u8(ev.origin) {
                        Some(Origin::DeviceAllocator) => {
                            match proc.device_ptrs.get(&ev.context_this) {
                                Some(&c) => Owner::Chip(c),
                                None => Owner::Unattributed,
                            }
                        }
                        Some(Origin::MeshAllocator) => {
                            match proc.mesh_by_impl.get(&ev.context_this) {
                                Some(&m) => Owner::Mesh(m),
                                None => Owner::Unattributed,
                            }
                        }
                        Some(Origin::ScratchAllocator) => Owner::Scratch,
                        _ => Owner::Unattributed,
                    };
                    let buffer_type = BufferType::from_raw(field("buffer_type"));
                    match owner {
                        Owner::Chip(c) => {
                            *proc.device(c).banks.entry(buffer_type).or_default() += 1
                        }
                        Owner::Mesh(m) => {
                            if let Some(ml) = proc.meshes.get_mut(&m) {
                                *ml.banks.entry(buffer_type).or_default() += 1;
                            }
                        }
                        Owner::Scratch => proc.scratch_banks += 1,
                        Owner::Unattributed => proc.unattributed_banks += 1,
                    }
                    let id = proc.owner_id(owner);
                    proc.banks.insert(field("bank"), (buffer_type, id));
                    None
                }
                Role::BankAllocate => {
                    let bank = field("bank");
                    let (buffer_type, owner) = match proc.banks.get(&bank) {
                        Some(&b) => b,
                        None => (BufferType::Other, proc.owner_id(Owner::Unattributed)),
                    };
                    let size = field("size");
                    let a = Allocation {
                        size,
                        allocated_ns: ev.ts_ns,
                        owner,
                        buffer_type,
                    };
                    if let Some(old) = proc.live.insert(bank, ev.ret, a) {
                        // The same address again without a free we saw: book the old one freed.
                        proc.unmatched += 1;
                        proc.books(old.owner).free(old.buffer_type, old.size);
                    }
                    proc.books(owner).allocate(buffer_type, size);
                    None
                }
                Role::BankFree => {
                    match proc.live.remove(field("bank"), field("address")) {
                        Some(a) => proc.books(a.owner).free(a.buffer_type, a.size),
                        None => proc.unmatched += 1,
                    }
                    None
                }
                Role::BankFreeAll => {
                    for (_, a) in proc.live.drain_bank(field("bank")) {
                        proc.books(a.owner).clear(a.buffer_type, a.size);
                    }
                    None
                }
                Role::CbAllocate => {
                    match proc.device_ptrs.get(&field("device")).copied() {
                        Some(c) => proc.device(c).circular_buffers.allocate(field("size")),
                        None => proc.unmatched += 1,
                    }
                    None
                }
                Role::CbFreeAll => {
                    match proc.device_ptrs.get(&field("device")).copied() {
                        Some(c) => proc.device(c).circular_buffers.clear(),
                        None => proc.unmatched += 1,
                    }
                    None
                }
                Role::WorkloadEnqueue => {
                    proc.workloads_enqueued += 1;
                    None
                }
                Role::DeviceInit
                | Role::FabricContext
                | Role::DispatchContext
                | Role::ProgramBinaries
                | Role::MeshOpen
                | Role::DeviceAllocator
                | Role::MeshAllocator
                | Role::ScratchAllocator => None,
            },
            EventKind::ProcessExit => unreachable!("handled above"),
        }
    }

    fn process_exit(&mut self, key: ProcKey, ev: &Event) -> Option<Record> {
        let mut proc = self
            .live
            .remove(&key)
            .unwrap_or_else(|| ProcessLedger::new(key, ev.ts_ns));
        let mut released = Kernels::default();
        let mut devices = Vec::new();
        for d in proc.devices.values_mut() {
            if !d.resident.is_empty() {
                devices.push(d.chip);
            }
            released.merge(&std::mem::take(&mut d.resident));
        }
        let mut leaks: Vec<Leak> = Vec::new();
        for id in 0..proc.owners.len() as OwnerId {
            for buffer in proc.live.of_owner(id, ev.ts_ns) {
                leaks.push(Leak {
                    owner: proc.owner_name(id),
                    buffer,
                });
            }
        }
        leaks.sort_by_key(|l| (l.buffer.allocated_ns, l.buffer.address));
        proc.live.clear();
        let cleanup = Cleanup {
            pid: key.pid,
            exit_ns: ev.ts_ns,
            status: ExitStatus::from_raw(ev.fields[0]),
            released,
            devices,
            leaks,
        };
        proc.last_ns = proc.last_ns.max(ev.ts_ns);
        proc.exit = Some(cleanup.clone());
        self.context_starts.retain(|(pid, _, _), _| *pid != key.pid);
        self.ended.push(proc);
        Some(Record::ProcessExited(cleanup))
    }

    /// Every process seen, ended ones first (in the order they ended), then live ones.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessLedger> {
        self.ended.iter().chain(self.live.values())
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Whether the process `pid` (any instance) has ended and none of that pid is live.
    pub fn has_ended(&self, pid: u32) -> bool {
        self.ended.iter().any(|p| p.pid == pid) && !self.live.keys().any(|k| k.pid == pid)
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::MAX_FIELDS;

    use super::*;

    const FABRIC: u64 = 56 * 1024;
    const DISPATCH: u64 = 46 * 1024;

    fn ev(pid: u32, kind: EventKind, role: Option<Role>, origin: Origin, fields: &[u64]) -> Event {
        let mut f = [0; MAX_FIELDS];
        f[..fields.len()].copy_from_slice(fields);
        Event {
            ts_ns: 1000,
            instance: 7,
            tgid: pid,
            tid: pid,
            role: role.map(|r| r as u16).unwrap_or(0),
            kind: kind as u8,
            origin: origin as u8,
            depth: 0,
            parent_origin: 0,
            _pad: 0,
            context_this: 0,
            parent_this: 0,
            fields: f,
            ret: 0,
            entry_ts_ns: 1000,
        }
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
        c.apply(&open(pid, dev, chip));
        for _ in 0..2 {
            c.apply(&write(pid, Origin::Fabric, chip, FABRIC));
            c.apply(&write(pid, Origin::Dispatch, chip, DISPATCH));
        }
    }

    #[test]
    fn system_kernels_of_a_healthy_device_are_204_kib() {
        let mut c = Collector::new();
        healthy_device(&mut c, 10, 0xd0, 0);
        c.apply(&write(10, Origin::Application, 0, 4096));
        c.apply(&write(10, Origin::Program, 0, 8192));
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
        c.apply(&write(10, Origin::Application, 1, 100));
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
        let r = c.apply(&ev(
            10,
            EventKind::Call,
            Some(Role::DeviceClose),
            Origin::Application,
            &[0xd1],
        ));
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
        ));
        assert_eq!(c.processes().next().unwrap().unmatched, 1);
    }

    #[test]
    fn process_exit_releases_everything_and_reports_the_signal() {
        let mut c = Collector::new();
        healthy_device(&mut c, 12345, 0xd0, 0);
        c.apply(&write(12345, Origin::Application, 0, 3000));
        let r = c.apply(&ev(
            12345,
            EventKind::ProcessExit,
            None,
            Origin::Application,
            &[9],
        ));
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
        ));
        let mut again = write(5, Origin::Application, 0, 10);
        again.instance = 99;
        c.apply(&again);
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
        c.apply(&ctx(EventKind::ContextEnter, 1, 100));
        c.apply(&ctx(EventKind::ContextEnter, 2, 110));
        c.apply(&ctx(EventKind::ContextExit, 2, 150));
        let r = c.apply(&ctx(EventKind::ContextExit, 1, 200));
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
        ));
        for (dev, chip) in [(0xd0, 0), (0xd1, 1)] {
            c.apply(&with(open(pid, dev, chip), Origin::MeshOpen, TOKEN));
            c.apply(&enter(
                Role::DeviceAllocator,
                Origin::DeviceAllocator,
                dev,
                &[],
                (Origin::MeshOpen, TOKEN),
            ));
            let bank = ev(
                pid,
                EventKind::Call,
                Some(Role::BankNew),
                Origin::DeviceAllocator,
                &[0xb000 + dev, 0],
            );
            c.apply(&with(bank, Origin::DeviceAllocator, dev));
        }
        c.apply(&enter(
            Role::MeshAllocator,
            Origin::MeshAllocator,
            0x1111,
            &[0x2222],
            (Origin::MeshOpen, TOKEN),
        ));
        for (bank, ty) in [(0xb1, 0), (0xb2, 1)] {
            let e = ev(
                pid,
                EventKind::Call,
                Some(Role::BankNew),
                Origin::MeshAllocator,
                &[bank, ty],
            );
            c.apply(&with(e, Origin::MeshAllocator, 0x1111));
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
        c.apply(&alloc(0xb1, 2048, 0x1000));
        c.apply(&alloc(0xb1, 8192, 0x2000));
        c.apply(&alloc(0xb2, 4096, 0x1000)); // same address, other bank (L1)
        c.apply(&ev(
            pid,
            EventKind::Call,
            Some(Role::BankFree),
            Origin::Application,
            &[0xb1, 0x2000],
        ));
        c.apply(&ev(
            pid,
            EventKind::Call,
            Some(Role::BankFree),
            Origin::Application,
            &[0xb1, 0x9999],
        ));
        // Mesh close: outstanding buffers listed, then tt-metal clears the banks.
        c.apply(&ev(
            pid,
            EventKind::Call,
            Some(Role::MeshClose),
            Origin::Application,
            &[0x2222],
        ));
        c.apply(&ev(
            pid,
            EventKind::Call,
            Some(Role::BankFreeAll),
            Origin::Application,
            &[0xb1],
        ));

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
        let Some(Record::ProcessExited(cl)) = c.apply(&ev(
            pid,
            EventKind::ProcessExit,
            None,
            Origin::Application,
            &[9],
        )) else {
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
        c.apply(&open(3, 0xd0, 0));
        c.apply(&open(3, 0xd1, 1));
        for _ in 0..3 {
            c.apply(&ev(
                3,
                EventKind::Call,
                Some(Role::CbAllocate),
                Origin::Application,
                &[0x100, 4096, 0xd1],
            ));
        }
        c.apply(&ev(
            3,
            EventKind::Call,
            Some(Role::CbFreeAll),
            Origin::Application,
            &[0xd1],
        ));
        c.apply(&ev(
            3,
            EventKind::Call,
            Some(Role::CbAllocate),
            Origin::Application,
            &[0x100, 4096, 0xee],
        ));
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
    fn exit_status_decoding() {
        assert_eq!(ExitStatus::from_raw(0), ExitStatus::Code(0));
        assert_eq!(ExitStatus::from_raw(3 << 8), ExitStatus::Code(3));
        assert_eq!(ExitStatus::from_raw(6), ExitStatus::Signal(6));
        assert_eq!(ExitStatus::from_raw(0x80 | 6), ExitStatus::Signal(6)); // core dumped
        assert_eq!(ExitStatus::from_raw(u64::MAX), ExitStatus::Unknown);
    }

    /// Sizes and timestamps are the traced process's, not to be trusted: the event_decoder fuzz
    /// target's first crash was two kernel writes whose byte counts overflowed `Tally::add`
    /// (here reduced, with the same overflow in every other total the ledger and report keep).
    #[test]
    fn garbage_sizes_and_times_saturate_instead_of_overflowing() {
        let mut c = Collector::new();
        c.apply(&open(1, 0xd0, 0));
        for origin in [Origin::Dispatch, Origin::Dispatch, Origin::Application] {
            c.apply(&write(1, origin, 0, 0xffff_ffff_fffe_b800));
        }
        c.apply(&ev(
            1,
            EventKind::Call,
            Some(Role::BankNew),
            Origin::Application,
            &[0xb1, 0],
        ));
        for addr in [0x1000, 0x2000, 0x3000] {
            let mut e = ev(
                1,
                EventKind::Call,
                Some(Role::BankAllocate),
                Origin::Application,
                &[0xb1, u64::MAX],
            );
            e.ret = addr;
            c.apply(&e);
        }
        for _ in 0..2 {
            c.apply(&ev(
                1,
                EventKind::Call,
                Some(Role::CbAllocate),
                Origin::Application,
                &[0x100, u64::MAX, 0xd0],
            ));
        }
        for (kind, ts) in [
            (EventKind::ContextEnter, 0),
            (EventKind::ContextExit, u64::MAX),
            (EventKind::ContextEnter, 0),
            (EventKind::ContextExit, u64::MAX),
        ] {
            let mut e = ev(1, kind, Some(Role::DeviceInit), Origin::DeviceInit, &[]);
            e.ts_ns = ts;
            c.apply(&e);
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
        ));
        let report = crate::report::Report::new(&c, "x".into(), None, BTreeMap::new(), 0);
        assert!(report.to_text().contains("leaked:"));
    }

    #[test]
    fn unknown_roles_are_counted_not_applied() {
        let mut c = Collector::new();
        let mut e = write(1, Origin::Application, 0, 1);
        e.role = 999;
        assert!(c.apply(&e).is_none());
        assert_eq!(c.unknown_events, 1);
        assert_eq!(c.processes().count(), 0);
    }
}
