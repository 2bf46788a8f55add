//! End-to-end on the stand-in libtt_metal.so (real 0.81.1 symbol names and call structure):
//! real eBPF programs in this kernel, real uprobes, the real `tt-tracer` binary.

use std::{process::Command, time::Duration};

use integration_tests::*;
use serde_json::{json, Value};

const FABRIC_BYTES: u64 = 56 * KIB;
const DISPATCH_BYTES: u64 = 46 * KIB;
/// Where the stand-in's DRAM banks start (its allocators place DRAM buffers from there up).
const DRAM_BASE: u64 = 0x10000;
/// The driver's default kernel binary size (`--app-kernel-bytes`).
const KERNEL_BYTES: u64 = 12288;
/// How far a 12 KiB DRAM buffer moves the next DRAM address: 12 KiB over 8 banks, 64-byte aligned.
const KERNEL_BUFFER_STRIDE: u64 = 0x600;
/// The L1 address the stand-in's programs put their kernels at (their kernel-config base).
const PROGRAM_KERNEL_ADDR: u64 = 0x30000;

/// A number the report must have: a missing or non-numeric field fails, it never reads as 0.
fn num(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

/// A field the report must have.
fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("no field {key:?} in {v}"))
}

fn tally(v: &Value) -> (u64, u64) {
    (num(v, "count"), num(v, "bytes"))
}

/// One allocator's banks: tt-metal's L1BankingAllocator builds one BankManager per type.
fn one_bank_of_each_type() -> Value {
    json!({"DRAM": 1, "L1": 1, "L1_SMALL": 1, "TRACE": 1})
}

/// One buffer type's books, every field.
#[allow(clippy::too_many_arguments)]
fn books(
    allocs: u64,
    alloc_bytes: u64,
    frees: u64,
    free_bytes: u64,
    cleared: u64,
    cleared_bytes: u64,
    live: u64,
    live_bytes: u64,
    peak_bytes: u64,
) -> Value {
    json!({
        "allocs": allocs, "alloc_bytes": alloc_bytes, "frees": frees, "free_bytes": free_bytes,
        "cleared": cleared, "cleared_bytes": cleared_bytes, "live": live, "live_bytes": live_bytes,
        "peak_bytes": peak_bytes,
    })
}

/// Every bank of `proc` has its owner: each chip's own allocator was built inside its
/// `Device::initialize_allocator`, the mesh's lock-step one inside `MeshDeviceImpl::initialize_impl`
/// (inside `MeshDevice::create`, which opened every chip), and one throw-away allocator per chip
/// inside `generate_device_bank_to_noc_tables`. Nothing is booked as unattributed.
fn assert_attribution(t: &Traced, proc: &Value, devices: u64) {
    assert_eq!(num(proc, "unattributed_banks"), 0, "{}", t.report);
    assert_eq!(num(proc, "scratch_banks"), 4 * devices, "{}", t.report);
    assert_eq!(
        field(proc, "unattributed"),
        &json!({"by_type": {}}),
        "no buffer without an owner"
    );
    let meshes = field(proc, "meshes").as_object().expect("meshes object");
    assert_eq!(
        meshes.keys().collect::<Vec<_>>(),
        ["1"],
        "one mesh: {}",
        t.report
    );
    let mesh = &meshes["1"];
    assert_eq!(num(mesh, "index"), 1);
    assert_eq!(
        field(mesh, "chips"),
        &json!((0..devices).collect::<Vec<_>>()),
        "the mesh's chips are those opened inside MeshDevice::create"
    );
    assert_eq!(field(mesh, "banks"), &one_bank_of_each_type(), "mesh banks");
    for chip in 0..devices {
        let d = field(field(proc, "devices"), &chip.to_string());
        assert_eq!(
            field(d, "banks"),
            &one_bank_of_each_type(),
            "chip {chip} banks"
        );
        assert_eq!(num(d, "mesh"), 1, "chip {chip} is in mesh 1");
        assert!(
            num(field(d, "phases"), "device_allocator") > 0,
            "chip {chip}: its allocator was built in a context naming it"
        );
    }
}

/// Every device of `proc` carries exactly the seed's system kernels (204 KiB), the firmware the
/// library wrote (per core type) and the driver's application kernels, split by how they were
/// loaded; and every bank is attributed.
fn assert_ledger(t: &Traced, proc: &Value, driver: &Value) {
    let devices = num(driver, "devices");
    let app = field(driver, "application_per_device");
    let firmware = field(driver, "firmware_per_device");
    let ds = field(proc, "devices").as_object().expect("devices");
    assert_eq!(ds.len() as u64, devices, "devices in report: {}", t.report);
    assert_attribution(t, proc, devices);
    for chip in 0..devices {
        let d = field(field(proc, "devices"), &chip.to_string());
        let loaded = field(d, "loaded");
        let fabric = tally(field(loaded, "fabric"));
        let dispatch = tally(field(loaded, "dispatch"));
        assert_eq!(fabric, (2, 2 * FABRIC_BYTES), "device {chip} fabric");
        assert_eq!(dispatch, (2, 2 * DISPATCH_BYTES), "device {chip} dispatch");
        assert_eq!(
            fabric.1 + dispatch.1,
            204 * KIB,
            "device {chip} system kernels"
        );
        assert_eq!(tally(field(loaded, "init")), (0, 0), "device {chip} init");
        assert_eq!(
            tally(field(loaded, "application")),
            tally(field(app, "written")),
            "device {chip} application kernels written to cores vs the driver's own count"
        );
        assert_eq!(
            tally(field(loaded, "program_buffers")),
            tally(field(app, "program_buffers")),
            "device {chip} programs' binary buffers vs the driver's own count"
        );
        assert_eq!(
            num(field(loaded, "application"), "count")
                + num(field(loaded, "program_buffers"), "count"),
            num(driver, "app_kernels_per_device"),
            "device {chip} application kernels, however loaded"
        );
        assert_eq!(
            num(field(loaded, "application"), "bytes")
                + num(field(loaded, "program_buffers"), "bytes"),
            num(driver, "app_bytes_per_device"),
            "device {chip} application bytes, however loaded"
        );
        assert_eq!(
            tally(field(loaded, "firmware")),
            tally(firmware),
            "device {chip} firmware vs what the library wrote"
        );
        assert_eq!(
            field(d, "firmware_by_core"),
            field(firmware, "by_core"),
            "device {chip} firmware per core type"
        );
        assert!(field(d, "opened_ns").is_u64(), "device {chip} open seen");
    }
}

