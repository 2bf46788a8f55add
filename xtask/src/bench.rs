//! `cargo xtask bench`: re-runnable figures, each a median over repeated runs with its baseline
//! measured in the same run.

mod baseline;
mod kill;
mod ops;
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
    /// SIGKILLed drivers in the kill → cleanup figure (p50 and p99 reported).
    #[arg(long, default_value_t = 1000)]
    kills: usize,
    /// Kernel-binary writes per run of the loss-onset sweep (all writer threads together).
    #[arg(long, default_value_t = 1_000_000)]
    rate_calls: u32,
    /// Runs per configuration of the loss-onset sweep (24 configurations, a few seconds each).
    #[arg(long, default_value_t = 3)]
    rate_runs: usize,
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
    /// Cost per ttnn operation launch on the real runtime, against bpftrace on the same sites.
    Ops,
    /// Resolving every role in the real 35 MB library.
    Resolve,
    /// Arming + disarming attach points on the real library, multi-uprobe links vs per point;
    /// back-to-back traced runs of /bin/true both ways.
    Attach,
    /// Collector memory per live device buffer.
    Memory,
    /// Kill → cleanup record (p50 / p99 over --kills kills), and the event rate where loss
    /// starts (1-32 writer threads, payload rings of 8 MiB down to 64 KiB).
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

/// Waits until none of our tt-tracer processes is left (their probes are detached after they
/// exit, in a helper; a run measured meanwhile would pay for the previous run's teardown);
/// returns how long that took, in seconds.
fn wait_for_detach() -> f64 {
    let t = Instant::now();
    while tracers_running().0 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    t.elapsed().as_secs_f64()
}

/// Whether a `tt-tracer` process runs: (one of this bench's — in its process group, e.g. a
/// detach helper, which keeps its tracer's group while its executable and working directory
/// are already unreadable as it exits —, another one — someone else's, in a group of its own,
/// which the figures must not wait for).
fn tracers_running() -> (bool, bool) {
    let group = process_group(Path::new("/proc/self/stat"));
    let (mut ours, mut foreign) = (false, false);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let is_tracer = std::fs::read_to_string(e.path().join("comm"))
            .map(|c| c.trim() == "tt-tracer")
            .unwrap_or(false);
        // A zombie has closed everything.
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .map(|st| {
                st.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })
            .unwrap_or(true);
        if !is_tracer || zombie {
            continue;
        }
        match process_group(&e.path().join("stat")) == group {
            true => ours = true,
            false => foreign = true,
        }
    }
    (ours, foreign)
}

/// Whether another `tt-tracer` runs (a system-wide one probes our processes too).
fn foreign_tracer_running() -> bool {
    tracers_running().1
}

