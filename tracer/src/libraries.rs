//! The library files a session traces: each distinct file (inode) is resolved once with the
//! catalog and armed once, for every process that maps it; a file that does not resolve is
//! refused once, with its path and what is missing, and never stops a process again.

use std::{
    collections::HashMap,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use tracer_common::{FileId, LibraryState};

use crate::{
    catalog::Catalog,
    collector::{CacheProbes, OpInfo, Record},
    errors::{Error, Result},
    loader::Probes,
    resolve::{self, Resolution},
    roles::Role,
};

/// A library file with probes attached.
#[derive(Debug, Clone)]
pub struct TracedLibrary {
    /// 1-based, carried by every event from its attach points.
    pub id: u16,
    /// The path it was found under (as the first process that opened it named it).
    pub path: PathBuf,
    pub build_id: Option<String>,
    pub file: FileId,
    /// Attach points armed (uprobes and uretprobes).
    pub probes: usize,
    /// Kernel attachments holding them (multi-uprobe links, or a perf event per point).
    pub links: usize,
}

/// A library file that could not be traced, and why (said once).
#[derive(Debug, Clone)]
pub struct RefusedLibrary {
    pub path: PathBuf,
    pub file: FileId,
    pub reason: String,
}

/// How a library file came to be armed: said in its [`Record::LibraryTraced`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    /// Named by the user (`--lib`).
    Named,
    /// Mapped by a process already running when tracing started.
    Mapped { pid: u32 },
    /// Being loaded by a process, stopped since `since_ns` (CLOCK_MONOTONIC) until armed.
    Loaded { pid: u32, since_ns: u64 },
}

impl FoundBy {
    fn pid(self) -> Option<u32> {
        match self {
            FoundBy::Named => None,
            FoundBy::Mapped { pid } | FoundBy::Loaded { pid, .. } => Some(pid),
        }
    }
}

/// What [`Libraries::arm`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Armed {
    /// Probes attached now: library id.
    New(u16),
    /// Armed before (another path or process): library id.
    Known(u16),
    /// Not traceable (now or before): see [`Libraries::refused`].
    Refused,
}

pub struct Libraries {
    catalog: Catalog,
    allow_partial: bool,
    /// Probes for one process only (`attach`), else for every process mapping the file.
    scope_pid: Option<u32>,
    traced: Vec<TracedLibrary>,
    refused: Vec<RefusedLibrary>,
    by_file: HashMap<FileId, Armed>,
    /// Records of libraries armed or refused, for the session to pass on.
    notices: Vec<Record>,
    /// Operations named by attach points armed since the session last took them.
    operations: Vec<(u64, OpInfo)>,
    /// Companion files armed (their probes serve every main library that has them beside it:
    /// one file reached through two directories is armed once, or its events would double).
    companions: std::collections::HashSet<FileId>,
}

impl Libraries {
    pub fn new(catalog: Catalog, allow_partial: bool, scope_pid: Option<u32>) -> Libraries {
        Libraries {
            catalog,
            allow_partial,
            scope_pid,
            traced: Vec::new(),
            refused: Vec::new(),
            by_file: HashMap::new(),
            notices: Vec::new(),
            operations: Vec::new(),
            companions: Default::default(),
        }
    }

    /// The operations of attach points armed since the last call, by cookie (for the
    /// collector, which sees only the cookie in events).
    pub fn take_operations(&mut self) -> Vec<(u64, OpInfo)> {
        std::mem::take(&mut self.operations)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn traced(&self) -> &[TracedLibrary] {
        &self.traced
    }

    pub fn refused(&self) -> &[RefusedLibrary] {
        &self.refused
    }

    pub fn get(&self, id: u16) -> Option<&TracedLibrary> {
        self.traced.iter().find(|l| l.id == id)
    }

    /// Records that arming the file at `path` failed in the kernel, for a process that goes on
    /// untraced.
    pub fn notice_refused(&mut self, path: &Path, error: &Error, pid: u32) {
        self.notices.push(Record::LibraryRefused {
            path: path.display().to_string(),
            reason: error.to_string(),
            cause: error.library_refusal(),
            pid: Some(pid),
        });
    }

    /// Library records (traced, refused) not yet passed on.
    pub fn take_notices(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.notices)
    }

