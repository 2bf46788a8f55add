//! Prometheus exporter (`--metrics ADDR`): per process and chip, what the records say is on the
//! devices, plus the tracer's own health, served as OpenMetrics text on `GET /metrics`.
//!
//! The state is fed only by the record stream ([`MetricsState::record`]), the final report
//! ([`MetricsState::finish`]) and the reader's loss counters ([`MetricsState::update_health`]);
//! it never looks into the collector. What is on each chip now comes from the live model the
//! live views share ([`LiveState`]); this module adds the series and their labels. Series of an ended process stay for a grace period (so a
//! scrape sees how it ended), then are removed, so cardinality is bounded by the processes alive
//! or recently ended. Every family is documented in docs/metrics.md.
//!
//! A session wires it as (inside its tokio runtime, which must keep being polled for the server
//! to answer):
//!
//! ```text
//! let exporter = MetricsExporter::bind_with_grace(addr, Duration::from_secs(grace)).await?;
//! sinks.push(exporter.sink());                      // every record, then the final report
//! exporter.update_health(&lost, events, malformed); // whenever the reader's counters move
//! ```

mod server;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Metric, Registry},
};

pub use self::server::{MetricsError, MetricsExporter, MetricsSink};
use super::live::{pid_of, LiveState, Owner};
use crate::{
    collector::{identity::Cgroup, memory::BufferType, Cleanup, ExitStatus, KernelClass, Record},
    report::Report,
};

/// Where `--metrics` listens when given without an address: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";
/// How long an ended process's series stay before they are removed.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);
/// What the exporter answers with (OpenMetrics 1.0 text, as prometheus-client encodes it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Who a process is. Empty strings where not known (yet): Prometheus treats an empty label as
/// absent.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ProcessLabels {
    pub pid: u32,
    pub comm: String,
    pub cgroup: String,
    /// Container id, when the cgroup path names one (docker, podman, containerd, cri-o).
    pub container: String,
    /// systemd unit (service or scope), when the cgroup path names one.
    pub unit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ChipLabels {
    #[prometheus(flatten)]
    process: ProcessLabels,
    chip: i64,
}

