//! The ABI shared by tt-tracer's eBPF programs and its user-space loader.
//!
//! Everything here is `#[repr(C)]` plain data: [`recipe`] is what user space writes into the
//! `RECIPES` map to tell the generic probes what to read at each attach point, [`event`] is what
//! the probes write into the ring buffers, [`counters`] names the per-CPU loss counters,
//! [`kernel`] carries kernel struct offsets and library-file identities.
#![no_std]

pub mod counters;
pub mod event;
pub mod kernel;
pub mod recipe;

pub use counters::Counter;
pub use event::{Event, EventKind, Origin};
pub use kernel::{FileId, KernelOffsets, LibraryState, MAX_LIBRARY_NAME};
pub use recipe::{
    FieldOp, FieldRule, Recipe, RecipeKind, Ring, CONTEXT_NAMED_BY_COOKIE, MAX_FIELDS, MAX_RECIPES,
};
