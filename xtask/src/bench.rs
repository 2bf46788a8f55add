//! `cargo xtask bench`: re-runnable figures, each a median over repeated runs with its baseline
//! measured in the same run.

mod watch;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::{build_demo_parts, require_root, setup};

#[derive(Args)]
pub struct BenchArgs {
    /// Repetitions per configuration (medians are reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Application kernels per device in the probe-cost workload.
    #[arg(long, default_value_t = 20000)]
    kernels: u32,
    /// Only these figures (default: all).
    #[arg(long, value_enum)]
    only: Vec<Figure>,
    /// Samples per configuration of the watch arming figure (median and p99 reported).
    #[arg(long, default_value_t = 30)]
    arm_samples: usize,
    /// Seconds of the watch idle-CPU window.
    #[arg(long, env = "TT_BENCH_IDLE_SECS", default_value_t = 60)]
    idle_secs: u64,
    /// Attach points armed and disarmed per run of the attach figure.
    #[arg(long, default_value_t = 500)]
    attach_points: usize,
    /// Runs per attach mode in the attach figure (per-point runs take about a minute each).
    #[arg(long, default_value_t = 3)]
    attach_runs: usize,
    /// Back-to-back traced runs per attach mode in the attach figure.
    #[arg(long, default_value_t = 12)]
    back_to_back: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Figure {
    /// Cost per probed call (stand-in, 20,000 kernel-binary writes).
    Probe,
    /// Fixed cost of a traced session and the background detach.
    Session,
    /// Overhead on the real runtime (ttnn on mock devices).
    Ttnn,
    /// Resolving every role in the real 35 MB library.
    Resolve,
    /// Arming + disarming attach points on the real library, multi-uprobe links vs per point;
    /// back-to-back traced runs of /bin/true both ways.
    Attach,
    /// Collector memory per live device buffer.
    Memory,
    /// Kill → cleanup record.
    Kill,
    /// Every `watch` figure below.
    Watch,
    /// watch: exec → probes armed (a new library file; an armed one) against untraced runs.
    WatchArm,
    /// watch: CPU when idle against `sleep`'s (--idle-secs).
    WatchIdle,
    /// watch: resident memory per traced process.
    WatchRss,
    /// watch: metrics exposition bytes per traced process, and after the grace period.
    WatchMetrics,
}

impl Figure {
    /// The figure `--only watch` stands for as well, if any.
    fn group(self) -> Option<Figure> {
        matches!(
            self,
            Figure::WatchArm | Figure::WatchIdle | Figure::WatchRss | Figure::WatchMetrics
        )
        .then_some(Figure::Watch)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    test_support::median(&mut v)
}

/// Waits until no tt-tracer process is left (their probes are detached after they exit, in a
/// helper; a run measured meanwhile would pay for the previous run's teardown).
fn wait_for_detach() -> f64 {
    let t = Instant::now();
    let busy = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .map(|c| c.trim() == "tt-tracer")
                    .unwrap_or(false)
            })
    };
    while busy() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    t.elapsed().as_secs_f64()
}

/// The process group in /proc/PID/stat (readable even while a process exits).
fn process_group(stat: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(stat).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Waits until no tt-tracer process of this bench's process group is left (other checkouts'
/// tracers run in groups of their own; a detach helper keeps its tracer's group, while its
/// executable and working directory are already unreadable as it exits); returns how long that
/// took, in seconds.
fn wait_for_own_detach() -> f64 {
    let t = Instant::now();
    let group = process_group(Path::new("/proc/self/stat"));
    let ours = |e: std::fs::DirEntry| {
        std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "tt-tracer")
            && process_group(&e.path().join("stat")) == group
    };
    while std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(ours)
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    t.elapsed().as_secs_f64()
}

fn time_secs(cmd: &mut Command) -> Result<f64> {
    let t = Instant::now();
    let st = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    if !st.success() {
        bail!("{} failed: {st}", crate::render(cmd));
    }
    Ok(t.elapsed().as_secs_f64())
}

