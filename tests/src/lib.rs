//! Harness for tt-tracer's root-only integration tests: builds the stand-in libtt_metal.so and
//! its driver, runs `tt-tracer` as a real user would, and hands back what it printed.
//!
//! These tests load real eBPF programs into the running kernel. They need root and fail (never
//! skip) with a message naming what is missing. `cargo xtask test` runs them.

pub mod timeline;

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
pub use test_support::{median, monotonic_ns, target_dir, workspace_root, Standin};

/// The tt-tracer binary under test: $TT_TRACER_BIN, else target/debug/tt-tracer.
pub fn tracer_bin() -> PathBuf {
    let p = std::env::var_os("TT_TRACER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/tt-tracer"));
    assert!(
        p.exists(),
        "tt-tracer binary not found at {} (build it: `cargo build -p tt-tracer`, or run `cargo xtask test`)",
        p.display()
    );
    p
}

/// Fails the test unless running as root: loading eBPF programs needs it.
pub fn require_root() {
    test_support::require_root("this test loads eBPF programs and");
}

/// Builds tests/standin once per test process into target/standin.
pub fn standin() -> &'static Standin {
    static S: OnceLock<Standin> = OnceLock::new();
    S.get_or_init(|| test_support::build_standin(&target_dir().join("standin")))
}

/// The stand-in and the tt-tracer binary, copied once per test process to a directory every
/// user can reach: for tests that run them as an unprivileged user, wherever the checkout lives.
pub fn standin_for_other_users() -> &'static (Standin, PathBuf) {
    static S: OnceLock<(Standin, PathBuf)> = OnceLock::new();
    S.get_or_init(|| {
        let s = standin();
        let bin = tracer_bin();
        let dir = test_support::world_reachable_copies(&[&s.lib, &s.driver, &bin]);
        (
            Standin {
                lib: dir.join("libtt_metal.so"),
                driver: dir.join("tt_driver"),
            },
            dir.join(bin.file_name().expect("binary name")),
        )
    })
}

/// A finished tracer run.
#[derive(Debug)]
pub struct Traced {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub report: Value,
    pub events: Vec<Value>,
}

impl Traced {
    /// The driver's oracle line (`DRIVER {...}` on its stdout).
    pub fn driver(&self) -> Value {
        driver_line(&self.stdout).unwrap_or_else(|| {
            panic!(
                "no DRIVER line in stdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn process(&self, pid: u64) -> &Value {
        self.report["processes"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["pid"] == pid))
            .unwrap_or_else(|| panic!("pid {pid} not in report:\n{}", self.report))
    }

    /// Asserts every loss counter is 0.
    pub fn assert_nothing_lost(&self) {
        let lost = self.report["lost"]
            .as_object()
            .expect("lost counters in report");
        assert!(!lost.is_empty(), "report has no loss counters");
        for (k, v) in lost {
            assert_eq!(v, 0, "lost counter {k} = {v}");
        }
        assert_eq!(self.report["malformed_records"], 0);
    }
}

pub fn driver_line(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("DRIVER "))
        .and_then(|j| serde_json::from_str(j).ok())
}

fn scratch(name: &str) -> PathBuf {
    let dir = target_dir().join("it-scratch");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}-{}-{}", std::process::id(), monotonic_ns()))
}

/// `tt-tracer <subcommand args> --report-file R --events-file E`, waited for.
pub fn trace(args: &[&str], envs: &[(&str, &str)]) -> Result<Traced> {
    let child = spawn_trace(args, envs)?;
    child.wait()
}

pub struct TraceChild {
    pub child: Child,
    report: PathBuf,
    events: PathBuf,
    /// Collects stderr once [`TraceChild::wait_until_armed`] has taken it over.
    stderr_reader: Option<std::thread::JoinHandle<String>>,
}

pub fn spawn_trace(args: &[&str], envs: &[(&str, &str)]) -> Result<TraceChild> {
    let report = scratch("report.json");
    let events = scratch("events.jsonl");
    let (sub, rest) = args.split_first().ok_or_else(|| anyhow!("no subcommand"))?;
    let mut cmd = Command::new(tracer_bin());
    cmd.arg(sub)
        .arg("--report-file")
        .arg(&report)
        .arg("--events-file")
        .arg(&events)
        .args(rest)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().context("spawning tt-tracer")?;
    Ok(TraceChild {
        stderr_reader: None,
        child,
        report,
        events,
    })
}

