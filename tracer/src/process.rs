//! Processes the tracer works with: finding libtt_metal.so in a running process, and starting a
//! command held before its first instruction until the probes are armed.

use std::{
    ffi::{CString, OsString},
    os::{fd::RawFd, unix::ffi::OsStrExt},
    path::PathBuf,
};

use crate::errors::{Error, Result};

/// The libtt_metal.so files mapped by `pid`, from /proc/PID/maps (deduplicated, in map order).
pub fn mapped_tt_metal(pid: u32) -> Result<Vec<PathBuf>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NoSuchProcess { pid }
        } else {
            Error::ProcessUnreadable { pid, source: e }
        }
    })?;
    Ok(tt_metal_paths_in_maps(&maps))
}

/// Paths of `libtt_metal.so*` mappings in the text of a /proc/PID/maps file.
pub fn tt_metal_paths_in_maps(maps: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode pathname (the path may contain spaces)
        let Some(path) = line.splitn(6, char::is_whitespace).nth(5).map(str::trim) else {
            continue;
        };
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        let name = path.rsplit('/').next().unwrap_or_default();
        if name.starts_with("libtt_metal.so") && !out.iter().any(|p| p.as_os_str() == path) {
            out.push(PathBuf::from(path));
        }
    }
    out
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

/// The hidden helper the `run` child starts as: it blocks reading `hold_fd` until the tracer
/// has armed the probes (one byte) or gave up (EOF), then drops to `creds` and execs `argv`.
/// Same pid throughout, so pid-scoped probes attached while it waits cover the command.
pub fn exec_held(
    hold_fd: RawFd,
    creds: Option<Credentials>,
    argv: &[OsString],
) -> Result<std::convert::Infallible> {
    let mut b = [0u8; 1];
    // SAFETY: reading one byte into a valid buffer.
    let n = unsafe { libc::read(hold_fd, b.as_mut_ptr().cast(), 1) };
    // SAFETY: closing our own fd.
    unsafe { libc::close(hold_fd) };
    if n != 1 {
        return Err(Error::Other(
            "tracer went away before the probes were armed; not starting".into(),
        ));
    }
    if let Some(c) = creds {
        drop_privileges(c)?;
    }
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| {
            CString::new(a.as_bytes()).map_err(|_| Error::Other("argument contains NUL".into()))
        })
        .collect::<Result<_>>()?;
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: NUL-terminated argv of valid C strings.
    unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
    Err(Error::Other(format!(
        "cannot run {}: {}",
        argv[0].to_string_lossy(),
        std::io::Error::last_os_error()
    )))
}

/// setgroups (the user's groups from the group database, else just `gid`), setgid, setuid;
/// verified, since running a user's command as root by mistake is worse than not running it.
fn drop_privileges(c: Credentials) -> Result<()> {
    // SAFETY: getpwuid returns a pointer into static storage or NULL; used before any other call.
    let pw = unsafe { libc::getpwuid(c.uid) };
    let os = |what: &str| Error::Other(format!("{what}: {}", std::io::Error::last_os_error()));
    if pw.is_null() {
        // SAFETY: one-element list.
        if unsafe { libc::setgroups(1, &c.gid) } != 0 {
            return Err(os("setgroups"));
        }
    } else {
        // SAFETY: pw is valid; pw_name a C string.
        let (name, dir) = unsafe {
            (
                (*pw).pw_name,
                std::ffi::CStr::from_ptr((*pw).pw_dir).to_owned(),
            )
        };
        // SAFETY: valid C string and gid.
        if unsafe { libc::initgroups(name, c.gid as libc::gid_t) } != 0 {
            return Err(os("initgroups"));
        }
        // SAFETY: valid C string.
        let user = unsafe { std::ffi::CStr::from_ptr(name) }.to_owned();
        // The command should find its own home and name, not root's. Single-threaded here.
        unsafe {
            std::env::set_var("HOME", std::ffi::OsStr::from_bytes(dir.to_bytes()));
            std::env::set_var("USER", std::ffi::OsStr::from_bytes(user.to_bytes()));
            std::env::set_var("LOGNAME", std::ffi::OsStr::from_bytes(user.to_bytes()));
        }
    }
    // SAFETY: plain syscalls.
    if unsafe { libc::setgid(c.gid) } != 0 {
        return Err(os("setgid"));
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(c.uid) } != 0 {
        return Err(os("setuid"));
    }
    // SAFETY: as above.
    if unsafe { libc::getuid() } != c.uid
        || unsafe { libc::geteuid() } != c.uid
        || unsafe { libc::setuid(0) } == 0
    {
        return Err(Error::Other("could not drop root privileges".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
