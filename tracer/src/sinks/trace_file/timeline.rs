//! Records → Chrome trace events, without I/O: which track each record goes on, the spans
//! still open per thread, and the live bytes behind each chip's counter track.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use serde_json::{json, Map, Value};

use crate::{
    collector::{memory::BufferType, Record},
    roles::Role,
};

/// The counter series of a chip's circular-buffer bytes (the others are buffer type names).
pub(super) const CB_SERIES: &str = "CB";

/// Why a span was ended by tt-tracer rather than by its own `context_exited` (the `ended_by`
/// arg of its end).
const ENDED_BY_PROCESS_EXIT: &str = "process_exit";
const ENDED_BY_OUTER_EXIT: &str = "outer_context_exited";
const ENDED_BY_ROTATION: &str = "rotation";

/// The state the translation needs: per live process, its threads and their open spans, and
/// the allocators' live bytes. An exited process is forgotten, so memory follows the live
/// processes, not the length of the trace.
#[derive(Debug)]
pub(super) struct Timeline {
    procs: HashMap<u32, Proc>,
    /// tt-tracer's own pid: the track of the library events.
    tracer_pid: u32,
    tracer_named: bool,
    /// The latest time any record carried: where a rotation ends and resumes open spans.
    last_ns: u64,
}

#[derive(Debug, Default)]
struct Proc {
    name: String,
    /// Every thread seen (it has a `thread_name`), with its open spans, outermost first.
    threads: BTreeMap<u32, Vec<Open>>,
    memory: Memory,
}

#[derive(Debug)]
struct Open {
    /// The span's name: a bring-up role, or a ttnn operation.
    name: Arc<str>,
    cat: &'static str,
    role: Role,
    args: Map<String, Value>,
}

/// Whose books a live-bytes figure is (as the records place a buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Allocator {
    Chip(i64),
    Mesh(u32),
    Unattributed,
}

#[derive(Debug, Default)]
struct Memory {
    /// Live bytes per allocator and buffer type, as the last record about them said.
    live: BTreeMap<(Allocator, BufferType), u64>,
    /// Each mesh's chips (`mesh_opened`).
    mesh_chips: HashMap<u32, Vec<i64>>,
    /// Live circular-buffer bytes per chip.
    cbs: BTreeMap<i64, u64>,
}

/// A counter track of a process: what its name says it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Track {
    /// Everything on the chip: its own allocator's buffers, those of every mesh it is in, and
    /// its circular buffers.
    Chip(i64),
    /// A mesh whose chips are not known (opened before tracing began).
    Mesh(u32),
    Unattributed,
}

impl Track {
    fn name(self) -> String {
        match self {
            Track::Chip(c) => format!("chip {c} memory"),
            Track::Mesh(m) => format!("mesh {m} memory"),
            Track::Unattributed => "unattributed memory".to_string(),
        }
    }
}

impl Memory {
    fn live(&self, a: Allocator, t: BufferType) -> u64 {
        self.live.get(&(a, t)).copied().unwrap_or(0)
    }

    /// The counter tracks an allocator's buffers show on.
    fn tracks(&self, a: Allocator) -> Vec<Track> {
        match a {
            Allocator::Chip(c) => vec![Track::Chip(c)],
            Allocator::Mesh(m) => match self.mesh_chips.get(&m) {
                Some(chips) if !chips.is_empty() => chips.iter().map(|&c| Track::Chip(c)).collect(),
                _ => vec![Track::Mesh(m)],
            },
            Allocator::Unattributed => vec![Track::Unattributed],
        }
    }

    /// A track's bytes of type `t`: a mesh buffer occupies its size on every chip of the mesh.
    fn value(&self, track: Track, t: BufferType) -> u64 {
        match track {
            Track::Chip(c) => {
                let meshes = self
                    .mesh_chips
                    .iter()
                    .filter(|(_, chips)| chips.contains(&c))
                    .map(|(m, _)| self.live(Allocator::Mesh(*m), t));
                meshes.fold(self.live(Allocator::Chip(c), t), u64::saturating_add)
            }
            Track::Mesh(m) => self.live(Allocator::Mesh(m), t),
            Track::Unattributed => self.live(Allocator::Unattributed, t),
        }
    }

