//! `tt-tracer run [--lib PATH] -- CMD…`: trace a command from its first instruction.

use std::{ffi::OsString, os::fd::AsRawFd, path::PathBuf, time::Duration};

use anyhow::{bail, Context as _};
use clap::Args;
use tt_tracer::process::{self, Credentials};

use super::{exit, trace, TraceOptions};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The libtt_metal.so the command will load (required: the command has not started yet, so
    /// there is no process to find it in). For ttnn: <venv>/lib/python3.X/site-packages/ttnn/build/lib/libtt_metal.so
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
    let Some(lib) = a.lib.clone() else {
        eprintln!(
            "tt-tracer: run needs --lib PATH: the libtt_metal.so the command will load \
             (for ttnn: <venv>/lib/python3.X/site-packages/ttnn/build/lib/libtt_metal.so)"
        );
        return Ok(exit::USAGE);
    };
    let catalog = trace::catalog(&a.opts)?;
    let resolution = trace::resolve_library(&lib, &catalog, &a.opts)?;
    tt_tracer::kernel::check_privileges()?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let creds = if a.as_root {
        None
    } else {
        process::sudo_invoker(|k| std::env::var(k).ok(), euid)
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Before the command exists, so a bad --events-file stops nothing half-way.
        let mut print = trace::printer(&a.opts)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let (hold_read, hold_write) = pipe()?;
        let mut child = spawn_held(hold_read.as_raw_fd(), creds, &a.command)?;
        drop(hold_read);
        let pid = child.id().context("child has no pid")?;

        log::debug!("resolved; loading probes");
        let mut session = match trace::start(&lib, &resolution, &catalog, pid) {
            Ok(s) => s,
            Err(e) => {
                drop(hold_write); // EOF: the child exits without running the command
                let _ = child.wait().await;
                return Err(e);
            }
        };
        log::debug!("armed; releasing the command");
        // Armed: release the command.
        // SAFETY: writing one byte from a valid buffer to our pipe.
        if unsafe { libc::write(hold_write.as_raw_fd(), b"g".as_ptr().cast(), 1) } != 1 {
            bail!("releasing the command: {}", std::io::Error::last_os_error());
        }
        drop(hold_write);

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
                                // SAFETY: signalling our own child.
                                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
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
        trace::finish(&session, &resolution, &a.opts)?;
        session.detach_in_background();
        use std::os::unix::process::ExitStatusExt as _;
        Ok(match (status.code(), status.signal()) {
            (Some(c), _) => c as u8,
            (None, Some(s)) => 128 + s as u8,
            _ => exit::FAILURE,
        })
    })
}

fn pipe() -> anyhow::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd as _;
    let mut fds = [0; 2];
    // SAFETY: valid out-array. No O_CLOEXEC: the read end must survive into the child.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // The write end must not leak into the child, or it would never see EOF.
    // SAFETY: fcntl on our fd.
    unsafe { libc::fcntl(fds[1], libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: fresh fds we own.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

fn spawn_held(
    hold_fd: i32,
    creds: Option<Credentials>,
    command: &[OsString],
) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("locating tt-tracer's own binary")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("__exec-held")
        .arg("--hold-fd")
        .arg(hold_fd.to_string());
    if let Some(c) = creds {
        cmd.arg("--uid")
            .arg(c.uid.to_string())
            .arg("--gid")
            .arg(c.gid.to_string());
    }
    cmd.arg("--").args(command);
    cmd.spawn().context("starting the command")
}
