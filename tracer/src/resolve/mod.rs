//! Resolving catalog roles in a library on disk: ELF symbols (.dynsym and .symtab), demangled
//! with cpp_demangle into the text `nm -C` prints, matched by qualified name, arguments placed
//! from the demangled parameter list by the System V ABI, virtual addresses turned into file
//! offsets for uprobes. Resolution is per file: nothing is cached between libraries.

mod abi;
mod demangle;
mod elf;
pub mod ops;

use std::path::{Path, PathBuf};

use tracer_common::{FieldOp, RecipeKind};

pub use self::demangle::demangle;
use self::{
    abi::{parameter_list, place_fields},
    elf::{Candidate, Segments},
};
use crate::{
    catalog::{Abi, Catalog, RoleSpec},
    errors::{Error, Result},
    roles::{Field, Role},
};

/// Where every role lives in one library.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub library: PathBuf,
    /// Which library of the catalog's package the file is: None for the main one
    /// (`libtt_metal.so`), else the companion's file name (`_ttnncpp.so`).
    pub part: Option<String>,
    /// The package's other libraries found beside the main one, each resolved on its own
    /// (empty for a companion, and until [`with_companions`] looked).
    pub companions: Vec<Resolution>,
    pub build_id: Option<String>,
    /// Symbols read, both tables together.
    pub symbols_scanned: usize,
    /// Symbols in .dynsym (what `strip --strip-all` keeps) and in .symtab.
    pub dynsym_symbols: usize,
    pub symtab_symbols: usize,
    /// False for a file whose executable segments have no bytes (a separate debug file made by
    /// `objcopy --only-keep-debug`): names and registers resolve, but there is nothing to attach
    /// to and `AttachPoint::file_offset` is meaningless.
    pub has_code: bool,
    pub roles: Vec<RoleResolution>,
}

