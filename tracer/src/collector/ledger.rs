//! The ledger itself: per process, per device and per mesh, kernels by origin and memory books.
//! Plain data with small helpers; the collector's handlers fill it.

use std::collections::BTreeMap;

use serde::Serialize;
use tracer_common::Origin;

use super::{
    attribution::{Attribution, Owner},
    identity::{Cgroup, ProcessInfo},
    memory::{BufferType, CircularBuffers, LiveAllocations, MemoryBooks, Outstanding, OwnerId},
};
use crate::roles::Role;

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

impl Tally {
    pub(crate) fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }
    /// One of those counted before is gone (what is live: count and bytes now).
    pub(crate) fn remove(&mut self, bytes: u64) {
        self.count = self.count.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }
    fn merge(&mut self, o: &Tally) {
        self.count += o.count;
        self.bytes = self.bytes.saturating_add(o.bytes);
    }
    pub(super) fn add_bytes(&mut self, bytes: u64) {
        self.add(bytes);
    }
}

/// Kernel binaries by origin. Fabric and dispatch are the system kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Kernels {
    pub fabric: Tally,
    pub dispatch: Tally,
    /// Written during device initialisation outside fabric/dispatch bring-up.
    pub init: Tally,
    /// Application kernels written to the cores one by one (slow dispatch).
    pub application: Tally,
    /// Application kernels a program placed in a device buffer of its binaries, which the
    /// dispatch firmware copies to the cores (fast dispatch, ttnn's default).
    pub program_buffers: Tally,
    /// Firmware binaries written to the cores' RISC processors (one per write or multicast).
    pub firmware: Tally,
}

impl Kernels {
    pub fn system(&self) -> Tally {
        let mut t = self.fabric;
        t.merge(&self.dispatch);
        t.merge(&self.init);
        t
    }
    /// Application kernels however they were loaded.
    pub fn applications(&self) -> Tally {
        let mut t = self.application;
        t.merge(&self.program_buffers);
        t
    }
    /// Everything: system kernels, application kernels and firmware.
    pub fn total(&self) -> Tally {
        let mut t = self.system();
        t.merge(&self.applications());
        t.merge(&self.firmware);
        t
    }
    pub fn is_empty(&self) -> bool {
        self.total().count == 0
    }
    pub(super) fn add_class(&mut self, class: KernelClass, bytes: u64) {
        match class {
            KernelClass::Fabric => &mut self.fabric,
            KernelClass::Dispatch => &mut self.dispatch,
            KernelClass::Init => &mut self.init,
            KernelClass::Application => &mut self.application,
        }
        .add(bytes)
    }
    pub(super) fn merge(&mut self, o: &Kernels) {
        self.fabric.merge(&o.fabric);
        self.dispatch.merge(&o.dispatch);
        self.init.merge(&o.init);
        self.application.merge(&o.application);
        self.program_buffers.merge(&o.program_buffers);
        self.firmware.merge(&o.firmware);
    }
    pub(super) fn add_firmware(&mut self, bytes: u64) {
        self.firmware.add(bytes);
    }
    pub(super) fn add_program_buffer(&mut self, bytes: u64) {
        self.program_buffers.add(bytes);
    }
    pub(super) fn remove_program_buffer(&mut self, bytes: u64) {
        self.program_buffers.remove(bytes);
    }
}

/// tt-metal's `HalProgrammableCoreType` (the same values in every release seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum CoreType {
    Tensix,
    ActiveEth,
    IdleEth,
    /// A value this build does not know.
    Other,
}

impl CoreType {
    pub(crate) fn from_raw(v: u64) -> CoreType {
        match v {
            0 => CoreType::Tensix,
            1 => CoreType::ActiveEth,
            2 => CoreType::IdleEth,
            _ => CoreType::Other,
        }
    }
}

/// What a kernel binary is, from the context active on its thread when it was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
            // An operation's kernels are the user's, whatever runs them.
            Some(Origin::Application | Origin::Program | Origin::Op) | None => {
                KernelClass::Application
            }
        }
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
    /// Firmware binaries written, by core type (`tensix`, `active_eth`, `idle_eth`).
    pub firmware_by_core: BTreeMap<CoreType, Tally>,
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

