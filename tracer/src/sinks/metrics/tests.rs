use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use super::*;
use crate::sinks::{test_records::*, Sink as _};

/// The sample lines of a rendering (no comments), for exact comparisons.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

/// A state with something in every family.
fn busy_state(t0: Instant) -> MetricsState {
    let mut s = MetricsState::new(DEFAULT_GRACE);
    s.record(
        &Record::ProcessStarted {
            pid: 42,
            instance: 1,
            ts_ns: 1,
            library: Some(0),
            comm: Some("python3".into()),
            cgroup: Some(Cgroup::from_path(
                "/system.slice/docker-0123456789abcdef.scope",
            )),
        },
        t0,
    );
    s.record(&opened(42, 0), t0);
    s.record(&opened(42, 1), t0);
    s.record(&kernel(42, 0, KernelClass::Fabric, 57344), t0);
    s.record(&kernel(42, 0, KernelClass::Fabric, 57344), t0);
    s.record(&kernel(42, 1, KernelClass::Dispatch, 47104), t0);
    s.record(
        &Record::ProgramBinariesPlaced {
            op: None,
            pid: 42,
            tid: 42,
            ts_ns: 2,
            chips: vec![0, 1],
            bytes: 6144,
            address: 0x2000,
            buffer_type: BufferType::Dram,
        },
        t0,
    );
    s.record(&mesh(42, 1, &[0, 1]), t0);
    s.record(&alloc(42, None, Some(1), BufferType::Dram, 2048), t0);
    s.record(&alloc(42, None, Some(1), BufferType::Dram, 10240), t0);
    s.record(&free(42, None, Some(1), BufferType::Dram, 2048), t0);
    s.record(&alloc(42, Some(0), None, BufferType::L1, 4096), t0);
    s.record(&cb(42, 0, 4096), t0);
    s.record(&cb(42, 0, 8192), t0);
    s.record(
        &Record::WorkloadEnqueued {
            op: None,
            pid: 42,
            tid: 42,
            ts_ns: 3,
            total: 2,
        },
        t0,
    );
    s.update_health(
        &BTreeMap::from([("payload_ring_full", 3), ("context_map_full", 0)]),
        120,
        1,
    );
    s
}

const P42: &str = r#"pid="42",comm="python3",cgroup="/system.slice/docker-0123456789abcdef.scope",container="0123456789abcdef",unit="""#;

