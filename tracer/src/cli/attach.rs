//! `tt-tracer attach --pid PID [--lib PATH]`: trace a running process.

use std::path::{Path, PathBuf};

use clap::Args;
use tokio::signal::unix::{signal as unix_signal, SignalKind};
use tt_tracer::{process, Error};

use super::{trace, TraceOptions};

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// The process to trace (only this process is traced, even if others use the same library).
    #[arg(long)]
    pid: u32,
    /// Its libtt_metal.so (default: found in /proc/PID/maps).
    #[arg(long, value_name = "PATH")]
    lib: Option<PathBuf>,
    #[command(flatten)]
    opts: TraceOptions,
}

pub fn attach(a: AttachArgs) -> anyhow::Result<u8> {
    let mapped = process::mapped_tt_metal(a.pid);
    process::check_traceable(a.pid, mapped.as_ref().is_ok_and(|m| !m.is_empty()))?;
    let mapped = match (mapped, &a.lib) {
        // With --lib, the maps only serve a warning: not being able to read them stops nothing.
        (Err(Error::ProcessUnreadable { .. }), Some(_)) => Vec::new(),
        (m, _) => m?,
    };
    let lib = match a.lib.clone() {
        Some(lib) => {
            if !maps_file(&mapped, &lib) {
                eprintln!(
                    "tt-tracer: warning: pid {} does not map {} (yet): only what it does after loading that file is seen",
                    a.pid,
                    lib.display()
                );
            }
            lib
        }
        None => {
            let Some(first) = mapped.first() else {
                return Err(Error::LibraryNotMapped { pid: a.pid }.into());
            };
            if mapped.len() > 1 {
                eprintln!(
                    "tt-tracer: warning: pid {} maps {} libtt_metal.so files; tracing {} (use --lib to choose)",
                    a.pid,
                    mapped.len(),
                    first.display()
                );
            }
            // Seen from the process's own root, in case it lives in another mount namespace.
            let in_root = PathBuf::from(format!("/proc/{}/root", a.pid))
                .join(first.strip_prefix("/").unwrap_or(first));
            if in_root.exists() {
                in_root
            } else {
                first.clone()
            }
        }
    };
    let catalog = trace::catalog(&a.opts)?;
    let resolution = trace::resolve_library(&lib, &catalog, &a.opts)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let scope = trace::Scope::Process {
            pid: a.pid,
            lib: &lib,
            resolution: &resolution,
        };
        let mut out = trace::outputs(&a.opts).await?;
        let mut session = trace::start(scope, catalog, &a.opts)?;
        out.watch_health(&mut session);
        eprintln!(
            "tt-tracer: tracing pid {} ({}); Ctrl-C to stop",
            a.pid,
            lib.display()
        );
        let mut print = out.sinks.as_callback();
        let pid = a.pid;
        let mut term = unix_signal(SignalKind::terminate())?;
        let mut hangup = unix_signal(SignalKind::hangup())?;
        loop {
            let stopped = session
                .run_until(
                    async {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => true,
                            _ = term.recv() => true,
                            _ = hangup.recv() => true,
                            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => false,
                        }
                    },
                    &mut print,
                )
                .await;
            if stopped || session.collector.has_ended(pid) {
                break;
            }
        }
        drop(print);
        trace::finish(&mut session, &a.opts, &mut out.sinks)?;
        session.detach_in_background();
        Ok(0)
    })
}

/// Whether `lib` is one of the `mapped` files (same inode, whatever the path spelling).
fn maps_file(mapped: &[PathBuf], lib: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let want = id(lib);
    want.is_some() && mapped.iter().any(|m| id(m) == want)
}