pub fn bench(a: BenchArgs) -> Result<()> {
    setup::setup()?;
    require_root("the benchmarks")?;
    crate::run(crate::cargo().args(["build", "--release", "-p", "tt-tracer"]))?;
    let (_, lib, driver) = build_demo_parts()?;
    let tracer = crate::root().join("target/release/tt-tracer");
    let want = |f: Figure| {
        a.only.is_empty() || a.only.contains(&f) || f.group().is_some_and(|g| a.only.contains(&g))
    };
    let per_call_us = if want(Figure::Probe) {
        Some(probe_cost(&tracer, &lib, &driver, &a)?)
    } else {
        None
    };
    if want(Figure::Session) {
        session_cost(&tracer, &lib, &driver, &a)?;
    }
    // The real library (set up for these two only: it is a download on a fresh machine).
    let real_lib = if want(Figure::Ttnn) || want(Figure::Resolve) || want(Figure::Attach) {
        Some(ttnn_overhead(&tracer, &a, want(Figure::Ttnn), per_call_us)?)
    } else {
        None
    };
    // Resolution of every role in the real 35 MB library, against reading it alone.
    if let (true, Some(real_lib)) = (want(Figure::Resolve), &real_lib) {
        crate::run(
            crate::cargo()
                .args([
                    "run",
                    "--release",
                    "-q",
                    "-p",
                    "tt-tracer",
                    "--example",
                    "resolve_bench",
                    "--",
                ])
                .arg(real_lib),
        )?;
    }
    if let (true, Some(real_lib)) = (want(Figure::Attach), &real_lib) {
        attach_cost(&tracer, Path::new(real_lib), &a)?;
    }
    // Collector memory per live device buffer.
    if want(Figure::Memory) {
        crate::run(crate::cargo().args([
            "run",
            "--release",
            "-q",
            "-p",
            "tt-tracer",
            "--example",
            "ledger_memory",
        ]))?;
    }
    // Kill → cleanup-record latency is measured by the SIGKILL integration test.
    if want(Figure::Kill) {
        crate::run(
            crate::cargo()
                .args([
                    "test",
                    "-p",
                    "integration-tests",
                    "--test",
                    "standin",
                    "sigkill",
                    "--",
                    "--nocapture",
                ])
                .env("TT_TRACER_BIN", &tracer),
        )?;
    }
    let parts = watch::Parts {
        tracer: &tracer,
        lib: &lib,
        driver: &driver,
    };
    if want(Figure::WatchArm) {
        watch::arming(&parts, a.arm_samples)?;
    }
    if want(Figure::WatchIdle) {
        watch::idle_cpu(&parts, a.idle_secs)?;
    }
    if want(Figure::WatchRss) {
        watch::rss(&parts)?;
    }
    if want(Figure::WatchMetrics) {
        watch::metrics(&parts)?;
    }
    Ok(())
}