/// The process group in /proc/PID/stat (readable even while a process exits).
fn process_group(stat: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(stat).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// `cargo run --release -p tt-tracer --example NAME --`: arguments follow.
fn example(name: &str) -> Command {
    let mut c = crate::cargo();
    c.args([
        "run",
        "--release",
        "-q",
        "-p",
        "tt-tracer",
        "--example",
        name,
        "--",
    ]);
    c
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
    let real_lib =
        if want(Figure::Ttnn) || want(Figure::Ops) || want(Figure::Resolve) || want(Figure::Attach)
        {
            Some(ttnn_overhead(
                &tracer,
                &a,
                want(Figure::Ttnn),
                want(Figure::Ops),
                per_call_us,
            )?)
        } else {
            None
        };
    // Resolution of every role in the real 35 MB library, against reading it alone.
    if let (true, Some(real_lib)) = (want(Figure::Resolve), &real_lib) {
        crate::run(example("resolve_bench").arg(real_lib))?;
    }
    if let (true, Some(real_lib)) = (want(Figure::Attach), &real_lib) {
        attach_cost(&tracer, Path::new(real_lib), &a)?;
    }
    // Collector memory per live device buffer.
    if want(Figure::Memory) {
        crate::run(&mut example("ledger_memory"))?;
    }
    // Kill → cleanup-record latency over many kills; the event rate one thread sustains.
    if want(Figure::Kill) {
        kill::kill_latency(&tracer, &lib, &driver, a.kills)?;
        kill::loss_onset(&tracer, &lib, &driver, a.rate_calls, a.rate_runs)?;
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
    operations: bool,
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
    if operations {
        ops::op_cost(tracer, Path::new(&lib), &python, &env, &scratch, a.runs)?;
    }
    if !measure {
        return Ok(lib);
    }
    // Per allocate + free pair against the traps it needs, bpftrace counting on the same sites.
    many_buffers_per_pair(tracer, Path::new(&lib), &python, &env, &scratch, a.runs)?;
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

/// Pairs of ttnn's allocation-only loop in the per-pair figure.
const PAIRS: u32 = 21000;
/// The first pairs of that loop are graph-captured for the workload's own oracle (slow), and
/// not timed here (tests/ttnn/workload.py, CALIBRATION_ITERATIONS).
const CALIBRATION: u32 = 1000;

/// ttnn's `many_buffers` loop (allocate one DRAM tile, free it): the loop's own time per pair
/// untraced, under bpftrace on the allocate / free sites (entry and return of
/// `BankManager::allocate_buffer`, entry of `deallocate_buffer`: 3 traps per pair) and under
/// tt-tracer.
fn many_buffers_per_pair(
    tracer: &Path,
    lib: &Path,
    python: &str,
    env: &[(String, String)],
    scratch: &Path,
    runs: usize,
) -> Result<()> {
    ttnn_loop(
        &TtnnRuntime {
            tracer,
            lib,
            python,
            env,
            scratch,
        },
        &|lib| baseline::sites(tracer, lib, &["bank_allocate", "bank_free"]),
        &TtnnLoop {
            scenario: "many_buffers",
            iterations: PAIRS,
            // The loop past the workload's calibration (graph capture) iterations.
            cpu_key: "uncaptured_loop_cpu_s",
            calls: PAIRS - CALIBRATION,
            label: format!(
                "real runtime many_buffers ({} allocate + free pairs)",
                PAIRS - CALIBRATION
            ),
        },
        runs,
    )?;
    Ok(())
}

/// The real runtime a ttnn figure runs on.
struct TtnnRuntime<'a> {
    tracer: &'a Path,
    /// The real libtt_metal.so.
    lib: &'a Path,
    python: &'a str,
    env: &'a [(String, String)],
    scratch: &'a Path,
}

/// A loop of the ttnn workload (`workload.py SCENARIO ITERATIONS`) whose thread CPU time the
/// oracle reports (`extra.<cpu_key>`, seconds, over `calls` probed calls).
struct TtnnLoop<'a> {
    scenario: &'a str,
    iterations: u32,
    cpu_key: &'a str,
    calls: u32,
    label: String,
}

/// Per-call figures of a ttnn workload loop against the baselines ([`compare_tracers`]): the
/// loop's thread CPU time (the traps are charged to it; other work on a busy machine is not).
/// The workload loads a private copy of the library (see `baseline::private_copy`); `sites`
/// gives bpftrace's sites in it, the ones tt-tracer probes in that loop.
fn ttnn_loop(
    t: &TtnnRuntime<'_>,
    sites: &dyn Fn(&Path) -> Result<Vec<baseline::Site>>,
    l: &TtnnLoop<'_>,
    runs: usize,
) -> Result<f64> {
    baseline::ensure_bpftrace()?;
    let (lib, preload) = baseline::private_copy(t.lib)?;
    let env: Vec<(String, String)> = t.env.iter().cloned().chain([preload]).collect();
    let sites = sites(&lib)?;
    let traps: usize = sites.iter().map(|s| 1 + s.with_return as usize).sum();
    let p = ProbeRun {
        tracer: t.tracer,
        lib: &lib,
        sites: &sites,
        scratch: t.scratch,
        envs: &env,
        disturbed: Default::default(),
    };
    let oracle = p.scratch.join(format!("{}-loop.json", l.scenario));
    let command: Vec<String> = vec![
        t.python.to_string(),
        crate::root()
            .join("tests/ttnn/workload.py")
            .display()
            .to_string(),
        l.scenario.into(),
        l.iterations.to_string(),
        "--oracle".into(),
        oracle.display().to_string(),
        "--run-dir".into(),
        p.scratch.join("run").display().to_string(),
    ];
    let workload = |_: &str| -> Result<f64> {
        let o: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&oracle)?)?;
        let s = o["extra"][l.cpu_key]
            .as_f64()
            .with_context(|| format!("oracle extra.{}", l.cpu_key))?;
        Ok(s * 1e9)
    };
    compare_tracers(
        &l.label,
        &p,
        &command,
        &workload,
        l.calls as f64,
        traps,
        runs,
    )
}

