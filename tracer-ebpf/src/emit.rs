//! Ring-buffer submission with batched wake-ups and counted drops.

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::maps::RingBuf;
use tracer_common::{counters::Counter, Event, EventKind, Ring, MAX_FIELDS};

use crate::maps::{count, global, EVENTS, LIFECYCLE, UNCHECKED_BYTES, WAKEUP_BYTES};

/// A CPU looks at the payload ring's fill level once per this fraction of `WAKEUP_BYTES`
/// written, not on every event: a helper call per event costs more than the check is worth.
const CHECKS_PER_WAKEUP: u64 = 16;

/// Everything of a probe's event but its fields and return value.
pub struct Header {
    pub ts_ns: u64,
    pub instance: u64,
    pub pid_tgid: u64,
    pub role: u16,
    pub kind: EventKind,
    pub origin: u8,
    pub depth: u8,
    pub parent_origin: u8,
    pub library: u16,
    pub context_this: u64,
    pub parent_this: u64,
}

/// Writes an event straight into its ring: reserved, each of its 88 bytes stored once, then
/// committed (no event assembled on the stack, zeroed and copied).
#[inline(always)]
pub fn call(ring: u8, h: &Header, fields: &[u64; MAX_FIELDS], ret: u64) {
    let (map, flags, full) = if ring == Ring::Lifecycle as u8 {
        (&LIFECYCLE, BPF_RB_FORCE_WAKEUP, Counter::LifecycleRingFull)
    } else {
        (&EVENTS, payload_wakeup(), Counter::PayloadRingFull)
    };
    let Some(mut entry) = reserve(map) else {
        count(full);
        return;
    };
    let p = entry.as_mut_ptr();
    // Whole words, volatile: the compiler must neither merge them into a `memset` (a byte loop
    // on this target) nor drop a store to memory the kernel hands over uninitialised.
    let ids = (h.pid_tgid >> 32) | (h.pid_tgid << 32); // tgid at +16, tid at +20
    let tags = h.role as u64
        | (h.kind as u64) << 16
        | (h.origin as u64) << 24
        | (h.depth as u64) << 32
        | (h.parent_origin as u64) << 40
        | (h.library as u64) << 48;
    let words = [
        h.ts_ns,
        h.instance,
        ids,
        tags,
        h.context_this,
        h.parent_this,
        fields[0],
        fields[1],
        fields[2],
        fields[3],
        ret,
    ];
    let out = p.cast::<u64>();
    for (i, w) in words.into_iter().enumerate() {
        // SAFETY: `i` < 11 words = the reserved 88 bytes.
        unsafe { out.add(i).write_volatile(w) };
    }
    entry.submit(flags as u64);
}

/// A reservation for one event on `ring` (one helper call).
#[inline(always)]
fn reserve(
    ring: &'static RingBuf,
) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<Event>> {
    ring.reserve::<Event>(0)
}

/// Writes `event` to its ring (one helper call: copy and commit). Payload events wake the
/// reader only once `WAKEUP_BYTES` are waiting (a wake-up per event costs more than the rest
/// of the probe); lifecycle events always wake it.
pub fn submit(ring: u8, event: &Event) {
    if ring == Ring::Lifecycle as u8 {
        if LIFECYCLE
            .output::<Event>(event, BPF_RB_FORCE_WAKEUP as u64)
            .is_err()
        {
            count(Counter::LifecycleRingFull);
        }
        return;
    }
    if EVENTS.output::<Event>(event, payload_wakeup() as u64).is_err() {
        count(Counter::PayloadRingFull);
    }
}

/// The wake-up flag for the next payload event: forced once `WAKEUP_BYTES` wait in the ring.
#[inline(always)]
fn payload_wakeup() -> u32 {
    if fill_check_due() && EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= global(&WAKEUP_BYTES) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Whether this CPU has written a check's worth of payload bytes since its last check.
fn fill_check_due() -> bool {
    let Some(n) = UNCHECKED_BYTES.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: per-CPU slot; a program preempted on this CPU at worst loses a count.
    let n = unsafe { &mut *n };
    *n += Event::SIZE as u64;
    if *n < global(&WAKEUP_BYTES) / CHECKS_PER_WAKEUP {
        return false;
    }
    *n = 0;
    true
}
