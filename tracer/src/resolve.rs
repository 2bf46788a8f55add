//! Resolving catalog roles in a library on disk: ELF symbols (.dynsym and .symtab), demangled
//! with cpp_demangle into the text `nm -C` prints, matched by qualified name, arguments placed
//! from the demangled parameter list by the System V ABI, virtual addresses turned into file
//! offsets for uprobes. Resolution is per file: nothing is cached between libraries.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use cpp_demangle::{DemangleOptions, Symbol as Mangled};
use object::{Object, ObjectSegment, ObjectSymbol, SegmentFlags, SymbolKind};
use serde::Serialize;
use tracer_common::{FieldOp, FieldRule, Recipe, RecipeKind, MAX_FIELDS};

use crate::{
    catalog::{Abi, Catalog, FieldSpec, RoleSpec},
    errors::{Error, Result},
    roles::Role,
};

/// System V integer argument registers, in order.
pub const ARG_REGISTERS: [&str; 6] = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"];

/// Where every role lives in one library.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub library: PathBuf,
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

#[derive(Debug, Clone, Serialize)]
pub struct RoleResolution {
    pub role: Role,
    pub summary: String,
    pub required: bool,
    /// The catalog's spelling: context | call | call_with_return.
    pub kind: String,
    /// Every function the probes attach to for this role (overloads; aliases folded).
    pub attach: Vec<AttachPoint>,
    /// Candidates with the right name that were not used, and why.
    pub rejected: Vec<Rejected>,
    /// Why the role did not resolve (None when `attach` is non-empty).
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
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
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedField {
    pub name: String,
    /// Argument register index (0 = rdi).
    pub arg: u8,
    pub register: &'static str,
    /// reg | u64 | u32 | vec_bytes
    pub read: String,
    pub offset: u32,
    /// The parameter as demangled (`this` for the object pointer).
    pub param: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub demangled: String,
    pub mangled: String,
    pub aliases: Vec<String>,
    pub address: u64,
    pub reason: String,
}

/// Something the tracer reports, and the roles it depends on.
#[derive(Debug, Clone, Serialize)]
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
const FEATURES: [(&str, &str, &[Role], &str); 13] = [
    (
        "kernel_binaries",
        "every kernel binary written to a device: bytes, chip, L1 address",
        &[Role::KernelBinaryWrite],
        "no kernel binary is seen: no kernel accounting at all",
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
];

impl Resolution {
    pub fn role(&self, role: Role) -> Option<&RoleResolution> {
        self.roles.iter().find(|r| r.role == role)
    }

    /// Whether a role has at least one attach point.
    pub fn resolved(&self, role: Role) -> bool {
        self.role(role).is_some_and(|r| !r.attach.is_empty())
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

/// A defined function symbol whose name passed the prefilter.
struct Candidate<'data> {
    name: &'data str,
    address: u64,
    demangled: Option<String>,
}

/// Reads `path` and resolves every catalog role in it.
pub fn resolve_file(path: &Path, catalog: &Catalog) -> Result<Resolution> {
    if path.is_dir() {
        return Err(Error::IsDirectory { path: path.into() });
    }
    let data = std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    resolve_bytes(path, &data, catalog)
}

/// Checks the ELF identification and machine before a full parse, so a foreign or truncated
/// file gets a precise one-line reason.
fn check_header(path: &Path, data: &[u8]) -> Result<()> {
    let not_elf = |reason: &str| Error::NotElf {
        path: path.into(),
        reason: reason.into(),
    };
    if data.is_empty() {
        return Err(not_elf("empty file"));
    }
    if !data.starts_with(b"\x7fELF") {
        return Err(not_elf("no ELF magic number"));
    }
    if data.len() < 20 {
        return Err(not_elf("truncated ELF header"));
    }
    let big_endian = data[5] == 2;
    let machine = if big_endian {
        u16::from_be_bytes([data[18], data[19]])
    } else {
        u16::from_le_bytes([data[18], data[19]])
    };
    let bits64 = data[4] == 2;
    if machine == 62 && bits64 && !big_endian {
        return Ok(());
    }
    let name = match machine {
        2 => "SPARC".to_string(),
        3 => "i386".to_string(),
        8 => "MIPS".to_string(),
        20 => "PowerPC".to_string(),
        21 => "PowerPC64".to_string(),
        22 => "S/390".to_string(),
        40 => "ARM".to_string(),
        43 => "SPARC V9".to_string(),
        62 => "x86-64".to_string(),
        183 => "AArch64".to_string(),
        243 => "RISC-V".to_string(),
        247 => "BPF".to_string(),
        258 => "LoongArch".to_string(),
        m => format!("machine {m}"),
    };
    let mut arch = format!("{}-bit", if bits64 { 64 } else { 32 });
    if big_endian {
        arch.push_str(" big-endian");
    }
    Err(Error::WrongArchitecture {
        path: path.into(),
        arch: format!("{arch} {name}"),
    })
}

pub fn resolve_bytes(path: &Path, data: &[u8], catalog: &Catalog) -> Result<Resolution> {
    check_header(path, data)?;
    let file = object::File::parse(data).map_err(|e| Error::NotElf {
        path: path.into(),
        reason: format!("truncated or corrupt: {e}"),
    })?;
    if file.architecture() != object::Architecture::X86_64 {
        return Err(Error::WrongArchitecture {
            path: path.into(),
            arch: format!("{:?}", file.architecture()),
        });
    }
    let build_id = file
        .build_id()
        .ok()
        .flatten()
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect());

    let prefilter = Prefilter::new(catalog);

    // .dynsym first (what a stripped library keeps), then .symtab; a name in both is one
    // candidate. Only names that can match a catalog name are kept, without allocating.
    let mut seen: HashSet<&str> = HashSet::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    let (mut dynsym_symbols, mut symtab_symbols) = (0, 0);
    let tables = [
        (file.dynamic_symbols(), &mut dynsym_symbols),
        (file.symbols(), &mut symtab_symbols),
    ];
    for (table, count) in tables {
        for sym in table {
            *count += 1;
            if sym.kind() != SymbolKind::Text || !sym.is_definition() || sym.address() == 0 {
                continue;
            }
            let Ok(name) = sym.name_bytes() else { continue };
            // `$plt` names are linker-made PLT stubs, not the function.
            if !name.starts_with(b"_Z") || name.ends_with(b"$plt") || !prefilter.may_match(name) {
                continue;
            }
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            if seen.insert(name) {
                candidates.push(Candidate {
                    name,
                    address: sym.address(),
                    demangled: None,
                });
            }
        }
    }
    let scanned = dynsym_symbols + symtab_symbols;
    if scanned == 0 {
        return Err(Error::NoSymbols { path: path.into() });
    }
    // Deterministic order whatever the tables' order: by address, then name.
    candidates.sort_by(|a, b| (a.address, a.name).cmp(&(b.address, b.name)));
    for c in &mut candidates {
        c.demangled = demangle(c.name);
    }

    // (virtual address, size in memory, file offset, size in file) of each loadable segment.
    let segments: Vec<(u64, u64, u64, u64, bool)> = file
        .segments()
        .map(|s| {
            let (off, filesz) = s.file_range();
            let exec = matches!(s.flags(), SegmentFlags::Elf { p_flags } if p_flags & 1 != 0);
            (s.address(), s.size(), off, filesz, exec)
        })
        .collect();
    let has_code = segments
        .iter()
        .any(|&(_, _, _, filesz, exec)| exec && filesz > 0);
    let locate = |addr: u64| -> Result<u64, String> {
        let Some(&(va, _, off, filesz, _)) = segments
            .iter()
            .find(|&&(va, memsz, _, _, _)| addr >= va && addr - va < memsz)
        else {
            return Err(format!("address {addr:#x} is in no loadable segment"));
        };
        if addr - va < filesz {
            // p_offset is whatever the file says: a corrupt one near u64::MAX must reject the
            // function, not overflow (a panic with overflow checks, a wrapped offset without).
            (addr - va).checked_add(off).ok_or_else(|| {
                format!("address {addr:#x} is in a segment with a corrupt file offset {off:#x}")
            })
        } else if has_code {
            Err(format!("address {addr:#x} has no bytes in the file"))
        } else {
            Ok(0)
        }
    };

    let roles: Vec<RoleResolution> = catalog
        .roles
        .iter()
        .map(|spec| resolve_role(spec, &catalog.abi, &candidates, &locate))
        .collect();
    if roles
        .iter()
        .all(|r| r.attach.is_empty() && r.rejected.is_empty())
    {
        return Err(Error::NotTtMetal { path: path.into() });
    }
    Ok(Resolution {
        library: path.into(),
        build_id,
        symbols_scanned: scanned,
        dynsym_symbols,
        symtab_symbols,
        has_code,
        roles,
    })
}

/// Which mangled names can be one of the catalog's functions, judged from the bytes alone.
struct Prefilter {
    /// Length-prefixed hints (`16configure_fabric`); empty with `all` set.
    hints: Vec<String>,
    /// Identifier lengths that occur in `hints`.
    lengths: [bool; 256],
    /// Some catalog name cannot be prefiltered: every `_Z` name is a candidate.
    all: bool,
}

impl Prefilter {
    fn new(catalog: &Catalog) -> Prefilter {
        let mut p = Prefilter {
            hints: Vec::new(),
            lengths: [false; 256],
            all: false,
        };
        for name in catalog.roles.iter().flat_map(|r| r.names.iter()) {
            match mangled_hint(name) {
                Some(h) => {
                    let len: usize = h
                        .bytes()
                        .take_while(u8::is_ascii_digit)
                        .fold(0, |n, d| n * 10 + (d - b'0') as usize);
                    if len < p.lengths.len() {
                        p.lengths[len] = true;
                        p.hints.push(h);
                    } else {
                        p.all = true;
                    }
                }
                None => p.all = true,
            }
        }
        p
    }

    /// One pass over the name: at each decimal number (a source-name length), compare the
    /// hints of that length. Much cheaper than one substring search per hint.
    fn may_match(&self, name: &[u8]) -> bool {
        if self.all {
            return true;
        }
        for i in 0..name.len() {
            if !name[i].is_ascii_digit() {
                continue;
            }
            let len = name[i..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .take(4)
                .fold(0usize, |n, d| n * 10 + (d - b'0') as usize);
            if len < self.lengths.len()
                && self.lengths[len]
                && self
                    .hints
                    .iter()
                    .any(|h| name[i..].starts_with(h.as_bytes()))
            {
                return true;
            }
        }
        false
    }
}

/// The length-prefixed last identifier of a qualified name, as it appears in a mangled name
/// (`tt::llrt::write_binary_to_address` → `23write_binary_to_address`; a constructor
/// `tt::Device::Device` → `6DeviceC`): a cheap filter that spares demangling the ~90k
/// symbols that cannot match. None when the last component is not a plain identifier
/// (an operator, a destructor): such a name is matched against every symbol.
fn mangled_hint(qualified: &str) -> Option<String> {
    let mut parts = qualified.rsplit("::");
    let last = parts.next()?;
    // An identifier never starts with a digit; one that did would also run into the length
    // prefix, which `Prefilter::new` reads back as one (overflowing) number.
    if last.is_empty()
        || !last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || last.starts_with(|c: char| c.is_ascii_digit())
        || last.starts_with("operator")
    {
        return None;
    }
    let ctor = parts.next() == Some(last);
    Some(format!(
        "{}{}{}",
        last.len(),
        last,
        if ctor { "C" } else { "" }
    ))
}

/// Longest demangled name kept (the longest of any symbol in tt-metal 0.62-0.81 is ~12 KB).
/// Substitutions can refer to earlier ones, so a short hostile name can demangle to an
/// exponentially long text (`a<S0_, S0_>` nested 40 deep is 2^40 words): without a bound,
/// resolving such a library ran until memory ran out (a crafted library run through the
/// resolve fuzz target hit its 10 s -timeout).
const MAX_DEMANGLED: usize = 32 << 10;

/// A `fmt::Write` that fails past [`MAX_DEMANGLED`]; cpp_demangle stops at the first error.
struct Bounded(String);

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.0.len() + s.len() > MAX_DEMANGLED {
            return Err(std::fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

/// Demangles `mangled` into the text `nm -C` (and `c++filt -i`) prints; None if it is not a
/// mangled name or demangles to more than [`MAX_DEMANGLED`] bytes.
pub fn demangle(mangled: &str) -> Option<String> {
    let sym = Mangled::new(mangled.as_bytes()).ok()?;
    let mut text = Bounded(String::new());
    sym.structured_demangle(&mut text, &DemangleOptions::default())
        .ok()?;
    Some(like_nm(&text.0))
}

/// Rewrites cpp_demangle's spelling where it differs from binutils' (`nm -C`, `c++filt -i`)
/// only in style: integer literals (`(unsigned long)5` → `5ul`), `std::nullptr_t` (→
/// `decltype(nullptr)`), `std::istream` and `std::iostream` (which cpp_demangle spells out, unlike
/// `std::ostream`), and the space in function types (`R (A)`).
fn like_nm(s: &str) -> String {
    const STREAMS: [(&str, &str); 2] = [
        (
            "std::basic_istream<char, std::char_traits<char> >",
            "std::istream",
        ),
        (
            "std::basic_iostream<char, std::char_traits<char> >",
            "std::iostream",
        ),
    ];
    let mut streams = std::borrow::Cow::Borrowed(s);
    for (long, short) in STREAMS {
        if streams.contains(long) {
            streams = streams.replace(long, short).into();
        }
    }
    let s: &str = &streams;
    const LITERALS: [(&str, &str); 5] = [
        ("(unsigned long long)", "ull"),
        ("(unsigned long)", "ul"),
        ("(unsigned int)", "u"),
        ("(long long)", "ll"),
        ("(long)", "l"),
    ];
    const NULLPTR: (&str, &str) = ("std::nullptr_t", "decltype(nullptr)");
    if !s.contains("(unsigned")
        && !s.contains("(long")
        && !s.contains(NULLPTR.0)
        && !s.contains('<')
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut rest = s;
    'scan: while let Some(at) = rest.find(['(', 's']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        for (cast, suffix) in LITERALS {
            if let Some(tail) = rest.strip_prefix(cast) {
                let neg = tail.starts_with('-') as usize;
                let digits = tail[neg..].bytes().take_while(u8::is_ascii_digit).count();
                if digits > 0 {
                    out.push_str(&tail[..neg + digits]);
                    out.push_str(suffix);
                    rest = &tail[neg + digits..];
                    continue 'scan;
                }
            }
        }
        let word_start = out
            .bytes()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b':'));
        if let Some(tail) = rest.strip_prefix(NULLPTR.0) {
            if word_start
                && !tail
                    .bytes()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
            {
                out.push_str(NULLPTR.1);
                rest = tail;
                continue 'scan;
            }
        }
        out.push_str(&rest[..1]);
        rest = &rest[1..];
    }
    out.push_str(rest);
    function_type_spacing(&out)
}

/// binutils writes a function type as `R (A)`, cpp_demangle as `R(A)` after a class name. A
/// function type only appears inside template arguments, and its `)` ends the argument.
fn function_type_spacing(s: &str) -> String {
    const NOT_TYPES: [&str; 6] = [
        "lambda", "decltype", "sizeof", "alignof", "noexcept", "typeid",
    ];
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len() + 8);
    let mut depth = 0usize;
    let mut last = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'<' => depth += 1,
            b'>' => depth = depth.saturating_sub(1),
            b'(' if depth > 0
                && i > 0
                && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'>') =>
            {
                let word_start = s[..i]
                    .rfind(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .map_or(0, |p| p + 1);
                let mut d = 0usize;
                let close = s[i..].char_indices().find_map(|(j, ch)| match ch {
                    '(' => {
                        d += 1;
                        None
                    }
                    ')' => {
                        d -= 1;
                        (d == 0).then_some(i + j)
                    }
                    _ => None,
                });
                let ends_argument =
                    close.is_some_and(|close| matches!(b.get(close + 1), Some(b'>' | b',')));
                if ends_argument && !NOT_TYPES.contains(&&s[word_start..i]) {
                    out.push_str(&s[last..i]);
                    out.push(' ');
                    last = i;
                }
            }
            _ => {}
        }
    }
    out.push_str(&s[last..]);
    out
}