/// What the stand-in's firmware is per device (tt_metal.cpp: 5 Tensix RISCs multicast, an
/// ERISC on each of 2 active ethernet cores): the oracle's own figures must be these.
fn assert_standin_firmware(driver: &Value, opens: u64) {
    let tensix = 6144 + 4608 + 3072 + 3584 + 2560;
    assert_eq!(
        field(driver, "firmware_per_device"),
        &json!({
            "count": 7 * opens,
            "bytes": (tensix + 2 * 5120) * opens,
            "by_core": {
                "tensix": {"count": 5 * opens, "bytes": tensix * opens},
                "active_eth": {"count": 2 * opens, "bytes": 2 * 5120 * opens},
            },
        })
    );
}

fn run_driver(driver_args: &[&str]) -> Traced {
    run_driver_with(driver_args, &[])
}

/// `tt-tracer run` of the driver, with `envs` in the tracer's (and so the driver's) environment.
fn run_driver_with(driver_args: &[&str], envs: &[(&str, &str)]) -> Traced {
    require_root();
    let s = standin();
    let lib = s.lib.to_str().unwrap();
    let drv = s.driver.to_str().unwrap();
    let mut args = vec!["run", "--lib", lib, "--", drv];
    args.extend_from_slice(driver_args);
    trace(&args, envs).expect("tt-tracer run")
}

/// The events of one record kind.
fn records<'a>(t: &'a Traced, record: &str) -> Vec<&'a Value> {
    t.events.iter().filter(|e| e["record"] == record).collect()
}

#[test]
fn system_and_application_kernels_on_1_2_and_8_devices() {
    for n in ["1", "2", "8"] {
        let t = run_driver(&[
            "--devices",
            n,
            "--app-kernels",
            "5",
            "--program-kernels",
            "2",
            "--app-threads",
            "3",
        ]);
        assert!(
            t.status.success(),
            "devices={n}: {:?}\n{}",
            t.status,
            t.stderr
        );
        let driver = t.driver();
        let p = t.process(driver["pid"].as_u64().unwrap());
        assert_ledger(&t, p, &driver);
        assert_standin_firmware(&driver, 1);
        // Closed normally: every device closed, nothing left behind.
        for (chip, d) in p["devices"].as_object().unwrap() {
            assert!(d["closed_ns"].is_u64(), "device {chip} close seen");
            let resident = field(d, "resident");
            for class in [
                "fabric",
                "dispatch",
                "application",
                "program_buffers",
                "firmware",
            ] {
                assert_eq!(
                    tally(field(resident, class)),
                    (0, 0),
                    "device {chip} {class}"
                );
            }
        }
        assert_eq!(p["exit"]["status"]["code"], 0, "{}", p["exit"]);
        t.assert_nothing_lost();
        assert!(
            t.stderr.contains("System kernels:"),
            "text report on stderr:\n{}",
            t.stderr
        );
    }
}

/// Mesh buffers are booked to the mesh (its lock-step allocator), exactly, on 1, 2 and 3 chips.
/// The programs' kernel-binary buffers (fast dispatch) come from the same allocator but are
/// application kernels on every chip, never buffers in anyone's books.
#[test]
fn buffers_are_booked_to_the_mesh_and_program_binaries_are_kernels() {
    for n in 1..=3u64 {
        let devices = n.to_string();
        // 2 programs of 12 KiB on the mesh. Then mesh buffers: DRAM 4 KiB, L1 8 KiB, DRAM 12 KiB,
        // L1 16 KiB, all but the first freed; the first is still allocated at close.
        let t = run_driver(&[
            "--devices",
            &devices,
            "--app-kernels",
            "1",
            "--program-kernels",
            "2",
            "--buffers",
            "4",
        ]);
        assert!(t.status.success(), "devices={n}: {}", t.stderr);
        let driver = t.driver();
        let p = t.process(num(&driver, "pid"));
        assert_ledger(&t, p, &driver);
        assert_eq!(num(p, "unmatched"), 0, "{}", t.report);

        let mesh = &p["meshes"]["1"];
        assert_eq!(
            field(field(mesh, "memory"), "by_type"),
            &json!({
                "DRAM": books(2, 16 * KIB, 1, 12 * KIB, 1, 4 * KIB, 0, 0, 16 * KIB),
                "L1": books(2, 24 * KIB, 2, 24 * KIB, 0, 0, 0, 0, 24 * KIB),
            }),
            "devices={n}: mesh 1 books (the programs' binaries are not in them)"
        );
        let outstanding = field(mesh, "outstanding_at_close")
            .as_array()
            .expect("mesh outstanding_at_close");
        assert_eq!(outstanding.len(), 1, "{outstanding:?}");
        assert_eq!(outstanding[0]["buffer_type"], "DRAM");
        assert_eq!(num(&outstanding[0], "size"), 4 * KIB);
        // Placed after the two programs' binaries, on the same DRAM bank.
        assert_eq!(
            num(&outstanding[0], "address"),
            DRAM_BASE + 2 * KERNEL_BUFFER_STRIDE
        );
        assert!(num(mesh, "closed_ns") >= num(mesh, "opened_ns"));
        let closed = records(&t, "mesh_closed");
        assert_eq!(closed.len(), 1, "one mesh_closed record");
        assert_eq!(num(closed[0], "mesh"), 1);
        assert_eq!(num(closed[0], "outstanding"), 1);

        for chip in 0..n {
            let d = &p["devices"][chip.to_string()];
            assert_eq!(
                tally(field(field(d, "loaded"), "program_buffers")),
                (2, 2 * KERNEL_BYTES),
                "devices={n}: chip {chip} carries both programs' binaries"
            );
            assert_eq!(
                field(field(d, "memory"), "by_type"),
                &json!({}),
                "devices={n}: chip {chip}'s own allocator placed nothing"
            );
            assert_eq!(field(d, "outstanding_at_close"), &json!([]));
        }
        assert_eq!(
            field(field(p, "exit"), "leaks"),
            &json!([]),
            "nothing leaked"
        );
        let chips: Vec<String> = (0..n).map(|c| c.to_string()).collect();
        assert!(
            t.stderr.contains(&format!(
                "mesh 1 (chips {}; one lock-step allocator)",
                chips.join(", ")
            )),
            "{}",
            t.stderr
        );
        t.assert_nothing_lost();
    }
}

