//! What `run` and `attach` share: resolve, load, attach, read, report.

use std::path::Path;

use anyhow::Context as _;
use tt_tracer::{
    catalog::Catalog,
    collector::Collector,
    loader::{LoadOptions, Probes},
    report::{LibraryInfo, Report},
    resolve::{self, Resolution},
    session::Session,
    sinks::{JsonLines, JsonReport, Sink as _, Sinks, TextLog},
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
    opts: &TraceOptions,
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
    let mut session = Session::new(probes, rings)?;
    session.collector = Collector::with_history(opts.history);
    Ok(session)
}

/// Where records and the report go: stderr lines (all with -v, else cleanups only) and the
/// text report, --events-file, the JSON report on stdout (attach --json) and --report-file.
pub fn sinks(opts: &TraceOptions) -> anyhow::Result<Sinks> {
    let mut sinks = Sinks::new();
    sinks.push(TextLog {
        verbose: opts.verbose,
        text_report: !opts.json,
    });
    if let Some(path) = &opts.events_file {
        let events = JsonLines::create(path)
            .with_context(|| format!("creating {}", path.display()))?
            .max_bytes(opts.events_max_bytes);
        sinks.push(events);
    }
    if opts.json || opts.report_file.is_some() {
        sinks.push(JsonReport {
            stdout: opts.json,
            file: opts.report_file.clone(),
        });
    }
    Ok(sinks)
}

/// Builds the final report and hands it to every sink.
pub fn finish(
    session: &Session,
    resolution: &Resolution,
    opts: &TraceOptions,
    sinks: &mut Sinks,
) -> anyhow::Result<()> {
    let lost = session.probes.counters()?;
    let library = LibraryInfo {
        id: 1,
        path: resolution.library.display().to_string(),
        build_id: resolution.build_id.clone(),
        catalog: match &opts.catalog {
            Some(path) => path.display().to_string(),
            None => "built-in".to_string(),
        },
    };
    let report = Report::new(&session.collector, &[library], lost, session.malformed);
    sinks.finish(&report).context("writing the report")?;
    Ok(())
}
