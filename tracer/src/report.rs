//! The final report: text for people, JSON for machines (schema in docs/report.md).

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use crate::{
    collector::{Cleanup, Collector, Kernels, ProcessLedger, Record, Tally},
    memory::{MemoryBooks, Outstanding},
    roles::Role,
};

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub schema: u32,
    pub library: String,
    pub build_id: Option<String>,
    pub processes: Vec<&'a ProcessLedger>,
    /// Per-CPU loss counters of the probes, summed (all 0 when nothing was lost).
    pub lost: BTreeMap<&'static str, u64>,
    pub events: u64,
    pub unknown_events: u64,
    pub malformed_records: u64,
}

impl<'a> Report<'a> {
    pub fn new(
        collector: &'a Collector,
        library: String,
        build_id: Option<String>,
        lost: BTreeMap<&'static str, u64>,
        malformed_records: u64,
    ) -> Self {
        Report {
            schema: 1,
            library,
            build_id,
            processes: collector.processes().collect(),
            lost,
            events: collector.events,
            unknown_events: collector.unknown_events,
            malformed_records,
        }
    }

    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum::<u64>() + self.malformed_records
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "tt-tracer report — {}", self.library);
        if self.processes.is_empty() {
            let _ = writeln!(s, "  no tt-metal activity seen");
        }
        for p in &self.processes {
            let end = match &p.exit {
                Some(c) => format!("exited ({})", c.status),
                None => "still running".into(),
            };
            let _ = writeln!(s, "process {} — {end}", p.pid);
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
            if let Some(c) = &p.exit {
                let _ = writeln!(s, "  {}", cleanup_line(c));
                for l in c.leaks.iter().take(20) {
                    let _ = writeln!(
                        s,
                        "    leaked: {} {} {} at {:#x}, allocated {} before exit",
                        l.owner,
                        l.buffer.buffer_type.name(),
                        kib(l.buffer.size),
                        l.buffer.address,
                        secs(l.buffer.age_ns)
                    );
                }
                if c.leaks.len() > 20 {
                    let _ = writeln!(s, "    … {} more (see the JSON report)", c.leaks.len() - 20);
                }
            }
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

fn outstanding_line(s: &mut String, indent: &str, what: &str, o: &[Outstanding]) {
    if o.is_empty() {
        return;
    }
    let bytes = o.iter().fold(0u64, |t, x| t.saturating_add(x.size));
    let items: Vec<String> = o
        .iter()
        .take(8)
        .map(|x| {
            format!(
                "{} {} @{:#x} (age {})",
                x.buffer_type.name(),
                kib(x.size),
                x.address,
                secs(x.age_ns)
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
    let _ = writeln!(
        s,
        "{indent}Application kernels: {:>3}  {:>11}",
        k.application.count,
        kib(k.application.bytes)
    );
    let t = k.total();
    let _ = writeln!(
        s,
        "{indent}Total:               {:>3}  {:>11}",
        t.count,
        kib(t.bytes)
    );
}

pub fn kib(bytes: u64) -> String {
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
    let r = &c.released;
    let leaks = if c.leaks.is_empty() {
        String::new()
    } else {
        let bytes = c
            .leaks
            .iter()
            .fold(0u64, |t, l| t.saturating_add(l.buffer.size));
        format!("{} device buffers, {}", c.leaks.len(), kib(bytes))
    };
    if r.is_empty() {
        return match leaks.is_empty() {
            true => format!(
                "pid {} exited ({}): nothing left on its devices",
                c.pid, c.status
            ),
            false => format!("pid {} exited ({}): released {leaks}", c.pid, c.status),
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
    format!(
        "pid {} exited ({}): released {} system kernels, {} — {}; {} application kernels, {}{leaks}",
        c.pid,
        c.status,
        sys.count,
        kib(sys.bytes),
        parts.join(", "),
        r.application.count,
        kib(r.application.bytes)
    )
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
            serde_json::to_value(class)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            kib(*bytes)
        ),
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
        Record::ProcessExited(c) => cleanup_line(c),
    }
}

fn on_chip(chip: &Option<i64>) -> String {
    chip.map(|c| format!(" (device {c})")).unwrap_or_default()
}