/// Overhead on the real runtime (ttnn on mock devices): the workload's own time from `import
/// ttnn` to device close (measured inside it), untraced vs traced, alternating runs.
fn ttnn_overhead(
    tracer: &Path,
    a: &BenchArgs,
    measure: bool,
    per_call_us: Option<f64>,
) -> Result<String> {
    let root = crate::root();
    let out = Command::new("bash")
        .arg(root.join("tests/ttnn/setup.sh"))
        .arg(root.join("target/ttnn-cache"))
        .stderr(Stdio::inherit())
        .output()
        .context("tests/ttnn/setup.sh")?;
    if !out.status.success() {
        bail!("tests/ttnn/setup.sh failed");
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let get = |k: &str| -> Result<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
            .with_context(|| format!("setup.sh printed no {k}="))
    };
    let (python, lib) = (get("TTNN_PYTHON")?, get("TTNN_LIB")?);
    let env: Vec<(String, String)> = std::fs::read_to_string(get("TTNN_ENV_FILE")?)?
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let scratch = root.join("target/bench-scratch");
    std::fs::create_dir_all(&scratch)?;
    let workload = root.join("tests/ttnn/workload.py");
    if !measure {
        return Ok(lib);
    }
    // The usual scenarios fire tens of probes; many_buffers fires two per allocation (entry and
    // return of allocate_buffer) and one per free: the worst case for a ledger.
    for scenario in ["tensor", "add_fd", "n300", "t3k", "many_buffers 20000"] {
        let (scenario, arg) = scenario.split_once(' ').unwrap_or((scenario, ""));
        let oracle = scratch.join(format!("{scenario}.json"));
        let report = scratch.join(format!("{scenario}-report.json"));
        // Per run: [import→close inside the workload, open+work+close (where the probes
        // fire), the workload's CPU time (uprobe hits are charged to it), the whole command].
        let run_once = |traced: bool| -> Result<[f64; 4]> {
            let mut cmd = if traced {
                let mut c = Command::new(tracer);
                c.args(["run", "--lib", &lib, "--report-file"])
                    .arg(&report)
                    .args(["--", &python]);
                c
            } else {
                Command::new(&python)
            };
            cmd.arg(&workload)
                .arg(scenario)
                .args((!arg.is_empty()).then_some(arg))
                .arg("--oracle")
                .arg(&oracle)
                .arg("--run-dir")
                .arg(scratch.join("run"))
                .envs(env.iter().map(|(k, v)| (k, v)));
            // Every run starts on a quiet machine: no detach still running, its aftermath settled.
            wait_for_detach();
            std::thread::sleep(std::time::Duration::from_millis(300));
            let wall = time_secs(&mut cmd)?;
            let o: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&oracle)?)?;
            let t = |k: &str| {
                o["timing"][k]
                    .as_f64()
                    .with_context(|| format!("oracle timing.{k}"))
            };
            Ok([
                t("total_s")?,
                t("open_s")? + t("work_s")? + t("close_s")?,
                t("cpu_s")?,
                wall,
            ])
        };
        run_once(false)?; // warm the JIT cache and the page cache
        let (mut base, mut traced): (Vec<[f64; 4]>, Vec<[f64; 4]>) = (vec![], vec![]);
        // Alternating which goes first, so neither always runs on a cache the other warmed.
        for r in 0..a.runs {
            for traced_run in [r % 2 == 1, r % 2 == 0] {
                let m = run_once(traced_run)?;
                if traced_run {
                    traced.push(m);
                    wait_for_detach();
                } else {
                    base.push(m);
                }
            }
        }
        let med = |v: &[[f64; 4]], i: usize| median(v.iter().map(|m| m[i]).collect());
        let cmp = |i: usize| {
            let (b, t) = (med(&base, i), med(&traced, i));
            format!(
                "{:.1} → {:.1} ms ({:+.1} %)",
                b * 1e3,
                t * 1e3,
                (t / b - 1.0) * 100.0
            )
        };
        println!(
            "real runtime {scenario:<16} (median of {}, untraced → traced): import→close {}; \
             open+work+close {}; CPU {}; whole command {}",
            a.runs,
            cmp(0),
            cmp(1),
            cmp(2),
            cmp(3)
        );
        // The noise floor here is several %; what the probes cost follows from their count.
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
        if let (Some(events), Some(us)) = (r["events"].as_f64(), per_call_us) {
            let ms = events * us / 1e3;
            println!(
                "  {events} probe events per run × {us:.2} µs (probe cost above) ≈ {ms:.2} ms = {:.2} % of open+work+close",
                ms / (med(&base, 1) * 1e3) * 100.0
            );
        }
    }
    Ok(lib)
}

