//! Helpers shared by the no-root tests: locating the symbol fixtures, running binutils as an
//! independent oracle, building small libraries with g++, and running the tt-tracer binary.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

pub const VERSIONS: [&str; 3] = ["0.62.2", "0.72.0", "0.81.1"];

/// `shared/fixtures/tt-metal-symbols`: from TT_TRACER_FIXTURES, else the first ancestor of this
/// crate that has `shared/fixtures/tt-metal-symbols` (the checkout sits next to `shared/`).
/// Missing fixtures fail the test: they are what proves the catalog on real releases.
pub fn fixtures_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TT_TRACER_FIXTURES") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("libtt_metal-0.81.1.debug").is_file(),
            "TT_TRACER_FIXTURES={} has no libtt_metal-0.81.1.debug",
            dir.display()
        );
        return dir;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in manifest.ancestors() {
        let candidate = dir.join("shared/fixtures/tt-metal-symbols");
        if candidate.is_dir() {
            return candidate;
        }
    }
    panic!(
        "tt-metal symbol fixtures not found: no shared/fixtures/tt-metal-symbols in any parent of {} \
         (expected ../shared/fixtures next to the checkout, or set TT_TRACER_FIXTURES to the directory \
         holding libtt_metal-{{0.62.2,0.72.0,0.81.1}}.debug)",
        manifest.display()
    );
}

pub fn fixture(version: &str) -> PathBuf {
    let path = fixtures_dir().join(format!("libtt_metal-{version}.debug"));
    assert!(path.is_file(), "fixture missing: {}", path.display());
    path
}

/// Runs a tool and returns its stdout; any failure fails the test with the tool's stderr.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 tool output")
}

/// A defined symbol as binutils sees it.
#[derive(Debug, Clone)]
pub struct NmSymbol {
    pub address: u64,
    pub kind: char,
    pub mangled: String,
    /// What `nm -C` prints.
    pub demangled: String,
}

/// Every defined symbol of `path` from `nm` and `nm -C`, in symbol-table order (`-p`), so the two
/// listings pair up line by line. `dynamic` reads .dynsym (`-D`) instead of .symtab.
pub fn nm(path: &Path, dynamic: bool) -> Vec<NmSymbol> {
    let p = path.to_str().unwrap();
    let mut args = vec!["-p", "--defined-only"];
    if dynamic {
        args.push("-D");
    }
    let plain = tool("nm", &[&args[..], &[p]].concat());
    let demangled = tool("nm", &[&args[..], &["-C", p]].concat());
    let split = |line: &str| {
        let (addr, rest) = line.split_once(' ').expect("nm line");
        let (kind, name) = rest.split_once(' ').expect("nm line");
        (
            u64::from_str_radix(addr, 16).expect("nm address"),
            kind.chars().next().unwrap(),
            name.to_string(),
        )
    };
    let plain: Vec<_> = plain.lines().map(split).collect();
    let demangled: Vec<_> = demangled.lines().map(split).collect();
    assert_eq!(
        plain.len(),
        demangled.len(),
        "nm and nm -C list different symbols"
    );
    plain
        .into_iter()
        .zip(demangled)
        .map(|((address, kind, mangled), (a2, _, demangled))| {
            assert_eq!(address, a2);
            NmSymbol {
                address,
                kind,
                mangled,
                demangled,
            }
        })
        .collect()
}

/// File offset of virtual address `addr`, from the PT_LOAD lines of `readelf -lW`.
pub fn file_offset_by_readelf(path: &Path, addr: u64) -> Option<u64> {
    let out = tool("readelf", &["-lW", path.to_str().unwrap()]);
    let hex =
        |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("readelf number");
    out.lines()
        .map(str::split_whitespace)
        .filter_map(|mut w| {
            (w.next()? == "LOAD").then(|| {
                let v: Vec<&str> = w.collect();
                // Offset VirtAddr PhysAddr FileSiz MemSiz Flg... Align
                (hex(v[0]), hex(v[1]), hex(v[3]))
            })
        })
        .find(|&(_, vaddr, filesz)| addr >= vaddr && addr - vaddr < filesz)
        .map(|(off, vaddr, _)| addr - vaddr + off)
}

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
    LIB.get_or_init(|| {
        let out = scratch("standin");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/standin/build.sh");
        tool("bash", &[script.to_str().unwrap(), out.to_str().unwrap()]);
        out.join("libtt_metal.so")
    })
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
