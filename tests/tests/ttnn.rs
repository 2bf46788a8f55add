//! The memory ledger on the REAL tt-metal runtime (PyPI ttnn 0.81.1, its real libtt_metal.so) on
//! tt-metal's mock devices. Each scenario's ledger is compared, exactly, with an oracle the
//! workload takes from tt-metal itself (graph capture, `reports.get_buffers`, `get_memory_view`;
//! tests/ttnn/README.md), never with numbers from an earlier run.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use integration_tests::*;
use serde_json::Value;
use test_support::prometheus::{free_port, promtool_check_metrics, scrape, Prometheus, Sample};

struct Ttnn {
    python: String,
    lib: String,
    env: Vec<(String, String)>,
}

/// tests/ttnn/setup.sh into target/ttnn-cache (idempotent: downloads once).
fn ttnn() -> &'static Ttnn {
    static T: OnceLock<Ttnn> = OnceLock::new();
    T.get_or_init(|| {
        let root = workspace_root();
        let out = Command::new("bash")
            .arg(root.join("tests/ttnn/setup.sh"))
            .arg(root.join("target/ttnn-cache"))
            .output()
            .expect("running tests/ttnn/setup.sh");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tests/ttnn/setup.sh failed (it needs the Python package registry, Debian's packages and a CPython 3.10):\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("setup.sh printed no {k}=:\n{text}"))
                .to_string()
        };
        let env = std::fs::read_to_string(get("TTNN_ENV_FILE"))
            .expect("ttnn env file")
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        Ttnn { python: get("TTNN_PYTHON"), lib: get("TTNN_LIB"), env }
    })
}

struct Scenario {
    traced: Traced,
    oracle: Value,
}

