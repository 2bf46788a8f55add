//! Command-line interface: argument definitions, exit codes, and dispatch to one file per
//! subcommand.

mod attach;
mod completions;
mod exec_held;
mod probes;
mod run;
mod top;
mod trace;
mod watch;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use tt_tracer::Error;

/// Exit codes, shared by every subcommand (also listed in `--help`).
pub mod exit {
    /// Something else went wrong (message on stderr).
    pub const FAILURE: u8 = 1;
    /// Bad command line.
    pub const USAGE: u8 = 2;
    /// The library is unusable: missing, not an x86-64 ELF, not tt-metal, or a required probe
    /// role did not resolve.
    pub const LIBRARY: u8 = 3;
    /// Not privileged enough to load eBPF programs.
    pub const PRIVILEGE: u8 = 4;
    /// The kernel refused to load or attach the probes.
    pub const KERNEL: u8 = 5;
    /// The target process does not exist, exited while being attached, cannot be traced
    /// (a kernel thread, tt-tracer itself), or maps no libtt_metal.so.
    pub const PROCESS: u8 = 6;
    /// `run`: the command could not be executed (found, but not executable).
    pub const COMMAND_NOT_EXECUTABLE: u8 = 126;
    /// `run`: the command was not found.
    pub const COMMAND_NOT_FOUND: u8 = 127;
}

