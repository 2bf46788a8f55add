//! Time to arm and disarm uprobes on a library: one multi-uprobe link per program against one
//! perf-event uprobe per attach point, measured alternately in the same run. Needs root.
//!
//!     cargo run --release -p tt-tracer --example attach_bench -- LIB [POINTS] [RUNS]
//!
//! POINTS (default 500) attach points are made of POINTS/2 functions of LIB (its first
//! function symbols by address), each with a uprobe and a uretprobe, as the catalog's
//! allocation roles have; every point gets its own cookie and recipe, as in a session. Arm:
//! attaching them all; disarm: detaching them all (in parallel threads, as tt-tracer does).
//! Loading the programs is not counted. Medians of RUNS (default 5) are printed.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};
use tracer_common::RecipeKind;
use tt_tracer::{
    catalog::Catalog,
    loader::{AttachMode, LoadOptions, Probes},
    resolve::{self, Resolution},
};

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// File offsets of the first `n` distinct functions of `lib` (by address).
fn function_offsets(lib: &Path, n: usize) -> Result<Vec<u64>, String> {
    let data = std::fs::read(lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", lib.display()))?;
    let mut offsets = BTreeSet::new();
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if sym.kind() != SymbolKind::Text || sym.size() == 0 {
            continue;
        }
        let Some(section) = sym
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
        else {
            continue;
        };
        let Some((file_start, _)) = section.file_range() else {
            continue;
        };
        offsets.insert(sym.address() - section.address() + file_start);
    }
    if offsets.len() < n {
        return Err(format!(
            "{}: {} functions, {n} wanted",
            lib.display(),
            offsets.len()
        ));
    }
    Ok(offsets.into_iter().take(n).collect())
}

/// `resolution` with every role emptied but the first one whose calls are probed at entry and
/// return, which gets one attach point per offset (its own recipe, fields and all).
fn synthetic(resolution: &Resolution, offsets: &[u64]) -> Result<Resolution, String> {
    let mut r = resolution.clone();
    let role = r
        .roles
        .iter()
        .position(|rr| rr.kind == RecipeKind::CallWithReturn && !rr.attach.is_empty())
        .ok_or("no resolved role probed at entry and return")?;
    let model = r.roles[role].attach[0].clone();
    for (i, rr) in r.roles.iter_mut().enumerate() {
        if i != role {
            rr.attach.clear();
            continue;
        }
        rr.attach = offsets
            .iter()
            .map(|&o| {
                let mut p = model.clone();
                p.file_offset = o;
                p
            })
            .collect();
    }
    Ok(r)
}

/// One arm + disarm: (arm ms, disarm ms, links).
fn once(
    mode: AttachMode,
    lib: &Path,
    r: &Resolution,
    catalog: &Catalog,
) -> Result<(f64, f64, usize), String> {
    let mut opts = LoadOptions::default();
    opts.multi_attach = mode == AttachMode::Multi;
    let (mut probes, _rings) = Probes::load(&opts).map_err(|e| e.to_string())?;
    if probes.attach_mode() != mode {
        return Err(format!("{mode:?} uprobes not available in this kernel"));
    }
    let t = Instant::now();
    let armed = probes
        .attach_library(lib, r, catalog, None, 1)
        .map_err(|e| e.to_string())?;
    let arm = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    probes.detach_uprobes();
    let disarm = t.elapsed().as_secs_f64() * 1e3;
    Ok((arm, disarm, armed.links))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(lib) = args.next().map(PathBuf::from) else {
        eprintln!("usage: attach_bench LIB [POINTS] [RUNS]");
        return ExitCode::from(2);
    };
    let mut number = |default: usize, what: &str| match args.next().map(|n| n.parse::<usize>()) {
        None => Some(default),
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => {
            eprintln!("{what} must be a positive integer");
            None
        }
    };
    let (Some(points), Some(runs)) = (number(500, "POINTS"), number(5, "RUNS")) else {
        return ExitCode::from(2);
    };
    let catalog = Catalog::builtin();
    let prepared = resolve::resolve_file(&lib, &catalog)
        .map_err(|e| e.to_string())
        .and_then(|r| {
            let offsets = function_offsets(&lib, points.div_ceil(2))?;
            synthetic(&r, &offsets)
        });
    let r = match prepared {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(3);
        }
    };
    let modes = [AttachMode::Multi, AttachMode::PerPoint];
    let mut figures: Vec<(Vec<f64>, Vec<f64>, usize)> = vec![(vec![], vec![], 0); 2];
    for run in 0..runs {
        // Alternating which goes first, so neither always follows the other's teardown.
        for k in [run % 2, 1 - run % 2] {
            match once(modes[k], &lib, &r, &catalog) {
                Ok((arm, disarm, links)) => {
                    figures[k].0.push(arm);
                    figures[k].1.push(disarm);
                    figures[k].2 = links;
                }
                Err(e) => {
                    eprintln!("{:?}: {e}", modes[k]);
                    return ExitCode::from(1);
                }
            }
        }
    }
    let total = |k: usize| median_ms(figures[k].0.clone()) + median_ms(figures[k].1.clone());
    for (k, label) in ["multi-uprobe links", "per-point uprobes"]
        .iter()
        .enumerate()
    {
        println!(
            "attach {label:<18}: {points} points in {} links; arm median {:.1} ms, disarm median \
             {:.1} ms, total {:.1} ms ({runs} runs)",
            figures[k].2,
            median_ms(figures[k].0.clone()),
            median_ms(figures[k].1.clone()),
            total(k)
        );
    }
    println!(
        "attach per-point / multi: arm ×{:.1}, disarm ×{:.1}, total ×{:.1}",
        median_ms(figures[1].0.clone()) / median_ms(figures[0].0.clone()),
        median_ms(figures[1].1.clone()) / median_ms(figures[0].1.clone()),
        total(1) / total(0)
    );
    ExitCode::SUCCESS
}
