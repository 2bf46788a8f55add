//! The built-in catalog against the real symbol tables of tt-metal 0.62.2, 0.72.0 and 0.81.1
//! (`objcopy --only-keep-debug` of the PyPI libraries), checked role by role against what
//! binutils prints, and against a release shape no fixture has. No root needed.

mod common;

use std::collections::BTreeSet;

use common::*;
use tt_tracer::{
    catalog::Catalog,
    resolve::{self, Resolution},
    roles::Role,
};

/// How this test finds a field in an `nm -C` parameter list: its own statement of the rules.
#[derive(Clone, Copy)]
enum Rule {
    This,
    /// The first parameter of this type.
    First(&'static str),
    /// The first parameter of this type after the first one of the other.
    After(&'static str, &'static str),
}

/// Each field's name and rule.
type Fields = &'static [(&'static str, Rule)];

/// (role, member function?, fields).
const ROLES: [(&str, bool, Fields); 9] = [
    ("device_init", true, &[]),
    ("fabric_context", true, &[]),
    ("dispatch_context", true, &[]),
    ("program_binaries", true, &[]),
    (
        "device_open",
        true,
        &[("device", Rule::This), ("chip", Rule::First("int"))],
    ),
    (
        "kernel_binary_write",
        false,
        &[
            ("bytes", Rule::First("ll_api::memory const&")),
            ("chip", Rule::After("int", "ll_api::memory const&")),
            ("address", Rule::First("unsigned int")),
        ],
    ),
    ("device_close", true, &[("device", Rule::This)]),
    ("mesh_close", true, &[("mesh", Rule::This)]),
    (
        "firmware_write",
        false,
        &[
            ("bytes", Rule::First("ll_api::memory const&")),
            ("chip", Rule::After("int", "ll_api::memory const&")),
            ("core_type", Rule::First("unsigned int")),
        ],
    ),
];

