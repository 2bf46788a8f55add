//! `watch` (every process on the host) and `run` without `--lib` (the command's whole tree):
//! libraries found as processes open them, real eBPF programs, the real stand-in library.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use integration_tests::*;
use serde_json::Value;

const FABRIC_BYTES: u64 = 56 * KIB;
const DISPATCH_BYTES: u64 = 46 * KIB;
/// The stand-in's firmware per device open (tt_metal.cpp): 5 Tensix RISCs and 2 active
/// ethernet cores.
const FIRMWARE: (u64, u64) = (7, 6144 + 4608 + 3072 + 3584 + 2560 + 2 * 5120);

/// A Python process that loads the library with dlopen (ctypes) and opens a mesh of N chips
/// at once: no sleep between the load and the first device call.
const DLOPEN_AND_OPEN: &str = r#"
import ctypes, os, sys
lib = ctypes.CDLL(sys.argv[1])
lib.standin_open_mesh.restype = ctypes.c_void_p
lib.standin_close_mesh.argtypes = [ctypes.c_void_p]
mesh = lib.standin_open_mesh(int(sys.argv[2]))
assert mesh, "standin_open_mesh failed"
assert lib.standin_close_mesh(mesh) == 0
print("DLOPEN", os.getpid(), flush=True)
"#;

/// A Python parent whose multiprocessing children (forked, and spawned: a fresh interpreter)
/// each load the library and open a device; the parent never loads it.
const MULTIPROCESSING: &str = r#"
import ctypes, multiprocessing as mp, os, sys
def child(path):
    lib = ctypes.CDLL(path)
    lib.standin_open_mesh.restype = ctypes.c_void_p
    lib.standin_close_mesh.argtypes = [ctypes.c_void_p]
    mesh = lib.standin_open_mesh(1)
    assert mesh and lib.standin_close_mesh(mesh) == 0
    print("CHILD", os.getpid(), flush=True)
if __name__ == "__main__":
    path = sys.argv[1]
    for method in ("fork", "fork", "spawn"):
        p = mp.get_context(method).Process(target=child, args=(path,))
        p.start(); p.join()
        assert p.exitcode == 0, p.exitcode
"#;

fn num(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

fn tally(v: &Value) -> (u64, u64) {
    (num(v, "count"), num(v, "bytes"))
}

/// A directory of its own holding a copy of the stand-in library and driver: another file
/// (inode) than every other copy, as a second venv's library would be.
fn fresh_copy() -> (PathBuf, PathBuf) {
    let s = standin();
    let dir = test_support::world_reachable_copies(&[&s.lib, &s.driver]);
    (dir.join("libtt_metal.so"), dir.join("tt_driver"))
}

fn process(report: &Value, pid: u64) -> &Value {
    report["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["pid"] == pid))
        .unwrap_or_else(|| panic!("pid {pid} not in report:\n{report:#}"))
}

/// Exact kernel ledger of a stand-in process that opened `devices` chips once and wrote
/// `app` (count, bytes) application kernels per chip; and it exited cleanly.
fn assert_standin_process(report: &Value, pid: u64, devices: u64, app: (u64, u64)) {
    let p = process(report, pid);
    let ds = p["devices"].as_object().expect("devices");
    assert_eq!(ds.len() as u64, devices, "pid {pid} devices: {p:#}");
    for (chip, d) in ds {
        let loaded = &d["loaded"];
        let what = format!("pid {pid} chip {chip}");
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
        assert_eq!(tally(&loaded["application"]), app, "{what} application");
        assert_eq!(tally(&loaded["firmware"]), FIRMWARE, "{what} firmware");
        assert!(d["closed_ns"].is_u64(), "{what} closed");
    }
    assert_eq!(p["exit"]["status"]["code"], 0, "pid {pid}: {p:#}");
}

/// Pids on lines `TAG pid …` of `out`.
fn tagged_pids(out: &str, tag: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.strip_prefix(tag))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

fn driver_pids(out: &str) -> Vec<(u64, u64)> {
    out.lines()
        .filter_map(driver_line)
        .map(|d| (num(&d, "pid"), num(&d, "devices")))
        .collect()
}

fn stop(child: &mut TraceChild) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.child.id() as i32, libc::SIGINT) };
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn python(script: &str, args: &[&Path], extra: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.arg("-c").arg(script).args(args).args(extra);
    c
}

