//! `--trace-file`: the timeline of a real traced run (real eBPF programs, the stand-in
//! library), checked against the event stream and the report the same run wrote.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use integration_tests::{timeline, *};
use serde_json::Value;

fn num(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Names of the spans begun on the timeline, in order.
fn spans(events: &[Value], pid: u64) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e["ph"] == "B" && e["pid"] == pid)
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

#[test]
fn the_timeline_of_a_run_holds_the_event_stream_and_ends_at_the_report() {
    require_root();
    let s = standin();
    let trace = timeline::scratch_trace("run");
    let tf = trace.to_str().unwrap();
    // Two chips in a mesh, fabric and dispatch bring-up on worker threads, kernels written and
    // placed, circular buffers, mesh buffers; killed while holding the first (4 KiB DRAM).
    let args = [
        "run",
        "--trace-file",
        tf,
        "--lib",
        s.lib.to_str().unwrap(),
        "--",
        s.driver.to_str().unwrap(),
        "--devices",
        "2",
        "--app-kernels",
        "1",
        "--program-kernels",
        "2",
        "--buffers",
        "4",
        "--cbs",
        "3",
        "--hold-ms",
        "60000",
    ];
    let mut child = spawn_trace(&args, &[]).expect("tt-tracer run");
    let (line, stdout) = child
        .wait_stdout_line(Duration::from_secs(120), |l| l.starts_with("DRIVER "))
        .expect("the driver's DRIVER line");
    let pid = num(&driver_line(&line).expect("DRIVER json"), "pid");
    // SAFETY: signalling the driver we started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let t = child.wait_with(stdout).unwrap();
    assert_eq!(t.status.code(), Some(128 + 9), "{}", t.stderr);
    t.assert_nothing_lost();

    let v = timeline::read(&trace);
    let _ = std::fs::remove_file(&trace);
    let ev = timeline::events(&v);
    assert_eq!(
        timeline::assert_spans_nest(ev),
        0,
        "every span ended before the kill"
    );
    assert!(!t.events.is_empty(), "no event stream");
    timeline::assert_same_records(ev, &t.events);

    // The bring-up of both chips is there, as spans of the threads that ran it.
    let begun = spans(ev, pid);
    for (span, per_chip) in [("fabric_context", 2), ("dispatch_context", 2)] {
        let on: Vec<&Value> = ev
            .iter()
            .filter(|e| e["ph"] == "B" && e["name"] == span)
            .collect();
        assert_eq!(on.len(), per_chip, "{span} spans: {begun:?}");
        for e in on {
            assert!(e["args"]["chip"].is_u64(), "{span} names its chip: {e}");
        }
    }
    // Named tracks: the process by its command, its threads.
    let named = |what: &str, tid: u64| {
        ev.iter()
            .any(|e| e["ph"] == "M" && e["name"] == what && e["pid"] == pid && e["tid"] == tid)
    };
    assert!(named("process_name", pid) && named("thread_name", pid));
    let comm = ev
        .iter()
        .find(|e| e["ph"] == "M" && e["name"] == "process_name" && e["pid"] == pid)
        .unwrap();
    assert_eq!(comm["args"]["name"], "tt_driver");

    // The counters end where the report's books do: the leaked mesh buffer on both chips.
    let nonzero = timeline::assert_counters_end_at_report(ev, &t.report);
    assert_eq!(
        nonzero, 2,
        "4 KiB of DRAM on each chip of the mesh at the kill"
    );
    let last = timeline::last_counters(ev);
    for chip in 0..2 {
        let key = |s: &str| (pid, format!("chip {chip} memory"), s.to_string());
        assert_eq!(last.get(&key("DRAM")), Some(&(4 * KIB)), "{last:?}");
        assert_eq!(last.get(&key("CB")), Some(&0), "{last:?}");
    }
    // On the way: the CBs (2 + 4 + 6 KiB) and the mesh's buffers (L1 8 + 16 KiB live at
    // once, DRAM 4 + 12 KiB) were drawn, on each chip.
    let peak = |track: &str, series: &str| {
        ev.iter()
            .filter(|e| e["ph"] == "C" && e["pid"] == pid && e["name"] == track)
            .filter_map(|e| e["args"][series].as_u64())
            .max()
    };
    for chip in ["chip 0 memory", "chip 1 memory"] {
        assert_eq!(peak(chip, "CB"), Some(12 * KIB));
        assert_eq!(peak(chip, "L1"), Some(24 * KIB));
        assert_eq!(peak(chip, "DRAM"), Some(16 * KIB));
    }
}