impl TraceChild {
    /// Where `--events-file` writes.
    pub fn events_path(&self) -> &Path {
        &self.events
    }

    pub fn wait(mut self) -> Result<Traced> {
        // Both pipes drained at once, as `wait_with_output` does: neither can fill and block.
        let stderr = self.child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = e.read_to_end(&mut v);
                v
            })
        });
        let mut stdout = Vec::new();
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_end(&mut stdout)?;
        }
        let stderr = match stderr {
            Some(t) => t.join().map_err(|_| anyhow!("stderr reader panicked"))?,
            None => Vec::new(),
        };
        let status = self.child.wait()?;
        finish(
            status,
            String::from_utf8_lossy(&stdout).into(),
            String::from_utf8_lossy(&stderr).into(),
            &self.report,
            &self.events,
        )
    }

    /// Reads stdout lines until one satisfies `pred` (returns it), within `timeout`.
    pub fn wait_stdout_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<(String, String)> {
        let stdout = self
            .child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("stdout taken"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut all = String::new();
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        all.push_str(&line);
                        if tx.send((line, all.clone())).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (line, all) = rx
                .recv_timeout(left)
                .map_err(|_| anyhow!("no matching stdout line within {timeout:?}"))?;
            if pred(&line) {
                return Ok((line, all));
            }
        }
    }

    /// Polls the events file until a record satisfies `pred`, within `timeout`.
    pub fn wait_event(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.events) {
                if let Some(v) = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|v| pred(v))
                {
                    return Ok(v);
                }
            }
            if Instant::now() >= deadline {
                bail!("no matching event within {timeout:?}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Waits until `tt-tracer attach` says it is tracing (its probes are armed); stderr keeps
    /// being collected for [`TraceChild::wait_with`].
    pub fn wait_until_armed(&mut self, timeout: Duration) -> Result<()> {
        self.wait_for_stderr(timeout, "tracing pid")
    }

    /// Waits until a line of tt-tracer's stderr contains `needle`; stderr keeps being
    /// collected for [`TraceChild::wait_with`].
    pub fn wait_for_stderr(&mut self, timeout: Duration, needle: &str) -> Result<()> {
        let wanted = needle.to_string();
        let stderr = self
            .child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("stderr taken"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        self.stderr_reader = Some(std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(&wanted) {
                    let _ = tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        }));
        rx.recv_timeout(timeout)
            .map_err(|_| anyhow!("tt-tracer printed no line with {needle:?} within {timeout:?}"))
    }

    pub fn wait_with(mut self, stdout_so_far: String) -> Result<Traced> {
        let status = self.child.wait()?;
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err)?;
        } else if let Some(reader) = self.stderr_reader.take() {
            err = reader
                .join()
                .map_err(|_| anyhow!("stderr reader panicked"))?;
        }
        finish(status, stdout_so_far, err, &self.report, &self.events)
    }
}

