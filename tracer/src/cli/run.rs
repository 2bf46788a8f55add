//! `tt-tracer run [--lib PATH] -- CMD…`: trace a command from its first instruction.

use std::{
    ffi::OsString,
    os::fd::{AsRawFd, OwnedFd},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Context as _};
use clap::Args;
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use tokio::signal::unix::{signal as unix_signal, SignalKind};
use tt_tracer::{
    process::{self, ChildPipe, Credentials},
    Error,
};

use super::{exit, trace, TraceOptions};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The libtt_metal.so the command will load, armed before it starts. Without it, every
    /// libtt_metal.so the command or any process it starts opens is armed as it is opened
    /// (the opener waits, stopped, until its probes are in place).
    #[arg(long, value_name = "PATH")]
    lib: Option<PathBuf>,
    /// Run the command as root even under sudo (default: as SUDO_UID/SUDO_GID).
    #[arg(long)]
    as_root: bool,
    #[command(flatten)]
    opts: TraceOptions,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

pub fn run(a: RunArgs) -> anyhow::Result<u8> {
    if a.opts.json {
        eprintln!(
            "tt-tracer: run --json would mix the JSON report with the command's own output on \
             stdout; write it to a file with --report-file FILE (the text report goes to stderr)"
        );
        return Ok(exit::USAGE);
    }
    let catalog = trace::catalog(&a.opts)?;
    let resolution = match &a.lib {
        Some(lib) => Some(trace::resolve_library(lib, &catalog, &a.opts)?),
        None => None,
    };
    tt_tracer::kernel::check_privileges()?;
    let euid = nix::unistd::geteuid().as_raw();
    let creds = if a.as_root {
        None
    } else {
        process::sudo_invoker(|k| std::env::var(k).ok(), euid)
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Before the command exists, so a bad --events-file or a taken --metrics port stops
        // nothing half-way.
        let mut out = trace::outputs(&a.opts).await?;
        let mut term = unix_signal(SignalKind::terminate())?;
        let mut hangup = unix_signal(SignalKind::hangup())?;
        let hold = ChildPipe::new(false)?;
        let exec_status = ChildPipe::new(true)?;
        let mut child = spawn_held(&hold.theirs, &exec_status.theirs, creds, &a.command)?;
        // Our copies of the child's ends: the child alone holds them now, so we see EOF when
        // it execs (status) and it sees EOF if we go away (hold).
        drop((hold.theirs, exec_status.theirs));
        let pid = child.id().context("child has no pid")?;

        log::debug!("resolved; loading probes");
        let scope = trace::Scope::Tree {
            pid,
            lib: a.lib.as_deref().zip(resolution.as_ref()),
        };
        let mut session = match trace::start(scope, catalog, &a.opts) {
            Ok(s) => s,
            Err(e) => {
                drop(hold.ours); // EOF: the child exits without running the command
                let _ = child.wait().await;
                return Err(e);
            }
        };
        out.watch_health(&mut session);
        let mut print = out.sinks.as_callback();
        log::debug!("armed; releasing the command");
        if nix::unistd::write(&hold.ours, b"g") != Ok(1) {
            bail!("releasing the command: {}", std::io::Error::last_os_error());
        }
        drop(hold.ours);
        // EOF once the command is exec'd (the status pipe is close-on-exec there); an errno if
        // it could not be: then there is no command to trace and no report to give.
        let mut errno = [0u8; 4];
        let n = read_full(&exec_status.ours, &mut errno);
        if let Some(source) = process::exec_error_from_status(&errno[..n]) {
            let _ = child.wait().await;
            session.detach_in_background();
            return Err(Error::CannotRun {
                command: a.command[0].to_string_lossy().into_owned(),
                source,
            }
            .into());
        }

        let status = session
            .run_until(
                async {
                    loop {
                        tokio::select! {
                            st = child.wait() => break st,
                            // The terminal's Ctrl-C reaches the command too; it decides.
                            _ = tokio::signal::ctrl_c() => {}
                            // Asked to stop: pass it on, keep tracing until the command is gone.
                            _ = term.recv() => {
                                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                            }
                            _ = hangup.recv() => {
                                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGHUP);
                            }
                        }
                    }
                },
                &mut print,
            )
            .await
            .context("waiting for the command")?;
        if !session
            .wait_for_exit(pid, Duration::from_secs(2), &mut print)
            .await
        {
            eprintln!("tt-tracer: warning: no process-exit event for pid {pid} within 2 s");
        }
        log::debug!("command ended; reporting");
        drop(print);
        trace::finish(&mut session, &a.opts, &mut out.sinks)?;
        session.detach_in_background();
        use std::os::unix::process::ExitStatusExt as _;
        Ok(match (status.code(), status.signal()) {
            (Some(c), _) => c as u8,
            (None, Some(s)) => 128 + s as u8,
            _ => exit::FAILURE,
        })
    })
}

/// Reads until `buf` is full or EOF; returns how much was read.
fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match nix::unistd::read(fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(nix::Error::EINTR) => continue,
            Err(_) => break,
        }
    }
    n
}

fn spawn_held(
    hold: &OwnedFd,
    exec_status: &OwnedFd,
    creds: Option<Credentials>,
    command: &[OsString],
) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("locating tt-tracer's own binary")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("__exec-held")
        .arg("--hold-fd")
        .arg(hold.as_raw_fd().to_string())
        .arg("--status-fd")
        .arg(exec_status.as_raw_fd().to_string());
    if let Some(c) = creds {
        cmd.arg("--uid")
            .arg(c.uid.to_string())
            .arg("--gid")
            .arg(c.gid.to_string());
    }
    cmd.arg("--").args(command);
    cmd.spawn().context("starting the command")
}
