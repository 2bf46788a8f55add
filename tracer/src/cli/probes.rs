//! `tt-tracer probes --lib PATH [--json]`: where each role resolves, or why not, and what the
//! tracer can report with that library. Needs no privileges.

use std::{fmt::Write as _, path::PathBuf};

use clap::Args;
use serde::Serialize;
use tracer_common::{FieldOp, RecipeKind};
use tt_tracer::{
    catalog::Catalog,
    resolve::{self, Feature, Resolution},
    roles::Field,
    Error,
};

use super::exit;

/// Version of the `--json` output (docs/probes-json.md).
const SCHEMA: u32 = 1;

#[derive(Args, Debug)]
pub struct ProbesArgs {
    /// The libtt_metal.so to inspect.
    #[arg(long, value_name = "PATH")]
    lib: PathBuf,
    /// Machine-readable output (schema: docs/probes-json.md).
    #[arg(long)]
    json: bool,
    /// Probe catalog to use instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
}

pub fn probes(a: ProbesArgs) -> anyhow::Result<u8> {
    let t0 = std::time::Instant::now();
    let resolved = match &a.catalog {
        Some(p) => Catalog::from_file(p),
        None => Ok(Catalog::builtin()),
    }
    .and_then(|c| {
        let r = resolve::resolve_file(&a.lib, &c)?;
        // The package's other libraries, beside this one.
        let r = match a.lib.parent() {
            Some(dir) => resolve::with_companions(r, dir, &c),
            None => r,
        };
        Ok((r, c))
    });
    let elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;
    let (r, catalog) = match resolved {
        Ok(ok) => ok,
        Err(e) => {
            let message = e.to_string();
            let kind = error_kind(&e);
            let code = super::code_for(&e.into());
            if a.json {
                // Still one JSON document on stdout, so a fleet script can parse every host's answer.
                let out = ErrorOut {
                    schema: SCHEMA,
                    library: &a.lib,
                    exit_code: code,
                    error: ErrorBody {
                        kind,
                        message: message.clone(),
                    },
                };
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            // The message already names the cause; printing the error chain would repeat it.
            eprintln!("tt-tracer: {message}");
            return Ok(code);
        }
    };
    let code = if r.has_code && r.missing_required().is_empty() {
        0
    } else {
        exit::LIBRARY
    };
    if a.json {
        let out = json(&r, &catalog.origin, code, elapsed_ms);
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", text(&r));
        println!("resolved in {elapsed_ms:.1} ms");
    }
    Ok(code)
}

fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => "not_found",
        Error::Io { .. } => "io",
        Error::IsDirectory { .. } => "is_directory",
        Error::NotRegularFile { .. } => "not_regular_file",
        Error::TooLarge { .. } => "too_large",
        Error::NotElf { .. } => "not_elf",
        Error::WrongArchitecture { .. } => "wrong_architecture",
        Error::NoSymbols { .. } => "no_symbols",
        Error::NotTtMetal { .. } => "not_tt_metal",
        Error::Catalog { .. } => "catalog",
        _ => "other",
    }
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    schema: u32,
    library: &'a std::path::Path,
    exit_code: u8,
    error: ErrorBody,
}

#[derive(Serialize)]
struct ErrorBody {
    kind: &'static str,
    message: String,
}

#[derive(Serialize)]
struct Out<'a> {
    schema: u32,
    library: &'a std::path::Path,
    catalog: &'a str,
    build_id: Option<&'a str>,
    symbols: Symbols,
    has_code: bool,
    complete: bool,
    usable: bool,
    missing_required: Vec<&'static str>,
    exit_code: u8,
    resolve_ms: f64,
    roles: Vec<RoleOut<'a>>,
    /// The package's other libraries found beside it, and the roles resolved in each.
    companions: Vec<CompanionOut<'a>>,
    features: Vec<FeatureOut>,
}

#[derive(Serialize)]
struct CompanionOut<'a> {
    library: &'a std::path::Path,
    build_id: Option<&'a str>,
    symbols: Symbols,
    roles: Vec<RoleOut<'a>>,
}

