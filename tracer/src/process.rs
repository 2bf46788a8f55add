//! Processes the tracer works with: finding libtt_metal.so in a running process, and starting a
//! command held before its first instruction until the probes are armed.

use std::{
    ffi::{CString, OsString},
    os::{
        fd::{FromRawFd as _, OwnedFd, RawFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use crate::errors::{Error, Result};

/// The libtt_metal.so files mapped by `pid`, from /proc/PID/maps (deduplicated, in map order).
pub fn mapped_tt_metal(pid: u32) -> Result<Vec<PathBuf>> {
    Ok(tt_metal_paths_in_maps(&read_proc(pid, "maps")?))
}

/// /proc/PID/`file`: a missing process is [`Error::NoSuchProcess`].
fn read_proc(pid: u32, file: &str) -> Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NoSuchProcess { pid }
        } else {
            Error::ProcessUnreadable { pid, source: e }
        }
    })
}

/// Paths of `libtt_metal.so*` mappings in the text of a /proc/PID/maps file.
pub(crate) fn tt_metal_paths_in_maps(maps: &str) -> Vec<PathBuf> {
    library_paths_in_maps(maps, "libtt_metal.so")
}

/// Paths of mappings whose file name starts with `name` (`name`, `name.1`, …) in the text of
/// a /proc/PID/maps file, each once, in map order.
pub(crate) fn library_paths_in_maps(maps: &str, name: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode pathname (the path may contain spaces)
        let Some(path) = line.splitn(6, char::is_whitespace).nth(5).map(str::trim) else {
            continue;
        };
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        let file = path.rsplit('/').next().unwrap_or_default();
        if file.starts_with(name) && !out.iter().any(|p| p.as_os_str() == path) {
            out.push(PathBuf::from(path));
        }
    }
    out
}

/// Why a process cannot be traced, from what /proc says about it and who we are: None when it
/// can. `maps_tt_metal` is whether it maps a libtt_metal.so now.
fn untraceable_reason(
    pid: u32,
    stat: &ProcStat,
    own_pid: u32,
    own_ancestors: &[u32],
    maps_tt_metal: bool,
) -> Option<String> {
    if pid == own_pid {
        return Some("that is tt-tracer itself".into());
    }
    if stat.flags & PF_KTHREAD != 0 {
        return Some(format!(
            "{} is a kernel thread: it runs no user-space library",
            stat.comm
        ));
    }
    if own_ancestors.contains(&pid) {
        return Some(format!(
            "{} is an ancestor of tt-tracer (it would wait for tt-tracer, and tt-tracer for it)",
            stat.comm
        ));
    }
    if pid == 1 && !maps_tt_metal {
        return Some(format!(
            "it is the init process ({}) and maps no libtt_metal.so",
            stat.comm
        ));
    }
    None
}

/// `PF_KTHREAD` in /proc/PID/stat's flags (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of /proc/PID/stat the tracer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcStat {
    comm: String,
    state: char,
    ppid: u32,
    flags: u64,
}

/// Parses /proc/PID/stat: `pid (comm) state ppid pgrp session tty_nr tpgid flags …`; comm may
/// hold spaces and parentheses, so it ends at the last ')'.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let flags = rest.nth(4)?.parse().ok()?;
    Some(ProcStat {
        comm,
        state,
        ppid,
        flags,
    })
}

fn read_stat(pid: u32) -> Result<ProcStat> {
    let text = read_proc(pid, "stat")?;
    parse_stat(&text).ok_or_else(|| Error::ProcessUnreadable {
        pid,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "unparsable /proc/PID/stat"),
    })
}

