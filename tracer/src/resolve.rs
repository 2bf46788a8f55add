//! Resolving catalog roles in a library on disk: ELF symbols (.dynsym and .symtab), demangled
//! with cpp_demangle, matched by qualified name, arguments placed from the demangled parameter
//! list by the System V ABI, virtual addresses turned into file offsets for uprobes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use cpp_demangle::{DemangleOptions, Symbol as Mangled};
use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};
use serde::Serialize;
use tracer_common::{FieldOp, FieldRule, Recipe, RecipeKind, MAX_FIELDS};

use crate::{
    catalog::{Abi, Catalog, FieldSpec, RoleSpec},
    errors::{Error, Result},
    roles::Role,
};

/// System V integer argument registers, in order.
pub const ARG_REGISTERS: [&str; 6] = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"];

/// Where a role lives in one library.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub library: PathBuf,
    pub build_id: Option<String>,
    pub symbols_scanned: usize,
    pub roles: Vec<RoleResolution>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleResolution {
    pub role: Role,
    pub summary: String,
    pub required: bool,
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
    pub demangled: String,
    pub mangled: String,
    /// Other symbols at the same address (C1/C2 constructors, folded code).
    pub aliases: Vec<String>,
    pub address: u64,
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
    pub reason: String,
}

impl Resolution {
    pub fn role(&self, role: Role) -> Option<&RoleResolution> {
        self.roles.iter().find(|r| r.role == role)
    }

    /// Required roles with nothing to attach to.
    pub fn missing_required(&self) -> Vec<Role> {
        self.roles
            .iter()
            .filter(|r| r.required && r.attach.is_empty())
            .map(|r| r.role)
            .collect()
    }

    /// Fails with [`Error::MissingRoles`] unless every required role resolved.
    pub fn ensure_complete(&self) -> Result<()> {
        let missing = self.missing_required();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::MissingRoles {
            path: self.library.clone(),
            roles: missing.iter().map(|r| r.id()).collect::<Vec<_>>().join(", "),
        })
    }
}