#[test]
fn exposition_has_exact_lines_for_each_record() {
    let t0 = Instant::now();
    let mut s = busy_state(t0);
    let text = s.render(t0);
    let lines = samples(&text);
    for want in [
        format!(r#"tt_tracer_device_opens_total{{{P42},chip="0"}} 1"#),
        format!(r#"tt_tracer_device_opens_total{{{P42},chip="1"}} 1"#),
        format!(r#"tt_tracer_kernels_loaded_total{{{P42},chip="0",class="fabric"}} 2"#),
        format!(r#"tt_tracer_kernel_loaded_bytes_total{{{P42},chip="0",class="fabric"}} 114688"#),
        format!(r#"tt_tracer_kernels_loaded_total{{{P42},chip="1",class="dispatch"}} 1"#),
        format!(r#"tt_tracer_kernels_loaded_total{{{P42},chip="0",class="application"}} 1"#),
        format!(
            r#"tt_tracer_kernel_loaded_bytes_total{{{P42},chip="1",class="application"}} 6144"#
        ),
        // The mesh's lock-step buffers on each of its chips.
        format!(
            r#"tt_tracer_buffer_live_bytes{{{P42},chip="0",mesh="1",buffer_type="DRAM"}} 2048"#
        ),
        format!(
            r#"tt_tracer_buffer_live_bytes{{{P42},chip="1",mesh="1",buffer_type="DRAM"}} 2048"#
        ),
        format!(
            r#"tt_tracer_buffer_peak_bytes{{{P42},chip="1",mesh="1",buffer_type="DRAM"}} 10240"#
        ),
        format!(r#"tt_tracer_buffers_live{{{P42},chip="1",mesh="1",buffer_type="DRAM"}} 1"#),
        format!(
            r#"tt_tracer_buffer_allocations_total{{{P42},chip="0",mesh="1",buffer_type="DRAM"}} 2"#
        ),
        format!(r#"tt_tracer_buffer_frees_total{{{P42},chip="0",mesh="1",buffer_type="DRAM"}} 1"#),
        // The chip's own allocator: no mesh.
        format!(r#"tt_tracer_buffer_live_bytes{{{P42},chip="0",mesh="",buffer_type="L1"}} 4096"#),
        format!(r#"tt_tracer_circular_buffers_live{{{P42},chip="0"}} 2"#),
        format!(r#"tt_tracer_circular_buffer_live_bytes{{{P42},chip="0"}} 8192"#),
        format!(r#"tt_tracer_workloads_enqueued_total{{{P42}}} 2"#),
        "tt_tracer_processes_traced 1".to_string(),
        "tt_tracer_libraries_traced_total 1".to_string(),
        "tt_tracer_events_applied_total 120".to_string(),
        r#"tt_tracer_events_lost_total{counter="payload_ring_full"} 3"#.to_string(),
        r#"tt_tracer_events_lost_total{counter="context_map_full"} 0"#.to_string(),
        "tt_tracer_malformed_records_total 1".to_string(),
    ] {
        assert!(
            lines.contains(&want.as_str()),
            "missing {want}\nin:\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");

    // The exit: live drops to 0, peaks stay, leaks are counted per process and in total.
    s.record(
        &exited(
            42,
            ExitStatus::Signal(9),
            &[(BufferType::Dram, 2048), (BufferType::L1, 4096)],
        ),
        t0,
    );
    let text = s.render(t0);
    let lines = samples(&text);
    for want in [
        format!(r#"tt_tracer_buffer_live_bytes{{{P42},chip="1",mesh="1",buffer_type="DRAM"}} 0"#),
        format!(
            r#"tt_tracer_buffer_peak_bytes{{{P42},chip="1",mesh="1",buffer_type="DRAM"}} 10240"#
        ),
        format!(r#"tt_tracer_circular_buffer_live_bytes{{{P42},chip="0"}} 0"#),
        format!(r#"tt_tracer_process_leaked_buffers{{{P42}}} 2"#),
        format!(r#"tt_tracer_process_leaked_bytes{{{P42}}} 6144"#),
        r#"tt_tracer_leaked_buffers_total{buffer_type="DRAM"} 1"#.to_string(),
        r#"tt_tracer_leaked_bytes_total{buffer_type="L1"} 4096"#.to_string(),
        r#"tt_tracer_process_exits_total{status="signal_9"} 1"#.to_string(),
        "tt_tracer_processes_traced 0".to_string(),
    ] {
        assert!(
            lines.contains(&want.as_str()),
            "missing {want}\nin:\n{text}"
        );
    }
}

#[test]
fn an_ended_process_keeps_its_series_for_the_grace_period_then_they_go() {
    let t0 = Instant::now();
    let grace = Duration::from_secs(60);
    let mut s = MetricsState::new(grace);
    // Many short-lived processes: the series must not pile up.
    for pid in 1000..1200 {
        s.record(&opened(pid, 0), t0);
        s.record(&kernel(pid, 0, KernelClass::Application, 100), t0);
        s.record(&mesh(pid, 1, &[0]), t0);
        s.record(&alloc(pid, None, Some(1), BufferType::Dram, 2048), t0);
        s.record(&cb(pid, 0, 4096), t0);
        s.record(
            &exited(pid, ExitStatus::Code(0), &[(BufferType::Dram, 2048)]),
            t0,
        );
    }
    let before = s.render(t0 + grace - Duration::from_millis(1));
    assert_eq!(s.processes_with_series(), 200);
    assert!(before.contains(r#"pid="1199""#));
    let after = s.render(t0 + grace);
    assert_eq!(s.processes_with_series(), 0);
    let left: Vec<&str> = samples(&after)
        .into_iter()
        .filter(|l| l.contains("pid="))
        .collect();
    assert!(
        left.is_empty(),
        "series left after the grace period: {left:?}"
    );
    // What is not per process stays.
    for want in [
        r#"tt_tracer_process_exits_total{status="code_0"} 200"#,
        r#"tt_tracer_leaked_buffers_total{buffer_type="DRAM"} 200"#,
        "tt_tracer_processes_traced 0",
    ] {
        assert!(
            samples(&after).contains(&want),
            "missing {want}\nin:\n{after}"
        );
    }
    // A live process is never expired, however long it runs.
    s.record(&opened(7, 0), t0);
    s.render(t0 + grace * 10);
    assert_eq!(s.processes_with_series(), 1);
}

#[test]
fn a_reused_pid_starts_afresh() {
    let t0 = Instant::now();
    let mut s = MetricsState::new(DEFAULT_GRACE);
    s.record(&started(5, "old"), t0);
    s.record(&opened(5, 0), t0);
    s.record(&exited(5, ExitStatus::Code(1), &[]), t0);
    s.record(&started(5, "new"), t0);
    s.record(&opened(5, 0), t0);
    let text = s.render(t0);
    assert!(!text.contains(r#"comm="old""#), "{text}");
    assert!(text.contains(r#"tt_tracer_device_opens_total{pid="5",comm="new",cgroup="",container="",unit="",chip="0"} 1"#), "{text}");
    assert!(text.contains("tt_tracer_processes_traced 1"), "{text}");
}

#[test]
fn health_counters_grow_by_the_difference_of_absolute_figures() {
    let mut s = MetricsState::new(DEFAULT_GRACE);
    s.update_health(&BTreeMap::from([("payload_ring_full", 5)]), 10, 0);
    s.update_health(&BTreeMap::from([("payload_ring_full", 7)]), 25, 0);
    // A smaller figure never takes a counter back.
    s.update_health(&BTreeMap::from([("payload_ring_full", 7)]), 20, 0);
    let text = s.render(Instant::now());
    assert!(
        samples(&text).contains(&r#"tt_tracer_events_lost_total{counter="payload_ring_full"} 7"#),
        "{text}"
    );
    assert!(
        samples(&text).contains(&"tt_tracer_events_applied_total 25"),
        "{text}"
    );
}

#[test]
fn promtool_accepts_the_exposition() {
    let t0 = Instant::now();
    let mut s = busy_state(t0);
    s.record(
        &exited(42, ExitStatus::Code(0), &[(BufferType::Dram, 2048)]),
        t0,
    );
    let text = s.render(t0);
    test_support::prometheus::promtool_check_metrics(&text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    // And with nothing recorded yet.
    let empty = MetricsState::new(DEFAULT_GRACE).render(t0);
    test_support::prometheus::promtool_check_metrics(&empty)
        .unwrap_or_else(|e| panic!("{e}\n{empty}"));
}

/// The names of the families a rendering declares (`# TYPE name type`).
fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_family_is_documented_in_docs_metrics_md() {
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md"),
    )
    .expect("docs/metrics.md");
    let declared = MetricsState::new(DEFAULT_GRACE).family_names();
    assert_eq!(declared.len(), 23, "{declared:?}");
    // The registry declares exactly these (every family with a series in the busy state).
    let t0 = Instant::now();
    let mut busy = busy_state(t0);
    busy.record(
        &exited(42, ExitStatus::Code(0), &[(BufferType::Dram, 1)]),
        t0,
    );
    for rendered in families(&busy.render(t0)) {
        assert!(
            declared.contains(&rendered),
            "{rendered} not in {declared:?}"
        );
    }
    for family in declared {
        // Counters are documented by their sample name (with _total), as they are queried.
        let counter_name = format!("{family}_total");
        assert!(
            docs.contains(&format!("`{family}`")) || docs.contains(&format!("`{counter_name}`")),
            "docs/metrics.md does not document {family}"
        );
    }
}

/// The exporter on its own runtime thread, as the binary runs it.
fn exporter_on_a_thread(
    addr: std::net::SocketAddr,
) -> (
    std::sync::mpsc::Receiver<Result<std::net::SocketAddr, String>>,
    std::sync::mpsc::Sender<Vec<Record>>,
) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (rec_tx, rec_rx) = std::sync::mpsc::channel::<Vec<Record>>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let exporter = match MetricsExporter::bind(addr).await {
                Ok(e) => e,
                Err(e) => {
                    let _ = addr_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = addr_tx.send(Ok(exporter.local_addr()));
            // Fed as the session feeds its sinks; stop when the test drops its sender.
            let mut sinks = crate::sinks::Sinks::new();
            sinks.push(exporter.sink());
            loop {
                match rec_rx.try_recv() {
                    Ok(records) => records.iter().for_each(|r| sinks.record(r)),
                    Err(std::sync::mpsc::TryRecvError::Empty) => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                }
            }
        });
    });
    (addr_rx, rec_tx)
}

#[test]
fn the_server_answers_scrapes_and_prometheus_reads_the_values() {
    let (addr_rx, records) = exporter_on_a_thread("127.0.0.1:0".parse().unwrap());
    let addr = addr_rx.recv().unwrap().unwrap();
    records
        .send(vec![
            opened(77, 3),
            kernel(77, 3, KernelClass::Fabric, 57344),
        ])
        .unwrap();

    // Plain HTTP first: status, content type, 404 elsewhere.
    let get = |path: &str| {
        use std::io::{Read as _, Write as _};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    };
    std::thread::sleep(Duration::from_millis(200));
    let answer = get("/metrics");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
        "{answer}"
    );
    assert!(answer.contains(r#"tt_tracer_kernel_loaded_bytes_total{pid="77",comm="",cgroup="",container="",unit="",chip="3",class="fabric"} 57344"#), "{answer}");
    assert!(get("/nothing").starts_with("HTTP/1.1 404"));

    // A second exporter on the same port fails, naming the address.
    let (taken_rx, _keep) = exporter_on_a_thread(addr);
    let e = taken_rx.recv().unwrap().unwrap_err();
    assert!(
        e.contains(&addr.to_string()) && e.contains("cannot listen"),
        "{e}"
    );

    // A real Prometheus scrapes it.
    let prom = test_support::prometheus::Prometheus::start(addr).unwrap_or_else(|e| panic!("{e}"));
    let got = prom
        .wait_for(
            r#"tt_tracer_kernel_loaded_bytes_total{class="fabric"}"#,
            |r| !r.is_empty(),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", prom.log()));
    assert_eq!(got[0].1, 57344.0);
    assert_eq!(got[0].0["pid"], "77");
    assert_eq!(got[0].0["chip"], "3");
}

#[test]
fn buffers_released_at_close_lower_the_live_gauges_but_are_not_frees() {
    let t0 = Instant::now();
    let mut s = MetricsState::new(DEFAULT_GRACE);
    s.record(&opened(9, 0), t0);
    s.record(&alloc(9, Some(0), None, BufferType::L1, 4096), t0);
    s.record(&alloc(9, Some(0), None, BufferType::L1, 6144), t0);
    s.record(
        &Record::BuffersCleared {
            pid: 9,
            tid: 9,
            ts_ns: 2,
            chip: Some(0),
            mesh: None,
            buffer_type: BufferType::L1,
            count: 2,
            bytes: 6144,
            live_bytes: 0,
        },
        t0,
    );
    s.record(&cb(9, 0, 4096), t0);
    s.record(
        &Record::CircularBuffersReleased {
            pid: 9,
            tid: 9,
            ts_ns: 2,
            chip: 0,
            count: 1,
            bytes: 4096,
        },
        t0,
    );
    let text = s.render(t0);
    let p9 = r#"pid="9",comm="",cgroup="",container="",unit="""#;
    for want in [
        format!(r#"tt_tracer_buffer_live_bytes{{{p9},chip="0",mesh="",buffer_type="L1"}} 0"#),
        format!(r#"tt_tracer_buffers_live{{{p9},chip="0",mesh="",buffer_type="L1"}} 0"#),
        format!(r#"tt_tracer_buffer_peak_bytes{{{p9},chip="0",mesh="",buffer_type="L1"}} 6144"#),
        format!(
            r#"tt_tracer_buffer_allocations_total{{{p9},chip="0",mesh="",buffer_type="L1"}} 2"#
        ),
        format!(r#"tt_tracer_circular_buffer_live_bytes{{{p9},chip="0"}} 0"#),
        format!(r#"tt_tracer_circular_buffers_live{{{p9},chip="0"}} 0"#),
    ] {
        assert!(
            samples(&text).contains(&want.as_str()),
            "missing {want}\nin:\n{text}"
        );
    }
    assert!(!text.contains("tt_tracer_buffer_frees_total{"), "{text}");
}
