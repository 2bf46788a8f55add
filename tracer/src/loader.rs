//! Loading the eBPF object and attaching it: recipes into `RECIPES`, a uprobe + uretprobe on
//! every resolved function (cookie = recipe index), the `sched_process_exit` tracepoint.
//!
//! Uprobes go in one multi-uprobe link per program per library (BPF_LINK_TYPE_UPROBE_MULTI,
//! kernel 6.6+), each offset with its own cookie: detaching a uprobe waits for a kernel grace
//! period, and a link pays it once for all its offsets. Kernels without it get one perf-event
//! uprobe per attach point, as before.

use std::{collections::BTreeMap, num::NonZeroU32, path::Path};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeError, UProbeLink, UProbeScope},
        BtfTracePoint, ProgramError, TracePoint, UProbe,
    },
    sys::{is_uprobe_multi_supported, SyscallError, UProbeMultiFeature},
    Btf, Ebpf, EbpfLoader,
};
use tracer_common::{
    counters::Counter, FieldRule, FileId, LibraryState, Recipe, RecipeKind, MAX_FIELDS,
    MAX_LIBRARY_NAME, MAX_RECIPES,
};

use crate::{
    catalog::{Catalog, RoleSpec},
    errors::{Error, Result},
    kernel,
    resolve::{AttachPoint, Resolution},
};

static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// Sizes and thresholds of the data path.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub(crate) payload_ring_bytes: u32,
    pub(crate) lifecycle_ring_bytes: u32,
    /// Wake the reader when this many payload bytes wait (else the poll timer picks them up).
    pub(crate) wakeup_bytes: u64,
    /// Trace every process that calls a probed function (`watch`), not only the processes
    /// registered with [`Probes::track_process`] and their descendants.
    pub trace_all: bool,
    /// Discover libraries with this file name as processes open them (`LibraryOpened`
    /// events, the opener stopped until armed); None: only the libraries attached by hand.
    pub discover: Option<String>,
    /// Use multi-uprobe links where the kernel has them; false: one perf-event uprobe per
    /// attach point everywhere (what older kernels get anyway).
    pub multi_attach: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            payload_ring_bytes: 8 << 20,
            lifecycle_ring_bytes: 256 << 10,
            wakeup_bytes: 256 << 10,
            trace_all: false,
            discover: None,
            multi_attach: true,
        }
    }
}

/// Bounds of the payload ring's size: one page (the kernel's unit) to 1 GiB.
pub const PAYLOAD_RING_BYTES: std::ops::RangeInclusive<u64> = 4096..=1 << 30;

/// The payload ring wakes the reader once this fraction of it waits (256 KiB of the default
/// 8 MiB): a smaller ring is drained at the same fill level, not only by the poll timer.
const WAKEUP_FRACTION: u32 = 32;

impl LoadOptions {
    /// Sets the payload ring's size (a power of two in [`PAYLOAD_RING_BYTES`]), and the wake-up
    /// threshold with it. Smaller than the default only to find where loss starts.
    pub fn set_payload_ring_bytes(&mut self, bytes: u64) -> Result<()> {
        let bytes = check_payload_ring_bytes(bytes)?;
        self.payload_ring_bytes = bytes;
        self.wakeup_bytes = u64::from(bytes / WAKEUP_FRACTION);
        Ok(())
    }
}

/// `bytes` as a payload ring size the kernel accepts, or why not.
pub fn check_payload_ring_bytes(bytes: u64) -> Result<u32> {
    if !PAYLOAD_RING_BYTES.contains(&bytes) || !bytes.is_power_of_two() {
        return Err(Error::Other(format!(
            "payload ring of {bytes} bytes: must be a power of two from {} to {}",
            PAYLOAD_RING_BYTES.start(),
            PAYLOAD_RING_BYTES.end()
        )));
    }
    // In range, so it fits.
    Ok(bytes as u32)
}

