//! Helpers of the no-root tests that run the tt-tracer binary built for them; everything else
//! (fixtures, binutils as an oracle, the stand-in build) comes from `test-support`.

#![allow(dead_code, unused_imports)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

pub use test_support::{
    file_offset_by_readelf, fixture, nm, tool, NmSymbol, FIXTURE_VERSIONS as VERSIONS,
};

/// Where scratch files for these tests go (inside the target directory).
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(env!("CARGO_CRATE_NAME"))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The stand-in libtt_metal.so (real 0.81.1 names), built once per test process.
pub fn standin() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| test_support::build_standin(&scratch("standin")).lib)
        .clone()
}

/// Compiles C++ `source` into the shared library `dir/name`.
pub fn build_cxx_library(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.cpp"));
    std::fs::write(&src, source).unwrap();
    let lib = dir.join(name);
    // -O0: every function stays a distinct symbol (no identical-code folding).
    tool(
        "g++",
        &[
            "-std=c++20",
            "-O0",
            "-fPIC",
            "-shared",
            "-o",
            lib.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    lib
}

/// Runs the tt-tracer binary built for these tests.
pub fn tt_tracer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tt-tracer"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tt-tracer")
}

/// `tt-tracer probes --lib LIB --json`: (exit code, parsed stdout).
pub fn probes_json(lib: &Path) -> (i32, serde_json::Value) {
    let out = tt_tracer(&["probes", "--lib", lib.to_str().unwrap(), "--json"]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "probes --json on {} printed no JSON ({e}); stderr: {}",
            lib.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), json)
}

/// Top-level parameters of a function as `nm -C` prints it, split independently of the
/// tracer's own parser: `a::f(int, std::span<unsigned int const, 5ul>) const` → ["int", "std::span<…>"].
pub fn nm_params(demangled: &str) -> Vec<String> {
    let open = demangled.find('(').expect("a parameter list");
    let mut depth = 0i32;
    let mut params = vec![String::new()];
    for c in demangled[open + 1..].chars() {
        match c {
            '(' | '<' => depth += 1,
            ')' if depth == 0 => break,
            ')' | '>' => depth -= 1,
            ',' if depth == 0 => {
                params.push(String::new());
                continue;
            }
            _ => {}
        }
        params.last_mut().unwrap().push(c);
    }
    params
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The System V integer register of a parameter, worked out here from first principles for the
/// kinds of parameter tt-metal's probed functions have: pointers, references and integers take
/// one register each, a `std::span` (pointer + length, trivially copyable) takes two. `before`
/// counts the registers taken ahead of the first parameter (`this`, a hidden result pointer).
pub fn sysv_register(params: &[String], index: usize, before: usize) -> &'static str {
    const REGS: [&str; 6] = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"];
    let mut reg = before;
    for p in &params[..index] {
        reg += if p.starts_with("std::span<") {
            2
        } else if p.ends_with('*')
            || p.ends_with('&')
            || [
                "int",
                "unsigned int",
                "unsigned char",
                "unsigned long",
                "bool",
                "long",
            ]
            .contains(&p.as_str())
        {
            1
        } else {
            panic!("test oracle does not know how `{p}` is passed")
        };
    }
    REGS[reg]
}
