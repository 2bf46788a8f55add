//! Ring-buffer submission with batched wake-ups and counted drops.

use core::mem::MaybeUninit;

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use tracer_common::{counters::Counter, Event, EventKind, Ring, MAX_FIELDS};

use crate::maps::{count, global, EVENTS, LIFECYCLE, UNCHECKED_BYTES, WAKEUP_BYTES};

/// A CPU looks at the payload ring's fill level once per this fraction of `WAKEUP_BYTES`
/// written, not on every event: a helper call per event costs more than the check is worth.
const CHECKS_PER_WAKEUP: u64 = 16;

// The words `event` writes, checked against the ABI's layout.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Event, instance) == 8);
    assert!(offset_of!(Event, tgid) == 16 && offset_of!(Event, tid) == 20);
    assert!(offset_of!(Event, role) == 24 && offset_of!(Event, kind) == 26);
    assert!(offset_of!(Event, origin) == 27 && offset_of!(Event, depth) == 28);
    assert!(offset_of!(Event, parent_origin) == 29 && offset_of!(Event, library) == 30);
    assert!(offset_of!(Event, context_this) == 32 && offset_of!(Event, parent_this) == 40);
    assert!(offset_of!(Event, fields) == 48 && offset_of!(Event, ret) == 80);
    assert!(Event::SIZE == 11 * 8);
};

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

/// Writes an event to its ring: its 88 bytes as 11 words (no `Event` zeroed on the stack — a
/// `memset` call, a byte loop on this target — then filled), copied out by one
/// `bpf_ringbuf_output` (measured cheaper than reserve + stores into the ring + submit: one
/// helper call fewer).
#[inline(always)]
pub fn event(ring: u8, h: &Header, fields: &[u64; MAX_FIELDS], ret: u64) {
    let (map, flags, full) = if ring == Ring::Lifecycle as u8 {
        (&LIFECYCLE, BPF_RB_FORCE_WAKEUP, Counter::LifecycleRingFull)
    } else {
        (&EVENTS, payload_wakeup(), Counter::PayloadRingFull)
    };
    let ids = h.pid_tgid.rotate_left(32); // tgid at +16, tid at +20
    let tags = h.role as u64
        | (h.kind as u64) << 16
        | (h.origin as u64) << 24
        | (h.depth as u64) << 32
        | (h.parent_origin as u64) << 40
        | (h.library as u64) << 48;
    let values = [
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
    // One volatile store per word: plain ones are merged into a `memset` call wherever
    // neighbouring words are zero (a byte loop on this target).
    let mut words = MaybeUninit::<[u64; 11]>::uninit();
    let w = words.as_mut_ptr().cast::<u64>();
    for (i, v) in values.into_iter().enumerate() {
        // SAFETY: `i` < 11, inside `words`.
        unsafe { w.add(i).write_volatile(v) };
    }
    // SAFETY: every word written above.
    let words = unsafe { words.assume_init_ref() };
    if map.output::<[u64; 11]>(words, flags as u64).is_err() {
        count(full);
    }
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
    if EVENTS
        .output::<Event>(event, payload_wakeup() as u64)
        .is_err()
    {
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
