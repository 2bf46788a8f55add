//! What `run` and `attach` share: resolve, load, attach, read, report.

use std::{io::Write as _, path::Path};

use anyhow::Context as _;
use tt_tracer::{
    catalog::Catalog,
    collector::Record,
    loader::{LoadOptions, Probes},
    report::{self, Report},
    resolve::{self, Resolution},
    session::Session,
};

use super::TraceOptions;

pub fn catalog(opts: &TraceOptions) -> tt_tracer::Result<Catalog> {
    match &opts.catalog {
        Some(path) => Catalog::from_file(path),
        None => Ok(Catalog::builtin()),
    }
}

/// Resolves the roles in `lib`; refuses an incomplete resolution unless --allow-partial.
pub fn resolve_library(
    lib: &Path,
    catalog: &Catalog,
    opts: &TraceOptions,
) -> anyhow::Result<Resolution> {
    let resolution = resolve::resolve_file(lib, catalog)?;
    match resolution.ensure_complete() {
        Ok(()) => {}
        Err(e) if opts.allow_partial => eprintln!("tt-tracer: warning: {e}"),
        Err(e) => return Err(e.into()),
    }
    Ok(resolution)
}

/// Loads the probes and attaches them to `lib` for `pid`.
pub fn start(
    lib: &Path,
    resolution: &Resolution,
    catalog: &Catalog,
    pid: u32,
) -> anyhow::Result<Session> {
    let (mut probes, rings) = Probes::load(&LoadOptions::default())?;
    if !probes.exit_codes {
        eprintln!("tt-tracer: warning: task_struct layout unknown (no kernel BTF?): exit codes not reported");
    }
    // Tracked before the probes can fire, so the process has one instance from the start.
    probes.track_process(pid, tt_tracer::kernel::monotonic_ns())?;
    let n = match probes.attach_library(lib, resolution, catalog, Some(pid)) {
        Ok(n) => n,
        // The kernel refuses a pid-scoped probe on a process that has just exited: say that.
        Err(_) if tt_tracer::process::is_gone(pid) => {
            return Err(tt_tracer::Error::ProcessGone { pid }.into())
        }
        Err(e) => return Err(e.into()),
    };
    log::info!("{n} probes attached to {} for pid {pid}", lib.display());
    Ok(Session::new(probes, rings)?)
}

/// Where live records go: stderr lines (all with -v, else cleanups only) and --events-file.
pub fn printer(opts: &TraceOptions) -> anyhow::Result<impl FnMut(&Record)> {
    let verbose = opts.verbose;
    let mut events = match &opts.events_file {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    Ok(move |r: &Record| {
        if verbose {
            eprintln!("tt-tracer: {}", report::record_line(r));
        } else if let Record::ProcessExited(c) = r {
            eprintln!("tt-tracer: {}", report::cleanup_line(c));
        }
        if let Some(w) = events.as_mut() {
            let ok = serde_json::to_writer(&mut *w, r).is_ok() && w.write_all(b"\n").is_ok();
            // Lifecycle records are flushed at once: a reader may be waiting for them.
            if !ok || matches!(r, Record::ProcessExited(_) | Record::DeviceClosed { .. }) {
                let _ = w.flush();
            }
        }
    })
}

/// Prints the final report (text on stderr, or JSON on stdout) and writes --report-file.
pub fn finish(
    session: &Session,
    resolution: &Resolution,
    opts: &TraceOptions,
) -> anyhow::Result<()> {
    let lost = session.probes.counters()?;
    let report = Report::new(
        &session.collector,
        resolution.library.display().to_string(),
        resolution.build_id.clone(),
        lost,
        session.malformed,
    );
    if !report.complete {
        let pids: Vec<String> = report.processes.iter().map(|p| p.pid.to_string()).collect();
        eprintln!(
            "tt-tracer: warning: {}: the ledger of {} is incomplete",
            report.loss_summary(),
            if pids.is_empty() {
                "every process".to_string()
            } else {
                format!("pid {}", pids.join(", pid "))
            }
        );
    }
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(report.to_text().as_bytes());
    }
    if let Some(path) = &opts.report_file {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing report to {}", path.display()))?;
    }
    Ok(())
}
