//! tt-tracer: a zero-code-change eBPF tracer for the tt-metal runtime (`libtt_metal.so`).
//!
//! Data path, one direction only: probes (`tracer-ebpf`) → ring buffers → [`session`] (decode,
//! order) → [`collector`] (pure ledger) → [`report`]. Version knowledge lives in the catalog
//! (`catalog/tt-metal.toml`, parsed by [`catalog`], resolved against a library by [`resolve`]).

#![warn(unreachable_pub)]

pub mod catalog;
pub mod collector;
pub mod errors;
mod files;
pub mod kernel;
pub mod libraries;
pub mod loader;

pub mod process;
pub mod report;
pub mod resolve;
pub mod roles;
pub mod session;
pub mod sinks;

pub use errors::{Error, Result};