#[derive(Debug, Clone)]
pub struct RoleResolution {
    pub role: Role,
    pub summary: String,
    pub required: bool,
    /// context | call | call_with_return
    pub kind: RecipeKind,
    /// Every function the probes attach to for this role (overloads; aliases folded).
    pub attach: Vec<AttachPoint>,
    /// Candidates with the right name that were not used, and why.
    pub rejected: Vec<Rejected>,
    /// Why the role did not resolve (None when `attach` is non-empty).
    pub problem: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AttachPoint {
    /// As `nm -C` prints it.
    pub demangled: String,
    pub mangled: String,
    /// Other symbols at the same address (C1/C2 constructors, folded code).
    pub aliases: Vec<String>,
    pub address: u64,
    /// Where the function's first instruction is in the file: the uprobe offset. Only
    /// meaningful when `Resolution::has_code` (0 otherwise).
    pub file_offset: u64,
    pub fields: Vec<ResolvedField>,
    /// For a role listing `instances_of`: the operation the instantiation is for.
    pub op: Option<ops::Op>,
}

#[derive(Debug, Clone)]
pub struct ResolvedField {
    pub name: Field,
    /// Argument register index (0 = rdi).
    pub arg: u8,
    pub register: &'static str,
    /// reg | u64 | u32 | vec_bytes
    pub read: FieldOp,
    pub offset: u32,
    /// The parameter as demangled (`this` for the object pointer).
    pub param: String,
}

#[derive(Debug, Clone)]
pub struct Rejected {
    pub demangled: String,
    pub mangled: String,
    pub aliases: Vec<String>,
    pub address: u64,
    pub reason: String,
}

/// Something the tracer reports, and the roles it depends on.
#[derive(Debug, Clone)]
pub struct Feature {
    pub id: &'static str,
    pub summary: &'static str,
    pub needs: Vec<Role>,
    /// Roles in `needs` that did not resolve.
    pub missing: Vec<Role>,
    pub available: bool,
    /// What the user gets instead, when not available.
    pub degraded: Option<&'static str>,
}

/// (id, what it gives, roles it needs, what happens without them).
const FEATURES: [(&str, &str, &[Role], &str); 16] = [
    (
        "kernel_binaries",
        "every kernel binary written to a device: bytes, chip, L1 address",
        &[Role::KernelBinaryWrite],
        "no kernel binary is seen: no kernel accounting at all",
    ),
    (
        "firmware",
        "firmware binaries written to each core type's RISC processors, per device",
        &[Role::FirmwareWrite],
        "no firmware line: firmware writes are not seen",
    ),
    (
        "fabric_kernels",
        "fabric (system) kernels told apart from application kernels",
        &[Role::FabricContext],
        "fabric kernels are counted as application kernels (or as bring-up kernels when written on the bring-up thread)",
    ),
    (
        "dispatch_kernels",
        "dispatch (system) kernels told apart from application kernels",
        &[Role::DispatchContext],
        "dispatch kernels are counted as application kernels (or as bring-up kernels when written on the bring-up thread)",
    ),
    (
        "bring_up",
        "device bring-up timed; other kernels written during it counted as system (init) kernels",
        &[Role::DeviceInit],
        "no bring-up timing; kernels written during bring-up outside fabric and dispatch setup are counted as application kernels",
    ),
    (
        "program_uploads",
        "application kernels uploaded by a program (fast dispatch) marked as program uploads",
        &[Role::ProgramBinaries],
        "application kernels in fast dispatch are still counted but not marked as program uploads",
    ),
    (
        "device_identity",
        "device objects mapped to chip ids, so context events and device closes name their chip",
        &[Role::DeviceOpen],
        "fabric and dispatch context events carry no chip id, and device closes cannot be matched to a chip",
    ),
    (
        "device_close",
        "a device's kernels released when it closes",
        &[Role::DeviceOpen, Role::DeviceClose],
        "kernels released only at process exit",
    ),
    (
        "mesh_close",
        "mesh device closes reported",
        &[Role::MeshClose],
        "mesh closes are not reported (device closes still are)",
    ),
    (
        "buffers",
        "device buffers by type (DRAM, L1, L1_SMALL, TRACE, SYSTEM_MEMORY): live, peak, frees, outstanding",
        &[Role::BankNew, Role::BankAllocate, Role::BankFree, Role::BankFreeAll],
        "no buffer ledger (or an incomplete one: frees or types missing)",
    ),
    (
        "buffer_owners",
        "each buffer attributed to its chip's allocator or its mesh's lock-step allocator",
        &[Role::MeshOpen, Role::MeshAllocator, Role::DeviceAllocator],
        "buffers of banks built outside a known allocator are reported as unattributed",
    ),
    (
        "circular_buffers",
        "circular buffers per chip",
        &[Role::CbAllocate, Role::CbFreeAll, Role::DeviceOpen],
        "no circular-buffer ledger",
    ),
    (
        "scratch_allocators",
        "throw-away bank-table allocators told apart (they never allocate)",
        &[Role::ScratchAllocator],
        "their banks are listed as unattributed (they hold no buffers)",
    ),
    (
        "enqueues",
        "workload enqueues counted",
        &[Role::WorkloadEnqueue],
        "no enqueue count",
    ),
    (
        "operations",
        "ttnn device operations: launches and time per operation, and the buffers, circular buffers, kernels and enqueues each one made",
        &[Role::OpLaunch],
        "no per-operation table (no ttnn library beside this one, or one without launch templates)",
    ),
    (
        "program_cache",
        "program-cache hits and misses per operation",
        &[Role::OpLaunch, Role::OpEnqueue],
        "hits and misses told by the cache-hit handler alone (a launch without it is a miss): exact where every operation has it out of line (0.62), unknown for the others",
    ),
];

impl Resolution {
    /// A role of this file (not of its companions).
    pub fn role(&self, role: Role) -> Option<&RoleResolution> {
        self.roles.iter().find(|r| r.role == role)
    }

    /// Whether a role has at least one attach point, here or in a companion.
    pub fn resolved(&self, role: Role) -> bool {
        self.role(role).is_some_and(|r| !r.attach.is_empty())
            || self.companions.iter().any(|c| c.resolved(role))
    }