const EXIT_CODES: &str = "\
Exit codes:
  0    success (`run`: the traced command's own exit code is returned; 128+N if killed by signal N)
  1    other failure
  2    bad command line
  3    library unusable (missing, not x86-64 ELF, not tt-metal, required probe role unresolved)
  4    needs root, or CAP_BPF + CAP_PERFMON
  5    the kernel refused to load or attach the probes
  6    process not found, gone while attaching, not traceable (kernel thread, tt-tracer
       itself or its parent, init), or it maps no libtt_metal.so
  126  `run`: the command was found but could not be executed (permissions, not a program)
  127  `run`: the command was not found";

const RUN_NOTES: &str = "\
Output:
  The command keeps stdout and stderr to itself; tt-tracer writes its text report to stderr
  after the command ends. The JSON report goes only to a file (--report-file FILE), so it never
  mixes with the command's output; --json is refused here for that reason.

Signals:
  Ctrl-C      reaches the command and tt-tracer alike (one process group): tt-tracer keeps
              tracing until the command ends, then reports. SIGINT sent to tt-tracer alone is
              ignored: the command decides whether to stop.
  SIGTERM,    sent to tt-tracer, is passed on to the command (the same signal); tt-tracer
  SIGHUP      reports once the command has ended and exits with its status.
  SIGKILL     ends tt-tracer at once, without a report; the command runs on, untraced (the
              kernel removes the probes when tt-tracer's last file descriptor closes).";

const ATTACH_NOTES: &str = "\
Output:
  The text report goes to stderr; --json prints the JSON report on stdout instead (the traced
  process's output is its own), --report-file FILE writes it to a file as well.

Signals:
  Ctrl-C, SIGINT, SIGTERM, SIGHUP: stop tracing, report what was seen, exit 0; the process runs
              on, untraced.
  SIGKILL     ends tt-tracer at once, without a report; the process is not affected.";

const WATCH_NOTES: &str = "\
Output:
  A line on stderr for each library armed or refused and for each process that ends (every
  event with -v); the final report when stopped: text on stderr, or JSON on stdout with
  --json; --report-file FILE, --events-file FILE and --trace-file FILE as for run and attach.

Signals:
  Ctrl-C, SIGINT, SIGTERM: stop, report what was seen, exit 0; the processes run on, untraced.
  SIGHUP      reopens the --events-file and the --trace-file (rotation: the old one becomes
              FILE.1).
  SIGKILL     ends tt-tracer at once, without a report. A process stopped at that very moment
              for its library to be armed stays stopped: `kill -CONT PID` continues it.";

const TOP_NOTES: &str = "\
Columns (one row per process and chip; sizes live/peak):
  PID COMMAND  the process (its command name)
  CHIP         the chip; - a process with no chip yet; ? buffers no chip can be named for
  DRAM L1 L1_SMALL TRACE
               device buffers of that type on the chip now / the most at once: the chip's
               own allocator's plus, at their size, every buffer of a mesh it is part of
  CB           circular buffers now / most at once
  KERNELS      kernel binaries loaded onto the chip: system (fabric, dispatch, init) /
               application
  NOW          the bring-up phase running on the process (device_init, fabric_context,
               dispatch_context, program_binaries, …), else -
  STATE        running, or how it ended (exited N, killed SIGNAL) and what the chip was left
               holding (left B buf SIZE: released by the exit); those rows stay
               --keep-exited seconds
  Sizes: K/M/G are KiB/MiB/GiB; --bytes (or b) shows exact bytes.

Keys:
  q, Esc, Ctrl-C  quit (also SIGINT, SIGTERM, SIGHUP)
  s               sort by the next column: PID, DRAM, L1, L1_SMALL, TRACE, CB, KERNELS,
                  COMMAND (figures largest first; the header marks the column)
  r               reverse the order
  b               exact bytes / K M G
  arrows, j k, PgUp PgDn, Home End   scroll

Output:
  Nothing is printed over the table: tt-tracer's own messages, and the final text report,
  go to --log-file FILE (else nowhere). --report-file and --events-file as for watch.
  Not root (or CAP_BPF + CAP_PERFMON): a message and exit 4 before the terminal is touched.";

/// What is on my Tenstorrent device, who put it there, and is it still there?
///
/// tt-tracer attaches eBPF uprobes to tt-metal's own functions in libtt_metal.so — no rebuild,
/// no environment variable, no server — and reports, per process and per device, the kernel
/// binaries loaded (system: fabric + dispatch; application), and what was released when a
/// device closed or the process exited (seen the moment the scheduler reports the exit).
#[derive(Parser, Debug)]
#[command(name = "tt-tracer", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a command under the tracer: it and every process it starts, each from its first
    /// instruction.
    ///
    /// Any libtt_metal.so they load is armed as they load it (the loader waits, stopped, until
    /// its probes are in); --lib PATH arms one up front. Under sudo the command runs as the
    /// invoking user (SUDO_UID/SUDO_GID, with that user's groups), not as root.
    ///
    /// Example: sudo tt-tracer run -- python model.py
    #[command(after_help = format!("{RUN_NOTES}\n\n{EXIT_CODES}"))]
    Run(run::RunArgs),
    /// Trace a running process until it exits or you press Ctrl-C.
    ///
    /// Example: sudo tt-tracer attach --pid 12345
    #[command(after_help = format!("{ATTACH_NOTES}\n\n{EXIT_CODES}"))]
    Attach(attach::AttachArgs),
    /// Trace every tt-metal process on the host, running now or started later, from any
    /// library path, until Ctrl-C / SIGTERM (then the final report).
    ///
    /// A process that loads a libtt_metal.so file not yet armed (its dynamic loader maps it
    /// for execution) is stopped (SIGSTOP) before it runs any of it, while the file's probes
    /// are attached (once per file), then continued: nothing of its device activity is missed. Processes running when watch starts are traced from
    /// that moment on.
    ///
    /// Example: sudo tt-tracer watch --events-file /var/log/tt-tracer/events.jsonl
    #[command(after_help = format!("{WATCH_NOTES}\n\n{EXIT_CODES}"))]
    Watch(watch::WatchArgs),
    /// A live table of every tt-metal process on the host (as `watch` traces them): one row
    /// per process and chip, with what is on the chip now, until q.
    ///
    /// Example: sudo tt-tracer top
    #[command(after_help = format!("{TOP_NOTES}\n\n{EXIT_CODES}"))]
    Top(top::TopArgs),
    /// Show where every probe role resolves in a library, or why it does not (no root needed).
    ///
    /// Example: tt-tracer probes --lib /path/to/libtt_metal.so --json
    #[command(after_help = EXIT_CODES)]
    Probes(probes::ProbesArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff).
    Manpage,
    #[command(hide = true, name = "__exec-held")]
    ExecHeld(exec_held::ExecHeldArgs),
}

/// Options shared by `run`, `attach` and `watch`.
#[derive(Args, Debug, Clone)]
pub struct TraceOptions {
    /// Print every event as it happens (to stderr).
    #[arg(short, long)]
    pub verbose: bool,
    /// `attach` and `watch`: print the final report as JSON on stdout instead of text (`run`
    /// leaves stdout to the command: use --report-file).
    #[arg(long)]
    pub json: bool,
    /// Write the final report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub report_file: Option<PathBuf>,
    /// Stream every event as one JSON object per line to this file (docs/report.md).
    #[arg(long, value_name = "FILE")]
    pub events_file: Option<PathBuf>,
    /// Rotate --events-file when it would grow past BYTES (FILE.1 … FILE.3 kept).
    #[arg(long, value_name = "BYTES", requires = "events_file")]
    pub events_max_bytes: Option<u64>,
    /// Write a timeline to FILE (Chrome trace-event JSON), written as events happen: open it
    /// at https://ui.perfetto.dev (Open trace file) or in chrome://tracing. One track per
    /// process and thread, bring-up phases as spans, every event as an instant with its
    /// fields, per-chip memory counters (docs/trace.md).
    #[arg(long, value_name = "FILE")]
    pub trace_file: Option<PathBuf>,
    /// Ended processes kept for the final report; older ones are dropped from it (counted as
    /// `history_dropped`) so memory stays bounded.
    #[arg(long, value_name = "N", default_value_t = tt_tracer::collector::DEFAULT_HISTORY)]
    pub history: usize,
    /// Probe catalog to use instead of the built-in one (TOML, see docs/catalog.md).
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Trace even if a required probe role did not resolve (results may be incomplete).
    #[arg(long)]
    pub allow_partial: bool,
    /// Serve Prometheus metrics on http://ADDR/metrics (docs/metrics.md). Without ADDR:
    /// 127.0.0.1:9464, loopback only; name another address to expose them.
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = tt_tracer::sinks::metrics::DEFAULT_ADDR
    )]
    pub metrics: Option<std::net::SocketAddr>,
    /// How long an exited process's metric series stay before they are removed.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60,
        requires = "metrics"
    )]
    pub metrics_grace: u64,
    /// One perf-event uprobe per attach point instead of one multi-uprobe link per program
    /// and library (what kernels before 6.6 get anyway): for comparing the two.
    #[arg(
        long,
        hide = true,
        env = "TT_TRACER_NO_MULTI_ATTACH",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub no_multi_attach: bool,
    /// Payload ring size in bytes, a power of two from 4096 to 1 GiB (default 8 MiB); the
    /// reader is woken once 1/32 of it waits. Hidden: a smaller ring only serves to find the
    /// event rate where loss starts (BENCHMARKS.md), which the report then counts.
    #[arg(long, hide = true, value_name = "BYTES", value_parser = payload_ring_bytes)]
    pub payload_ring_bytes: Option<u64>,
}