/// Fails unless `pid` is a live user-space process other than tt-tracer and its ancestors
/// (attaching to those would wait forever). `maps_tt_metal`: whether it maps a libtt_metal.so.
pub fn check_traceable(pid: u32, maps_tt_metal: bool) -> Result<()> {
    if pid == 0 {
        return Err(Error::NotTraceable {
            pid,
            why: "pid 0 is the kernel's idle task".into(),
        });
    }
    let stat = read_stat(pid)?;
    if matches!(stat.state, 'Z' | 'X' | 'x') {
        return Err(Error::ProcessGone { pid });
    }
    let own = std::process::id();
    let mut ancestors = Vec::new();
    let mut p = nix::unistd::getppid().as_raw() as u32;
    while p > 1 && ancestors.len() < 64 {
        ancestors.push(p);
        p = read_stat(p).map(|s| s.ppid).unwrap_or(0);
    }
    match untraceable_reason(pid, &stat, own, &ancestors, maps_tt_metal) {
        Some(why) => Err(Error::NotTraceable { pid, why }),
        None => Ok(()),
    }
}

/// Whether `pid` is gone (or a zombie): an attach that failed then failed because it exited.
pub fn is_gone(pid: u32) -> bool {
    match read_stat(pid) {
        Ok(s) => matches!(s.state, 'Z' | 'X' | 'x'),
        Err(_) => true,
    }
}

/// Who the traced command runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
}

/// The invoking user under sudo (SUDO_UID / SUDO_GID), when running as root.
pub fn sudo_invoker(env: impl Fn(&str) -> Option<String>, euid: u32) -> Option<Credentials> {
    if euid != 0 {
        return None;
    }
    let uid = env("SUDO_UID")?.parse().ok()?;
    let gid = env("SUDO_GID")?.parse().ok()?;
    (uid != 0).then_some(Credentials { uid, gid })
}

/// A pipe whose ends are for a parent (`ours`, close-on-exec) and the child it spawns
/// (`theirs`, inherited).
pub struct ChildPipe {
    pub ours: OwnedFd,
    pub theirs: OwnedFd,
}

impl ChildPipe {
    /// `parent_reads`: the parent holds the read end (else the write end).
    pub fn new(parent_reads: bool) -> Result<ChildPipe> {
        let os = |what: &str, e: nix::Error| Error::Other(format!("{what}: {e}"));
        let (r, w) = nix::unistd::pipe().map_err(|e| os("pipe", e))?;
        let (ours, theirs) = if parent_reads { (r, w) } else { (w, r) };
        set_cloexec(&ours, true).map_err(|e| os("fcntl", e))?;
        Ok(ChildPipe { ours, theirs })
    }
}

fn set_cloexec(fd: &OwnedFd, on: bool) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map(drop)
}

/// What the `run` child tells its parent through the status pipe when it could not exec.
pub fn exec_error_from_status(bytes: &[u8]) -> Option<std::io::Error> {
    let raw: [u8; 4] = bytes.try_into().ok()?;
    Some(std::io::Error::from_raw_os_error(i32::from_le_bytes(raw)))
}

/// The hidden helper the `run` child starts as: it blocks reading `hold_fd` until the tracer
/// has armed the probes (one byte) or gave up (EOF), then drops to `creds` and execs `argv`.
/// Same pid throughout, so pid-scoped probes attached while it waits cover the command. If the
/// exec fails, the errno goes to `status_fd` (closed on a successful exec, so the parent reads
/// EOF then) and the returned error carries it.
pub fn exec_held(
    hold_fd: RawFd,
    status_fd: RawFd,
    creds: Option<Credentials>,
    argv: &[OsString],
) -> Result<std::convert::Infallible> {
    // SAFETY: both fds were opened by our parent for this process alone and are used nowhere
    // else in it.
    let (hold, status) = unsafe {
        (
            OwnedFd::from_raw_fd(hold_fd),
            OwnedFd::from_raw_fd(status_fd),
        )
    };
    let mut b = [0u8; 1];
    let n = nix::unistd::read(&hold, &mut b).unwrap_or(0);
    drop(hold);
    if n != 1 {
        return Err(Error::Other(
            "tracer went away before the probes were armed; not starting".into(),
        ));
    }
    if let Some(c) = creds {
        drop_privileges(c)?;
    }
    let command = argv[0].to_string_lossy().into_owned();
    let cannot = |source: std::io::Error| Error::CannotRun {
        command: command.clone(),
        source,
    };
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| {
            CString::new(a.as_bytes()).map_err(|_| {
                cannot(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "an argument contains a NUL byte",
                ))
            })
        })
        .collect::<Result<_>>()?;
    set_cloexec(&status, true).map_err(|e| Error::Other(format!("fcntl: {e}")))?;
    let errno = match nix::unistd::execvp(&cargs[0], &cargs) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let _ = nix::unistd::write(&status, &(errno as i32).to_le_bytes());
    Err(cannot(std::io::Error::from(errno)))
}

