//! Host-side placeholder: tracer-ebpf's real output is its BPF binary (src/main.rs), built by
//! aya-build. This library target only lets the user crate name it as a build dependency.
#![no_std]
