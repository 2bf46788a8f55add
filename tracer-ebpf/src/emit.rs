//! Ring-buffer submission with batched wake-ups and counted drops.

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use tracer_common::{counters::Counter, Event, Ring};

use crate::maps::{count, global, EVENTS, LIFECYCLE, WAKEUP_BYTES};

/// Writes `event` to its ring. Payload events wake the reader only once `WAKEUP_BYTES` are
/// waiting (a wake-up per event costs more than the rest of the probe); lifecycle events always
/// wake it.
pub fn submit(ring: u8, event: &Event) {
    let (rb, flags, lost) = if ring == Ring::Lifecycle as u8 {
        (
            &LIFECYCLE,
            BPF_RB_FORCE_WAKEUP as u64,
            Counter::LifecycleRingFull,
        )
    } else {
        let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
        let flags = if waiting >= global(&WAKEUP_BYTES) {
            BPF_RB_FORCE_WAKEUP
        } else {
            BPF_RB_NO_WAKEUP
        };
        (&EVENTS, flags as u64, Counter::PayloadRingFull)
    };
    match rb.reserve::<Event>(0) {
        Some(mut entry) => {
            entry.write(*event);
            entry.submit(flags);
        }
        None => count(lost),
    }
}
