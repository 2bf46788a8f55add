//! What `run` and `attach` share: resolve, load, attach, read, report.

use std::path::Path;

use anyhow::Context as _;
use tt_tracer::{
    catalog::Catalog,
    collector::Collector,
    libraries::{self, FoundBy, Libraries},
    loader::{LoadOptions, Probes},
    report::{LibraryInfo, Report},
    resolve::{self, Resolution},
    session::Session,
    sinks::{
        metrics::MetricsExporter, JsonLines, JsonReport, Sink as _, Sinks, TextLog, TraceFile,
    },
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
    let mut resolution = resolve::resolve_file(lib, catalog)?;
    if let Some(dir) = lib.parent() {
        resolution = resolve::with_companions(resolution, dir, catalog);
    }
    match resolution.ensure_complete() {
        Ok(()) => {}
        Err(e) if opts.allow_partial => eprintln!("tt-tracer: warning: {e}"),
        Err(e) => return Err(e.into()),
    }
    Ok(resolution)
}

/// Which processes a session traces, and how it finds their libraries.
pub enum Scope<'a> {
    /// `attach`: one running process and the library given or found in its maps; probes for
    /// that process only.
    Process {
        pid: u32,
        lib: &'a Path,
        resolution: &'a Resolution,
    },
    /// `run`: the command (held before exec) and every process it starts; `lib` armed up
    /// front when given, any library they open armed as they open it.
    Tree {
        pid: u32,
        lib: Option<(&'a Path, &'a Resolution)>,
    },
    /// `watch`: every process on the host: libraries mapped now are armed at once, any
    /// opened later as they are opened.
    Host,
}

/// Loads the probes and arms them for `scope`.
pub fn start(scope: Scope<'_>, catalog: Catalog, opts: &TraceOptions) -> anyhow::Result<Session> {
    let mut load = LoadOptions::default();
    load.trace_all = matches!(scope, Scope::Host);
    load.multi_attach = !opts.no_multi_attach;
    if let Some(bytes) = opts.payload_ring_bytes {
        load.set_payload_ring_bytes(bytes)?;
    }
    load.discover = match scope {
        Scope::Process { .. } => None,
        Scope::Tree { .. } | Scope::Host => Some(catalog.library.clone()),
    };
    let (mut probes, rings) = Probes::load(&load)?;
    if !probes.exit_codes {
        eprintln!("tt-tracer: warning: task_struct layout unknown (no kernel BTF?): exit codes not reported");
    }
    let scope_pid = match scope {
        Scope::Process { pid, .. } => Some(pid),
        _ => None,
    };
    let mut libraries = Libraries::new(catalog, opts.allow_partial, scope_pid);
    match scope {
        Scope::Process {
            pid,
            lib,
            resolution,
        } => {
            // Tracked before the probes can fire, so the process has one instance from the start.
            probes.track_process(pid, tt_tracer::kernel::monotonic_ns())?;
            match libraries.arm_resolved(&mut probes, lib, resolution) {
                // A multi-uprobe link, unlike a perf-event uprobe, is granted on a process that
                // has exited but not been reaped; one that ended before it was tracked has no
                // exit event coming, so it is gone as far as tracing goes.
                Ok(_) if tt_tracer::process::is_gone(pid) => {
                    return Err(tt_tracer::Error::ProcessGone { pid }.into())
                }
                Ok(_) => {}
                // The kernel refuses a pid-scoped probe on a process that has just exited.
                Err(_) if tt_tracer::process::is_gone(pid) => {
                    return Err(tt_tracer::Error::ProcessGone { pid }.into())
                }
                Err(e) => return Err(e.into()),
            }
        }
        Scope::Tree { pid, lib } => {
            probes.track_process(pid, tt_tracer::kernel::monotonic_ns())?;
            if let Some((lib, resolution)) = lib {
                libraries.arm_resolved(&mut probes, lib, resolution)?;
            }
        }
        Scope::Host => {
            let name = libraries.catalog().library.clone();
            for (pid, path, open) in libraries::mapped_by_running_processes(&name) {
                match libraries.arm(&mut probes, &open, &path, None, FoundBy::Mapped { pid }) {
                    Ok(_) => {}
                    // Gone while we looked: nothing to arm.
                    Err(tt_tracer::Error::Io { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let mut session = Session::new(probes, rings, libraries)?;
    session.collector = Collector::with_history(opts.history);
    if let Scope::Process { pid, .. } | Scope::Tree { pid, .. } = scope {
        session.always_report.push(pid);
    }
    Ok(session)
}

/// Where records and the report go, and the metrics exporter serving them (--metrics).
pub struct Outputs {
    pub sinks: Sinks,
    /// Kept for as long as the session: dropping it stops the server.
    pub metrics: Option<MetricsExporter>,
}

/// The sinks of `opts`, and the metrics exporter listening already (a taken port fails here,
/// before anything is traced).
pub async fn outputs(opts: &TraceOptions) -> anyhow::Result<Outputs> {
    let mut sinks = sinks(opts)?;
    let metrics = match opts.metrics {
        Some(addr) => {
            let grace = std::time::Duration::from_secs(opts.metrics_grace);
            let exporter = MetricsExporter::bind_with_grace(addr, grace).await?;
            eprintln!(
                "tt-tracer: metrics on http://{}/metrics",
                exporter.local_addr()
            );
            sinks.push(exporter.sink());
            Some(exporter)
        }
        None => None,
    };
    Ok(Outputs { sinks, metrics })
}

impl Outputs {
    /// Feeds the exporter's health series (loss counters, events) from `session`.
    pub fn watch_health(&self, session: &mut Session) {
        if let Some(m) = &self.metrics {
            let sink = m.sink();
            session.on_health(Box::new(move |counters, events, malformed| {
                sink.update_health(counters, events, malformed)
            }));
        }
    }
}

/// Where records and the report go: stderr lines (all with -v, else libraries and cleanups)
/// and the text report, --events-file, --trace-file, the JSON report on stdout (attach --json,
/// watch --json) and --report-file.
fn sinks(opts: &TraceOptions) -> anyhow::Result<Sinks> {
    let mut sinks = Sinks::new();
    sinks.push(TextLog {
        verbose: opts.verbose,
        text_report: !opts.json,
    });
    if let Some(path) = &opts.events_file {
        // As for --trace-file: an output file's error is no "library unusable" (exit 3).
        let events = JsonLines::create(path)
            .map_err(|e| anyhow::anyhow!("--events-file: {e}"))?
            .max_bytes(opts.events_max_bytes);
        sinks.push(events);
    }
    if let Some(path) = &opts.trace_file {
        let trace = TraceFile::create(path).map_err(|e| anyhow::anyhow!("--trace-file: {e}"))?;
        sinks.push(trace);
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
pub fn finish(session: &mut Session, opts: &TraceOptions, sinks: &mut Sinks) -> anyhow::Result<()> {
    session.tell_health(true);
    let lost = session.probes.counters()?;
    let catalog = match &opts.catalog {
        Some(path) => path.display().to_string(),
        None => "built-in".to_string(),
    };
    let libraries: Vec<LibraryInfo> = session
        .libraries
        .traced()
        .iter()
        .map(|l| LibraryInfo {
            id: l.id,
            path: l.path.display().to_string(),
            build_id: l.build_id.clone(),
            catalog: catalog.clone(),
        })
        .collect();
    let report = Report::new(&session.collector, &libraries, lost, session.malformed);
    sinks.finish(&report).context("writing the report")?;
    Ok(())
}