/// What each release must attach, and must refuse, per role, as `nm -C` prints it.
fn expected(version: &str) -> Vec<(&'static str, Vec<&'static str>, Vec<&'static str>)> {
    let v062 = version == "0.62.2";
    let device_init = if v062 {
        "tt::DevicePool::initialize_fabric_and_dispatch_fw() const"
    } else {
        "tt::tt_metal::DeviceManager::initialize_fabric_and_dispatch_fw()"
    };
    let dispatch = if v062 {
        "tt::tt_metal::Device::configure_command_queue_programs()"
    } else {
        "tt::tt_metal::Device::configure_command_queue_programs(tt::tt_metal::DispatchTopology*)"
    };
    let device = if v062 {
        "tt::tt_metal::Device::Device(int, unsigned char, unsigned long, unsigned long, std::span<unsigned int const, 18446744073709551615ul>, bool, unsigned int, unsigned int, unsigned long)"
    } else {
        "tt::tt_metal::Device::Device(tt::tt_metal::MetalEnv*, tt::tt_metal::MetalContext*, int, unsigned char, unsigned long, unsigned long, std::span<unsigned int const, 18446744073709551615ul>, bool, unsigned int, unsigned int, unsigned long)"
    };
    let device_rejected = if v062 {
        vec!["tt::tt_metal::Device::Device(tt::tt_metal::Device&&)"]
    } else {
        vec![]
    };
    let write = match version {
        "0.62.2" => "tt::llrt::write_binary_to_address(ll_api::memory const&, int, tt::umd::xy_pair const&, unsigned int)",
        "0.72.0" => "tt::llrt::write_binary_to_address(ll_api::memory const&, int, tt::xy_pair const&, unsigned int)",
        _ => "tt::llrt::write_binary_to_address(tt::tt_metal::MetalEnvImpl&, ll_api::memory const&, int, tt::xy_pair const&, unsigned int)",
    };
    let mut program_binaries = vec![
        "tt::tt_metal::detail::ProgramImpl::allocate_kernel_bin_buf_on_device(tt::tt_metal::IDevice*)",
        "tt::tt_metal::distributed::MeshWorkloadImpl::load_binaries(tt::tt_metal::distributed::MeshCommandQueue&)",
    ];
    if v062 {
        program_binaries.push(
            "tt::tt_metal::Program::allocate_kernel_bin_buf_on_device(tt::tt_metal::IDevice*)",
        );
    }
    let firmware = match version {
        "0.62.2" => vec!["tt::llrt::test_load_write_read_risc_binary(ll_api::memory const&, int, tt::umd::xy_pair const&, unsigned int, unsigned int, unsigned int)"],
        "0.72.0" => vec![
            "tt::llrt::test_load_write_read_risc_binary(ll_api::memory const&, int, tt::xy_pair const&, unsigned int, unsigned int, unsigned int)",
            "tt::llrt::test_load_multicast_write_risc_binary(ll_api::memory const&, int, tt::xy_pair const&, tt::xy_pair const&, unsigned int, unsigned int, unsigned int)",
        ],
        _ => vec![
            "tt::llrt::test_load_write_read_risc_binary(tt::tt_metal::MetalEnvImpl&, ll_api::memory const&, int, tt::xy_pair const&, unsigned int, unsigned int, unsigned int)",
            "tt::llrt::test_load_multicast_write_risc_binary(tt::tt_metal::MetalEnvImpl&, ll_api::memory const&, int, tt::xy_pair const&, tt::xy_pair const&, unsigned int, unsigned int, unsigned int)",
        ],
    };
    vec![
        ("device_init", vec![device_init], vec![]),
        (
            "fabric_context",
            vec!["tt::tt_metal::Device::configure_fabric()"],
            vec![],
        ),
        ("dispatch_context", vec![dispatch], vec![]),
        ("program_binaries", program_binaries, vec![]),
        ("firmware_write", firmware, vec![]),
        ("device_open", vec![device], device_rejected),
        ("kernel_binary_write", vec![write], vec![]),
        (
            "device_close",
            vec!["tt::tt_metal::Device::close()"],
            vec![],
        ),
        (
            "mesh_close",
            vec!["tt::tt_metal::distributed::MeshDevice::close()"],
            vec![],
        ),
    ]
}

/// Expected register of every field of `role` in the function `demangled`, derived here.
fn expected_registers(role: &str, demangled: &str) -> Vec<(String, &'static str)> {
    let (_, member, fields) = ROLES.iter().find(|r| r.0 == role).unwrap();
    let params = nm_params(demangled);
    let position = |ty: &str, from: usize| {
        (from..params.len())
            .find(|&i| params[i] == ty)
            .unwrap_or_else(|| panic!("{demangled}: no `{ty}` parameter"))
    };
    fields
        .iter()
        .map(|&(name, rule)| {
            let reg = match rule {
                Rule::This => "rdi",
                Rule::First(ty) => sysv_register(&params, position(ty, 0), *member as usize),
                Rule::After(ty, after) => sysv_register(
                    &params,
                    position(ty, position(after, 0) + 1),
                    *member as usize,
                ),
            };
            (name.to_string(), reg)
        })
        .collect()
}

/// The qualified name of a function as printed (`a::b::f(int) const` → `a::b::f`).
fn qualified(demangled: &str) -> &str {
    &demangled[..demangled.find('(').unwrap()]
}

/// Functions `nm -C` lists under exactly this qualified name: not lambdas inside them, not
/// split-off parts, not other classes' functions of the same name.
fn nm_functions<'a>(symbols: &'a [NmSymbol], name: &str) -> Vec<&'a NmSymbol> {
    symbols
        .iter()
        .filter(|s| matches!(s.kind, 'T' | 't' | 'W' | 'w'))
        .filter(|s| {
            s.demangled.strip_prefix(name).is_some_and(|rest| {
                rest.starts_with('(') && !rest.contains(")::") && !rest.contains("[clone")
            })
        })
        .collect()
}