fn run_dir(name: &str) -> PathBuf {
    let d = target_dir().join("it-scratch").join(format!(
        "ttnn-{name}-{}-{}",
        std::process::id(),
        monotonic_ns()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Ttnn {
    /// The variables every workload runs with (setup.sh's env file).
    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// `python workload.py NAME EXTRA… --oracle DIR/oracle.json --run-dir DIR/run`: the command
/// line of one scenario run (the oracle path is DIR/oracle.json).
fn workload_argv(name: &str, extra: &[&str], dir: &std::path::Path) -> Vec<String> {
    let t = ttnn();
    let workload = workspace_root().join("tests/ttnn/workload.py");
    let mut args: Vec<String> = vec![t.python.clone(), workload.display().to_string()];
    args.push(name.into());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "--oracle".into(),
        dir.join("oracle.json").display().to_string(),
        "--run-dir".into(),
        dir.join("run").display().to_string(),
    ]);
    args
}

/// The oracle the workload wrote into `dir`; `context` goes into the failure message.
fn read_oracle(dir: &std::path::Path, context: &str) -> Value {
    let text = std::fs::read_to_string(dir.join("oracle.json"))
        .unwrap_or_else(|e| panic!("no oracle from the workload ({e}); {context}"));
    serde_json::from_str(&text).expect("oracle JSON")
}

/// `tt-tracer run --lib <ttnn's libtt_metal.so> -- <scenario>`.
fn scenario(name: &str, extra: &[&str]) -> Scenario {
    scenario_run(name, extra, true)
}

/// `tt-tracer run [--lib <ttnn's libtt_metal.so>] -- <scenario>`: without `--lib` the tracer
/// finds the library as the workload loads it.
fn scenario_run(name: &str, extra: &[&str], with_lib: bool) -> Scenario {
    scenario_run_with(name, extra, with_lib, &[])
}

/// [`scenario_run`] with tracer options before `--lib`.
fn scenario_run_with(name: &str, extra: &[&str], with_lib: bool, options: &[&str]) -> Scenario {
    require_root();
    let t = ttnn();
    let dir = run_dir(name);
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(options.iter().map(|o| o.to_string()));
    if with_lib {
        args.extend(["--lib".into(), t.lib.clone()]);
    }
    args.push("--".into());
    args.extend(workload_argv(name, extra, &dir));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let traced = trace(&argv, &t.env()).expect("tt-tracer run");
    let oracle = read_oracle(&dir, &format!("tracer stderr:\n{}", traced.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    Scenario { traced, oracle }
}

const TYPES: [&str; 5] = ["DRAM", "L1", "SYSTEM_MEMORY", "L1_SMALL", "TRACE"];

/// A count the report or the oracle must carry: a missing or non-integer field fails the test.
fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected an unsigned integer, found {v}"))
}

/// `key` of buffer type `ty` in a books object keyed by type, where a type never allocated is
/// absent (docs/report.md): 0 then, but the books object itself must be there.
fn of_type(books: &Value, ty: &str, key: &str) -> u64 {
    let books = books
        .as_object()
        .unwrap_or_else(|| panic!("expected books keyed by buffer type, found {books}"));
    books.get(ty).map_or(0, |b| u(&b[key]))
}

/// The only process of the run (the workload).
fn proc_of(s: &Scenario) -> &Value {
    s.traced.process(u(&s.oracle["pid"]))
}

/// Buffers by type, outstanding at close, chips and CBs: exactly what tt-metal says.
fn assert_ledger_matches_oracle(s: &Scenario) {
    let p = proc_of(s);
    let name = s.oracle["scenario"].as_str().unwrap();
    let omeshes = s.oracle["meshes"].as_object().expect("oracle meshes");
    let tmeshes = p["meshes"].as_object().expect("report meshes");
    assert_eq!(
        omeshes.len(),
        tmeshes.len(),
        "{name}: meshes (oracle {omeshes:?})"
    );
    let tmesh = tmeshes.values().next().expect("one mesh");
    let omesh = omeshes.values().next().unwrap();

    let mut ochips: Vec<u64> = omesh["chips"].as_array().unwrap().iter().map(u).collect();
    ochips.sort();
    let tchips: Vec<u64> = tmesh["chips"].as_array().unwrap().iter().map(u).collect();
    assert_eq!(tchips, ochips, "{name}: chips of the mesh");

    for ty in TYPES {
        let o = &omesh["buffers"];
        let t = &tmesh["memory"]["by_type"];
        for (ok, tk) in [
            ("allocs", "allocs"),
            ("alloc_bytes", "alloc_bytes"),
            ("frees", "frees"),
            ("free_bytes", "free_bytes"),
        ] {
            assert_eq!(
                of_type(t, ty, tk),
                of_type(o, ty, ok),
                "{name}: mesh {ty} {tk} (tracer {}, oracle {})",
                t[ty],
                o[ty]
            );
        }
    }
    // Outstanding when the books closed: at mesh close, or at the kill.
    let outstanding: &Value = if s.oracle["killed"] == true {
        &p["exit"]["leaks"]
    } else {
        &tmesh["outstanding_at_close"]
    };
    let key = |v: &Value, ty: &str| {
        (
            v[ty].as_str().unwrap().to_string(),
            u(&v["address"]),
            u(&v["size"]),
        )
    };
    let mut want: Vec<_> = omesh["outstanding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| key(v, "type"))
        .collect();
    let mut got: Vec<_> = outstanding
        .as_array()
        .expect("outstanding list")
        .iter()
        .map(|v| key(v, "buffer_type"))
        .collect();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "{name}: outstanding buffers (type, address, size)"
    );

    // Nothing booked to a chip's own allocator or to an unknown one (tt-metal: every buffer
    // goes to the mesh's lock-step allocator).
    assert_eq!(
        p["unattributed"]["by_type"].as_object().map(|m| m.len()),
        Some(0),
        "{name}: unattributed {}",
        p["unattributed"]
    );
    let devices = p["devices"].as_object().unwrap();
    assert_eq!(devices.len(), ochips.len(), "{name}: devices opened");
    for (chip, d) in devices {
        assert_eq!(
            d["memory"]["by_type"].as_object().map(|m| m.len()),
            Some(0),
            "{name}: chip {chip} own allocator"
        );
        assert_eq!(
            d["mesh"], tmesh["index"],
            "{name}: chip {chip} belongs to the mesh"
        );
        let ocb = &s.oracle["chips"][chip.as_str()]["circular_buffers"];
        let tcb = &d["circular_buffers"];
        assert_eq!(
            (u(&tcb["allocs"]), u(&tcb["alloc_bytes"])),
            (u(&ocb["allocs"]), u(&ocb["bytes"])),
            "{name}: chip {chip} circular buffers"
        );
        assert!(
            d["opened_ns"].is_u64() && (s.oracle["killed"] == true || d["closed_ns"].is_u64()),
            "{name}: chip {chip} open/close"
        );
    }
    // Every bank was built inside a known allocator: each chip's own, the mesh's lock-step
    // one (DRAM, L1, L1_SMALL and TRACE banks each), and throw-away bank-table ones.
    assert_eq!(
        u(&p["unattributed_banks"]),
        0,
        "{name}: banks built outside any known allocator"
    );
    for owner in devices.values().chain([tmesh]) {
        for ty in ["DRAM", "L1", "L1_SMALL", "TRACE"] {
            assert!(
                u(&owner["banks"][ty]) >= 1,
                "{name}: no {ty} bank attributed: {}",
                owner["banks"]
            );
        }
    }
    assert_eq!(u(&p["unmatched"]), 0, "{name}: unmatched events");
    s.traced.assert_nothing_lost();
}

fn check(name: &str) {
    let s = scenario(name, &[]);
    assert!(
        s.traced.status.success(),
        "{name}: {:?}\n{}",
        s.traced.status,
        s.traced.stderr
    );
    assert_scenario(&s);
}

/// A scenario that ran to its end: tt-metal's own views agree, the ledger equals the oracle,
/// the process exited with 0, and a program run was enqueued.
fn assert_scenario(s: &Scenario) {
    let name = s.oracle["scenario"].as_str().expect("oracle scenario");
    assert_eq!(
        s.oracle["checks"]
            .as_object()
            .map(|c| c.values().all(|v| v == true)),
        Some(true),
        "{name}: tt-metal's own views disagree: {}",
        s.oracle["checks"]
    );
    assert_ledger_matches_oracle(s);
    let p = proc_of(s);
    assert_eq!(p["exit"]["status"]["code"], 0, "{name}: {}", p["exit"]);
    if name.starts_with("add") || name.starts_with("t3k") {
        assert!(
            u(&p["workloads_enqueued"]) >= 1,
            "{name}: ttnn.add enqueued a workload"
        );
    }
}

#[test]
fn open_close_fast_dispatch() {
    check("open_fd");
}
#[test]
fn open_close_slow_dispatch() {
    check("open_sd");
}
#[test]
fn tensors_created_and_freed() {
    check("tensor");
}
#[test]
fn add_fast_dispatch() {
    check("add_fd");
}
#[test]
fn add_slow_dispatch() {
    check("add_sd");
}
#[test]
fn n300_mesh() {
    check("n300");
}
#[test]
fn t3k_mesh() {
    check("t3k");
}
#[test]
fn t3k_mesh_with_fabric() {
    check("t3k_fabric");
}

/// SIGKILL from outside while the process holds device buffers: the cleanup record lists them.
#[test]
fn sigkill_while_holding_buffers() {
    require_root();
    let t = ttnn();
    let dir = run_dir("kill");
    let oracle_path = dir.join("oracle.json");
    let hold = dir.join("hold");
    let workload = workspace_root()
        .join("tests/ttnn/workload.py")
        .display()
        .to_string();
    let (op, hp, rd) = (
        oracle_path.display().to_string(),
        hold.display().to_string(),
        dir.join("run").display().to_string(),
    );
    let argv = [
        "run",
        "--lib",
        &t.lib,
        "--",
        &t.python,
        &workload,
        "kill",
        "--oracle",
        &op,
        "--hold-file",
        &hp,
        "--run-dir",
        &rd,
    ];
    let env: Vec<(&str, &str)> = t
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let child = spawn_trace(&argv, &env).unwrap();
    wait_for_hold(&hold, Duration::from_secs(120));
    let oracle: Value =
        serde_json::from_str(&std::fs::read_to_string(&oracle_path).unwrap()).unwrap();
    let pid = u(&oracle["pid"]);
    let t0 = monotonic_ns();
    // SAFETY: signalling the workload we started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    child
        .wait_event(Duration::from_secs(20), |e| {
            e["record"] == "process_exited" && e["pid"] == pid
        })
        .expect("cleanup record after SIGKILL");
    let ms = (monotonic_ns() - t0) as f64 / 1e6;
    let traced = child.wait().unwrap();
    println!("real runtime: kill → cleanup record {ms:.2} ms");
    assert_eq!(traced.status.code(), Some(128 + 9), "{}", traced.stderr);
    let s = Scenario { traced, oracle };
    let p = proc_of(&s);
    assert_eq!(p["exit"]["status"]["signal"], 9);
    assert!(
        !p["exit"]["leaks"].as_array().unwrap().is_empty(),
        "buffers held at the kill are reported"
    );
    // "pid N (python3) exited (signal 9): released …": the command name as the kernel has it.
    assert!(
        s.traced.stderr.contains(&format!(
            "pid {pid} ({}) exited (signal 9): released",
            comm_of(&t.python)
        )),
        "{}",
        s.traced.stderr
    );
    assert_ledger_matches_oracle(&s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--trace-file` on the real runtime: an N300 mesh workload that kills itself holding
/// buffers. The timeline holds the event stream's records, its spans nest, and each chip's
/// counters end at the report's figures, which are what tt-metal says was outstanding.
#[test]
fn the_timeline_of_a_real_run_ends_at_the_report() {
    require_root();
    let t = ttnn();
    let dir = run_dir("timeline-kill_n300");
    let trace_path = integration_tests::timeline::scratch_trace("ttnn-kill_n300");
    let mut args: Vec<String> = vec![
        "run".into(),
        "--trace-file".into(),
        trace_path.display().to_string(),
        "--lib".into(),
        t.lib.clone(),
        "--".into(),
    ];
    args.extend(workload_argv("kill_n300", &[], &dir));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let traced = trace(&argv, &t.env()).expect("tt-tracer run");
    let oracle = read_oracle(&dir, &format!("tracer stderr:\n{}", traced.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(traced.status.code(), Some(128 + 9), "{}", traced.stderr);
    traced.assert_nothing_lost();

    use integration_tests::timeline;
    let v = timeline::read(&trace_path);
    let _ = std::fs::remove_file(&trace_path);
    let ev = timeline::events(&v);
    assert_eq!(timeline::assert_spans_nest(ev), 0, "spans left open");
    timeline::assert_same_records(ev, &traced.events);
    let nonzero = timeline::assert_counters_end_at_report(ev, &traced.report);
    assert!(nonzero >= 2, "the held buffers on both chips: {nonzero}");

    // Each chip's last DRAM and L1 values are the mesh buffers tt-metal says were outstanding.
    let pid = u(&oracle["pid"]);
    let omesh = oracle["meshes"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let last = timeline::last_counters(ev);
    for chip in omesh["chips"].as_array().unwrap() {
        for ty in ["DRAM", "L1"] {
            let held: u64 = omesh["outstanding"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == ty)
                .map(|b| u(&b["size"]))
                .sum();
            let key = (pid, format!("chip {chip} memory"), ty.to_string());
            assert_eq!(
                last.get(&key).copied().unwrap_or(0),
                held,
                "chip {chip} {ty}: last value vs tt-metal's outstanding buffers"
            );
        }
    }
}

/// 100,000 allocations + frees through the real allocator: none lost, every one counted.
#[test]
fn hundred_thousand_buffers_lose_nothing() {
    // 300,000 events in about a second: more than the default 8 MiB payload ring holds
    // (≈ 87,000 events) if the reader is starved of CPU on a busy 2-core machine, where loss
    // is then counted, never silent (tests/tests/standin.rs; `cargo xtask bench --only kill`
    // finds where it starts). Here the ring holds the whole burst, so every one must be there.
    let s = scenario_run_with(
        "many_buffers",
        &["100000"],
        true,
        &["--payload-ring-bytes", "67108864"],
    );
    assert!(s.traced.status.success(), "{}", s.traced.stderr);
    let p = proc_of(&s);
    let omesh = s.oracle["meshes"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let tmesh = p["meshes"].as_object().unwrap().values().next().unwrap();
    let (o, t) = (
        &omesh["buffers"]["DRAM"],
        &tmesh["memory"]["by_type"]["DRAM"],
    );
    assert!(u(&o["allocs"]) >= 100_000, "oracle counts the loop: {o}");
    assert_eq!(
        (u(&t["allocs"]), u(&t["frees"])),
        (u(&o["allocs"]), u(&o["frees"])),
        "tracer {t} oracle {o}; lost {}; unmatched {}; processes in the report {}",
        s.traced.report["lost"],
        p["unmatched"],
        s.traced.report["processes"]
            .as_array()
            .map_or(0, |v| v.len())
    );
    assert_eq!(u(&t["alloc_bytes"]), u(&o["alloc_bytes"]));
    s.traced.assert_nothing_lost();
    println!(
        "100k buffers: {} events, 0 lost; peak DRAM live {} B",
        s.traced.report["events"], t["peak_bytes"]
    );
}

/// `attach --pid` to a real ttnn process that is already running (libtt_metal.so mapped, found
/// in /proc/PID/maps), before it opens its device: the ledger is as complete as under `run`.
#[test]
fn attach_to_a_running_ttnn_process() {
    require_root();
    let t = ttnn();
    let dir = run_dir("attach");
    let (oracle, hold) = (dir.join("oracle.json"), dir.join("hold"));
    let mut workload = Command::new(&t.python);
    workload
        .arg(workspace_root().join("tests/ttnn/workload.py"))
        .args(["n300", "--hold-at", "before_open", "--hold-file"])
        .arg(&hold)
        .arg("--oracle")
        .arg(&oracle)
        .arg("--run-dir")
        .arg(dir.join("run"))
        .envs(t.env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut workload = workload.spawn().unwrap();
    wait_for_hold(&hold, Duration::from_secs(120));
    let pid = workload.id().to_string();
    let mut tracer = spawn_trace(&["attach", "--pid", &pid], &[]).unwrap();
    // Armed once the tracer says so (stderr), then let the workload go on.
    tracer.wait_until_armed(Duration::from_secs(30)).unwrap();
    std::fs::remove_file(&hold).unwrap();
    assert!(workload.wait().unwrap().success(), "workload failed");
    let traced = tracer.wait_with(String::new()).unwrap();
    assert!(traced.status.success(), "attach: {:?}", traced.status);
    let oracle: Value = serde_json::from_str(&std::fs::read_to_string(&oracle).unwrap()).unwrap();
    let s = Scenario { traced, oracle };
    assert_eq!(s.traced.report["processes"].as_array().unwrap().len(), 1);
    assert_ledger_matches_oracle(&s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// tt-metal's own per-chip counters (`/dev/shm/tt_device_*_memory`, written by tt-metal itself
/// when `TT_METAL_SHM_TRACKING_DISABLED` is unset) at the hold point, against the live bytes
/// tt-tracer's records give for each chip at that moment: equal, byte for byte, per type.
fn shm_counters_equal_the_tracers(name: &str) {
    use test_support::tt_metal_shm;
    require_root();
    let t = ttnn();
    // Regions persist after their processes; an attached one means another tt-metal process
    // runs, whose bytes would be in the same chip counters.
    let busy = tt_metal_shm::remove_unused_regions().unwrap();
    assert!(
        busy.is_empty(),
        "another tt-metal process is using {busy:?}: its counters would mix with this run's"
    );
    let dir = run_dir(&format!("shm-{name}"));
    let (oracle_path, hold) = (dir.join("oracle.json"), dir.join("hold"));
    let (workload, op, hp, rd) = (
        workspace_root().join("tests/ttnn/workload.py"),
        oracle_path.display().to_string(),
        hold.display().to_string(),
        dir.join("run").display().to_string(),
    );
    let workload = workload.display().to_string();
    let argv = [
        "run",
        "--lib",
        &t.lib,
        "--",
        &t.python,
        &workload,
        name,
        "--shm-tracking",
        "--oracle",
        &op,
        "--hold-file",
        &hp,
        "--run-dir",
        &rd,
    ];
    let env: Vec<(&str, &str)> = t
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let child = spawn_trace(&argv, &env).unwrap();
    wait_for_hold(&hold, Duration::from_secs(120));
    // The workload waits at the hold: every allocation so far has a timestamp before this.
    let at_hold = monotonic_ns();
    let regions = tt_metal_shm::regions().unwrap();
    let pid: i32 = std::fs::read_to_string(&hold)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::fs::remove_file(&hold).unwrap();
    let traced = child.wait().unwrap();
    let _ = tt_metal_shm::remove_unused_regions();
    let oracle: Value =
        serde_json::from_str(&std::fs::read_to_string(&oracle_path).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(traced.status.code(), Some(0), "{}", traced.stderr);
    assert!(
        !regions.is_empty(),
        "tt-metal wrote no /dev/shm/tt_device_*_memory"
    );
    for (path, r) in &regions {
        let pids: Vec<i32> = r.processes.keys().copied().collect();
        assert_eq!(pids, [pid], "{path}: attached processes");
    }
    let shm = tt_metal_shm::per_chip(&regions);

    // tt-tracer at the hold: each allocator's last live bytes per type, on its chips.
    let events: Vec<&Value> = traced
        .events
        .iter()
        .filter(|e| e["pid"] == pid && e["ts_ns"].as_u64().is_some_and(|ts| ts <= at_hold))
        .collect();
    let mut mesh_chips: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut live: BTreeMap<(Option<u64>, Option<u64>, String), u64> = BTreeMap::new();
    for e in &events {
        match e["record"].as_str().unwrap_or_default() {
            "mesh_opened" => {
                let chips = e["chips"].as_array().unwrap().iter().map(u).collect();
                mesh_chips.insert(u(&e["mesh"]), chips);
            }
            "buffer_allocated" | "buffer_freed" | "buffers_cleared" => {
                let key = (
                    e["chip"].as_u64(),
                    e["mesh"].as_u64(),
                    e["buffer_type"].as_str().unwrap().to_string(),
                );
                live.insert(key, u(&e["live_bytes"]));
            }
            _ => {}
        }
    }
    let mut tracer: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    for ((chip, mesh, ty), bytes) in &live {
        let chips = match (chip, mesh) {
            (Some(c), _) => vec![*c],
            (None, Some(m)) => mesh_chips
                .get(m)
                .unwrap_or_else(|| panic!("mesh {m} has buffers but no mesh_opened record"))
                .clone(),
            (None, None) => panic!("{ty} buffers of no known allocator in {name}"),
        };
        for c in chips {
            *tracer.entry(c).or_default().entry(ty.clone()).or_default() += bytes;
        }
    }
    let oracle_chips: Vec<u64> = oracle["chips"]
        .as_object()
        .unwrap()
        .keys()
        .map(|c| c.parse().unwrap())
        .collect();
    let shm_chips: Vec<u64> = shm.keys().map(|c| *c as u64).collect();
    assert_eq!(shm_chips, oracle_chips, "chips tt-metal's counters cover");
    let mut nonzero = 0;
    for (chip, a) in &shm {
        let of = |ty: &str| {
            tracer
                .get(&(*chip as u64))
                .and_then(|t| t.get(ty))
                .copied()
                .unwrap_or(0)
        };
        for (ty, theirs) in [
            ("DRAM", a.dram),
            ("L1", a.l1),
            ("L1_SMALL", a.l1_small),
            ("TRACE", a.trace),
        ] {
            println!(
                "{name}: chip {chip} {ty}: tt-metal {theirs}, tt-tracer {}",
                of(ty)
            );
            assert_eq!(
                of(ty),
                theirs,
                "{name}: chip {chip} live {ty} bytes at the hold"
            );
            nonzero += (theirs > 0) as u32;
        }
    }
    assert!(
        nonzero > 0,
        "{name}: nothing live at the hold: the comparison proves nothing"
    );
}

#[test]
fn shm_counters_single_chip() {
    shm_counters_equal_the_tracers("tensor");
}

#[test]
fn shm_counters_n300_mesh() {
    shm_counters_equal_the_tracers("n300");
}

#[test]
fn shm_counters_t3k_mesh() {
    shm_counters_equal_the_tracers("t3k");
}

/// With a program run (ttnn.add): its circular buffers are live at the hold too, but only the
/// buffer counters are compared (tt-metal's `cb_allocated` counts a CB once per core of its core
/// range, tt-tracer once per CB: tests/ttnn/README.md).
#[test]
fn shm_counters_after_a_program() {
    shm_counters_equal_the_tracers("add_fd");
}

// ---------------------------------------------------------------------------------------------
// `watch` (every process on the host), `run` without `--lib`, and the metrics exporter, on the
// real runtime.

const FABRIC_BYTES: u64 = 56 * KIB;
const DISPATCH_BYTES: u64 = 46 * KIB;
/// The stand-in's firmware per device open (tests/standin/tt_metal.cpp): 5 Tensix RISCs and 2
/// active ethernet cores.
const STANDIN_FIRMWARE: (u64, u64) = (7, 6144 + 4608 + 3072 + 3584 + 2560 + 2 * 5120);
/// Application kernels per chip of a stand-in driver run with its defaults.
const STANDIN_APP: (u64, u64) = (3, 3 * 12288);

fn tally(v: &Value) -> (u64, u64) {
    (u(&v["count"]), u(&v["bytes"]))
}

/// Exact kernel ledger of a stand-in driver that opened `devices` chips once with its default
/// work, and exited cleanly: 204 KiB of system kernels per chip (fabric 2 × 56 KiB, dispatch
/// 2 × 46 KiB), its application kernels and firmware.
fn assert_standin_process(p: &Value, devices: u64) {
    let pid = &p["pid"];
    let ds = p["devices"].as_object().expect("devices");
    assert_eq!(ds.len() as u64, devices, "pid {pid} devices: {p:#}");
    for (chip, d) in ds {
        let loaded = &d["loaded"];
        let what = format!("stand-in pid {pid} chip {chip}");
        assert_eq!(
            tally(&loaded["fabric"]),
            (2, 2 * FABRIC_BYTES),
            "{what} fabric"
        );
        assert_eq!(
            tally(&loaded["dispatch"]),
            (2, 2 * DISPATCH_BYTES),
            "{what} dispatch"
        );
        assert_eq!(
            tally(&loaded["fabric"]).1 + tally(&loaded["dispatch"]).1,
            204 * KIB,
            "{what} system kernels"
        );
        assert_eq!(
            tally(&loaded["application"]),
            STANDIN_APP,
            "{what} application"
        );
        assert_eq!(
            tally(&loaded["firmware"]),
            STANDIN_FIRMWARE,
            "{what} firmware"
        );
        assert!(d["closed_ns"].is_u64(), "{what} closed");
    }
    assert_eq!(p["exit"]["status"]["code"], 0, "pid {pid}: {p:#}");
}

/// The GNU build-id of `path` as binutils prints it.
fn build_id_by_readelf(path: &str) -> String {
    test_support::tool("readelf", &["-n", path])
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("{path} has no build-id note"))
        .to_string()
}

/// The report's `libraries` entry of process `p`: its id, path and build-id agree with the
/// process's own fields and with the file on disk (`path`).
fn library_of<'a>(report: &'a Value, p: &Value, path: &str) -> &'a Value {
    let real = std::fs::canonicalize(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .display()
        .to_string();
    let id = u(&p["library"]);
    let lib = report["libraries"]
        .as_array()
        .expect("libraries")
        .iter()
        .find(|l| l["id"] == id)
        .unwrap_or_else(|| panic!("library {id} not in {:#}", report["libraries"]));
    let build_id = build_id_by_readelf(path);
    let pid = &p["pid"];
    for (at, named, id) in [
        ("libraries entry", &lib["path"], &lib["build_id"]),
        ("process", &p["library_path"], &p["build_id"]),
    ] {
        let named = named
            .as_str()
            .unwrap_or_else(|| panic!("pid {pid}: no library path in the {at}"));
        assert_eq!(
            std::fs::canonicalize(named)
                .map(|p| p.display().to_string())
                .ok(),
            Some(real.clone()),
            "pid {pid}: library path in the {at} ({named})"
        );
        assert_eq!(id, build_id.as_str(), "pid {pid}: build-id in the {at}");
    }
    lib
}

/// The command name the kernel gives a process that executes `path`: its file name, cut to 15
/// bytes.
fn comm_of(path: &str) -> String {
    let name = std::path::Path::new(path)
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .to_string();
    name.chars().take(15).collect()
}

fn sigint(child: &TraceChild) {
    // SAFETY: kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(child.child.id() as i32, libc::SIGINT) },
        0
    );
}

/// `tt-tracer watch`, started and armed (its "watching" line), with `args`.
fn start_watch(args: &[&str]) -> TraceChild {
    require_root();
    let argv: Vec<&str> = ["watch"].into_iter().chain(args.iter().copied()).collect();
    let mut watch = spawn_trace(&argv, &[]).expect("tt-tracer watch");
    watch
        .wait_for_stderr(Duration::from_secs(60), "watching")
        .expect("watch started");
    watch
}

/// Waits until `watch` has written the cleanup record of `pid` (its report then has the exit).
fn wait_for_exit_record(watch: &TraceChild, pid: u64) {
    watch
        .wait_event(Duration::from_secs(60), |e| {
            e["record"] == "process_exited" && e["pid"] == pid
        })
        .unwrap_or_else(|e| panic!("pid {pid}: {e}"));
}

/// One `watch` sees a real ttnn process and a stand-in process, each with its own library file,
/// running at the same time: each ledger is exact, each process names its own library.
#[test]
fn watch_sees_a_ttnn_process_and_a_standin_process_side_by_side() {
    let t = ttnn();
    let sd = standin();
    let watch = start_watch(&[]);

    let dir = run_dir("watch-add_fd");
    let argv = workload_argv("add_fd", &[], &dir);
    let workload = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(t.env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ttnn workload");
    // Holds its devices open half a second, beside the ttnn process.
    let driver = Command::new(&sd.driver)
        .args(["--devices", "2", "--hold-ms", "500"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stand-in driver");
    let driver = driver.wait_with_output().expect("stand-in driver");
    let workload = workload.wait_with_output().expect("ttnn workload");
    assert!(
        driver.status.success(),
        "stand-in driver: {:?}\n{}",
        driver.status,
        String::from_utf8_lossy(&driver.stderr)
    );
    assert!(
        workload.status.success(),
        "ttnn workload: {:?}\n{}",
        workload.status,
        String::from_utf8_lossy(&workload.stderr)
    );
    let oracle = read_oracle(&dir, "the ttnn workload ran under watch");
    let _ = std::fs::remove_dir_all(&dir);
    let driver_out = String::from_utf8_lossy(&driver.stdout).to_string();
    let driver_pid = u(
        &driver_line(&driver_out).unwrap_or_else(|| panic!("no DRIVER line:\n{driver_out}"))["pid"]
    );
    let ttnn_pid = u(&oracle["pid"]);

    wait_for_exit_record(&watch, ttnn_pid);
    wait_for_exit_record(&watch, driver_pid);
    sigint(&watch);
    let traced = watch.wait_with(String::new()).expect("watch report");
    assert!(
        traced.status.success(),
        "watch exit: {:?}\n{}",
        traced.status,
        traced.stderr
    );
    let s = Scenario { traced, oracle };
    assert_scenario(&s);
    let report = &s.traced.report;
    let sp = s.traced.process(driver_pid);
    assert_standin_process(sp, 2);
    assert_eq!(u(&sp["unmatched"]), 0, "stand-in: unmatched events");

    // Each process names its own library file; two entries in `libraries`.
    let tp = proc_of(&s);
    let tlib = library_of(report, tp, &t.lib);
    let slib = library_of(report, sp, sd.lib.to_str().unwrap());
    assert_ne!(tlib["id"], slib["id"], "two library entries");
    assert_ne!(tlib["build_id"], slib["build_id"], "two build-ids");
    for (p, exe) in [(tp, t.python.as_str()), (sp, sd.driver.to_str().unwrap())] {
        assert_eq!(p["comm"], comm_of(exe), "comm of pid {}", p["pid"]);
        assert!(
            p["cgroup"]["path"].is_string(),
            "cgroup of pid {}",
            p["pid"]
        );
    }
}

/// `run` without `--lib` (the library found as the workload loads it) gives the ledger that
/// `run --lib` gives, on real ttnn scenarios, and both equal the oracle.
#[test]
fn run_without_lib_gives_the_same_ledger_as_with_lib() {
    let t = ttnn();
    for name in ["tensor", "add_fd", "n300"] {
        let with = scenario_run(name, &[], true);
        let without = scenario_run(name, &[], false);
        for (how, s) in [("--lib", &with), ("no --lib", &without)] {
            assert!(
                s.traced.status.success(),
                "{name} ({how}): {:?}\n{}",
                s.traced.status,
                s.traced.stderr
            );
            assert_scenario(s);
            assert_eq!(
                s.traced.report["processes"].as_array().map(Vec::len),
                Some(1),
                "{name} ({how}): one process"
            );
            library_of(&s.traced.report, proc_of(s), &t.lib);
        }
        let strip = |s: &Scenario| {
            let mut p = proc_of(s).clone();
            normalise(&mut p);
            p
        };
        assert_eq!(
            strip(&with),
            strip(&without),
            "{name}: the same ledger with and without --lib"
        );
        println!("{name}: the same ledger with and without --lib");
    }
}

/// Drops what differs between two runs of the same workload: times, pids, instances.
fn normalise(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| {
                !(k.ends_with("_ns") || k == "pid" || k == "instance" || k == "phases" || k == "ns")
            });
            for (_, x) in m.iter_mut() {
                normalise(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalise),
        _ => {}
    }
}

/// Samples keyed by the values of `labels` (absent labels as "").
fn by_labels(samples: &[Sample], labels: &[&str]) -> BTreeMap<Vec<String>, f64> {
    samples
        .iter()
        .map(|(l, v)| {
            (
                labels
                    .iter()
                    .map(|k| l.get(*k).cloned().unwrap_or_default())
                    .collect(),
                *v,
            )
        })
        .collect()
}

/// A real Prometheus scrapes `watch --metrics` while real ttnn processes hold device buffers
/// (one chip; an N300 mesh, whose buffers each chip holds): their live bytes per chip and type
/// are exactly what tt-metal says is allocated; after a SIGKILL their leak gauges are exactly
/// what they held.
#[test]
fn prometheus_scrapes_the_live_dram_bytes_of_a_ttnn_process_and_its_leaks_after_sigkill() {
    let port = free_port().unwrap_or_else(|e| panic!("{e}"));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let addr_s = addr.to_string();
    let watch = start_watch(&["--metrics", &addr_s, "--metrics-grace", "600"]);
    let prom = Prometheus::start(addr).unwrap_or_else(|e| panic!("{e}"));

    let oracles: Vec<Value> = ["kill", "kill_n300"]
        .into_iter()
        .map(|name| hold_scrape_and_kill(&prom, addr, &watch, name))
        .collect();

    // The exporter's own health, fed by the session: events applied, none lost.
    prom.wait_for(
        "tt_tracer_events_applied_total",
        |r| r.len() == 1 && r[0].1 > 0.0,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    prom.wait_for(
        "sum(tt_tracer_events_lost_total)",
        |r| r.len() == 1 && r[0].1 == 0.0,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    sigint(&watch);
    let traced = watch.wait_with(String::new()).expect("watch report");
    assert!(
        traced.status.success(),
        "watch exit: {:?}\n{}",
        traced.status,
        traced.stderr
    );
    // The report's leaks are the oracle's outstanding buffers too.
    let mut s = Scenario {
        traced,
        oracle: Value::Null,
    };
    for oracle in oracles {
        s.oracle = oracle;
        assert_eq!(proc_of(&s)["exit"]["status"]["signal"], 9);
        assert_ledger_matches_oracle(&s);
    }
}

/// Runs scenario `name` (a `kill` one) under `watch` to its hold; waits until Prometheus shows
/// exactly what tt-metal holds, per chip and type; checks the exposition with promtool; SIGKILLs
/// the workload and waits until its leak gauges are exactly what it held. Returns its oracle.
fn hold_scrape_and_kill(
    prom: &Prometheus,
    addr: std::net::SocketAddr,
    watch: &TraceChild,
    name: &str,
) -> Value {
    let t = ttnn();
    let dir = run_dir(&format!("prom-{name}"));
    let hold = dir.join("hold");
    let hold_s = hold.display().to_string();
    let argv = workload_argv(name, &["--hold-file", &hold_s], &dir);
    let mut workload = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(t.env())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ttnn workload");
    wait_for_hold(&hold, Duration::from_secs(120));
    let oracle = read_oracle(&dir, "the kill scenarios write it before their hold");
    let pid = u(&oracle["pid"]);
    assert_eq!(pid, workload.id() as u64);
    let omesh = oracle["meshes"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .expect("one mesh");
    let chips: Vec<String> = omesh["chips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| u(c).to_string())
        .collect();
    let outstanding = omesh["outstanding"].as_array().expect("outstanding");
    // What each chip holds, per type: every mesh buffer at its size on every chip of the mesh.
    let mut held: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for chip in &chips {
        for b in outstanding {
            let ty = b["type"].as_str().unwrap().to_string();
            *held.entry(vec![chip.clone(), ty]).or_default() += u(&b["size"]) as f64;
        }
    }
    let held_dram: BTreeMap<Vec<String>, f64> = held
        .iter()
        .filter(|(k, _)| k[1] == "DRAM")
        .map(|(k, v)| (vec![k[0].clone()], *v))
        .collect();
    assert!(
        held_dram.len() == chips.len() && held_dram.values().all(|b| *b > 0.0),
        "{name}: the workload holds DRAM on every chip: {held:?}"
    );

    // Prometheus's view while it holds: DRAM per chip, then every type.
    let p = format!("pid=\"{pid}\"");
    let dram_q = format!("sum by (chip) (tt_tracer_buffer_live_bytes{{{p},buffer_type=\"DRAM\"}})");
    let got = prom
        .wait_for(
            &dram_q,
            |r| by_labels(r, &["chip"]) == held_dram,
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    println!("{name}: live DRAM bytes of pid {pid} per chip: {got:?}");
    let all_q = format!("sum by (chip, buffer_type) (tt_tracer_buffer_live_bytes{{{p}}}) > 0");
    prom.wait_for(
        &all_q,
        |r| by_labels(r, &["chip", "buffer_type"]) == held,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    // One series per chip, naming the process and its mesh's lock-step allocator.
    let series = prom
        .query(&format!(
            "tt_tracer_buffer_live_bytes{{{p},buffer_type=\"DRAM\"}}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(series.len(), chips.len(), "{name}: {series:?}");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("the workload's comm");
    for (labels, _) in &series {
        assert_eq!(
            labels.get("comm").map(String::as_str),
            Some(comm.trim_end()),
            "{name}"
        );
        assert!(
            labels.get("mesh").is_some_and(|m| !m.is_empty()),
            "{name}: {labels:?}"
        );
    }

    // What the exporter serves, checked by promtool; it carries the same figures.
    let text = scrape(addr).unwrap_or_else(|e| panic!("{e}"));
    promtool_check_metrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let exposed: BTreeMap<Vec<String>, f64> = text
        .lines()
        .filter(|l| {
            l.starts_with("tt_tracer_buffer_live_bytes{")
                && l.contains(&format!("pid=\"{pid}\""))
                && l.contains("buffer_type=\"DRAM\"")
        })
        .map(|l| {
            let chip = l
                .split("chip=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .expect("a chip label")
                .to_string();
            (vec![chip], l.rsplit(' ').next().unwrap().parse().unwrap())
        })
        .collect();
    assert_eq!(exposed, held_dram, "{name}: exposition\n{text}");

    // SIGKILL while holding: the leak gauges are what it held; live bytes drop to 0.
    // SAFETY: signalling the workload we started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let status = workload.wait().expect("workload");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let leaked_buffers = outstanding.len() as f64;
    let leaked_bytes: f64 = outstanding.iter().map(|b| u(&b["size"]) as f64).sum();
    for (q, want) in [
        (
            format!("tt_tracer_process_leaked_buffers{{{p}}}"),
            leaked_buffers,
        ),
        (
            format!("tt_tracer_process_leaked_bytes{{{p}}}"),
            leaked_bytes,
        ),
        (format!("sum(tt_tracer_buffer_live_bytes{{{p}}})"), 0.0),
    ] {
        prom.wait_for(
            &q,
            |r| r.len() == 1 && r[0].1 == want,
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        println!("{name}: {q} = {want}");
    }
    wait_for_exit_record(watch, pid);
    oracle
}

/// `tt-tracer top` on a real terminal (tmux) while a real ttnn process (an N300 mesh) holds
/// device buffers: each chip's row shows exactly the DRAM bytes tt-metal says it holds; after
/// a SIGKILL the rows say it was killed and what each chip was left holding (the oracle's
/// outstanding buffers, every mesh buffer on every chip of the mesh).
#[test]
fn top_shows_the_live_dram_bytes_of_a_ttnn_process_and_its_exit_row_after_sigkill() {
    require_root();
    let t = ttnn();
    let top = Tmux::start(&format!("'{}' top --bytes", tracer_bin().display()));
    top.wait_for("the table", Duration::from_secs(180), |s| {
        s.contains("q quit")
    });

    let dir = run_dir("top-kill_n300");
    let hold = dir.join("hold");
    let hold_s = hold.display().to_string();
    let argv = workload_argv("kill_n300", &["--hold-file", &hold_s], &dir);
    let mut workload = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(t.env())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ttnn workload");
    wait_for_hold(&hold, Duration::from_secs(120));
    let oracle = read_oracle(&dir, "the kill scenarios write it before their hold");
    let pid = u(&oracle["pid"]);
    let omesh = oracle["meshes"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .expect("one mesh");
    let chips: Vec<String> = omesh["chips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| u(c).to_string())
        .collect();
    let outstanding = omesh["outstanding"].as_array().expect("outstanding");
    let held = |ty: &str| -> u64 {
        outstanding
            .iter()
            .filter(|b| b["type"] == ty)
            .map(|b| u(&b["size"]))
            .sum()
    };
    let dram = held("DRAM");
    assert!(dram > 0, "the workload holds DRAM: {outstanding:?}");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("the workload's comm");
    let rows_of =
        |s: &str| -> Vec<TopRow> { top_rows(s).into_iter().filter(|r| r.pid == pid).collect() };

    // While it holds: one row per chip of the mesh, each with the held DRAM bytes live.
    let screen = top.wait_for(
        "the workload's live DRAM bytes",
        Duration::from_secs(60),
        |s| {
            let rows = rows_of(s);
            rows.iter().map(|r| r.chip.clone()).collect::<Vec<_>>() == chips
                && rows.iter().all(|r| {
                    r.sizes[0].split('/').next() == Some(dram.to_string().as_str())
                        && r.now_and_state.ends_with("running")
                })
        },
    );
    println!("{screen}");
    for r in rows_of(&screen) {
        assert_eq!(r.command, comm.trim_end(), "{screen}");
        // L1 live bytes too, where it holds some.
        let l1 = held("L1");
        let shown = if l1 == 0 {
            "-".to_string()
        } else {
            l1.to_string()
        };
        assert_eq!(
            r.sizes[1].split('/').next(),
            Some(shown.as_str()),
            "{screen}"
        );
    }

    // SIGKILL: what each chip was left holding is every outstanding buffer of the mesh.
    // SAFETY: signalling the workload we started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    workload.wait().expect("workload");
    let _ = std::fs::remove_dir_all(&dir);
    let left_bytes: u64 = outstanding.iter().map(|b| u(&b["size"])).sum();
    let state = format!(
        "killed SIGKILL, left {} buf {left_bytes}",
        outstanding.len()
    );
    let screen = top.wait_for("the exit rows", Duration::from_secs(60), |s| {
        let rows = rows_of(s);
        rows.len() == chips.len()
            && rows.iter().all(|r| {
                r.now_and_state.ends_with(&state)
                    && r.sizes[0] == format!("0/{}", r.sizes[0].split('/').nth(1).unwrap_or(""))
            })
    });
    println!("{screen}");
}

/// ttnn operations, from outside: each operation type's launches, program-cache hits and
/// misses, and the buffers and circular buffers made inside it are exactly what ttnn's own
/// graph capture and program cache say; buffers still allocated at close name the operation
/// that made them (or none); the trace file holds one `op` span per launch.
#[test]
fn operations_match_ttnn_graph_capture() {
    let trace_path = integration_tests::timeline::scratch_trace("ttnn-ops");
    let path = trace_path.display().to_string();
    // Discovery (no --lib): the ttnn library beside libtt_metal.so is found as the process
    // loads it.
    let s = scenario_run_with("ops", &[], false, &["--trace-file", &path]);
    assert!(s.traced.status.success(), "{}", s.traced.stderr);
    assert_scenario(&s);
    let p = proc_of(&s);
    let rows: BTreeMap<String, &Value> = p["operations"]
        .as_array()
        .expect("report operations")
        .iter()
        .map(|o| (o["name"].as_str().unwrap().to_string(), o))
        .collect();
    let oracle = s.oracle["operations"]
        .as_object()
        .expect("oracle operations");
    assert!(oracle.len() >= 7, "the scenario's operations: {oracle:?}");
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        oracle.keys().collect::<Vec<_>>(),
        "operation types: report (left), graph capture (right)"
    );

    // Hits and misses: the program cache's entry count around each call, joined in order with
    // the operations graph capture saw launched.
    let launches = s.oracle["extra"]["launches"].as_array().unwrap();
    let sequence = s.oracle["op_sequence"].as_array().unwrap();
    assert_eq!(launches.len(), sequence.len(), "one operation per call");
    let mut cache: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (l, op) in launches.iter().zip(sequence) {
        let e = cache.entry(op.as_str().unwrap()).or_default();
        match l["miss"].as_bool().unwrap() {
            true => e.1 += 1,
            false => e.0 += 1,
        }
    }
    for (name, want) in oracle {
        let row = rows[name];
        assert_eq!(
            u(&row["launches"]),
            u(&want["launches"]),
            "{name}: launches"
        );
        let (hits, misses) = cache[name.as_str()];
        assert_eq!(
            (
                u(&row["cache_hits"]),
                u(&row["cache_misses"]),
                u(&row["cache_unknown"])
            ),
            (hits, misses, 0),
            "{name}: program-cache hits, misses, unknown"
        );
        for ty in TYPES {
            let got = &row["buffers"][ty];
            let want = &want["buffers"][ty];
            let pair = |v: &Value| match v.is_null() {
                true => (0, 0),
                false => (u(&v["count"]), u(&v["bytes"])),
            };
            assert_eq!(pair(got), pair(want), "{name}: {ty} buffers (count, bytes)");
        }
        assert_eq!(
            (
                u(&row["circular_buffers"]["count"]),
                u(&row["circular_buffers"]["bytes"])
            ),
            (u(&want["cbs"]["count"]), u(&want["cbs"]["bytes"])),
            "{name}: circular buffers"
        );
        assert!(u(&row["time_ns"]) > 0, "{name}: time inside");
    }

    // What was still allocated at close names the operation that allocated it.
    let omesh = s.oracle["meshes"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let want: BTreeMap<u64, Value> = omesh["outstanding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (u(&b["address"]), b["op"].clone()))
        .collect();
    assert!(
        want.values().any(Value::is_null) && want.values().any(|o| !o.is_null()),
        "buffers made inside and outside operations are held: {want:?}"
    );
    let mesh = p["meshes"].as_object().unwrap().values().next().unwrap();
    let got: BTreeMap<u64, Value> = mesh["outstanding_at_close"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (u(&b["address"]), b["op"].clone()))
        .collect();
    assert_eq!(got, want, "outstanding at close: address → operation");

    // The timeline: one op span per launch, named after the operation, every record matched.
    use integration_tests::timeline;
    let v = timeline::read(&trace_path);
    let _ = std::fs::remove_file(&trace_path);
    let ev = timeline::events(&v);
    assert_eq!(timeline::assert_spans_nest(ev), 0, "spans left open");
    timeline::assert_same_records(ev, &s.traced.events);
    for (name, want) in oracle {
        let spans = ev
            .iter()
            .filter(|e| e["ph"] == "B" && e["cat"] == "op" && e["name"] == name.as_str())
            .count() as u64;
        assert_eq!(spans, u(&want["launches"]), "{name}: op spans");
    }
}
