//! The two ways tt-tracer attaches its uprobes, on the stand-in: one multi-uprobe link per
//! program per library (the default on kernels 6.6+) and one perf-event uprobe per attach point
//! (older kernels; `--no-multi-attach` forces it). Both must give the same ledger; the kernel's
//! own account of the tracer's links (/proc/PID/fdinfo) must show the attachment asked for.

use std::{collections::BTreeMap, process::Command, time::Duration};

use integration_tests::*;
use serde_json::Value;

const MULTI: &str = "multi";
const PER_POINT: &str = "per-point";

/// The tracer's BPF links as the kernel describes them: "uprobe_multi", "uretprobe_multi",
/// "perf uprobe", "perf uretprobe", "perf tracepoint", "raw_tracepoint", … → (links, and the
/// attach points the multi links hold: their `uprobe_cnt`).
fn bpf_links(pid: u32) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the tracer's fds");
    for fd in fds.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if target.to_str() != Some("anon_inode:bpf_link") {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .expect("fdinfo of a bpf link");
        let value = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        let link_type = value("link_type:").expect("link_type in bpf link fdinfo");
        let kind = match value("event_type:") {
            Some(event) => format!("{link_type} {event}"),
            None => link_type,
        };
        let points = value("uprobe_cnt:").map_or(0, |n| n.parse::<u64>().expect("uprobe_cnt"));
        let e = out.entry(kind).or_insert((0, 0));
        e.0 += 1;
        e.1 += points;
    }
    out
}

fn links_of(links: &BTreeMap<String, (u64, u64)>, kind: &str) -> (u64, u64) {
    links.get(kind).copied().unwrap_or((0, 0))
}

/// Checks the tracer's links against the `library_traced` record of its one library, for
/// `mode`. Returns the record's attach-point count.
fn assert_links(mode: &str, links: &BTreeMap<String, (u64, u64)>, traced: &Value) -> u64 {
    let probes = traced["probes"].as_u64().expect("library_traced.probes");
    let said = traced["links"].as_u64().expect("library_traced.links");
    let multi_entry = links_of(links, "uprobe_multi");
    let multi_return = links_of(links, "uretprobe_multi");
    let perf_entry = links_of(links, "perf uprobe").0;
    let perf_return = links_of(links, "perf uretprobe").0;
    match mode {
        MULTI => {
            assert_eq!(
                (multi_entry.0, multi_return.0),
                (1, 1),
                "one link per program for the library: {links:?}"
            );
            assert_eq!(
                multi_entry.1 + multi_return.1,
                probes,
                "the two links hold every attach point: {links:?}"
            );
            assert!(
                multi_return.1 > 0 && multi_entry.1 > multi_return.1,
                "{links:?}"
            );
            assert_eq!((perf_entry, perf_return), (0, 0), "{links:?}");
            assert_eq!(said, 2, "the record says what the kernel holds");
        }
        _ => {
            assert_eq!((multi_entry.0, multi_return.0), (0, 0), "{links:?}");
            assert_eq!(
                perf_entry + perf_return,
                probes,
                "one perf-event uprobe per attach point: {links:?}"
            );
            assert!(perf_return > 0 && perf_entry > perf_return, "{links:?}");
            assert_eq!(said, probes, "the record says what the kernel holds");
        }
    }
    probes
}

/// A process's ledger without what differs from run to run (times, pids, instances, the
/// library's path through /proc/PID/root).
fn ledger(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !(k.ends_with("_ns")
                        || [
                            "pid",
                            "instance",
                            "phases",
                            "comm",
                            "cgroup",
                            "library_path",
                        ]
                        .contains(&k.as_str()))
                })
                .map(|(k, v)| (k.clone(), ledger(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(ledger).collect()),
        other => other.clone(),
    }
}

fn mode_flag(mode: &str) -> Vec<&'static str> {
    if mode == PER_POINT {
        vec!["--no-multi-attach"]
    } else {
        vec![]
    }
}

/// Every probe family fires: fabric and dispatch contexts, kernel writes, allocations with
/// their returns, mesh buffers, programs, circular buffers.
const WORKLOAD: [&str; 10] = [
    "--devices",
    "2",
    "--app-kernels",
    "3",
    "--program-kernels",
    "2",
    "--buffers",
    "3",
    "--cbs",
    "2",
];

