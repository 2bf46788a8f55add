//! The full, real libtt_metal.so of PyPI ttnn 0.81.1 (35 MB, code and symbols), resolved by the
//! tt-tracer binary and checked against binutils: every attach point's file offset, the bytes
//! there, and the registers, which must also agree with the 0.81.1 symbol fixture and the
//! stand-in library. Needs no root, but needs the package registry: the wheel is downloaded once
//! and the library cached under the target directory. A failed download fails the test.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Instant,
};

use integration_tests::{target_dir, tracer_bin};
use serde_json::Value;

const VERSION: &str = "0.81.1";
const MEMBER: &str = "ttnn/build/lib/libtt_metal.so";

fn run(program: &str, args: &[&str]) -> String {
    test_support::tool(program, args)
}

/// The real library, from the cache or else downloaded from PyPI and extracted (checked
/// against the wheel's RECORD hash). Concurrent runs at worst download twice: the cached file
/// appears by rename only when complete.
fn real_library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = target_dir().join("tt-metal-wheels").join(VERSION);
        let lib = dir.join("libtt_metal.so");
        if lib.is_file() {
            return lib;
        }
        std::fs::create_dir_all(&dir).unwrap();
        let download = dir.join(format!("download.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&download);
        let t = Instant::now();
        let out = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", &format!("ttnn=={VERSION}")])
            .args(["--python-version", "3.10", "--only-binary=:all:", "--platform", "manylinux_2_34_x86_64"])
            .arg("-d")
            .arg(&download)
            .output()
            .expect("running python3 -m pip (needs python3 with pip)");
        assert!(
            out.status.success(),
            "downloading ttnn {VERSION} from PyPI failed ({}); this test needs the package registry.\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let wheel = std::fs::read_dir(&download)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .unwrap_or_else(|| panic!("pip printed success but left no wheel in {}", download.display()));
        eprintln!(
            "downloaded {} ({:.0} MB) in {:.1} s",
            wheel.display(),
            std::fs::metadata(&wheel).unwrap().len() as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        let partial = dir.join(format!(".libtt_metal.so.{}", std::process::id()));
        let extract = r#"
import base64, hashlib, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    want = next(l.split(",")[1] for l in z.read(record).decode().splitlines() if l.split(",")[0] == member)
    data = z.read(member)
got = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
if got != want:
    sys.exit(f"{member}: hash {got} does not match the wheel's RECORD {want}")
open(out, "wb").write(data)
"#;
        run(
            "python3",
            &["-c", extract, wheel.to_str().unwrap(), MEMBER, partial.to_str().unwrap()],
        );
        std::fs::rename(&partial, &lib).unwrap();
        // The 100 MB wheel is not needed once the library is out.
        let _ = std::fs::remove_dir_all(&download);
        lib
    })
}

/// `tt-tracer probes --lib LIB --json`: (exit code, document).
fn probes(lib: &Path) -> (i32, Value) {
    let out = Command::new(tracer_bin())
        .args(["probes", "--lib"])
        .arg(lib)
        .arg("--json")
        .output()
        .expect("run tt-tracer");
    let j = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "probes --json on {} printed no JSON ({e}): {}",
            lib.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), j)
}

/// The 0.81.1 symbol fixture that ships with the project.
fn fixture() -> PathBuf {
    test_support::fixture(VERSION)
}

/// The stand-in library (real 0.81.1 names), built once into the target directory.
fn standin() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        test_support::build_standin(&target_dir().join("real-library-test/standin")).lib
    })
}

/// (mangled, address, nm -C text) of the defined symbols in .dynsym, from `nm -D`.
fn dynsym(lib: &Path) -> Vec<(String, u64, String)> {
    test_support::nm(lib, true)
        .into_iter()
        .map(|s| (s.mangled, s.address, s.demangled))
        .collect()
}

/// PT_LOAD (offset, vaddr, filesz) from `readelf -lW`.
fn loads(lib: &Path) -> Vec<(u64, u64, u64)> {
    test_support::load_segments(lib)
}

/// The first bytes of the instructions at `addr`, as objdump disassembles them.
fn code_bytes(lib: &Path, addr: u64, n: usize) -> Vec<u8> {
    let out = run(
        "objdump",
        &[
            "-d",
            &format!("--start-address={addr:#x}"),
            &format!("--stop-address={:#x}", addr + 32),
            lib.to_str().unwrap(),
        ],
    );
    let mut bytes = Vec::new();
    for line in out.lines() {
        let mut cols = line.split('\t');
        let (Some(at), Some(hex)) = (cols.next(), cols.next()) else {
            continue;
        };
        let at = at.trim();
        if !at.ends_with(':') || u64::from_str_radix(at.trim_end_matches(':'), 16).is_err() {
            continue;
        }
        bytes.extend(
            hex.split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap()),
        );
    }
    bytes.truncate(n);
    bytes
}

/// [(field, register)] of one attach point.
type Registers = Vec<(String, String)>;

/// role → [(demangled, registers)] of a probes document.
fn roles(j: &Value) -> Vec<(String, Vec<(String, Registers)>)> {
    j["roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resolved"] == true)
        .map(|r| {
            let points = r["attach"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let fields = p["fields"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| {
                            (
                                f["name"].as_str().unwrap().into(),
                                f["register"].as_str().unwrap().into(),
                            )
                        })
                        .collect();
                    (p["demangled"].as_str().unwrap().to_string(), fields)
                })
                .collect();
            (r["id"].as_str().unwrap().to_string(), points)
        })
        .collect()
}

