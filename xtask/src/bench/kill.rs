//! How fast a process's end reaches the records, and the event rate at which loss starts.
//!
//! Kill → cleanup record: one `tt-tracer run` over a shell that starts a stand-in driver per
//! line it reads; each driver holds its devices, is killed with SIGKILL, and the time until its
//! `process_exited` record is in the events file is one sample. One tracer for every kill, so
//! the figure is the exit path alone (tracepoint, lifecycle ring, reader, sink), not start-up.
//!
//! Loss onset: the stand-in driver's kernel-binary writes from 1 to 32 threads at once, traced
//! with the default payload ring and smaller ones (the hidden `--payload-ring-bytes`), until the
//! producers outpace the reader; what each run lost is the report's own count.

use std::{
    collections::BTreeSet,
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

/// Payload ring sizes of the loss-onset sweep: the default first, then smaller ones until the
/// producers a 2-core machine can run outpace the reader.
const RINGS: [u64; 4] = [8 << 20, 1 << 20, 256 << 10, 64 << 10];
/// Writer threads of the sweep: past the core count, each more thread shrinks the reader's share
/// of the CPUs.
const WRITERS: [u32; 6] = [1, 2, 4, 8, 16, 32];

/// One traced run of the sweep.
struct RateRun {
    /// Kernel-binary writes a second, all writer threads together (the driver's own clock).
    rate: f64,
    /// Events the collector applied.
    applied: u64,
    /// Every loss counter summed.
    lost: u64,
    /// Names of the loss counters that moved.
    lost_by: BTreeSet<String>,
    complete: bool,
}

/// Writes a second of one driver run printing its DRIVER line in `stdout`.
fn driver_rate(stdout: &[u8], calls: u32) -> Result<f64> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("DRIVER "))
        .context("no DRIVER line")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let secs = v["workload_ns"]
        .as_f64()
        .context("DRIVER line without workload_ns")?
        / 1e9;
    Ok(f64::from(calls) / secs)
}

/// The driver's arguments for `calls` 4-byte kernel writes from `writers` threads at once.
fn rate_workload(calls: u32, writers: u32) -> Vec<String> {
    ["--devices", "1", "--app-kernel-bytes", "4", "--app-kernels"]
        .iter()
        .map(|s| s.to_string())
        .chain([
            calls.to_string(),
            "--writer-threads".into(),
            writers.to_string(),
        ])
        .collect()
}

fn traced_rate(
    tracer: &Path,
    lib: &Path,
    driver: &Path,
    calls: u32,
    writers: u32,
    ring: u64,
) -> Result<RateRun> {
    let scratch = crate::root().join("target/bench-scratch");
    std::fs::create_dir_all(&scratch)?;
    let report = scratch.join("rate-report.json");
    let _ = std::fs::remove_file(&report);
    let out = Command::new(tracer)
        .args(["run", "--payload-ring-bytes", &ring.to_string(), "--lib"])
        .arg(lib)
        .arg("--report-file")
        .arg(&report)
        .arg("--")
        .arg(driver)
        .args(rate_workload(calls, writers))
        .stderr(Stdio::null())
        .output()
        .context("tt-tracer run")?;
    if !out.status.success() {
        bail!("tt-tracer run of the rate figure failed: {}", out.status);
    }
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    let counters = r["lost"].as_object().context("report without lost")?;
    let lost_by = counters
        .iter()
        .filter(|(_, v)| v.as_u64().is_some_and(|n| n > 0))
        .map(|(k, _)| k.clone())
        .collect();
    let run = RateRun {
        rate: driver_rate(&out.stdout, calls)?,
        applied: r["events"].as_u64().context("report without events")?,
        lost: counters.values().filter_map(|v| v.as_u64()).sum(),
        lost_by,
        complete: r["complete"].as_bool().context("report without complete")?,
    };
    // A report that counts a loss must say it is incomplete, and one that does not, complete.
    if run.complete != (run.lost == 0) {
        bail!(
            "report says complete: {} with {} events lost",
            run.complete,
            run.lost
        );
    }
    super::wait_for_detach();
    Ok(run)
}