/// How uprobes are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// One multi-uprobe link per program per library, a cookie per offset.
    Multi,
    /// One perf-event uprobe per attach point.
    PerPoint,
}

impl AttachMode {
    /// The programs of this mode: (entry, return).
    fn programs(self) -> (&'static str, &'static str) {
        match self {
            AttachMode::Multi => ("tt_entry_multi", "tt_return_multi"),
            AttachMode::PerPoint => ("tt_entry", "tt_return"),
        }
    }
}

/// What [`Probes::attach_library`] armed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Armed {
    /// Attach points: uprobes plus uretprobes.
    pub points: usize,
    /// Kernel attachments holding them: multi-uprobe links, or one perf event per point.
    pub links: usize,
    /// The cookie of each attach point that names an operation (`op_launch`), and the
    /// operation: a context it pushes carries that cookie as its `this`.
    pub operations: Vec<(u64, crate::resolve::ops::Op)>,
}

/// The loaded programs and their maps.
pub struct Probes {
    /// Messages the programs log (aya-log): drained with the rings.
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Owned so they can be detached in parallel (see Drop).
    links: Vec<UProbeLink>,
    ebpf: Ebpf,
    next_cookie: u32,
    mode: AttachMode,
    /// Whether a multi link scoped to one pid covers all its threads (None: not asked yet).
    /// The first kernels with multi links filtered on the one thread instead.
    multi_pid_scope: Option<bool>,
    /// Whether exit codes can be read (task_struct layout known from BTF).
    pub exit_codes: bool,
}

/// The two ring buffers, taken out of the object for the reader.
pub struct Rings {
    pub(crate) payload: RingBuf<MapData>,
    pub(crate) lifecycle: RingBuf<MapData>,
}

