//! `cargo xtask sim --ttsim-src DIR`: tt-tracer on the REAL tt-metal device bring-up, run by
//! Tenstorrent's simulator ttsim, held against a gdb oracle. Not part of `cargo xtask test`:
//! ttsim's source is in no package registry, so its release tarball or unpacked source directory
//! is an argument. What it does and what it saw: tests/ttsim/README.md.
//!
//! 1. builds ttsim's single-Wormhole `libttsim.so` into target/ttsim/wh/ (idempotent), next to
//!    the wheel's Wormhole SoC descriptor;
//! 2. prepares a runtime root: tests/ttnn/setup.sh's (venv, stub sfpi compiler), overlaid with
//!    the firmware-key link the simulated Wormhole needs;
//! 3. fast dispatch: `ttnn.open_device(0)` under `tt-tracer run`; the device never closes on the
//!    simulator, so the Python process is SIGKILLed once it is open (the exit path); then the
//!    same under gdb (tests/ttsim/gdb_sim.py);
//! 4. slow dispatch: open + close, traced and under gdb;
//! 5. prints a verdict table (tt-tracer vs gdb) and fails on any mismatch.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fs,
    os::unix::{
        fs::symlink,
        process::{CommandExt as _, ExitStatusExt as _},
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use serde_json::Value;

use crate::{cargo, render, require_root, root, run, setup};

#[derive(Args)]
pub struct SimArgs {
    /// ttsim's source: a release tarball (ttsim-*.tar.gz) or an unpacked source directory.
    #[arg(long, value_name = "DIR")]
    ttsim_src: PathBuf,
    /// Hard time limit of each simulator run, in seconds (the process group is killed then).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// tt-metal 0.81.1's firmware key on the simulated Wormhole; used only if detection fails.
const DOCUMENTED_KEY: &str = "2752194815558545679";
/// The 0.81.1 wheel's 72-L1-bank Wormhole firmware keys; their loadable contents are
/// byte-identical, so any of them serves the simulated Wormhole's key.
const DONOR_KEYS: [&str; 4] = [
    "1003041148146844629",
    "11488065270832105165",
    "12048829463863251468",
    "17767880916060184081",
];

pub fn sim(a: SimArgs) -> Result<()> {
    setup::setup()?;
    require_root("the simulator check")?;
    let src = fs::canonicalize(&a.ttsim_src)
        .with_context(|| format!("--ttsim-src {}", a.ttsim_src.display()))?;
    let limit = Duration::from_secs(a.timeout);
    let cache = root().join("target/ttsim");
    fs::create_dir_all(&cache)?;

    run(cargo().args(["build", "-p", "tt-tracer"]))?;
    let tracer = root().join("target/debug/tt-tracer");
    let ttnn = Ttnn::setup()?;
    let simlib = build_ttsim(&src, &cache, &ttnn)?;
    let key = firmware_key(&cache, &ttnn, &simlib, limit)?;
    let rt_root = runtime_root(&cache, &ttnn, &key)?;
    let sim = Sim {
        ttnn: &ttnn,
        simlib: &simlib,
        rt_root: &rt_root,
        runs: cache.join("runs"),
        limit,
    };

    let (mut rows, mut notes) = (Vec::new(), Vec::new());
    for slow in [false, true] {
        let mode = if slow { "slow" } else { "fast" };
        eprintln!("\nxtask sim: {mode} dispatch, traced");
        let traced = sim.traced(&tracer, slow)?;
        eprintln!("xtask sim: {mode} dispatch, under gdb");
        let oracle = sim.gdb(slow)?;
        compare(mode, &traced, &oracle, &mut rows)?;
        notes.extend(describe(mode, &oracle));
    }

    println!(
        "\nxtask sim: tt-tracer vs the gdb oracle (tests/ttsim/gdb_sim.py), ttsim Wormhole, \
         ttnn {}",
        ttnn.version
    );
    let w = |i: usize| {
        rows.iter()
            .map(|r: &Row| r.cells[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [w(0), w(1), w(2), w(3)];
    let line = |c: [&str; 4], v: &str| {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {v}",
            c[0],
            c[1],
            c[2],
            c[3],
            w0 = widths[0].max(4),
            w1 = widths[1],
            w2 = widths[2].max(9),
            w3 = widths[3].max(14)
        )
    };
    line(["mode", "check", "tt-tracer", "gdb / expected"], "verdict");
    for r in &rows {
        let c = &r.cells;
        line(
            [&c[0], &c[1], &c[2], &c[3]],
            if r.ok { "ok" } else { "MISMATCH" },
        );
    }
    for n in &notes {
        println!("{n}");
    }
    let bad = rows.iter().filter(|r| !r.ok).count();
    if bad > 0 {
        bail!(
            "{bad} of {} checks mismatched (logs under {})",
            rows.len(),
            cache.join("runs").display()
        );
    }
    println!("{} checks, all agree", rows.len());
    Ok(())
}

// ------------------------------------------------------------------------------ the runtime

/// tests/ttnn/setup.sh's results (it is idempotent: about a second when already set up).
struct Ttnn {
    python: PathBuf,
    lib: PathBuf,
    env: Vec<(String, String)>,
    /// setup.sh's runtime root (symlinks into the package, stub sfpi compiler).
    root: PathBuf,
    /// The installed package's tt_metal/ directory.
    tt_metal: PathBuf,
    version: String,
}

impl Ttnn {
    fn setup() -> Result<Self> {
        let cache = root().join("target/ttnn-cache");
        let mut cmd = Command::new("bash");
        cmd.arg(root().join("tests/ttnn/setup.sh")).arg(&cache);
        eprintln!("xtask: $ {}", render(&cmd));
        let out = cmd.stderr(Stdio::inherit()).output()?;
        if !out.status.success() {
            bail!("tests/ttnn/setup.sh failed: {}", out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let get = |k: &str| -> Result<PathBuf> {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(PathBuf::from)
                .with_context(|| format!("setup.sh printed no {k}="))
        };
        let python = get("TTNN_PYTHON")?;
        let env: Vec<(String, String)> = fs::read_to_string(get("TTNN_ENV_FILE")?)?
            .lines()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let root = env
            .iter()
            .find(|(k, _)| k == "TT_METAL_RUNTIME_ROOT")
            .map(|(_, v)| PathBuf::from(v))
            .context("setup.sh's env file has no TT_METAL_RUNTIME_ROOT")?;
        let tt_metal = fs::canonicalize(root.join("tt_metal"))?;
        let out = Command::new(&python)
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('ttnn'))",
            ])
            .output()?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(Self {
            python,
            lib: get("TTNN_LIB")?,
            env,
            root,
            tt_metal,
            version,
        })
    }
}

/// Builds (or finds built) ttsim's single-Wormhole simulator; returns target/ttsim/wh/libttsim_wh.so,
/// which has the wheel's Wormhole SoC descriptor beside it as tt-metal requires.
fn build_ttsim(src: &Path, cache: &Path, ttnn: &Ttnn) -> Result<PathBuf> {
    let name = src
        .file_name()
        .and_then(|n| n.to_str())
        .context("--ttsim-src has no file name")?;
    let build = if src.is_dir() {
        if !src.join("make.py").is_file() || !src.join("src/rules.py").is_file() {
            bail!(
                "{} is not ttsim's source (no make.py, src/rules.py)",
                src.display()
            );
        }
        // A copy under target/ (build outputs excluded); tar keeps the modification times, so
        // make.py's own up-to-date check still holds for an unchanged source.
        let dest = cache.join("src").join(name);
        fs::create_dir_all(&dest)?;
        run(Command::new("bash")
            .args([
                "-c",
                "tar -C \"$1\" --exclude=_out -cf - . | tar -C \"$2\" -xf -",
                "copy",
            ])
            .arg(src)
            .arg(&dest))?;
        dest
    } else {
        let stem = name
            .strip_suffix(".tar.gz")
            .or_else(|| name.strip_suffix(".tgz"))
            .with_context(|| format!("{name}: neither a directory nor a .tar.gz"))?;
        let dest = cache.join("src").join(stem);
        if !dest.join("make.py").is_file() {
            let tmp = cache.join("src").join(format!("{stem}.unpacking"));
            let _ = fs::remove_dir_all(&tmp);
            fs::create_dir_all(&tmp)?;
            run(Command::new("tar").arg("-xzf").arg(src).arg("-C").arg(&tmp))?;
            // A release tarball holds one top directory (ttsim-1.10.0/).
            let top = if tmp.join("make.py").is_file() {
                tmp.clone()
            } else {
                let dirs: Vec<PathBuf> = fs::read_dir(&tmp)?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("make.py").is_file())
                    .collect();
                match dirs.as_slice() {
                    [one] => one.clone(),
                    _ => bail!("{name}: no ttsim source (make.py) at its top"),
                }
            };
            let _ = fs::remove_dir_all(&dest);
            fs::rename(&top, &dest)?;
            let _ = fs::remove_dir_all(&tmp);
        }
        dest
    };
    // make.py is incremental: a no-op (≈0.3 s) when nothing changed, ≈15 s on 2 cores when cold.
    run(Command::new("timeout")
        .args([
            "900",
            "python3",
            "make.py",
            "-j2",
            "src/_out/release_wh/libttsim.so",
        ])
        .current_dir(&build)
        .stdout(std::io::stderr()))?;
    let out = cache.join("wh");
    fs::create_dir_all(&out)?;
    let lib = out.join("libttsim_wh.so");
    copy_if_changed(&build.join("src/_out/release_wh/libttsim.so"), &lib)?;
    copy_if_changed(
        &ttnn
            .tt_metal
            .join("soc_descriptors/wormhole_b0_80_arch.yaml"),
        &out.join("soc_descriptor.yaml"),
    )?;
    Ok(lib)
}

fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let new = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if fs::read(to).ok().as_deref() != Some(new.as_slice()) {
        let tmp = to.with_extension("tmp");
        fs::write(&tmp, &new)?;
        fs::rename(&tmp, to)?;
    }
    Ok(())
}

/// The firmware key tt-metal computes on the simulated Wormhole. A first run creates
/// `TT_METAL_CACHE/tt-metal-cache<key>/` within about a second: read it there (once per ttnn
/// version; cached in target/ttsim/), falling back to the documented key.
fn firmware_key(cache: &Path, ttnn: &Ttnn, simlib: &Path, limit: Duration) -> Result<String> {
    let known = cache.join(format!("firmware-key-{}", ttnn.version));
    if let Ok(k) = fs::read_to_string(&known) {
        return Ok(k.trim().to_string());
    }
    let dir = cache.join("runs/key-probe");
    fresh_run_dir(&dir)?;
    let mut cmd = Command::new(&ttnn.python);
    cmd.arg(root().join("tests/ttsim/open_device.py"))
        .arg("--ready")
        .arg(dir.join("ready"));
    sim_env(&mut cmd, ttnn, simlib, &ttnn.root, &dir, false);
    eprintln!("xtask sim: detecting the simulated Wormhole's firmware key (a short untraced run)");
    let mut group = Group::spawn(cmd, &dir, limit)?;
    let deadline = Instant::now() + limit.min(Duration::from_secs(60));
    let mut key = None;
    while key.is_none() && Instant::now() < deadline && !group.exited()? {
        key = fs::read_dir(dir.join("cache"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("tt-metal-cache")
                    .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
                    .map(str::to_string)
            })
            .next();
        std::thread::sleep(Duration::from_millis(50));
    }
    group.kill();
    let key = match key {
        Some(k) => {
            fs::write(&known, format!("{k}\n"))?;
            eprintln!("xtask sim: firmware key {k}");
            k
        }
        None => {
            eprintln!(
                "xtask sim: no tt-metal-cache<key> directory appeared; using the documented key \
                 {DOCUMENTED_KEY} (log: {})",
                dir.join("log").display()
            );
            DOCUMENTED_KEY.to_string()
        }
    };
    Ok(key)
}

/// target/ttsim/root: setup.sh's runtime root, except that tt_metal/pre-compiled/ also has
/// `<key>` → one of the wheel's byte-identical 72-bank Wormhole firmware directories (unless the
/// wheel has that key itself). Rebuilt on every run (a few hundred symlinks).
fn runtime_root(cache: &Path, ttnn: &Ttnn, key: &str) -> Result<PathBuf> {
    let dir = cache.join("root");
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(dir.join("tt_metal/pre-compiled"))?;
    for e in fs::read_dir(&ttnn.root)?.flatten() {
        if e.file_name() != "tt_metal" {
            symlink(e.path(), dir.join(e.file_name()))?;
        }
    }
    for e in fs::read_dir(&ttnn.tt_metal)?.flatten() {
        if e.file_name() != "pre-compiled" {
            symlink(e.path(), dir.join("tt_metal").join(e.file_name()))?;
        }
    }
    let precompiled = ttnn.tt_metal.join("pre-compiled");
    for e in fs::read_dir(&precompiled)?.flatten() {
        symlink(
            e.path(),
            dir.join("tt_metal/pre-compiled").join(e.file_name()),
        )?;
    }
    if precompiled.join(key).is_dir() {
        eprintln!("xtask sim: the wheel has firmware for key {key}: no link needed");
    } else {
        let donor = DONOR_KEYS
            .iter()
            .find(|k| precompiled.join(k).is_dir())
            .with_context(|| {
                format!(
                    "the wheel has no firmware for key {key} and none of the 72-bank Wormhole keys \
                     {DONOR_KEYS:?} (another ttnn release?): add tt_metal/pre-compiled/{key} by hand"
                )
            })?;
        symlink(
            precompiled.join(donor),
            dir.join("tt_metal/pre-compiled").join(key),
        )?;
        eprintln!(
            "xtask sim: runtime root {}: pre-compiled/{key} → {donor}",
            dir.display()
        );
    }
    Ok(dir)
}

fn fresh_run_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    for sub in ["cache", "logs", "tmp"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// What every simulator run gets: setup.sh's variables, then the simulator, its runtime root and
/// per-run directories; never a mock cluster.
fn sim_env(cmd: &mut Command, ttnn: &Ttnn, simlib: &Path, rt_root: &Path, dir: &Path, slow: bool) {
    cmd.envs(ttnn.env.iter().map(|(k, v)| (k, v)))
        .env("TT_METAL_RUNTIME_ROOT", rt_root)
        .env("TT_METAL_SIMULATOR", simlib)
        .env(
            "TT_METAL_CACHE",
            format!("{}/", dir.join("cache").display()),
        )
        .env("TT_METAL_LOGS_PATH", dir.join("logs"))
        .env("TMPDIR", dir.join("tmp"))
        .env_remove("TT_METAL_MOCK_CLUSTER_DESC_PATH");
    if slow {
        cmd.env("TT_METAL_SLOW_DISPATCH_MODE", "1");
    } else {
        cmd.env_remove("TT_METAL_SLOW_DISPATCH_MODE");
    }
}

// ------------------------------------------------------------------------------ the runs

struct Sim<'a> {
    ttnn: &'a Ttnn,
    simlib: &'a Path,
    rt_root: &'a Path,
    runs: PathBuf,
    limit: Duration,
}

struct Traced {
    /// tt-tracer's exit code (the command's: 137 when it was SIGKILLed).
    exit: i32,
    pid: u64,
    report: Value,
    events: Vec<Value>,
}

impl Sim<'_> {
    /// `ttnn.open_device(0)`; fast dispatch: SIGKILLed once open, slow dispatch: closed.
    /// Returns the run's exit status and the workload's pid.
    fn workload(
        &self,
        name: &str,
        prefix: Vec<OsString>,
        extra_env: &[(&str, PathBuf)],
        slow: bool,
    ) -> Result<(i32, u64)> {
        let dir = self.runs.join(name);
        fresh_run_dir(&dir)?;
        let ready = dir.join("ready");
        let mut argv = prefix;
        argv.extend([
            self.ttnn.python.clone().into_os_string(),
            root().join("tests/ttsim/open_device.py").into_os_string(),
            "--ready".into(),
            ready.clone().into_os_string(),
        ]);
        if slow {
            argv.push("--close".into());
        }
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        sim_env(&mut cmd, self.ttnn, self.simlib, self.rt_root, &dir, slow);
        cmd.envs(extra_env.iter().map(|(k, v)| (k, v)));
        let t = Instant::now();
        let mut group = Group::spawn(cmd, &dir, self.limit)?;
        let deadline = t + self.limit;
        // Fast dispatch: close would hang, so wait until the device is open, then SIGKILL it.
        let mut pid = None;
        while pid.is_none() && Instant::now() < deadline && !group.exited()? {
            pid = fs::read_to_string(&ready)
                .ok()
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .and_then(|v| v["pid"].as_u64());
            if pid.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // SAFETY: kill(2) with a pid the workload wrote itself.
        if let (Some(p), false) = (pid, slow) {
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
        let status = group.wait(deadline).with_context(|| {
            format!(
                "{name}: no result within {} s; log: {}",
                self.limit.as_secs(),
                dir.join("log").display()
            )
        })?;
        let pid = pid.with_context(|| {
            format!(
                "{name}: the device never opened (exit {status}); log: {}",
                dir.join("log").display()
            )
        })?;
        eprintln!(
            "xtask sim: {name}: pid {pid}, exit {status} after {:.1} s (log: {})",
            t.elapsed().as_secs_f64(),
            dir.join("log").display()
        );
        Ok((status, pid))
    }

    fn traced(&self, tracer: &Path, slow: bool) -> Result<Traced> {
        let name = if slow { "slow-traced" } else { "fast-traced" };
        let dir = self.runs.join(name);
        let (report, events) = (dir.join("report.json"), dir.join("events.jsonl"));
        let prefix: Vec<OsString> = vec![
            tracer.into(),
            "run".into(),
            "--lib".into(),
            self.ttnn.lib.clone().into(),
            "--report-file".into(),
            report.clone().into(),
            "--events-file".into(),
            events.clone().into(),
            "--".into(),
        ];
        let (exit, pid) = self.workload(name, prefix, &[], slow)?;
        let report: Value = serde_json::from_str(
            &fs::read_to_string(&report).context("tt-tracer wrote no report")?,
        )?;
        let events = fs::read_to_string(&events)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<Vec<Value>, _>>()?;
        Ok(Traced {
            exit,
            pid,
            report,
            events,
        })
    }

    fn gdb(&self, slow: bool) -> Result<Value> {
        let name = if slow { "slow-gdb" } else { "fast-gdb" };
        let prefix: Vec<OsString> = vec![
            "gdb".into(),
            "-q".into(),
            "-batch".into(),
            "-x".into(),
            root().join("tests/ttsim/gdb_sim.py").into(),
            "--args".into(),
        ];
        let hits = self.runs.join(name).join("hits.json");
        let (exit, _) = self.workload(name, prefix, &[("SIM_HITS_OUT", hits.clone())], slow)?;
        if exit != 0 {
            bail!("gdb exited {exit}");
        }
        let v: Value = serde_json::from_str(&fs::read_to_string(&hits)?)?;
        if let Some(u) = v["unresolved"].as_array().filter(|u| !u.is_empty()) {
            bail!("gdb could not place breakpoints on {u:?}");
        }
        if let Some(e) = v["errors"].as_array().filter(|e| !e.is_empty()) {
            bail!("gdb could not read arguments: {e:?}");
        }
        Ok(v)
    }
}

/// A command in its own process group under coreutils `timeout -s KILL` (a second, outer limit
/// that holds even if xtask itself dies); the group is killed on every way out.
struct Group {
    child: Child,
    status: Option<i32>,
}

impl Group {
    fn spawn(cmd: Command, dir: &Path, limit: Duration) -> Result<Self> {
        let log = fs::File::create(dir.join("log"))?;
        let mut outer = Command::new("timeout");
        outer
            .args(["-s", "KILL", &(limit.as_secs() + 15).to_string()])
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => outer.env(k, v),
                None => outer.env_remove(k),
            };
        }
        eprintln!("xtask: $ {}", render(&outer));
        Ok(Self {
            child: outer
                .spawn()
                .with_context(|| format!("starting {}", render(&outer)))?,
            status: None,
        })
    }

    fn exited(&mut self) -> Result<bool> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()?
                .map(|s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)));
        }
        Ok(self.status.is_some())
    }

    /// Waits for the command until `deadline`; then kills the whole group and fails.
    fn wait(&mut self, deadline: Instant) -> Result<i32> {
        while !self.exited()? {
            if Instant::now() >= deadline {
                self.kill();
                bail!("timed out: killed process group {}", self.child.id());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(self.status.unwrap())
    }

    fn pgid(&self) -> i32 {
        self.child.id() as i32
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) on the group this struct created (process_group(0): pgid = its pid).
        unsafe { libc::kill(-self.pgid(), libc::SIGKILL) };
        let _ = self.child.wait();
        self.status.get_or_insert(128 + libc::SIGKILL);
    }
}