    /// What became of `file` already, if anything.
    pub fn state(&self, file: FileId) -> Option<Armed> {
        self.by_file.get(&file).copied()
    }

    /// Resolves the library that `open` reads (a path, or /proc/PID/fd/N of a process that
    /// has it open) and attaches its probes, unless that file was seen before. `shown` is the
    /// path it is reported under; `also` another identity of the same file (the one the
    /// kernel saw, when a stacked filesystem shows another), marked alike.
    pub fn arm(
        &mut self,
        probes: &mut Probes,
        open: &Path,
        shown: &Path,
        also: Option<FileId>,
        found_by: FoundBy,
    ) -> Result<Armed> {
        // Held open while arming, and reached through our own descriptor: `open` may name it
        // through a process that exits meanwhile (/proc/PID/root/…, /proc/PID/fd/N).
        let held = std::fs::File::open(open).map_err(|source| Error::Io {
            path: open.to_path_buf(),
            source,
        })?;
        let own = PathBuf::from(format!("/proc/self/fd/{}", held.as_raw_fd()));
        let open = own.as_path();
        let file = file_id(open)?;
        if let Some(done) = self.by_file.get(&file).copied() {
            return Ok(match done {
                Armed::New(id) => Armed::Known(id),
                other => other,
            });
        }
        // The package's other libraries sit beside this one, as the process sees its files.
        let dir = shown.parent().map(|d| match found_by.pid() {
            Some(pid) => {
                Path::new(&format!("/proc/{pid}/root")).join(d.strip_prefix("/").unwrap_or(d))
            }
            None => d.to_path_buf(),
        });
        let outcome = match self.attach(probes, open, shown, dir.as_deref(), file) {
            Ok(id) => {
                self.notice_traced(id, found_by);
                Armed::New(id)
            }
            Err(e @ (Error::Attach { .. } | Error::AttachLibrary { .. })) => return Err(e),
            Err(e) => {
                // Told under the path it is known by, not our descriptor's.
                let reason = e
                    .to_string()
                    .replace(&own.display().to_string(), &shown.display().to_string());
                self.notices.push(Record::LibraryRefused {
                    path: shown.display().to_string(),
                    reason: reason.clone(),
                    cause: e.library_refusal(),
                    pid: found_by.pid(),
                });
                self.refused.push(RefusedLibrary {
                    path: shown.to_path_buf(),
                    file,
                    reason,
                });
                Armed::Refused
            }
        };
        let state = match outcome {
            Armed::Refused => LibraryState::Refused,
            _ => LibraryState::Armed,
        };
        for f in std::iter::once(file).chain(also.filter(|a| *a != file)) {
            probes.mark_library(f, state)?;
            self.by_file.insert(f, outcome);
        }
        Ok(outcome)
    }

    /// Arms the library at `path`, already resolved (and checked) by the caller: any error is
    /// the caller's to report.
    pub fn arm_resolved(
        &mut self,
        probes: &mut Probes,
        path: &Path,
        resolution: &Resolution,
    ) -> Result<u16> {
        let file = file_id(path)?;
        if let Some(Armed::New(id) | Armed::Known(id)) = self.by_file.get(&file).copied() {
            return Ok(id);
        }
        let id = self.attach_resolved(probes, path, path, file, resolution)?;
        self.notice_traced(id, FoundBy::Named);
        probes.mark_library(file, LibraryState::Armed)?;
        self.by_file.insert(file, Armed::New(id));
        Ok(id)
    }

    fn notice_traced(&mut self, id: u16, found_by: FoundBy) {
        let Some(l) = self.get(id) else { return };
        let stopped_ns = match found_by {
            FoundBy::Loaded { since_ns, .. } => {
                Some(crate::kernel::monotonic_ns().saturating_sub(since_ns))
            }
            _ => None,
        };
        let record = Record::LibraryTraced {
            id,
            path: l.path.display().to_string(),
            build_id: l.build_id.clone(),
            probes: l.probes,
            links: l.links,
            pid: found_by.pid(),
            stopped_ns,
        };
        self.notices.push(record);
    }