#[test]
fn a_trace_file_that_cannot_be_written_stops_everything_before_it_starts() {
    require_root();
    let dir = target_dir().join("it-scratch");
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join(format!("ran-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    // The events file the same: exit 1 (no "library unusable", 3), one line, nothing run.
    for (flag, bad) in [
        ("--trace-file", "/nonexistent-dir/trace.json"),
        ("--events-file", "/nonexistent-dir/events.jsonl"),
    ] {
        let out = Command::new(tracer_bin())
            .args(["run", flag, bad, "--", "touch"])
            .arg(&marker)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag}: {stderr}");
        assert!(stderr.contains(flag) && stderr.contains(bad), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(!marker.exists(), "{flag}: the command ran");
    }

    // watch would run until stopped: it must not start.
    let mut watch = Command::new(tracer_bin())
        .args(["watch", "--trace-file", dir.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = watch.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = watch.kill();
            let _ = watch.wait();
            panic!("watch started with a directory as its trace file");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(1));
}

/// Whether `text` (an events or trace file) has the exit of `pid`.
fn has_exit(path: &Path, pid: u64) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| {
        t.lines()
            .any(|l| l.contains("process_exited") && l.contains(&format!("\"pid\":{pid}")))
    })
}

fn driver(devices: &str) -> u64 {
    let out = Command::new(&standin().driver)
        .args(["--devices", devices, "--buffers", "2", "--cbs", "1"])
        .output()
        .expect("driver");
    assert!(out.status.success());
    num(
        &driver_line(&String::from_utf8_lossy(&out.stdout)).expect("DRIVER line"),
        "pid",
    )
}

#[test]
fn watch_rotates_the_timeline_on_sighup_and_a_killed_tracer_leaves_it_readable() {
    require_root();
    let trace = timeline::scratch_trace("watch");
    let rotated = {
        let mut s = trace.clone().into_os_string();
        s.push(".1");
        std::path::PathBuf::from(s)
    };
    let mut watch =
        spawn_trace(&["watch", "--trace-file", trace.to_str().unwrap()], &[]).expect("watch");
    watch
        .wait_for_stderr(Duration::from_secs(30), "watching")
        .expect("watch started");
    let first = driver("1");
    let events = watch.events_path().to_path_buf();
    wait_until(
        "the first exit in the event stream",
        Duration::from_secs(20),
        || has_exit(&events, first),
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.child.id() as i32, libc::SIGHUP) };
    wait_until("rotation", Duration::from_secs(20), || rotated.exists());
    let second = driver("2");
    // An exit is written at once: it is in the file before the tracer dies.
    wait_until(
        "the second exit in the timeline",
        Duration::from_secs(20),
        || has_exit(&trace, second),
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.child.id() as i32, libc::SIGKILL) };
    let t = watch.wait_with(String::new()).unwrap();
    assert_eq!(t.status.code(), None, "killed: {}", t.stderr);
    let mut old_events = events.into_os_string();
    old_events.push(".1");
    let _ = std::fs::remove_file(old_events);

    // The rotated file was ended properly; the live one was cut, after a whole event.
    let old = timeline::read(&rotated);
    let cut = timeline::read_cut(&trace);
    let _ = std::fs::remove_file(&rotated);
    let _ = std::fs::remove_file(&trace);
    let of = |v: &Value, pid: u64| -> Vec<Value> {
        timeline::events(v)
            .iter()
            .filter(|e| e["pid"] == pid)
            .cloned()
            .collect()
    };
    for (v, pid, other) in [(&old, first, second), (&cut, second, first)] {
        let mine = of(v, pid);
        assert!(of(v, other).is_empty(), "pid {other} is in the other file");
        assert_eq!(timeline::assert_spans_nest(&mine), 0, "pid {pid}");
        assert!(
            mine.iter().any(|e| e["name"] == "process_exited"),
            "pid {pid} ended"
        );
        assert!(
            mine.iter().any(|e| e["ph"] == "M"
                && e["name"] == "process_name"
                && e["args"]["name"] == "tt_driver"),
            "pid {pid} named"
        );
        assert!(
            !spans(&mine, pid).is_empty() && mine.iter().any(|e| e["ph"] == "C"),
            "pid {pid}: spans and counters"
        );
    }
    // The second process in the cut file is exactly its records in the event stream (written
    // since the rotation, to the new events file).
    let records: Vec<Value> = t
        .events
        .iter()
        .filter(|e| e["pid"] == second && !e["record"].as_str().unwrap().starts_with("library_"))
        .cloned()
        .collect();
    let mine: Vec<Value> = of(&cut, second)
        .into_iter()
        .filter(|e| e["s"] != "g")
        .collect();
    timeline::assert_same_records(&mine, &records);
}
