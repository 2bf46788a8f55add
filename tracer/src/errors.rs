//! Errors of the tt-tracer library (the binary wraps them with anyhow).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: is a directory, not a library (give the path of libtt_metal.so)")]
    IsDirectory { path: PathBuf },
    #[error("{path}: is {kind}, not a {what} file")]
    NotRegularFile {
        path: PathBuf,
        kind: &'static str,
        what: &'static str,
    },
    #[error("{path}: {size} bytes, larger than any {what} tt-tracer accepts ({max} bytes)")]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        size: u64,
        max: u64,
    },
    #[error("{path}: not an ELF file ({reason})")]
    NotElf { path: PathBuf, reason: String },
    #[error("{path}: {arch} ELF; tt-tracer traces x86-64 libraries only")]
    WrongArchitecture { path: PathBuf, arch: String },
    #[error("{path}: no symbols at all (fully stripped); tt-tracer needs .dynsym or .symtab")]
    NoSymbols { path: PathBuf },
    #[error("{path}: symbols only, no code (a separate debug file?): trace the library itself")]
    SymbolsOnly { path: PathBuf },
    #[error("{path}: no tt-metal symbols found (is this libtt_metal.so?)")]
    NotTtMetal { path: PathBuf },
    #[error("catalog {origin}: {reason}")]
    Catalog { origin: String, reason: String },
    #[error("required probe roles did not resolve in {path}: {roles} (see `tt-tracer probes --lib {path}`; --allow-partial traces anyway)")]
    MissingRoles { path: PathBuf, roles: String },
    #[error("no libtt_metal.so mapped by process {pid} (is it a tt-metal process? give --lib)")]
    LibraryNotMapped { pid: u32 },
    #[error("cannot read /proc/{pid}/maps: {source}")]
    ProcessUnreadable { pid: u32, source: std::io::Error },
    #[error("process {pid} not found")]
    NoSuchProcess { pid: u32 },
    #[error("process {pid} exited while tt-tracer was attaching to it: nothing to trace")]
    ProcessGone { pid: u32 },
    #[error("process {pid} cannot be traced: {why}")]
    NotTraceable { pid: u32, why: String },
    #[error("cannot run `{command}`: {source}")]
    CannotRun {
        command: String,
        source: std::io::Error,
    },
    #[error(
        "tracing needs root or CAP_BPF + CAP_PERFMON (run with sudo, or `setcap cap_bpf,cap_perfmon+ep` on the binary)"
    )]
    NotPrivileged,
    // aya's errors are large; boxed so every Result stays small.
    #[error("loading eBPF programs: {0}")]
    Ebpf(Box<aya::EbpfError>),
    #[error("eBPF program {program}: {source}")]
    Program {
        program: String,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("eBPF map {map}: {source}")]
    Map {
        map: String,
        source: Box<aya::maps::MapError>,
    },
    #[error("attaching {role} at {symbol} (+{offset:#x}) in {path}: {source}")]
    Attach {
        role: String,
        symbol: String,
        offset: u64,
        path: PathBuf,
        source: Box<aya::programs::ProgramError>,
    },
    /// A multi-uprobe link (all the library's points at once) refused: no one point to blame.
    #[error("attaching {program} to {points} points in {path}: {source}")]
    AttachLibrary {
        program: String,
        points: usize,
        path: PathBuf,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("{0}")]
    Other(String),
}

impl From<aya::EbpfError> for Error {
    fn from(e: aya::EbpfError) -> Self {
        Error::Ebpf(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Why a library could not be traced, as one short label (a metric label, where the full
    /// message with its path would make a series per file).
    pub fn library_refusal(&self) -> &'static str {
        match self {
            Error::Io { .. }
            | Error::IsDirectory { .. }
            | Error::NotRegularFile { .. }
            | Error::TooLarge { .. } => "unreadable",
            Error::NotElf { .. } | Error::WrongArchitecture { .. } => "not_x86_64_elf",
            Error::NoSymbols { .. } => "no_symbols",
            Error::SymbolsOnly { .. } => "symbols_only",
            Error::NotTtMetal { .. } => "not_tt_metal",
            Error::MissingRoles { .. } => "missing_roles",
            Error::Ebpf(_)
            | Error::Program { .. }
            | Error::Map { .. }
            | Error::Attach { .. }
            | Error::AttachLibrary { .. } => "kernel_refused",
            _ => "other",
        }
    }
}