/// A buffer series: one chip's share of one allocator's buffers of one type. `mesh` is set when
/// the buffers come from a mesh's lock-step allocator (each of them occupies its size on every
/// chip of the mesh); empty for the chip's own allocator.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct BufferLabels {
    #[prometheus(flatten)]
    process: ProcessLabels,
    chip: String,
    mesh: String,
    buffer_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct KernelLabels {
    #[prometheus(flatten)]
    process: ProcessLabels,
    chip: i64,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BufferTypeLabels {
    buffer_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LossLabels {
    counter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// Every metric family, registered once under the `tt_tracer_` prefix.
#[derive(Default)]
struct Families {
    buffer_live_bytes: Family<BufferLabels, Gauge>,
    buffer_peak_bytes: Family<BufferLabels, Gauge>,
    buffers_live: Family<BufferLabels, Gauge>,
    buffer_allocations: Family<BufferLabels, Counter>,
    buffer_frees: Family<BufferLabels, Counter>,
    circular_buffer_live_bytes: Family<ChipLabels, Gauge>,
    circular_buffers_live: Family<ChipLabels, Gauge>,
    kernels_loaded: Family<KernelLabels, Counter>,
    kernel_loaded_bytes: Family<KernelLabels, Counter>,
    device_opens: Family<ChipLabels, Counter>,
    device_closes: Family<ChipLabels, Counter>,
    workloads_enqueued: Family<ProcessLabels, Counter>,
    process_leaked_buffers: Family<ProcessLabels, Gauge>,
    process_leaked_bytes: Family<ProcessLabels, Gauge>,
    processes_traced: Gauge,
    process_exits: Family<StatusLabels, Counter>,
    leaked_buffers: Family<BufferTypeLabels, Counter>,
    leaked_bytes: Family<BufferTypeLabels, Counter>,
    events_applied: Counter,
    events_lost: Family<LossLabels, Counter>,
    malformed_records: Counter,
    libraries_traced: Counter,
    libraries_refused: Family<ReasonLabels, Counter>,
}

impl Families {
    /// Registers every family; returns their names (without prefix or `_total`).
    fn register(&self, r: &mut Registry) -> Vec<&'static str> {
        fn reg(
            r: &mut Registry,
            names: &mut Vec<&'static str>,
            name: &'static str,
            help: &str,
            metric: impl Metric,
        ) {
            names.push(name);
            r.register(name, help, metric);
        }
        let mut names = Vec::new();
        reg(r, &mut names, "buffer_live_bytes", "Bytes of device buffers allocated now, per process, chip, allocator (mesh) and buffer type", self.buffer_live_bytes.clone());
        reg(r, &mut names, "buffer_peak_bytes", "Most bytes of device buffers ever allocated at once, per process, chip, allocator (mesh) and buffer type", self.buffer_peak_bytes.clone());
        reg(
            r,
            &mut names,
            "buffers_live",
            "Device buffers allocated now, per process, chip, allocator (mesh) and buffer type",
            self.buffers_live.clone(),
        );
        reg(
            r,
            &mut names,
            "buffer_allocations",
            "Device buffers allocated",
            self.buffer_allocations.clone(),
        );
        reg(
            r,
            &mut names,
            "buffer_frees",
            "Device buffers freed one by one (not those released together at close)",
            self.buffer_frees.clone(),
        );
        reg(
            r,
            &mut names,
            "circular_buffer_live_bytes",
            "Bytes of circular buffers allocated now, per process and chip",
            self.circular_buffer_live_bytes.clone(),
        );
        reg(
            r,
            &mut names,
            "circular_buffers_live",
            "Circular buffers allocated now, per process and chip",
            self.circular_buffers_live.clone(),
        );
        reg(
            r,
            &mut names,
            "kernels_loaded",
            "Kernel binaries loaded onto a chip, by class (fabric, dispatch, init, application)",
            self.kernels_loaded.clone(),
        );
        reg(
            r,
            &mut names,
            "kernel_loaded_bytes",
            "Bytes of kernel binaries loaded onto a chip, by class",
            self.kernel_loaded_bytes.clone(),
        );
        reg(
            r,
            &mut names,
            "device_opens",
            "Devices opened",
            self.device_opens.clone(),
        );
        reg(
            r,
            &mut names,
            "device_closes",
            "Devices closed",
            self.device_closes.clone(),
        );
        reg(
            r,
            &mut names,
            "workloads_enqueued",
            "Workloads (programs, mesh workloads) the process enqueued",
            self.workloads_enqueued.clone(),
        );
        reg(
            r,
            &mut names,
            "process_leaked_buffers",
            "Device buffers a process still held when it exited (released by the exit)",
            self.process_leaked_buffers.clone(),
        );
        reg(
            r,
            &mut names,
            "process_leaked_bytes",
            "Bytes of device buffers a process still held when it exited",
            self.process_leaked_bytes.clone(),
        );
        reg(
            r,
            &mut names,
            "processes_traced",
            "Processes traced now (seen, not yet exited)",
            self.processes_traced.clone(),
        );
        reg(
            r,
            &mut names,
            "process_exits",
            "Traced processes that exited, by exit status",
            self.process_exits.clone(),
        );
        reg(
            r,
            &mut names,
            "leaked_buffers",
            "Device buffers still held by processes when they exited, all processes",
            self.leaked_buffers.clone(),
        );
        reg(
            r,
            &mut names,
            "leaked_bytes",
            "Bytes of device buffers still held by processes when they exited, all processes",
            self.leaked_bytes.clone(),
        );
        reg(
            r,
            &mut names,
            "events_applied",
            "Probe events the collector applied",
            self.events_applied.clone(),
        );
        reg(
            r,
            &mut names,
            "events_lost",
            "Events the probes could not deliver, by loss counter",
            self.events_lost.clone(),
        );
        reg(
            r,
            &mut names,
            "malformed_records",
            "Ring-buffer records too short to be an event",
            self.malformed_records.clone(),
        );
        reg(
            r,
            &mut names,
            "libraries_traced",
            "Libraries the probes were attached to",
            self.libraries_traced.clone(),
        );
        reg(
            r,
            &mut names,
            "libraries_refused",
            "Libraries not traced, by reason",
            self.libraries_refused.clone(),
        );
        names
    }
}

/// What is known of one traced process, and every series it owns (to remove them later).
#[derive(Debug, Default)]
struct ProcessSeries {
    labels: ProcessLabels,
    /// Its buffer series (their figures are the live model's owner books).
    buffers: BTreeSet<BufferLabels>,
    /// Chips with circular-buffer series.
    circular_buffers: BTreeSet<i64>,
    chips: BTreeSet<i64>,
    kernels: BTreeSet<KernelLabels>,
    /// Whether series labelled by the process alone exist (enqueues, leaks).
    has_process_series: bool,
    /// When its exit was seen; its series go `grace` after that.
    ended: Option<Instant>,
}

/// The exporter's state: the registry and what the records said so far.
pub struct MetricsState {
    registry: Registry,
    /// Every registered family (`buffer_live_bytes`, …), for the docs check.
    family_names: Vec<&'static str>,
    families: Families,
    grace: Duration,
    processes: BTreeMap<u32, ProcessSeries>,
    /// What is on each chip now, per process: the figures the gauges show.
    live: LiveState,
    /// Last absolute health figures, so counters grow by the difference.
    lost_seen: BTreeMap<String, u64>,
    /// Library ids counted in `libraries_traced`.
    libraries_seen: BTreeSet<u16>,
    events_seen: u64,
    malformed_seen: u64,
}

impl std::fmt::Debug for MetricsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsState")
            .field("grace", &self.grace)
            .field("processes", &self.processes.len())
            .finish()
    }
}

