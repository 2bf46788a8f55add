//! Facts about the running kernel the probes need: privileges, task_struct layout (from BTF),
//! the monotonic clock the probes timestamp with.

use tracer_common::KernelOffsets;

use crate::errors::{Error, Result};

const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const CAP_SYS_ADMIN: u32 = 21;

/// Effective capabilities of this process, from /proc/self/status.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Fails with a one-line explanation unless this process may load and attach the probes.
pub fn check_privileges() -> Result<()> {
    let caps = effective_caps();
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(Error::NotPrivileged)
    }
}

/// The kernel struct offsets the programs need, from /sys/kernel/btf/vmlinux; a member
/// not found stays unknown (its feature then degrades: exit codes unknown, no fork following,
/// no library discovery), and says so in the log.
pub(crate) fn kernel_offsets() -> KernelOffsets {
    const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
    let mut k = KernelOffsets::ALL_UNKNOWN;
    // Mapped and read lazily where the kernel allows (6.16+): parsing all of it costs ~0.2 s.
    let Ok(btf) = btf_rs::Btf::from_file_with_backend(VMLINUX, btf_rs::Backend::Mmap)
        .or_else(|_| btf_rs::Btf::from_file(VMLINUX))
    else {
        log::warn!("no kernel BTF at {VMLINUX}");
        return k;
    };
    let slots: [(&mut u32, &str, &str); 10] = [
        (&mut k.task_exit_code, "task_struct", "exit_code"),
        (&mut k.task_pid, "task_struct", "pid"),
        (&mut k.task_tgid, "task_struct", "tgid"),
        (&mut k.task_files, "task_struct", "files"),
        (&mut k.files_fdt, "files_struct", "fdt"),
        (&mut k.fdt_fd, "fdtable", "fd"),
        (&mut k.file_inode, "file", "f_inode"),
        (&mut k.inode_ino, "inode", "i_ino"),
        (&mut k.inode_sb, "inode", "i_sb"),
        (&mut k.sb_dev, "super_block", "s_dev"),
    ];
    for (slot, ty, member) in slots {
        match member_offset(&btf, ty, member) {
            Some(off) => *slot = off,
            None => log::warn!("{ty}.{member} not found in the kernel's BTF"),
        }
    }
    let sum = |a: (&str, &str), b: (&str, &str)| {
        let off = member_offset(&btf, a.0, a.1)?.checked_add(member_offset(&btf, b.0, b.1)?);
        if off.is_none() {
            log::warn!("{}.{}.{} not found in the kernel's BTF", a.0, a.1, b.1);
        }
        off
    };
    if let Some(off) = sum(("file", "f_path"), ("path", "dentry")) {
        k.file_dentry = off;
    }
    if let Some(off) = sum(("dentry", "d_name"), ("qstr", "name")) {
        k.dentry_name = off;
    }
    k
}

/// Byte offset of `member` in struct `ty`, looking inside anonymous structs and unions.
fn member_offset(btf: &btf_rs::Btf, ty: &str, member: &str) -> Option<u32> {
    btf.resolve_types_by_name(ty)
        .ok()?
        .iter()
        .find_map(|t| match t {
            btf_rs::Type::Struct(s) => find_member(btf, s, member, 0),
            _ => None,
        })
}

fn find_member(btf: &btf_rs::Btf, s: &btf_rs::Struct, member: &str, base: u32) -> Option<u32> {
    for m in &s.members {
        let bits = base + m.bit_offset();
        match btf.resolve_name(m).ok().as_deref() {
            Some(name) if name == member => return bits.is_multiple_of(8).then_some(bits / 8),
            Some("") | None => {
                if let Ok(btf_rs::Type::Struct(inner) | btf_rs::Type::Union(inner)) =
                    btf.resolve_chained_type(m)
                {
                    if let Some(off) = find_member(btf, &inner, member, bits) {
                        return Some(off);
                    }
                }
            }
            Some(_) => {}
        }
    }
    None
}

/// Mounts tracefs at /sys/kernel/tracing if no tracefs is mounted (the syscall tracepoints
/// are found there); a host without it mounted is common in containers and minimal images.
pub(crate) fn ensure_tracefs() -> Result<()> {
    const MOUNTED: [&str; 2] = [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ];
    if MOUNTED.iter().any(|p| std::path::Path::new(p).is_dir()) {
        return Ok(());
    }
    nix::mount::mount(
        Some("tracefs"),
        "/sys/kernel/tracing",
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| Error::Other(format!("mounting tracefs at /sys/kernel/tracing: {e}")))
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    // CLOCK_MONOTONIC cannot fail on Linux.
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_offset_is_found_in_this_kernels_btf() {
        // Every kernel this tracer supports has BTF; each offset lies inside its struct.
        let k = super::kernel_offsets();
        assert!(k.files_known(), "{k:?}");
        for off in [k.task_exit_code, k.task_pid, k.task_tgid, k.task_files] {
            assert!(off > 0 && off < 16384, "{k:?}");
        }
        assert!(
            k.task_pid + 4 == k.task_tgid,
            "pid and tgid are adjacent: {k:?}"
        );
    }
}
