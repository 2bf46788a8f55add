//! Ring-buffer submission with batched wake-ups and counted drops.

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use tracer_common::{counters::Counter, Event, Ring};

use crate::maps::{count, global, EVENTS, LIFECYCLE, UNCHECKED_BYTES, WAKEUP_BYTES};

/// A CPU looks at the payload ring's fill level once per this fraction of `WAKEUP_BYTES`
/// written, not on every event: a helper call per event costs more than the check is worth.
const CHECKS_PER_WAKEUP: u64 = 16;

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
    let flags =
        if fill_check_due() && EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= global(&WAKEUP_BYTES) {
            BPF_RB_FORCE_WAKEUP
        } else {
            BPF_RB_NO_WAKEUP
        };
    if EVENTS.output::<Event>(event, flags as u64).is_err() {
        count(Counter::PayloadRingFull);
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