/// Where event loss starts: `calls` kernel-binary writes (4 bytes each: the write itself is
/// nearly free, so the probes and the reader are what is measured) from 1 to 32 threads at
/// once, per payload ring size; each configuration `runs` times, interleaved, against the same
/// writes untraced. Prints events a second produced, events applied and lost per run.
pub fn loss_onset(tracer: &Path, lib: &Path, driver: &Path, calls: u32, runs: usize) -> Result<()> {
    let configs: Vec<(u64, u32)> = RINGS
        .iter()
        .flat_map(|&ring| WRITERS.iter().map(move |&w| (ring, w)))
        .collect();
    let mut traced: Vec<Vec<RateRun>> = configs.iter().map(|_| Vec::new()).collect();
    let mut untraced: Vec<Vec<f64>> = WRITERS.iter().map(|_| Vec::new()).collect();
    for round in 0..runs {
        for (i, w) in WRITERS.iter().enumerate() {
            let out = Command::new(driver)
                .args(rate_workload(calls, *w))
                .stderr(Stdio::null())
                .output()
                .context("untraced driver")?;
            if !out.status.success() {
                bail!("untraced driver failed: {}", out.status);
            }
            untraced[i].push(driver_rate(&out.stdout, calls)?);
        }
        // Each round in another order, so no configuration always follows the same one.
        for k in 0..configs.len() {
            let i = (k + round * 5) % configs.len();
            let (ring, w) = configs[i];
            traced[i].push(traced_rate(tracer, lib, driver, calls, w, ring)?);
        }
    }
    let untraced: Vec<f64> = untraced.into_iter().map(super::median).collect();
    // Every run makes the same events: each must be applied or counted as lost.
    let totals: BTreeSet<u64> = traced
        .iter()
        .flatten()
        .map(|r| r.applied + r.lost)
        .collect();
    if totals.len() != 1 {
        bail!("applied + lost differs between runs of the same workload: {totals:?}");
    }
    println!(
        "loss onset: {calls} kernel-binary writes per run from W threads at once, medians of \
         {runs} runs; applied + lost = {} events in every run (untraced writes/s in the same \
         run: {})",
        totals.first().copied().unwrap_or(0),
        WRITERS
            .iter()
            .zip(&untraced)
            .map(|(w, r)| format!("W={w} {r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| payload ring | W | events/s produced (traced / untraced) | events applied | lost per run | complete |"
    );
    println!("|---|---|---|---|---|---|");
    let mut onset = Vec::new();
    for (i, (ring, w)) in configs.iter().enumerate() {
        let rs = &traced[i];
        let rate = super::median(rs.iter().map(|r| r.rate).collect());
        let applied = super::median(rs.iter().map(|r| r.applied as f64).collect());
        let base = untraced[WRITERS.iter().position(|x| x == w).unwrap_or(0)];
        let lost: Vec<String> = rs.iter().map(|r| r.lost.to_string()).collect();
        let by: BTreeSet<&String> = rs.iter().flat_map(|r| &r.lost_by).collect();
        let complete = rs.iter().filter(|r| r.complete).count();
        println!(
            "| {} | {w} | {rate:.0} ({:.2}× untraced) | {applied:.0} | {}{} | {complete}/{} |",
            ring_name(*ring),
            rate / base,
            lost.join(" / "),
            if by.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    by.into_iter().cloned().collect::<Vec<_>>().join(", ")
                )
            },
            rs.len()
        );
        if onset.iter().all(|(r, _, _)| r != ring) && rs.iter().any(|r| r.lost > 0) {
            onset.push((*ring, *w, rate));
        }
    }
    for ring in RINGS {
        let lossless = configs
            .iter()
            .zip(&traced)
            .filter(|((r, _), rs)| *r == ring && rs.iter().all(|x| x.lost == 0))
            .map(|(_, rs)| super::median(rs.iter().map(|r| r.rate).collect()))
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let first = onset.iter().find(|(r, _, _)| *r == ring);
        println!(
            "{} payload ring: {}; {}",
            ring_name(ring),
            lossless.map_or("no configuration lossless".into(), |x| format!(
                "highest lossless rate {x:.0} events/s"
            )),
            first.map_or(
                format!(
                    "no loss up to {} writer threads",
                    WRITERS[WRITERS.len() - 1]
                ),
                |(_, w, rate)| format!("loss starts at W={w}, {rate:.0} events/s")
            )
        );
    }
    Ok(())
}

fn ring_name(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}