fn resolve_fixture(version: &str) -> Resolution {
    resolve::resolve_file(&fixture(version), &Catalog::builtin())
        .unwrap_or_else(|e| panic!("{version}: {e}"))
}

#[test]
fn every_role_resolves_on_every_release_as_nm_prints_it() {
    for version in VERSIONS {
        let r = resolve_fixture(version);
        let symbols = nm(&fixture(version), false);
        assert!(
            r.missing_required().is_empty(),
            "{version}: missing {:?}",
            r.missing_required()
        );
        // A debug file: every name resolves, but there is no code to attach to.
        assert!(!r.has_code, "{version}: a debug file has no code");
        for (role_id, attach, rejected) in expected(version) {
            let role = Role::from_id(role_id).unwrap();
            let rr = r
                .role(role)
                .unwrap_or_else(|| panic!("{version}: no {role_id}"));
            let ctx = format!("{version} {role_id}");

            let got: BTreeSet<&str> = rr.attach.iter().map(|p| p.demangled.as_str()).collect();
            assert_eq!(
                got,
                attach.iter().copied().collect(),
                "{ctx}: attached functions"
            );
            let got: BTreeSet<&str> = rr.rejected.iter().map(|p| p.demangled.as_str()).collect();
            assert_eq!(
                got,
                rejected.iter().copied().collect(),
                "{ctx}: refused functions"
            );

            for p in &rr.attach {
                // The same symbol, at the same address, with the same text as nm -C.
                let nm_sym = symbols
                    .iter()
                    .find(|s| s.mangled == p.mangled)
                    .unwrap_or_else(|| panic!("{ctx}: nm does not list {}", p.mangled));
                assert_eq!(
                    nm_sym.demangled, p.demangled,
                    "{ctx}: demangled text differs from nm -C"
                );
                assert_eq!(nm_sym.address, p.address, "{ctx}: address of {}", p.mangled);
                for alias in &p.aliases {
                    let a = symbols.iter().find(|s| &s.mangled == alias).unwrap();
                    assert_eq!(a.address, p.address, "{ctx}: alias {alias} elsewhere");
                }
                let got: Vec<(String, &str)> = p
                    .fields
                    .iter()
                    .map(|f| (f.name.to_string(), f.register))
                    .collect();
                assert_eq!(
                    got,
                    expected_registers(role_id, &nm_sym.demangled),
                    "{ctx}: {}",
                    p.demangled
                );
                let params = nm_params(&nm_sym.demangled);
                for f in p.fields.iter().filter(|f| f.param != "this") {
                    assert!(
                        params.contains(&f.param),
                        "{ctx}: field {} param {}",
                        f.name,
                        f.param
                    );
                }
            }

            // Everything nm lists under the role's names is either attached or refused with a
            // reason; nothing else is.
            let names: BTreeSet<&str> = attach
                .iter()
                .chain(&rejected)
                .map(|d| qualified(d))
                .collect();
            let mut listed: BTreeSet<u64> = BTreeSet::new();
            for name in names {
                listed.extend(nm_functions(&symbols, name).iter().map(|s| s.address));
            }
            let seen: BTreeSet<u64> = rr
                .attach
                .iter()
                .map(|p| p.address)
                .chain(rr.rejected.iter().map(|x| x.address))
                .collect();
            assert_eq!(seen, listed, "{ctx}: candidates differ from what nm lists");
            for x in &rr.rejected {
                assert!(!x.reason.is_empty(), "{ctx}: refusal without a reason");
            }
        }
    }
}

