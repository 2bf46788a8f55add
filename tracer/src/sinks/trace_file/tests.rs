use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{timeline::CB_SERIES, *};
use crate::{
    collector::{
        identity::Cgroup,
        ledger::{CoreType, ExitStatus, KernelClass, Kernels, Leak},
        memory::{BufferType, Outstanding},
        Cleanup, Collector,
    },
    roles::Role,
};

const PID: u32 = 100;
const WORKER: u32 = 101;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tt-tracer-trace-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn report() -> Report {
    Report::new(&Collector::new(), &[], Default::default(), 0)
}

fn started(pid: u32, ts_ns: u64) -> Record {
    Record::ProcessStarted {
        pid,
        instance: ts_ns,
        ts_ns,
        library: Some(1),
        comm: Some("python3".into()),
        cgroup: Some(Cgroup::from_path("/user.slice")),
    }
}

fn entered(tid: u32, ts_ns: u64, role: Role, chip: Option<i64>) -> Record {
    Record::ContextEntered {
        pid: PID,
        tid,
        ts_ns,
        role,
        chip,
    }
}

fn exited_ctx(tid: u32, ts_ns: u64, role: Role, chip: Option<i64>, start: Option<u64>) -> Record {
    Record::ContextExited {
        pid: PID,
        tid,
        ts_ns,
        role,
        chip,
        duration_ns: start.map(|s| ts_ns - s),
    }
}

fn buffer(
    ts_ns: u64,
    owner: (Option<i64>, Option<u32>),
    t: BufferType,
    size: u64,
    live: u64,
) -> Record {
    Record::BufferAllocated {
        op: None,
        pid: PID,
        tid: PID,
        ts_ns,
        chip: owner.0,
        mesh: owner.1,
        buffer_type: t,
        size,
        address: 0x1000 + ts_ns,
        live_bytes: live,
    }
}

fn process_exit(ts_ns: u64) -> Record {
    Record::ProcessExited(Cleanup {
        pid: PID,
        comm: Some("python3".into()),
        cgroup: None,
        exit_ns: ts_ns,
        status: ExitStatus::Signal(9),
        released: Kernels::default(),
        devices: vec![0],
        leaks: vec![Leak {
            owner: "mesh 1".into(),
            buffer: Outstanding {
                op: None,
                buffer_type: BufferType::Dram,
                size: 4096,
                address: 0x10000,
                allocated_ns: 1,
                age_ns: ts_ns - 1,
            },
        }],
        complete: true,
    })
}

