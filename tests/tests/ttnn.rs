//! The memory ledger on the REAL tt-metal runtime (PyPI ttnn 0.81.1, its real libtt_metal.so) on
//! tt-metal's mock devices. Each scenario's ledger is compared, exactly, with an oracle the
//! workload takes from tt-metal itself (graph capture, `reports.get_buffers`, `get_memory_view`;
//! tests/ttnn/README.md), never with numbers from an earlier run.

use std::{collections::BTreeMap, path::PathBuf, process::Command, sync::OnceLock, time::Duration};

use integration_tests::*;
use serde_json::Value;

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

fn scenario(name: &str, extra: &[&str]) -> Scenario {
    require_root();
    let t = ttnn();
    let dir = run_dir(name);
    let oracle = dir.join("oracle.json");
    let workload = workspace_root().join("tests/ttnn/workload.py");
    let mut args: Vec<String> = vec![
        "run".into(),
        "--lib".into(),
        t.lib.clone(),
        "--".into(),
        t.python.clone(),
    ];
    args.push(workload.display().to_string());
    args.push(name.into());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "--oracle".into(),
        oracle.display().to_string(),
        "--run-dir".into(),
        dir.join("run").display().to_string(),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = t
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let traced = trace(&argv, &env).expect("tt-tracer run");
    let oracle: Value =
        serde_json::from_str(&std::fs::read_to_string(&oracle).unwrap_or_else(|e| {
            panic!(
                "no oracle from the workload ({e}); tracer stderr:\n{}",
                traced.stderr
            )
        }))
        .unwrap();
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
    assert_eq!(
        s.oracle["checks"]
            .as_object()
            .map(|c| c.values().all(|v| v == true)),
        Some(true),
        "{name}: tt-metal's own views disagree: {}",
        s.oracle["checks"]
    );
    assert_ledger_matches_oracle(&s);
    let p = proc_of(&s);
    assert_eq!(p["exit"]["status"]["code"], 0);
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
        s.traced
            .stderr
            .lines()
            .any(|l| l.contains(&format!("pid {pid} ("))
                && l.contains(") exited (signal 9): released")),
        "{}",
        s.traced.stderr
    );
    assert_ledger_matches_oracle(&s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// 100,000 allocations + frees through the real allocator: none lost, every one counted.
#[test]
fn hundred_thousand_buffers_lose_nothing() {
    let s = scenario("many_buffers", &["100000"]);
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
        "tracer {t} oracle {o}"
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
