//! The final report: text for people, JSON for machines (schema in docs/report.md).

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use crate::{
    collector::{
        ledger::MeshLedger,
        memory::{BufferType, CircularBuffers, MemoryBooks, Outstanding},
        CacheOutcome, Cgroup, Cleanup, Collector, CoreType, DeviceLedger, Kernels, OpLedger,
        ProcessLedger, Record, Tally,
    },
    roles::Role,
};

/// The report's JSON schema (docs/report.md).
pub const SCHEMA: u32 = 2;

/// A traced library, as the session knows it. Events name it by `id` (`Event::library`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LibraryInfo {
    pub id: u16,
    pub path: String,
    pub build_id: Option<String>,
    /// "built-in", or the path of the catalog file its probes came from.
    pub catalog: String,
}

/// The final report. Its own output structs, built from the ledger: what the ledger keeps
/// internally can change without changing the schema.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    /// False when the probes lost anything while tracing: every ledger may then be short.
    pub complete: bool,
    pub libraries: Vec<LibraryInfo>,
    pub processes: Vec<ProcessReport>,
    /// Per-CPU loss counters of the probes, summed (all 0 when nothing was lost).
    pub lost: BTreeMap<&'static str, u64>,
    pub events: u64,
    pub unknown_events: u64,
    pub malformed_records: u64,
    /// Ended processes dropped from the collector's bounded history (not in `processes`).
    pub history_dropped: u64,
}

/// One process's ledger, and whether it can be trusted to be whole.
#[derive(Debug, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub instance: u64,
    /// Id of its library in `libraries` (null if none of its events named one).
    pub library: Option<u16>,
    pub library_path: Option<String>,
    pub build_id: Option<String>,
    pub comm: Option<String>,
    pub cgroup: Option<Cgroup>,
    /// False when events were lost while it was traced. The loss counters are per CPU, not
    /// per process, so a loss marks every process of the session.
    pub complete: bool,
    pub first_ns: u64,
    pub last_ns: u64,
    pub devices: BTreeMap<i64, DeviceReport>,
    pub meshes: BTreeMap<u32, MeshReport>,
    pub unattributed: MemoryBooks,
    pub scratch_banks: u32,
    pub unattributed_banks: u32,
    pub unplaced_program_buffers: Tally,
    pub workloads_enqueued: u64,
    pub phases: BTreeMap<Role, u64>,
    /// ttnn device operations, one row per operation type, in the order first launched.
    pub operations: Vec<OpLedger>,
    pub unmatched: u64,
    pub exit: Option<Cleanup>,
}

#[derive(Debug, Serialize)]
pub struct DeviceReport {
    pub chip: i64,
    pub opened_ns: Option<u64>,
    pub closed_ns: Option<u64>,
    pub loaded: Kernels,
    pub resident: Kernels,
    pub first_load_ns: Option<u64>,
    pub last_load_ns: Option<u64>,
    pub memory: MemoryBooks,
    pub circular_buffers: CircularBuffers,
    pub outstanding_at_close: Vec<Outstanding>,
    pub mesh: Option<u32>,
    pub banks: BTreeMap<BufferType, u32>,
    pub firmware_by_core: BTreeMap<CoreType, Tally>,
    pub phases: BTreeMap<Role, u64>,
}

#[derive(Debug, Serialize)]
pub struct MeshReport {
    pub index: u32,
    pub chips: Vec<i64>,
    pub opened_ns: u64,
    pub closed_ns: Option<u64>,
    pub banks: BTreeMap<BufferType, u32>,
    pub memory: MemoryBooks,
    pub outstanding_at_close: Vec<Outstanding>,
}

impl DeviceReport {
    fn new(d: &DeviceLedger) -> Self {
        DeviceReport {
            chip: d.chip,
            opened_ns: d.opened_ns,
            closed_ns: d.closed_ns,
            loaded: d.loaded,
            resident: d.resident,
            first_load_ns: d.first_load_ns,
            last_load_ns: d.last_load_ns,
            memory: d.memory.clone(),
            circular_buffers: d.circular_buffers,
            outstanding_at_close: d.outstanding_at_close.clone(),
            mesh: d.mesh,
            banks: d.banks.clone(),
            firmware_by_core: d.firmware_by_core.clone(),
            phases: d.phases.clone(),
        }
    }
}

