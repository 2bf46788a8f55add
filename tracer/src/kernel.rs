//! Facts about the running kernel the probes need: privileges, task_struct layout (from BTF),
//! the monotonic clock the probes timestamp with.

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

/// Byte offset of `task_struct.exit_code` in the running kernel, from /sys/kernel/btf/vmlinux.
pub(crate) fn task_exit_code_offset() -> Option<u32> {
    const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
    // Mapped and read lazily where the kernel allows (6.16+): parsing all of it costs ~0.2 s.
    let btf = btf_rs::Btf::from_file_with_backend(VMLINUX, btf_rs::Backend::Mmap)
        .or_else(|_| btf_rs::Btf::from_file(VMLINUX))
        .ok()?;
    for ty in btf.resolve_types_by_name("task_struct").ok()? {
        if let btf_rs::Type::Struct(s) = ty {
            for m in &s.members {
                let name = btf.resolve_name(m).ok();
                if name.as_deref() == Some("exit_code") && m.bit_offset() % 8 == 0 {
                    return Some(m.bit_offset() / 8);
                }
            }
        }
    }
    None
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
    fn exit_code_offset_is_found_in_this_kernels_btf() {
        // Every kernel this tracer supports has BTF; the offset is inside task_struct.
        let off = super::task_exit_code_offset().expect("task_struct.exit_code in BTF");
        assert!(off > 0 && off < 16384, "{off}");
    }
}
