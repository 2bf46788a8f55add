//! How fast a process's end reaches the records, and how many events a second one producer
//! thread can stream without loss.
//!
//! Kill → cleanup record: one `tt-tracer run` over a shell that starts a stand-in driver per
//! line it reads; each driver holds its devices, is killed with SIGKILL, and the time until its
//! `process_exited` record is in the events file is one sample. One tracer for every kill, so
//! the figure is the exit path alone (tracepoint, lifecycle ring, reader, sink), not start-up.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

/// Nearest-rank percentile `p` (0..=100) of `v` (sorts it).
fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Reads the lines appended to a file as they come.
struct Tail {
    reader: BufReader<File>,
    partial: String,
}

impl Tail {
    fn new(path: &Path) -> Result<Tail> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(f) = File::open(path) {
                return Ok(Tail {
                    reader: BufReader::new(f),
                    partial: String::new(),
                });
            }
            if Instant::now() > deadline {
                bail!("{} never appeared", path.display());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The next complete line, if one has been written.
    fn next_line(&mut self) -> Result<Option<String>> {
        let n = self.reader.read_line(&mut self.partial)?;
        if n == 0 || !self.partial.ends_with('\n') {
            return Ok(None);
        }
        Ok(Some(std::mem::take(&mut self.partial)))
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// p50 / p99 / max of kill → `process_exited` record over `kills` SIGKILLed drivers.
pub fn kill_latency(tracer: &Path, lib: &Path, driver: &Path, kills: usize) -> Result<()> {
    let scratch = crate::root().join("target/bench-scratch");
    std::fs::create_dir_all(&scratch)?;
    let events = scratch.join("kill-events.jsonl");
    let report = scratch.join("kill-report.json");
    let _ = std::fs::remove_file(&events);
    let mut child = Command::new(tracer)
        .args(["run", "--lib"])
        .arg(lib)
        .arg("--events-file")
        .arg(&events)
        .arg("--report-file")
        .arg(&report)
        .args([
            "--",
            "sh",
            "-c",
            "while read -r _; do \"$1\" --devices 1 --app-kernels 1 --hold-ms 600000 & done; wait",
            "sh",
        ])
        .arg(driver)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tt-tracer run")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let stdout = child.stdout.take().context("stdout")?;
    // Each driver prints its DRIVER line (with its pid) once its devices are open and held.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let pid = line
                .strip_prefix("DRIVER ")
                .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
                .and_then(|v| v["pid"].as_i64());
            if let Some(pid) = pid {
                if tx.send(pid).is_err() {
                    break;
                }
            }
        }
    });
    let mut tail = Tail::new(&events)?;
    let mut latencies = Vec::with_capacity(kills);
    for _ in 0..kills {
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        let pid = rx
            .recv_timeout(Duration::from_secs(60))
            .context("a driver never said it was holding its devices")?;
        let t0 = Instant::now();
        // SAFETY: signalling the driver this run started.
        if unsafe { libc_kill(pid as i32, 9) } != 0 {
            bail!("kill -9 {pid} failed");
        }
        let deadline = t0 + Duration::from_secs(30);
        'wait: loop {
            while let Some(line) = tail.next_line()? {
                let v: serde_json::Value = serde_json::from_str(&line)?;
                if v["record"] == "process_exited" && v["pid"] == pid {
                    break 'wait;
                }
            }
            if Instant::now() > deadline {
                bail!("no process_exited record for pid {pid} within 30 s");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        latencies.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    drop(stdin); // the shell's loop ends; tt-tracer reports and exits
    let status = child.wait()?;
    if !status.success() {
        bail!("tt-tracer run over the kill loop failed: {status}");
    }
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    let max = latencies.iter().copied().fold(0.0, f64::max);
    let (p50, p99) = (
        percentile(&mut latencies, 50.0),
        percentile(&mut latencies, 99.0),
    );
    println!(
        "kill → cleanup record ({kills} SIGKILLed drivers, one tracer): p50 {p50:.2} ms, p99 \
         {p99:.2} ms, max {max:.2} ms (goal p99 ≤ 5 ms); report complete: {}",
        r["complete"]
    );
    Ok(())
}

/// Events a second from one producer thread, at its full speed (`calls` kernel-binary writes
/// in a row, nothing else), and how many were lost (counted, never silent).
pub fn sustained_rate(tracer: &Path, lib: &Path, driver: &Path, calls: u32) -> Result<()> {
    let scratch = crate::root().join("target/bench-scratch");
    std::fs::create_dir_all(&scratch)?;
    let report = scratch.join("rate-report.json");
    let out = Command::new(tracer)
        .args(["run", "--lib"])
        .arg(lib)
        .arg("--report-file")
        .arg(&report)
        .arg("--")
        .arg(driver)
        .args(["--devices", "1", "--app-kernel-bytes", "4", "--app-kernels"])
        .arg(calls.to_string())
        .stderr(Stdio::null())
        .output()
        .context("tt-tracer run")?;
    if !out.status.success() {
        bail!("tt-tracer run of the rate figure failed: {}", out.status);
    }
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    let lost: u64 = r["lost"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("DRIVER "))
        .context("no DRIVER line")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let secs = v["workload_ns"]
        .as_f64()
        .context("DRIVER line without workload_ns")?
        / 1e9;
    println!(
        "sustained rate, one producer thread at full speed: {calls} events in {secs:.3} s = \
         {:.0} events/s traced; lost {lost}; events applied {} (8 MiB payload ring)",
        calls as f64 / secs,
        r["events"]
    );
    super::wait_for_detach();
    Ok(())
}
