//! Libraries as they are found in the wild: inside a Python venv, stripped to .dynsym, several
//! different ones on one host, and files that are not a usable libtt_metal.so at all. Runs the
//! tt-tracer binary; no root needed.

mod common;

use std::path::Path;

use common::*;
use tt_tracer::{catalog::Catalog, resolve, roles::Role};

/// [(field, register)] of one attach point.
type Registers = Vec<(String, String)>;

/// (role, registers of each attach point), for comparing two libraries.
fn shape(j: &serde_json::Value) -> Vec<(String, Vec<Registers>)> {
    j["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let points = r["attach"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    p["fields"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| {
                            (
                                f["name"].as_str().unwrap().into(),
                                f["register"].as_str().unwrap().into(),
                            )
                        })
                        .collect()
                })
                .collect();
            (r["id"].as_str().unwrap().into(), points)
        })
        .collect()
}

/// Offsets and mangled names of every attach point.
fn attach_points(j: &serde_json::Value) -> Vec<(String, String, u64)> {
    let mut v = Vec::new();
    for r in j["roles"].as_array().unwrap() {
        for p in r["attach"].as_array().unwrap() {
            v.push((
                r["id"].as_str().unwrap().to_string(),
                p["mangled"].as_str().unwrap().to_string(),
                p["file_offset"].as_u64().expect("a file offset"),
            ));
        }
    }
    v
}

/// Every attach point's offset is what `nm -D` and the program headers say.
fn assert_offsets_match_binutils(lib: &Path, j: &serde_json::Value) {
    let dynsym = nm(lib, true);
    for (role, mangled, offset) in attach_points(j) {
        let s = dynsym
            .iter()
            .find(|s| s.mangled == mangled)
            .unwrap_or_else(|| panic!("{role}: {mangled} not in nm -D of {}", lib.display()));
        assert_eq!(
            Some(offset),
            file_offset_by_readelf(lib, s.address),
            "{role}: {mangled}"
        );
    }
}

#[test]
fn a_library_inside_a_venv_resolves_the_same_as_anywhere() {
    let lib = standin();
    let venv = scratch("venv").join("venv/lib/python3.10/site-packages/ttnn/build/lib");
    std::fs::create_dir_all(&venv).unwrap();
    let inside = venv.join("libtt_metal.so");
    std::fs::copy(&lib, &inside).unwrap();

    let (code, plain) = probes_json(&lib);
    assert_eq!(code, 0, "{plain:#}");
    let (code, in_venv) = probes_json(&inside);
    assert_eq!(code, 0, "{in_venv:#}");
    assert_eq!(in_venv["library"], inside.to_str().unwrap());
    assert_eq!(in_venv["complete"], true);
    assert_eq!(in_venv["usable"], true);
    assert_eq!(shape(&in_venv), shape(&plain));
    assert_eq!(attach_points(&in_venv), attach_points(&plain));
    assert_eq!(in_venv["build_id"], plain["build_id"]);
    assert_offsets_match_binutils(&inside, &in_venv);
}

#[test]
fn a_stripped_library_resolves_from_dynsym_alone() {
    let lib = standin();
    let dir = scratch("stripped");
    let stripped = dir.join("libtt_metal.so");
    std::fs::copy(&lib, &stripped).unwrap();
    tool("strip", &["--strip-all", stripped.to_str().unwrap()]);
    let sections = tool("readelf", &["-SW", stripped.to_str().unwrap()]);
    assert!(!sections.contains(".symtab"), "strip left .symtab");
    assert!(sections.contains(".dynsym"));

    let (code, full) = probes_json(&lib);
    assert_eq!(code, 0);
    let (code, j) = probes_json(&stripped);
    assert_eq!(code, 0, "{j:#}");
    assert_eq!(j["symbols"]["symtab"], 0);
    assert!(j["symbols"]["dynsym"].as_u64().unwrap() > 100);
    assert_eq!(shape(&j), shape(&full));
    // Stripping drops sections past the code, not code: the offsets do not move.
    assert_eq!(attach_points(&j), attach_points(&full));
    assert_offsets_match_binutils(&stripped, &j);
    let text = tt_tracer(&["probes", "--lib", stripped.to_str().unwrap()]);
    let stdout = String::from_utf8(text.stdout).unwrap();
    assert!(
        stdout.contains("0 in .symtab (stripped: exported names only)"),
        "{stdout}"
    );
}