/// Per chip after a normal close: nothing resident, and each chip's close released no program
/// binaries (the workloads were destroyed, their buffers freed, before `MeshDevice::close`).
fn assert_closed_clean(p: &Value, t: &Traced, devices: u64) {
    for chip in 0..devices {
        let d = field(field(p, "devices"), &chip.to_string());
        assert!(field(d, "closed_ns").is_u64(), "device {chip} close seen");
        assert!(
            field(d, "resident")
                .as_object()
                .expect("resident")
                .values()
                .all(|k| tally(k) == (0, 0)),
            "device {chip} resident: {}",
            d["resident"]
        );
    }
    let closes = records(t, "device_closed");
    assert!(closes.len() as u64 >= devices, "{closes:?}");
    for c in closes {
        assert_eq!(
            tally(field(field(c, "released"), "program_buffers")),
            (0, 0),
            "freed before the close: {c}"
        );
    }
    assert_eq!(field(field(p, "exit"), "leaks"), &json!([]));
    assert_eq!(tally(field(p, "unplaced_program_buffers")), (0, 0));
}

/// Fast dispatch (the default, as in ttnn): `EnqueueMeshWorkload` → `MeshWorkloadImpl::load_binaries`
/// places each program's binaries once, in one DRAM buffer of the mesh's lock-step allocator:
/// an application kernel on every chip of the mesh, with the program's exact size; nothing is
/// written to the cores from the host, nothing is booked as a buffer, and the buffers are freed
/// when the workloads are destroyed, before the mesh closes.
#[test]
fn fast_dispatch_places_each_programs_binaries_once_for_the_whole_mesh() {
    for n in 1..=2u64 {
        let t = run_driver(&[
            "--devices",
            &n.to_string(),
            "--app-kernels",
            "0",
            "--program-kernels",
            "3",
        ]);
        assert!(t.status.success(), "devices={n}: {}", t.stderr);
        let driver = t.driver();
        assert_eq!(field(&driver, "dispatch"), "fast");
        assert_eq!(
            field(&driver, "application_per_device"),
            &json!({
                "written": {"count": 0, "bytes": 0},
                "program_buffers": {"count": 3, "bytes": 3 * KERNEL_BYTES},
            }),
            "the oracle itself"
        );
        assert_standin_firmware(&driver, 1);
        let p = t.process(num(&driver, "pid"));
        assert_ledger(&t, p, &driver);
        for chip in 0..n {
            let loaded = field(field(field(p, "devices"), &chip.to_string()), "loaded");
            assert_eq!(
                tally(field(loaded, "program_buffers")),
                (3, 3 * KERNEL_BYTES)
            );
            assert_eq!(tally(field(loaded, "application")), (0, 0));
        }
        // One record per program, naming every chip of the mesh, in the mesh's DRAM one after
        // the other.
        let placed = records(&t, "program_binaries_placed");
        let chips: Vec<u64> = (0..n).collect();
        assert_eq!(placed.len(), 3, "{placed:?}");
        for (i, r) in placed.iter().enumerate() {
            assert_eq!(field(r, "chips"), &json!(chips), "{r}");
            assert_eq!(num(r, "bytes"), KERNEL_BYTES, "{r}");
            assert_eq!(field(r, "buffer_type"), "DRAM", "{r}");
            assert_eq!(
                num(r, "address"),
                DRAM_BASE + i as u64 * KERNEL_BUFFER_STRIDE,
                "{r}"
            );
        }
        assert!(records(&t, "kernel_loaded")
            .iter()
            .all(|k| k["class"] != "application"));
        // Not in any allocator's books: the mesh's, or a chip's own.
        assert_eq!(
            field(field(&p["meshes"]["1"], "memory"), "by_type"),
            &json!({})
        );
        for chip in 0..n {
            let d = field(field(p, "devices"), &chip.to_string());
            assert_eq!(field(field(d, "memory"), "by_type"), &json!({}));
        }
        assert!(num(field(p, "phases"), "program_binaries") > 0);
        assert_eq!(num(p, "workloads_enqueued"), 3);
        assert_eq!(num(p, "unmatched"), 0);
        assert_closed_clean(p, &t, n);
        assert!(
            t.stderr.contains("program binary buffers 3: 36.0 KiB"),
            "{}",
            t.stderr
        );
        t.assert_nothing_lost();
    }
}