#[derive(Serialize)]
struct Symbols {
    dynsym: usize,
    symtab: usize,
}

#[derive(Serialize)]
struct RoleOut<'a> {
    id: &'static str,
    summary: &'a str,
    required: bool,
    kind: RecipeKind,
    resolved: bool,
    attach: Vec<AttachOut<'a>>,
    rejected: Vec<RejectedOut<'a>>,
    problem: Option<&'a str>,
}

#[derive(Serialize)]
struct AttachOut<'a> {
    demangled: &'a str,
    mangled: &'a str,
    aliases: &'a [String],
    address: u64,
    file_offset: Option<u64>,
    fields: Vec<FieldOut<'a>>,
    /// The ttnn operation the attach point is for (roles listing `instances_of`).
    #[serde(skip_serializing_if = "Option::is_none")]
    op: Option<&'a str>,
}

#[derive(Serialize)]
struct FieldOut<'a> {
    name: Field,
    register: &'a str,
    arg: u8,
    param: &'a str,
    read: FieldOp,
    offset: u32,
}

#[derive(Serialize)]
struct RejectedOut<'a> {
    demangled: &'a str,
    mangled: &'a str,
    aliases: &'a [String],
    address: u64,
    reason: &'a str,
}

#[derive(Serialize)]
struct FeatureOut {
    id: &'static str,
    summary: &'static str,
    available: bool,
    needs: Vec<&'static str>,
    missing: Vec<&'static str>,
    degraded: Option<&'static str>,
}

fn json<'a>(r: &'a Resolution, catalog: &'a str, exit_code: u8, resolve_ms: f64) -> Out<'a> {
    let missing: Vec<&'static str> = r.missing_required().iter().map(|m| m.id()).collect();
    Out {
        schema: SCHEMA,
        library: &r.library,
        catalog,
        build_id: r.build_id.as_deref(),
        symbols: Symbols {
            dynsym: r.dynsym_symbols,
            symtab: r.symtab_symbols,
        },
        has_code: r.has_code,
        complete: missing.is_empty(),
        usable: r.has_code && missing.is_empty(),
        missing_required: missing,
        exit_code,
        resolve_ms,
        roles: roles_out(r),
        companions: r
            .companions
            .iter()
            .map(|c| CompanionOut {
                library: &c.library,
                build_id: c.build_id.as_deref(),
                symbols: Symbols {
                    dynsym: c.dynsym_symbols,
                    symtab: c.symtab_symbols,
                },
                roles: roles_out(c),
            })
            .collect(),
        features: r.features().into_iter().map(feature_out).collect(),
    }
}

fn roles_out(r: &Resolution) -> Vec<RoleOut<'_>> {
    r.roles
        .iter()
        .map(|role| RoleOut {
            id: role.role.id(),
            summary: &role.summary,
            required: role.required,
            kind: role.kind,
            resolved: !role.attach.is_empty(),
            attach: role
                .attach
                .iter()
                .map(|p| AttachOut {
                    demangled: &p.demangled,
                    mangled: &p.mangled,
                    aliases: &p.aliases,
                    address: p.address,
                    file_offset: r.has_code.then_some(p.file_offset),
                    fields: p
                        .fields
                        .iter()
                        .map(|f| FieldOut {
                            name: f.name,
                            register: f.register,
                            arg: f.arg,
                            param: &f.param,
                            read: f.read,
                            offset: f.offset,
                        })
                        .collect(),
                    op: p.op.as_ref().map(|o| o.path()),
                })
                .collect(),
            rejected: role
                .rejected
                .iter()
                .map(|x| RejectedOut {
                    demangled: &x.demangled,
                    mangled: &x.mangled,
                    aliases: &x.aliases,
                    address: x.address,
                    reason: &x.reason,
                })
                .collect(),
            problem: role.problem.as_deref(),
        })
        .collect()
}

fn feature_out(f: Feature) -> FeatureOut {
    FeatureOut {
        id: f.id,
        summary: f.summary,
        available: f.available,
        needs: f.needs.iter().map(|r| r.id()).collect(),
        missing: f.missing.iter().map(|r| r.id()).collect(),
        degraded: f.degraded,
    }
}