impl Drop for Group {
    /// Whatever is left of the group (tt-tracer's probe-detaching helper takes a few seconds
    /// after tt-tracer has exited) gets 15 s, then SIGKILL.
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while group_alive(self.pgid()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }
}

/// Any process left in process group `pgid` (/proc/PID/stat: field 5, after the command name).
fn group_alive(pgid: i32) -> bool {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(2)?.parse::<i32>().ok()
                })
                == Some(pgid)
        })
}

// ------------------------------------------------------------------------------ comparison

struct Row {
    cells: [String; 4],
    ok: bool,
}

/// (count, bytes)
type CountBytes = (u64, u64);

fn kb(v: &Value) -> CountBytes {
    (
        v["count"].as_u64().unwrap_or(0),
        v["bytes"].as_u64().unwrap_or(0),
    )
}

fn show((n, b): CountBytes) -> String {
    format!("{n} / {b} B")
}

/// What gdb saw, per core: the lines printed under the table.
fn describe(mode: &str, o: &Value) -> Vec<String> {
    let empty = vec![];
    let xy = |v: &Value| format!("({},{})", v[0], v[1]);
    let mut kernels: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for k in o["kernels"].as_array().unwrap_or(&empty) {
        let ctx = k["context"].as_str().unwrap_or("?").to_string();
        kernels
            .entry((ctx, xy(&k["core"])))
            .or_default()
            .push(k["bytes"].as_u64().unwrap_or(0));
    }
    let mut out = vec![];
    if kernels.is_empty() {
        out.push(format!("{mode}: gdb: no write_binary_to_address"));
    }
    for ((ctx, core), sizes) in kernels {
        out.push(format!(
            "{mode}: gdb: write_binary_to_address in {} on core {core}: {} binar{}, {:?} B",
            match ctx.as_str() {
                "dispatch" => "configure_command_queue_programs",
                "fabric" => "configure_fabric",
                _ => "no bring-up context",
            },
            sizes.len(),
            if sizes.len() == 1 { "y" } else { "ies" },
            sizes
        ));
    }
    let mut fw: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for f in o["firmware"].as_array().unwrap_or(&empty) {
        let how = if f["end"].is_null() {
            "single-core writes".to_string()
        } else {
            format!("multicasts to {}-{}", xy(&f["core"]), xy(&f["end"]))
        };
        fw.entry((f["core_type"].as_str().unwrap_or("?").to_string(), how))
            .or_default()
            .push(f["bytes"].as_u64().unwrap_or(0));
    }
    for ((core_type, how), mut sizes) in fw {
        let n = sizes.len();
        sizes.dedup();
        out.push(format!(
            "{mode}: gdb: firmware on {core_type}: {n} {how}, {:?} B",
            sizes
        ));
    }
    out
}

