//! What the collector tells as it happens: one [`Record`] per event worth a line.

use serde::Serialize;

use super::{
    ledger::{Cleanup, CoreType, KernelClass, Kernels},
    memory::BufferType,
};
use crate::roles::Role;

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