/// Arming and disarming uprobes on the real library, one multi-uprobe link per program against
/// one perf-event uprobe per attach point (examples/attach_bench.rs, both in the same run);
/// then `tt-tracer run --lib LIB -- /bin/true` back to back, each mode in turn: every run
/// leaves its probes to detach after it has returned, and what is still detaching slows the
/// next ones down.
fn attach_cost(tracer: &Path, lib: &Path, a: &BenchArgs) -> Result<()> {
    wait_for_detach();
    crate::run(
        example("attach_bench")
            .arg(lib)
            .arg(a.attach_points.to_string())
            .arg(a.attach_runs.to_string()),
    )?;
    let mut medians = Vec::new();
    for (label, flags) in [
        ("multi-uprobe links", &[][..]),
        ("per-point uprobes ", &["--no-multi-attach"][..]),
    ] {
        wait_for_detach();
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
        let drained = wait_for_detach();
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

/// How a probe-cost run is traced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tracing {
    Untraced,
    /// bpftrace counting hits on the same attach points: the floor.
    BpftraceCount,
    /// bpftrace printing a line per hit.
    BpftracePrintf,
    TtTracer,
}

impl Tracing {
    const ALL: [Tracing; 4] = [
        Tracing::Untraced,
        Tracing::BpftraceCount,
        Tracing::BpftracePrintf,
        Tracing::TtTracer,
    ];
}

/// One run of `command` (which prints its own workload time) traced as `how`: the workload time
/// `workload` reads from its stdout, and the uprobe programs' run time when `stats` (a
/// short idle after the work lets the last sample see every hit).
struct ProbeRun<'a> {
    tracer: &'a Path,
    lib: &'a Path,
    sites: &'a [baseline::Site],
    scratch: &'a Path,
    envs: &'a [(String, String)],
    /// Runs during which another tracer was running: a system-wide one probes our processes
    /// too, so those figures may be disturbed.
    disturbed: std::cell::Cell<usize>,
}

impl ProbeRun<'_> {
    fn run(
        &self,
        how: Tracing,
        command: &[String],
        workload: &dyn Fn(&str) -> Result<f64>,
    ) -> Result<(f64, Vec<baseline::ProgStats>)> {
        let report = self.scratch.join("probe-report.json");
        let bt_out = self.scratch.join("bpftrace.out");
        let mut cmd = match how {
            Tracing::Untraced => {
                let mut c = Command::new(&command[0]);
                c.args(&command[1..]);
                c
            }
            Tracing::BpftraceCount | Tracing::BpftracePrintf => {
                let action = if how == Tracing::BpftraceCount {
                    baseline::Action::Count
                } else {
                    baseline::Action::Printf
                };
                let script = baseline::script(self.lib, self.sites, action);
                baseline::bpftrace_command(&script, &bt_out, command)?
            }
            Tracing::TtTracer => {
                let mut c = Command::new(self.tracer);
                c.args(["run", "--lib"])
                    .arg(self.lib)
                    .arg("--report-file")
                    .arg(&report)
                    .arg("--")
                    .args(command);
                c
            }
        };
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        let foreign = foreign_tracer_running();
        let (out, stats) = baseline::wait_sampling(baseline::spawn(&mut cmd)?)?;
        if foreign || foreign_tracer_running() {
            self.disturbed.set(self.disturbed.get() + 1);
        }
        if !out.status.success() {
            bail!("{} failed: {}", crate::render(&cmd), out.status);
        }
        let t = workload(&String::from_utf8_lossy(&out.stdout))?;
        if how == Tracing::TtTracer {
            // Every event streamed and applied: a figure with losses would flatter the tracer.
            let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
            let lost: u64 = r["lost"]
                .as_object()
                .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
                .unwrap_or(0);
            if lost > 0 || r["complete"] != true {
                bail!("tt-tracer lost {lost} events in a probe-cost run: the figure would be void");
            }
            wait_for_detach();
        }
        Ok((t, stats))
    }
}

