//! The baselines a probe figure is measured against in the same run: bpftrace counting hits on
//! the same functions (the bare uprobe trap plus the cheapest program: the floor), bpftrace
//! printing a line per hit (what one reaches for first), and the kernel's own per-program run
//! time (`kernel.bpf_stats_enabled`) of whichever tracer runs.

use std::{
    fs::File,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::setup;

/// Installs Debian's bpftrace (the benchmarks only; nothing else needs it), idempotently.
pub fn ensure_bpftrace() -> Result<()> {
    if !setup::on_path("bpftrace") {
        setup::apt_install(&["bpftrace"])?;
    }
    if !setup::on_path("bpftrace") {
        bail!("the bpftrace package installed, but bpftrace is not on PATH");
    }
    Ok(())
}

/// One function the baselines probe: its mangled name, and whether its return is probed too
/// (a `call_with_return` role pays two traps per call).
#[derive(Clone, Debug)]
pub struct Site {
    pub mangled: String,
    pub with_return: bool,
    /// The library it is in, when not the one the script is for (a companion: `_ttnncpp.so`).
    pub file: Option<std::path::PathBuf>,
}

/// `tt-tracer probes --json --lib LIB`.
fn probes_json(tracer: &Path, lib: &Path) -> Result<serde_json::Value> {
    let out = Command::new(tracer)
        .args(["probes", "--json", "--lib"])
        .arg(lib)
        .output()
        .context("tt-tracer probes")?;
    serde_json::from_slice(&out.stdout).context("tt-tracer probes --json output")
}

/// The attach points of `roles` in `lib`, as `tt-tracer probes --json` resolves them.
pub fn sites(tracer: &Path, lib: &Path, roles: &[&str]) -> Result<Vec<Site>> {
    let v = probes_json(tracer, lib)?;
    let mut sites = Vec::new();
    for role in roles {
        let r = v["roles"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == *role))
            .with_context(|| format!("role {role} not in tt-tracer probes --json"))?;
        let with_return = r["kind"] == "call_with_return" || r["kind"] == "context";
        let attach = r["attach"].as_array().filter(|a| !a.is_empty());
        for p in attach.with_context(|| format!("role {role} does not resolve in {lib:?}"))? {
            sites.push(Site {
                mangled: p["mangled"]
                    .as_str()
                    .context("attach point without a mangled name")?
                    .to_string(),
                with_return,
                file: None,
            });
        }
    }
    Ok(sites)
}

/// The attach points of `roles` for the ttnn operation `op` (its full type) in the libraries
/// found beside `lib`, as `tt-tracer probes --json` resolves them.
pub fn operation_sites(tracer: &Path, lib: &Path, roles: &[&str], op: &str) -> Result<Vec<Site>> {
    let v = probes_json(tracer, lib)?;
    let mut sites = Vec::new();
    for c in v["companions"].as_array().into_iter().flatten() {
        let file = std::path::PathBuf::from(c["library"].as_str().context("companion path")?);
        for r in c["roles"].as_array().into_iter().flatten() {
            if !roles.iter().any(|id| r["id"] == *id) {
                continue;
            }
            let with_return = r["kind"] == "call_with_return" || r["kind"] == "context";
            for p in r["attach"].as_array().into_iter().flatten() {
                if p["op"] == op {
                    sites.push(Site {
                        mangled: p["mangled"].as_str().context("mangled name")?.to_string(),
                        with_return,
                        file: Some(file.clone()),
                    });
                }
            }
        }
    }
    if sites.is_empty() {
        bail!("no attach point for {op} beside {}", lib.display());
    }
    Ok(sites)
}

/// What a bpftrace baseline does on every hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `@hits = count()`: the cheapest useful program.
    Count,
    /// `printf` of the thread and first argument, one line per hit (to a file).
    Printf,
}

/// A bpftrace script probing every site (and every return of a `with_return` site).
pub fn script(lib: &Path, sites: &[Site], action: Action) -> String {
    let body = match action {
        Action::Count => "{ @hits = count(); }",
        Action::Printf => "{ printf(\"%d %lu\\n\", tid, arg1); }",
    };
    // A return has no arguments: it prints the return value.
    let ret_body = match action {
        Action::Count => body,
        Action::Printf => "{ printf(\"%d %lu\\n\", tid, retval); }",
    };
    let mut s = String::new();
    for site in sites {
        let lib = site.file.as_deref().unwrap_or(lib).display();
        s.push_str(&format!("uprobe:{lib}:{} {body}\n", site.mangled));
        if site.with_return {
            s.push_str(&format!("uretprobe:{lib}:{} {ret_body}\n", site.mangled));
        }
    }
    s
}

