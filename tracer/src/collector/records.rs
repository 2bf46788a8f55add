//! What the collector tells as it happens: one [`Record`] per event worth a line.

use std::sync::Arc;

use serde::Serialize;

use super::{
    identity::Cgroup,
    ledger::{Cleanup, CoreType, KernelClass, Kernels},
    memory::BufferType,
    operations::CacheOutcome,
};
use crate::roles::Role;

/// One thing worth telling the user as it happens.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// The first event of a process instance: who it is, as far as known then.
    ProcessStarted {
        pid: u32,
        instance: u64,
        ts_ns: u64,
        /// The library id of the attach point that fired (None: not known yet).
        library: Option<u16>,
        comm: Option<String>,
        cgroup: Option<Cgroup>,
    },
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
        /// The ttnn operation running on the thread, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        op: Option<Arc<str>>,
    },
    /// A firmware binary written to a core type's RISC processors.
    FirmwareLoaded {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        chip: i64,
        core_type: CoreType,
        bytes: u64,
    },
    /// A program placed its kernel binaries in a device buffer (fast dispatch): application
    /// kernels on each of `chips` (all chips of a mesh buffer; none if its allocator is unknown).
    ProgramBinariesPlaced {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        chips: Vec<i64>,
        bytes: u64,
        address: u64,
        buffer_type: BufferType,
        /// The ttnn operation running on the thread, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        op: Option<Arc<str>>,
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
    /// A mesh's lock-step allocator was built: the mesh exists.
    MeshOpened {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        mesh: u32,
        chips: Vec<i64>,
    },
    /// A bank allocator was built (one per buffer type per allocator).
    BankBuilt {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        buffer_type: BufferType,
        /// "chip N", "mesh N", "scratch allocator" or "unattributed".
        owner: String,
    },
    /// A device buffer was allocated. `chip` or `mesh` names its allocator (neither when it
    /// is unknown); `live_bytes` is that owner's live bytes of this type after it.
    BufferAllocated {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        chip: Option<i64>,
        mesh: Option<u32>,
        buffer_type: BufferType,
        size: u64,
        address: u64,
        live_bytes: u64,
        /// The ttnn operation running on the thread, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        op: Option<Arc<str>>,
    },
    /// A device buffer was freed one by one (fields as for `BufferAllocated`).
    BufferFreed {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        chip: Option<i64>,
        mesh: Option<u32>,
        buffer_type: BufferType,
        size: u64,
        address: u64,
        live_bytes: u64,
    },
    /// Every buffer of a bank released at once (`deallocate_all`, at device or mesh close).
    BuffersCleared {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        chip: Option<i64>,
        mesh: Option<u32>,
        buffer_type: BufferType,
        count: u64,
        bytes: u64,
        live_bytes: u64,
    },
    /// A program's binary buffer was freed: its kernels left `chips`.
    ProgramBinariesFreed {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        chips: Vec<i64>,
        bytes: u64,
        address: u64,
    },
    CircularBufferAllocated {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        chip: i64,
        size: u64,
        /// The chip's live circular-buffer bytes after it.
        live_bytes: u64,
        /// The ttnn operation running on the thread, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        op: Option<Arc<str>>,
    },
    /// All of a chip's circular buffers released (`track_deallocate_cb`).
    CircularBuffersReleased {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        chip: i64,
        count: u64,
        bytes: u64,
    },
    WorkloadEnqueued {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        /// Workloads the process has enqueued so far, this one included.
        total: u64,
        /// The ttnn operation running on the thread, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        op: Option<Arc<str>>,
    },
    /// An event about something never seen (a device never opened, an address never
    /// allocated, a CB on an unknown device): counted in the process's `unmatched`.
    Unmatched {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        role: Role,
    },
    /// A ttnn device operation began on a thread (`launch<Op>`).
    OpBegan {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        op: Arc<str>,
    },
    /// The operation's program-cache look-up: its program was cached (hit) or built (miss).
    OpProgramCache {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        op: Arc<str>,
        outcome: CacheOutcome,
    },
    /// The operation ended; `cache` is its look-up's outcome (None: no probe could tell).
    OpEnded {
        pid: u32,
        tid: u32,
        ts_ns: u64,
        op: Arc<str>,
        duration_ns: u64,
        cache: Option<CacheOutcome>,
    },
    ProcessExited(Cleanup),
    /// A library file armed: its attach points fire for every process that maps it (or for
    /// the one process of `attach`).
    LibraryTraced {
        /// The id its events and processes carry.
        id: u16,
        path: String,
        build_id: Option<String>,
        /// Attach points (uprobes and uretprobes).
        probes: usize,
        /// Kernel attachments holding them: one multi-uprobe link per program, or one perf
        /// event per attach point (kernels before 6.6, or --no-multi-attach).
        links: usize,
        /// The process that loaded it, when that is how it was found (None: named with --lib).
        pid: Option<u32>,
        /// How long that process was stopped while the file was armed (ns).
        stopped_ns: Option<u64>,
    },
    /// A library file that cannot be traced (unknown release, no symbols, …): said once; the
    /// processes that load it run untraced.
    LibraryRefused {
        path: String,
        /// The message, with what is missing.
        reason: String,
        /// One short label: `missing_roles`, `not_tt_metal`, `no_symbols`, …
        cause: &'static str,
        pid: Option<u32>,
    },
}