/// `tt-tracer run` of the driver in `mode`, the driver held until the tracer's links have been
/// read: (the run, the links while armed).
fn run_held(mode: &str) -> (Traced, BTreeMap<String, (u64, u64)>) {
    let s = standin();
    let go = target_dir().join(format!("it-scratch/go-modes-{}-{mode}", std::process::id()));
    std::fs::create_dir_all(go.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&go);
    let mut args = vec!["run"];
    args.extend(mode_flag(mode));
    args.extend([
        "--lib",
        s.lib.to_str().unwrap(),
        "--",
        s.driver.to_str().unwrap(),
    ]);
    args.extend(WORKLOAD);
    args.extend(["--wait-file", go.to_str().unwrap()]);
    let mut tracer = spawn_trace(&args, &[]).expect("tt-tracer run");
    tracer
        .wait_for_stderr(Duration::from_secs(30), "tracing ")
        .expect("the library armed");
    let links = bpf_links(tracer.child.id());
    let mut stdout = tracer.child.stdout.take().expect("the driver's stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        out
    });
    std::fs::write(&go, b"").unwrap();
    let t = tracer
        .wait_with(reader.join().expect("stdout reader"))
        .expect("tt-tracer run");
    let _ = std::fs::remove_file(&go);
    assert!(t.status.success(), "{mode}: {:?}\n{}", t.status, t.stderr);
    t.assert_nothing_lost();
    (t, links)
}

#[test]
fn multi_links_and_per_point_uprobes_give_the_same_ledger() {
    require_root();
    let mut ledgers = Vec::new();
    let mut points = Vec::new();
    for mode in [MULTI, PER_POINT] {
        let (t, links) = run_held(mode);
        let traced: Vec<&Value> = t
            .events
            .iter()
            .filter(|e| e["record"] == "library_traced")
            .collect();
        assert_eq!(traced.len(), 1, "{mode}: one library: {:?}", t.events);
        points.push(assert_links(mode, &links, traced[0]));
        let driver = t.driver();
        let proc = t.process(driver["pid"].as_u64().unwrap());
        // Not two empty ledgers: the system kernels of both chips are there.
        for chip in ["0", "1"] {
            let fabric = &proc["devices"][chip]["loaded"]["fabric"]["count"];
            assert_eq!(
                fabric, 2,
                "{mode}: chip {chip} fabric kernels: {}",
                t.report
            );
        }
        ledgers.push((ledger(proc), t.report["events"].clone()));
    }
    assert_eq!(points[0], points[1], "the same attach points both ways");
    assert_eq!(
        ledgers[0], ledgers[1],
        "multi links (left) and per-point uprobes (right) book the same"
    );
}

/// `attach --pid`: a multi link scoped to one process covers all its threads and nobody
/// else's (another process runs the same library meanwhile).
#[test]
fn a_pid_scoped_multi_link_traces_that_process_only_as_per_point_uprobes_do() {
    require_root();
    let s = standin();
    let mut ledgers = Vec::new();
    for mode in [MULTI, PER_POINT] {
        let go = target_dir().join(format!("it-scratch/go-pid-{}-{mode}", std::process::id()));
        let _ = std::fs::remove_file(&go);
        // Loader threads: kernels are also written from threads other than the main one.
        let spawn = |devices: &str| {
            Command::new(&s.driver)
                .args(["--devices", devices, "--app-threads", "3"])
                .args(["--app-kernels", "6", "--wait-file", go.to_str().unwrap()])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let target = spawn("2");
        let other = spawn("3");
        let pid = target.id().to_string();
        let mut args = vec!["attach", "--pid", pid.as_str()];
        args.extend(mode_flag(mode));
        let mut tracer = spawn_trace(&args, &[]).unwrap();
        tracer.wait_until_armed(Duration::from_secs(30)).unwrap();
        let links = bpf_links(tracer.child.id());
        std::fs::write(&go, b"").unwrap();
        let target_out = target.wait_with_output().unwrap();
        let other_out = other.wait_with_output().unwrap();
        assert!(target_out.status.success() && other_out.status.success());
        let t = tracer.wait_with(String::new()).unwrap();
        let _ = std::fs::remove_file(&go);
        assert!(t.status.success(), "{mode}: {:?}\n{}", t.status, t.stderr);
        t.assert_nothing_lost();
        let traced = t
            .events
            .iter()
            .find(|e| e["record"] == "library_traced")
            .expect("library_traced record");
        assert_links(mode, &links, traced);
        let procs = t.report["processes"].as_array().unwrap();
        assert_eq!(
            procs.len(),
            1,
            "{mode}: only the attached pid: {}",
            t.report
        );
        let driver = driver_line(&String::from_utf8_lossy(&target_out.stdout)).unwrap();
        assert_eq!(procs[0]["pid"], driver["pid"]);
        let app = &procs[0]["devices"]["1"]["loaded"]["application"];
        assert_eq!(
            app["count"], driver["application_per_device"]["written"]["count"],
            "{mode}: every loader thread's kernels on chip 1: {}",
            t.report
        );
        ledgers.push(ledger(&procs[0]));
    }
    assert_eq!(ledgers[0], ledgers[1], "multi (left) and per point (right)");
}
