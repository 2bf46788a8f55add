//! What the programs need to know about the running kernel and the files it maps: struct
//! member offsets (read by user space from the kernel's BTF, so one object runs on every
//! kernel) and the identity of a library file.

/// Byte offsets of the kernel struct members the programs read. `u32::MAX`: unknown (the
/// program then reports the value as unknown, or skips what needs it).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.exit_code`: the wait status of an exiting process.
    pub task_exit_code: u32,
    /// `task_struct.pid` and `.tgid`: whether a forked task is a new process or a thread.
    pub task_pid: u32,
    pub task_tgid: u32,
    /// `task_struct.files` → `files_struct.fdt` → `fdtable.fd[fd]` → `file.f_inode` →
    /// `inode.i_ino`, `inode.i_sb` → `super_block.s_dev`: the file an fd names.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub file_inode: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub sb_dev: u32,
    /// `file.f_path.dentry` → `dentry.d_name.name`: the file's name (both sums of two
    /// member offsets).
    pub file_dentry: u32,
    pub dentry_name: u32,
}

impl KernelOffsets {
    pub const UNKNOWN: u32 = u32::MAX;
    pub const ALL_UNKNOWN: Self = Self {
        task_exit_code: Self::UNKNOWN,
        task_pid: Self::UNKNOWN,
        task_tgid: Self::UNKNOWN,
        task_files: Self::UNKNOWN,
        files_fdt: Self::UNKNOWN,
        fdt_fd: Self::UNKNOWN,
        file_inode: Self::UNKNOWN,
        inode_ino: Self::UNKNOWN,
        inode_sb: Self::UNKNOWN,
        sb_dev: Self::UNKNOWN,
        file_dentry: Self::UNKNOWN,
        dentry_name: Self::UNKNOWN,
    };

    /// Whether the fd → file identity and name chains are known.
    pub const fn files_known(&self) -> bool {
        self.task_files != Self::UNKNOWN
            && self.files_fdt != Self::UNKNOWN
            && self.fdt_fd != Self::UNKNOWN
            && self.file_inode != Self::UNKNOWN
            && self.inode_ino != Self::UNKNOWN
            && self.inode_sb != Self::UNKNOWN
            && self.sb_dev != Self::UNKNOWN
            && self.file_dentry != Self::UNKNOWN
            && self.dentry_name != Self::UNKNOWN
    }
}

/// A file as the kernel names it: the superblock's device (kernel encoding, `MAJOR << 20 |
/// MINOR`) and the inode number. Uprobes live on inodes, so this is what "armed" means.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// Values of the `LIBRARY_FILES` map: what user space made of a library file.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LibraryState {
    /// Probes are attached: a process opening it needs no stop.
    Armed = 1,
    /// It did not resolve (reported once): never stop a process for it again.
    Refused = 2,
}

/// Longest library file name the programs match (`libtt_metal.so` is 14).
pub const MAX_LIBRARY_NAME: usize = 32;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] integers; any bit pattern is valid.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FileId {}
}
