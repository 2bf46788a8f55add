//! What `tt-tracer watch` costs: the pause a process pays when it loads a library file never
//! seen, the run time of one loading an armed file, watch's CPU when idle, its memory and its
//! metrics exposition per traced process. Every figure is printed next to a baseline measured in
//! the same run; nothing is asserted on wall time.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

/// The stand-in driver of the arming and memory figures: one device, one application kernel.
const SHORT_RUN: [&str; 4] = ["--devices", "1", "--app-kernels", "1"];
/// The metrics figure's driver: 2 devices with buffers and circular buffers (series per chip
/// and buffer type).
const METRICS_RUN: [&str; 6] = ["--devices", "2", "--buffers", "3", "--cbs", "2"];

/// The stand-in library and driver, and the tracer under test.
pub struct Parts<'a> {
    pub tracer: &'a Path,
    pub lib: &'a Path,
    pub driver: &'a Path,
}

fn ms(secs: f64) -> String {
    format!("{:.1} ms", secs * 1e3)
}

/// Nearest-rank percentile `p` (0..=100) of `v` (sorts it).
fn percentile(v: &mut [f64], p: f64) -> f64 {
    assert!(!v.is_empty(), "percentile of no figures");
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Median and p99 of `v`.
fn med_p99(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    (test_support::median(&mut v), percentile(&mut v, 99.0))
}

/// Pids of every running `tt-tracer` process.
fn tracer_pids() -> BTreeSet<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (comm.trim() == "tt-tracer").then_some(pid)
        })
        .collect()
}

/// Says so when someone else's tracer runs: it stops and probes our processes too (a `watch`
/// or a `run` without `--lib` is system-wide), so the figures may be disturbed.
fn warn_foreign(foreign: &BTreeSet<u32>, what: &str) {
    if !foreign.is_empty() {
        println!(
            "  note: other tt-tracer processes were running during {what} ({foreign:?}): \
             the figures may be disturbed, re-run on a quiet machine"
        );
    }
}

/// One `tt-tracer watch`, its stderr lines collected as they come, its records in an events
/// file.
struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    dir: PathBuf,
    /// Other tracers running when this one started (not ours to wait for).
    foreign: BTreeSet<u32>,
}