/// One record of every kind, in an order a session could tell them: two threads, nested
/// bring-up spans, a mesh of chips 0 and 1, buffers of the chip's own allocator and the mesh's,
/// circular buffers, and the exit.
fn session() -> Vec<Record> {
    use Role::*;
    vec![
        Record::LibraryTraced {
            id: 1,
            path: "/venv/lib/libtt_metal.so".into(),
            build_id: Some("ab12".into()),
            probes: 38,
            links: 2,
            pid: None,
            stopped_ns: None,
        },
        started(PID, 1_000),
        entered(PID, 1_000, MeshOpen, None),
        Record::DeviceOpened {
            pid: PID,
            ts_ns: 1_100,
            chip: 0,
        },
        Record::FirmwareLoaded {
            pid: PID,
            tid: PID,
            ts_ns: 1_150,
            chip: 0,
            core_type: CoreType::Tensix,
            bytes: 6144,
        },
        entered(WORKER, 1_200, FabricContext, Some(0)),
        Record::KernelLoaded {
            op: None,
            pid: PID,
            tid: WORKER,
            ts_ns: 1_300,
            chip: 0,
            class: KernelClass::Fabric,
            bytes: 57344,
            address: 0x4000,
        },
        exited_ctx(WORKER, 1_400, FabricContext, Some(0), Some(1_200)),
        entered(PID, 1_500, MeshAllocator, None),
        Record::MeshOpened {
            pid: PID,
            tid: PID,
            ts_ns: 1_500,
            mesh: 1,
            chips: vec![0, 1],
        },
        Record::BankBuilt {
            pid: PID,
            tid: PID,
            ts_ns: 1_550,
            buffer_type: BufferType::Dram,
            owner: "mesh 1".into(),
        },
        exited_ctx(PID, 1_600, MeshAllocator, None, Some(1_500)),
        exited_ctx(PID, 1_700, MeshOpen, None, Some(1_000)),
        buffer(2_000, (Some(0), None), BufferType::Dram, 1000, 1000),
        buffer(2_100, (None, Some(1)), BufferType::Dram, 4096, 4096),
        buffer(2_200, (None, Some(1)), BufferType::L1, 512, 512),
        Record::BufferFreed {
            pid: PID,
            tid: PID,
            ts_ns: 2_300,
            chip: None,
            mesh: Some(1),
            buffer_type: BufferType::L1,
            size: 512,
            address: 0x3000,
            live_bytes: 0,
        },
        Record::CircularBufferAllocated {
            op: None,
            pid: PID,
            tid: PID,
            ts_ns: 2_400,
            chip: 1,
            size: 2048,
            live_bytes: 2048,
        },
        Record::CircularBuffersReleased {
            pid: PID,
            tid: PID,
            ts_ns: 2_500,
            chip: 1,
            count: 1,
            bytes: 2048,
        },
        Record::CircularBufferAllocated {
            op: None,
            pid: PID,
            tid: PID,
            ts_ns: 2_550,
            chip: 0,
            size: 1024,
            live_bytes: 1024,
        },
        entered(PID, 2_600, ProgramBinaries, None),
        Record::ProgramBinariesPlaced {
            op: None,
            pid: PID,
            tid: PID,
            ts_ns: 2_650,
            chips: vec![0, 1],
            bytes: 12288,
            address: 0x10600,
            buffer_type: BufferType::Dram,
        },
        exited_ctx(PID, 2_700, ProgramBinaries, None, Some(2_600)),
        Record::OpBegan {
            pid: PID,
            tid: PID,
            ts_ns: 2_750,
            op: "BinaryNgDeviceOperation".into(),
        },
        Record::OpProgramCache {
            pid: PID,
            tid: PID,
            ts_ns: 2_760,
            op: "BinaryNgDeviceOperation".into(),
            outcome: crate::collector::CacheOutcome::Miss,
        },
        Record::WorkloadEnqueued {
            op: Some("BinaryNgDeviceOperation".into()),
            pid: PID,
            tid: PID,
            ts_ns: 2_800,
            total: 1,
        },
        Record::OpEnded {
            pid: PID,
            tid: PID,
            ts_ns: 2_850,
            op: "BinaryNgDeviceOperation".into(),
            duration_ns: 100,
            cache: Some(crate::collector::CacheOutcome::Miss),
        },
        Record::ProgramBinariesFreed {
            pid: PID,
            tid: PID,
            ts_ns: 2_900,
            chips: vec![0, 1],
            bytes: 12288,
            address: 0x10600,
        },
        Record::Unmatched {
            pid: PID,
            tid: PID,
            ts_ns: 2_950,
            role: Role::BankFree,
        },
        Record::BuffersCleared {
            pid: PID,
            tid: PID,
            ts_ns: 3_000,
            chip: Some(0),
            mesh: None,
            buffer_type: BufferType::Dram,
            count: 1,
            bytes: 1000,
            live_bytes: 0,
        },
        Record::DeviceClosed {
            pid: PID,
            ts_ns: 3_100,
            chip: 0,
            released: Kernels::default(),
        },
        Record::MeshClosed {
            pid: PID,
            ts_ns: 3_200,
            mesh: Some(1),
            outstanding: 1,
        },
        // Inside a span when it dies.
        entered(WORKER, 3_300, DispatchContext, Some(1)),
        process_exit(3_400),
        Record::LibraryRefused {
            path: "/old/libtt_metal.so".into(),
            reason: "missing roles".into(),
            cause: "missing_roles",
            pid: Some(7),
        },
    ]
}