impl Probes {
    /// Loads the programs and attaches the process-exit tracepoint. Needs privileges.
    pub fn load(opts: &LoadOptions) -> Result<(Probes, Rings)> {
        kernel::check_privileges()?;
        let t = std::time::Instant::now();
        let offsets = kernel::kernel_offsets();
        log::debug!("kernel struct offsets from BTF: {:?}", t.elapsed());
        let (name, name_len) = match &opts.discover {
            Some(n) if !n.is_empty() && n.len() <= MAX_LIBRARY_NAME => {
                let mut name = [0u8; MAX_LIBRARY_NAME];
                name[..n.len()].copy_from_slice(n.as_bytes());
                (name, n.len() as u32)
            }
            Some(n) => {
                return Err(Error::Other(format!(
                    "library file name {n:?} must be 1 to {MAX_LIBRARY_NAME} bytes"
                )))
            }
            None => ([0u8; MAX_LIBRARY_NAME], 0),
        };
        if opts.discover.is_some() && !offsets.files_known() {
            return Err(Error::Other(
                "the kernel's BTF lacks the file structures library discovery reads; \
                 name the library with --lib"
                    .into(),
            ));
        }
        let mut ebpf = EbpfLoader::new()
            .override_global("WAKEUP_BYTES", &opts.wakeup_bytes, true)
            .override_global("KERNEL", &offsets, true)
            .override_global("TRACE_ALL", &(opts.trace_all as u32), true)
            .override_global("LIBRARY_NAME", &name, true)
            .override_global("LIBRARY_NAME_LEN", &name_len, true)
            .override_global("TRACER_TGID", &std::process::id(), true)
            .map_max_entries("EVENTS", opts.payload_ring_bytes)
            .map_max_entries("LIFECYCLE", opts.lifecycle_ring_bytes)
            .load(EBPF_OBJECT)?;

        log::debug!("object loaded (maps created): {:?}", t.elapsed());
        // A program without log statements leaves no log map: nothing to drain then.
        let logger = aya_log::EbpfLogger::init(&mut ebpf)
            .inspect_err(|e| log::warn!("eBPF log messages will not be shown: {e}"))
            .ok();
        let btf = Btf::from_sys_fs().map_err(|e| Error::Other(format!("kernel BTF: {e}")))?;
        let exit: &mut BtfTracePoint = program(&mut ebpf, "sched_process_exit")?;
        exit.load("sched_process_exit", &btf)
            .map_err(|source| prog_err("sched_process_exit", source))?;
        exit.attach()
            .map_err(|source| prog_err("sched_process_exit", source))?;
        // Descendants of registered processes; nothing to follow when every process is traced.
        if !opts.trace_all {
            let fork: &mut BtfTracePoint = program(&mut ebpf, "sched_process_fork")?;
            fork.load("sched_process_fork", &btf)
                .map_err(|source| prog_err("sched_process_fork", source))?;
            fork.attach()
                .map_err(|source| prog_err("sched_process_fork", source))?;
        }
        if opts.discover.is_some() {
            kernel::ensure_tracefs()?;
            let name = "sys_enter_mmap";
            let tp: &mut TracePoint = program(&mut ebpf, name)?;
            tp.load().map_err(|source| prog_err(name, source))?;
            tp.attach("syscalls", name)
                .map_err(|source| prog_err(name, source))?;
        }
        let mode = if !opts.multi_attach {
            AttachMode::PerPoint
        } else {
            match is_uprobe_multi_supported(UProbeMultiFeature::LinkCreation) {
                Ok(true) => AttachMode::Multi,
                Ok(false) => {
                    log::info!("no multi-uprobe links in this kernel: one uprobe per attach point");
                    AttachMode::PerPoint
                }
                Err(e) => {
                    log::info!("probing for multi-uprobe links: {e}; one uprobe per attach point");
                    AttachMode::PerPoint
                }
            }
        };
        let (entry, ret) = mode.programs();
        load_uprobe(&mut ebpf, entry)?;
        load_uprobe(&mut ebpf, ret)?;

        log::debug!(
            "programs verified and loaded ({mode:?} uprobes): {:?}",
            t.elapsed()
        );
        let payload = take_ring(&mut ebpf, "EVENTS")?;
        let lifecycle = take_ring(&mut ebpf, "LIFECYCLE")?;
        let mut probes = Probes {
            logger,
            links: Vec::new(),
            ebpf,
            next_cookie: 0,
            mode,
            multi_pid_scope: None,
            exit_codes: offsets.task_exit_code != tracer_common::KernelOffsets::UNKNOWN,
        };
        probes.set_discovery(opts.discover.is_some())?;
        Ok((probes, Rings { payload, lifecycle }))
    }

    /// How uprobes are attached from now on (per point once multi links have failed).
    pub fn attach_mode(&self) -> AttachMode {
        self.mode
    }

    /// Kernel attachments held for uprobes: multi-uprobe links and per-point perf events.
    pub fn uprobe_links(&self) -> usize {
        self.links.len()
    }

    /// Attaches every resolved function of `resolution` (the library at `path`), for process
    /// `pid` only, or for every process that maps the library when `pid` is None. Events from
    /// these attach points carry `library` (the caller's id for this file).
    pub fn attach_library(
        &mut self,
        path: &Path,
        resolution: &Resolution,
        catalog: &Catalog,
        pid: Option<u32>,
        library: u16,
    ) -> Result<Armed> {
        // Every point's recipe first: a probe may fire as soon as its link exists.
        let mut points = Vec::new();
        let mut operations = Vec::new();
        for spec in catalog.roles_in(resolution.part.as_deref()) {
            let Some(rr) = resolution.role(spec.role) else {
                continue;
            };
            for point in &rr.attach {
                let mut recipe = recipe(spec, point);
                recipe.library = library;
                let cookie = self.add_recipe(recipe)?;
                if let (true, Some(op)) = (spec.named_by_attach_point(), &point.op) {
                    operations.push((cookie, op.clone()));
                }
                points.push(Point {
                    offset: point.file_offset,
                    cookie,
                    on_return: matches!(
                        spec.kind,
                        RecipeKind::Context | RecipeKind::CallWithReturn
                    ),
                    role: spec.role.id(),
                    symbol: &point.demangled,
                });
            }
        }
        let mut armed = self.attach_points(path, &points, pid)?;
        armed.operations = operations;
        Ok(armed)
    }