    fn attach(
        &mut self,
        probes: &mut Probes,
        open: &Path,
        shown: &Path,
        dir: Option<&Path>,
        file: FileId,
    ) -> Result<u16> {
        let mut resolution = resolve::resolve_file(open, &self.catalog)?;
        resolution.library = shown.to_path_buf();
        if let Some(dir) = dir {
            resolution = resolve::with_companions(resolution, dir, &self.catalog);
        }
        match resolution.ensure_complete() {
            Ok(()) => {}
            Err(e) if self.allow_partial && resolution.has_code => {
                log::warn!("{e} (tracing anyway: --allow-partial)")
            }
            Err(e) => return Err(e),
        }
        self.attach_resolved(probes, open, shown, file, &resolution)
    }

    fn attach_resolved(
        &mut self,
        probes: &mut Probes,
        open: &Path,
        shown: &Path,
        file: FileId,
        resolution: &Resolution,
    ) -> Result<u16> {
        let id = u16::try_from(self.traced.len() + 1)
            .map_err(|_| Error::Other("too many distinct libraries".into()))?;
        let mut armed =
            probes.attach_library(open, resolution, &self.catalog, self.scope_pid, id)?;
        for companion in &resolution.companions {
            match file_id(&companion.library) {
                Ok(f) if !self.companions.insert(f) => continue,
                Ok(_) => {}
                Err(e) => {
                    log::warn!("{e}");
                    continue;
                }
            }
            // Its events carry the main library's id: one package, one library to the reader.
            match probes.attach_library(
                &companion.library,
                companion,
                &self.catalog,
                self.scope_pid,
                id,
            ) {
                Ok(more) => {
                    armed.points += more.points;
                    armed.links += more.links;
                    self.operations
                        .extend(operations(companion, more.operations));
                }
                // The main library is traced all the same: said, not fatal.
                Err(e) => log::warn!("{}: {e}", companion.library.display()),
            }
        }
        self.traced.push(TracedLibrary {
            id,
            path: shown.to_path_buf(),
            build_id: resolution.build_id.clone(),
            file,
            probes: armed.points,
            links: armed.links,
        });
        Ok(id)
    }
}

/// What the collector needs to know of each armed operation: its name, and which of the
/// program-cache paths are probed for it in this library (so that a launch in which neither
/// fired can still be called a hit or a miss).
fn operations(
    library: &Resolution,
    armed: Vec<(u64, crate::resolve::ops::Op)>,
) -> impl Iterator<Item = (u64, OpInfo)> + '_ {
    // The operations each signal is probed for (looked up once per armed operation).
    let probed = |role: Role| -> std::collections::HashSet<&str> {
        library
            .role(role)
            .into_iter()
            .flat_map(|r| r.attach.iter())
            .filter_map(|a| a.op.as_ref().map(|o| o.path()))
            .collect()
    };
    let (hit, enqueue) = (probed(Role::OpCacheHit), probed(Role::OpEnqueue));
    armed.into_iter().map(move |(cookie, op)| {
        let info = OpInfo {
            name: op.name().unwrap_or(op.path()).to_string(),
            path: op.path().to_string(),
            cache: CacheProbes {
                hit: hit.contains(op.path()),
                enqueue: enqueue.contains(op.path()),
            },
        };
        (cookie, info)
    })
}

/// The kernel's identity of the file at `path` (following symlinks, as the probes' attach
/// does): the device in the kernel's encoding, as the programs read it from the superblock.
pub fn file_id(path: &Path) -> Result<FileId> {
    let m = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let dev = m.dev();
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    Ok(FileId {
        dev: (major << 20) | minor,
        ino: m.ino(),
    })
}

/// Libraries named `name` that running processes map now: (pid, path as the process names
/// it, a path this process can open). Unreadable or vanished processes are skipped.
pub fn mapped_by_running_processes(name: &str) -> Vec<(u32, PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let me = std::process::id();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        for path in crate::process::library_paths_in_maps(&maps, name) {
            // Through the process's own root: it may live in another mount namespace.
            let open = PathBuf::from(format!("/proc/{pid}/root"))
                .join(path.strip_prefix("/").unwrap_or(&path));
            out.push((pid, path, open));
        }
    }
    out
}