impl MeshReport {
    fn new(m: &MeshLedger) -> Self {
        MeshReport {
            index: m.index,
            chips: m.chips.clone(),
            opened_ns: m.opened_ns,
            closed_ns: m.closed_ns,
            banks: m.banks.clone(),
            memory: m.memory.clone(),
            outstanding_at_close: m.outstanding_at_close.clone(),
        }
    }
}

impl ProcessReport {
    fn new(p: &ProcessLedger, libraries: &[LibraryInfo], complete: bool) -> Self {
        // With one library traced, a process none of whose events named it (only its exit
        // was seen) is still that library's.
        let library = p.library.or(match libraries {
            [only] => Some(only.id),
            _ => None,
        });
        let lib = library.and_then(|id| libraries.iter().find(|l| l.id == id));
        ProcessReport {
            pid: p.pid,
            instance: p.instance,
            library,
            library_path: lib.map(|l| l.path.clone()),
            build_id: lib.and_then(|l| l.build_id.clone()),
            comm: p.comm.clone(),
            cgroup: p.cgroup.clone(),
            complete,
            first_ns: p.first_ns,
            last_ns: p.last_ns,
            devices: p
                .devices
                .iter()
                .map(|(c, d)| (*c, DeviceReport::new(d)))
                .collect(),
            meshes: p
                .meshes
                .iter()
                .map(|(i, m)| (*i, MeshReport::new(m)))
                .collect(),
            unattributed: p.unattributed.clone(),
            scratch_banks: p.scratch_banks,
            unattributed_banks: p.unattributed_banks,
            unplaced_program_buffers: p.unplaced_program_buffers,
            workloads_enqueued: p.workloads_enqueued,
            phases: p.phases.clone(),
            operations: p.operations.table.clone(),
            unmatched: p.unmatched,
            exit: p.exit.clone(),
        }
    }

    /// "pid 12 (python3)": the pid, and its command name when known.
    pub fn label(&self) -> String {
        match &self.comm {
            Some(c) => format!("{} ({c})", self.pid),
            None => self.pid.to_string(),
        }
    }
}

impl Report {
    pub fn new(
        collector: &Collector,
        libraries: &[LibraryInfo],
        lost: BTreeMap<&'static str, u64>,
        malformed_records: u64,
    ) -> Self {
        let complete = lost.values().all(|v| *v == 0) && malformed_records == 0;
        Report {
            schema: SCHEMA,
            complete,
            libraries: libraries.to_vec(),
            processes: collector
                .processes()
                .map(|p| ProcessReport::new(p, libraries, complete))
                .collect(),
            lost,
            events: collector.events,
            unknown_events: collector.unknown_events,
            malformed_records,
            history_dropped: collector.history_dropped,
        }
    }