/// Slow dispatch (`TT_METAL_SLOW_DISPATCH_MODE` set, or the driver's `--slow-dispatch`):
/// `SDMeshCommandQueue::enqueue_mesh_workload` → `slow_dispatch::ConfigureDeviceWithProgram` →
/// `DataMovementKernel::configure` writes each program's kernel to each of its 2 cores of every
/// chip: 3 × 2 application kernels per chip, written per core, and no binary buffer.
#[test]
fn slow_dispatch_writes_each_kernel_to_each_core() {
    for (n, envs, flag) in [
        (1u64, &[("TT_METAL_SLOW_DISPATCH_MODE", "1")][..], None),
        (2, &[("TT_METAL_SLOW_DISPATCH_MODE", "1")][..], None),
        (2, &[][..], Some("--slow-dispatch")),
    ] {
        let devices = n.to_string();
        let mut args = vec![
            "--devices",
            &devices,
            "--app-kernels",
            "0",
            "--program-kernels",
            "3",
        ];
        args.extend(flag);
        let t = run_driver_with(&args, envs);
        let how = format!("devices={n} {envs:?} {flag:?}");
        assert!(t.status.success(), "{how}: {}", t.stderr);
        let driver = t.driver();
        assert_eq!(field(&driver, "dispatch"), "slow", "{how}");
        assert_eq!(
            field(&driver, "application_per_device"),
            &json!({
                "written": {"count": 6, "bytes": 6 * KERNEL_BYTES},
                "program_buffers": {"count": 0, "bytes": 0},
            }),
            "{how}: the oracle itself"
        );
        assert_standin_firmware(&driver, 1);
        let p = t.process(num(&driver, "pid"));
        assert_ledger(&t, p, &driver);
        for chip in 0..n {
            let loaded = field(field(field(p, "devices"), &chip.to_string()), "loaded");
            assert_eq!(
                tally(field(loaded, "application")),
                (6, 6 * KERNEL_BYTES),
                "{how}"
            );
            assert_eq!(tally(field(loaded, "program_buffers")), (0, 0), "{how}");
            // Each one written to a core at the programs' kernel-config base.
            let writes: Vec<&Value> = records(&t, "kernel_loaded")
                .into_iter()
                .filter(|k| k["class"] == "application" && k["chip"] == chip)
                .collect();
            assert_eq!(writes.len(), 6, "{how}");
            for w in writes {
                assert_eq!(num(w, "bytes"), KERNEL_BYTES, "{w}");
                assert_eq!(num(w, "address"), PROGRAM_KERNEL_ADDR, "{w}");
            }
        }
        assert!(records(&t, "program_binaries_placed").is_empty(), "{how}");
        assert!(
            field(p, "phases").get("program_binaries").is_none(),
            "{how}: no binaries loaded into device memory"
        );
        assert_eq!(
            field(field(&p["meshes"]["1"], "memory"), "by_type"),
            &json!({})
        );
        assert_eq!(num(p, "workloads_enqueued"), 3, "{how}");
        assert_eq!(num(p, "unmatched"), 0);
        assert_closed_clean(p, &t, n);
        t.assert_nothing_lost();
    }
}

/// Firmware is written while each chip is brought up, before its `Device` exists, where
/// tt-metal 0.81.1 does it (`RiscFirmwareInitializer::run_launch_phase`, inside
/// `MeshDevice::create`): Tensix firmware multicast once per RISC, the ERISC firmware once per
/// active ethernet core; it stays resident until the chip closes.
#[test]
fn firmware_is_written_per_chip_and_core_type_before_each_device_opens() {
    let t = run_driver(&["--devices", "2", "--app-kernels", "1", "--repeat", "2"]);
    assert!(t.status.success(), "{}", t.stderr);
    let driver = t.driver();
    assert_standin_firmware(&driver, 2);
    let p = t.process(num(&driver, "pid"));
    for chip in 0..2u64 {
        let d = field(field(p, "devices"), &chip.to_string());
        let fw = field(&driver, "firmware_per_device");
        assert_eq!(
            tally(field(field(d, "loaded"), "firmware")),
            tally(fw),
            "chip {chip}"
        );
        assert_eq!(
            field(d, "firmware_by_core"),
            field(fw, "by_core"),
            "chip {chip}"
        );
    }
    let firmware = records(&t, "firmware_loaded");
    assert_eq!(firmware.len(), 2 * 2 * 7);
    let opens = records(&t, "device_opened");
    assert_eq!(opens.len(), 4, "2 chips, 2 opens");
    for chip in 0..2u64 {
        let first_open = opens
            .iter()
            .filter(|o| o["chip"] == chip)
            .map(|o| num(o, "ts_ns"))
            .min()
            .expect("chip opened");
        let mine: Vec<&&Value> = firmware.iter().filter(|f| f["chip"] == chip).collect();
        assert_eq!(mine.len(), 14);
        let before = mine.iter().filter(|f| num(f, "ts_ns") < first_open).count();
        assert_eq!(
            before, 7,
            "chip {chip}: its first open's firmware came before its Device"
        );
        let tensix: Vec<u64> = mine
            .iter()
            .filter(|f| f["core_type"] == "tensix")
            .map(|f| num(f, "bytes"))
            .collect();
        assert_eq!(
            tensix,
            [6144, 4608, 3072, 3584, 2560].repeat(2),
            "per RISC, in order"
        );
        assert!(mine
            .iter()
            .filter(|f| f["core_type"] != "tensix")
            .all(|f| f["core_type"] == "active_eth" && num(f, "bytes") == 5120));
    }
    assert_closed_clean(p, &t, 2);
    t.assert_nothing_lost();
}