#[derive(Debug)]
pub struct ProcessLedger {
    pub pid: u32,
    pub instance: u64,
    /// The library id of its first event that named one (the session keeps the table).
    pub library: Option<u16>,
    /// Command name and control group, as the session described them.
    pub comm: Option<String>,
    pub cgroup: Option<Cgroup>,
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
    /// Program binary buffers whose allocator serves no known chip or mesh.
    pub unplaced_program_buffers: Tally,
    pub workloads_enqueued: u64,
    /// Time spent in contexts not tied to one device (device init, mesh open, program
    /// uploads), summed, ns.
    pub phases: BTreeMap<Role, u64>,
    /// Events that referred to something unknown (closing a device never opened, freeing an
    /// address never allocated, a CB on an unknown device).
    pub unmatched: u64,
    /// ttnn operations: one row per operation type, and the launches running now.
    pub operations: super::Operations,
    pub(super) attribution: Attribution,
    pub(super) live: LiveAllocations,
}

impl ProcessLedger {
    pub(super) fn new(key: ProcKey, ts: u64) -> Self {
        ProcessLedger {
            pid: key.pid,
            instance: key.instance,
            library: None,
            comm: None,
            cgroup: None,
            first_ns: ts,
            last_ns: ts,
            devices: BTreeMap::new(),
            exit: None,
            meshes: BTreeMap::new(),
            unattributed: MemoryBooks::default(),
            scratch_banks: 0,
            unattributed_banks: 0,
            unplaced_program_buffers: Tally::default(),
            workloads_enqueued: 0,
            phases: BTreeMap::new(),
            unmatched: 0,
            operations: Default::default(),
            attribution: Attribution::default(),
            live: LiveAllocations::default(),
        }
    }

    pub(super) fn set_info(&mut self, info: ProcessInfo) {
        // What is known stays known: a later description without it does not erase it.
        if info.comm.is_some() {
            self.comm = info.comm;
        }
        if info.cgroup.is_some() {
            self.cgroup = info.cgroup;
        }
    }

    pub(super) fn started_record(&self) -> crate::collector::Record {
        crate::collector::Record::ProcessStarted {
            pid: self.pid,
            instance: self.instance,
            ts_ns: self.first_ns,
            library: self.library,
            comm: self.comm.clone(),
            cgroup: self.cgroup.clone(),
        }
    }

    /// Live device buffers the process holds now.
    pub fn live_allocations(&self) -> usize {
        self.live.len()
    }

    /// Every kernel loaded, all devices together.
    pub fn loaded(&self) -> Kernels {
        let mut k = Kernels::default();
        for d in self.devices.values() {
            k.merge(&d.loaded);
        }
        k
    }

    pub(super) fn device(&mut self, chip: i64) -> &mut DeviceLedger {
        self.devices.entry(chip).or_insert_with(|| DeviceLedger {
            chip,
            ..Default::default()
        })
    }

    /// The chips an owner's buffers occupy: its chip, or every chip of its mesh.
    pub(super) fn chips_of(&self, id: OwnerId) -> Vec<i64> {
        match self.attribution.owner(id) {
            Owner::Chip(c) => vec![c],
            Owner::Mesh(m) => self
                .meshes
                .get(&m)
                .map(|m| m.chips.clone())
                .unwrap_or_default(),
            Owner::Scratch | Owner::Unattributed => Vec::new(),
        }
    }

    /// The books an owner's allocations go to.
    pub(super) fn books(&mut self, id: OwnerId) -> &mut MemoryBooks {
        match self.attribution.owner(id) {
            Owner::Chip(c) => &mut self.device(c).memory,
            Owner::Mesh(m) => match self.meshes.get_mut(&m) {
                Some(mesh) => &mut mesh.memory,
                None => &mut self.unattributed,
            },
            Owner::Scratch | Owner::Unattributed => &mut self.unattributed,
        }
    }
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
    /// Who it was (as described by the session), so a cleanup line can name it.
    pub comm: Option<String>,
    pub cgroup: Option<Cgroup>,
    pub exit_ns: u64,
    pub status: ExitStatus,
    pub released: Kernels,
    pub devices: Vec<i64>,
    /// Device buffers still allocated at exit (released by the exit), oldest first.
    pub leaks: Vec<Leak>,
    /// False when the probes had lost events by the time of the exit: what it released may be
    /// more than this says. The collector cannot know (it sees only what arrives): the reader
    /// sets it.
    pub complete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_decoding() {
        assert_eq!(ExitStatus::from_raw(0), ExitStatus::Code(0));
        assert_eq!(ExitStatus::from_raw(3 << 8), ExitStatus::Code(3));
        assert_eq!(ExitStatus::from_raw(6), ExitStatus::Signal(6));
        assert_eq!(ExitStatus::from_raw(0x80 | 6), ExitStatus::Signal(6)); // core dumped
        assert_eq!(ExitStatus::from_raw(u64::MAX), ExitStatus::Unknown);
    }
}
