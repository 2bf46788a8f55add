//! `tt-tracer probes --lib PATH [--json]`: where each role resolves, or why not.

use std::path::PathBuf;

use clap::Args;
use tt_tracer::{
    catalog::Catalog,
    resolve::{self, Resolution},
};

use super::exit;

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
    let catalog = match &a.catalog {
        Some(p) => Catalog::from_file(p)?,
        None => Catalog::builtin(),
    };
    let t0 = std::time::Instant::now();
    let r = resolve::resolve_file(&a.lib, &catalog)?;
    let elapsed = t0.elapsed();
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["schema"] = 1.into();
        v["complete"] = r.missing_required().is_empty().into();
        v["resolve_ms"] = (elapsed.as_secs_f64() * 1e3).into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", text(&r));
        println!("resolved in {:.1} ms", elapsed.as_secs_f64() * 1e3);
    }
    Ok(if r.missing_required().is_empty() {
        0
    } else {
        exit::LIBRARY
    })
}

fn text(r: &Resolution) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "library:  {}", r.library.display());
    let _ = writeln!(s, "build-id: {}", r.build_id.as_deref().unwrap_or("(none)"));
    let _ = writeln!(s, "symbols:  {}", r.symbols_scanned);
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
            "\n{} [{need}, {}] {state} — {}",
            role.role.id(),
            role.kind,
            role.summary
        );
        for p in &role.attach {
            let _ = writeln!(s, "  {}", p.demangled);
            let _ = writeln!(s, "    {}  offset {:#x}", p.mangled, p.file_offset);
            for a in &p.aliases {
                let _ = writeln!(s, "    alias {a}");
            }
            for f in &p.fields {
                let read = if f.read == "reg" {
                    String::new()
                } else {
                    format!(" → {} @+{}", f.read, f.offset)
                };
                let _ = writeln!(s, "    {:<8} = {} ({}){read}", f.name, f.register, f.param);
            }
        }
        if let Some(p) = &role.problem {
            let _ = writeln!(s, "  {p}");
        }
        for rej in &role.rejected {
            let _ = writeln!(s, "  not used: {} — {}", rej.demangled, rej.reason);
        }
    }
    let missing = r.missing_required();
    let _ = writeln!(
        s,
        "\n{}",
        if missing.is_empty() {
            "all required roles resolved: kernel classification (fabric / dispatch / application) and device lifecycle available".to_string()
        } else {
            format!(
                "MISSING required roles: {} — run/attach refuse to start without --allow-partial",
                missing
                    .iter()
                    .map(|m| m.id())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    s
}