#[test]
fn watch_traces_processes_from_before_and_after_it_and_from_two_library_files() {
    require_root();
    let s = standin();
    let (other_lib, other_driver) = fresh_copy();
    // Maps the library before watch starts, and opens its devices only once released.
    let go = std::env::temp_dir().join(format!("tt-watch-go-{}", std::process::id()));
    let _ = std::fs::remove_file(&go);
    let early = Command::new(&s.driver)
        .args(["--devices", "1", "--wait-file", go.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("early driver");

    let mut watch = spawn_trace(&["watch"], &[]).expect("tt-tracer watch");
    watch
        .wait_for_stderr(Duration::from_secs(30), "watching")
        .expect("watch started");
    std::fs::write(&go, b"").unwrap();
    let later = Command::new(&other_driver)
        .args(["--devices", "2", "--app-kernels", "2"])
        .output()
        .expect("second driver");
    assert!(later.status.success());
    let dl = python(DLOPEN_AND_OPEN, &[&s.lib], &["2"])
        .output()
        .expect("python dlopen");
    assert!(
        dl.status.success(),
        "{}",
        String::from_utf8_lossy(&dl.stderr)
    );
    let early = early.wait_with_output().expect("early driver");
    assert!(early.status.success());
    std::thread::sleep(Duration::from_millis(200));
    stop(&mut watch);
    let t = watch.wait_with(String::new()).expect("watch report");
    assert!(
        t.status.success(),
        "watch exit: {:?}\n{}",
        t.status,
        t.stderr
    );
    t.assert_nothing_lost();

    let early_out = String::from_utf8_lossy(&early.stdout).to_string();
    let later_out = String::from_utf8_lossy(&later.stdout).to_string();
    let (early_pid, _) = driver_pids(&early_out)[0];
    let (later_pid, _) = driver_pids(&later_out)[0];
    let dl_pid = tagged_pids(&String::from_utf8_lossy(&dl.stdout), "DLOPEN ")[0];
    assert_standin_process(&t.report, early_pid, 1, (3, 3 * 12288));
    assert_standin_process(&t.report, later_pid, 2, (2, 2 * 12288));
    assert_standin_process(&t.report, dl_pid, 2, (0, 0));
    // Each library file armed once, under its own path.
    // (Only these two: a busy host may run other tt-metal processes meanwhile.)
    let ours = [s.lib.to_str().unwrap(), other_lib.to_str().unwrap()];
    let armed: Vec<&str> = t
        .stderr
        .lines()
        .filter(|l| l.starts_with("tt-tracer: tracing "))
        .filter(|l| ours.iter().any(|p| l.contains(&format!("tracing {p} "))))
        .collect();
    assert_eq!(armed.len(), 2, "{}", t.stderr);
    assert!(
        armed.iter().any(|l| l.contains(s.lib.to_str().unwrap())
            && l.contains(&format!("mapped by pid {early_pid}"))),
        "{}",
        t.stderr
    );
    assert!(
        armed
            .iter()
            .any(|l| l.contains(other_lib.to_str().unwrap()) && l.contains("loaded by pid")),
        "{}",
        t.stderr
    );
}

#[test]
fn a_process_that_dlopens_a_new_library_and_opens_a_device_at_once_misses_nothing() {
    require_root();
    let mut watch = spawn_trace(&["watch"], &[]).expect("tt-tracer watch");
    watch
        .wait_for_stderr(Duration::from_secs(30), "watching")
        .expect("watch started");
    // Three files never seen before: each open stops the process until it is armed.
    let mut pids = Vec::new();
    for devices in [1, 2, 8] {
        let (lib, _) = fresh_copy();
        let out = python(DLOPEN_AND_OPEN, &[&lib], &[&devices.to_string()])
            .output()
            .expect("python dlopen");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        pids.push((
            tagged_pids(&String::from_utf8_lossy(&out.stdout), "DLOPEN ")[0],
            devices,
        ));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop(&mut watch);
    let t = watch.wait_with(String::new()).expect("watch report");
    assert!(t.status.success(), "{}", t.stderr);
    t.assert_nothing_lost();
    for (pid, devices) in pids {
        assert_standin_process(&t.report, pid, devices, (0, 0));
    }
    let pauses: Vec<&str> = t
        .stderr
        .lines()
        .filter(|l| l.contains("loaded by pid") && l.contains("stopped"))
        .collect();
    assert_eq!(pauses.len(), 3, "one arming per new file:\n{}", t.stderr);
    eprintln!("arming pauses:\n{}", pauses.join("\n"));
}

#[test]
fn run_without_lib_traces_every_descendant() {
    require_root();
    let s = standin();
    let d = s.driver.to_str().unwrap();
    // A file: multiprocessing's spawned children re-import the parent's main module.
    let py = std::env::temp_dir().join(format!("tt-mp-{}.py", std::process::id()));
    std::fs::write(&py, MULTIPROCESSING).unwrap();
    // 10 drivers one after another, then 10 at once (2 of them on 2 chips), then a Python
    // parent whose multiprocessing children open devices.
    let script = format!(
        "for i in $(seq 10); do {d} --app-kernels 1; done; \
         for i in $(seq 8); do {d} & done; {d} --devices 2 & {d} --devices 2 & wait; \
         python3 {py} {lib}",
        py = py.display(),
        lib = s.lib.display()
    );
    let t = trace(&["run", "--", "bash", "-c", &script], &[]).expect("tt-tracer run");
    assert!(t.status.success(), "{:?}\n{}", t.status, t.stderr);
    t.assert_nothing_lost();
    let drivers = driver_pids(&t.stdout);
    assert_eq!(drivers.len(), 20, "{}", t.stdout);
    for (i, (pid, devices)) in drivers.iter().enumerate() {
        let app = if i < 10 { (1, 12288) } else { (3, 3 * 12288) };
        assert_standin_process(&t.report, *pid, *devices, app);
    }
    let children = tagged_pids(&t.stdout, "CHILD ");
    assert_eq!(children.len(), 3, "{}", t.stdout);
    for pid in children {
        assert_standin_process(&t.report, pid, 1, (0, 0));
    }
    // The root command and the processes that touched a device: nothing else (no `seq`).
    let reported = t.report["processes"].as_array().unwrap().len();
    assert_eq!(reported, 1 + 20 + 3, "{:#}", t.report);
}

#[test]
fn run_without_lib_matches_run_with_lib() {
    require_root();
    let s = standin();
    let args = [
        "--devices",
        "2",
        "--program-kernels",
        "2",
        "--buffers",
        "3",
        "--cbs",
        "2",
    ];
    let with: Vec<&str> = [
        "run",
        "--lib",
        s.lib.to_str().unwrap(),
        "--",
        s.driver.to_str().unwrap(),
    ]
    .into_iter()
    .chain(args)
    .collect();
    let without: Vec<&str> = ["run", "--", s.driver.to_str().unwrap()]
        .into_iter()
        .chain(args)
        .collect();
    let a = trace(&with, &[]).expect("run --lib");
    let b = trace(&without, &[]).expect("run");
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        a.stderr,
        b.stderr
    );
    let strip = |t: &Traced| {
        let pid = num(&t.driver(), "pid");
        let mut p = t.process(pid).clone();
        normalise(&mut p);
        p
    };
    assert_eq!(
        strip(&a),
        strip(&b),
        "the same ledger with and without --lib"
    );
}

/// Drops what differs between two runs of the same workload: times, pids, addresses of
/// objects.
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

#[test]
fn five_hundred_short_processes_under_one_watch() {
    require_root();
    let s = standin();
    let mut watch = spawn_trace(&["watch", "--history", "50"], &[]).expect("tt-tracer watch");
    watch
        .wait_for_stderr(Duration::from_secs(30), "watching")
        .expect("watch started");
    let tracer_pid = watch.child.id();
    let rss = || -> u64 {
        std::fs::read_to_string(format!("/proc/{tracer_pid}/status"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let mut pids = Vec::new();
    let mut rss_at = Vec::new();
    for batch in 0..125 {
        let children: Vec<_> = (0..4)
            .map(|_| {
                Command::new(&s.driver)
                    .args(["--app-kernels", "1"])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("driver")
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().expect("driver");
            assert!(out.status.success());
            pids.push(driver_pids(&String::from_utf8_lossy(&out.stdout))[0].0);
        }
        if batch == 24 || batch == 124 {
            // Let the tracer catch up with the exits before measuring.
            let n = pids.len();
            wait_until(
                "the tracer reports every exit",
                Duration::from_secs(30),
                || {
                    std::fs::read_to_string(watch_events(&watch))
                        .map(|t| t.matches("\"process_exited\"").count() >= n)
                        .unwrap_or(false)
                },
            );
            rss_at.push(rss());
        }
    }
    stop(&mut watch);
    let t = watch.wait_with(String::new()).expect("watch report");
    assert!(t.status.success(), "{}", t.stderr);
    t.assert_nothing_lost();
    let exited: Vec<u64> = t
        .events
        .iter()
        .filter(|e| e["record"] == "process_exited")
        .filter_map(|e| e["pid"].as_u64())
        .collect();
    for pid in &pids {
        assert!(exited.contains(pid), "pid {pid} has no cleanup record");
    }
    // Every ended process (ours, and any other tt-metal process the host ran meanwhile) but the
    // last 50 has left the history.
    assert_eq!(
        t.report["history_dropped"],
        exited.len() as u64 - 50,
        "history of 50 kept"
    );
    // Each named, even one gone before /proc could be read: the exit event says who it was.
    let cgroup = own_cgroup();
    for e in t
        .events
        .iter()
        .filter(|e| e["record"] == "process_exited")
        .filter(|e| e["pid"].as_u64().is_some_and(|p| pids.contains(&p)))
    {
        assert_eq!(e["comm"], "tt_driver", "{e}");
        assert_eq!(e["cgroup"]["path"], cgroup.as_str(), "{e}");
    }
    eprintln!(
        "tracer RSS after 100 processes: {} KiB, after 500: {} KiB",
        rss_at[0], rss_at[1]
    );
    assert!(
        rss_at[1] <= rss_at[0] + 4096,
        "RSS grew by more than 4 MiB from 100 to 500 processes: {rss_at:?}"
    );
}

fn watch_events(t: &TraceChild) -> PathBuf {
    t.events_path().to_path_buf()
}

/// A file named like the library that is not tt-metal: a small C shared library.
fn impostor_library() -> PathBuf {
    let dir = test_support::world_reachable_copies(&[]);
    let src = dir.join("impostor.c");
    std::fs::write(&src, "int not_tt_metal(void) { return 42; }\n").unwrap();
    let lib = dir.join("libtt_metal.so");
    let st = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(st.success(), "building the impostor library");
    lib
}

#[test]
fn a_library_that_does_not_resolve_is_refused_once_and_watch_goes_on() {
    require_root();
    let s = standin();
    let impostor = impostor_library();
    let mut watch = spawn_trace(&["watch"], &[]).expect("tt-tracer watch");
    watch
        .wait_for_stderr(Duration::from_secs(30), "watching")
        .expect("watch started");
    let load = "import ctypes, sys; print(ctypes.CDLL(sys.argv[1]).not_tt_metal())";
    for _ in 0..2 {
        let out = python(load, &[&impostor], &[]).output().expect("python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    }
    let good = Command::new(&s.driver).output().expect("driver");
    assert!(good.status.success());
    std::thread::sleep(Duration::from_millis(200));
    stop(&mut watch);
    let t = watch.wait_with(String::new()).expect("watch report");
    assert!(t.status.success(), "{}", t.stderr);
    let refused: Vec<&Value> = t
        .events
        .iter()
        .filter(|e| e["record"] == "library_refused")
        .collect();
    assert_eq!(refused.len(), 1, "refused once: {refused:?}");
    assert_eq!(refused[0]["path"], impostor.to_str().unwrap());
    assert_eq!(refused[0]["cause"], "not_tt_metal", "{}", refused[0]);
    assert_eq!(
        t.stderr.matches("not tracing").count(),
        1,
        "one warning:\n{}",
        t.stderr
    );
    let (pid, devices) = driver_pids(&String::from_utf8_lossy(&good.stdout))[0];
    assert_standin_process(&t.report, pid, devices, (3, 3 * 12288));
}

/// The cgroup path of this test process (its children inherit it).
fn own_cgroup() -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| text.lines().next().and_then(|l| l.splitn(3, ':').nth(2)))
        .expect("a cgroup line")
        .to_string()
}

#[test]
fn processes_carry_their_cgroup_and_sighup_rotates_the_events_file() {
    require_root();
    let s = standin();
    let mut watch = spawn_trace(&["watch"], &[]).expect("tt-tracer watch");
    watch
        .wait_for_stderr(Duration::from_secs(30), "watching")
        .expect("watch started");
    let events = watch_events(&watch);
    let rotated = PathBuf::from(format!("{}.1", events.display()));
    let _ = std::fs::remove_file(&rotated);
    let first = Command::new(&s.driver).output().expect("driver");
    let (first_pid, _) = driver_pids(&String::from_utf8_lossy(&first.stdout))[0];
    wait_until(
        "the first driver's exit record",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&events).is_ok_and(|t| {
                t.contains(&format!("\"pid\":{first_pid}")) && t.contains("process_exited")
            })
        },
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.child.id() as i32, libc::SIGHUP) };
    wait_until("rotation", Duration::from_secs(20), || rotated.exists());
    let second = Command::new(&s.driver).output().expect("driver");
    let (second_pid, _) = driver_pids(&String::from_utf8_lossy(&second.stdout))[0];
    std::thread::sleep(Duration::from_millis(300));
    stop(&mut watch);
    let old = std::fs::read_to_string(&rotated).expect("rotated events file");
    let t = watch.wait_with(String::new()).expect("watch report");
    assert!(t.status.success(), "{}", t.stderr);
    let _ = std::fs::remove_file(&rotated);
    let has = |text: &str, pid: u64| text.contains(&format!("\"pid\":{pid},"));
    assert!(
        has(&old, first_pid) && !has(&old, second_pid),
        "before SIGHUP: {old}"
    );
    assert!(
        t.events.iter().any(|e| e["pid"] == second_pid)
            && !t.events.iter().any(|e| e["pid"] == first_pid),
        "after SIGHUP: {:?}",
        t.events
    );
    let cgroup = own_cgroup();
    for pid in [first_pid, second_pid] {
        let p = process(&t.report, pid);
        assert_eq!(p["cgroup"]["path"], cgroup.as_str(), "pid {pid}: {p:#}");
        assert_eq!(p["comm"], "tt_driver");
    }
    let started: Vec<&Value> = t
        .events
        .iter()
        .filter(|e| e["record"] == "process_started")
        .collect();
    assert!(
        started
            .iter()
            .any(|e| e["pid"] == second_pid && e["cgroup"]["path"] == cgroup.as_str()),
        "{started:?}"
    );
}