impl Watch {
    fn start(tracer: &Path, args: &[&str]) -> Result<Watch> {
        let foreign = tracer_pids();
        let dir = scratch_dir("watch")?;
        let mut child = Command::new(tracer)
            .arg("watch")
            .args(args)
            .arg("--events-file")
            .arg(dir.join("events.jsonl"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tt-tracer watch")?;
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut w = Watch {
            child,
            lines,
            reader: Some(reader),
            dir,
            foreign,
        };
        w.wait_line(Duration::from_secs(60), |l| {
            l.contains("tt-tracer: watching")
        })
        .context("tt-tracer watch did not start")?;
        Ok(w)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first stderr line matching `pred`, waiting up to `timeout` for it.
    fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return Ok(l.clone());
            }
            if let Some(st) = self.child.try_wait()? {
                bail!("tt-tracer watch ended ({st}):\n{}", self.lines().join("\n"));
            }
            ensure!(
                Instant::now() < deadline,
                "no such line from watch within {timeout:?}:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the events file holds at least `n` process exits (the tracer has applied
    /// them).
    fn wait_exits(&self, n: usize) -> Result<()> {
        let path = self.dir.join("events.jsonl");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let seen = std::fs::read_to_string(&path)
                .map(|t| t.matches("\"process_exited\"").count())
                .unwrap_or(0);
            if seen >= n {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "watch reported {seen} exits of {n} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident memory now, KiB.
    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")
    }

    /// SIGINT, then waits for it and for the probes' detach (its helper) to be over.
    fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let st = self.child.wait()?;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        ensure!(
            st.success(),
            "tt-tracer watch ended with {st}:\n{}",
            self.lines().join("\n")
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !tracer_pids().is_subset(&self.foreign) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A new, empty directory under the system temp directory (mode 0755).
fn scratch_dir(what: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tt-bench-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// A copy of the stand-in library and driver in a directory of their own: a library file
/// (inode) nothing has seen, which the driver loads (its RPATH is `$ORIGIN`).
fn fresh_copy(p: &Parts) -> Result<PathBuf> {
    let dir = scratch_dir("lib")?;
    for f in [p.lib, p.driver] {
        std::fs::copy(f, dir.join(f.file_name().unwrap()))
            .with_context(|| format!("copying {}", f.display()))?;
    }
    Ok(dir.join("tt_driver"))
}

/// Runs the driver to its end; its wall time (spawn to exit) and pid.
fn run_driver(driver: &Path, args: &[&str]) -> Result<(f64, u32)> {
    let t = Instant::now();
    let out = Command::new(driver)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("running {}", driver.display()))?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "{} failed: {}",
        driver.display(),
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("DRIVER "))
        .context("no DRIVER line")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let pid = v["pid"].as_u64().context("DRIVER line without pid")? as u32;
    Ok((secs, pid))
}

/// `n` drivers, `parallel` at a time.
fn run_drivers(driver: &Path, args: &[&str], n: usize, parallel: usize) -> Result<()> {
    let mut left = n;
    while left > 0 {
        let batch = left.min(parallel);
        let children: Vec<Child> = (0..batch)
            .map(|_| {
                Command::new(driver)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .collect::<std::io::Result<_>>()?;
        for mut c in children {
            let st = c.wait()?;
            ensure!(st.success(), "{} failed: {st}", driver.display());
        }
        left -= batch;
    }
    Ok(())
}

/// `X` of `(stopped X ms while armed)` in a `library_traced` line.
fn stopped_ms(line: &str) -> Option<f64> {
    let rest = line.split("(stopped ").nth(1)?;
    rest.split(" ms").next()?.parse().ok()
}

/// 1. New process exec → probes armed. Rounds of: without watch, `k` drivers of fresh copies
///    and `k` of the built stand-in; then under one watch (its own for the round) the same
///    again, the built stand-in armed by one warm-up run first.
pub fn arming(p: &Parts, samples: usize) -> Result<()> {
    const ROUNDS: usize = 3;
    let k = samples.div_ceil(ROUNDS);
    let lib = p.lib.display().to_string();
    let (mut base_new, mut base_armed) = (Vec::new(), Vec::new());
    let (mut new, mut armed, mut pauses) = (Vec::new(), Vec::new(), Vec::new());
    let mut foreign = BTreeSet::new();
    for _ in 0..ROUNDS {
        for _ in 0..k {
            let copy = fresh_copy(p)?;
            base_new.push(run_driver(&copy, &SHORT_RUN)?.0);
            std::fs::remove_dir_all(copy.parent().unwrap())?;
            base_armed.push(run_driver(p.driver, &SHORT_RUN)?.0);
        }
        let mut w = Watch::start(p.tracer, &[])?;
        foreign.extend(w.foreign.iter().copied());
        let traced_lib = |l: &str| l.contains(&format!("tracing {lib} "));
        // The built stand-in may be mapped by a process running now: then it is armed already.
        if w.lines().iter().all(|l| !traced_lib(l)) {
            run_driver(p.driver, &SHORT_RUN)?;
            w.wait_line(Duration::from_secs(30), traced_lib)?;
        }
        let armed_lines = w.lines().len();
        let mut armed_pids = Vec::new();
        let mut copies = Vec::new();
        for _ in 0..k {
            let copy = fresh_copy(p)?;
            let (secs, pid) = run_driver(&copy, &SHORT_RUN)?;
            new.push(secs);
            let path = copy.with_file_name("libtt_metal.so").display().to_string();
            let line = w.wait_line(Duration::from_secs(30), |l| {
                l.contains(&format!("tracing {path} ")) && l.contains("stopped")
            })?;
            ensure!(
                line.contains(&format!("loaded by pid {pid} ")),
                "the new library was armed for another process than the driver: {line}"
            );
            pauses.push(stopped_ms(&line).with_context(|| format!("no pause in {line}"))? / 1e3);
            copies.push(copy);

            let (secs, pid) = run_driver(p.driver, &SHORT_RUN)?;
            armed.push(secs);
            armed_pids.push(pid);
        }
        // A process loading an armed file is never stopped: no library line names it.
        let lines = w.lines();
        for pid in armed_pids {
            let by = format!("by pid {pid} ");
            ensure!(
                !lines[armed_lines..].iter().any(|l| l.contains(&by)),
                "pid {pid} loaded an armed library and still got a library line:\n{}",
                lines.join("\n")
            );
        }
        w.stop()?;
        for c in copies {
            std::fs::remove_dir_all(c.parent().unwrap())?;
        }
    }
    let n = new.len();
    let (bn, bn99) = med_p99(&base_new);
    let (tn, tn99) = med_p99(&new);
    let (pm, p99) = med_p99(&pauses);
    println!(
        "watch, first process to load a new library file ({n} samples each, a fresh copy each): \
         run time ×{:.2} ({:+.1} ms) — untraced median {} (p99 {}), under watch median {} (p99 {}); \
         stopped while armed: median {}, p99 {}",
        tn / bn,
        (tn - bn) * 1e3,
        ms(bn),
        ms(bn99),
        ms(tn),
        ms(tn99),
        ms(pm),
        ms(p99),
    );
    let (ba, ba99) = med_p99(&base_armed);
    let (ta, ta99) = med_p99(&armed);
    println!(
        "watch, a process loading an armed library file ({n} samples each): run time ×{:.2} \
         ({:+.1} ms) — untraced median {} (p99 {}), under watch median {} (p99 {}); not stopped \
         (no library line for any of them)",
        ta / ba,
        (ta - ba) * 1e3,
        ms(ba),
        ms(ba99),
        ms(ta),
        ms(ta99),
    );
    warn_foreign(&foreign, "the arming figures");
    Ok(())
}

/// utime + stime of a whole process (/proc/PID/stat), seconds.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks as f64 / hz)
}

/// Time on CPU of a process's live threads (/proc/PID/task/*/schedstat), seconds: the same as
/// `cpu_secs` with ns resolution instead of clock ticks.
fn sched_secs(pid: u32) -> Result<f64> {
    let mut ns = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let s = std::fs::read_to_string(t?.path().join("schedstat")).unwrap_or_default();
        ns += s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    Ok(ns as f64 / 1e9)
}

/// 2. watch's CPU with no tt-metal process running, against `sleep`'s over the same window.
pub fn idle_cpu(p: &Parts, secs: u64) -> Result<()> {
    let w = Watch::start(p.tracer, &[])?;
    // Past start-up (arming what is mapped now, the first health update).
    std::thread::sleep(Duration::from_secs(2));
    let mut sleep = Command::new("sleep")
        .arg((secs + 60).to_string())
        .spawn()
        .context("sleep")?;
    let sp = sleep.id();
    let before_lines = w.lines().len();
    let (w0, ws0, s0, ss0) = (
        cpu_secs(w.pid())?,
        sched_secs(w.pid())?,
        cpu_secs(sp)?,
        sched_secs(sp)?,
    );
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (w1, ws1, s1, ss1) = (
        cpu_secs(w.pid())?,
        sched_secs(w.pid())?,
        cpu_secs(sp)?,
        sched_secs(sp)?,
    );
    let window = t.elapsed().as_secs_f64();
    let _ = sleep.kill();
    let _ = sleep.wait();
    let during: Vec<String> = w.lines()[before_lines..].to_vec();
    let foreign = w.foreign.clone();
    w.stop()?;
    let pct = |c: f64| c / window * 100.0;
    println!(
        "watch idle CPU over {window:.0} s: {:.3} % of one core ({:+.3} points over sleep) — \
         utime+stime {:.0} ms (on CPU {:.1} ms by schedstat); baseline sleep {:.3} % ({:.0} ms, \
         on CPU {:.1} ms)",
        pct(w1 - w0),
        pct(w1 - w0) - pct(s1 - s0),
        (w1 - w0) * 1e3,
        (ws1 - ws0) * 1e3,
        pct(s1 - s0),
        (s1 - s0) * 1e3,
        (ss1 - ss0) * 1e3,
    );
    if !during.is_empty() {
        println!(
            "  note: watch was not idle (a process loaded a tt-metal library meanwhile); re-run:\n  {}",
            during.join("\n  ")
        );
    }
    warn_foreign(&foreign, "the idle figure");
    Ok(())
}

/// 3. watch's resident memory per traced process: before, after 100 and after 500 short
///    stand-in processes, with `--history 50` and with the default history.
pub fn rss(p: &Parts) -> Result<()> {
    for (name, args) in [
        ("--history 50", &["--history", "50"][..]),
        ("default history", &[][..]),
    ] {
        let w = Watch::start(p.tracer, args)?;
        std::thread::sleep(Duration::from_millis(500));
        let start = w.rss_kib()?;
        // The first process arms the library: a one-off cost, kept out of the per-process one.
        run_drivers(p.driver, &SHORT_RUN, 1, 1)?;
        w.wait_exits(1)?;
        let armed = w.rss_kib()?;
        run_drivers(p.driver, &SHORT_RUN, 100, 4)?;
        w.wait_exits(101)?;
        let at100 = w.rss_kib()?;
        run_drivers(p.driver, &SHORT_RUN, 400, 4)?;
        w.wait_exits(501)?;
        let at500 = w.rss_kib()?;
        let foreign = w.foreign.clone();
        w.stop()?;
        let per = |rss: u64, n: f64| (rss as f64 - armed as f64) / n;
        println!(
            "watch RSS per traced process ({name}): {:.2} KiB/process over the first 100, \
             {:.2} over 500, {:.2} from 100 to 500 — RSS {start} KiB at start, {armed} KiB with \
             the library armed (baseline), {at100} KiB after 100, {at500} KiB after 500",
            per(at100, 100.0),
            per(at500, 500.0),
            (at500 as f64 - at100 as f64) / 400.0,
        );
        warn_foreign(&foreign, "the RSS figure");
    }
    Ok(())
}

/// `GET /metrics` from `addr`; the body.
fn scrape(addr: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no HTTP head")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "scrape: {head}");
    Ok(body.to_string())
}

/// Series (sample lines) carrying a `pid` label.
fn pid_series(exposition: &str) -> usize {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("pid=\""))
        .count()
}

/// A watch serving metrics; the address it listens on.
fn metrics_watch(p: &Parts, grace: &str) -> Result<(Watch, String)> {
    let mut w = Watch::start(
        p.tracer,
        &["--metrics", "127.0.0.1:0", "--metrics-grace", grace],
    )?;
    let line = w.wait_line(Duration::from_secs(10), |l| {
        l.contains("metrics on http://")
    })?;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.strip_suffix("/metrics"))
        .context("metrics address")?
        .to_string();
    Ok((w, addr))
}

/// 4. Bytes of exposition per traced process (2 devices with buffers each), and the exposition
///    shrinking back once the grace period is over.
pub fn metrics(p: &Parts) -> Result<()> {
    let (w, addr) = metrics_watch(p, "600")?;
    let mut sizes = vec![(0, scrape(&addr)?)];
    let mut done = 0;
    for n in [10, 50] {
        run_drivers(p.driver, &METRICS_RUN, n - done, 2)?;
        done = n;
        w.wait_exits(n)?;
        // The events file and the exporter get each record one after the other.
        std::thread::sleep(Duration::from_millis(200));
        sizes.push((n, scrape(&addr)?));
    }
    let foreign = w.foreign.clone();
    w.stop()?;
    let b0 = sizes[0].1.len() as f64;
    let figures: Vec<String> = sizes
        .iter()
        .map(|(n, e)| format!("{} bytes / {} pid series after {n}", e.len(), pid_series(e)))
        .collect();
    println!(
        "metrics exposition per traced process (2 devices, 3 buffers, 2 CBs each; grace 600 s): \
         {:.0} bytes/process over 10, {:.0} over 50 — {} (0 processes: the baseline)",
        (sizes[1].1.len() as f64 - b0) / 10.0,
        (sizes[2].1.len() as f64 - b0) / 50.0,
        figures.join(", "),
    );
    warn_foreign(&foreign, "the exposition figure");

    // The same 50 with a 1 s grace: their series go once it is over.
    let (w, addr) = metrics_watch(p, "1")?;
    let empty = scrape(&addr)?;
    run_drivers(p.driver, &METRICS_RUN, 50, 2)?;
    w.wait_exits(50)?;
    std::thread::sleep(Duration::from_millis(200));
    let just = scrape(&addr)?;
    std::thread::sleep(Duration::from_millis(2500));
    let after = scrape(&addr)?;
    let foreign = w.foreign.clone();
    w.stop()?;
    let old: BTreeSet<&str> = empty.lines().collect();
    let left: Vec<&str> = after
        .lines()
        .filter(|l| !l.starts_with('#') && !old.contains(l))
        .collect();
    println!(
        "metrics exposition with --metrics-grace 1: {} bytes with no process, {} bytes ({} pid \
         series) right after the 50th exit, {} bytes ({} pid series) 2.5 s later: {}; samples \
         not in the empty exposition (the all-process counters):\n  {}",
        empty.len(),
        just.len(),
        pid_series(&just),
        after.len(),
        pid_series(&after),
        if pid_series(&after) == 0 {
            "shrank back"
        } else {
            "did NOT shrink back"
        },
        left.join("\n  ")
    );
    warn_foreign(&foreign, "the grace figure");
    Ok(())
}
