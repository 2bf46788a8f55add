//! The one event record every probe writes, on either ring buffer.

/// The origin of a kernel binary: the innermost context active on the loading thread.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "user",
    derive(serde::Serialize, serde::Deserialize, strum::FromRepr),
    serde(rename_all = "snake_case")
)]
pub enum Origin {
    /// No context active: user code loading its own kernels.
    Application = 0,
    /// Inside `Device::configure_fabric`: fabric (system) kernels.
    Fabric = 1,
    /// Inside `Device::configure_command_queue_programs`: dispatch (system) kernels.
    Dispatch = 2,
    /// Inside a program's kernel-binary upload: application kernels.
    Program = 3,
    /// Inside device initialisation but outside fabric/dispatch (firmware).
    DeviceInit = 4,
    /// Inside a mesh's creation (its devices are opened in here).
    MeshOpen = 5,
    /// Inside a device's own allocator set-up (banks built here belong to that chip).
    DeviceAllocator = 6,
    /// Inside a mesh's allocator set-up (banks built here belong to the mesh, lock-step).
    MeshAllocator = 7,
    /// Inside a throw-away allocator used only to compute bank tables.
    ScratchAllocator = 8,
    /// Inside a ttnn device operation's launch (its outputs are allocated in there): the
    /// context's `this` is the attach cookie, which names the operation.
    Op = 9,
}

/// What an event reports.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(strum::FromRepr))]
pub enum EventKind {
    /// A [`crate::RecipeKind::Call`] or `CallWithReturn` attach point was called.
    Call = 0,
    /// A context function was entered.
    ContextEnter = 1,
    /// A context function returned.
    ContextExit = 2,
    /// A traced process's last thread exited (`sched_process_exit`, group dead).
    ProcessExit = 3,
    /// A process is mapping a file named like the tt-metal library for execution, and the file
    /// has no probes yet (`fields`: [fd, device, inode, 0]); the process is stopped until user
    /// space arms it.
    LibraryOpened = 4,
}

/// One probe hit ([`Event::SIZE`] bytes on the ring buffers).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at the probe.
    pub ts_ns: u64,
    /// When the tracer first saw this process (CLOCK_MONOTONIC ns): with `tgid`, names one
    /// process instance, so a reused pid is never merged with its predecessor.
    pub instance: u64,
    pub tgid: u32,
    pub tid: u32,
    /// Catalog role id (0 for [`EventKind::ProcessExit`]).
    pub role: u16,
    /// [`EventKind`].
    pub kind: u8,
    /// [`Origin`] of the innermost context on the thread (for contexts: the one entered/left).
    pub origin: u8,
    /// Number of contexts active on the thread, after an enter / before an exit.
    pub depth: u8,
    /// For context events: [`Origin`] of the enclosing context (0 if none).
    pub parent_origin: u8,
    /// Which library's attach point fired (the recipe's library id, 1-based; 0: none, e.g.
    /// a process exit). User space keeps the table of ids.
    pub library: u16,
    /// `this` of the innermost context (e.g. the `Device*` being configured), 0 if none.
    pub context_this: u64,
    /// For context events: `this` of the enclosing context, 0 if none.
    pub parent_this: u64,
    /// Fields read as the recipe says (also for context enters); for ProcessExit:
    /// [exit status, comm bytes 0-7, comm bytes 8-15 (NUL-padded), cgroup v2 id].
    pub fields: [u64; crate::MAX_FIELDS],
    /// Return value for `CallWithReturn`, else 0.
    pub ret: u64,
}

// The ring-buffer record is this struct's bytes: its size is part of the ABI.
const _: () = assert!(core::mem::size_of::<Event>() == Event::SIZE);

impl Event {
    /// Bytes of one event on a ring buffer.
    pub const SIZE: usize = 88;

    /// A `kind` event of thread `tid` of process (`tgid`, `instance`) at `ts_ns`, about catalog
    /// role `role`; every other field zero, for the probe (or a test) to fill in.
    pub const fn new(
        kind: EventKind,
        role: u16,
        ts_ns: u64,
        instance: u64,
        tgid: u32,
        tid: u32,
    ) -> Event {
        Event {
            ts_ns,
            instance,
            tgid,
            tid,
            role,
            kind: kind as u8,
            origin: 0,
            depth: 0,
            parent_origin: 0,
            library: 0,
            context_this: 0,
            parent_this: 0,
            fields: [0; crate::MAX_FIELDS],
            ret: 0,
        }
    }
}

impl Event {
    /// Decodes one ring-buffer record: `None` if it is shorter than an [`Event`]; bytes past
    /// the event are ignored. Any bit pattern of the right length is an event (enum-like fields
    /// are raw integers, checked where they are used), so nothing else is validated here.
    pub fn from_bytes(bytes: &[u8]) -> Option<Event> {
        if bytes.len() < Self::SIZE {
            return None;
        }
        // SAFETY: the length is checked above, so the read stays inside `bytes`; `Event` is
        // `#[repr(C)]` plain integers without implicit padding, valid for every bit pattern;
        // `read_unaligned` makes no alignment demand on the ring buffer's bytes.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) })
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] integers; any bit pattern is valid.
    unsafe impl aya::Pod for super::Event {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_bytes_checks_the_length_and_ignores_alignment() {
        assert_eq!(Event::SIZE, 88);
        let mut buf = [0u8; Event::SIZE + 1];
        buf[1..9].copy_from_slice(&7u64.to_ne_bytes());
        buf[1 + 16..1 + 20].copy_from_slice(&42u32.to_ne_bytes());
        // Deliberately misaligned by one byte.
        let ev = Event::from_bytes(&buf[1..]).unwrap();
        assert_eq!((ev.ts_ns, ev.tgid), (7, 42));
        assert!(Event::from_bytes(&buf[1..Event::SIZE]).is_none());
        assert!(Event::from_bytes(&[]).is_none());
        // Longer records decode their first 88 bytes.
        let first = u64::from_ne_bytes(buf[..8].try_into().unwrap());
        assert_eq!(Event::from_bytes(&buf[..]).map(|e| e.ts_ns), Some(first));
    }
}