/// setgroups (the user's groups from the group database, else just `gid`), setgid, setuid;
/// verified, since running a user's command as root by mistake is worse than not running it.
fn drop_privileges(c: Credentials) -> Result<()> {
    use nix::unistd::{initgroups, setgid, setgroups, setuid, Gid, Uid, User};
    let os = |what: &str, e: nix::Error| Error::Other(format!("{what}: {e}"));
    let (uid, gid) = (Uid::from_raw(c.uid), Gid::from_raw(c.gid));
    match User::from_uid(uid).ok().flatten() {
        Some(user) => {
            let name = CString::new(user.name.as_bytes())
                .map_err(|_| Error::Other("user name contains NUL".into()))?;
            initgroups(&name, gid).map_err(|e| os("initgroups", e))?;
            // The command should find its own home and name, not root's. Single-threaded here.
            std::env::set_var("HOME", &user.dir);
            std::env::set_var("USER", &user.name);
            std::env::set_var("LOGNAME", &user.name);
        }
        None => setgroups(&[gid]).map_err(|e| os("setgroups", e))?,
    }
    setgid(gid).map_err(|e| os("setgid", e))?;
    setuid(uid).map_err(|e| os("setuid", e))?;
    if nix::unistd::getuid() != uid
        || nix::unistd::geteuid() != uid
        || setuid(Uid::from_raw(0)).is_ok()
    {
        return Err(Error::Other("could not drop root privileges".into()));
    }
    Ok(())
}

/// Who process `pid` is, from /proc (its command name and control group); what cannot be read
/// (the process is gone) stays unknown.
pub fn info(pid: u32) -> crate::collector::ProcessInfo {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end_matches('\n').to_string());
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|t| crate::collector::Cgroup::from_proc_cgroup(&t));
    crate::collector::ProcessInfo { comm, cgroup }
}

/// The control group whose cgroup v2 id (its directory's inode number; 1 for the root) is
/// `id`, found under the unified hierarchy's mount; None if it is gone or cannot be found.
pub fn cgroup_by_id(id: u64) -> Option<crate::collector::Cgroup> {
    use std::os::unix::fs::MetadataExt as _;
    fn find(dir: &Path, id: u64, depth: usize) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            if meta.ino() == id {
                return Some(entry.path());
            }
            if depth < 32 {
                if let Some(p) = find(&entry.path(), id, depth + 1) {
                    return Some(p);
                }
            }
        }
        None
    }
    let path = match id {
        0 => return None,
        // The root: the only v2 group when the unified hierarchy is not mounted at all.
        1 => PathBuf::from("/"),
        _ => {
            let root = cgroup2_mount()?;
            Path::new("/").join(find(&root, id, 0)?.strip_prefix(&root).ok()?)
        }
    };
    Some(crate::collector::Cgroup::from_path(path.to_str()?))
}