    /// "N events lost (payload_ring_full=N …)": what was lost, for warnings.
    pub fn loss_summary(&self) -> String {
        let mut parts: Vec<String> = self
            .lost
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if self.malformed_records > 0 {
            parts.push(format!("malformed={}", self.malformed_records));
        }
        format!("{} events lost ({})", self.lost_total(), parts.join(" "))
    }

    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum::<u64>() + self.malformed_records
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        match self.libraries.as_slice() {
            [] => {
                let _ = writeln!(s, "tt-tracer report");
            }
            [one] => {
                let _ = writeln!(s, "tt-tracer report — {}", one.path);
            }
            several => {
                let _ = writeln!(s, "tt-tracer report — {} libraries", several.len());
                for l in several {
                    let _ = writeln!(
                        s,
                        "  library {}: {} (build-id {})",
                        l.id,
                        l.path,
                        l.build_id.as_deref().unwrap_or("none")
                    );
                }
            }
        }
        if self.processes.is_empty() {
            let _ = writeln!(s, "  no tt-metal activity seen");
        }
        for p in &self.processes {
            let end = match &p.exit {
                Some(c) => format!("exited ({})", c.status),
                None => "still running".into(),
            };
            let _ = writeln!(s, "process {} — {end}", p.label());
            if self.libraries.len() > 1 {
                let _ = writeln!(
                    s,
                    "  library {}",
                    match (p.library, &p.library_path) {
                        (Some(id), Some(path)) => format!("{id}: {path}"),
                        (Some(id), None) => format!("{id} (unknown)"),
                        _ => "unknown".to_string(),
                    }
                );
            }
            if let Some(cg) = &p.cgroup {
                if let Some(what) = cgroup_label(cg) {
                    let _ = writeln!(s, "  {what}");
                }
            }
            if !p.complete {
                let _ = writeln!(
                    s,
                    "  INCOMPLETE: {} while tracing: the counts below may be short",
                    self.loss_summary()
                );
            }
            if p.devices.is_empty() {
                let _ = writeln!(s, "  no device opened");
            }
            for d in p.devices.values() {
                let state = match (d.opened_ns, d.closed_ns, &p.exit) {
                    (_, Some(c), _) => format!("closed at +{}", secs(c.saturating_sub(p.first_ns))),
                    (_, None, Some(_)) => {
                        "never closed: released when the process exited".to_string()
                    }
                    (Some(_), None, None) => "open".to_string(),
                    (None, None, None) => "open (opened before tracing)".to_string(),
                };
                let _ = writeln!(s, "  device {}: {state}", d.chip);
                kernel_lines(&mut s, "    ", &d.loaded);
                let r = d.resident.total();
                if r.count == 0 {
                    let _ = writeln!(s, "    Still loaded:        none");
                } else {
                    let _ = writeln!(
                        s,
                        "    Still loaded:        {:>3}  {}",
                        r.count,
                        kib(r.bytes)
                    );
                }
                if !d.firmware_by_core.is_empty() {
                    let by: Vec<String> = d
                        .firmware_by_core
                        .iter()
                        .map(|(c, t)| format!("{} {}: {}", <&str>::from(c), t.count, kib(t.bytes)))
                        .collect();
                    let _ = writeln!(s, "    Firmware by core:    {}", by.join(", "));
                }
                if !d.phases.is_empty() {
                    let _ = writeln!(s, "    Bring-up:            {}", phases(&d.phases));
                }
                if !d.memory.is_empty() {
                    let _ = writeln!(s, "    Buffers (the chip's own allocator):");
                    memory_lines(&mut s, "      ", &d.memory);
                    outstanding_line(
                        &mut s,
                        "      ",
                        "Outstanding at close",
                        &d.outstanding_at_close,
                    );
                }
                if let Some(m) = d.mesh {
                    let _ = writeln!(
                        s,
                        "    Buffers of mesh {m} (lock-step: the same on every chip of the mesh)"
                    );
                }
                let cb = &d.circular_buffers;
                if cb.allocs > 0 {
                    let _ = writeln!(
                        s,
                        "    Circular buffers:    {:>3}  {:>11}  (live {}, peak {}, cleared {}×)",
                        cb.allocs,
                        kib(cb.alloc_bytes),
                        kib(cb.live_bytes),
                        kib(cb.peak_bytes),
                        cb.clears
                    );
                }
            }
            for m in p.meshes.values() {
                let chips: Vec<String> = m.chips.iter().map(|c| c.to_string()).collect();
                let state = match m.closed_ns {
                    Some(c) => format!("closed at +{}", secs(c.saturating_sub(p.first_ns))),
                    None => "open".into(),
                };
                let _ = writeln!(
                    s,
                    "  mesh {} (chips {}; one lock-step allocator): {state}",
                    m.index,
                    if chips.is_empty() {
                        "unknown: opened before it".to_string()
                    } else {
                        chips.join(", ")
                    }
                );
                memory_lines(&mut s, "    ", &m.memory);
                outstanding_line(
                    &mut s,
                    "    ",
                    "Outstanding at close",
                    &m.outstanding_at_close,
                );
            }
            let unplaced = &p.unplaced_program_buffers;
            if unplaced.count > 0 {
                let _ = writeln!(
                    s,
                    "  program binary buffers on an unknown allocator: {} ({})",
                    unplaced.count,
                    kib(unplaced.bytes)
                );
            }
            if !p.unattributed.is_empty() {
                let _ = writeln!(s, "  buffers of banks outside any known allocator:");
                memory_lines(&mut s, "    ", &p.unattributed);
            }
            if !p.phases.is_empty() {
                let _ = writeln!(s, "  time in: {}", phases(&p.phases));
            }
            if p.workloads_enqueued > 0 {
                let _ = writeln!(s, "  workloads enqueued: {}", p.workloads_enqueued);
            }
            operation_lines(&mut s, &p.operations);
            if let Some(c) = &p.exit {
                let c = Cleanup {
                    complete: c.complete && p.complete,
                    ..c.clone()
                };
                let _ = writeln!(s, "  {}", cleanup_line(&c));
                for l in c.leaks.iter().take(20) {
                    let _ = writeln!(
                        s,
                        "    leaked: {} {} {} at {:#x}, allocated {} before exit by {}",
                        l.owner,
                        l.buffer.buffer_type.name(),
                        kib(l.buffer.size),
                        l.buffer.address,
                        secs(l.buffer.age_ns),
                        l.buffer.op.as_deref().unwrap_or("no op")
                    );
                }
                if c.leaks.len() > 20 {
                    let _ = writeln!(s, "    … {} more (see the JSON report)", c.leaks.len() - 20);
                }
            }
        }
        if self.history_dropped > 0 {
            let _ = writeln!(
                s,
                "{} earlier ended processes not kept (--history)",
                self.history_dropped
            );
        }
        let lost: Vec<String> = self.lost.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            s,
            "events: {}; lost: {} ({}{})",
            self.events,
            self.lost_total(),
            lost.join(" "),
            if self.malformed_records > 0 {
                format!(" malformed={}", self.malformed_records)
            } else {
                String::new()
            }
        );
        s
    }
}