    /// Every series of every track, as they stand (a new file starts from them).
    fn snapshot(&self) -> BTreeMap<Track, Map<String, Value>> {
        let mut out: BTreeMap<Track, Map<String, Value>> = BTreeMap::new();
        for &(a, t) in self.live.keys() {
            for track in self.tracks(a) {
                out.entry(track)
                    .or_default()
                    .insert(t.name().into(), self.value(track, t).into());
            }
        }
        for (&c, &bytes) in &self.cbs {
            out.entry(Track::Chip(c))
                .or_default()
                .insert(CB_SERIES.into(), bytes.into());
        }
        out
    }
}

/// A timestamp for the trace: microseconds (the format's unit), ns kept as the fraction.
pub(super) fn micros(ts_ns: u64) -> Value {
    json!(ts_ns as f64 / 1000.0)
}

/// What a record kind is about, as the event's category (filterable in the viewers).
fn category(r: &Record) -> &'static str {
    match r {
        Record::ContextEntered { .. } | Record::ContextExited { .. } => "bring_up",
        Record::KernelLoaded { .. }
        | Record::FirmwareLoaded { .. }
        | Record::ProgramBinariesPlaced { .. }
        | Record::ProgramBinariesFreed { .. } => "kernels",
        Record::BankBuilt { .. }
        | Record::BufferAllocated { .. }
        | Record::BufferFreed { .. }
        | Record::BuffersCleared { .. }
        | Record::CircularBufferAllocated { .. }
        | Record::CircularBuffersReleased { .. } => "memory",
        Record::WorkloadEnqueued { .. } => "workload",
        Record::OpBegan { .. } | Record::OpProgramCache { .. } | Record::OpEnded { .. } => "op",
        Record::LibraryTraced { .. } | Record::LibraryRefused { .. } => "library",
        Record::Unmatched { .. } => "unmatched",
        Record::ProcessStarted { .. }
        | Record::DeviceOpened { .. }
        | Record::DeviceClosed { .. }
        | Record::MeshOpened { .. }
        | Record::MeshClosed { .. }
        | Record::ProcessExited(_) => "lifecycle",
    }
}