/// `bpftrace -e SCRIPT -o OUT -c COMMAND`: bpftrace starts the command once its probes are
/// attached; the command's own output is the caller's (bpftrace's goes to `out`). bpftrace
/// splits COMMAND on spaces, so no argument may contain one.
pub fn bpftrace_command(script: &str, out: &Path, command: &[String]) -> Result<Command> {
    if command.iter().any(|a| a.contains(' ')) {
        bail!("bpftrace -c cannot pass arguments with spaces: {command:?}");
    }
    let mut c = Command::new("bpftrace");
    c.arg("-e")
        .arg(script)
        .arg("-o")
        .arg(out)
        .arg("-c")
        .arg(command.join(" "));
    Ok(c)
}

/// Run time the kernel accounted to one BPF program (with `kernel.bpf_stats_enabled`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgStats {
    pub run_cnt: u64,
    pub run_time_ns: u64,
    pub verified_insns: u64,
}

impl ProgStats {
    pub fn ns_per_run(&self) -> f64 {
        if self.run_cnt == 0 {
            return 0.0;
        }
        self.run_time_ns as f64 / self.run_cnt as f64
    }
}

/// The BPF programs process `pid` holds, from /proc/PID/fdinfo (uprobe programs are of type 2,
/// kprobe).
pub fn prog_stats(pid: u32) -> Vec<ProgStats> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if field("prog_type:") != Some(2) {
            continue;
        }
        out.push(ProgStats {
            run_cnt: field("run_cnt:").unwrap_or(0),
            run_time_ns: field("run_time_ns:").unwrap_or(0),
            verified_insns: field("verified_insns:").unwrap_or(0),
        });
    }
    out
}

/// Waits for `child`, sampling the uprobe programs it holds every few ms; returns its output
/// and, per program, the last sample (the caller's command should idle a moment after its
/// work, so the last sample sees every hit). Programs that never ran are left out.
pub fn wait_sampling(mut child: Child) -> Result<(std::process::Output, Vec<ProgStats>)> {
    let pid = child.id();
    let mut last: Vec<ProgStats> = Vec::new();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        let now = prog_stats(pid);
        if now.iter().map(|p| p.run_cnt).sum::<u64>() >= last.iter().map(|p| p.run_cnt).sum() {
            last = now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output()?;
    last.retain(|p| p.run_cnt > 0);
    Ok((out, last))
}

/// Spawns `cmd` with stdout piped and stderr discarded.
pub fn spawn(cmd: &mut Command) -> Result<Child> {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", crate::render(cmd)))
}

/// `kernel.bpf_stats_enabled` on while alive (it costs two clock reads per program run, so
/// timed runs are made without it), restored when dropped.
pub struct BpfStats {
    before: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub fn enable() -> Result<BpfStats> {
        let before =
            std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, "1").with_context(|| format!("writing {BPF_STATS}"))?;
        Ok(BpfStats { before })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, self.before.trim());
    }
}

/// A copy of `lib` beside it under another file name, with the environment that makes a
/// program load it in place of `libtt_metal.so` (LD_PRELOAD: the copy keeps the SONAME, so the
/// loader takes it for the `libtt_metal.so` the program needs). A system-wide tracer running
/// on the same host (another `tt-tracer watch`) discovers libraries by that file name: it would
/// probe the benchmark's processes too and its traps would count in every figure.
pub fn private_copy(lib: &Path) -> Result<(std::path::PathBuf, (String, String))> {
    let copy = lib.with_file_name("libtt_metal-bench.so");
    let fresh = std::fs::metadata(&copy)
        .and_then(|c| Ok((c.len(), c.modified()?)))
        .ok()
        == std::fs::metadata(lib)
            .and_then(|l| Ok((l.len(), l.modified()?)))
            .ok();
    if !fresh {
        std::fs::copy(lib, &copy).with_context(|| format!("copying {}", lib.display()))?;
        let mtime = std::fs::metadata(lib)?.modified()?;
        File::options()
            .write(true)
            .open(&copy)?
            .set_modified(mtime)?;
    }
    let env = ("LD_PRELOAD".to_string(), copy.display().to_string());
    Ok((copy, env))
}
