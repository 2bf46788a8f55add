//! Time to resolve every catalog role in a library, against the time to only read the file;
//! then with the package's other libraries found beside it (ttnn's `_ttnncpp.so`), which is
//! what a process loading the library waits for, stopped, under `watch` / `run`.
//!
//!     cargo run --release -p tt-tracer --example resolve_bench -- LIB [RUNS]
//!
//! Runs alternate (read, resolve, read, resolve, …) so both see the same page-cache state; the
//! medians of RUNS (default 11) are printed.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use tt_tracer::{catalog::Catalog, resolve};

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(lib) = args.next().map(PathBuf::from) else {
        eprintln!("usage: resolve_bench LIB [RUNS]");
        return ExitCode::from(2);
    };
    let runs: usize = match args.next().map(|n| n.parse()) {
        None => 11,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("RUNS must be a positive integer");
            return ExitCode::from(2);
        }
    };
    let catalog = Catalog::builtin();
    let size = match std::fs::metadata(&lib) {
        Ok(m) => m.len(),
        Err(e) => {
            eprintln!("{}: {e}", lib.display());
            return ExitCode::from(3);
        }
    };
    // One untimed round warms the page cache.
    if let Err(e) = resolve::resolve_file(&lib, &catalog) {
        eprintln!("{e}");
        return ExitCode::from(3);
    }
    let (mut read, mut full, mut package) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    let dir = lib.parent().map(PathBuf::from).unwrap_or_default();
    for _ in 0..runs {
        let t = Instant::now();
        let bytes = std::fs::read(&lib).expect("read");
        read.push(t.elapsed().as_secs_f64() * 1e3);
        drop(bytes);

        let t = Instant::now();
        drop(resolve::resolve_file(&lib, &catalog).expect("resolve"));
        full.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        let r = resolve::resolve_file(&lib, &catalog).expect("resolve");
        let r = resolve::with_companions(r, &dir, &catalog);
        package.push(t.elapsed().as_secs_f64() * 1e3);
        last = Some(r);
    }
    let r = last.expect("at least one run");
    let resolved = r.roles.iter().filter(|x| !x.attach.is_empty()).count();
    println!("library:   {} ({:.1} MB)", lib.display(), size as f64 / 1e6);
    println!(
        "symbols:   {} in .dynsym, {} in .symtab; {resolved}/{} roles resolved",
        r.dynsym_symbols,
        r.symtab_symbols,
        r.roles.len()
    );
    println!("runs:      {runs}");
    println!("read only: median {:.1} ms", median_ms(read));
    println!(
        "resolve:   median {:.1} ms (read + parse + match + place)",
        median_ms(full)
    );
    for c in &r.companions {
        let points: usize = c.roles.iter().map(|x| x.attach.len()).sum();
        println!(
            "beside it: {} ({} symbols): {points} attach points",
            c.library.display(),
            c.dynsym_symbols + c.symtab_symbols
        );
    }
    println!(
        "with them: median {:.1} ms (the library and every companion found beside it)",
        median_ms(package)
    );
    ExitCode::SUCCESS
}
