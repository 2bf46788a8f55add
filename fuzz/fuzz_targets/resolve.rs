//! Library bytes → `resolve_bytes` with the built-in catalog: ELF headers, segments, symbol
//! tables, demangling, parameter lists, register placement, file offsets, recipes.
#![no_main]

use std::{path::Path, sync::LazyLock};

use libfuzzer_sys::fuzz_target;
use tt_tracer::{catalog::Catalog, resolve};

static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::builtin);

fuzz_target!(|data: &[u8]| {
    let Ok(resolution) = resolve::resolve_bytes(Path::new("fuzz.so"), data, &CATALOG) else {
        return;
    };
    let _ = (resolution.features(), resolution.ensure_complete());
    let _ = format!("{resolution:?}");
    for spec in &CATALOG.roles {
        if let Some(r) = resolution.role(spec.role) {
            for point in &r.attach {
                let _ = tt_tracer::loader::recipe(spec, point);
            }
        }
    }
});
