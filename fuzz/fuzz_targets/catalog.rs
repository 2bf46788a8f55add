//! Catalog text → `Catalog::parse`; a catalog that validates is resolved against a small real
//! ELF (tiny_tt_metal.so: tt-metal's real mangled names, see seeds/elf.sh), so whatever the
//! validator lets through is what the resolver and the recipe builder get.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tt_tracer::{catalog::Catalog, resolve};

static ELF: &[u8] = include_bytes!("../fixtures/tiny_tt_metal.so");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(catalog) = Catalog::parse(text, "fuzz.toml") else {
        return;
    };
    let Ok(resolution) = resolve::resolve_bytes(Path::new("tiny_tt_metal.so"), ELF, &catalog)
    else {
        return;
    };
    let _ = (resolution.features(), resolution.ensure_complete());
    let _ = format!("{resolution:?}");
    for spec in &catalog.roles {
        if let Some(r) = resolution.role(spec.role) {
            for point in &r.attach {
                let _ = tt_tracer::loader::recipe(spec, point);
            }
        }
    }
});