/// A test that fails before it stops its tracer does not leave it running (a `watch` would
/// trace every later test's processes): SIGTERM, then SIGKILL after 10 s.
impl Drop for TraceChild {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // SAFETY: kill(2) on our own, not yet reaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn finish(
    status: ExitStatus,
    stdout: String,
    stderr: String,
    report: &Path,
    events: &Path,
) -> Result<Traced> {
    let report_v = std::fs::read_to_string(report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let events_v = std::fs::read_to_string(events)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default();
    let _ = std::fs::remove_file(report);
    let _ = std::fs::remove_file(events);
    Ok(Traced {
        status,
        stdout,
        stderr,
        report: report_v,
        events: events_v,
    })
}

/// Waits until a workload has created its hold file (it is then paused, state in place).
pub fn wait_for_hold(hold: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !hold.exists() {
        assert!(
            Instant::now() < deadline,
            "the workload never reached its hold point ({})",
            hold.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `tt-tracer run` of the stand-in driver with `driver_args`, returned once the driver has
/// printed its oracle line (it then holds, per its own `--hold-ms`): (tracer, stdout so far,
/// the oracle).
pub fn run_driver_until_oracle(driver_args: &[&str]) -> (TraceChild, String, Value) {
    let s = standin();
    let mut args = vec![
        "run",
        "--lib",
        s.lib.to_str().unwrap(),
        "--",
        s.driver.to_str().unwrap(),
    ];
    args.extend_from_slice(driver_args);
    let mut child = spawn_trace(&args, &[]).expect("tt-tracer run");
    let (line, stdout) = child
        .wait_stdout_line(Duration::from_secs(30), |l| l.starts_with("DRIVER "))
        .expect("the driver's DRIVER line");
    let driver = driver_line(&line).expect("DRIVER json");
    (child, stdout, driver)
}

/// KiB helper for readable assertions.
pub const KIB: u64 = 1024;

/// A tmux server of its own (its own socket) running one command in a 200×50 terminal, for
/// tests of what tt-tracer draws on a real terminal. Killed, with what runs in it, on drop.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// `tmux new-session -d -x 200 -y 50 COMMAND` (run by tmux's shell).
    pub fn start(command: &str) -> Tmux {
        assert!(
            Command::new("tmux")
                .arg("-V")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "tmux is not installed (cargo xtask setup installs Debian's tmux)"
        );
        let tmux = Tmux {
            // Short, in /tmp: a socket's path has a length limit.
            socket: std::env::temp_dir().join(format!(
                "tt-tracer-tmux-{}-{}",
                std::process::id(),
                monotonic_ns()
            )),
        };
        let out = tmux
            .command()
            .args(["new-session", "-d", "-x", "200", "-y", "50", "-s", "t"])
            .arg(command)
            .output()
            .expect("running tmux");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn command(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).stdin(Stdio::null());
        c
    }

    /// The screen now (`capture-pane -p`); empty once the session has ended.
    pub fn screen(&self) -> String {
        let out = self
            .command()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .expect("running tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until `pred` holds (returns that screen); fails with the last screen
    /// after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what} within {timeout:?}; last screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `send-keys KEYS…` (tmux key names: `q`, `C-c`, `Down`).
    pub fn keys(&self, keys: &[&str]) {
        let ok = self
            .command()
            .args(["send-keys", "-t", "t"])
            .args(keys)
            .status()
            .expect("running tmux")
            .success();
        assert!(ok, "tmux send-keys {keys:?}");
    }

    /// The pid of the pane's process (tmux's shell running the command).
    pub fn pane_pid(&self) -> u32 {
        let out = self
            .command()
            .args(["display-message", "-p", "-t", "t", "#{pane_pid}"])
            .output()
            .expect("running tmux");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a pane pid")
    }

    /// Whether the session still runs (its command has not exited).
    pub fn alive(&self) -> bool {
        self.command()
            .args(["has-session", "-t", "t"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until the session's command has exited and the session closed.
    pub fn wait_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.alive() {
            assert!(
                Instant::now() < deadline,
                "the tmux session did not close within {timeout:?}; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // SIGHUP to what runs in it: tt-tracer top quits on it and restores the terminal.
        let _ = self
            .command()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One table row of `tt-tracer top` as the screen shows it: the columns up to KERNELS, then
/// NOW and STATE as one text (they may hold spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopRow {
    pub pid: u64,
    pub command: String,
    pub chip: String,
    /// DRAM, L1, L1_SMALL, TRACE, CB (live/peak, or `-`).
    pub sizes: [String; 5],
    pub kernels: String,
    pub now_and_state: String,
}

/// The table rows on a `tt-tracer top` screen, top to bottom.
pub fn top_rows(screen: &str) -> Vec<TopRow> {
    screen
        .lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            if t.len() < 11 {
                return None;
            }
            let pid = t[0].parse().ok()?;
            Some(TopRow {
                pid,
                command: t[1].into(),
                chip: t[2].into(),
                sizes: [t[3], t[4], t[5], t[6], t[7]].map(String::from),
                kernels: t[8].into(),
                now_and_state: t[9..].join(" "),
            })
        })
        .collect()
}