fn buffer_type_label(t: BufferType) -> String {
    t.name().to_string()
}

fn class_label(c: KernelClass) -> String {
    <&'static str>::from(c).to_string()
}

/// `code_N`, `signal_N` or `unknown`: few values, whatever the number of processes.
fn status_label(s: ExitStatus) -> String {
    match s {
        ExitStatus::Code(c) => format!("code_{c}"),
        ExitStatus::Signal(n) => format!("signal_{n}"),
        ExitStatus::Unknown => "unknown".to_string(),
    }
}

impl MetricsState {
    pub fn new(grace: Duration) -> MetricsState {
        let families = Families::default();
        let mut registry = Registry::with_prefix("tt_tracer");
        let family_names = families.register(&mut registry);
        MetricsState {
            registry,
            family_names,
            families,
            grace,
            processes: BTreeMap::new(),
            live: LiveState::new(),
            lost_seen: BTreeMap::new(),
            libraries_seen: BTreeSet::new(),
            events_seen: 0,
            malformed_seen: 0,
        }
    }

    /// The exposition text (OpenMetrics, ending in `# EOF`), after removing the series of
    /// processes whose grace period is over.
    pub fn render(&mut self, now: Instant) -> String {
        self.expire(now);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Applies one record, seen at `now`.
    pub fn record(&mut self, record: &Record, now: Instant) {
        self.expire(now);
        // The model first: the gauges below show its books. A reused pid starts from 0.
        let enqueued_before = match self.live.starts_over(record) {
            Some(_) => 0,
            None => pid_of(record)
                .and_then(|pid| self.live.process(pid))
                .map_or(0, |p| p.enqueued),
        };
        self.live.apply(record);
        match record {
            Record::DeviceOpened { pid, chip, .. } => {
                let labels = self.chip_labels(*pid, *chip);
                self.families.device_opens.get_or_create(&labels).inc();
            }
            Record::DeviceClosed { pid, chip, .. } => {
                let labels = self.chip_labels(*pid, *chip);
                self.families.device_closes.get_or_create(&labels).inc();
            }
            Record::KernelLoaded {
                pid,
                chip,
                class,
                bytes,
                ..
            } => self.kernel_loaded(*pid, *chip, *class, *bytes),
            // Fast dispatch: the program's binaries are application kernels on every chip.
            Record::ProgramBinariesPlaced {
                pid, chips, bytes, ..
            } => {
                for chip in chips {
                    self.kernel_loaded(*pid, *chip, KernelClass::Application, *bytes);
                }
            }
            Record::ProcessExited(cleanup) => self.process_exited(cleanup, now),
            Record::ProcessStarted {
                pid,
                library,
                comm,
                cgroup,
                ..
            } => {
                if let Some(id) = library {
                    if self.libraries_seen.insert(*id) {
                        self.families.libraries_traced.inc();
                    }
                }
                self.process_started(*pid, comm.as_deref(), cgroup.as_ref())
            }
            Record::MeshOpened { pid, .. } => {
                self.process(*pid);
            }
            // A buffers-cleared record (device or mesh close) moves the gauges, not the counts.
            Record::BufferAllocated {
                pid,
                chip,
                mesh,
                buffer_type,
                ..
            }
            | Record::BufferFreed {
                pid,
                chip,
                mesh,
                buffer_type,
                ..
            }
            | Record::BuffersCleared {
                pid,
                chip,
                mesh,
                buffer_type,
                ..
            } => {
                let owner = Owner::of(*chip, *mesh);
                let series = self.buffer_series(*pid, owner, *buffer_type);
                let count = match record {
                    Record::BufferAllocated { .. } => Some(&self.families.buffer_allocations),
                    Record::BufferFreed { .. } => Some(&self.families.buffer_frees),
                    _ => None,
                };
                if let Some(count) = count {
                    for labels in &series {
                        count.get_or_create(labels).inc();
                    }
                }
                self.set_buffer_gauges(*pid, owner, *buffer_type, &series);
            }
            Record::CircularBufferAllocated { pid, chip, .. }
            | Record::CircularBuffersReleased { pid, chip, .. } => {
                self.circular_buffers(*pid, *chip)
            }
            Record::WorkloadEnqueued { pid, total, .. } => {
                self.workloads_enqueued(*pid, total.saturating_sub(enqueued_before))
            }
            Record::LibraryTraced { id, .. } => {
                if self.libraries_seen.insert(*id) {
                    self.families.libraries_traced.inc();
                }
            }
            Record::LibraryRefused { cause, .. } => {
                self.families
                    .libraries_refused
                    .get_or_create(&ReasonLabels {
                        reason: cause.to_string(),
                    })
                    .inc();
            }
            // Phases, firmware, bank construction, program-binary frees, operations (a series
            // per operation type and process would be hundreds) and unmatched events have no
            // series of their own: they only make the process known.
            Record::ContextEntered { pid, .. }
            | Record::ContextExited { pid, .. }
            | Record::FirmwareLoaded { pid, .. }
            | Record::MeshClosed { pid, .. }
            | Record::BankBuilt { pid, .. }
            | Record::ProgramBinariesFreed { pid, .. }
            | Record::OpBegan { pid, .. }
            | Record::OpProgramCache { pid, .. }
            | Record::OpEnded { pid, .. }
            | Record::Unmatched { pid, .. } => {
                self.process(*pid);
            }
        }
    }

    /// The final report: its health figures are the session's last word.
    pub fn finish(&mut self, report: &Report) {
        self.update_health(&report.lost, report.events, report.malformed_records);
        for library in &report.libraries {
            if self.libraries_seen.insert(library.id) {
                self.families.libraries_traced.inc();
            }
        }
    }

    /// The reader's figures so far (absolute, as the report has them): events applied,
    /// every loss counter by name, malformed ring records.
    pub fn update_health(&mut self, counters: &BTreeMap<&str, u64>, events: u64, malformed: u64) {
        fn grow(counter: &Counter, seen: &mut u64, now: u64) {
            // Counters only go up; a smaller figure is a new reader, not a loss undone.
            if now > *seen {
                counter.inc_by(now - *seen);
            }
            *seen = (*seen).max(now);
        }
        for (name, value) in counters {
            let counter = self.families.events_lost.get_or_create(&LossLabels {
                counter: name.to_string(),
            });
            grow(
                &counter,
                self.lost_seen.entry(name.to_string()).or_default(),
                *value,
            );
        }
        grow(&self.families.events_applied, &mut self.events_seen, events);
        grow(
            &self.families.malformed_records,
            &mut self.malformed_seen,
            malformed,
        );
    }

    /// The process's entry; a pid seen again after its exit is a new process (pid reuse):
    /// the old one's series go now.
    fn process(&mut self, pid: u32) -> &mut ProcessSeries {
        if self.processes.get(&pid).is_some_and(|p| p.ended.is_some()) {
            self.remove_process(pid);
        }
        let traced = &self.families.processes_traced;
        self.processes.entry(pid).or_insert_with(|| {
            traced.inc();
            ProcessSeries {
                labels: ProcessLabels {
                    pid,
                    ..ProcessLabels::default()
                },
                ..ProcessSeries::default()
            }
        })
    }

    fn chip_labels(&mut self, pid: u32, chip: i64) -> ChipLabels {
        let p = self.process(pid);
        p.chips.insert(chip);
        ChipLabels {
            process: p.labels.clone(),
            chip,
        }
    }

    /// Who the process is (comm, cgroup): labels every series of it from then on.
    fn process_started(&mut self, pid: u32, comm: Option<&str>, cgroup: Option<&Cgroup>) {
        let p = self.process(pid);
        // Series already made keep the labels they were made with (removal must find them).
        if !(p.chips.is_empty()
            && p.buffers.is_empty()
            && p.kernels.is_empty()
            && !p.has_process_series)
        {
            return;
        }
        p.labels = ProcessLabels {
            pid,
            comm: comm.unwrap_or_default().to_string(),
            cgroup: cgroup.map(|c| c.path.clone()).unwrap_or_default(),
            container: cgroup
                .and_then(|c| c.container_id.clone())
                .unwrap_or_default(),
            unit: cgroup
                .and_then(|c| c.systemd_unit.clone())
                .unwrap_or_default(),
        };
    }

    /// `grown` more workloads enqueued.
    fn workloads_enqueued(&mut self, pid: u32, grown: u64) {
        let p = self.process(pid);
        let labels = p.labels.clone();
        p.has_process_series = true;
        self.families
            .workloads_enqueued
            .get_or_create(&labels)
            .inc_by(grown);
    }

    fn kernel_loaded(&mut self, pid: u32, chip: i64, class: KernelClass, bytes: u64) {
        let p = self.process(pid);
        p.chips.insert(chip);
        let labels = KernelLabels {
            process: p.labels.clone(),
            chip,
            class: class_label(class),
        };
        p.kernels.insert(labels.clone());
        self.families.kernels_loaded.get_or_create(&labels).inc();
        self.families
            .kernel_loaded_bytes
            .get_or_create(&labels)
            .inc_by(bytes);
    }

    /// The buffer series one allocator's buffers show in: its chip's, or one per chip of its
    /// mesh (a single series with no chip if the mesh's chips are unknown).
    fn buffer_series(&mut self, pid: u32, owner: Owner, t: BufferType) -> Vec<BufferLabels> {
        let chips = self
            .live
            .process(pid)
            .map_or_else(|| vec![None], |p| p.chips_of(owner));
        let p = self.process(pid);
        chips
            .into_iter()
            .map(|c| BufferLabels {
                process: p.labels.clone(),
                chip: c.map(|c| c.to_string()).unwrap_or_default(),
                // A chip's own allocator has no mesh; a mesh's allocator has no single chip.
                mesh: match owner {
                    Owner::Mesh(m) => m.to_string(),
                    Owner::Chip(_) | Owner::Unknown => String::new(),
                },
                buffer_type: buffer_type_label(t),
            })
            .collect()
    }

    /// Sets the gauges of every series of an allocator's buffers to its books in the model
    /// (the records' figures: the collector's books, not a sum kept here).
    fn set_buffer_gauges(
        &mut self,
        pid: u32,
        owner: Owner,
        t: BufferType,
        series: &[BufferLabels],
    ) {
        let books = self
            .live
            .process(pid)
            .and_then(|p| p.owners.get(&(owner, t)).copied())
            .unwrap_or_default();
        self.process(pid);
        let p = self.processes.get_mut(&pid).expect("entry just made");
        let f = &self.families;
        for labels in series {
            p.buffers.insert(labels.clone());
            f.buffer_live_bytes
                .get_or_create(labels)
                .set(books.bytes as i64);
            f.buffers_live.get_or_create(labels).set(books.count as i64);
            f.buffer_peak_bytes
                .get_or_create(labels)
                .set(books.peak as i64);
        }
    }

    /// A chip's circular buffers changed: the gauges show the model's figures.
    fn circular_buffers(&mut self, pid: u32, chip: i64) {
        let cb = self
            .live
            .process(pid)
            .and_then(|p| p.chips.get(&Some(chip)))
            .map(|c| c.circular_buffers)
            .unwrap_or_default();
        let labels = self.chip_labels(pid, chip);
        self.process(pid).circular_buffers.insert(chip);
        self.set_circular_buffers(&labels, cb.count, cb.bytes);
    }

    fn set_circular_buffers(&self, labels: &ChipLabels, count: u64, bytes: u64) {
        let f = &self.families;
        f.circular_buffers_live
            .get_or_create(labels)
            .set(count as i64);
        f.circular_buffer_live_bytes
            .get_or_create(labels)
            .set(bytes as i64);
    }

    /// The exit released everything: live gauges drop to 0 (peaks stay), leaks are counted,
    /// and the process's series are due for removal after the grace period.
    fn process_exited(&mut self, cleanup: &Cleanup, now: Instant) {
        let pid = cleanup.pid;
        self.process(pid);
        let p = self.processes.get_mut(&pid).expect("entry just made");
        p.ended = Some(now);
        let f = &self.families;
        f.processes_traced.dec();
        f.process_exits
            .get_or_create(&StatusLabels {
                status: status_label(cleanup.status),
            })
            .inc();
        for labels in &p.buffers {
            f.buffer_live_bytes.get_or_create(labels).set(0);
            f.buffers_live.get_or_create(labels).set(0);
        }
        for chip in &p.circular_buffers {
            let labels = ChipLabels {
                process: p.labels.clone(),
                chip: *chip,
            };
            f.circular_buffers_live.get_or_create(&labels).set(0);
            f.circular_buffer_live_bytes.get_or_create(&labels).set(0);
        }
        let leaked_bytes: u64 = cleanup.leaks.iter().map(|l| l.buffer.size).sum();
        f.process_leaked_buffers
            .get_or_create(&p.labels)
            .set(cleanup.leaks.len() as i64);
        f.process_leaked_bytes
            .get_or_create(&p.labels)
            .set(leaked_bytes as i64);
        for leak in &cleanup.leaks {
            let labels = BufferTypeLabels {
                buffer_type: buffer_type_label(leak.buffer.buffer_type),
            };
            f.leaked_buffers.get_or_create(&labels).inc();
            f.leaked_bytes
                .get_or_create(&labels)
                .inc_by(leak.buffer.size);
        }
    }

    /// Removes the series of processes that ended at least `grace` before `now`.
    fn expire(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .processes
            .iter()
            .filter(|(_, p)| {
                p.ended
                    .is_some_and(|t| now.saturating_duration_since(t) >= self.grace)
            })
            .map(|(pid, _)| *pid)
            .collect();
        for pid in due {
            self.remove_process(pid);
            self.live.remove(pid);
        }
    }

    fn remove_process(&mut self, pid: u32) {
        let Some(p) = self.processes.remove(&pid) else {
            return;
        };
        let f = &self.families;
        if p.ended.is_none() {
            f.processes_traced.dec();
        }
        for labels in &p.buffers {
            f.buffer_live_bytes.remove(labels);
            f.buffer_peak_bytes.remove(labels);
            f.buffers_live.remove(labels);
            f.buffer_allocations.remove(labels);
            f.buffer_frees.remove(labels);
        }
        for chip in &p.chips {
            let labels = ChipLabels {
                process: p.labels.clone(),
                chip: *chip,
            };
            f.circular_buffer_live_bytes.remove(&labels);
            f.circular_buffers_live.remove(&labels);
            f.device_opens.remove(&labels);
            f.device_closes.remove(&labels);
        }
        for labels in &p.kernels {
            f.kernels_loaded.remove(labels);
            f.kernel_loaded_bytes.remove(labels);
        }
        f.workloads_enqueued.remove(&p.labels);
        f.process_leaked_buffers.remove(&p.labels);
        f.process_leaked_bytes.remove(&p.labels);
    }

    /// Every registered family's full name (`tt_tracer_…`, counters without `_total`).
    pub fn family_names(&self) -> Vec<String> {
        self.family_names
            .iter()
            .map(|n| format!("tt_tracer_{n}"))
            .collect()
    }

    /// Processes with series now (alive or within their grace period).
    pub fn processes_with_series(&self) -> usize {
        self.processes.len()
    }
}

#[cfg(test)]
mod tests;