    /// Stores `recipe` for the programs; returns its cookie.
    fn add_recipe(&mut self, recipe: Recipe) -> Result<u64> {
        if self.next_cookie >= MAX_RECIPES {
            return Err(Error::Other(format!(
                "more than {MAX_RECIPES} attach points; raise MAX_RECIPES"
            )));
        }
        let cookie = self.next_cookie;
        let mut recipes: Array<_, Recipe> = Array::try_from(
            self.ebpf
                .map_mut("RECIPES")
                .ok_or_else(|| missing("RECIPES"))?,
        )
        .map_err(|source| map_err("RECIPES", source))?;
        recipes
            .set(cookie, &recipe, 0)
            .map_err(|source| map_err("RECIPES", source))?;
        self.next_cookie += 1;
        Ok(u64::from(cookie))
    }

    /// Attaches the entry program to every point and the return program to those that want
    /// it: one link per program in multi mode (falling back to per point if the kernel turns
    /// multi links down), else one perf event per point and program.
    fn attach_points(
        &mut self,
        path: &Path,
        points: &[Point<'_>],
        pid: Option<u32>,
    ) -> Result<Armed> {
        let scope = match pid.and_then(NonZeroU32::new) {
            Some(pid) => UProbeScope::OneProcess(pid),
            None => UProbeScope::AllProcesses,
        };
        let returns: Vec<Point<'_>> = points.iter().filter(|p| p.on_return).cloned().collect();
        let mut armed = Armed::default();
        if self.mode == AttachMode::Multi
            && matches!(scope, UProbeScope::OneProcess(_))
            && !self.multi_pid_scope()
        {
            // Per point for this library only: a multi link would miss the other threads.
            log::info!("multi-uprobe links filter on one thread in this kernel: one uprobe per attach point for pid {}", pid.unwrap_or(0));
            for (program, pts) in [
                (AttachMode::PerPoint.programs().0, points),
                (AttachMode::PerPoint.programs().1, &returns[..]),
            ] {
                load_uprobe(&mut self.ebpf, program)?;
                armed.links += self.attach_each(program, path, pts, scope)?;
            }
            armed.points = points.len() + returns.len();
            return Ok(armed);
        }
        let (entry, ret) = self.mode.programs();
        for (i, (name, pts)) in [(entry, points), (ret, &returns[..])]
            .into_iter()
            .enumerate()
        {
            if pts.is_empty() {
                continue;
            }
            match self.mode {
                AttachMode::PerPoint => {
                    armed.links += self.attach_each(name, path, pts, scope)?;
                }
                AttachMode::Multi => {
                    match attach_multi(program(&mut self.ebpf, name)?, path, pts, scope) {
                        Ok(link) => {
                            self.links.push(link);
                            armed.links += 1;
                        }
                        Err(e) if i == 0 && self.links.is_empty() && multi_unsupported(&e) => {
                            // Turned down on the first try (a kernel that cannot make the link after
                            // all): per point from now on, this library included.
                            log::info!(
                                "multi-uprobe link refused ({e}): one uprobe per attach point"
                            );
                            self.mode = AttachMode::PerPoint;
                            let (entry, ret) = self.mode.programs();
                            load_uprobe(&mut self.ebpf, entry)?;
                            load_uprobe(&mut self.ebpf, ret)?;
                            return self.attach_points(path, points, pid);
                        }
                        Err(source) => {
                            return Err(Error::AttachLibrary {
                                program: name.into(),
                                points: pts.len(),
                                path: path.into(),
                                source: Box::new(source),
                            })
                        }
                    }
                }
            }
            armed.points += pts.len();
        }
        Ok(armed)
    }

    /// A perf-event uprobe of `program` per point, each its own link so that they detach in
    /// parallel (see Drop). Returns how many.
    fn attach_each(
        &mut self,
        program: &str,
        path: &Path,
        points: &[Point<'_>],
        scope: UProbeScope,
    ) -> Result<usize> {
        let p: &mut UProbe = self::program(&mut self.ebpf, program)?;
        for pt in points {
            let at = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(pt.offset),
                cookie: Some(pt.cookie),
            };
            let attach_err = |source| Error::Attach {
                role: pt.role.into(),
                symbol: pt.symbol.into(),
                offset: pt.offset,
                path: path.into(),
                source: Box::new(source),
            };
            let id = p.attach([at], path, scope).map_err(attach_err)?;
            self.links.push(p.take_link(id).map_err(attach_err)?);
        }
        Ok(points.len())
    }

    /// Whether multi links scoped to one pid cover the whole process here (asked once).
    fn multi_pid_scope(&mut self) -> bool {
        *self.multi_pid_scope.get_or_insert_with(|| {
            is_uprobe_multi_supported(UProbeMultiFeature::ProcessScopedPidFilter).unwrap_or(false)
        })
    }

    /// Registers `pid` as traced, so its exit is reported even if it never hits a probe
    /// (BPF_NOEXIST: a probe that already registered it keeps its instance).
    pub fn track_process(&mut self, pid: u32, instance: u64) -> Result<()> {
        let mut procs: HashMap<_, u32, u64> = HashMap::try_from(
            self.ebpf
                .map_mut("PROCESSES")
                .ok_or_else(|| missing("PROCESSES"))?,
        )
        .map_err(|source| map_err("PROCESSES", source))?;
        match procs.insert(&pid, &instance, 1) {
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(())
            }
            r => r.map_err(|source| map_err("PROCESSES", source)),
        }
    }

