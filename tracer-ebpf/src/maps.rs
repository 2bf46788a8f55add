//! Every map and global the programs share with user space.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    counters::Counter, Event, FileId, KernelOffsets, Recipe, MAX_LIBRARY_NAME, MAX_RECIPES,
};

/// Payload events (kernel binaries, allocations). Size overridden by user space.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Lifecycle events (device open/close, process exit): a separate ring so a flood of payload
/// events can never crowd them out.
#[map]
pub static LIFECYCLE: RingBuf = RingBuf::with_byte_size(256 << 10, 0);

/// Attach-point recipes, indexed by the attach cookie. Written by user space before attach.
#[map]
pub static RECIPES: Array<Recipe> = Array::with_max_entries(MAX_RECIPES, 0);

/// Active contexts per thread, keyed by pid_tgid; cleared by `sched_process_exit`.
#[map]
pub static THREAD_CONTEXT: HashMap<u64, ThreadContext> = HashMap::with_max_entries(16384, 0);

/// Contexts active on all threads together (pushed and not yet popped, nor dropped by the
/// thread's exit). While it is 0 no thread has one, so a probe skips its thread's lookup in
/// [`THREAD_CONTEXT`]: nearly every call happens outside any context. Each push adds one and
/// each pop or exit takes back exactly what its thread added, so it never reads 0 while the
/// current thread has a context.
#[unsafe(no_mangle)]
pub static mut ACTIVE_CONTEXTS: u64 = 0;

/// Payload bytes this CPU has written since it last looked at the ring's fill level (see
/// `emit::submit`).
#[map]
pub static UNCHECKED_BYTES: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Calls waiting for their return value, keyed by (pid_tgid, cookie). LRU: an entry orphaned by
/// a thread that died inside the call is evicted rather than filling the map.
#[map]
pub static PENDING: LruHashMap<PendingKey, Event> = LruHashMap::with_max_entries(16384, 0);

/// Traced processes: tgid → instance (CLOCK_MONOTONIC ns when first seen). Only processes in
/// here get a process-exit event; with [`TRACE_ALL`] off, only they are traced at all.
#[map]
pub static PROCESSES: HashMap<u32, u64> = HashMap::with_max_entries(8192, 0);

/// Library files user space has dealt with: [`FileId`] → `LibraryState`. A process mapping a
/// library file not in here for execution is stopped until user space has armed it.
#[map]
pub static LIBRARY_FILES: HashMap<FileId, u8> = HashMap::with_max_entries(1024, 0);

/// 1 while processes loading a new library file are to be stopped and reported (library
/// discovery): a map, not a global, so user space turns it off before it stops reading (a
/// process stopped after that would wait for a SIGCONT nobody sends).
#[map]
pub static DISCOVERY: Array<u32> = Array::with_max_entries(1, 0);

/// What could not be recorded, per CPU, indexed by [`Counter`].
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Wake the payload reader once this many bytes wait in the ring (set by user space);
/// below it the reader's poll timer picks events up, sparing a wake-up per event.
#[unsafe(no_mangle)]
pub static WAKEUP_BYTES: u64 = 64 << 10;

/// Kernel struct offsets from the running kernel's BTF (set by user space).
#[unsafe(no_mangle)]
pub static KERNEL: KernelOffsets = KernelOffsets::ALL_UNKNOWN;

/// 1: every process that calls a probed function is traced (`watch`); 0: only the processes
/// user space put in [`PROCESSES`] and their descendants (`run`, `attach`).
#[unsafe(no_mangle)]
pub static TRACE_ALL: u32 = 0;

/// This tracer's own process: never stopped, never traced.
#[unsafe(no_mangle)]
pub static TRACER_TGID: u32 = 0;

/// File name of the library to discover (`libtt_metal.so`), `LIBRARY_NAME_LEN` bytes used.
#[unsafe(no_mangle)]
pub static LIBRARY_NAME: [u8; MAX_LIBRARY_NAME] = [0; MAX_LIBRARY_NAME];
#[unsafe(no_mangle)]
pub static LIBRARY_NAME_LEN: u32 = 0;

/// Most contexts nested on one thread.
pub const MAX_DEPTH: usize = 8;

/// One active context: the origin it gives and the object (`this`) naming it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Frame {
    pub this: u64,
    pub origin: u8,
    pub _pad: [u8; 7],
}

/// A thread's stack of active contexts (the value of [`THREAD_CONTEXT`]).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ThreadContext {
    pub depth: u32,
    pub _pad: u32,
    pub frames: [Frame; MAX_DEPTH],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingKey {
    pub pid_tgid: u64,
    pub cookie: u64,
}

pub fn count(counter: Counter) {
    if let Some(v) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *v += 1 };
    }
}

/// Adds `delta` (wrapping: a negated value subtracts) to `*counter` atomically across CPUs.
/// (The BPF target has no `core::sync::atomic` read-modify-write; this is BPF_XADD.)
#[inline(always)]
pub fn atomic_add(counter: *mut u64, delta: u64) {
    #[cfg(target_arch = "bpf")]
    // SAFETY: `counter` points into a map value (a global's map); XADD validates nothing else.
    unsafe {
        core::arch::asm!("lock *(u64 *)({0} + 0) += {1}", in(reg) counter, in(reg) delta);
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: host builds exist only for linting; nothing runs them.
    unsafe {
        *counter = (*counter).wrapping_add(delta);
    }
}

/// Reads a global set by user space at load time (volatile: the verifier sees the map value,
/// the compiler must not fold the initialiser).
pub fn global<T: Copy>(g: &'static T) -> T {
    // SAFETY: a valid static.
    unsafe { core::ptr::read_volatile(g) }
}