/// Arming and disarming uprobes on the real library, one multi-uprobe link per program against
/// one perf-event uprobe per attach point (examples/attach_bench.rs, both in the same run);
/// then `tt-tracer run --lib LIB -- /bin/true` back to back, each mode in turn: every run
/// leaves its probes to detach after it has returned, and what is still detaching slows the
/// next ones down.
fn attach_cost(tracer: &Path, lib: &Path, a: &BenchArgs) -> Result<()> {
    wait_for_detach();
    crate::run(
        crate::cargo()
            .args([
                "run",
                "--release",
                "-q",
                "-p",
                "tt-tracer",
                "--example",
                "attach_bench",
                "--",
            ])
            .arg(lib)
            .arg(a.attach_points.to_string())
            .arg(a.attach_runs.to_string()),
    )?;
    let mut medians = Vec::new();
    for (label, flags) in [
        ("multi-uprobe links", &[][..]),
        ("per-point uprobes ", &["--no-multi-attach"][..]),
    ] {
        wait_for_own_detach();
        let mut times = Vec::new();
        for _ in 0..a.back_to_back {
            let mut cmd = Command::new(tracer);
            cmd.arg("run")
                .args(flags)
                .arg("--lib")
                .arg(lib)
                .args(["--", "/bin/true"]);
            times.push(time_secs(&mut cmd)? * 1e3);
        }
        let drained = wait_for_own_detach();
        let shown: Vec<String> = times.iter().map(|t| format!("{t:.0}")).collect();
        let n = times.len();
        let (first, last) = (n.min(3), n.saturating_sub(3));
        println!(
            "back-to-back `run --lib <real> -- /bin/true`, {label}: {} ms; median {:.0} ms, \
             first 3 median {:.0} ms, last 3 median {:.0} ms; probes of all runs detached {:.1} s \
             after the last one returned",
            shown.join(" "),
            median(times.clone()),
            median(times[..first].to_vec()),
            median(times[last..].to_vec()),
            drained
        );
        medians.push(median(times));
    }
    println!(
        "back-to-back runs: per-point / multi median ×{:.2}",
        medians[1] / medians[0]
    );
    Ok(())
}

/// Fixed cost of a traced session (load, verify, attach; detach at the end): `tt-tracer run`
/// of a short driver run vs the same run untraced.
fn session_cost(tracer: &Path, lib: &Path, driver: &Path, a: &BenchArgs) -> Result<()> {
    let (mut base, mut traced, mut detach) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.runs {
        base.push(time_secs(Command::new(driver).args(["--devices", "1"]))?);
        let mut cmd = Command::new(tracer);
        cmd.args(["run", "--lib"])
            .arg(lib)
            .arg("--")
            .arg(driver)
            .args(["--devices", "1"]);
        traced.push(time_secs(&mut cmd)?);
        detach.push(wait_for_detach());
    }
    let (b, t) = (median(base), median(traced));
    println!(
        "session cost: untraced run median {:.1} ms, traced {:.1} ms (+{:.0} ms: resolve, load, verify, \
         attach, report); probes detached {:.0} ms after it returned ({} runs each)",
        b * 1e3,
        t * 1e3,
        (t - b) * 1e3,
        median(detach) * 1e3,
        a.runs
    );
    Ok(())
}

/// Per-call cost of a traced kernel-binary write: the driver's own workload time (printed by
/// the driver as `workload_ns`) untraced vs traced, divided by the number of probe hits.
/// Returns it in µs.
fn probe_cost(tracer: &Path, lib: &Path, driver: &Path, a: &BenchArgs) -> Result<f64> {
    let kernels = a.kernels.to_string();
    let drv_args = [
        "--devices",
        "1",
        "--app-kernels",
        &kernels,
        "--app-kernel-bytes",
        "4",
    ];
    let workload = |traced: bool| -> Result<f64> {
        let mut cmd = if traced {
            let mut c = Command::new(tracer);
            c.args(["run", "--lib"]).arg(lib).arg("--").arg(driver);
            c
        } else {
            Command::new(driver)
        };
        let out = cmd
            .args(drv_args)
            .stderr(Stdio::null())
            .output()
            .context("running the driver")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("DRIVER "))
            .context("no DRIVER line")?;
        let v: serde_json::Value = serde_json::from_str(line)?;
        v["workload_ns"]
            .as_f64()
            .context("DRIVER line without workload_ns")
    };
    let (mut base, mut traced) = (Vec::new(), Vec::new());
    for _ in 0..a.runs {
        base.push(workload(false)?);
        traced.push(workload(true)?);
        wait_for_detach();
    }
    let (b, t) = (median(base), median(traced));
    let per_call_us = (t - b) / a.kernels as f64 / 1e3;
    println!(
        "probe cost: {} kernel-binary writes; untraced median {:.2} ms, traced median {:.2} ms \
         (×{:.1}); {per_call_us:.2} µs per traced call ({} runs each)",
        a.kernels,
        b / 1e6,
        t / 1e6,
        t / b,
        a.runs
    );
    Ok(per_call_us)
}