    /// Turns library discovery on or off. Off before this process stops reading the rings:
    /// the programs outlive it while they detach, and a process they stopped then would wait
    /// for a SIGCONT nobody sends.
    pub fn set_discovery(&mut self, on: bool) -> Result<()> {
        let mut flag: Array<_, u32> = Array::try_from(
            self.ebpf
                .map_mut("DISCOVERY")
                .ok_or_else(|| missing("DISCOVERY"))?,
        )
        .map_err(|source| map_err("DISCOVERY", source))?;
        flag.set(0, &(on as u32), 0)
            .map_err(|source| map_err("DISCOVERY", source))
    }

    /// Tells the programs what became of a library file, so a process opening it is no longer
    /// stopped.
    pub fn mark_library(&mut self, file: FileId, state: LibraryState) -> Result<()> {
        let mut files: HashMap<_, FileId, u8> = HashMap::try_from(
            self.ebpf
                .map_mut("LIBRARY_FILES")
                .ok_or_else(|| missing("LIBRARY_FILES"))?,
        )
        .map_err(|source| map_err("LIBRARY_FILES", source))?;
        files
            .insert(&file, &(state as u8), 0)
            .map_err(|source| map_err("LIBRARY_FILES", source))
    }

    /// Passes what the programs logged to the `log` crate.
    pub(crate) fn flush_log(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }

    /// Loss counters summed over CPUs, by name.
    pub fn counters(&self) -> Result<BTreeMap<&'static str, u64>> {
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(
            self.ebpf
                .map("COUNTERS")
                .ok_or_else(|| missing("COUNTERS"))?,
        )
        .map_err(|source| map_err("COUNTERS", source))?;
        let mut out = BTreeMap::new();
        for c in <Counter as strum::IntoEnumIterator>::iter() {
            let v = arr
                .get(&(c as u32), 0)
                .map_err(|source| map_err("COUNTERS", source))?;
            out.insert(c.into(), v.iter().sum());
        }
        Ok(out)
    }
}

