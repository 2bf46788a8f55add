//! tt-tracer's eBPF programs.
//!
//! - `probes::call`: the generic uprobe / uretprobe pair attached to every tt-metal function the
//!   catalog resolves (a `_multi` twin of each for multi-uprobe links); the attach cookie
//!   selects the recipe saying what to read.
//! - `probes::exit`: `sched_process_exit`, which clears a dead thread's context and reports a
//!   traced process's end.
//! - `probes::fork`: `sched_process_fork`, which traces the new processes of a traced one.
//! - `probes::library`: the `mmap` syscall tracepoint, which stops a process mapping a library
//!   file that has no probes yet until user space has armed it.
#![no_std]
#![no_main]
// Atomic adds (BPF_XADD) are written as inline assembly: see `maps::atomic_add`.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod context;
mod emit;
mod maps;
mod probes;
mod process;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