/// Version-0.62-shaped exports: chip first in the constructor, no MetalEnvImpl& on the write.
const OLD_SHAPE: &str = r#"
#include <cstdint>
#include <span>
#include <vector>
namespace ll_api { struct memory { std::vector<std::uint32_t> data_; }; }
namespace tt {
namespace umd { struct xy_pair { unsigned long x, y; }; }
class DevicePool { public: void initialize_fabric_and_dispatch_fw() const; };
void DevicePool::initialize_fabric_and_dispatch_fw() const {}
namespace tt_metal {
struct IDevice;
class Device {
public:
    Device(int, unsigned char, unsigned long, unsigned long, std::span<const std::uint32_t>, bool, unsigned int, unsigned int, unsigned long);
    void configure_fabric();
    void configure_command_queue_programs();
    bool close();
    int id_ = 0;
};
Device::Device(int id, unsigned char, unsigned long, unsigned long, std::span<const std::uint32_t>, bool, unsigned int, unsigned int, unsigned long) : id_(id) {}
void Device::configure_fabric() {}
void Device::configure_command_queue_programs() {}
bool Device::close() { return true; }
}
namespace llrt {
void write_binary_to_address(ll_api::memory const&, int, umd::xy_pair const&, unsigned int) {}
}
}
"#;

