//! What the collector tells as it happens: one [`Record`] per event worth a line, and the
//! cleanup record of a process exit.

use serde::Serialize;

use super::{
    ledger::{CoreType, KernelClass, Kernels},
    memory::{BufferType, Outstanding},
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