/// A process killed while holding buffers: each leak names its owner (here the mesh), type, size
/// and address. The program's binary buffer is no leak: its exit released it as an application
/// kernel on every chip.
#[test]
fn leaks_at_a_kill_name_their_chip_or_mesh() {
    require_root();
    let (child, stdout, driver) = run_driver_until_oracle(&[
        "--devices",
        "2",
        "--app-kernels",
        "1",
        "--program-kernels",
        "1",
        "--buffers",
        "2",
        "--hold-ms",
        "60000",
    ]);
    let pid = num(&driver, "pid");
    // SAFETY: signalling the driver we started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let t = child.wait_with(stdout).unwrap();
    assert_eq!(t.status.code(), Some(128 + 9), "{}", t.stderr);
    let p = t.process(pid);
    assert_ledger(&t, p, &driver);
    let exit = field(p, "exit");
    assert_eq!(num(field(exit, "status"), "signal"), 9);
    assert_eq!(
        tally(field(field(exit, "released"), "program_buffers")),
        (2, 2 * KERNEL_BYTES),
        "one program binary buffer on each of the 2 chips"
    );
    // The mesh's first buffer (its L1 8 KiB buffer was freed), after the program's binaries.
    let leaks: Vec<(String, String, u64, u64)> = field(exit, "leaks")
        .as_array()
        .expect("leaks")
        .iter()
        .map(|l| {
            assert!(num(l, "allocated_ns") > 0 && l["age_ns"].is_u64(), "{l}");
            (
                field(l, "owner").as_str().expect("owner").to_string(),
                field(l, "buffer_type")
                    .as_str()
                    .expect("buffer_type")
                    .to_string(),
                num(l, "size"),
                num(l, "address"),
            )
        })
        .collect();
    assert_eq!(
        leaks,
        [(
            "mesh 1".to_string(),
            "DRAM".to_string(),
            4 * KIB,
            DRAM_BASE + KERNEL_BUFFER_STRIDE
        )],
        "{}",
        t.report
    );
    let line = "leaked: mesh 1 DRAM 4.0 KiB at 0x10600";
    assert!(t.stderr.contains(line), "{line:?} in:\n{}", t.stderr);
    assert!(
        !t.stderr.contains("unattributed"),
        "no unattributed memory:\n{}",
        t.stderr
    );
    t.assert_nothing_lost();
}

