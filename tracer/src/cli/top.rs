//! `tt-tracer top`: every tt-metal process on the host, as `watch` traces them, shown live as
//! a table of one row per process × chip until q.

use std::{
    cell::RefCell,
    io::IsTerminal as _,
    os::fd::AsRawFd as _,
    path::PathBuf,
    rc::Rc,
    sync::atomic::{AtomicI32, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Args;
use ratatui::{
    backend::CrosstermBackend,
    crossterm::{
        cursor::Show,
        event::{self, Event},
        execute,
        terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen},
    },
    Terminal,
};
use tokio::{
    signal::unix::{signal as unix_signal, SignalKind},
    sync::{mpsc, Notify},
    time::Instant as TokioInstant,
};
use tt_tracer::sinks::top::{self, Action, TopSink, TopState};

use super::{exit, trace, TraceOptions};

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Show sizes as exact byte counts instead of K/M/G (KiB/MiB/GiB); the b key switches.
    #[arg(long)]
    bytes: bool,
    /// Show only the processes whose command name (as in /proc/PID/comm) contains TEXT.
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// How long the rows of a process that exited stay, showing how it ended and what it
    /// left on each chip.
    #[arg(long, value_name = "SECONDS", default_value_t = top::DEFAULT_KEEP_EXITED.as_secs())]
    keep_exited: u64,
    /// Append tt-tracer's own messages (libraries armed or refused, processes that ended,
    /// warnings, the final text report) to FILE while the table is shown; without it they are
    /// discarded, so nothing is printed over the table.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Write the final report as JSON to this file when top ends.
    #[arg(long, value_name = "FILE")]
    report_file: Option<PathBuf>,
    /// Stream every event as one JSON object per line to this file (docs/report.md).
    #[arg(long, value_name = "FILE")]
    events_file: Option<PathBuf>,
    /// Rotate --events-file when it would grow past BYTES (FILE.1 … FILE.3 kept).
    #[arg(long, value_name = "BYTES", requires = "events_file")]
    events_max_bytes: Option<u64>,
    /// Write a timeline to FILE (Chrome trace-event JSON, for https://ui.perfetto.dev;
    /// docs/trace.md).
    #[arg(long, value_name = "FILE")]
    trace_file: Option<PathBuf>,
    /// One perf-event uprobe per attach point instead of one multi-uprobe link per program.
    #[arg(
        long,
        hide = true,
        env = "TT_TRACER_NO_MULTI_ATTACH",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    no_multi_attach: bool,
    /// Ended processes kept for the final report (--report-file).
    #[arg(long, value_name = "N", default_value_t = tt_tracer::collector::DEFAULT_HISTORY)]
    history: usize,
    /// Probe catalog to use instead of the built-in one (TOML, see docs/catalog.md); its
    /// `library` names the file processes are watched for.
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Trace even if a required probe role did not resolve (results may be incomplete).
    #[arg(long)]
    allow_partial: bool,
    /// Also serve Prometheus metrics on http://ADDR/metrics (as `watch --metrics`).
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = tt_tracer::sinks::metrics::DEFAULT_ADDR
    )]
    metrics: Option<std::net::SocketAddr>,
    /// How long an exited process's metric series stay before they are removed.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60,
        requires = "metrics"
    )]
    metrics_grace: u64,
}

impl TopArgs {
    /// The options `watch` would run with.
    fn trace_options(&self) -> TraceOptions {
        TraceOptions {
            verbose: false,
            json: false,
            report_file: self.report_file.clone(),
            events_file: self.events_file.clone(),
            events_max_bytes: self.events_max_bytes,
            trace_file: self.trace_file.clone(),
            history: self.history,
            catalog: self.catalog.clone(),
            allow_partial: self.allow_partial,
            metrics: self.metrics,
            metrics_grace: self.metrics_grace,
            no_multi_attach: self.no_multi_attach,
            payload_ring_bytes: None,
        }
    }
}

/// The shortest time between two draws (4 Hz at most).
const FRAME: Duration = Duration::from_millis(250);

/// Why the reader stopped for a moment.
enum Wake {
    Stop,
    Input(Option<Event>),
    /// Something changed and a frame's time has passed, or exited rows are due to go.
    Draw,
}