#[test]
fn the_move_constructor_of_062_is_refused_not_attached() {
    let r = resolve_fixture("0.62.2");
    let open = r.role(Role::DeviceOpen).unwrap();
    let moved = open
        .rejected
        .iter()
        .find(|x| x.demangled == "tt::tt_metal::Device::Device(tt::tt_metal::Device&&)")
        .expect("move constructor listed as not used");
    assert!(moved.reason.contains("int"), "{}", moved.reason);
    // C1 and C2 of the move constructor share an address: one refusal, one alias.
    assert_eq!(moved.aliases.len(), 1, "{:?}", moved.aliases);
    assert!(open.attach.iter().all(|p| p.address != moved.address));
    let chip = &open.attach[0].fields[1];
    assert_eq!((chip.name.id(), chip.register), ("chip", "rsi"));
}

#[test]
fn mesh_device_configure_fabric_is_not_the_fabric_context() {
    let symbols = nm(&fixture("0.62.2"), false);
    let mesh = symbols
        .iter()
        .find(|s| s.demangled == "tt::tt_metal::distributed::MeshDevice::configure_fabric()")
        .expect("0.62.2 has MeshDevice::configure_fabric");
    let r = resolve_fixture("0.62.2");
    let fabric = r.role(Role::FabricContext).unwrap();
    assert_eq!(fabric.attach.len(), 1);
    assert_eq!(
        fabric.attach[0].demangled,
        "tt::tt_metal::Device::configure_fabric()"
    );
    for p in &fabric.attach {
        assert_ne!(p.address, mesh.address);
    }
    assert!(fabric.rejected.iter().all(|x| x.address != mesh.address));
}

/// `nm -C` text of a plain (non-template, non-local) function in namespace tt.
fn is_plain_tt_function(demangled: &str) -> bool {
    let Some(open) = demangled.find('(') else {
        return false;
    };
    let name = &demangled[..open];
    demangled.starts_with("tt::")
        && !name.contains(['<', ' ', '{', '$'])
        && !demangled[open..].contains(")::")
        && !demangled.contains("[clone")
}

#[test]
fn demangled_text_matches_nm_for_every_plain_tt_function() {
    for version in VERSIONS {
        let symbols = nm(&fixture(version), false);
        let mut checked = 0;
        let mut differ = Vec::new();
        for s in symbols
            .iter()
            .filter(|s| matches!(s.kind, 'T' | 't' | 'W' | 'w'))
        {
            if !s.mangled.starts_with("_Z") || !is_plain_tt_function(&s.demangled) {
                continue;
            }
            checked += 1;
            let ours = resolve::demangle(&s.mangled);
            if ours.as_deref() != Some(s.demangled.as_str()) {
                differ.push(format!(
                    "{}\n  nm -C: {}\n  ours:  {ours:?}",
                    s.mangled, s.demangled
                ));
            }
        }
        assert!(
            checked > 1000,
            "{version}: only {checked} functions checked"
        );
        assert!(
            differ.is_empty(),
            "{version}: {} of {checked} differ:\n{}",
            differ.len(),
            differ.join("\n")
        );
    }
}