/// configure_fabric runs on worker threads while other threads load application kernels:
/// each kernel is classified by the context of ITS thread.
#[test]
fn concurrent_application_loads_during_fabric_bring_up_stay_application() {
    let t = run_driver(&["--devices", "4", "--app-kernels", "6", "--app-threads", "4"]);
    assert!(t.status.success(), "{}", t.stderr);
    let driver = t.driver();
    assert_ledger(&t, t.process(driver["pid"].as_u64().unwrap()), &driver);
    t.assert_nothing_lost();

    // The overlap really happened: an application kernel was loaded on one thread while a
    // fabric context was open on another.
    let mut open: Vec<(u64, u64, u64)> = Vec::new(); // (tid, enter, exit)
    let mut enters = std::collections::HashMap::new();
    for e in &t.events {
        if e["role"] == "fabric_context" {
            let tid = e["tid"].as_u64().unwrap();
            match e["record"].as_str() {
                Some("context_entered") => {
                    enters.insert(tid, e["ts_ns"].as_u64().unwrap());
                }
                Some("context_exited") => {
                    open.push((tid, enters[&tid], e["ts_ns"].as_u64().unwrap()))
                }
                _ => {}
            }
        }
    }
    assert_eq!(open.len(), 4, "one fabric context per device");
    assert!(
        open.iter()
            .all(|(tid, _, _)| *tid != driver["pid"].as_u64().unwrap()),
        "fabric ran on worker threads"
    );
    let overlapped = t
        .events
        .iter()
        .filter(|e| e["record"] == "kernel_loaded" && e["class"] == "application")
        .filter(|e| {
            let (ts, tid) = (e["ts_ns"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
            open.iter()
                .any(|(ftid, a, b)| *ftid != tid && *a < ts && ts < *b)
        })
        .count();
    assert!(
        overlapped > 0,
        "no application kernel was loaded during fabric bring-up; the test proves nothing"
    );
    println!("{overlapped} application kernels loaded while fabric was being configured on another thread");
}

#[test]
fn sigkill_before_close_is_cleaned_up_at_once() {
    require_root();
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let (child, stdout, driver) = run_driver_until_oracle(&[
            "--devices",
            "2",
            "--app-kernels",
            "3",
            "--hold-ms",
            "60000",
        ]);
        let pid = driver["pid"].as_i64().unwrap() as i32;
        let t0 = monotonic_ns();
        // SAFETY: signalling the driver we started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        child
            .wait_event(Duration::from_secs(10), |e| {
                e["record"] == "process_exited" && e["pid"] == pid as u64
            })
            .expect("cleanup record after SIGKILL");
        latencies.push((monotonic_ns() - t0) as f64 / 1e6);
        let t = child.wait_with(stdout).unwrap();
        assert_eq!(
            t.status.code(),
            Some(128 + 9),
            "run returns 128+signal: {}",
            t.stderr
        );
        let p = t.process(pid as u64);
        assert_ledger(&t, p, &driver);
        let exit = &p["exit"];
        assert_eq!(exit["status"]["signal"], 9);
        let released = field(exit, "released");
        assert_eq!(tally(field(released, "fabric")), (4, 4 * FABRIC_BYTES));
        assert_eq!(tally(field(released, "dispatch")), (4, 4 * DISPATCH_BYTES));
        assert_eq!(tally(field(released, "application")), (6, 6 * KERNEL_BYTES));
        let (fw_count, fw_bytes) = tally(field(&driver, "firmware_per_device"));
        assert_eq!(
            tally(field(released, "firmware")),
            (2 * fw_count, 2 * fw_bytes)
        );
        assert!(
            t.stderr.contains(&format!(
                "pid {pid} (tt_driver) exited (signal 9): released 8 system kernels, 408.0 KiB — 4 fabric 224.0 KiB, 4 dispatch 184.0 KiB; 6 application kernels, 72.0 KiB; firmware 14, {:.1} KiB",
                (2 * fw_bytes) as f64 / 1024.0
            )),
            "cleanup line:\n{}",
            t.stderr
        );
        t.assert_nothing_lost();
    }
    let m = median(&mut latencies);
    println!(
        "kill → cleanup record: median {m:.2} ms over {} runs ({latencies:?})",
        latencies.len()
    );
}

#[test]
fn abort_before_close_reports_signal_6() {
    let t = run_driver(&["--devices", "1", "--end", "abort"]);
    assert_eq!(t.status.code(), Some(128 + 6), "{}", t.stderr);
    let driver = t.driver();
    let p = t.process(driver["pid"].as_u64().unwrap());
    assert_eq!(p["exit"]["status"]["signal"], 6);
    assert_eq!(
        tally(&p["exit"]["released"]["fabric"]),
        (2, 2 * FABRIC_BYTES)
    );
    t.assert_nothing_lost();
}

#[test]
fn attach_sees_only_its_pid_while_another_process_uses_the_library() {
    require_root();
    let s = standin();
    let dir = target_dir().join("it-scratch");
    std::fs::create_dir_all(&dir).unwrap();
    let go = dir.join(format!("go-{}", std::process::id()));
    let _ = std::fs::remove_file(&go);
    let spawn = |devices: &str| {
        Command::new(&s.driver)
            .args([
                "--devices",
                devices,
                "--app-kernels",
                "2",
                "--wait-file",
                go.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let target = spawn("2");
    let other = spawn("3");
    let pid = target.id().to_string();
    // No --lib: found in /proc/PID/maps.
    let mut tracer = spawn_trace(&["attach", "--pid", &pid], &[]).unwrap();
    // Wait until armed: the tracer says so on stderr.
    tracer.wait_until_armed(Duration::from_secs(20)).unwrap();
    std::fs::write(&go, b"").unwrap();
    let target_out = target.wait_with_output().unwrap();
    let other_out = other.wait_with_output().unwrap();
    assert!(target_out.status.success() && other_out.status.success());
    let t = tracer.wait_with(String::new()).unwrap();
    assert!(
        t.status.success(),
        "attach exit {:?}\n{}",
        t.status,
        t.stderr
    );
    let driver = driver_line(&String::from_utf8_lossy(&target_out.stdout)).unwrap();
    let procs = t.report["processes"].as_array().unwrap();
    assert_eq!(
        procs.len(),
        1,
        "only the attached pid is traced: {}",
        t.report
    );
    assert_ledger(&t, &procs[0], &driver);
    assert_eq!(procs[0]["pid"].as_u64(), Some(target_out_pid(&driver)));
    t.assert_nothing_lost();
    let _ = std::fs::remove_file(&go);
}

fn target_out_pid(driver: &Value) -> u64 {
    driver["pid"].as_u64().unwrap()
}

/// `sudo tt-tracer run -- cmd`: the command runs as the invoking user with that user's groups,
/// and is traced from its first instruction (it is exec'd only after the probes are armed).
#[test]
fn run_under_sudo_drops_to_the_invoking_user() {
    let t = {
        require_root();
        // The command runs as nobody: it must be able to reach the driver and the library.
        let (s, _) = standin_for_other_users();
        trace(
            &[
                "run",
                "--lib",
                s.lib.to_str().unwrap(),
                "--",
                s.driver.to_str().unwrap(),
                "--devices",
                "1",
            ],
            &[
                ("SUDO_UID", "65534"),
                ("SUDO_GID", "65534"),
                ("SUDO_USER", "nobody"),
            ],
        )
        .unwrap()
    };
    assert!(t.status.success(), "{}", t.stderr);
    let driver = t.driver();
    assert_eq!(driver["uid"], 65534, "child uid");
    assert_eq!(driver["gid"], 65534, "child gid");
    // The user's groups from the group database (nogroup for nobody), never root's.
    let groups: Vec<u64> = driver["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_u64().unwrap())
        .collect();
    assert!(!groups.contains(&0), "root group leaked: {groups:?}");
    assert_eq!(
        expected_groups("nobody", 65534),
        groups,
        "supplementary groups"
    );
    // Armed before the first instruction: the very first probe hit (the device constructor)
    // and every kernel are there.
    assert_ledger(&t, t.process(driver["pid"].as_u64().unwrap()), &driver);
    t.assert_nothing_lost();
}

/// What initgroups(3) gives `user` with primary group `gid`, from `id -G` run as that user.
fn expected_groups(user: &str, gid: u32) -> Vec<u64> {
    let out = Command::new("id")
        .arg("-G")
        .arg(user)
        .output()
        .expect("id -G");
    let mut g: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if !g.contains(&(gid as u64)) {
        g.insert(0, gid as u64);
    }
    g.sort();
    g.dedup();
    g
}

#[test]
fn refuses_clearly_without_privileges() {
    use std::os::unix::process::CommandExt;
    require_root(); // to become someone else
    let (s, tracer) = standin_for_other_users();
    let out = Command::new(tracer)
        .args(["run", "--lib", s.lib.to_str().unwrap(), "--", "true"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "exit code for missing privileges: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("CAP_BPF") && err.contains("root"), "{err}");
}

/// The shells' convention: 127 not found, 126 found but not executable; one line, no report.
#[test]
fn a_command_that_cannot_be_run_gets_the_shells_exit_code_and_no_report() {
    require_root();
    let s = standin();
    let dir = target_dir().join("it-scratch");
    std::fs::create_dir_all(&dir).unwrap();
    let not_executable = dir.join("not-executable.txt");
    std::fs::write(&not_executable, "just text\n").unwrap();
    for (command, code, says) in [
        ("/nonexistent/command", 127, "No such file"),
        ("no-such-command-anywhere-on-path", 127, "No such file"),
        (dir.to_str().unwrap(), 126, "Permission denied"),
        (not_executable.to_str().unwrap(), 126, "Permission denied"),
    ] {
        let t = trace(
            &["run", "--lib", s.lib.to_str().unwrap(), "--", command],
            &[],
        )
        .unwrap();
        assert_eq!(t.status.code(), Some(code), "{command}: {}", t.stderr);
        let line = t.stderr.trim();
        assert_eq!(line.lines().count(), 1, "one line: {}", t.stderr);
        assert!(
            line.contains(command) && line.contains(says),
            "{command}: {line}"
        );
        assert_eq!(
            t.report,
            Value::Null,
            "no report for a command that never ran"
        );
    }
}

/// A process that exits while tt-tracer attaches is "gone" (exit 6), never a kernel refusal
/// (exit 5): short-lived targets, attached at varying points of their life.
#[test]
fn a_target_exiting_during_attach_is_reported_as_gone() {
    require_root();
    let s = standin();
    let mut outcomes = std::collections::BTreeMap::new();
    for i in 0..12u64 {
        let mut target = Command::new("sleep")
            .arg(format!("0.{:03}", 20 + i * 15))
            .spawn()
            .unwrap();
        let t = trace(
            &[
                "attach",
                "--pid",
                &target.id().to_string(),
                "--lib",
                s.lib.to_str().unwrap(),
            ],
            &[],
        )
        .unwrap();
        target.wait().unwrap();
        let code = t.status.code().expect("exit code");
        assert!(
            code == 0 || code == 6,
            "attach to a process that ends: exit {code}: {}",
            t.stderr
        );
        if code == 6 {
            assert!(
                t.stderr.contains("exited") || t.stderr.contains("not found"),
                "{}",
                t.stderr
            );
        }
        *outcomes.entry(code).or_insert(0) += 1;
    }
    eprintln!("attach outcomes (exit code → count): {outcomes:?}");
}

/// SIGTERM to `tt-tracer run` is passed to the command; the report still comes out.
#[test]
fn sigterm_to_the_tracer_reaches_the_command() {
    require_root();
    let (child, stdout, driver) = run_driver_until_oracle(&["--hold-ms", "60000"]);
    // SAFETY: signalling the tracer we started.
    assert_eq!(
        unsafe { libc::kill(child.child.id() as i32, libc::SIGTERM) },
        0
    );
    let t = child.wait_with(stdout).unwrap();
    assert_eq!(t.status.code(), Some(128 + 15), "{}", t.stderr);
    let p = t.process(driver["pid"].as_u64().unwrap());
    assert_eq!(p["exit"]["status"]["signal"], 15);
    assert_ledger(&t, p, &driver);
    t.assert_nothing_lost();
}

/// The child of `parent` whose command name is `comm`, once it exists (within 30 s).
fn child_named(parent: u32, comm: &str) -> u32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let ppid = stat[close + 1..].split_whitespace().nth(1);
            if &stat[open + 1..close] == comm && ppid == Some(&parent.to_string()) {
                return pid;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no child {comm} of {parent}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `tt-tracer run [tracer_args] --lib … -- tt_driver [driver_args] --wait-file GO` with the
/// tracer stopped (SIGSTOP) from the moment the driver waits for GO until the driver has ended:
/// nothing reads the rings while it runs. The run and the driver's pid.
fn run_with_reader_stopped(tracer_args: &[&str], driver_args: &[&str]) -> (Traced, u32) {
    require_root();
    let s = standin();
    let go = target_dir()
        .join("it-scratch")
        .join(format!("go-{}", monotonic_ns()));
    std::fs::create_dir_all(go.parent().unwrap()).unwrap();
    let mut args = vec!["run"];
    args.extend_from_slice(tracer_args);
    args.extend_from_slice(&[
        "--lib",
        s.lib.to_str().unwrap(),
        "--",
        s.driver.to_str().unwrap(),
    ]);
    args.extend_from_slice(driver_args);
    args.extend_from_slice(&["--wait-file", go.to_str().unwrap()]);
    let child = spawn_trace(&args, &[]).unwrap();
    let tracer = child.child.id();
    // Exec'd (so armed), waiting for the go file.
    let driver = child_named(tracer, "tt_driver");
    // SAFETY: signalling the tracer we started.
    assert_eq!(unsafe { libc::kill(tracer as i32, libc::SIGSTOP) }, 0);
    std::fs::write(&go, "").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(format!("/proc/{driver}/stat"))
        .is_ok_and(|st| !st.contains(") Z "))
    {
        assert!(std::time::Instant::now() < deadline, "driver never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(tracer as i32, libc::SIGCONT) }, 0);
    let t = child.wait().unwrap();
    let _ = std::fs::remove_file(&go);
    (t, driver)
}

/// Events lost for real (the tracer stopped while the command floods the ring): the report says
/// the ledger is incomplete in the process's own section, in the JSON, and on stderr, and never
/// claims the devices were left clean.
#[test]
fn a_ledger_with_lost_events_says_it_is_incomplete() {
    // 200,000 kernel writes into an 8 MiB ring (~87,000 events) that nobody reads.
    let (t, driver) = run_with_reader_stopped(
        &[],
        &[
            "--devices",
            "1",
            "--app-kernels",
            "200000",
            "--app-kernel-bytes",
            "64",
        ],
    );
    assert!(t.status.success(), "{}", t.stderr);
    let lost = t.report["lost"]["payload_ring_full"]
        .as_u64()
        .expect("payload_ring_full counter");
    assert!(lost > 50_000, "the flood overflowed the ring: lost {lost}");
    assert_eq!(t.report["complete"], false, "{}", t.report["complete"]);
    let p = t.process(driver as u64);
    assert_eq!(p["complete"], false, "the process's own section");
    let warning = t
        .stderr
        .lines()
        .find(|l| l.contains("events lost"))
        .unwrap_or_else(|| panic!("no loss warning on stderr:\n{}", t.stderr));
    assert!(
        warning.contains("incomplete") && warning.contains(&driver.to_string()),
        "{warning}"
    );
    let section = t
        .stderr
        .split(&format!("process {driver}"))
        .nth(1)
        .expect("the text report's process section");
    assert!(section.contains("INCOMPLETE:"), "{section}");
    let live = t
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("tt-tracer: pid {driver} (tt_driver) exited")))
        .unwrap_or_else(|| panic!("no live cleanup line:\n{}", t.stderr));
    assert!(live.ends_with("(incomplete: events were lost)"), "{live}");
    assert_eq!(p["exit"]["complete"], false, "the cleanup record itself");
    assert!(
        !section.contains("nothing left on its devices\n"),
        "an incomplete ledger never claims a clean exit: {section}"
    );
}

/// The loss-onset benchmark's workload at a moderate size: 2 threads × 20,000 kernel writes at
/// once, after open.
const TWO_WRITERS: [&str; 8] = [
    "--devices",
    "1",
    "--app-kernels",
    "40000",
    "--app-kernel-bytes",
    "64",
    "--writer-threads",
    "2",
];

/// Two threads writing application kernels at the same time lose nothing: every write is in the
/// ledger, booked to its own thread. Forced loss through the hidden `--payload-ring-bytes` (one
/// page, the reader stopped) is counted event for event: what was applied plus what was lost is
/// what the lossless run applied, and the report says incomplete.
#[test]
fn concurrent_writers_lose_nothing_and_forced_loss_is_counted_event_for_event() {
    let t = run_driver(&TWO_WRITERS);
    assert!(t.status.success(), "{}", t.stderr);
    let driver = t.driver();
    assert_eq!(num(&driver, "writer_threads"), 2);
    let pid = num(&driver, "pid");
    assert_eq!(
        num(
            field(field(&driver, "application_per_device"), "written"),
            "count"
        ),
        40_000
    );
    assert_ledger(&t, t.process(pid), &driver);
    t.assert_nothing_lost();
    assert_eq!(t.report["complete"], true);
    // Each writer thread's share, and the two overlapped: (count, first, last) per thread.
    let mut by_thread: std::collections::BTreeMap<u64, (u64, u64, u64)> = Default::default();
    for e in records(&t, "kernel_loaded") {
        if e["class"] == "application" {
            let (tid, ts) = (num(e, "tid"), num(e, "ts_ns"));
            let s = by_thread.entry(tid).or_insert((0, ts, ts));
            *s = (s.0 + 1, s.1.min(ts), s.2.max(ts));
        }
    }
    let shares: Vec<u64> = by_thread.values().map(|s| s.0).collect();
    assert_eq!(shares, [20_000, 20_000], "per writer thread");
    assert!(
        !by_thread.contains_key(&pid),
        "written on the writer threads, not the main one"
    );
    let (a, b) = (
        by_thread.values().next().unwrap(),
        by_thread.values().last().unwrap(),
    );
    assert!(
        a.1.max(b.1) < a.2.min(b.2),
        "the two threads never wrote at the same time; the test proves nothing"
    );
    let applied = num(&t.report, "events");

    // One page holds 4096 / (88 + 8-byte record header) = 42 events; nobody reads it.
    let (lossy, driver_pid) =
        run_with_reader_stopped(&["--payload-ring-bytes", "4096"], &TWO_WRITERS);
    assert!(lossy.status.success(), "{}", lossy.stderr);
    let lost = field(&lossy.report, "lost");
    let dropped = num(lost, "payload_ring_full");
    assert!(
        dropped >= 40_000 - 42,
        "a one-page ring dropped nearly every write: {dropped} (the default 8 MiB would drop none)"
    );
    for (k, v) in lost.as_object().unwrap() {
        if k != "payload_ring_full" {
            assert_eq!(v, 0, "lost counter {k}");
        }
    }
    assert_eq!(
        num(&lossy.report, "events") + dropped,
        applied,
        "every event of the run is either applied or counted as lost"
    );
    assert_eq!(lossy.report["complete"], false);
    assert_eq!(lossy.process(u64::from(driver_pid))["complete"], false);
}
