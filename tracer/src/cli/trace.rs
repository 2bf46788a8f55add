//! What `run` and `attach` share: resolve, load, attach, read, report.

use std::{io::Write as _, path::Path};

use anyhow::Context as _;
use tt_tracer::{
    catalog::Catalog,
    collector::Record,
    libraries::{self, Armed, Libraries},
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
                match libraries.arm(&mut probes, &open, &path, None) {
                    Ok(Armed::New(id)) => {
                        let l = libraries.get(id).expect("just armed");
                        eprintln!(
                            "tt-tracer: tracing {} (build-id {}): {} probes, mapped by pid {pid}",
                            l.path.display(),
                            l.build_id.as_deref().unwrap_or("none"),
                            l.probes
                        );
                    }
                    Ok(Armed::Known(_)) => {}
                    Ok(Armed::Refused) => {
                        if let Some(r) = libraries.refused().last() {
                            eprintln!(
                                "tt-tracer: warning: not tracing {} (mapped by pid {pid}): {}",
                                r.path.display(),
                                r.reason
                            );
                        }
                    }
                    // Gone while we looked: nothing to arm.
                    Err(tt_tracer::Error::Io { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let mut session = Session::new(probes, rings, libraries)?;
    if let Scope::Process { pid, .. } | Scope::Tree { pid, .. } = scope {
        session.always_report.push(pid);
    }
    Ok(session)
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
pub fn finish(session: &Session, opts: &TraceOptions) -> anyhow::Result<()> {
    let lost = session.probes.counters()?;
    let first = session.libraries.traced().first();
    let report = Report::new(
        &session.collector,
        first
            .map(|l| l.path.display().to_string())
            .unwrap_or_default(),
        first.and_then(|l| l.build_id.clone()),
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
