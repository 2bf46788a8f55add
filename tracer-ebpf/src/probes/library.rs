//! Library discovery: a traced process mapping a file named like the library for execution
//! (`mmap` with PROT_EXEC: the dynamic loader loading it, at exec or dlopen) whose inode has no
//! probes yet is reported and stopped (SIGSTOP, taken before it returns to user space, so
//! before it can run a single instruction of the library); user space arms the file, then
//! continues the process. Files already armed (or refused) cost a map lookup.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str_bytes, generated::bpf_send_signal,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    counters::Counter, Event, EventKind, FileId, KernelOffsets, Ring, MAX_LIBRARY_NAME,
};

use crate::{
    emit::submit,
    maps::{
        count, global, DISCOVERY, KERNEL, LIBRARY_FILES, LIBRARY_NAME, LIBRARY_NAME_LEN,
        TRACER_TGID,
    },
    process::is_traced,
};

const SIGSTOP: u32 = 19;
const PROT_EXEC: u64 = 4;

// Field offsets in the syscalls:sys_enter_mmap record (after the 8-byte common header and the
// int __syscall_nr, padded): see its `format` file in tracefs.
const MMAP_PROT: usize = 32;
const MMAP_FD: usize = 48;

#[tracepoint]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    let _ = try_mmap(&ctx);
    0
}

fn try_mmap(ctx: &TracePointContext) -> Result<(), ()> {
    if DISCOVERY.get(0).copied().unwrap_or(0) == 0 {
        return Ok(());
    }
    // SAFETY: the record has these fields (format of sys_enter_mmap).
    let (prot, fd) = unsafe {
        (
            ctx.read_at::<u64>(MMAP_PROT).map_err(|_| ())?,
            ctx.read_at::<u64>(MMAP_FD).map_err(|_| ())? as i64,
        )
    };
    if prot & PROT_EXEC == 0 || fd < 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == global(&TRACER_TGID) || !is_traced(tgid) {
        return Ok(());
    }
    let k: KernelOffsets = global(&KERNEL);
    if !k.files_known() {
        return Ok(());
    }
    let file = file_of(&k, fd as u64).ok_or(())?;
    // SAFETY: read-only view of a map value.
    if unsafe { LIBRARY_FILES.get(&file.id) }.is_some() {
        return Ok(());
    }
    if !names_library(&k, file.ptr) {
        return Ok(());
    }
    // Stop the whole process on its way back to user space, until user space has armed the
    // file and sent SIGCONT.
    // SAFETY: helper without preconditions; it acts on the current task's process.
    if unsafe { bpf_send_signal(SIGSTOP) } != 0 {
        count(Counter::LibraryStopFailed);
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut ev = Event::new(EventKind::LibraryOpened, 0, now, 0, tgid, pid_tgid as u32);
    ev.fields = [fd as u64, file.id.dev, file.id.ino, 0];
    submit(Ring::Lifecycle as u8, &ev);
    Ok(())
}

struct OpenFile {
    /// `struct file *`.
    ptr: u64,
    id: FileId,
}

/// The file behind the current task's descriptor `fd`, following the offsets from BTF.
fn file_of(k: &KernelOffsets, fd: u64) -> Option<OpenFile> {
    // SAFETY: every read goes through bpf_probe_read_kernel, which validates the address.
    unsafe {
        let task = bpf_get_current_task();
        let files: u64 = bpf_probe_read_kernel((task + k.task_files as u64) as *const u64).ok()?;
        let fdt: u64 = bpf_probe_read_kernel((files + k.files_fdt as u64) as *const u64).ok()?;
        let fds: u64 = bpf_probe_read_kernel((fdt + k.fdt_fd as u64) as *const u64).ok()?;
        let file: u64 = bpf_probe_read_kernel((fds + fd * 8) as *const u64).ok()?;
        let inode: u64 = bpf_probe_read_kernel((file + k.file_inode as u64) as *const u64).ok()?;
        let ino: u64 = bpf_probe_read_kernel((inode + k.inode_ino as u64) as *const u64).ok()?;
        let sb: u64 = bpf_probe_read_kernel((inode + k.inode_sb as u64) as *const u64).ok()?;
        let dev: u32 = bpf_probe_read_kernel((sb + k.sb_dev as u64) as *const u32).ok()?;
        Some(OpenFile {
            ptr: file,
            id: FileId {
                dev: dev as u64,
                ino,
            },
        })
    }
}

/// Whether the file's name (its dentry's) is exactly the library's file name.
fn names_library(k: &KernelOffsets, file: u64) -> bool {
    let want = global(&LIBRARY_NAME);
    let n = global(&LIBRARY_NAME_LEN) as usize;
    if n == 0 || n > MAX_LIBRARY_NAME {
        return false;
    }
    let mut buf = [0u8; MAX_LIBRARY_NAME + 1];
    // SAFETY: kernel reads validated by the helpers.
    let name = unsafe {
        let Ok(dentry) = bpf_probe_read_kernel((file + k.file_dentry as u64) as *const u64) else {
            return false;
        };
        let Ok(name) = bpf_probe_read_kernel((dentry + k.dentry_name as u64) as *const u64) else {
            return false;
        };
        match bpf_probe_read_kernel_str_bytes(name as *const u8, &mut buf) {
            Ok(s) => s,
            Err(_) => return false,
        }
    };
    if name.len() != n {
        return false;
    }
    for i in 0..MAX_LIBRARY_NAME {
        if i >= n {
            break;
        }
        if name.get(i) != want.get(i) {
            return false;
        }
    }
    true
}