/// A defined function symbol of the library.
struct FuncSym {
    name: String,
    address: u64,
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

pub fn resolve_bytes(path: &Path, data: &[u8], catalog: &Catalog) -> Result<Resolution> {
    let file = object::File::parse(data).map_err(|e| Error::NotElf {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if file.format() != object::BinaryFormat::Elf {
        return Err(Error::NotElf {
            path: path.into(),
            reason: format!("{:?} object", file.format()),
        });
    }
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

    // Every defined function, .dynsym first (what a stripped library keeps), then .symtab.
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    let mut scanned = 0;
    for sym in file.dynamic_symbols().chain(file.symbols()) {
        scanned += 1;
        if sym.kind() != SymbolKind::Text || !sym.is_definition() || sym.address() == 0 {
            continue;
        }
        if let Ok(name) = sym.name() {
            by_name.entry(name.to_string()).or_insert(sym.address());
        }
    }
    if scanned == 0 {
        return Err(Error::NoSymbols { path: path.into() });
    }
    let funcs: Vec<FuncSym> = by_name
        .into_iter()
        .map(|(name, address)| FuncSym { name, address })
        .collect();

    let segments: Vec<(u64, u64, u64)> = file
        .segments()
        .filter_map(|s| {
            let (off, size) = s.file_range();
            (size > 0).then_some((s.address(), off, size))
        })
        .collect();
    let file_offset = |addr: u64| {
        segments
            .iter()
            .find(|(va, _, size)| addr >= *va && addr < va + size)
            .map(|(va, off, _)| addr - va + off)
    };

    let roles: Vec<RoleResolution> = catalog
        .roles
        .iter()
        .map(|spec| resolve_role(spec, &catalog.abi, &funcs, &file_offset))
        .collect();
    if roles.iter().all(|r| r.attach.is_empty() && r.rejected.is_empty()) {
        return Err(Error::NotTtMetal { path: path.into() });
    }
    Ok(Resolution {
        library: path.into(),
        build_id,
        symbols_scanned: scanned,
        roles,
    })
}

/// The length-prefixed last identifier of a qualified name, as it appears in a mangled name
/// (`tt::llrt::write_binary_to_address` → `23write_binary_to_address`): a cheap filter that
/// spares demangling the ~70k symbols that cannot match.
fn mangled_hint(qualified: &str) -> String {
    let last = qualified.rsplit("::").next().unwrap_or(qualified);
    format!("{}{}", last.len(), last)
}

fn demangle(mangled: &str) -> Option<String> {
    let sym = Mangled::new(mangled.as_bytes()).ok()?;
    sym.demangle(&DemangleOptions::default()).ok()
}

fn resolve_role(
    spec: &RoleSpec,
    abi: &Abi,
    funcs: &[FuncSym],
    file_offset: &dyn Fn(u64) -> Option<u64>,
) -> RoleResolution {
    let mut attach: Vec<AttachPoint> = Vec::new();
    let mut rejected = Vec::new();
    for qualified in &spec.names {
        let hint = mangled_hint(qualified);
        for f in funcs.iter().filter(|f| f.name.starts_with("_Z") && f.name.contains(&hint)) {
            let Some(demangled) = demangle(&f.name) else { continue };
            let Some(params) = parameter_list(&demangled, qualified) else { continue };
            if let Some(existing) = attach.iter_mut().find(|a| a.address == f.address) {
                existing.aliases.push(f.name.clone());
                continue;
            }
            let fields = match place_fields(spec, abi, &params) {
                Ok(fields) => fields,
                Err(reason) => {
                    rejected.push(Rejected { demangled, reason });
                    continue;
                }
            };
            let Some(offset) = file_offset(f.address) else {
                rejected.push(Rejected {
                    demangled,
                    reason: format!("address {:#x} is in no loadable segment", f.address),
                });
                continue;
            };
            attach.push(AttachPoint {
                demangled,
                mangled: f.name.clone(),
                aliases: Vec::new(),
                address: f.address,
                file_offset: offset,
                fields,
            });
        }
    }
    let problem = attach.is_empty().then(|| {
        if rejected.is_empty() {
            format!("no symbol named {}", spec.names.join(" or "))
        } else {
            format!(
                "found {} but no overload fits the argument rules",
                spec.names.join(" or ")
            )
        }
    });
    RoleResolution {
        role: spec.role,
        summary: spec.summary.clone(),
        required: spec.required,
        kind: format!("{:?}", spec.kind),
        attach,
        rejected,
        problem,
    }
}

/// The parameters of `demangled` if it is the function `qualified` (not a lambda or template
/// instance inside it): `a::f(int, b const&) const` → ["int", "b const&"].
pub fn parameter_list(demangled: &str, qualified: &str) -> Option<Vec<String>> {
    let rest = demangled.strip_prefix(qualified)?.strip_prefix('(')?;
    let mut depth = 0usize;
    let mut params = Vec::new();
    let mut cur = String::new();
    for (i, c) in rest.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ']' => depth = depth.saturating_sub(1),
            ')' if depth == 0 => {
                // Only cv/ref qualifiers may follow the closing parenthesis.
                let tail = rest[i + 1..].trim();
                if !matches!(tail, "" | "const" | "&" | "&&" | "const&" | "const &" | "const&&") {
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

const SCALARS: [&str; 16] = [
    "bool", "char", "signedchar", "unsignedchar", "short", "unsignedshort", "int",
    "unsignedint", "long", "unsignedlong", "longlong", "unsignedlonglong", "char8_t",
    "char16_t", "char32_t", "wchar_t",
];

/// Integer registers one parameter takes, or None if unknown (a by-value class).
fn registers_of(ty: &str, abi: &Abi) -> Option<u8> {
    let n = normalize(ty);
    if n.ends_with('&') || n.ends_with('*') || SCALARS.contains(&n.as_str()) {
        return Some(1);
    }
    abi.by_value
        .iter()
        .find(|b| n.starts_with(&normalize(&b.prefix)))
        .map(|b| b.registers)
}

fn place_fields(spec: &RoleSpec, abi: &Abi, params: &[String]) -> Result<Vec<ResolvedField>, String> {
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
            reg += registers_of(p, abi)
                .ok_or_else(|| format!("cannot place `{}`: `{p}` before it is passed by value in an unknown way", f.name))?;
        }
        if registers_of(&params[index], abi) != Some(1) {
            return Err(format!("`{}` (`{}`) is not a one-register argument", f.name, params[index]));
        }
        if reg as usize >= ARG_REGISTERS.len() {
            return Err(format!("`{}` is passed on the stack (argument register {reg})", f.name));
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
                f.after.as_ref().map(|a| format!(" after `{a}`")).unwrap_or_default()
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
    for f in &point.fields {
        let Some(i) = spec.role.field_index(&f.name) else { continue };
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
            ["tt::tt_metal::MetalEnv*", "int", "std::span<unsigned int const, 18446744073709551615ul>", "bool"]
        );
        assert_eq!(parameter_list("a::f() const", "a::f").unwrap(), Vec::<String>::new());
        assert_eq!(parameter_list("a::f(void)", "a::f").unwrap(), Vec::<String>::new());
        // A lambda inside the function is not the function.
        assert!(parameter_list("a::f(int)::$_0::operator()() const", "a::f").is_none());
        // Nor is a longer name that shares the prefix.
        assert!(parameter_list("a::fg(int)", "a::f").is_none());
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
        // this=rdi, MetalEnv*=rsi, span=rdx+rcx, int=r8
        assert_eq!(place_fields(&spec(true, false, f.clone()), &abi, &params).unwrap()[0].register, "r8");
        // plus a hidden result pointer: r9
        assert_eq!(place_fields(&spec(true, true, f.clone()), &abi, &params).unwrap()[0].register, "r9");
        // a free function: rcx
        assert_eq!(place_fields(&spec(false, false, f), &abi, &params).unwrap()[0].register, "rcx");
        // `after` and `nth`
        let params: Vec<String> = ["int", "foo const&", "int", "int"].map(String::from).to_vec();
        let mut g = field("chip", "int", Some("foo const&"));
        g.nth = Some(2);
        assert_eq!(place_fields(&spec(false, false, vec![g]), &abi, &params).unwrap()[0].register, "rcx");
        // unknown by-value class before the field: refuse rather than guess
        let params: Vec<String> = ["Opaque", "int"].map(String::from).to_vec();
        let err = place_fields(&spec(false, false, vec![field("chip", "int", None)]), &abi, &params).unwrap_err();
        assert!(err.contains("unknown way"), "{err}");
        // seventh register: on the stack
        let params: Vec<String> = ["int"; 7].map(String::from).to_vec();
        let mut g = field("chip", "int", None);
        g.nth = Some(7);
        assert!(place_fields(&spec(false, false, vec![g]), &abi, &params).unwrap_err().contains("stack"));
    }

    #[test]
    fn bad_files_get_one_line_errors() {
        let c = Catalog::builtin();
        let dir = std::env::temp_dir();
        assert!(matches!(resolve_file(&dir, &c), Err(Error::IsDirectory { .. })));
        assert!(matches!(
            resolve_file(Path::new("/nonexistent/libtt_metal.so"), &c),
            Err(Error::Io { .. })
        ));
        assert!(matches!(
            resolve_bytes(Path::new("x"), b"not an elf at all", &c),
            Err(Error::NotElf { .. })
        ));
        // A real x86-64 ELF without tt-metal in it: this test binary's own libc.
        let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("libc.so.6");
        assert!(matches!(resolve_file(Path::new(libc), &c), Err(Error::NotTtMetal { .. })));
    }
}