#[test]
fn probes_json_on_a_debug_file_shows_registers_but_no_offsets() {
    for version in VERSIONS {
        let (code, j) = probes_json(&fixture(version));
        // Every required role resolved, but a debug file cannot be traced: exit 3.
        assert_eq!(code, 3, "{version}");
        assert_eq!(j["schema"], 1);
        assert_eq!(j["complete"], true, "{version}");
        assert_eq!(j["has_code"], false, "{version}");
        assert_eq!(j["usable"], false, "{version}");
        assert_eq!(j["exit_code"], 3);
        assert_eq!(
            j["symbols"]["dynsym"], 0,
            "{version}: .dynsym is NOBITS in a debug file"
        );
        let build_id = j["build_id"].as_str().unwrap();
        assert_eq!(build_id.len(), 40, "{version}: {build_id}");
        let r = resolve_fixture(version);
        let roles = j["roles"].as_array().unwrap();
        assert_eq!(roles.len(), Catalog::builtin().roles_in(None).count());
        for (role, want) in roles.iter().zip(&r.roles) {
            assert_eq!(role["id"], want.role.id());
            assert_eq!(role["resolved"], !want.attach.is_empty());
            if ROLES.iter().any(|(id, _, _)| role["id"] == *id) {
                assert_eq!(role["resolved"], true, "{version} {}", role["id"]);
            }
            for (p, w) in role["attach"].as_array().unwrap().iter().zip(&want.attach) {
                assert_eq!(p["demangled"], w.demangled.as_str());
                assert_eq!(p["mangled"], w.mangled.as_str());
                assert!(
                    p["file_offset"].is_null(),
                    "{version}: offset in a debug file"
                );
                let regs: Vec<&str> = p["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["register"].as_str().unwrap())
                    .collect();
                let want_regs: Vec<&str> = w.fields.iter().map(|f| f.register).collect();
                assert_eq!(regs, want_regs);
            }
        }
        // What the eight lifecycle and kernel roles give is all there.
        let features = j["features"].as_array().unwrap();
        for id in [
            "kernel_binaries",
            "fabric_kernels",
            "dispatch_kernels",
            "bring_up",
            "program_uploads",
            "device_identity",
            "device_close",
            "mesh_close",
        ] {
            let f = features
                .iter()
                .find(|f| f["id"] == id)
                .unwrap_or_else(|| panic!("no feature {id}"));
            assert_eq!(f["available"], true, "{version}: {f}");
        }
    }
}

/// A release no fixture has: the same names, other shapes. An extra leading pointer parameter
/// moves every field one register on (the address of a kernel write lands in r9), a second
/// overload cannot be placed, a lookalike in another class must be ignored.
const UNSEEN_RELEASE: &str = r#"
#include <cstdint>
#include <span>
#include <vector>
namespace ll_api { struct memory { std::vector<std::uint32_t> data_; }; }
namespace tt {
struct xy_pair { unsigned long x, y; };
namespace tt_metal {
struct MetalEnv; struct MetalContext; struct MetalEnvImpl; struct DispatchTopology; struct IDevice;
struct Telemetry;
struct Blob { char bytes[40]; };
class Device {
public:
    Device(Telemetry*, MetalEnv*, MetalContext*, int, unsigned char, std::span<const std::uint32_t>, bool);
    Device(const Device&);
    void configure_fabric();
    void configure_command_queue_programs(DispatchTopology*, bool);
    bool close();
    int id_ = 0;
};
Device::Device(Telemetry*, MetalEnv*, MetalContext*, int id, unsigned char, std::span<const std::uint32_t>, bool) : id_(id) {}
Device::Device(const Device& o) : id_(o.id_) {}
void Device::configure_fabric() {}
void Device::configure_command_queue_programs(DispatchTopology*, bool) {}
bool Device::close() { return true; }
class DeviceManager { public: void initialize_fabric_and_dispatch_fw(); };
void DeviceManager::initialize_fabric_and_dispatch_fw() {}
namespace detail {
class ProgramImpl { public: void allocate_kernel_bin_buf_on_device(IDevice*); };
void ProgramImpl::allocate_kernel_bin_buf_on_device(IDevice*) {}
}
namespace distributed {
class MeshDevice { public: bool close(); void configure_fabric(); };
bool MeshDevice::close() { return true; }
void MeshDevice::configure_fabric() {}
}
}
namespace llrt {
void write_binary_to_address(tt_metal::Telemetry*, tt_metal::MetalEnvImpl&, ll_api::memory const&, int, xy_pair const&, unsigned int) {}
void write_binary_to_address(tt_metal::Blob, ll_api::memory const&, int, xy_pair const&, unsigned int) {}
}
}
"#;

#[test]
fn an_unseen_release_with_other_shapes_resolves() {
    let dir = scratch("unseen-release");
    let lib = build_cxx_library(&dir, "libtt_metal.so", UNSEEN_RELEASE);
    let r = resolve::resolve_file(&lib, &Catalog::builtin()).unwrap();
    assert!(r.has_code);
    assert!(
        r.missing_required().is_empty(),
        "{:?}",
        r.missing_required()
    );
    // MeshWorkloadImpl::load_binaries is absent: program_binaries resolves on ProgramImpl alone.
    let symbols = nm(&lib, true);
    for role in &r.roles {
        for p in &role.attach {
            let s = symbols
                .iter()
                .find(|s| s.mangled == p.mangled)
                .expect("exported");
            assert_eq!(s.demangled, p.demangled);
            assert_eq!(
                Some(p.file_offset),
                file_offset_by_readelf(&lib, s.address),
                "{}",
                p.demangled
            );
            let got: Vec<(String, &str)> = p
                .fields
                .iter()
                .map(|f| (f.name.to_string(), f.register))
                .collect();
            assert_eq!(
                got,
                expected_registers(role.role.id(), &s.demangled),
                "{}",
                p.demangled
            );
        }
    }
    let regs = |role: Role| -> Vec<(String, &str)> {
        let rr = r.role(role).unwrap();
        assert_eq!(rr.attach.len(), 1, "{}: {:?}", role.id(), rr.attach);
        rr.attach[0]
            .fields
            .iter()
            .map(|f| (f.name.to_string(), f.register))
            .collect()
    };
    let pairs = |v: &[(&str, &'static str)]| {
        v.iter()
            .map(|&(n, r)| (n.to_string(), r))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        regs(Role::DeviceOpen),
        pairs(&[("device", "rdi"), ("chip", "r8")])
    );
    assert_eq!(
        regs(Role::KernelBinaryWrite),
        pairs(&[("bytes", "rdx"), ("chip", "rcx"), ("address", "r9")])
    );
    // The copy constructor has no `int`; the Blob overload passes 40 bytes by value first.
    let open = r.role(Role::DeviceOpen).unwrap();
    assert_eq!(open.rejected.len(), 1, "{:?}", open.rejected);
    assert_eq!(
        open.rejected[0].demangled,
        "tt::tt_metal::Device::Device(tt::tt_metal::Device const&)"
    );
    let write = r.role(Role::KernelBinaryWrite).unwrap();
    assert_eq!(write.rejected.len(), 1, "{:?}", write.rejected);
    assert!(
        write.rejected[0].reason.contains("tt::tt_metal::Blob"),
        "{}",
        write.rejected[0].reason
    );
    let fabric = r.role(Role::FabricContext).unwrap();
    assert_eq!(
        fabric.attach[0].demangled,
        "tt::tt_metal::Device::configure_fabric()"
    );
    assert!(fabric.rejected.is_empty());
}

#[test]
fn a_catalog_file_overrides_the_builtin_one_and_degrades_features() {
    let dir = scratch("catalog-override");
    // The built-in catalog with device_close renamed to a function no release has.
    let text = tt_tracer::catalog::BUILTIN.replace(
        r#"names = ["tt::tt_metal::Device::close"]"#,
        r#"names = ["tt::tt_metal::Device::shut_down"]"#,
    );
    assert_ne!(text, tt_tracer::catalog::BUILTIN);
    let catalog = dir.join("catalog.toml");
    std::fs::write(&catalog, text).unwrap();
    let lib = standin();
    let out = tt_tracer(&[
        "probes",
        "--lib",
        lib.to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["complete"], false);
    assert_eq!(j["missing_required"], serde_json::json!(["device_close"]));
    let close = j["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "device_close")
        .unwrap();
    assert_eq!(close["resolved"], false);
    assert!(close["problem"]
        .as_str()
        .unwrap()
        .contains("tt::tt_metal::Device::shut_down"));
    let feature = |id: &str| {
        j["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(feature("device_close")["available"], false);
    assert_eq!(
        feature("device_close")["degraded"],
        "kernels released only at process exit"
    );
    assert_eq!(
        feature("device_close")["missing"],
        serde_json::json!(["device_close"])
    );
    assert_eq!(feature("fabric_kernels")["available"], true);

    // The stand-in has no MeshWorkloadImpl::load_binaries but does have ProgramImpl's: fine.
    let text = tt_tracer(&[
        "probes",
        "--lib",
        lib.to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(text.stdout).unwrap();
    assert!(
        stdout.contains("degraded  device_close: kernels released only at process exit"),
        "{stdout}"
    );
    assert!(
        stdout.contains("MISSING required roles: device_close"),
        "{stdout}"
    );
}

/// Every role the catalog lists, not only the ones above: on every release, each attach point
/// is a function `nm -C` prints with that exact text at that address, and each field sits in
/// the register the System V ABI gives the parameter the catalog's rule names. The rules are
/// read from the catalog file as data; the registers are worked out here.
#[test]
fn every_catalog_role_places_its_fields_as_the_abi_says() {
    let catalog: toml::Value = toml::from_str(tt_tracer::catalog::BUILTIN).unwrap();
    let roles = catalog["role"].as_array().unwrap();
    for version in VERSIONS {
        let r = resolve_fixture(version);
        let symbols = nm(&fixture(version), false);
        // Roles of the package's other libraries (ttnn's) are not in libtt_metal.so.
        for spec in roles.iter().filter(|s| s.get("library").is_none()) {
            let id = spec["id"].as_str().unwrap();
            let flag = |k: &str| spec.get(k).and_then(toml::Value::as_bool).unwrap_or(false);
            let before = flag("member") as usize + flag("returns_by_value") as usize;
            let rr = r.role(Role::from_id(id).unwrap()).unwrap();
            // Every function nm lists under the role's names is attached or refused.
            let mut listed = BTreeSet::new();
            for name in spec["names"].as_array().unwrap() {
                listed.extend(
                    nm_functions(&symbols, name.as_str().unwrap())
                        .iter()
                        .map(|s| s.address),
                );
            }
            let seen: BTreeSet<u64> = rr
                .attach
                .iter()
                .map(|p| p.address)
                .chain(rr.rejected.iter().map(|x| x.address))
                .collect();
            assert_eq!(
                seen, listed,
                "{version} {id}: candidates differ from what nm lists"
            );
            if flag("required") {
                assert!(
                    !rr.attach.is_empty(),
                    "{version}: required {id} unresolved: {:?}",
                    rr.problem
                );
            }
            for p in &rr.attach {
                let ctx = format!("{version} {id} {}", p.demangled);
                let s = symbols
                    .iter()
                    .find(|s| s.mangled == p.mangled)
                    .expect("listed by nm");
                assert_eq!(
                    (s.address, s.demangled.as_str()),
                    (p.address, p.demangled.as_str()),
                    "{ctx}"
                );
                let params = nm_params(&s.demangled);
                let fields = spec
                    .get("fields")
                    .and_then(toml::Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                assert_eq!(p.fields.len(), fields.len(), "{ctx}");
                for (f, got) in fields.iter().zip(&p.fields) {
                    let name = f["name"].as_str().unwrap();
                    assert_eq!(got.name.id(), name, "{ctx}");
                    let want = if f.get("this").and_then(toml::Value::as_bool) == Some(true) {
                        ["rdi", "rsi"][flag("returns_by_value") as usize]
                    } else {
                        let ty = f["type"].as_str().unwrap();
                        let from = f.get("after").map_or(0, |a| {
                            params
                                .iter()
                                .position(|p| p == a.as_str().unwrap())
                                .expect("the `after` parameter")
                                + 1
                        });
                        let nth =
                            f.get("nth").and_then(toml::Value::as_integer).unwrap_or(1) as usize;
                        let index = (from..params.len())
                            .filter(|&i| params[i] == ty)
                            .nth(nth - 1)
                            .unwrap_or_else(|| panic!("{ctx}: no parameter #{nth} `{ty}`"));
                        sysv_register(&params, index, before)
                    };
                    assert_eq!(got.register, want, "{ctx}: field {name}");
                }
            }
        }
    }
}