/// The events of `records`, as the sink writes them, read back from its file.
fn written(name: &str, records: &[Record]) -> (Value, PathBuf) {
    let d = dir(name);
    let path = d.join("trace.json");
    let mut t = TraceFile::create(&path).unwrap();
    for r in records {
        t.record(r);
    }
    t.finish(&report()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    (v, d)
}

fn events(v: &Value) -> &Vec<Value> {
    v["traceEvents"].as_array().expect("traceEvents")
}

/// Per (pid, tid): every E ends the innermost open B of the same name; returns the spans still
/// open at the end.
fn check_nesting(events: &[Value]) -> usize {
    let mut stacks: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut last_ts: BTreeMap<(u64, u64), f64> = BTreeMap::new();
    for e in events {
        let key = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
        let name = e["name"].as_str().unwrap().to_string();
        match e["ph"].as_str().unwrap() {
            "B" => stacks.entry(key).or_default().push(name),
            "E" => {
                let top = stacks.entry(key).or_default().pop();
                assert_eq!(top.as_deref(), Some(name.as_str()), "E without its B: {e}");
            }
            _ => continue,
        }
        let ts = e["ts"].as_f64().unwrap();
        let last = last_ts.entry(key).or_insert(ts);
        assert!(ts >= *last, "a thread's span edges go back in time: {e}");
        *last = ts;
    }
    stacks.values().map(Vec::len).sum()
}

#[test]
fn a_session_is_one_valid_object_with_tracks_spans_instants_and_counters() {
    let records = session();
    let (v, d) = written("session", &records);
    assert_eq!(v["displayTimeUnit"], "ns");
    let ev = events(&v);
    assert_eq!(check_nesting(ev), 0, "the exit ended the open span");

    // Names: tt-tracer's own track, the process (its comm), each thread once.
    let meta: Vec<(String, u64, u64, String)> = ev
        .iter()
        .filter(|e| e["ph"] == "M")
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["pid"].as_u64().unwrap(),
                e["tid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    let me = std::process::id() as u64;
    let (p, w) = (PID as u64, WORKER as u64);
    assert_eq!(
        meta,
        [
            ("process_name".into(), me, me, "tt-tracer".into()),
            ("process_name".into(), p, p, "python3".into()),
            ("thread_name".into(), p, p, "main".into()),
            ("thread_name".into(), p, w, "thread".into()),
        ]
    );

    // Every record is one event (B, E or i) with its fields as args, in order; plus the span
    // the exit ended.
    let told: Vec<&Value> = ev
        .iter()
        .filter(|e| matches!(e["ph"].as_str(), Some("B" | "E" | "i")))
        .filter(|e| e["args"]["ended_by"].is_null())
        .collect();
    assert_eq!(told.len(), records.len());
    for (r, e) in records.iter().zip(&told) {
        let mut fields = serde_json::to_value(r).unwrap();
        let fields = fields.as_object_mut().unwrap();
        let kind = fields.remove("record").unwrap();
        let ts = fields
            .remove("ts_ns")
            .or_else(|| fields.get("exit_ns").cloned());
        // A library's `pid` is a field (who loaded it), not its track.
        let library = matches!(
            r,
            Record::LibraryTraced { .. } | Record::LibraryRefused { .. }
        );
        let pid = if library { None } else { fields.remove("pid") };
        let tid = fields.remove("tid");
        let (ph, name) = match r {
            Record::ContextEntered { role, .. } => ("B", json!(role)),
            Record::ContextExited { role, .. } => ("E", json!(role)),
            // An operation's span is named after it.
            Record::OpBegan { .. } => ("B", fields.remove("op").unwrap()),
            Record::OpEnded { .. } => ("E", fields.remove("op").unwrap()),
            _ => ("i", kind.clone()),
        };
        assert_eq!((e["ph"].as_str().unwrap(), &e["name"]), (ph, &name), "{e}");
        assert_eq!(&e["args"], &Value::Object(fields.clone()), "{kind}: args");
        if let (Some(ts), Some(Value::Number(pid))) = (ts, pid) {
            let want = ts.as_u64().unwrap() as f64 / 1000.0;
            assert_eq!(e["ts"].as_f64(), Some(want), "{kind}: ts");
            assert_eq!(e["pid"].as_u64(), pid.as_u64(), "{kind}: pid");
            let tid = tid.and_then(|t| t.as_u64()).unwrap_or(PID as u64);
            assert_eq!(e["tid"].as_u64(), Some(tid), "{kind}: tid");
            let scope = if r_has_tid(r) { "t" } else { "p" };
            if ph == "i" {
                assert_eq!(e["s"], scope, "{kind}");
            }
        } else {
            assert_eq!(e["s"], "g", "{kind}: about the host");
            assert_eq!(e["pid"].as_u64(), Some(me));
        }
    }
    let ended: Vec<&Value> = ev
        .iter()
        .filter(|e| e["args"]["ended_by"] == "process_exit")
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (&ended[0]["name"], &ended[0]["tid"], ended[0]["ts"].as_f64()),
        (&json!("dispatch_context"), &json!(WORKER), Some(3.4))
    );
    std::fs::remove_dir_all(d).unwrap();
}

fn r_has_tid(r: &Record) -> bool {
    serde_json::to_value(r).unwrap().get("tid").is_some()
}

/// The last value of every counter series: (pid, track, series) → bytes.
fn last_counters(ev: &[Value]) -> BTreeMap<(u64, String, String), u64> {
    let mut last = BTreeMap::new();
    for e in ev.iter().filter(|e| e["ph"] == "C") {
        for (series, v) in e["args"].as_object().unwrap() {
            let key = (
                e["pid"].as_u64().unwrap(),
                e["name"].as_str().unwrap().to_string(),
                series.clone(),
            );
            last.insert(key, v.as_u64().unwrap());
        }
    }
    last
}

#[test]
fn a_chip_counts_its_own_buffers_every_mesh_it_is_in_and_its_circular_buffers() {
    let (v, d) = written("counters", &session());
    let ev = events(&v);
    // Series over time, chip 0 DRAM: own 1000, + mesh 4096, then its own cleared.
    let dram0: Vec<u64> = ev
        .iter()
        .filter(|e| e["ph"] == "C" && e["name"] == "chip 0 memory")
        .filter_map(|e| e["args"]["DRAM"].as_u64())
        .collect();
    assert_eq!(dram0, [1000, 5096, 4096]);
    let dram1: Vec<u64> = ev
        .iter()
        .filter(|e| e["ph"] == "C" && e["name"] == "chip 1 memory")
        .filter_map(|e| e["args"]["DRAM"].as_u64())
        .collect();
    assert_eq!(dram1, [4096], "the mesh buffer is on chip 1 too");
    let p = PID as u64;
    let s = |t: &str, ser: &str| (p, t.to_string(), ser.to_string());
    // The exit leaves them as the books had them (the report's live bytes: the leak).
    assert_eq!(
        last_counters(ev),
        BTreeMap::from([
            (s("chip 0 memory", "DRAM"), 4096),
            (s("chip 0 memory", "L1"), 0),
            (s("chip 0 memory", CB_SERIES), 1024),
            (s("chip 1 memory", "DRAM"), 4096),
            (s("chip 1 memory", "L1"), 0),
            (s("chip 1 memory", CB_SERIES), 0),
        ])
    );
    // Each counter event follows the instant that moved it (and its other chips'), at its time.
    for (i, e) in ev.iter().enumerate().filter(|(_, e)| e["ph"] == "C") {
        let cause = ev[..i].iter().rev().find(|e| e["ph"] != "C").unwrap();
        assert_eq!((&cause["ph"], &cause["ts"]), (&json!("i"), &e["ts"]), "{e}");
    }
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn buffers_of_a_mesh_without_known_chips_and_of_no_allocator_have_tracks_of_their_own() {
    let records = [
        started(PID, 1),
        Record::MeshOpened {
            pid: PID,
            tid: PID,
            ts_ns: 2,
            mesh: 3,
            chips: vec![],
        },
        buffer(3, (None, Some(3)), BufferType::L1, 64, 64),
        buffer(4, (None, None), BufferType::Trace, 32, 32),
    ];
    let (v, d) = written("unplaced", &records);
    let p = PID as u64;
    assert_eq!(
        last_counters(events(&v)),
        BTreeMap::from([
            ((p, "mesh 3 memory".into(), "L1".into()), 64),
            ((p, "unattributed memory".into(), "TRACE".into()), 32),
        ])
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn an_exit_without_its_entry_is_an_instant_and_an_outer_exit_ends_the_inner_spans() {
    use Role::*;
    let records = [
        started(PID, 1),
        // Tracing began inside it.
        exited_ctx(PID, 2, DeviceInit, Some(0), None),
        entered(PID, 3, MeshOpen, None),
        entered(PID, 4, DeviceAllocator, Some(0)),
        // DeviceAllocator's exit was lost.
        exited_ctx(PID, 5, MeshOpen, None, Some(3)),
    ];
    let (v, d) = written("unpaired", &records);
    let ev = events(&v);
    assert_eq!(check_nesting(ev), 0);
    let shape: Vec<(&str, &str, &Value)> = ev
        .iter()
        .filter(|e| e["ph"] != "M")
        .map(|e| {
            (
                e["ph"].as_str().unwrap(),
                e["name"].as_str().unwrap(),
                &e["args"]["ended_by"],
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("i", "process_started", &Value::Null),
            ("i", "context_exited", &Value::Null),
            ("B", "mesh_open", &Value::Null),
            ("B", "device_allocator", &Value::Null),
            ("E", "device_allocator", &json!("outer_context_exited")),
            ("E", "mesh_open", &Value::Null),
        ]
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_pid_started_again_without_its_exit_ends_the_old_spans() {
    use Role::*;
    let records = [
        started(PID, 1),
        entered(PID, 2, MeshOpen, None),
        // Its exit was lost; the pid is a new process now.
        started(PID, 10),
        entered(PID, 11, MeshOpen, None),
        exited_ctx(PID, 12, MeshOpen, None, Some(11)),
    ];
    let (v, d) = written("reused", &records);
    let ev = events(&v);
    assert_eq!(check_nesting(ev), 0);
    let ended: Vec<&Value> = ev
        .iter()
        .filter(|e| e["args"]["ended_by"] == "process_exit")
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["ts"].as_f64(), Some(0.01));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn an_exited_process_is_forgotten() {
    let mut t = Timeline::new(1);
    let mut out = Vec::new();
    for round in 0..1000u64 {
        let ts = round * 10_000;
        let mut records = session();
        // The same shape again and again, by new processes.
        for r in &mut records {
            shift(r, ts);
        }
        for r in &records {
            t.record(r, ts, &mut out);
        }
        out.clear();
    }
    assert_eq!(t.live_processes(), 0);
}

/// Moves a record `by` ns later.
fn shift(r: &mut Record, by: u64) {
    match r {
        Record::ProcessExited(c) => c.exit_ns += by,
        Record::ProcessStarted { ts_ns, .. }
        | Record::DeviceOpened { ts_ns, .. }
        | Record::ContextEntered { ts_ns, .. }
        | Record::ContextExited { ts_ns, .. }
        | Record::KernelLoaded { ts_ns, .. }
        | Record::FirmwareLoaded { ts_ns, .. }
        | Record::ProgramBinariesPlaced { ts_ns, .. }
        | Record::DeviceClosed { ts_ns, .. }
        | Record::MeshClosed { ts_ns, .. }
        | Record::MeshOpened { ts_ns, .. }
        | Record::BankBuilt { ts_ns, .. }
        | Record::BufferAllocated { ts_ns, .. }
        | Record::BufferFreed { ts_ns, .. }
        | Record::BuffersCleared { ts_ns, .. }
        | Record::ProgramBinariesFreed { ts_ns, .. }
        | Record::CircularBufferAllocated { ts_ns, .. }
        | Record::CircularBuffersReleased { ts_ns, .. }
        | Record::WorkloadEnqueued { ts_ns, .. }
        | Record::OpBegan { ts_ns, .. }
        | Record::OpProgramCache { ts_ns, .. }
        | Record::OpEnded { ts_ns, .. }
        | Record::Unmatched { ts_ns, .. } => *ts_ns += by,
        Record::LibraryTraced { .. } | Record::LibraryRefused { .. } => {}
    }
}

#[test]
fn a_file_cut_short_ends_after_a_whole_event_once_a_process_has_started_or_ended() {
    let d = dir("cut");
    let path = d.join("trace.json");
    let mut t = TraceFile::create(&path).unwrap();
    // Written at once: an empty timeline is already the start of a valid one.
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str::<Value>(&format!("{text}]}}")).unwrap();
    let records = session();
    let exit = records
        .iter()
        .position(|r| matches!(r, Record::ProcessExited(_)))
        .unwrap();
    for r in &records[..=exit] {
        t.record(r);
    }
    // The tracer dies here (no finish): what is on disk is every event so far, minus the
    // closing `]}`.
    let text = std::fs::read_to_string(&path).unwrap();
    let v: Value = serde_json::from_str(&format!("{text}\n]}}")).unwrap();
    let kinds: Vec<&str> = events(&v)
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(kinds.last(), Some(&"process_exited"), "{kinds:?}");
    assert_eq!(check_nesting(events(&v)), 0);
    drop(t);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn rotation_closes_the_file_and_the_next_one_stands_on_its_own() {
    use Role::*;
    let d = dir("rotate");
    let path = d.join("trace.json");
    let mut t = TraceFile::create(&path).unwrap();
    let before = [
        started(PID, 1_000),
        entered(WORKER, 1_100, FabricContext, Some(0)),
        buffer(1_200, (Some(0), None), BufferType::Dram, 1000, 1000),
    ];
    for r in &before {
        t.record(r);
    }
    for _ in 0..2 {
        TraceFile::rotate(&mut t).unwrap();
    }
    let after = [
        exited_ctx(WORKER, 1_300, FabricContext, Some(0), Some(1_100)),
        process_exit(1_400),
    ];
    for r in &after {
        t.record(r);
    }
    t.finish(&report()).unwrap();
    let read = |p: &Path| -> Value {
        let text = std::fs::read_to_string(p).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}:\n{text}", p.display()))
    };
    let (oldest, middle, newest) = (
        read(&d.join("trace.json.2")),
        read(&d.join("trace.json.1")),
        read(&path),
    );
    for v in [&oldest, &middle, &newest] {
        assert_eq!(check_nesting(events(v)), 0);
        let names: BTreeSet<(&str, &str)> = events(v)
            .iter()
            .filter(|e| e["ph"] == "M")
            .map(|e| {
                (
                    e["name"].as_str().unwrap(),
                    e["args"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            BTreeSet::from([
                ("process_name", "python3"),
                ("thread_name", "main"),
                ("thread_name", "thread")
            ])
        );
    }
    // The span goes on in each file; the newest has its real end.
    let span = |v: &Value, ph: &str| -> Vec<Value> {
        events(v)
            .iter()
            .filter(|e| e["ph"] == ph && e["name"] == "fabric_context")
            .map(|e| e["args"].clone())
            .collect()
    };
    assert_eq!(span(&oldest, "E"), [json!({"ended_by": "rotation"})]);
    assert_eq!(span(&middle, "B")[0]["continued"], true);
    assert_eq!(span(&newest, "B")[0]["continued"], true);
    assert_eq!(span(&newest, "E")[0]["duration_ns"], 200);
    // The counter starts the new file where it stood.
    let counters: Vec<&Value> = events(&newest).iter().filter(|e| e["ph"] == "C").collect();
    assert_eq!(counters.len(), 1);
    assert_eq!(counters[0]["args"], json!({"DRAM": 1000}));
    assert_eq!(counters[0]["ts"].as_f64(), Some(1.2));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_path_that_cannot_be_written_fails_at_once() {
    let e = TraceFile::create("/nonexistent-dir/trace.json")
        .err()
        .expect("no such directory");
    assert!(e.to_string().contains("/nonexistent-dir/trace.json"), "{e}");
    let d = dir("isdir");
    assert!(TraceFile::create(&d).is_err(), "a directory");
    std::fs::remove_dir_all(d).unwrap();
}

/// docs/trace.md names every event the file can hold: metadata, span and instant names, the
/// counter tracks and series, and the args tt-tracer adds.
#[test]
fn every_event_name_is_documented_in_docs_trace_md() {
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/trace.md"),
    )
    .expect("docs/trace.md");
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut t = Timeline::new(1);
    let mut out = Vec::new();
    for r in session() {
        t.record(&r, 0, &mut out);
    }
    // Every record kind is in the session: a new kind breaks `shift`'s exhaustive match, and
    // this count, until the session has one.
    let kinds: BTreeSet<String> = session()
        .iter()
        .map(|r| {
            serde_json::to_value(r).unwrap()["record"]
                .as_str()
                .unwrap()
                .into()
        })
        .collect();
    assert_eq!(kinds.len(), 25, "one record of each kind: {kinds:?}");
    for e in &out {
        match e["ph"].as_str().unwrap() {
            "C" => {
                // "chip 0 memory" is documented as "chip N memory".
                let track = e["name"]
                    .as_str()
                    .unwrap()
                    .replace(|c: char| c.is_ascii_digit(), "N");
                names.insert(track);
                names.extend(e["args"].as_object().unwrap().keys().cloned());
            }
            // Operation spans are named after the operation.
            "B" | "E" if e["cat"] == "op" => {}
            _ => {
                names.insert(e["name"].as_str().unwrap().into());
            }
        }
        names.insert(e["cat"].as_str().unwrap_or("").into());
    }
    names.remove("");
    // Every bring-up context a catalog can name is a span.
    for spec in crate::catalog::Catalog::builtin().roles {
        if spec.kind == tracer_common::RecipeKind::Context && !spec.named_by_attach_point() {
            names.insert(spec.role.to_string());
        }
    }
    for series in ["L1_SMALL", "TRACE", "SYSTEM_MEMORY", "OTHER"] {
        names.insert(series.into());
    }
    names.extend(
        [
            "mesh N memory",
            "unattributed memory",
            "ended_by",
            "continued",
            "process_exit",
            "outer_context_exited",
            "rotation",
        ]
        .map(String::from),
    );
    for name in names {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/trace.md does not document `{name}`"
        );
    }
}