pub fn top(a: TopArgs) -> anyhow::Result<u8> {
    let opts = a.trace_options();
    let catalog = trace::catalog(&opts)?;
    // Both before the terminal is touched: the message must stay on the screen.
    tt_tracer::kernel::check_privileges()?;
    if !std::io::stdout().is_terminal() {
        eprintln!(
            "tt-tracer: top draws on a terminal and stdout is not one (for logs and reports use `tt-tracer watch`)"
        );
        return Ok(exit::USAGE);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut out = trace::outputs(&opts).await?;
        let mut term = unix_signal(SignalKind::terminate())?;
        let mut hangup = unix_signal(SignalKind::hangup())?;
        let mut interrupt = unix_signal(SignalKind::interrupt())?;
        let name = catalog.library.clone();
        let mut session = trace::start(trace::Scope::Host, catalog, &opts)?;

        let notify = Rc::new(Notify::new());
        let mut state = TopState::new(&name);
        state.exact = a.bytes;
        state.filter = a.only.clone();
        state.keep_exited = Duration::from_secs(a.keep_exited);
        let state = Rc::new(RefCell::new(state));
        out.sinks.push(TopSink::new(state.clone(), notify.clone()));
        let metrics = out.metrics.as_ref().map(|m| m.sink());
        let health = TopSink::new(state.clone(), notify.clone());
        session.on_health(Box::new(move |counters, events, malformed| {
            health.health(counters, events);
            if let Some(m) = &metrics {
                m.update_health(counters, events, malformed);
            }
        }));

        let mut screen = Screen::enter(a.log_file.as_deref())?;
        // None once the terminal gives no more input: signals still stop the view.
        let mut keys = Some(read_keys());
        let mut last_draw: Option<Instant> = None;
        loop {
            let now = Instant::now();
            state.borrow_mut().expire(now);
            if state.borrow().dirty {
                screen
                    .terminal
                    .draw(|f| top::draw(f, &state.borrow()))
                    .context("drawing")?;
                state.borrow_mut().dirty = false;
                last_draw = Some(now);
            }
            let next_frame = last_draw.map_or(now, |t| t + FRAME);
            let expiry = state.borrow().next_expiry();
            let mut print = out.sinks.as_callback();
            let wake = session
                .run_until(
                    async {
                        tokio::select! {
                            k = async {
                                match keys.as_mut() {
                                    Some(k) => k.recv().await,
                                    None => std::future::pending().await,
                                }
                            } => Wake::Input(k),
                            // Changes wake the view at most once a frame; an idle view sleeps.
                            _ = async {
                                notify.notified().await;
                                tokio::time::sleep_until(TokioInstant::from_std(next_frame)).await;
                            } => Wake::Draw,
                            _ = async {
                                match expiry {
                                    Some(t) => tokio::time::sleep_until(TokioInstant::from_std(t)).await,
                                    None => std::future::pending().await,
                                }
                            } => Wake::Draw,
                            _ = interrupt.recv() => Wake::Stop,
                            _ = term.recv() => Wake::Stop,
                            _ = hangup.recv() => Wake::Stop,
                        }
                    },
                    &mut print,
                )
                .await;
            drop(print);
            match wake {
                Wake::Stop => break,
                Wake::Input(None) => keys = None,
                Wake::Input(Some(Event::Key(k))) => {
                    if state.borrow_mut().key(k) == Action::Quit {
                        break;
                    }
                }
                Wake::Input(Some(Event::Resize(..))) => state.borrow_mut().dirty = true,
                Wake::Input(Some(_)) | Wake::Draw => {}
            }
        }
        // The text report goes where the messages went (--log-file), not over the shell.
        screen.leave_screen();
        trace::finish(&mut session, &opts, &mut out.sinks)?;
        session.detach_in_background();
        drop(screen);
        Ok(0)
    })
}

/// Terminal events, read on a thread of their own (a blocking read costs nothing while idle).
fn read_keys() -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(e) = event::read() {
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    rx
}

/// stderr as it was before the view took it (-1: not taken), for the panic hook.
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);

/// Puts stderr back (once).
fn restore_stderr() {
    let saved = SAVED_STDERR.swap(-1, Ordering::SeqCst);
    if saved >= 0 {
        // SAFETY: dup2/close on descriptors this process owns.
        unsafe {
            libc::dup2(saved, libc::STDERR_FILENO);
            libc::close(saved);
        }
    }
}

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, Show);
}

/// The terminal while the view is shown: raw mode, the alternate screen, stderr sent to the
/// log file (or nowhere) so no message lands on the table. Restored on drop, on every return
/// path, and by the panic hook before the panic message is printed.
struct Screen {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
    on_screen: bool,
}

impl Screen {
    fn enter(log_file: Option<&std::path::Path>) -> anyhow::Result<Screen> {
        let sink = match log_file {
            Some(p) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening --log-file {}", p.display()))?,
            None => std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .context("opening /dev/null")?,
        };
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            restore_stderr();
            previous(info);
        }));
        // SAFETY: dup/dup2 on descriptors this process owns; `sink` stays open until dup2 has
        // made fd 2 a copy of it.
        unsafe {
            let saved = libc::dup(libc::STDERR_FILENO);
            if saved < 0 {
                anyhow::bail!("saving stderr: {}", std::io::Error::last_os_error());
            }
            SAVED_STDERR.store(saved, Ordering::SeqCst);
            libc::dup2(sink.as_raw_fd(), libc::STDERR_FILENO);
        }
        let terminal = match Terminal::new(CrosstermBackend::new(std::io::stdout())) {
            Ok(t) => t,
            Err(e) => {
                restore_stderr();
                return Err(anyhow::Error::new(e).context("opening the terminal"));
            }
        };
        let mut screen = Screen {
            terminal,
            on_screen: true,
        };
        enable_raw_mode().context("terminal raw mode")?;
        execute!(std::io::stdout(), EnterAlternateScreen).context("alternate screen")?;
        screen.terminal.clear().context("clearing the screen")?;
        Ok(screen)
    }

    /// Back to the shell's screen; stderr stays redirected until drop.
    fn leave_screen(&mut self) {
        if std::mem::take(&mut self.on_screen) {
            restore_terminal();
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.leave_screen();
        restore_stderr();
    }
}