#[test]
fn several_libraries_on_one_host_resolve_each_on_its_own() {
    let dir = scratch("several");
    let new = standin();
    let old = build_cxx_library(&dir, "libtt_metal.so.old", OLD_SHAPE);
    let catalog = Catalog::builtin();
    // Interleaved in one process, then again: no state carries over from one file to the next.
    let order = [&new, &old, &new, &old];
    let results: Vec<_> = order
        .iter()
        .map(|p| resolve::resolve_file(p, &catalog).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let regs = |r: &resolve::Resolution, role: Role| -> Vec<&str> {
        r.role(role)
            .unwrap()
            .attach
            .iter()
            .flat_map(|p| p.fields.iter().map(|f| f.register))
            .collect()
    };
    for (i, r) in results.iter().enumerate() {
        assert!(
            r.missing_required().is_empty(),
            "{}: {:?}",
            r.library.display(),
            r.missing_required()
        );
        assert_eq!(&r.library, order[i]);
        let is_new = order[i] == &new;
        assert_eq!(
            regs(r, Role::DeviceOpen),
            if is_new {
                ["rdi", "rcx"]
            } else {
                ["rdi", "rsi"]
            }
        );
        assert_eq!(
            regs(r, Role::KernelBinaryWrite),
            if is_new {
                ["rsi", "rdx", "r8"]
            } else {
                ["rdi", "rsi", "rcx"]
            }
        );
        let init = &r.role(Role::DeviceInit).unwrap().attach[0].demangled;
        assert_eq!(
            init,
            if is_new {
                "tt::tt_metal::DeviceManager::initialize_fabric_and_dispatch_fw()"
            } else {
                "tt::DevicePool::initialize_fabric_and_dispatch_fw() const"
            }
        );
    }
    // The old shape has no MeshDevice::close nor program uploads: optional roles, degraded features.
    let (code, j) = probes_json(&old);
    assert_eq!(code, 0, "{j:#}");
    let available = |id: &str| {
        let f = j["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap();
        f["available"].as_bool().unwrap()
    };
    for id in [
        "kernel_binaries",
        "fabric_kernels",
        "dispatch_kernels",
        "bring_up",
        "device_identity",
        "device_close",
    ] {
        assert!(available(id), "{id}");
    }
    assert!(!available("program_uploads"));
    assert!(!available("mesh_close"));
    let program = j["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "program_uploads")
        .unwrap();
    assert_eq!(
        program["degraded"],
        "application kernels in fast dispatch are still counted but not marked as program uploads"
    );
    assert_offsets_match_binutils(&old, &j);
}

/// A 64-byte ELF header and nothing else, for machine `machine` and class `class` (1 = 32-bit).
fn elf_header(class: u8, machine: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = class;
    h[5] = 1; // little-endian
    h[6] = 1; // EV_CURRENT
    h[16] = 3; // ET_DYN
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h[20] = 1;
    h
}

#[test]
fn unusable_files_get_a_one_line_error_and_exit_3() {
    let dir = scratch("bad-input");
    let text = dir.join("libtt_metal.so.txt");
    std::fs::write(&text, "this is not a library\n").unwrap();
    let empty = dir.join("empty.so");
    std::fs::write(&empty, "").unwrap();
    let aarch64 = dir.join("libtt_metal-aarch64.so");
    std::fs::write(&aarch64, elf_header(2, 183)).unwrap();
    let i386 = dir.join("libtt_metal-i386.so");
    std::fs::write(&i386, elf_header(1, 3)).unwrap();
    let truncated = dir.join("truncated.so");
    std::fs::write(&truncated, &std::fs::read(standin()).unwrap()[..200]).unwrap();
    let no_symbols = dir.join("static-stripped");
    let src = dir.join("main.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    tool(
        "gcc",
        &[
            "-static",
            "-s",
            "-o",
            no_symbols.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists())
    .expect("libc.so.6 on this host");
    let missing = dir.join("nowhere/libtt_metal.so");

    let cases: [(&Path, &str, &str); 9] = [
        (&missing, "not_found", "No such file or directory"),
        (&text, "not_elf", "not an ELF file (no ELF magic number)"),
        (&empty, "not_elf", "not an ELF file (empty file)"),
        (&truncated, "not_elf", "not an ELF file"),
        (
            &aarch64,
            "wrong_architecture",
            "64-bit AArch64 ELF; tt-tracer traces x86-64 libraries only",
        ),
        (
            &i386,
            "wrong_architecture",
            "32-bit i386 ELF; tt-tracer traces x86-64 libraries only",
        ),
        (&no_symbols, "no_symbols", "no symbols at all"),
        (libc, "not_tt_metal", "no tt-metal symbols found"),
        (&dir, "is_directory", "is a directory, not a library"),
    ];
    for (path, kind, message) in cases {
        let p = path.to_str().unwrap();
        let out = tt_tracer(&["probes", "--lib", p]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{p}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{p}: printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(stderr.lines().count(), 1, "{p}: not one line: {stderr}");
        assert!(
            stderr.contains(p),
            "{p}: error does not name the file: {stderr}"
        );
        assert_eq!(
            stderr.matches(message).count(),
            1,
            "{p}: {stderr:?} should say {message:?} once"
        );
        assert!(!stderr.contains("panicked"), "{p}: {stderr}");

        let out = tt_tracer(&["probes", "--lib", p, "--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{p} --json: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{p} --json: {stderr}");
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("an error document");
        assert_eq!(j["schema"], 1);
        assert_eq!(j["library"], p);
        assert_eq!(j["exit_code"], 3);
        assert_eq!(j["error"]["kind"], kind, "{p}");
        assert!(
            j["error"]["message"].as_str().unwrap().contains(message),
            "{p}: {j}"
        );
    }
}

#[test]
fn a_bad_catalog_file_is_a_one_line_error_too() {
    let dir = scratch("bad-catalog");
    let catalog = dir.join("catalog.toml");
    std::fs::write(&catalog, "schema = 2\nrole = []\n").unwrap();
    let lib = standin();
    let out = tt_tracer(&[
        "probes",
        "--lib",
        lib.to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(catalog.to_str().unwrap()) && stderr.contains("schema 2"),
        "{stderr}"
    );
}

/// Every key of every object in `j`, with the path of arrays and objects leading to it.
fn keys(j: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match j {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone());
                keys(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

#[test]
fn every_json_field_is_documented() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/probes-json.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let mut found = std::collections::BTreeSet::new();
    // A resolution with code, one with a refused overload, and an error document.
    keys(&probes_json(&standin()).1, &mut found);
    keys(&probes_json(&fixture("0.62.2")).1, &mut found);
    keys(
        &probes_json(Path::new("/nonexistent/libtt_metal.so")).1,
        &mut found,
    );
    for key in found {
        // A nested object's keys are documented as `parent.key`.
        let documented =
            doc.contains(&format!("| `{key}` |")) || doc.contains(&format!(".{key}` |"));
        let parent = doc.contains(&format!("| `{key}."));
        assert!(
            documented || parent,
            "`{key}` is not documented in {}",
            doc_path.display()
        );
    }
}

/// A report and a record stream with every kind of content the collector produces: one
/// process through a mesh bring-up, kernels, firmware, buffers of each owner, CBs, closes and
/// an exit with a leak.
fn full_report_and_records() -> (serde_json::Value, Vec<serde_json::Value>) {
    use tracer_common::{Event, EventKind, Origin};
    use tt_tracer::{
        collector::{Cgroup, Collector, ProcessInfo},
        report::{LibraryInfo, Report},
    };
    const PID: u32 = 10;
    const TOKEN: u64 = 0x7ff0;
    let mut ts = 0;
    let mut ev = |kind: EventKind, role: Option<Role>, origin: Origin, this: u64, f: &[u64]| {
        ts += 1000;
        let mut e = Event::new(kind, role.map_or(0, |r| r as u16), ts, 7, PID, PID);
        e.origin = origin as u8;
        e.context_this = this;
        e.library = 1;
        e.fields[..f.len()].copy_from_slice(f);
        e
    };
    let call = EventKind::Call;
    let mut events = vec![
        ev(
            EventKind::ContextEnter,
            Some(Role::MeshOpen),
            Origin::MeshOpen,
            TOKEN,
            &[],
        ),
        ev(
            call,
            Some(Role::DeviceOpen),
            Origin::MeshOpen,
            TOKEN,
            &[0xd0, 0],
        ),
        ev(
            EventKind::ContextEnter,
            Some(Role::DeviceAllocator),
            Origin::DeviceAllocator,
            0xd0,
            &[],
        ),
        ev(
            call,
            Some(Role::BankNew),
            Origin::DeviceAllocator,
            0xd0,
            &[0xb0, 0],
        ),
        ev(
            EventKind::ContextExit,
            Some(Role::DeviceAllocator),
            Origin::DeviceAllocator,
            0xd0,
            &[],
        ),
    ];
    let mut mesh = ev(
        EventKind::ContextEnter,
        Some(Role::MeshAllocator),
        Origin::MeshAllocator,
        0x1111,
        &[0x2222],
    );
    mesh.parent_origin = Origin::MeshOpen as u8;
    mesh.parent_this = TOKEN;
    events.push(mesh);
    events.extend([
        ev(
            call,
            Some(Role::BankNew),
            Origin::MeshAllocator,
            0x1111,
            &[0xb1, 1],
        ),
        ev(
            EventKind::ContextEnter,
            Some(Role::DeviceInit),
            Origin::DeviceInit,
            0,
            &[],
        ),
        ev(
            EventKind::ContextExit,
            Some(Role::DeviceInit),
            Origin::DeviceInit,
            0,
            &[],
        ),
        ev(
            call,
            Some(Role::KernelBinaryWrite),
            Origin::Fabric,
            0,
            &[4096, 0, 0x4000],
        ),
        ev(
            call,
            Some(Role::KernelBinaryWrite),
            Origin::Application,
            0,
            &[2048, 0, 0x4000],
        ),
        ev(
            call,
            Some(Role::FirmwareWrite),
            Origin::Application,
            0,
            &[1000, 0, 0],
        ),
        ev(
            call,
            Some(Role::CbAllocate),
            Origin::Application,
            0,
            &[0x100, 64, 0xd0],
        ),
        ev(call, Some(Role::CbFreeAll), Origin::Application, 0, &[0xd0]),
        ev(
            call,
            Some(Role::WorkloadEnqueue),
            Origin::Application,
            0,
            &[],
        ),
        ev(
            call,
            Some(Role::DeviceClose),
            Origin::Application,
            0,
            &[0xee],
        ),
    ]);
    for (origin, bank, size, addr) in [
        (Origin::Application, 0xb0, 100, 0x10),
        (Origin::Application, 0xb0, 50, 0x18),
        (Origin::Application, 0xb1, 200, 0x20),
        (Origin::Program, 0xb0, 300, 0x30),
        (Origin::Application, 0xbf, 400, 0x40),
        (Origin::Program, 0xbf, 500, 0x50),
    ] {
        let mut e = ev(call, Some(Role::BankAllocate), origin, 0, &[bank, size]);
        e.ret = addr;
        events.push(e);
    }
    events.extend([
        ev(
            call,
            Some(Role::BankFree),
            Origin::Application,
            0,
            &[0xb0, 0x18],
        ),
        ev(
            call,
            Some(Role::BankFree),
            Origin::Application,
            0,
            &[0xb0, 0x30],
        ),
        ev(
            call,
            Some(Role::DeviceClose),
            Origin::Application,
            0,
            &[0xd0],
        ),
        ev(
            call,
            Some(Role::MeshClose),
            Origin::Application,
            0,
            &[0x2222],
        ),
        ev(
            call,
            Some(Role::BankFreeAll),
            Origin::Application,
            0,
            &[0xb1],
        ),
        ev(EventKind::ProcessExit, None, Origin::Application, 0, &[9]),
    ]);
    let mut c = Collector::with_history(1);
    c.describe(
        PID,
        7,
        ProcessInfo {
            comm: Some("python3".into()),
            cgroup: Cgroup::from_proc_cgroup(
                "0::/system.slice/docker-3f2a9c1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd.scope\n",
            ),
        },
    );
    let mut records = Vec::new();
    // One that ends first, to be dropped from the history of 1 when the next ends.
    let gone = Event::new(EventKind::ProcessExit, 0, 1, 1, 11, 11);
    records.extend(c.apply(&gone).map(|r| serde_json::to_value(&r).unwrap()));
    for e in &events {
        records.extend(c.apply(e).map(|r| serde_json::to_value(&r).unwrap()));
    }
    // And a process still running.
    let live = Event::new(EventKind::Call, Role::WorkloadEnqueue as u16, 2, 1, 13, 13);
    records.extend(c.apply(&live).map(|r| serde_json::to_value(&r).unwrap()));
    let libraries = [LibraryInfo {
        id: 1,
        path: "/venv/libtt_metal.so".into(),
        build_id: Some("00ff".into()),
        catalog: "built-in".into(),
    }];
    let lost = std::collections::BTreeMap::from([("payload_ring_full", 0)]);
    let report = Report::new(&c, &libraries, lost, 0);
    assert_eq!(report.history_dropped, 1);
    (serde_json::to_value(&report).unwrap(), records)
}

#[test]
fn every_report_and_record_field_is_documented() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/report.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let (report, records) = full_report_and_records();
    assert_eq!(report["schema"], 2);
    let mut found = std::collections::BTreeSet::new();
    keys(&report, &mut found);
    let mut kinds = std::collections::BTreeSet::new();
    for r in &records {
        keys(r, &mut found);
        kinds.insert(r["record"].as_str().unwrap().to_string());
    }
    // Every kind of content made it in: the check below covers them all.
    for key in [
        "leaks",
        "outstanding_at_close",
        "firmware_by_core",
        "cgroup",
        "container_id",
        "unplaced_program_buffers",
        "library_path",
        "history_dropped",
    ] {
        assert!(found.contains(key), "{key} not produced");
    }
    let expected = [
        "process_started",
        "device_opened",
        "mesh_opened",
        "context_entered",
        "context_exited",
        "kernel_loaded",
        "firmware_loaded",
        "program_binaries_placed",
        "program_binaries_freed",
        "bank_built",
        "buffer_allocated",
        "buffer_freed",
        "buffers_cleared",
        "circular_buffer_allocated",
        "circular_buffers_released",
        "workload_enqueued",
        "unmatched",
        "device_closed",
        "mesh_closed",
        "process_exited",
    ];
    for k in expected {
        assert!(kinds.contains(k), "no {k} record produced: {kinds:?}");
        assert!(
            doc.contains(&format!("| `{k}` |")),
            "record {k} not documented"
        );
    }
    assert_eq!(kinds.len(), expected.len(), "{kinds:?}");
    for key in found {
        // Map keys that are data (chip ids, mesh indexes) need no documentation.
        if key.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // `key`, or a member of a documented `{a, b, …}` group.
        let in_group = doc.match_indices(key.as_str()).any(|(i, _)| {
            let before = doc[..i].chars().next_back();
            let after = doc[i + key.len()..].chars().next();
            before.is_some_and(|c| c == '{' || c.is_whitespace())
                && matches!(after, Some(',' | '}'))
        });
        assert!(
            doc.contains(&format!("`{key}`")) || in_group,
            "`{key}` is not documented in {}",
            doc_path.display()
        );
    }
}
