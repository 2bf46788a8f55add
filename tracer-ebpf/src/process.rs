//! Which processes are traced, and the instance id that names each one.

use tracer_common::counters::Counter;

use crate::maps::{count, global, PROCESSES, TRACE_ALL};

/// Instance id of process `tgid` if it is traced. With `TRACE_ALL` a process is registered on
/// first sight; otherwise only processes user space (or the fork tracepoint) put in
/// `PROCESSES` are traced.
pub fn traced_instance(tgid: u32, now: u64) -> Option<u64> {
    // SAFETY: read-only view of a map value.
    if let Some(v) = unsafe { PROCESSES.get(&tgid) } {
        return Some(*v);
    }
    if global(&TRACE_ALL) == 0 {
        return None;
    }
    // BPF_NOEXIST: if another thread won the race, read its value back.
    if PROCESSES.insert(&tgid, &now, 1).is_err() {
        // SAFETY: as above.
        return match unsafe { PROCESSES.get(&tgid) } {
            Some(v) => Some(*v),
            None => {
                count(Counter::ProcessMapFull);
                Some(now)
            }
        };
    }
    Some(now)
}

/// Instance id of process `tgid` if it is already registered as traced.
pub fn registered_instance(tgid: u32) -> Option<u64> {
    // SAFETY: read-only view of a map value.
    unsafe { PROCESSES.get(&tgid) }.copied()
}

/// Whether process `tgid` is traced or, with `TRACE_ALL`, would be.
pub fn is_traced(tgid: u32) -> bool {
    // SAFETY: read-only view of a map value.
    global(&TRACE_ALL) != 0 || unsafe { PROCESSES.get(&tgid) }.is_some()
}