impl Probes {
    /// Detaches after this process has exited, in a forked helper holding the last references
    /// to the probes: each link's detach waits for a kernel grace period, one after the other
    /// as the helper's files close. With multi-uprobe links that is a few links (two per
    /// library, three tracepoints: ~0.5 s here), with per-point uprobes one per attach point
    /// (seconds for a full catalog): either way not for the user to wait for. Falls back to
    /// detaching now if the helper cannot be started.
    pub(crate) fn detach_in_background(mut self) {
        use nix::unistd::{fork, pipe, read, ForkResult};
        if let Err(e) = self.set_discovery(false) {
            log::warn!("turning library discovery off: {e}");
        }
        let Ok((read_end, write_end)) = pipe() else {
            return drop(self);
        };
        // SAFETY: the child only makes async-signal-safe calls (close, read, _exit) before it
        // exits; it never returns into Rust code of the parent's threads.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // Not the user's terminal or pipes: whoever reads our output sees EOF at our exit.
                for fd in 0..3 {
                    let _ = nix::unistd::close(fd);
                }
                drop(write_end);
                let mut b = [0u8; 1];
                // EOF once the parent (holding the write end) has exited.
                while matches!(read(&read_end, &mut b), Ok(n) if n > 0) {}
                // SAFETY: _exit is async-signal-safe and ends this process at once.
                unsafe { libc::_exit(0) }
            }
            Ok(ForkResult::Parent { .. }) => {
                drop(read_end);
                // Kept open until this process exits: the helper's EOF.
                std::mem::forget(write_end);
                std::mem::forget(self);
            }
            Err(_) => drop(self),
        }
    }
}

impl Probes {
    /// Detaches every uprobe now. Each link waits for a kernel grace period (~0.1 s here) as it
    /// goes: one per library and program with multi links, one per attach point otherwise (in
    /// parallel, so that the waits overlap).
    pub fn detach_uprobes(&mut self) {
        let links = std::mem::take(&mut self.links);
        std::thread::scope(|s| {
            for link in links {
                s.spawn(move || drop(link));
            }
        });
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        let _ = self.set_discovery(false);
        self.detach_uprobes();
    }
}

/// The BPF recipe for one attach point of a role.
pub fn recipe(spec: &RoleSpec, point: &AttachPoint) -> Recipe {
    let mut r = Recipe::EMPTY;
    r.role = spec.role as u16;
    r.kind = spec.kind as u8;
    r.ring = spec.ring as u8;
    r.origin = spec.origin as u8;
    // `this` comes after a hidden result pointer; a static or free function is named by its
    // first argument (the result pointer itself, when there is one: unique per call).
    r.context_arg = if spec.named_by_attach_point() {
        tracer_common::CONTEXT_NAMED_BY_COOKIE
    } else {
        (spec.member && spec.returns_by_value) as u8
    };
    for f in &point.fields {
        let Some(i) = spec.role.field_index(f.name) else {
            continue;
        };
        if i >= MAX_FIELDS {
            continue;
        }
        r.fields[i] = FieldRule {
            op: f.read as u8,
            arg: f.arg,
            _pad: [0; 2],
            offset: f.offset,
        };
    }
    r.count_fields();
    debug_assert!(spec.kind != RecipeKind::None);
    r
}

/// One attach point of a library: where, its recipe, and whether its return is probed too.
#[derive(Clone)]
struct Point<'a> {
    offset: u64,
    cookie: u64,
    on_return: bool,
    role: &'static str,
    symbol: &'a str,
}