/// `--payload-ring-bytes`: refused at the command line (exit 2) when the kernel would refuse it.
fn payload_ring_bytes(text: &str) -> Result<u64, String> {
    let bytes: u64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count"))?;
    tt_tracer::loader::check_payload_ring_bytes(bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Attach(a) => attach::attach(a),
        Command::Watch(a) => watch::watch(a),
        Command::Top(a) => top::top(a),
        Command::Probes(a) => probes::probes(a),
        Command::Completions(a) => completions::completions(a),
        Command::Manpage => completions::manpage(),
        Command::ExecHeld(a) => exec_held::exec_held(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("tt-tracer: {}", one_line(&e));
            ExitCode::from(code_for(&e))
        }
    }
}

/// The error chain on one line, skipping causes their parent's message already includes
/// (the library's errors name their source in their own message).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out.replace('\n', " ")
}

/// Maps an error to its documented exit code.
fn code_for(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<Error>() {
        Some(
            Error::Io { .. }
            | Error::IsDirectory { .. }
            | Error::NotRegularFile { .. }
            | Error::TooLarge { .. }
            | Error::NotElf { .. }
            | Error::WrongArchitecture { .. }
            | Error::NoSymbols { .. }
            | Error::NotTtMetal { .. }
            | Error::SymbolsOnly { .. }
            | Error::MissingRoles { .. }
            | Error::Catalog { .. },
        ) => exit::LIBRARY,
        Some(Error::NotPrivileged) => exit::PRIVILEGE,
        Some(
            Error::Ebpf(_)
            | Error::Program { .. }
            | Error::Map { .. }
            | Error::Attach { .. }
            | Error::AttachLibrary { .. },
        ) => exit::KERNEL,
        Some(
            Error::NoSuchProcess { .. }
            | Error::ProcessGone { .. }
            | Error::NotTraceable { .. }
            | Error::LibraryNotMapped { .. }
            | Error::ProcessUnreadable { .. },
        ) => exit::PROCESS,
        // The shells' convention: 127 not found, 126 found but not executable.
        Some(Error::CannotRun { source, .. }) => {
            if source.kind() == std::io::ErrorKind::NotFound {
                exit::COMMAND_NOT_FOUND
            } else {
                exit::COMMAND_NOT_EXECUTABLE
            }
        }
        Some(Error::Other(_)) | None => exit::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace_options(args: &[&str]) -> TraceOptions {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            opts: TraceOptions,
        }
        Only::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .opts
    }

    #[test]
    fn per_point_uprobes_are_asked_for_by_flag() {
        assert!(!trace_options(&[]).no_multi_attach);
        assert!(trace_options(&["--no-multi-attach"]).no_multi_attach);
    }

    #[test]
    fn the_payload_ring_size_is_refused_at_the_command_line_unless_the_kernel_takes_it() {
        assert_eq!(trace_options(&[]).payload_ring_bytes, None);
        assert_eq!(
            trace_options(&["--payload-ring-bytes", "65536"]).payload_ring_bytes,
            Some(65536)
        );
        for bad in ["0", "5000", "2048", "2147483648", "64K"] {
            let e = Cli::try_parse_from(["t", "run", "--payload-ring-bytes", bad, "--", "true"])
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
        // Hidden: it serves the loss-onset benchmark, not everyday use.
        let help = Cli::try_parse_from(["t", "run", "--help"])
            .unwrap_err()
            .to_string();
        assert!(!help.contains("payload-ring"), "{help}");
    }

    #[test]
    fn metrics_defaults_to_loopback_and_takes_an_address() {
        assert_eq!(trace_options(&[]).metrics, None);
        let default = trace_options(&["--metrics"]);
        assert_eq!(default.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(default.metrics_grace, 60);
        let named = trace_options(&["--metrics", "0.0.0.0:9000", "--metrics-grace", "5"]);
        assert_eq!(named.metrics, Some("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(named.metrics_grace, 5);
        assert!(
            Cli::try_parse_from(["t", "attach", "--pid", "1", "--metrics", "nonsense"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["t", "attach", "--pid", "1", "--metrics-grace", "5"]).is_err()
        );
    }
}