/// "container 3f2a9c1b7d4e" or "unit tt-inference.service", if the cgroup names either.
fn cgroup_label(cg: &Cgroup) -> Option<String> {
    match (&cg.container_id, &cg.systemd_unit) {
        (Some(id), _) => Some(format!("container {}", &id[..id.len().min(12)])),
        (None, Some(unit)) => Some(format!("unit {unit}")),
        (None, None) => None,
    }
}

fn phases(p: &BTreeMap<Role, u64>) -> String {
    p.iter()
        .map(|(r, ns)| format!("{} {:.2} ms", r.id(), *ns as f64 / 1e6))
        .collect::<Vec<_>>()
        .join(", ")
}

fn memory_lines(s: &mut String, indent: &str, m: &MemoryBooks) {
    for (t, b) in &m.by_type {
        if b.allocs == 0 {
            continue;
        }
        let _ = writeln!(
            s,
            "{indent}{:<9} allocs {:>6} ({:>11})  frees {:>6} ({:>11})  live {:>5} ({:>11})  peak {:>11}{}",
            t.name(),
            b.allocs,
            kib(b.alloc_bytes),
            b.frees,
            kib(b.free_bytes),
            b.live,
            kib(b.live_bytes),
            kib(b.peak_bytes),
            if b.cleared > 0 { format!("  released at close {}", b.cleared) } else { String::new() }
        );
    }
}