fn resolve_role(
    spec: &RoleSpec,
    abi: &Abi,
    candidates: &[Candidate],
    locate: &dyn Fn(u64) -> Result<u64, String>,
) -> RoleResolution {
    let mut attach: Vec<AttachPoint> = Vec::new();
    let mut rejected: Vec<Rejected> = Vec::new();
    for qualified in &spec.names {
        let hint = mangled_hint(qualified);
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
            let placed = place_fields(spec, abi, &params).and_then(|f| Ok((f, locate(c.address)?)));
            match placed {
                Ok((fields, file_offset)) => attach.push(AttachPoint {
                    demangled: demangled.clone(),
                    mangled: c.name.to_string(),
                    aliases: Vec::new(),
                    address: c.address,
                    file_offset,
                    fields,
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
        if rejected.is_empty() {
            format!("no function named {}", spec.names.join(" or "))
        } else {
            format!(
                "{} found, but no overload fits the argument rules",
                spec.names.join(" or ")
            )
        }
    });
    RoleResolution {
        role: spec.role,
        summary: spec.summary.clone(),
        required: spec.required,
        kind: kind_id(spec.kind).into(),
        attach,
        rejected,
        problem,
    }
}

fn kind_id(kind: RecipeKind) -> &'static str {
    match kind {
        RecipeKind::Context => "context",
        RecipeKind::Call => "call",
        RecipeKind::CallWithReturn => "call_with_return",
        RecipeKind::None => "none",
    }
}

/// The parameters of `demangled` if it is the function `qualified` (not a lambda or template
/// instance inside it): `a::f(int, b const&) const` → ["int", "b const&"]. ABI tags
/// (`a::f[abi:cxx11](int)`) are allowed between the name and the list.
pub fn parameter_list(demangled: &str, qualified: &str) -> Option<Vec<String>> {
    let mut rest = demangled.strip_prefix(qualified)?;
    while let Some(tagged) = rest.strip_prefix("[abi:") {
        rest = &tagged[tagged.find(']')? + 1..];
    }
    let rest = rest.strip_prefix('(')?;
    let mut depth = 0usize;
    let mut params = Vec::new();
    let mut cur = String::new();
    for (i, c) in rest.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ']' => depth = depth.saturating_sub(1),
            ')' if depth == 0 => {
                // Only cv/ref qualifiers may follow the closing parenthesis (not `[clone .cold]`,
                // not `::$_0::operator()`).
                let qualifiers_only = rest[i + 1..]
                    .split_whitespace()
                    .all(|w| matches!(w, "const" | "volatile" | "&" | "&&" | "const&" | "const&&"));
                if !qualifiers_only {
                    return None;
                }
                let last = cur.trim();
                if !last.is_empty() {
                    params.push(last.to_string());
                }
                if params.len() == 1 && params[0] == "void" {
                    params.clear();
                }
                return Some(params);
            }
            ')' => depth -= 1,
            ',' if depth == 0 => {
                params.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    None
}

fn normalize(ty: &str) -> String {
    ty.chars().filter(|c| !c.is_whitespace()).collect()
}

const SCALARS: [&str; 17] = [
    "bool",
    "char",
    "signedchar",
    "unsignedchar",
    "short",
    "unsignedshort",
    "int",
    "unsignedint",
    "long",
    "unsignedlong",
    "longlong",
    "unsignedlonglong",
    "char8_t",
    "char16_t",
    "char32_t",
    "wchar_t",
    "decltype(nullptr)",
];

/// Floating-point parameters travel in SSE registers and take no integer register.
const FLOATS: [&str; 2] = ["float", "double"];

/// Integer registers one parameter takes, or None if unknown (a by-value class or enum).
fn registers_of(ty: &str, abi: &Abi) -> Option<u8> {
    let n = normalize(ty);
    if n.ends_with('&') || n.ends_with('*') || SCALARS.contains(&n.as_str()) {
        return Some(1);
    }
    if FLOATS.contains(&n.as_str()) {
        return Some(0);
    }
    abi.by_value
        .iter()
        .find(|b| n.starts_with(&normalize(&b.prefix)))
        .map(|b| b.registers)
}

fn place_fields(
    spec: &RoleSpec,
    abi: &Abi,
    params: &[String],
) -> Result<Vec<ResolvedField>, String> {
    // Registers taken before the first parameter: hidden result pointer, then `this`.
    let base = spec.returns_by_value as u8 + spec.member as u8;
    let mut out = Vec::new();
    for f in &spec.fields {
        let read = f.read.clone().unwrap_or_else(|| "reg".into());
        if f.this {
            out.push(ResolvedField {
                name: f.name.clone(),
                arg: spec.returns_by_value as u8,
                register: ARG_REGISTERS[spec.returns_by_value as usize],
                read,
                offset: f.offset,
                param: "this".into(),
            });
            continue;
        }
        let index = find_param(f, params)?;
        let mut reg = base;
        for p in &params[..index] {
            reg += registers_of(p, abi).ok_or_else(|| {
                format!(
                    "cannot place `{}`: `{p}` before it is passed by value in an unknown way",
                    f.name
                )
            })?;
        }
        if registers_of(&params[index], abi) != Some(1) {
            return Err(format!(
                "`{}` (`{}`) is not a one-register argument",
                f.name, params[index]
            ));
        }
        if reg as usize >= ARG_REGISTERS.len() {
            return Err(format!(
                "`{}` is passed on the stack (argument register {reg})",
                f.name
            ));
        }
        out.push(ResolvedField {
            name: f.name.clone(),
            arg: reg,
            register: ARG_REGISTERS[reg as usize],
            read,
            offset: f.offset,
            param: params[index].clone(),
        });
    }
    Ok(out)
}

fn find_param(f: &FieldSpec, params: &[String]) -> Result<usize, String> {
    let ty = normalize(f.ty.as_deref().unwrap_or_default());
    let start = match &f.after {
        Some(after) => {
            let a = normalize(after);
            params
                .iter()
                .position(|p| normalize(p) == a)
                .ok_or_else(|| format!("`{}`: no `{after}` parameter", f.name))?
                + 1
        }
        None => 0,
    };
    let nth = f.nth.unwrap_or(1).max(1);
    params
        .iter()
        .enumerate()
        .skip(start)
        .filter(|(_, p)| normalize(p) == ty)
        .nth(nth - 1)
        .map(|(i, _)| i)
        .ok_or_else(|| {
            format!(
                "`{}`: no parameter #{nth} of type `{}`{}",
                f.name,
                f.ty.as_deref().unwrap_or_default(),
                f.after
                    .as_ref()
                    .map(|a| format!(" after `{a}`"))
                    .unwrap_or_default()
            )
        })
}

/// The BPF recipe for one attach point of a role.
pub fn recipe(spec: &RoleSpec, point: &AttachPoint) -> Recipe {
    let mut r = Recipe::EMPTY;
    r.role = spec.role as u16;
    r.kind = spec.kind as u8;
    r.ring = spec.ring as u8;
    r.origin = spec.origin as u8;
    // `this` comes after a hidden result pointer; a static or free function is named by its
    // first argument (the result pointer itself, when there is one: unique per call).
    r.context_arg = (spec.member && spec.returns_by_value) as u8;
    for f in &point.fields {
        let Some(i) = spec.role.field_index(&f.name) else {
            continue;
        };
        if i >= MAX_FIELDS {
            continue;
        }
        let op = match f.read.as_str() {
            "u64" => FieldOp::Load64,
            "u32" => FieldOp::Load32,
            "vec_bytes" => FieldOp::VecBytes,
            _ => FieldOp::Reg,
        };
        r.fields[i] = FieldRule {
            op: op as u8,
            arg: f.arg,
            _pad: [0; 2],
            offset: f.offset,
        };
    }
    debug_assert!(spec.kind != RecipeKind::None);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_lists_are_split_at_top_level_commas_only() {
        let d = "tt::tt_metal::Device::Device(tt::tt_metal::MetalEnv*, int, std::span<unsigned int const, 18446744073709551615ul>, bool)";
        assert_eq!(
            parameter_list(d, "tt::tt_metal::Device::Device").unwrap(),
            [
                "tt::tt_metal::MetalEnv*",
                "int",
                "std::span<unsigned int const, 18446744073709551615ul>",
                "bool"
            ]
        );
        assert_eq!(
            parameter_list("a::f() const", "a::f").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            parameter_list("a::f(void)", "a::f").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            parameter_list("a::f[abi:cxx11](int)", "a::f").unwrap(),
            ["int"]
        );
        assert_eq!(
            parameter_list("a::f(int) const &", "a::f").unwrap(),
            ["int"]
        );
        // A lambda inside the function is not the function.
        assert!(parameter_list("a::f(int)::$_0::operator()() const", "a::f").is_none());
        // Nor is a split-off cold part, nor a longer name that shares the prefix.
        assert!(parameter_list("a::f(int) [clone .cold]", "a::f").is_none());
        assert!(parameter_list("a::fg(int)", "a::f").is_none());
    }

    #[test]
    fn demangled_text_is_what_nm_prints() {
        let cases = [
            (
                "_ZN2tt8tt_metal6DeviceC2EihmmSt4spanIKjLm18446744073709551615EEbjjm",
                "tt::tt_metal::Device::Device(int, unsigned char, unsigned long, unsigned long, std::span<unsigned int const, 18446744073709551615ul>, bool, unsigned int, unsigned int, unsigned long)",
            ),
            ("_Z1fRSo", "f(std::ostream&)"),
            ("_Z1fRSiRSd", "f(std::istream&, std::iostream&)"),
            (
                "_Z1fRSt14basic_ifstreamIcSt11char_traitsIcEE",
                "f(std::basic_ifstream<char, std::char_traits<char> >&)",
            ),
            ("_Z1fDn", "f(decltype(nullptr))"),
            (
                "_Z1fSt8functionIFN2tt1BEvEE",
                "f(std::function<tt::B ()>)",
            ),
            ("_Z1fILln5EEvv", "void f<-5l>()"),
            ("_Z1fILj7EEvv", "void f<7u>()"),
        ];
        for (mangled, want) in cases {
            assert_eq!(demangle(mangled).as_deref(), Some(want), "{mangled}");
        }
        // Only the whole word is rewritten.
        assert_eq!(like_nm("f(std::nullptr_t_like)"), "f(std::nullptr_t_like)");
        assert_eq!(like_nm("f(my::std::nullptr_t)"), "f(my::std::nullptr_t)");
    }

    /// Each level's template arguments are the previous level twice: 2^N words from a name of
    /// a few bytes per level. Unbounded, 22 levels took a minute in a test build; the 40 levels
    /// of the crafted library in the resolve fuzz corpus would never finish.
    #[test]
    fn an_exponentially_long_demangling_is_refused() {
        let mut name = String::from("_Z5close1aIiiE");
        let sub = |i: u32| match i {
            0 => "S_".to_string(),
            i => format!(
                "S{}_",
                char::from_digit(i - 1, 36).unwrap().to_ascii_uppercase()
            ),
        };
        for level in 1..=22 {
            name.push_str(&format!("S_I{}{}E", sub(level), sub(level)));
        }
        let t = std::time::Instant::now();
        assert_eq!(demangle(&name), None);
        assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
        // Three levels are short and fine.
        assert_eq!(
            demangle("_Z5close1aIiiES_IS0_S0_ES_IS1_S1_E").as_deref(),
            Some("close(a<int, int>, a<a<int, int>, a<int, int> >, a<a<a<int, int>, a<int, int> >, a<a<int, int>, a<int, int> > >)")
        );
    }

    #[test]
    fn hints_are_the_mangled_last_identifier() {
        assert_eq!(
            mangled_hint("tt::llrt::write_binary_to_address").unwrap(),
            "23write_binary_to_address"
        );
        assert_eq!(
            mangled_hint("tt::tt_metal::Device::Device").unwrap(),
            "6DeviceC"
        );
        assert_eq!(mangled_hint("a::operator=="), None);
        assert_eq!(mangled_hint("a::~A"), None);
    }

    fn spec(member: bool, sret: bool, fields: Vec<FieldSpec>) -> RoleSpec {
        let mut s = Catalog::builtin().roles.remove(0);
        s.member = member;
        s.returns_by_value = sret;
        s.fields = fields;
        s
    }

    fn field(name: &str, ty: &str, after: Option<&str>) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            this: false,
            ty: Some(ty.into()),
            nth: None,
            after: after.map(Into::into),
            read: None,
            offset: 0,
            why: None,
        }
    }

    #[test]
    fn registers_follow_system_v_with_this_sret_and_two_register_spans() {
        let abi = Catalog::builtin().abi;
        let params: Vec<String> = ["tt::MetalEnv*", "std::span<unsigned int const, 5ul>", "int"]
            .map(String::from)
            .to_vec();
        let f = vec![field("chip", "int", None)];
        let reg = |member, sret, f: Vec<FieldSpec>| {
            place_fields(&spec(member, sret, f), &abi, &params).unwrap()[0].register
        };
        // this=rdi, MetalEnv*=rsi, span=rdx+rcx, int=r8
        assert_eq!(reg(true, false, f.clone()), "r8");
        // plus a hidden result pointer: r9
        assert_eq!(reg(true, true, f.clone()), "r9");
        // a free function: rcx
        assert_eq!(reg(false, false, f), "rcx");
        // `after` and `nth`
        let params: Vec<String> = ["int", "foo const&", "int", "int"]
            .map(String::from)
            .to_vec();
        let mut g = field("chip", "int", Some("foo const&"));
        g.nth = Some(2);
        assert_eq!(
            place_fields(&spec(false, false, vec![g]), &abi, &params).unwrap()[0].register,
            "rcx"
        );
        // a double before the field takes an SSE register, not an integer one
        let params: Vec<String> = ["double", "int"].map(String::from).to_vec();
        let f = vec![field("chip", "int", None)];
        assert_eq!(
            place_fields(&spec(false, false, f), &abi, &params).unwrap()[0].register,
            "rdi"
        );
        // unknown by-value class before the field: refuse rather than guess
        let params: Vec<String> = ["Opaque", "int"].map(String::from).to_vec();
        let err = place_fields(
            &spec(false, false, vec![field("chip", "int", None)]),
            &abi,
            &params,
        )
        .unwrap_err();
        assert!(err.contains("unknown way"), "{err}");
        // seventh register: on the stack
        let params: Vec<String> = ["int"; 7].map(String::from).to_vec();
        let mut g = field("chip", "int", None);
        g.nth = Some(7);
        assert!(place_fields(&spec(false, false, vec![g]), &abi, &params)
            .unwrap_err()
            .contains("stack"));
    }

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
        assert_eq!(mangled_hint(name), None);
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