fn metadata(what: &str, pid: u32, tid: u32, name: &str) -> Value {
    json!({"name": what, "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
}

fn num(fields: &Map<String, Value>, key: &str) -> Option<u64> {
    fields.get(key).and_then(Value::as_u64)
}

impl Timeline {
    pub(super) fn new(tracer_pid: u32) -> Self {
        Timeline {
            procs: HashMap::new(),
            tracer_pid,
            tracer_named: false,
            last_ns: 0,
        }
    }

    /// Processes being followed (for the bounded-memory check).
    #[cfg(test)]
    pub(super) fn live_processes(&self) -> usize {
        self.procs.len()
    }

    /// The events of one record, appended to `out`. `now_ns` (CLOCK_MONOTONIC) places the
    /// records that carry no time of their own (a library armed or refused).
    pub(super) fn record(&mut self, r: &Record, now_ns: u64, out: &mut Vec<Value>) {
        // The args are the record's own fields, as --events-file has them: one serialisation
        // for both, so the two never disagree.
        let Ok(Value::Object(mut args)) = serde_json::to_value(r) else {
            return;
        };
        let name = match args.remove("record") {
            Some(Value::String(s)) => s,
            _ => return,
        };
        let cat = category(r);
        if let Record::LibraryTraced { .. } | Record::LibraryRefused { .. } = r {
            // About the host, not one process: a global instant on tt-tracer's own track.
            if !self.tracer_named {
                self.tracer_named = true;
                let pid = self.tracer_pid;
                out.push(metadata("process_name", pid, pid, "tt-tracer"));
            }
            let ts = now_ns.max(self.last_ns);
            let pid = self.tracer_pid;
            out.push(
                json!({"name": name, "cat": cat, "ph": "i", "s": "g", "ts": micros(ts),
                            "pid": pid, "tid": pid, "args": args}),
            );
            return;
        }
        let Some(pid) = num(&args, "pid").map(|p| p as u32) else {
            return;
        };
        args.remove("pid");
        let tid = args
            .remove("tid")
            .and_then(|t| t.as_u64())
            .map(|t| t as u32);
        let ts = match r {
            Record::ProcessExited(c) => c.exit_ns,
            _ => args.remove("ts_ns").and_then(|t| t.as_u64()).unwrap_or(0),
        };
        self.last_ns = self.last_ns.max(ts);

        if let Record::ProcessStarted { comm, .. } = r {
            // A pid seen again without its exit (lost): that process has ended, and with it
            // its spans, or the new one's would nest inside them.
            if let Some(old) = self.procs.remove(&pid) {
                for (t, stack) in old.threads {
                    for open in stack.iter().rev() {
                        out.push(end(open, pid, t, micros(ts), ENDED_BY_PROCESS_EXIT));
                    }
                }
            }
            let name = comm.clone().unwrap_or_else(|| format!("pid {pid}"));
            out.push(metadata("process_name", pid, pid, &name));
            self.procs.insert(
                pid,
                Proc {
                    name,
                    ..Default::default()
                },
            );
        }
        let proc = self.procs.entry(pid).or_insert_with(|| {
            // Only if its start was not told in this file (cannot happen in one session).
            let name = format!("pid {pid}");
            out.push(metadata("process_name", pid, pid, &name));
            Proc {
                name,
                ..Default::default()
            }
        });
        if let Some(tid) = tid {
            proc.threads.entry(tid).or_insert_with(|| {
                out.push(metadata("thread_name", pid, tid, &thread_name(pid, tid)));
                Vec::new()
            });
        }
        let at = micros(ts);
        // Thread-scoped when the record names its thread, else on the process's own track.
        let (scope, tid) = match tid {
            Some(t) => ("t", t),
            None => ("p", pid),
        };
        let instant = |args: Map<String, Value>| {
            json!({"name": name, "cat": cat, "ph": "i", "s": scope, "ts": at.clone(),
                   "pid": pid, "tid": tid, "args": args})
        };

        match r {
            // Bring-up phases are spans on the thread that ran them; ttnn operations too
            // (category "op", named after the operation), on the thread that launched them.
            Record::ContextEntered { .. } | Record::OpBegan { .. } => {
                let (span, role): (Arc<str>, Role) = match r {
                    Record::ContextEntered { role, .. } => (<&str>::from(role).into(), *role),
                    Record::OpBegan { op, .. } => (op.clone(), Role::OpLaunch),
                    _ => unreachable!("matched above"),
                };
                args.remove("op");
                out.push(json!({"name": &*span, "cat": cat, "ph": "B", "ts": at,
                                "pid": pid, "tid": tid, "args": args.clone()}));
                let stack = proc.threads.entry(tid).or_default();
                stack.push(Open {
                    name: span,
                    cat,
                    role,
                    args,
                });
            }
            Record::ContextExited { .. } | Record::OpEnded { .. } => {
                let role = match r {
                    Record::ContextExited { role, .. } => *role,
                    _ => Role::OpLaunch,
                };
                args.remove("op");
                let stack = proc.threads.entry(tid).or_default();
                match stack.iter().rposition(|o| o.role == role) {
                    Some(i) => {
                        // Spans opened inside it whose exits never came end with it.
                        while stack.len() > i + 1 {
                            let inner = stack.pop().expect("len > i + 1");
                            out.push(end(&inner, pid, tid, at.clone(), ENDED_BY_OUTER_EXIT));
                        }
                        let open = stack.pop().expect("found at i");
                        out.push(json!({"name": &*open.name, "cat": cat, "ph": "E", "ts": at,
                                        "pid": pid, "tid": tid, "args": args}));
                    }
                    // Left without its entry seen (tracing began inside it): no span to end.
                    None => out.push(instant(args)),
                }
            }
            Record::ProcessExited(_) => {
                // The exit ends whatever its threads were inside.
                for (&t, stack) in &mut proc.threads {
                    while let Some(open) = stack.pop() {
                        out.push(end(&open, pid, t, at.clone(), ENDED_BY_PROCESS_EXIT));
                    }
                }
                out.push(instant(args));
                self.procs.remove(&pid);
            }
            Record::MeshOpened { mesh, chips, .. } => {
                proc.memory.mesh_chips.insert(*mesh, chips.clone());
                out.push(instant(args));
            }
            Record::BufferAllocated {
                chip,
                mesh,
                buffer_type,
                live_bytes,
                ..
            }
            | Record::BufferFreed {
                chip,
                mesh,
                buffer_type,
                live_bytes,
                ..
            }
            | Record::BuffersCleared {
                chip,
                mesh,
                buffer_type,
                live_bytes,
                ..
            } => {
                out.push(instant(args));
                let a = match (chip, mesh) {
                    (Some(c), _) => Allocator::Chip(*c),
                    (None, Some(m)) => Allocator::Mesh(*m),
                    (None, None) => Allocator::Unattributed,
                };
                let m = &mut proc.memory;
                m.live.insert((a, *buffer_type), *live_bytes);
                for track in m.tracks(a) {
                    let value = m.value(track, *buffer_type);
                    out.push(counter(pid, track, at.clone(), buffer_type.name(), value));
                }
            }
            Record::CircularBufferAllocated {
                chip, live_bytes, ..
            } => {
                out.push(instant(args));
                proc.memory.cbs.insert(*chip, *live_bytes);
                out.push(counter(pid, Track::Chip(*chip), at, CB_SERIES, *live_bytes));
            }
            Record::CircularBuffersReleased { chip, .. } => {
                out.push(instant(args));
                proc.memory.cbs.insert(*chip, 0);
                out.push(counter(pid, Track::Chip(*chip), at, CB_SERIES, 0));
            }
            _ => out.push(instant(args)),
        }
    }

    /// Ends every open span at the latest time seen (the file is about to close); they stay
    /// open here, for [`Timeline::resume`] to begin again in the next file.
    pub(super) fn suspend(&self, out: &mut Vec<Value>) {
        let at = micros(self.last_ns);
        for (&pid, proc) in &self.procs {
            for (&tid, stack) in &proc.threads {
                for open in stack.iter().rev() {
                    out.push(end(open, pid, tid, at.clone(), ENDED_BY_ROTATION));
                }
            }
        }
    }

    /// What a new file needs to stand on its own: every live process's and thread's name, the
    /// spans still open (begun again, `continued: true`) and every counter's current value.
    pub(super) fn resume(&mut self, out: &mut Vec<Value>) {
        self.tracer_named = false;
        let at = micros(self.last_ns);
        let mut pids: Vec<&u32> = self.procs.keys().collect();
        pids.sort();
        for &pid in pids {
            let proc = &self.procs[&pid];
            out.push(metadata("process_name", pid, pid, &proc.name));
            for (&tid, stack) in &proc.threads {
                out.push(metadata("thread_name", pid, tid, &thread_name(pid, tid)));
                for open in stack {
                    let mut args = open.args.clone();
                    args.insert("continued".into(), true.into());
                    out.push(json!({"name": &*open.name, "cat": open.cat, "ph": "B",
                                    "ts": at.clone(), "pid": pid, "tid": tid, "args": args}));
                }
            }
            for (track, series) in proc.memory.snapshot() {
                out.push(json!({"name": track.name(), "cat": "memory", "ph": "C",
                                "ts": at.clone(), "pid": pid, "tid": pid, "args": series}));
            }
        }
    }
}

fn thread_name(pid: u32, tid: u32) -> String {
    if pid == tid {
        "main".to_string()
    } else {
        "thread".to_string()
    }
}

/// The end of a span tt-tracer closes itself, saying why.
fn end(open: &Open, pid: u32, tid: u32, at: Value, why: &str) -> Value {
    json!({"name": &*open.name, "cat": open.cat, "ph": "E", "ts": at, "pid": pid, "tid": tid,
           "args": {"ended_by": why}})
}

fn counter(pid: u32, track: Track, at: Value, series: &str, value: u64) -> Value {
    json!({"name": track.name(), "cat": "memory", "ph": "C", "ts": at, "pid": pid, "tid": pid,
           "args": {series: value}})
}