#[test]
fn every_attach_point_is_at_the_offset_binutils_computes() {
    let lib = real_library();
    let (code, j) = probes(lib);
    assert_eq!(code, 0, "{j:#}");
    assert_eq!(j["complete"], true);
    assert_eq!(j["usable"], true);
    assert_eq!(j["has_code"], true);
    let notes = run("readelf", &["-n", lib.to_str().unwrap()]);
    let build_id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("a build-id note");
    assert_eq!(j["build_id"], build_id);

    let exported = dynsym(lib);
    let loads = loads(lib);
    let data = std::fs::read(lib).unwrap();
    let mut points = 0;
    let mut moved = 0;
    for role in j["roles"].as_array().unwrap() {
        assert_eq!(
            role["resolved"], true,
            "{}: {}",
            role["id"], role["problem"]
        );
        for p in role["attach"].as_array().unwrap() {
            let mangled = p["mangled"].as_str().unwrap();
            let ctx = format!("{} {mangled}", role["id"]);
            let (_, addr, text) = exported
                .iter()
                .find(|(n, _, _)| n == mangled)
                .unwrap_or_else(|| panic!("{ctx}: not exported (nm -D)"));
            assert_eq!(p["address"].as_u64(), Some(*addr), "{ctx}");
            assert_eq!(
                p["demangled"],
                text.as_str(),
                "{ctx}: text differs from nm -D -C"
            );
            let (off, vaddr, _) = loads
                .iter()
                .copied()
                .find(|&(_, v, size)| *addr >= v && *addr - v < size)
                .unwrap_or_else(|| panic!("{ctx}: {addr:#x} in no PT_LOAD"));
            let want = addr - vaddr + off;
            assert_eq!(p["file_offset"].as_u64(), Some(want), "{ctx}");
            moved += (want != *addr) as usize;
            // The bytes at that offset are the function's first instructions.
            let code = code_bytes(lib, *addr, 8);
            assert_eq!(code.len(), 8, "{ctx}: objdump shows no code");
            assert_eq!(&data[want as usize..want as usize + 8], &code[..], "{ctx}");
            points += 1;
        }
    }
    assert!(points >= 9, "only {points} attach points");
    // In this library the code's file offsets differ from its addresses: the translation matters.
    assert_eq!(moved, points);
}

#[test]
fn the_real_library_resolves_like_its_symbol_fixture() {
    let (code, real) = probes(real_library());
    assert_eq!(code, 0);
    let (_, fixture) = probes(&fixture());
    // The fixture is `objcopy --only-keep-debug` of this very file.
    assert_eq!(real["build_id"], fixture["build_id"]);
    assert_eq!(roles(&real), roles(&fixture));
    for (r, f) in real["roles"]
        .as_array()
        .unwrap()
        .iter()
        .zip(fixture["roles"].as_array().unwrap())
    {
        let addrs = |x: &Value| {
            x["attach"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["address"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(addrs(r), addrs(f), "{}", r["id"]);
    }
}

#[test]
fn the_standin_resolves_to_the_same_roles_and_registers() {
    let (code, real) = probes(real_library());
    assert_eq!(code, 0);
    let (code, standin) = probes(standin());
    assert_eq!(code, 0, "{standin:#}");
    let ids = |j: &Value| roles(j).into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    let (real_ids, standin_ids) = (ids(&real), ids(&standin));
    // Every role the stand-in resolves, the real library resolves; a role only the real
    // library resolves is an optional one the stand-in does not model (named on stderr).
    let required = |j: &Value| {
        j["roles"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["required"] == true)
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(required(&standin), required(&real));
    for id in &standin_ids {
        assert!(
            real_ids.contains(id),
            "the stand-in resolves {id}, the real library does not"
        );
    }
    let only_real: Vec<&String> = real_ids
        .iter()
        .filter(|id| !standin_ids.contains(id))
        .collect();
    for id in &only_real {
        assert!(
            !required(&real).contains(id),
            "required role {id} not resolved on the stand-in"
        );
    }
    if !only_real.is_empty() {
        eprintln!("optional roles the stand-in does not export: {only_real:?}");
    }
    // The kernel and lifecycle roles the stand-in exists to model are all there, optional or not.
    for id in [
        "device_init",
        "fabric_context",
        "dispatch_context",
        "program_binaries",
        "device_open",
        "kernel_binary_write",
        "device_close",
        "mesh_close",
        "firmware_write",
        "workload_enqueue",
    ] {
        assert!(
            standin_ids.iter().any(|s| s == id),
            "the stand-in does not resolve {id}"
        );
        assert!(
            real_ids.iter().any(|s| s == id),
            "the real library does not resolve {id}"
        );
    }
    // Per role, the registers of every field (the stand-in exports fewer overloads).
    let registers = |j: &Value| {
        roles(j)
            .into_iter()
            .filter(|(id, _)| standin_ids.contains(id))
            .map(|(id, points)| {
                let mut fields: Registers = points.into_iter().flat_map(|(_, f)| f).collect();
                fields.sort();
                fields.dedup();
                (id, fields)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(registers(&standin), registers(&real));
    // Where both export a function, it is the same signature.
    let real_roles = roles(&real);
    for (id, points) in roles(&standin) {
        let theirs = &real_roles.iter().find(|(r, _)| *r == id).unwrap().1;
        for (demangled, fields) in points {
            let same = theirs.iter().find(|(d, _)| *d == demangled);
            let (_, real_fields) =
                same.unwrap_or_else(|| panic!("{id}: the real library has no {demangled}"));
            assert_eq!(&fields, real_fields, "{id}: {demangled}");
        }
    }
}