fn text(r: &Resolution) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "library:  {}", r.library.display());
    let _ = writeln!(s, "build-id: {}", r.build_id.as_deref().unwrap_or("(none)"));
    let _ = writeln!(
        s,
        "symbols:  {} in .dynsym, {} in .symtab{}",
        r.dynsym_symbols,
        r.symtab_symbols,
        if r.symtab_symbols == 0 {
            " (stripped: exported names only)"
        } else {
            ""
        }
    );
    if !r.has_code {
        let _ = writeln!(
            s,
            "code:     NONE: symbols only (a separate debug file?); names and registers below, no file offsets"
        );
    }
    roles_text(&mut s, r);
    for c in &r.companions {
        let _ = writeln!(
            s,
            "\ncompanion library: {} (build-id {})",
            c.library.display(),
            c.build_id.as_deref().unwrap_or("none")
        );
        roles_text(&mut s, c);
    }
    features_text(&mut s, r);
    s
}

/// Attach points listed per role in the text output; the rest are counted (--json has all).
const TEXT_POINTS: usize = 5;

fn roles_text(s: &mut String, r: &Resolution) {
    for role in &r.roles {
        let need = if role.required {
            "required"
        } else {
            "optional"
        };
        let state = if role.attach.is_empty() {
            "UNRESOLVED"
        } else {
            "ok"
        };
        let _ = writeln!(
            s,
            "\n{} [{need}, {}] {state}: {}",
            role.role.id(),
            role.kind,
            role.summary
        );
        for p in role
            .attach
            .iter()
            .take(if role.attach.iter().any(|p| p.op.is_some()) {
                TEXT_POINTS
            } else {
                usize::MAX
            })
        {
            let _ = writeln!(s, "  {}", p.demangled);
            let offset = if r.has_code {
                format!("{:#x}", p.file_offset)
            } else {
                "-".into()
            };
            let _ = writeln!(
                s,
                "    {}  address {:#x}  file offset {offset}",
                p.mangled, p.address
            );
            for a in &p.aliases {
                let _ = writeln!(s, "    alias {a}");
            }
            for f in &p.fields {
                let read = if f.read == FieldOp::Reg {
                    String::new()
                } else {
                    format!(" -> {} at +{}", f.read, f.offset)
                };
                let _ = writeln!(s, "    {:<8} = {} ({}){read}", f.name, f.register, f.param);
            }
        }
        let shown = if role.attach.iter().any(|p| p.op.is_some()) {
            TEXT_POINTS.min(role.attach.len())
        } else {
            role.attach.len()
        };
        if shown < role.attach.len() {
            let _ = writeln!(
                s,
                "  … {} operations in all (--json lists every one)",
                role.attach.len()
            );
        }
        if let Some(p) = &role.problem {
            let _ = writeln!(s, "  {p}");
        }
        for rej in &role.rejected {
            let _ = writeln!(s, "  not used: {}: {}", rej.demangled, rej.reason);
        }
    }
}

fn features_text(s: &mut String, r: &Resolution) {
    let _ = writeln!(s, "\nfeatures:");
    for f in r.features() {
        match f.degraded {
            None => {
                let _ = writeln!(s, "  ok        {}: {}", f.id, f.summary);
            }
            Some(instead) => {
                let missing: Vec<&str> = f.missing.iter().map(|m| m.id()).collect();
                let _ = writeln!(
                    s,
                    "  degraded  {}: {instead} ({} not resolved)",
                    f.id,
                    missing.join(", ")
                );
            }
        }
    }
    let missing = r.missing_required();
    let verdict = if !missing.is_empty() {
        format!(
            "MISSING required roles: {}; run/attach refuse to start without --allow-partial",
            missing
                .iter()
                .map(|m| m.id())
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if !r.has_code {
        "all required roles resolved, but this file has no code: trace the library itself".into()
    } else {
        "all required roles resolved: run and attach will start".into()
    };
    let _ = writeln!(s, "\n{verdict}");
}
