//! Symbol text → `resolve::ops::{strip_constraints, op_of}`: the constraint skipper and the
//! operation reader see every name of a library's symbol table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tt_tracer::resolve::ops;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    let stripped = ops::strip_constraints(name);
    // Stripping removes text, never adds it.
    assert!(stripped.len() <= name.len());
    if let Some(symbol) = ops::op_of(name) {
        let _ = (symbol.op.name(), symbol.op.path(), format!("{symbol:?}"));
    }
});
