//! Collector memory per live device buffer: feeds N allocations (no frees) through the pure
//! collector and divides the heap growth, counted by a wrapping global allocator, by N.
//!
//! cargo run --release -p tt-tracer --example ledger_memory [-- N]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
};

use tracer_common::{Event, EventKind};
use tt_tracer::{collector::Collector, roles::Role};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn event(role: Role, fields: &[u64], ret: u64) -> Event {
    let mut e = Event::new(EventKind::Call, role as u16, 1, 1, 1, 1);
    e.fields[..fields.len()].copy_from_slice(fields);
    e.ret = ret;
    e
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut c = Collector::new();
    c.apply(&event(Role::BankNew, &[0xb0, 0], 0));
    c.apply(&event(Role::BankAllocate, &[0xb0, 64], 0x10));
    let before = LIVE.load(Ordering::Relaxed);
    for i in 1..=n {
        c.apply(&event(Role::BankAllocate, &[0xb0, 2048], 0x10 + i * 2048));
    }
    let grown = LIVE.load(Ordering::Relaxed) - before;
    let live = c
        .processes()
        .next()
        .map(|p| p.live_allocations())
        .unwrap_or(0);
    assert_eq!(live as u64, n + 1);
    println!(
        "collector memory: {} live allocations, heap +{:.1} MiB, {:.1} bytes per live allocation (goal ≤ 128)",
        live,
        grown as f64 / (1 << 20) as f64,
        grown as f64 / n as f64
    );
}
