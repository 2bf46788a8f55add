//! Reading the library: the ELF header checked before a full parse (a precise reason for a
//! foreign or truncated file), the function symbols of .dynsym and .symtab that can be catalog
//! functions (a prefilter on the mangled bytes), loadable segments for file offsets.

use std::{collections::HashSet, path::Path};

use object::{Object, ObjectSegment, ObjectSymbol, SegmentFlags, SymbolKind};

use crate::{
    catalog::RoleSpec,
    errors::{Error, Result},
};

/// A defined function symbol whose name passed the prefilter.
pub(super) struct Candidate<'data> {
    pub(crate) name: &'data str,
    pub(crate) address: u64,
    /// As `nm -C` prints it (None if it does not demangle).
    pub(crate) demangled: Option<String>,
}

/// The function symbols that can be catalog functions, and how many symbols each table has.
pub(super) struct Symbols<'data> {
    pub(crate) candidates: Vec<Candidate<'data>>,
    pub(crate) dynsym: usize,
    pub(crate) symtab: usize,
}

/// Checks the header, parses the ELF file, insists on x86-64.
pub(super) fn parse<'data>(path: &Path, data: &'data [u8]) -> Result<object::File<'data>> {
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
    Ok(file)
}

/// The GNU build-id, hex.
pub(super) fn build_id(file: &object::File) -> Option<String> {
    file.build_id()
        .ok()
        .flatten()
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
}

/// .dynsym first (what a stripped library keeps), then .symtab; a name in both is one
/// candidate. Only names that can match a catalog name are kept, without allocating; each kept
/// one is demangled. Sorted by address, then name, whatever the tables' order.
pub(super) fn function_candidates<'data>(
    file: &object::File<'data>,
    roles: &[&RoleSpec],
) -> Symbols<'data> {
    let prefilter = Prefilter::new(roles);
    let mut seen: HashSet<&str> = HashSet::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    let (mut dynsym, mut symtab) = (0, 0);
    for (table, count) in [
        (file.dynamic_symbols(), &mut dynsym),
        (file.symbols(), &mut symtab),
    ] {
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
    candidates.sort_by(|a, b| (a.address, a.name).cmp(&(b.address, b.name)));
    for c in &mut candidates {
        // Template instances are read from their mangled form (`resolve::ops`); their C++20
        // constraints do not demangle anyway.
        if !prefilter.is_instance(c.name.as_bytes()) {
            c.demangled = super::demangle(c.name);
        }
    }
    Symbols {
        candidates,
        dynsym,
        symtab,
    }
}

/// The loadable segments: (virtual address, size in memory, file offset, size in file).
pub(super) struct Segments {
    list: Vec<(u64, u64, u64, u64)>,
    /// False for a file whose executable segments have no bytes (a separate debug file made by
    /// `objcopy --only-keep-debug`): nothing to attach to.
    pub(crate) has_code: bool,
}

impl Segments {
    pub(crate) fn of(file: &object::File) -> Segments {
        let mut has_code = false;
        let list = file
            .segments()
            .map(|s| {
                let (off, filesz) = s.file_range();
                let exec = matches!(s.flags(), SegmentFlags::Elf { p_flags } if p_flags & 1 != 0);
                has_code |= exec && filesz > 0;
                (s.address(), s.size(), off, filesz)
            })
            .collect();
        Segments { list, has_code }
    }

    /// The file offset of virtual address `addr` (the uprobe offset); 0 in a file without code.
    pub(crate) fn file_offset(&self, addr: u64) -> Result<u64, String> {
        let Some(&(va, _, off, filesz)) = self
            .list
            .iter()
            .find(|&&(va, memsz, _, _)| addr >= va && addr - va < memsz)
        else {
            return Err(format!("address {addr:#x} is in no loadable segment"));
        };
        if addr - va < filesz {
            // A corrupt header can put the segment past the end of the offsets: refuse, never wrap.
            (addr - va).checked_add(off).ok_or_else(|| {
                format!("address {addr:#x} is in a segment with a corrupt file offset {off:#x}")
            })
        } else if self.has_code {
            Err(format!("address {addr:#x} has no bytes in the file"))
        } else {
            Ok(0)
        }
    }
}

/// Checks the ELF identification and machine before a full parse, so a foreign or truncated
/// file gets a precise one-line reason.
pub(super) fn check_header(path: &Path, data: &[u8]) -> Result<()> {
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

/// Which mangled names can be one of the catalog's functions, judged from the bytes alone.
pub(super) struct Prefilter {
    /// Length-prefixed hints (`16configure_fabric`); empty with `all` set.
    hints: Vec<String>,
    /// Identifier lengths that occur in `hints`.
    lengths: [bool; 256],
    /// Some catalog name cannot be prefiltered: every `_Z` name is a candidate.
    all: bool,
    /// Mangled prefixes of the templates whose instantiations are candidates.
    instances: Vec<String>,
}

impl Prefilter {
    fn new(roles: &[&RoleSpec]) -> Prefilter {
        let mut p = Prefilter {
            hints: Vec::new(),
            lengths: [false; 256],
            all: false,
            instances: roles
                .iter()
                .flat_map(|r| r.instances_of.iter())
                .filter_map(|t| template_prefix(t))
                .collect(),
        };
        for name in roles.iter().flat_map(|r| r.names.iter()) {
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
    fn is_instance(&self, name: &[u8]) -> bool {
        self.instances
            .iter()
            .any(|p| name.starts_with(p.as_bytes()))
    }

    fn may_match(&self, name: &[u8]) -> bool {
        if self.all || self.is_instance(name) {
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
/// How every instantiation of the function template `qualified` starts when mangled:
/// `a::b::f` → `_ZN1a1b1fI` (a namespace-scope template; None for a name that is not plain
/// identifiers).
pub(super) fn template_prefix(qualified: &str) -> Option<String> {
    let mut out = String::from("_ZN");
    for part in qualified.split("::") {
        if part.is_empty()
            || part.starts_with(|c: char| c.is_ascii_digit())
            || !part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return None;
        }
        out.push_str(&format!("{}{part}", part.len()));
    }
    out.push('I');
    Some(out)
}

pub(super) fn mangled_hint(qualified: &str) -> Option<String> {
    let mut parts = qualified.rsplit("::");
    let last = parts.next()?;
    if last.is_empty()
        || !last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        // An identifier never starts with a digit; one that did would run into the length
        // prefix, which the prefilter reads back as one (overflowing) number.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