/// One multi-uprobe link of `p` on every point.
fn attach_multi(
    p: &mut UProbe,
    path: &Path,
    points: &[Point<'_>],
    scope: UProbeScope,
) -> Result<UProbeLink, ProgramError> {
    let at = points.iter().map(|pt| UProbeAttachPoint {
        location: UProbeAttachLocation::AbsoluteOffset(pt.offset),
        cookie: Some(pt.cookie),
    });
    let id = p.attach(at, path, scope)?;
    p.take_link(id)
}

/// Whether a multi-uprobe link failed because the kernel cannot make one (not because of the
/// points): then per-point uprobes are the way.
fn multi_unsupported(e: &ProgramError) -> bool {
    match e {
        ProgramError::UProbeError(UProbeError::MultiLinkNotSupported) => true,
        ProgramError::SyscallError(SyscallError { io_error, .. }) => matches!(
            io_error.raw_os_error(),
            Some(libc::EOPNOTSUPP | libc::ENOSYS)
        ),
        _ => false,
    }
}

/// Loads (verifies) uprobe program `name` unless it is loaded already.
fn load_uprobe(ebpf: &mut Ebpf, name: &str) -> Result<()> {
    let p: &mut UProbe = program(ebpf, name)?;
    if p.fd().is_err() {
        p.load().map_err(|source| prog_err(name, source))?;
    }
    Ok(())
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| Error::Other(format!("eBPF program {name} missing from the object")))?;
    p.try_into().map_err(|source| prog_err(name, source))
}

fn take_ring(ebpf: &mut Ebpf, name: &str) -> Result<RingBuf<MapData>> {
    let map = ebpf.take_map(name).ok_or_else(|| missing(name))?;
    RingBuf::try_from(map).map_err(|source| map_err(name, source))
}

fn missing(name: &str) -> Error {
    Error::Other(format!("eBPF map {name} missing from the object"))
}

fn prog_err(name: &str, source: aya::programs::ProgramError) -> Error {
    Error::Program {
        program: name.into(),
        source: Box::new(source),
    }
}

fn map_err(name: &str, source: aya::maps::MapError) -> Error {
    Error::Map {
        map: name.into(),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_ring_sizes_are_powers_of_two_from_a_page_to_a_gibibyte() {
        for ok in [4096, 64 << 10, 8 << 20, 1 << 30] {
            assert_eq!(check_payload_ring_bytes(ok).unwrap() as u64, ok);
        }
        for bad in [0, 1, 2048, 4095, 5000, 3 << 20, 2 << 30, u64::MAX] {
            assert!(check_payload_ring_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_smaller_ring_wakes_the_reader_at_the_default_fill_fraction() {
        let default = LoadOptions::default();
        assert_eq!(
            default.wakeup_bytes * u64::from(WAKEUP_FRACTION),
            u64::from(default.payload_ring_bytes)
        );
        let mut small = LoadOptions::default();
        small.set_payload_ring_bytes(64 << 10).unwrap();
        assert_eq!(small.payload_ring_bytes, 64 << 10);
        assert_eq!(small.wakeup_bytes, 2 << 10);
        assert!(small.set_payload_ring_bytes(100).is_err());
        assert_eq!(
            small.payload_ring_bytes,
            64 << 10,
            "unchanged by a refused size"
        );
    }

    #[test]
    fn a_recipe_counts_fields_up_to_its_last_used_rule() {
        let rule = |op: tracer_common::FieldOp| FieldRule {
            op: op as u8,
            arg: 1,
            _pad: [0; 2],
            offset: 0,
        };
        let mut r = Recipe::EMPTY;
        r.count_fields();
        assert_eq!(r.used_fields, 0);
        // A gap is kept: fields sit at their role's index, so the probe reads up to the last.
        r.fields[2] = rule(tracer_common::FieldOp::VecBytes);
        r.count_fields();
        assert_eq!(r.used_fields, 3);
        r.fields[3] = rule(tracer_common::FieldOp::Reg);
        r.count_fields();
        assert_eq!(r.used_fields, 4);
        r.fields = [FieldRule::NONE; MAX_FIELDS];
        r.fields[0] = rule(tracer_common::FieldOp::Load32);
        r.count_fields();
        assert_eq!(r.used_fields, 1);
    }
}
