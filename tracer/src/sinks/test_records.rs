//! Records as the collector makes them, for the sinks' unit tests.

use crate::collector::{
    memory::{BufferType, Outstanding},
    Cleanup, ExitStatus, KernelClass, Kernels, Leak, Record,
};

pub(super) fn kernel(pid: u32, chip: i64, class: KernelClass, bytes: u64) -> Record {
    Record::KernelLoaded {
        op: None,
        pid,
        tid: pid,
        ts_ns: 1,
        chip,
        class,
        bytes,
        address: 0x1000,
    }
}

pub(super) fn opened(pid: u32, chip: i64) -> Record {
    Record::DeviceOpened {
        pid,
        ts_ns: 1,
        chip,
    }
}

pub(super) fn exited(pid: u32, status: ExitStatus, leaks: &[(BufferType, u64)]) -> Record {
    Record::ProcessExited(Cleanup {
        pid,
        exit_ns: 9,
        status,
        released: Kernels::default(),
        devices: vec![0],
        leaks: leaks
            .iter()
            .map(|&(buffer_type, size)| Leak {
                owner: "mesh 1".into(),
                buffer: Outstanding {
                    op: None,
                    buffer_type,
                    size,
                    address: 0x100,
                    allocated_ns: 1,
                    age_ns: 1,
                },
            })
            .collect(),
        complete: true,
        comm: None,
        cgroup: None,
    })
}

pub(super) fn mesh(pid: u32, mesh: u32, chips: &[i64]) -> Record {
    Record::MeshOpened {
        pid,
        tid: pid,
        ts_ns: 1,
        mesh,
        chips: chips.to_vec(),
    }
}

pub(super) fn alloc(
    pid: u32,
    chip: Option<i64>,
    mesh: Option<u32>,
    t: BufferType,
    live: u64,
) -> Record {
    Record::BufferAllocated {
        op: None,
        pid,
        tid: pid,
        ts_ns: 1,
        chip,
        mesh,
        buffer_type: t,
        size: 1,
        address: 0x100,
        live_bytes: live,
    }
}

pub(super) fn free(
    pid: u32,
    chip: Option<i64>,
    mesh: Option<u32>,
    t: BufferType,
    live: u64,
) -> Record {
    Record::BufferFreed {
        pid,
        tid: pid,
        ts_ns: 1,
        chip,
        mesh,
        buffer_type: t,
        size: 1,
        address: 0x100,
        live_bytes: live,
    }
}

pub(super) fn cb(pid: u32, chip: i64, live: u64) -> Record {
    Record::CircularBufferAllocated {
        op: None,
        pid,
        tid: pid,
        ts_ns: 1,
        chip,
        size: 1,
        live_bytes: live,
    }
}

pub(super) fn started(pid: u32, comm: &str) -> Record {
    Record::ProcessStarted {
        pid,
        instance: 1,
        ts_ns: 1,
        library: None,
        comm: Some(comm.into()),
        cgroup: None,
    }
}