/// The per-operation table: one row per operation type.
fn operation_lines(s: &mut String, ops: &[OpLedger]) {
    if ops.is_empty() {
        return;
    }
    let width = ops.iter().map(|o| o.name.len()).max().unwrap_or(0).max(9);
    let _ = writeln!(
        s,
        "  operations:\n    {:<width$}  {:>8}  {:>4}  {:>4}  {:>10}  {:>7}  {:>10}  {:>4}  {:>10}  {:>7}  {:>10}",
        "operation",
        "launches",
        "hit",
        "miss",
        "time",
        "buffers",
        "bytes",
        "CBs",
        "CB bytes",
        "left",
        "left bytes"
    );
    for o in ops {
        let buffers = o.buffers.values().fold(Tally::default(), |mut t, b| {
            t.count += b.count;
            t.bytes = t.bytes.saturating_add(b.bytes);
            t
        });
        // What it left: still allocated, or released only by a close.
        let left = Tally {
            count: o.live.count + o.released_at_close.count,
            bytes: o.live.bytes.saturating_add(o.released_at_close.bytes),
        };
        let unknown = match o.cache_unknown {
            0 => String::new(),
            n => format!("  ({n} not seen)"),
        };
        let _ = writeln!(
            s,
            "    {:<width$}  {:>8}  {:>4}  {:>4}  {:>10}  {:>7}  {:>10}  {:>4}  {:>10}  {:>7}  {:>10}{unknown}",
            o.name,
            o.launches,
            o.cache_hits,
            o.cache_misses,
            format!("{:.3} ms", o.time_ns as f64 / 1e6),
            buffers.count,
            kib(buffers.bytes),
            o.circular_buffers.count,
            kib(o.circular_buffers.bytes),
            left.count,
            kib(left.bytes)
        );
    }
}