/// Per-call figures of `command` (untraced, bpftrace count, bpftrace printf, tt-tracer), runs
/// interleaved (each round in another order), medians; then a round per tracer with
/// `bpf_stats` on for the programs' own run time. `calls` is the probed calls per run (for
/// `per`: what one is). Returns tt-tracer's added µs per call.
fn compare_tracers(
    label: &str,
    p: &ProbeRun<'_>,
    command: &[String],
    workload: &dyn Fn(&str) -> Result<f64>,
    calls: f64,
    traps_per_call: usize,
    runs: usize,
) -> Result<f64> {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); Tracing::ALL.len()];
    for r in 0..runs {
        for i in 0..Tracing::ALL.len() {
            let k = (i + r) % Tracing::ALL.len();
            times[k].push(p.run(Tracing::ALL[k], command, workload)?.0);
        }
    }
    let med: Vec<f64> = times.into_iter().map(median).collect();
    let added = |k: usize| (med[k] - med[0]) / calls / 1e3; // µs per call
    let (floor, printf, tt) = (added(1), added(2), added(3));
    println!(
        "{label}: tt-tracer / bare uprobe (bpftrace count) ×{:.2}; tt-tracer / bpftrace printf \
         ×{:.2} (added time per call, medians of {runs} interleaved runs)",
        tt / floor,
        tt / printf
    );
    println!(
        "  untraced {:.3} µs per call; added per call: bpftrace count +{floor:.3} µs, bpftrace \
         printf +{printf:.3} µs, tt-tracer +{tt:.3} µs ({traps_per_call} uprobe trap(s) per call)",
        med[0] / calls / 1e3
    );
    if p.disturbed.get() > 0 {
        println!(
            "  note: another tt-tracer ran during {} of the runs: a system-wide one probes these \
             processes too; re-run on a quiet machine",
            p.disturbed.get()
        );
    }
    // The programs' own share, from the kernel's accounting (a separate round: the accounting
    // itself costs two clock reads per run).
    let stats = baseline::BpfStats::enable()?;
    let mut own = Vec::new();
    for how in [Tracing::BpftraceCount, Tracing::TtTracer] {
        // A sample can miss a short run on a loaded machine: a second try then.
        let (_, mut progs) = p.run(how, command, workload)?;
        if progs.is_empty() {
            progs = p.run(how, command, workload)?.1;
        }
        // Per trap, averaged over the programs' runs sampled (a sample may see only part of the
        // run on a loaded machine; the average is still the programs' own), times the traps.
        let runs: u64 = progs.iter().map(|s| s.run_cnt).sum();
        let ns: u64 = progs.iter().map(|s| s.run_time_ns).sum();
        let per_call = ns as f64 / runs.max(1) as f64 * traps_per_call as f64;
        let detail: Vec<String> = progs
            .iter()
            .map(|s| {
                format!(
                    "{} runs × {:.0} ns ({} insns verified)",
                    s.run_cnt,
                    s.ns_per_run(),
                    s.verified_insns
                )
            })
            .collect();
        own.push((per_call, runs, detail));
    }
    drop(stats);
    let trap_us = floor - own[0].0 / 1e3;
    println!(
        "  programs' own run time per call (bpf_stats): bpftrace count {:.0} ns [{}]; tt-tracer \
         {:.0} ns [{}]",
        own[0].0,
        own[0].2.join(", "),
        own[1].0,
        own[1].2.join(", ")
    );
    println!(
        "  so the {traps_per_call} trap(s) cost {:.3} µs per call (floor − its program) and \
         tt-tracer adds {:.3} µs past them: {:.0} ns in its programs, {:.0} ns elsewhere \
         (ring reader, cache misses)",
        trap_us,
        tt - trap_us,
        own[1].0,
        (tt - trap_us) * 1e3 - own[1].0
    );
    Ok(tt)
}

/// Per-call cost of a traced kernel-binary write on the stand-in: the CPU time of the driver's
/// write loop (printed by the driver as `workload_cpu_ns`) untraced, under bpftrace count / printf on the
/// same function, and under tt-tracer. Returns tt-tracer's in µs.
fn probe_cost(tracer: &Path, lib: &Path, driver: &Path, a: &BenchArgs) -> Result<f64> {
    baseline::ensure_bpftrace()?;
    let scratch = crate::root().join("target/bench-scratch");
    std::fs::create_dir_all(&scratch)?;
    let (lib, preload) = baseline::private_copy(lib)?;
    let lib = lib.as_path();
    let envs = [preload];
    let sites = baseline::sites(tracer, lib, &["kernel_binary_write"])?;
    let command: Vec<String> = [
        &driver.display().to_string(),
        "--devices",
        "1",
        "--app-kernels",
        &a.kernels.to_string(),
        "--app-kernel-bytes",
        "4",
        // Idle a moment after the work, so the programs' run time is sampled complete.
        "--hold-ms",
        "400",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let workload = |stdout: &str| -> Result<f64> {
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("DRIVER "))
            .context("no DRIVER line")?;
        let v: serde_json::Value = serde_json::from_str(line)?;
        // The loop's CPU time: the traps are charged to it, preemption by other work is not.
        v["workload_cpu_ns"]
            .as_f64()
            .context("DRIVER line without workload_cpu_ns")
    };
    let p = ProbeRun {
        tracer,
        lib,
        sites: &sites,
        scratch: &scratch,
        envs: &envs,
        disturbed: Default::default(),
    };
    compare_tracers(
        &format!("probe cost ({} kernel-binary writes)", a.kernels),
        &p,
        &command,
        &workload,
        a.kernels as f64,
        1,
        a.runs,
    )
}