/// Where the cgroup v2 (unified) hierarchy is mounted, if it is.
fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        Some(PathBuf::from(left.split(' ').nth(4)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_is_found_by_its_id() {
        use std::os::unix::fs::MetadataExt as _;
        let own = crate::collector::Cgroup::from_proc_cgroup(
            &std::fs::read_to_string("/proc/self/cgroup").unwrap(),
        )
        .expect("this process's cgroup");
        let id = match cgroup2_mount() {
            Some(root) => std::fs::metadata(root.join(own.path.trim_start_matches('/')))
                .unwrap()
                .ino(),
            None => {
                assert_eq!(own.path, "/", "no cgroup2 mount, yet a v2 group");
                1
            }
        };
        assert_eq!(cgroup_by_id(id), Some(own));
        assert_eq!(cgroup_by_id(0), None);
    }

    #[test]
    fn maps_lines_yield_tt_metal_paths_once() {
        let maps = "\
7f0000000000-7f0000001000 r--p 00000000 fd:01 123 /venv/lib/python3.10/site-packages/ttnn/build/lib/libtt_metal.so
7f0000001000-7f0000002000 r-xp 00001000 fd:01 123 /venv/lib/python3.10/site-packages/ttnn/build/lib/libtt_metal.so
7f0000003000-7f0000004000 r-xp 00000000 fd:01 124 /usr/lib/libc.so.6
7f0000005000-7f0000006000 rw-p 00000000 00:00 0
7f0000007000-7f0000008000 r-xp 00000000 fd:01 125 /opt/my build/libtt_metal.so (deleted)
";
        assert_eq!(
            tt_metal_paths_in_maps(maps),
            vec![
                PathBuf::from("/venv/lib/python3.10/site-packages/ttnn/build/lib/libtt_metal.so"),
                PathBuf::from("/opt/my build/libtt_metal.so"),
            ]
        );
    }

    #[test]
    fn stat_lines_parse_with_odd_command_names() {
        let s = parse_stat("4242 (tt (x) y) S 17 4242 4242 0 -1 4194560 120 0 0 0").unwrap();
        assert_eq!(
            s,
            ProcStat {
                comm: "tt (x) y".into(),
                state: 'S',
                ppid: 17,
                flags: 4194560
            }
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (a) S"), None);
    }

    #[test]
    fn kernel_threads_self_ancestors_and_a_bare_init_are_refused() {
        let stat = |comm: &str, flags| ProcStat {
            comm: comm.into(),
            state: 'S',
            ppid: 1,
            flags,
        };
        let user = stat("python3", 0x0040_0100);
        assert_eq!(untraceable_reason(500, &user, 900, &[800], true), None);
        assert_eq!(untraceable_reason(500, &user, 900, &[800], false), None);
        let kthread = stat("kthreadd", 0x0020_8040);
        assert!(untraceable_reason(2, &kthread, 900, &[], false)
            .unwrap()
            .contains("kernel thread"));
        assert!(untraceable_reason(900, &user, 900, &[], true)
            .unwrap()
            .contains("tt-tracer itself"));
        assert!(untraceable_reason(800, &user, 900, &[800], true)
            .unwrap()
            .contains("ancestor"));
        let init = stat("systemd", 0x0040_0100);
        assert!(untraceable_reason(1, &init, 900, &[], false)
            .unwrap()
            .contains("init"));
        // In a container, pid 1 can be the tt-metal job itself.
        assert_eq!(untraceable_reason(1, &init, 900, &[], true), None);
    }

    #[test]
    fn exec_status_bytes_carry_the_errno() {
        let e = exec_error_from_status(&2i32.to_le_bytes()).unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(exec_error_from_status(&[]).is_none());
    }

    #[test]
    fn sudo_invoker_only_when_root_and_not_root_itself() {
        let env = |k: &str| match k {
            "SUDO_UID" => Some("65534".to_string()),
            "SUDO_GID" => Some("65533".to_string()),
            _ => None,
        };
        assert_eq!(
            sudo_invoker(env, 0),
            Some(Credentials {
                uid: 65534,
                gid: 65533
            })
        );
        assert_eq!(sudo_invoker(env, 1000), None);
        assert_eq!(sudo_invoker(|_| None, 0), None);
        let root = |k: &str| (k.starts_with("SUDO_")).then(|| "0".to_string());
        assert_eq!(sudo_invoker(root, 0), None);
    }
}
