//! `sched_process_fork`: a new process forked by a traced one is traced too, so `run` follows
//! the command's whole tree (shell wrappers, multiprocessing, launchers) from the kernel.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tracer_common::{counters::Counter, KernelOffsets};

use crate::maps::{count, global, KERNEL, PROCESSES, TRACE_ALL};

// TP_PROTO(struct task_struct *parent, struct task_struct *child): runs in the parent.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    // With TRACE_ALL every process is registered when it first calls a probe.
    if global(&TRACE_ALL) != 0 {
        return 0;
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: read-only view of a map value.
    if unsafe { PROCESSES.get(&parent) }.is_none() {
        return 0;
    }
    let k: KernelOffsets = global(&KERNEL);
    if k.task_pid == KernelOffsets::UNKNOWN || k.task_tgid == KernelOffsets::UNKNOWN {
        return 0;
    }
    let child: u64 = ctx.arg(1);
    // SAFETY: bpf_probe_read_kernel validates the address.
    let (pid, tgid) = unsafe {
        (
            bpf_probe_read_kernel((child + k.task_pid as u64) as *const i32),
            bpf_probe_read_kernel((child + k.task_tgid as u64) as *const i32),
        )
    };
    let (Ok(pid), Ok(tgid)) = (pid, tgid) else {
        return 0;
    };
    // A new thread shares its parent's tgid: only a new process gets an entry.
    if pid != tgid {
        return 0;
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if PROCESSES.insert(&(pid as u32), &now, 1).is_err() {
        // SAFETY: read-only view of a map value.
        if unsafe { PROCESSES.get(&(pid as u32)) }.is_none() {
            count(Counter::ProcessMapFull);
        }
    }
    0
}