fn outstanding_line(s: &mut String, indent: &str, what: &str, o: &[Outstanding]) {
    if o.is_empty() {
        return;
    }
    let bytes = o.iter().fold(0u64, |n, x| n.saturating_add(x.size));
    let items: Vec<String> = o
        .iter()
        .take(8)
        .map(|x| {
            format!(
                "{} {} @{:#x} (age {}{})",
                x.buffer_type.name(),
                kib(x.size),
                x.address,
                secs(x.age_ns),
                x.op.as_deref()
                    .map(|o| format!(", by {o}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let more = if o.len() > 8 {
        format!(", … {} more", o.len() - 8)
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "{indent}{what}: {} buffers, {} — {}{more}",
        o.len(),
        kib(bytes),
        items.join(", ")
    );
}

fn kernel_lines(s: &mut String, indent: &str, k: &Kernels) {
    let sys = k.system();
    let mut detail = format!(
        "fabric {}: {}, dispatch {}: {}",
        k.fabric.count,
        kib(k.fabric.bytes),
        k.dispatch.count,
        kib(k.dispatch.bytes)
    );
    if k.init.count > 0 {
        let _ = write!(detail, ", init {}: {}", k.init.count, kib(k.init.bytes));
    }
    let _ = writeln!(
        s,
        "{indent}System kernels:      {:>3}  {:>11}  ({detail})",
        sys.count,
        kib(sys.bytes)
    );
    let apps = k.applications();
    let how = if k.program_buffers.count > 0 {
        format!(
            "  (written to cores {}: {}, program binary buffers {}: {})",
            k.application.count,
            kib(k.application.bytes),
            k.program_buffers.count,
            kib(k.program_buffers.bytes)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "{indent}Application kernels: {:>3}  {:>11}{how}",
        apps.count,
        kib(apps.bytes)
    );
    if k.firmware.count > 0 {
        let _ = writeln!(
            s,
            "{indent}Firmware:            {:>3}  {:>11}",
            k.firmware.count,
            kib(k.firmware.bytes)
        );
    }
    let t = k.total();
    let _ = writeln!(
        s,
        "{indent}Total:               {:>3}  {:>11}",
        t.count,
        kib(t.bytes)
    );
}

pub(crate) fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

fn tally(t: &Tally, what: &str) -> String {
    format!("{} {what} {}", t.count, kib(t.bytes))
}

/// "pid 12345 exited (signal 9): released 4 system kernels, 204.0 KiB — 2 fabric 112.0 KiB,
/// 2 dispatch 92.0 KiB; 3 application kernels, 36.0 KiB"
pub fn cleanup_line(c: &Cleanup) -> String {
    let line = cleanup_text(c);
    if c.complete {
        line
    } else {
        format!("{line} (incomplete: events were lost)")
    }
}

/// "pid 12", "pid 12 (python3)", "pid 12 (python3, container 3f2a9c1b7d4e)".
fn who(c: &Cleanup) -> String {
    let mut about: Vec<String> = c.comm.iter().cloned().collect();
    about.extend(c.cgroup.as_ref().and_then(cgroup_label));
    if about.is_empty() {
        format!("pid {}", c.pid)
    } else {
        format!("pid {} ({})", c.pid, about.join(", "))
    }
}

fn cleanup_text(c: &Cleanup) -> String {
    let r = &c.released;
    let leaks = if c.leaks.is_empty() {
        String::new()
    } else {
        let bytes = c
            .leaks
            .iter()
            .fold(0u64, |n, l| n.saturating_add(l.buffer.size));
        format!("{} device buffers, {}", c.leaks.len(), kib(bytes))
    };
    if r.is_empty() {
        return match leaks.is_empty() {
            true => format!(
                "{} exited ({}): nothing left on its devices",
                who(c),
                c.status
            ),
            false => format!("{} exited ({}): released {leaks}", who(c), c.status),
        };
    }
    let sys = r.system();
    let mut parts = vec![tally(&r.fabric, "fabric"), tally(&r.dispatch, "dispatch")];
    if r.init.count > 0 {
        parts.push(tally(&r.init, "init"));
    }
    let leaks = if leaks.is_empty() {
        leaks
    } else {
        format!("; {leaks}")
    };
    let firmware = if r.firmware.count > 0 {
        format!("; firmware {}, {}", r.firmware.count, kib(r.firmware.bytes))
    } else {
        String::new()
    };
    format!(
        "{} exited ({}): released {} system kernels, {} — {}; {} application kernels, {}{firmware}{leaks}",
        who(c),
        c.status,
        sys.count,
        kib(sys.bytes),
        parts.join(", "),
        r.applications().count,
        kib(r.applications().bytes)
    )
}

fn cache_word(outcome: Option<CacheOutcome>) -> &'static str {
    match outcome {
        Some(CacheOutcome::Hit) => "hit",
        Some(CacheOutcome::Miss) => "miss",
        None => "not seen",
    }
}

/// One line per live record, for `-v`.
pub fn record_line(r: &Record) -> String {
    match r {
        Record::DeviceOpened { pid, chip, .. } => format!("[{pid}] device {chip} opened"),
        Record::ContextEntered {
            pid,
            tid,
            role,
            chip,
            ..
        } => {
            format!("[{pid}/{tid}] enter {}{}", role.id(), on_chip(chip))
        }
        Record::ContextExited {
            pid,
            tid,
            role,
            chip,
            duration_ns,
            ..
        } => format!(
            "[{pid}/{tid}] leave {}{}{}",
            role.id(),
            on_chip(chip),
            duration_ns
                .map(|d| format!(" after {:.3} ms", d as f64 / 1e6))
                .unwrap_or_default()
        ),
        Record::KernelLoaded {
            pid,
            tid,
            chip,
            class,
            bytes,
            address,
            ..
        } => format!(
            "[{pid}/{tid}] kernel {} {} → device {chip} L1 {address:#x}",
            <&str>::from(class),
            kib(*bytes)
        ),
        Record::FirmwareLoaded {
            pid,
            tid,
            chip,
            core_type,
            bytes,
            ..
        } => format!(
            "[{pid}/{tid}] firmware {} for {} cores → device {chip}",
            kib(*bytes),
            <&str>::from(core_type)
        ),
        Record::ProgramBinariesPlaced {
            pid,
            tid,
            chips,
            bytes,
            address,
            buffer_type,
            ..
        } => {
            let on: Vec<String> = chips.iter().map(|c| c.to_string()).collect();
            format!(
                "[{pid}/{tid}] kernel application {} as a program binary buffer ({} @{address:#x}) → device {}",
                kib(*bytes),
                buffer_type.name(),
                if on.is_empty() { "unknown".to_string() } else { on.join(", ") }
            )
        }
        Record::DeviceClosed {
            pid,
            chip,
            released,
            ..
        } => {
            let t = released.total();
            format!(
                "[{pid}] device {chip} closed: released {} kernels, {}",
                t.count,
                kib(t.bytes)
            )
        }
        Record::MeshClosed {
            pid,
            mesh,
            outstanding,
            ..
        } => match mesh {
            Some(m) => format!("[{pid}] mesh {m} closed with {outstanding} buffers outstanding"),
            None => format!("[{pid}] mesh closed"),
        },
        Record::ProcessStarted {
            pid,
            library,
            comm,
            cgroup,
            ..
        } => {
            let mut about: Vec<String> = comm.iter().cloned().collect();
            about.extend(cgroup.as_ref().and_then(cgroup_label));
            about.extend(library.map(|l| format!("library {l}")));
            if about.is_empty() {
                format!("[{pid}] process seen")
            } else {
                format!("[{pid}] process seen ({})", about.join(", "))
            }
        }
        Record::MeshOpened {
            pid, mesh, chips, ..
        } => {
            let on: Vec<String> = chips.iter().map(|c| c.to_string()).collect();
            format!("[{pid}] mesh {mesh} opened (chips {})", on.join(", "))
        }
        Record::BankBuilt {
            pid,
            tid,
            buffer_type,
            owner,
            ..
        } => format!(
            "[{pid}/{tid}] {} bank built for {owner}",
            buffer_type.name()
        ),
        Record::BufferAllocated {
            pid,
            tid,
            chip,
            mesh,
            buffer_type,
            size,
            address,
            live_bytes,
            op,
            ..
        } => format!(
            "[{pid}/{tid}] alloc {} {} @{address:#x} on {} (live {}){}",
            buffer_type.name(),
            kib(*size),
            placed(chip, mesh),
            kib(*live_bytes),
            op.as_ref().map(|o| format!(" in {o}")).unwrap_or_default()
        ),
        Record::BufferFreed {
            pid,
            tid,
            chip,
            mesh,
            buffer_type,
            size,
            address,
            live_bytes,
            ..
        } => format!(
            "[{pid}/{tid}] free {} {} @{address:#x} on {} (live {})",
            buffer_type.name(),
            kib(*size),
            placed(chip, mesh),
            kib(*live_bytes)
        ),
        Record::BuffersCleared {
            pid,
            tid,
            chip,
            mesh,
            buffer_type,
            count,
            bytes,
            ..
        } => format!(
            "[{pid}/{tid}] released {count} {} buffers, {} on {}",
            buffer_type.name(),
            kib(*bytes),
            placed(chip, mesh)
        ),
        Record::ProgramBinariesFreed {
            pid,
            tid,
            chips,
            bytes,
            address,
            ..
        } => {
            let on: Vec<String> = chips.iter().map(|c| c.to_string()).collect();
            format!(
                "[{pid}/{tid}] program binary buffer @{address:#x} freed: {} of application kernels off device {}",
                kib(*bytes),
                if on.is_empty() { "unknown".to_string() } else { on.join(", ") }
            )
        }
        Record::CircularBufferAllocated {
            pid,
            tid,
            chip,
            size,
            live_bytes,
            ..
        } => format!(
            "[{pid}/{tid}] circular buffer {} on device {chip} (live {})",
            kib(*size),
            kib(*live_bytes)
        ),
        Record::CircularBuffersReleased {
            pid,
            tid,
            chip,
            count,
            bytes,
            ..
        } => format!(
            "[{pid}/{tid}] {count} circular buffers, {} released on device {chip}",
            kib(*bytes)
        ),
        Record::WorkloadEnqueued {
            pid, tid, total, ..
        } => format!("[{pid}/{tid}] workload enqueued ({total} so far)"),
        Record::OpBegan { pid, tid, op, .. } => format!("[{pid}/{tid}] op {op} began"),
        Record::OpProgramCache {
            pid,
            tid,
            op,
            outcome,
            ..
        } => format!(
            "[{pid}/{tid}] op {op}: program cache {}",
            cache_word(Some(*outcome))
        ),
        Record::OpEnded {
            pid,
            tid,
            op,
            duration_ns,
            cache,
            ..
        } => format!(
            "[{pid}/{tid}] op {op} ended after {:.3} ms (program cache {})",
            *duration_ns as f64 / 1e6,
            cache_word(*cache)
        ),
        Record::Unmatched { pid, tid, role, .. } => {
            format!("[{pid}/{tid}] {} about something never seen", role.id())
        }
        Record::ProcessExited(c) => cleanup_line(c),
        Record::LibraryTraced {
            path,
            build_id,
            probes,
            links,
            pid,
            stopped_ns,
            ..
        } => {
            let mut line = format!(
                "tracing {path} (build-id {}): {probes} probes in {links} {}",
                build_id.as_deref().unwrap_or("none"),
                if *links == 1 { "link" } else { "links" }
            );
            match (pid, stopped_ns) {
                (Some(pid), Some(ns)) => {
                    let _ = write!(
                        line,
                        ", loaded by pid {pid} (stopped {:.1} ms while armed)",
                        *ns as f64 / 1e6
                    );
                }
                (Some(pid), None) => {
                    let _ = write!(line, ", mapped by pid {pid}");
                }
                _ => {}
            }
            line
        }
        Record::LibraryRefused {
            path, reason, pid, ..
        } => match pid {
            Some(pid) => format!("warning: not tracing {path} (loaded by pid {pid}): {reason}"),
            None => format!("warning: not tracing {path}: {reason}"),
        },
    }
}

fn placed(chip: &Option<i64>, mesh: &Option<u32>) -> String {
    match (chip, mesh) {
        (Some(c), _) => format!("device {c}"),
        (None, Some(m)) => format!("mesh {m}"),
        (None, None) => "an unknown allocator".to_string(),
    }
}

fn on_chip(chip: &Option<i64>) -> String {
    chip.map(|c| format!(" (device {c})")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use tracer_common::{Event, EventKind};

    use super::*;
    use crate::roles::Role;

    fn traced_and_exited() -> Collector {
        let mut c = Collector::new();
        let mut open = Event::new(EventKind::Call, Role::DeviceOpen as u16, 10, 1, 7, 7);
        open.fields[..2].copy_from_slice(&[0xd0, 0]);
        c.apply(&open);
        c.apply(&Event::new(EventKind::ProcessExit, 0, 20, 1, 7, 7));
        c
    }

    fn libs() -> Vec<LibraryInfo> {
        vec![LibraryInfo {
            id: 1,
            path: "lib".into(),
            build_id: None,
            catalog: "built-in".into(),
        }]
    }

    fn lost(n: u64) -> BTreeMap<&'static str, u64> {
        BTreeMap::from([("payload_ring_full", n), ("context_map_full", 0)])
    }

    #[test]
    fn a_session_that_lost_events_marks_every_process_incomplete() {
        let c = traced_and_exited();
        let r = Report::new(&c, &libs(), lost(1_880_000), 0);
        assert!(!r.complete);
        let text = r.to_text();
        let section = text.split("process 7").nth(1).expect("process section");
        assert!(
            section.contains("INCOMPLETE: 1880000 events lost (payload_ring_full=1880000)"),
            "{text}"
        );
        assert!(
            section.contains("nothing left on its devices (incomplete: events were lost)"),
            "{text}"
        );
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["complete"], false);
        assert_eq!(j["processes"][0]["complete"], false);
        assert_eq!(
            j["processes"][0]["pid"], 7,
            "the ledger's own fields stay in place"
        );
    }

    #[test]
    fn a_session_without_loss_is_complete() {
        let c = traced_and_exited();
        let r = Report::new(&c, &libs(), lost(0), 0);
        assert!(r.complete);
        assert!(!r.to_text().contains("INCOMPLETE"));
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["processes"][0]["complete"], true);
        // A malformed ring record is a loss too.
        let r = Report::new(&c, &libs(), lost(0), 1);
        assert!(!r.complete);
    }
}
