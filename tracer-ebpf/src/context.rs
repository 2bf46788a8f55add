//! Per-thread stack of active contexts (fabric, dispatch, program upload, …).
//!
//! A kernel binary's origin is the innermost context on the thread that loads it, so the stack
//! is per thread (tt-metal 0.81 configures fabric on worker threads while other threads run).

use tracer_common::counters::Counter;

use crate::maps::{
    atomic_add, count, Frame, ThreadContext, ACTIVE_CONTEXTS, MAX_DEPTH, THREAD_CONTEXT,
};

/// A thread's stack before its first push.
static EMPTY: ThreadContext = ThreadContext {
    depth: 0,
    _pad: 0,
    frames: [Frame {
        this: 0,
        origin: 0,
        _pad: [0; 7],
    }; MAX_DEPTH],
};

/// Whether any thread may have a context (see [`ACTIVE_CONTEXTS`]).
fn any_active() -> bool {
    // SAFETY: a global of the programs' own; changed only with atomic adds.
    unsafe { core::ptr::read_volatile(&raw const ACTIVE_CONTEXTS) != 0 }
}

/// Adds `delta` (wrapping) to [`ACTIVE_CONTEXTS`].
fn add_active(delta: u64) {
    atomic_add(&raw mut ACTIVE_CONTEXTS, delta);
}

/// Innermost context of the thread: (origin, this, depth); (0, 0, 0) if none.
pub fn innermost(pid_tgid: u64) -> (u8, u64, u32) {
    if !any_active() {
        return (0, 0, 0);
    }
    // SAFETY: read-only view of a map value.
    let Some(tc) = (unsafe { THREAD_CONTEXT.get(&pid_tgid) }) else {
        return (0, 0, 0);
    };
    // Bounds checked on the value used for the access, and `get` rather than indexing: the
    // verifier must see the bound on that register and rejects a bounds-check panic path.
    let depth = tc.depth as usize;
    if depth == 0 || depth > MAX_DEPTH {
        return (0, 0, 0);
    }
    match tc.frames.get(depth - 1) {
        Some(f) => (f.origin, f.this, depth as u32),
        None => (0, 0, 0),
    }
}

/// Pushes a context; returns the new depth, or None if it could not be tracked (counted).
pub fn push(pid_tgid: u64, origin: u8, this: u64) -> Option<u32> {
    let tc = match THREAD_CONTEXT.get_ptr_mut(&pid_tgid) {
        Some(tc) => tc,
        None => {
            // Inserted from read-only data: an empty stack built on the program's stack would
            // be zeroed by a `memset` call, a byte loop on this target (136 bytes).
            if THREAD_CONTEXT.insert(&pid_tgid, &EMPTY, 0).is_err() {
                count(Counter::ContextMapFull);
                return None;
            }
            THREAD_CONTEXT.get_ptr_mut(&pid_tgid)?
        }
    };
    // SAFETY: map value owned by this thread's key; only this thread writes it.
    let tc = unsafe { &mut *tc };
    let depth = tc.depth as usize;
    let Some(slot) = tc.frames.get_mut(depth) else {
        count(Counter::ContextTooDeep);
        return None;
    };
    // Counted before the frame exists: never 0 while the thread has one.
    add_active(1);
    // Field by field: the padding is never read, and zeroing it costs a `memset` call.
    slot.this = this;
    slot.origin = origin;
    tc.depth = depth as u32 + 1;
    Some(tc.depth)
}

/// Pops the innermost context; returns the depth before the pop (0 if there was none).
pub fn pop(pid_tgid: u64) -> u32 {
    let Some(tc) = THREAD_CONTEXT.get_ptr_mut(&pid_tgid) else {
        return 0;
    };
    // SAFETY: as in push.
    let tc = unsafe { &mut *tc };
    let depth = tc.depth;
    if depth == 0 {
        return 0;
    }
    tc.depth = depth - 1;
    if tc.depth == 0 {
        // Keep the map small: most threads never run a context again.
        let _ = THREAD_CONTEXT.remove(&pid_tgid);
    }
    add_active(1u64.wrapping_neg());
    depth
}

/// Drops an exiting thread's contexts (a thread killed inside one leaves nothing behind).
/// Runs in that thread, so nothing else changes its stack meanwhile.
pub fn forget(pid_tgid: u64) {
    if !any_active() {
        return;
    }
    // SAFETY: read-only view of a map value, copied before the remove.
    let Some(depth) = (unsafe { THREAD_CONTEXT.get(&pid_tgid) }).map(|tc| tc.depth) else {
        return;
    };
    let _ = THREAD_CONTEXT.remove(&pid_tgid);
    if depth > 0 {
        add_active((depth as u64).wrapping_neg());
    }
}
