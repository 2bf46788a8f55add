//! `sched_process_exit`: forget a dead thread's contexts at once, and report the end of a traced
//! process when its last thread goes (`group_dead`), instead of polling for dead pids.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tracer_common::{Event, EventKind, Ring, MAX_FIELDS};

use crate::{
    context,
    emit::submit,
    maps::{global, KERNEL, PROCESSES},
};

/// Exit code when the kernel's task_struct layout is unknown.
const EXIT_CODE_UNKNOWN: u64 = u64::MAX;

// TP_PROTO(struct task_struct *p, bool group_dead): runs in the exiting task.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    context::forget(pid_tgid);

    let group_dead: u64 = ctx.arg(1);
    if group_dead & 0xff == 0 {
        return 0;
    }
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: read-only view of a map value.
    let Some(instance) = (unsafe { PROCESSES.get(&tgid) }).copied() else {
        return 0;
    };
    let _ = PROCESSES.remove(&tgid);

    let task: u64 = ctx.arg(0);
    let offset = global(&KERNEL).task_exit_code;
    let exit_code = if offset == u32::MAX {
        EXIT_CODE_UNKNOWN
    } else {
        // SAFETY: bpf_probe_read_kernel validates the address.
        match unsafe { bpf_probe_read_kernel((task + offset as u64) as *const i32) } {
            Ok(code) => code as u32 as u64,
            Err(_) => EXIT_CODE_UNKNOWN,
        }
    };

    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut fields = [0; MAX_FIELDS];
    fields[0] = exit_code;
    // Who it was, from the kernel: /proc may be gone before user space reads it.
    let comm = bpf_get_current_comm().unwrap_or_default();
    fields[1] = u64::from_le_bytes([
        comm[0], comm[1], comm[2], comm[3], comm[4], comm[5], comm[6], comm[7],
    ]);
    fields[2] = u64::from_le_bytes([
        comm[8], comm[9], comm[10], comm[11], comm[12], comm[13], comm[14], comm[15],
    ]);
    // SAFETY: helper without preconditions.
    fields[3] = unsafe { bpf_get_current_cgroup_id() };
    let mut ev = Event::new(
        EventKind::ProcessExit,
        0,
        now,
        instance,
        tgid,
        pid_tgid as u32,
    );
    ev.fields = fields;
    submit(Ring::Lifecycle as u8, &ev);
    0
}