fn compare(mode: &str, t: &Traced, o: &Value, rows: &mut Vec<Row>) -> Result<()> {
    let mut row = |what: &str, tracer: String, oracle: String, ok: bool| {
        rows.push(Row {
            cells: [mode.into(), what.into(), tracer, oracle],
            ok,
        })
    };
    let process = t.report["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["pid"].as_u64() == Some(t.pid)))
        .with_context(|| format!("the report has no process {}", t.pid))?;
    let dev = &process["devices"]["0"];
    if dev.is_null() {
        bail!("the report has no device 0 for pid {}", t.pid);
    }
    let loaded = &dev["loaded"];
    let empty = vec![];
    let kernels = o["kernels"].as_array().unwrap_or(&empty);
    let firmware = o["firmware"].as_array().unwrap_or(&empty);
    let sum = |ctx: Option<&str>| {
        kernels
            .iter()
            .filter(|k| ctx.is_none_or(|c| k["context"] == c))
            .fold((0, 0), |(n, b), k| {
                (n + 1, b + k["bytes"].as_u64().unwrap_or(0))
            })
    };
    let count = |f: &str| o["counts"][f].as_u64().unwrap_or(0);

    // Exit: fast dispatch is SIGKILLed (tt-tracer returns 128+9), slow dispatch exits 0.
    let want_exit = if mode == "fast" { 137 } else { 0 };
    let status = &process["exit"]["status"];
    let seen = format!("exit {}, process {}", t.exit, status);
    let want = if mode == "fast" {
        r#"exit 137, process {"signal":9}"#
    } else {
        r#"exit 0, process {"code":0}"#
    };
    row(
        "tt-tracer exit / process status",
        seen.clone(),
        want.into(),
        t.exit == want_exit && seen == want,
    );

    // Kernels: inside configure_command_queue_programs → dispatch, configure_fabric → fabric.
    let dispatch = kb(&loaded["dispatch"]);
    let o_dispatch = sum(Some("dispatch"));
    row(
        "dispatch kernels (count / bytes)",
        show(dispatch),
        show(o_dispatch),
        dispatch == o_dispatch && (mode == "slow" || dispatch.0 > 0),
    );
    let per_kernel = |evs: Vec<(u64, u64)>| {
        let mut m = BTreeMap::new();
        for e in evs {
            *m.entry(e).or_insert(0u32) += 1;
        }
        m
    };
    let t_each = per_kernel(
        t.events
            .iter()
            .filter(|e| e["record"] == "kernel_loaded" && e["pid"].as_u64() == Some(t.pid))
            .filter(|e| e["class"] == "dispatch")
            .map(|e| {
                (
                    e["address"].as_u64().unwrap_or(0),
                    e["bytes"].as_u64().unwrap_or(0),
                )
            })
            .collect(),
    );
    let o_each = per_kernel(
        kernels
            .iter()
            .filter(|k| k["context"] == "dispatch")
            .map(|k| {
                (
                    k["address"].as_u64().unwrap_or(0),
                    k["bytes"].as_u64().unwrap_or(0),
                )
            })
            .collect(),
    );
    // "28 B at 0x89a0 ×2, 0x89c0, …" (one size), else "0x89a0: 28 B ×2, …".
    let each = |m: &BTreeMap<(u64, u64), u32>| {
        if m.is_empty() {
            return "none".to_string();
        }
        let times = |n: &u32| {
            if *n > 1 {
                format!(" ×{n}")
            } else {
                String::new()
            }
        };
        let sizes: std::collections::BTreeSet<u64> = m.keys().map(|(_, b)| *b).collect();
        if let [size] = sizes.iter().collect::<Vec<_>>().as_slice() {
            let addrs: Vec<String> = m
                .iter()
                .map(|((a, _), n)| format!("{a:#x}{}", times(n)))
                .collect();
            format!("{size} B at {}", addrs.join(", "))
        } else {
            m.iter()
                .map(|((a, b), n)| format!("{a:#x}: {b} B{}", times(n)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    row(
        "dispatch kernels (each: address, bytes)",
        each(&t_each),
        each(&o_each),
        t_each == o_each,
    );
    let fabric = kb(&loaded["fabric"]);
    let o_fabric = sum(Some("fabric"));
    row(
        "fabric kernels",
        show(fabric),
        show(o_fabric),
        fabric == o_fabric,
    );
    let other = ["init", "application", "program_buffers"]
        .iter()
        .map(|c| kb(&loaded[c]))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let o_other = sum(Some("none"));
    row(
        "other kernels (init+application+program)",
        show(other),
        show(o_other),
        other == o_other,
    );
    let role_entries = |role: &str| {
        t.events
            .iter()
            .filter(|e| e["record"] == "context_entered" && e["role"] == role)
            .filter(|e| e["pid"].as_u64() == Some(t.pid))
            .count() as u64
    };
    let (cq, fab) = (
        role_entries("dispatch_context"),
        role_entries("fabric_context"),
    );
    let (o_cq, o_fab) = (
        count("tt::tt_metal::Device::configure_command_queue_programs"),
        count("tt::tt_metal::Device::configure_fabric"),
    );
    row(
        "calls: configure_command_queue_programs / _fabric",
        format!("{cq} / {fab}"),
        format!("{o_cq} / {o_fab}"),
        (cq, fab) == (o_cq, o_fab),
    );

    // Firmware: test_load_write_read_risc_binary / test_load_multicast_write_risc_binary.
    let fw = kb(&loaded["firmware"]);
    let o_fw = firmware.iter().fold((0, 0), |(n, b), f| {
        (n + 1, b + f["bytes"].as_u64().unwrap_or(0))
    });
    row(
        "firmware writes (count / bytes)",
        show(fw),
        show(o_fw),
        fw == o_fw && fw.0 > 0,
    );
    let mut by_core: BTreeMap<String, (CountBytes, CountBytes)> = BTreeMap::new();
    if let Some(m) = dev["firmware_by_core"].as_object() {
        for (k, v) in m {
            by_core.entry(k.clone()).or_default().0 = kb(v);
        }
    }
    for f in firmware {
        let e = &mut by_core
            .entry(f["core_type"].as_str().unwrap_or("other").to_string())
            .or_default()
            .1;
        e.0 += 1;
        e.1 += f["bytes"].as_u64().unwrap_or(0);
    }
    for (core, (tr, or)) in by_core {
        row(
            &format!("  firmware on {core}"),
            show(tr),
            show(or),
            tr == or,
        );
    }

    // Release: fast dispatch never closes (everything goes at the kill); slow dispatch closes.
    let closed = !dev["closed_ns"].is_null();
    let resident = [
        "fabric",
        "dispatch",
        "init",
        "application",
        "program_buffers",
    ]
    .iter()
    .map(|c| kb(&dev["resident"][c]).0)
    .sum::<u64>();
    row(
        "device closed / kernels still resident",
        format!("{closed} / {resident}"),
        format!("{} / 0", count("tt::tt_metal::Device::close") > 0),
        closed == (count("tt::tt_metal::Device::close") > 0) && resident == 0,
    );
    if mode == "fast" {
        let released = kb(&process["exit"]["released"]["dispatch"]);
        row(
            "dispatch kernels released by the kill",
            show(released),
            show(o_dispatch),
            released == o_dispatch,
        );
    }
    let lost: u64 = t.report["lost"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(u64::MAX);
    let complete = t.report["complete"] == true;
    row(
        "events lost / report complete",
        format!("{lost} / {complete}"),
        "0 / true".into(),
        lost == 0 && complete,
    );
    Ok(())
}