    /// Attach points of this file and its companions together.
    pub fn attach_points(&self) -> usize {
        self.roles.iter().map(|r| r.attach.len()).sum::<usize>()
            + self
                .companions
                .iter()
                .map(Resolution::attach_points)
                .sum::<usize>()
    }

    /// Required roles with nothing to attach to.
    pub fn missing_required(&self) -> Vec<Role> {
        self.roles
            .iter()
            .filter(|r| r.required && r.attach.is_empty())
            .map(|r| r.role)
            .collect()
    }

    /// Fails unless the file has code to attach to and every required role resolved
    /// ([`Error::MissingRoles`]).
    pub fn ensure_complete(&self) -> Result<()> {
        if !self.has_code {
            return Err(Error::SymbolsOnly {
                path: self.library.clone(),
            });
        }
        let missing = self.missing_required();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::MissingRoles {
            path: self.library.clone(),
            roles: missing
                .iter()
                .map(|r| r.id())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// What the tracer can report given what resolved. Roles the catalog does not list count
    /// as unresolved.
    pub fn features(&self) -> Vec<Feature> {
        FEATURES
            .iter()
            .map(|&(id, summary, needs, degraded)| {
                let missing: Vec<Role> = needs
                    .iter()
                    .copied()
                    .filter(|r| !self.resolved(*r))
                    .collect();
                Feature {
                    id,
                    summary,
                    needs: needs.to_vec(),
                    available: missing.is_empty(),
                    degraded: (!missing.is_empty()).then_some(degraded),
                    missing,
                }
            })
            .collect()
    }
}

/// Largest library file read (the real libtt_metal.so is ~35 MB; with full debug info a few
/// hundred MB).
pub const MAX_LIBRARY_BYTES: u64 = 2 << 30;

/// Reads `path` and resolves every catalog role in it.
pub fn resolve_file(path: &Path, catalog: &Catalog) -> Result<Resolution> {
    let data = crate::files::map_regular(path, MAX_LIBRARY_BYTES, "library")?;
    resolve_bytes(path, &data, catalog)
}

/// Resolves every catalog role of the main library in `data`, the bytes of the file at `path`
/// (companions are looked for separately: [`with_companions`]).
pub fn resolve_bytes(path: &Path, data: &[u8], catalog: &Catalog) -> Result<Resolution> {
    resolve_part(path, data, catalog, None)
}

/// Resolves the package's other libraries found in `dir` (the main library's directory, as
/// the tracer can open it) and keeps them with `main`. A companion that is missing is not an
/// error (the package may not have it); one that cannot be read or parsed is logged and left
/// out: the main library is traced all the same.
pub fn with_companions(mut main: Resolution, dir: &Path, catalog: &Catalog) -> Resolution {
    for name in catalog.companions() {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let resolved = crate::files::map_regular(&path, MAX_LIBRARY_BYTES, "library")
            .and_then(|data| resolve_part(&path, &data, catalog, Some(name)));
        match resolved {
            Ok(r) => main.companions.push(r),
            Err(e) => log::warn!("{name} beside {}: {e}", main.library.display()),
        }
    }
    main
}

/// Resolves the roles of one library of the package (`part`: None for the main one).
fn resolve_part(
    path: &Path,
    data: &[u8],
    catalog: &Catalog,
    part: Option<&str>,
) -> Result<Resolution> {
    let file = elf::parse(path, data)?;
    let specs: Vec<&RoleSpec> = catalog.roles_in(part).collect();
    let symbols = elf::function_candidates(&file, &specs);
    if symbols.dynsym + symbols.symtab == 0 {
        return Err(Error::NoSymbols { path: path.into() });
    }
    let segments = Segments::of(&file);
    let roles: Vec<RoleResolution> = specs
        .iter()
        .map(|spec| resolve_role(spec, &catalog.abi, &symbols.candidates, &segments, data))
        .collect();
    if part.is_none()
        && roles
            .iter()
            .all(|r| r.attach.is_empty() && r.rejected.is_empty())
    {
        return Err(Error::NotTtMetal { path: path.into() });
    }
    Ok(Resolution {
        library: path.into(),
        part: part.map(str::to_string),
        companions: Vec::new(),
        build_id: elf::build_id(&file),
        symbols_scanned: symbols.dynsym + symbols.symtab,
        dynsym_symbols: symbols.dynsym,
        symtab_symbols: symbols.symtab,
        has_code: segments.has_code,
        roles,
    })
}

fn resolve_role(
    spec: &RoleSpec,
    abi: &Abi,
    candidates: &[Candidate],
    segments: &Segments,
    data: &[u8],
) -> RoleResolution {
    let mut attach: Vec<AttachPoint> = Vec::new();
    let mut rejected: Vec<Rejected> = Vec::new();
    for template in &spec.instances_of {
        let Some(prefix) = elf::template_prefix(template) else {
            continue;
        };
        for c in candidates.iter().filter(|c| c.name.starts_with(&prefix)) {
            if let Some(a) = attach.iter_mut().find(|a| a.address == c.address) {
                a.aliases.push(c.name.to_string());
                continue;
            }
            let placed = match ops::instance(c.name, !spec.fields.is_empty()) {
                None => Err("its template arguments name no operation".to_string()),
                Some((s, _)) if s.op.name().is_none() => Err(format!(
                    "{} serves many operations: its symbol names none",
                    s.op.path()
                )),
                // Parameters demangled only when a field is read from them.
                Some((s, params)) => match (spec.fields.is_empty(), params) {
                    (true, _) => Ok(Vec::new()),
                    (false, None) => Err("its parameters do not demangle".to_string()),
                    (false, Some(params)) => place_fields(spec, abi, &params),
                }
                .and_then(|fields| Ok((fields, segments.file_offset(c.address)?)))
                .map(|(fields, offset)| (s, fields, offset))
                .and_then(|(s, fields, offset)| match segments.has_code {
                    true => uprobe_refused(data.get(offset as usize..).unwrap_or_default())
                        .map_or(Ok((s, fields, offset)), Err),
                    false => Ok((s, fields, offset)),
                }),
            };
            let demangled = c.demangled.clone().unwrap_or_else(|| c.name.to_string());
            match placed {
                Ok((s, fields, file_offset)) => attach.push(AttachPoint {
                    demangled: format!("{template}<{}>", s.op.path()),
                    mangled: c.name.to_string(),
                    aliases: Vec::new(),
                    address: c.address,
                    file_offset,
                    fields,
                    op: Some(s.op),
                }),
                Err(reason) => rejected.push(Rejected {
                    demangled,
                    mangled: c.name.to_string(),
                    aliases: Vec::new(),
                    address: c.address,
                    reason,
                }),
            }
        }
    }
    for qualified in &spec.names {
        let hint = elf::mangled_hint(qualified);
        for c in candidates {
            if hint.as_deref().is_some_and(|h| !c.name.contains(h)) {
                continue;
            }
            let Some(demangled) = &c.demangled else {
                continue;
            };
            let Some(params) = parameter_list(demangled, qualified) else {
                continue;
            };
            if let Some(a) = attach.iter_mut().find(|a| a.address == c.address) {
                a.aliases.push(c.name.to_string());
                continue;
            }
            if let Some(r) = rejected.iter_mut().find(|r| r.address == c.address) {
                r.aliases.push(c.name.to_string());
                continue;
            }
            let placed = place_fields(spec, abi, &params)
                .and_then(|f| Ok((f, segments.file_offset(c.address)?)))
                .and_then(|(f, offset)| match segments.has_code {
                    true => uprobe_refused(data.get(offset as usize..).unwrap_or_default())
                        .map_or(Ok((f, offset)), Err),
                    false => Ok((f, offset)),
                });
            match placed {
                Ok((fields, file_offset)) => attach.push(AttachPoint {
                    demangled: demangled.clone(),
                    mangled: c.name.to_string(),
                    aliases: Vec::new(),
                    address: c.address,
                    file_offset,
                    fields,
                    op: None,
                }),
                Err(reason) => rejected.push(Rejected {
                    demangled: demangled.clone(),
                    mangled: c.name.to_string(),
                    aliases: Vec::new(),
                    address: c.address,
                    reason,
                }),
            }
        }
    }
    let problem = attach.is_empty().then(|| {
        let names = spec
            .names
            .iter()
            .cloned()
            .chain(spec.instances_of.iter().map(|t| format!("{t}<…>")))
            .collect::<Vec<_>>()
            .join(" or ");
        if rejected.is_empty() {
            format!("no function named {names}")
        } else {
            format!("{names} found, but no overload fits the argument rules")
        }
    });
    RoleResolution {
        role: spec.role,
        summary: spec.summary.clone(),
        required: spec.required,
        kind: spec.kind,
        attach,
        rejected,
        problem,
    }
}

/// Why the kernel would refuse a uprobe on the instruction at the start of `code`, if it would:
/// x86 uprobes reject an instruction with a LOCK or an ES/CS/SS/DS segment prefix
/// (`is_prefix_bad` in arch/x86/kernel/uprobes.c). The refusal is silent when the library is
/// mapped after the probe was attached (`run`): the probe would simply never fire.
fn uprobe_refused(code: &[u8]) -> Option<String> {
    for &b in code.iter().take(14) {
        let prefix = match b {
            0xf0 => "LOCK",
            0x26 | 0x2e | 0x36 | 0x3e => "segment",
            // Other legacy prefixes: the instruction goes on.
            0xf2 | 0xf3 | 0x64 | 0x65 | 0x66 | 0x67 => continue,
            _ => return None,
        };
        return Some(format!(
            "its first instruction has a {prefix} prefix ({b:#04x}): the kernel places no uprobe there"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    /// A minimal x86-64 shared object: one PT_LOAD (vaddr, memsz, offset, filesz, flags) and
    /// .dynsym with `symbols` as global functions at the given addresses.
    fn tiny_elf(symbols: &[(&str, u64)], load: (u64, u64, u64, u64, u32)) -> Vec<u8> {
        let mut dynstr = vec![0u8];
        let mut dynsym = vec![0u8; 24];
        for (name, addr) in symbols {
            dynsym.extend((dynstr.len() as u32).to_le_bytes());
            dynsym.extend([0x12, 0]); // STB_GLOBAL | STT_FUNC, default visibility
            dynsym.extend(1u16.to_le_bytes()); // defined (section index 1)
            dynsym.extend(addr.to_le_bytes());
            dynsym.extend(16u64.to_le_bytes());
            dynstr.extend(name.as_bytes());
            dynstr.push(0);
        }
        let shstrtab = b"\0.dynsym\0.dynstr\0.shstrtab\0";
        let (phoff, dynsym_off) = (64u64, 120u64);
        let dynstr_off = dynsym_off + dynsym.len() as u64;
        let shstrtab_off = dynstr_off + dynstr.len() as u64;
        let shoff = (shstrtab_off + shstrtab.len() as u64).next_multiple_of(8);
        let mut f = Vec::new();
        f.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        f.extend(3u16.to_le_bytes()); // ET_DYN
        f.extend(62u16.to_le_bytes()); // EM_X86_64
        f.extend(1u32.to_le_bytes());
        f.extend(0u64.to_le_bytes());
        f.extend(phoff.to_le_bytes());
        f.extend(shoff.to_le_bytes());
        f.extend(0u32.to_le_bytes());
        for v in [64u16, 56, 1, 64, 4, 3] {
            f.extend(v.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
        }
        let (va, memsz, off, filesz, flags) = load;
        f.extend(1u32.to_le_bytes()); // PT_LOAD
        f.extend(flags.to_le_bytes());
        for v in [off, va, va, filesz, memsz, 0x1000] {
            f.extend(v.to_le_bytes());
        }
        f.extend(&dynsym);
        f.extend(&dynstr);
        f.extend(shstrtab);
        f.resize(shoff as usize, 0);
        f.extend([0u8; 64]);
        // (name, type, offset, size, link, info, entsize)
        for (name, ty, off, size, link, info, entsize) in [
            (
                1u32,
                11u32,
                dynsym_off,
                dynsym.len() as u64,
                2u32,
                1u32,
                24u64,
            ),
            (9, 3, dynstr_off, dynstr.len() as u64, 0, 0, 0),
            (17, 3, shstrtab_off, shstrtab.len() as u64, 0, 0, 0),
        ] {
            f.extend(name.to_le_bytes());
            f.extend(ty.to_le_bytes());
            f.extend(2u64.to_le_bytes()); // SHF_ALLOC
            f.extend(0u64.to_le_bytes());
            f.extend(off.to_le_bytes());
            f.extend(size.to_le_bytes());
            f.extend(link.to_le_bytes());
            f.extend(info.to_le_bytes());
            f.extend(8u64.to_le_bytes());
            f.extend(entsize.to_le_bytes());
        }
        f
    }

    const DEVICE_CLOSE: &str = "_ZN2tt8tt_metal6Device5closeEv";

    /// Every release from 0.62 to 0.81: each ttnn role resolves on every exported instantiation
    /// of its template (fixtures: those names from `nm -D` of each wheel's `_ttnncpp.so`), one
    /// attach point per operation type, each naming its operation; only 0.62's two
    /// `OldInfraDeviceOperation` instances (shared by ~68 operations) are refused.
    #[test]
    fn ttnn_roles_cover_six_releases() {
        let catalog = Catalog::builtin();
        let part = "_ttnncpp.so";
        assert_eq!(catalog.companions(), [part]);
        // (release, operations launched through launch/invoke, enqueues, hit handlers)
        for (release, launch, enqueue, hit) in [
            ("0.62.2", 69, 0, 69),
            ("0.67.4", 198, 198, 184),
            ("0.72.0", 220, 220, 199),
            ("0.75.0", 265, 265, 91),
            ("0.78.0", 290, 290, 94),
            ("0.81.1", 316, 316, 293),
        ] {
            let names =
                test_support::fixture_lines(&format!("ttnn-ops/_ttnncpp-{release}.launch.xz"));
            let symbols: Vec<(&str, u64)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), 0x1000_0000 + 0x100 * i as u64))
                .collect();
            let end = 0x1000_0000 + 0x100 * names.len() as u64;
            let elf = tiny_elf(&symbols, (0, end, 0, end, 5));
            let r = resolve_part(Path::new(part), &elf, &catalog, Some(part)).expect("resolves");
            for (role, want) in [
                (Role::OpLaunch, launch),
                (Role::OpEnqueue, enqueue),
                (Role::OpCacheHit, hit),
            ] {
                let rr = r.role(role).unwrap();
                let ops: std::collections::BTreeSet<&str> = rr
                    .attach
                    .iter()
                    .map(|p| {
                        p.op.as_ref()
                            .and_then(|o| o.name())
                            .map(|_| p.op.as_ref().unwrap().path())
                            .expect("named")
                    })
                    .collect();
                assert_eq!(
                    (rr.attach.len(), ops.len()),
                    (want, want),
                    "{release} {role}: attach points, distinct operations"
                );
                let old_infra = if release == "0.62.2" { 2 } else { 0 };
                assert_eq!(
                    rr.rejected.len(),
                    if want > 0 { old_infra } else { 0 },
                    "{release} {role}: {:?}",
                    rr.rejected.iter().map(|x| &x.reason).collect::<Vec<_>>()
                );
                assert!(rr
                    .rejected
                    .iter()
                    .all(|x| x.reason.contains("serves many operations")));
                if role == Role::OpEnqueue {
                    assert!(
                        rr.attach.iter().all(|p| p.fields[0].register == "r9"),
                        "{release}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_tiny_elf_resolves() {
        let elf = tiny_elf(&[(DEVICE_CLOSE, 0x1010)], (0x1000, 0x100, 0x400, 0x100, 5));
        let r = resolve_bytes(Path::new("x"), &elf, &Catalog::builtin()).unwrap();
        let close = r.role(Role::DeviceClose).unwrap();
        assert_eq!(close.attach[0].file_offset, 0x410, "{close:?}");
    }

    /// A segment whose file offset is near u64::MAX overflowed the virtual address → file
    /// offset translation (the same bytes, patched into tiny_tt_metal.so, are in the resolve
    /// fuzz corpus).
    #[test]
    fn a_corrupt_segment_offset_rejects_the_function_instead_of_overflowing() {
        let load = (0x1000, 0x100, u64::MAX - 7, 0x100, 5);
        let elf = tiny_elf(&[(DEVICE_CLOSE, 0x1010)], load);
        let r = resolve_bytes(Path::new("x"), &elf, &Catalog::builtin()).unwrap();
        let close = r.role(Role::DeviceClose).unwrap();
        assert!(close.attach.is_empty());
        assert!(
            close.rejected[0].reason.contains("corrupt file offset"),
            "{close:?}"
        );
    }

    /// A catalog name whose last component starts with digits (the validator allows it)
    /// overflowed reading the prefilter's length prefix back (the catalog is in the catalog
    /// fuzz corpus).
    #[test]
    fn a_name_ending_in_digits_is_not_prefiltered_and_does_not_overflow() {
        let name = "tt::123456789012345678901234567890";
        let mut c = Catalog::builtin();
        c.roles[0].names = vec![name.into()];
        let elf = tiny_elf(&[(DEVICE_CLOSE, 0x1010)], (0x1000, 0x100, 0x400, 0x100, 5));
        let r = resolve_bytes(Path::new("x"), &elf, &c).unwrap();
        assert!(r.resolved(Role::DeviceClose));
        assert!(!r.resolved(c.roles[0].role));
        assert_eq!(elf::mangled_hint(name), None);
    }

    #[test]
    fn functions_starting_with_a_prefix_uprobes_reject_are_refused() {
        // `lock addq $1,0x10(%rdi); ret`: a tiny counter bump.
        let lock = [0xf0, 0x48, 0x83, 0x47, 0x10, 0x01, 0xc3];
        assert!(uprobe_refused(&lock).unwrap().contains("LOCK prefix"));
        // An operand-size prefix first does not hide it.
        assert!(uprobe_refused(&[0x66, 0xf0, 0x83, 0x07, 0x01]).is_some());
        assert!(uprobe_refused(&[0x2e, 0x0f, 0x1f, 0x84])
            .unwrap()
            .contains("segment"));
        // push %rbp; endbr64; rep ret; a REX-prefixed mov: fine.
        for ok in [
            &[0x55, 0x48, 0x89, 0xe5][..],
            &[0xf3, 0x0f, 0x1e, 0xfa],
            &[0xf3, 0xc3],
            &[0x48, 0x89, 0xf8],
            &[],
        ] {
            assert_eq!(uprobe_refused(ok), None, "{ok:02x?}");
        }
    }

    #[test]
    fn bad_files_get_one_line_errors() {
        let c = Catalog::builtin();
        let dir = std::env::temp_dir();
        assert!(matches!(
            resolve_file(&dir, &c),
            Err(Error::IsDirectory { .. })
        ));
        assert!(matches!(
            resolve_file(Path::new("/nonexistent/libtt_metal.so"), &c),
            Err(Error::Io { .. })
        ));
        for bytes in [&b""[..], b"not an elf at all", b"\x7fELF\x02"] {
            assert!(matches!(
                resolve_bytes(Path::new("x"), bytes, &c),
                Err(Error::NotElf { .. })
            ));
        }
        // ELF identification + e_machine only: the machine is named before any further parse.
        let mut aarch64 = [0u8; 64];
        aarch64[..6].copy_from_slice(b"\x7fELF\x02\x01");
        aarch64[18] = 183;
        let err = resolve_bytes(Path::new("x"), &aarch64, &c).unwrap_err();
        assert!(err.to_string().contains("64-bit AArch64"), "{err}");
        let mut i386 = aarch64;
        i386[4] = 1;
        i386[18] = 3;
        let err = resolve_bytes(Path::new("x"), &i386, &c).unwrap_err();
        assert!(err.to_string().contains("32-bit i386"), "{err}");
        // A real x86-64 ELF without tt-metal in it: this test binary's own libc.
        let libc = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libc.so.6");
        assert!(matches!(
            resolve_file(Path::new(libc), &c),
            Err(Error::NotTtMetal { .. })
        ));
    }
}
