//! Device-memory books: buffers by type (live, peak, totals), outstanding allocations, and
//! circular buffers. Pure data, fed by the collector.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// tt-metal's `BufferType` (enum class, same values in every release seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BufferType {
    Dram,
    L1,
    SystemMemory,
    L1Small,
    Trace,
    /// A value this build does not know.
    Other,
}

impl BufferType {
    pub(crate) fn from_raw(v: u64) -> BufferType {
        match v {
            0 => BufferType::Dram,
            1 => BufferType::L1,
            2 => BufferType::SystemMemory,
            3 => BufferType::L1Small,
            4 => BufferType::Trace,
            _ => BufferType::Other,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            BufferType::Dram => "DRAM",
            BufferType::L1 => "L1",
            BufferType::SystemMemory => "SYSTEM_MEMORY",
            BufferType::L1Small => "L1_SMALL",
            BufferType::Trace => "TRACE",
            BufferType::Other => "OTHER",
        }
    }
}

/// One buffer type's books.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TypeBooks {
    pub allocs: u64,
    pub alloc_bytes: u64,
    /// Freed one by one (`deallocate_buffer`).
    pub frees: u64,
    pub free_bytes: u64,
    /// Released together by `deallocate_all` (device / mesh close).
    pub cleared: u64,
    pub cleared_bytes: u64,
    pub live: u64,
    pub live_bytes: u64,
    pub peak_bytes: u64,
}

/// A buffer still allocated when its device closed or its process exited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outstanding {
    pub buffer_type: BufferType,
    pub size: u64,
    pub address: u64,
    pub allocated_ns: u64,
    /// How long it had been allocated at the moment it was reported.
    pub age_ns: u64,
    /// The ttnn operation that allocated it (None: none was running, e.g. tensor creation).
    pub op: Option<std::sync::Arc<str>>,
}

/// Books of one allocator owner (a chip's own allocator, or a mesh's lock-step one).
#[derive(Clone, Debug, Default, Serialize)]
pub struct MemoryBooks {
    pub by_type: BTreeMap<BufferType, TypeBooks>,
}

/// Byte totals saturate: sizes come from the traced process's arguments and are not trusted
/// (see `Tally`).
impl MemoryBooks {
    fn books(&mut self, t: BufferType) -> &mut TypeBooks {
        self.by_type.entry(t).or_default()
    }
    pub(crate) fn allocate(&mut self, t: BufferType, size: u64) {
        let b = self.books(t);
        b.allocs += 1;
        b.alloc_bytes = b.alloc_bytes.saturating_add(size);
        b.live += 1;
        b.live_bytes = b.live_bytes.saturating_add(size);
        b.peak_bytes = b.peak_bytes.max(b.live_bytes);
    }
    pub(crate) fn free(&mut self, t: BufferType, size: u64) {
        let b = self.books(t);
        b.frees += 1;
        b.free_bytes = b.free_bytes.saturating_add(size);
        b.live = b.live.saturating_sub(1);
        b.live_bytes = b.live_bytes.saturating_sub(size);
    }
    pub(crate) fn clear(&mut self, t: BufferType, size: u64) {
        let b = self.books(t);
        b.cleared += 1;
        b.cleared_bytes = b.cleared_bytes.saturating_add(size);
        b.live = b.live.saturating_sub(1);
        b.live_bytes = b.live_bytes.saturating_sub(size);
    }
    pub fn is_empty(&self) -> bool {
        self.by_type.values().all(|b| b.allocs == 0)
    }
}

/// Circular buffers of one chip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CircularBuffers {
    pub allocs: u64,
    pub alloc_bytes: u64,
    pub live: u64,
    pub live_bytes: u64,
    pub peak_bytes: u64,
    /// `track_deallocate_cb` calls (each releases all of the chip's CBs).
    pub clears: u64,
}

impl CircularBuffers {
    pub(crate) fn allocate(&mut self, size: u64) {
        self.allocs += 1;
        self.alloc_bytes = self.alloc_bytes.saturating_add(size);
        self.live += 1;
        self.live_bytes = self.live_bytes.saturating_add(size);
        self.peak_bytes = self.peak_bytes.max(self.live_bytes);
    }
    pub(crate) fn clear(&mut self) {
        self.clears += 1;
        self.live = 0;
        self.live_bytes = 0;
    }
}

/// Who an allocator (and so a bank, and so an allocation) serves, as an index into the
/// process's owner table (small, so a live allocation costs few bytes).
pub(crate) type OwnerId = u32;

/// A live allocation. Kept small: the ledger holds one per live buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Allocation {
    pub(crate) size: u64,
    pub(crate) allocated_ns: u64,
    pub(crate) owner: OwnerId,
    pub(crate) buffer_type: BufferType,
    /// A program's kernel binaries (placed inside `program_binaries`): booked as application
    /// kernels, not as an ordinary buffer.
    pub(crate) kernel_binaries: bool,
    /// The operation running when it was allocated (its row in the process's table).
    pub(crate) op: Option<super::operations::OpId>,
}

/// Live allocations keyed by (bank, address): DRAM and L1 addresses overlap.
#[derive(Default, Debug)]
pub(crate) struct LiveAllocations {
    map: HashMap<(u64, u64), Allocation>,
}

impl LiveAllocations {
    pub(crate) fn insert(&mut self, bank: u64, address: u64, a: Allocation) -> Option<Allocation> {
        self.map.insert((bank, address), a)
    }
    pub(crate) fn remove(&mut self, bank: u64, address: u64) -> Option<Allocation> {
        self.map.remove(&(bank, address))
    }
    /// Removes and returns every allocation of `bank`.
    pub(crate) fn drain_bank(&mut self, bank: u64) -> Vec<(u64, Allocation)> {
        let keys: Vec<(u64, u64)> = self
            .map
            .keys()
            .filter(|(b, _)| *b == bank)
            .copied()
            .collect();
        keys.into_iter()
            .filter_map(|k| self.map.remove(&k).map(|a| (k.1, a)))
            .collect()
    }
    /// Live allocations of `owner`, oldest first: ordinary buffers, or (`kernel_binaries`)
    /// programs' binary buffers.
    /// `op_name` names an allocation's operation.
    pub(crate) fn of_owner(
        &self,
        owner: OwnerId,
        now: u64,
        kernel_binaries: bool,
        op_name: &dyn Fn(super::operations::OpId) -> Option<std::sync::Arc<str>>,
    ) -> Vec<Outstanding> {
        let mut v: Vec<Outstanding> = self
            .map
            .iter()
            .filter(|(_, a)| a.owner == owner && a.kernel_binaries == kernel_binaries)
            .map(|((_, addr), a)| Outstanding {
                buffer_type: a.buffer_type,
                size: a.size,
                address: *addr,
                allocated_ns: a.allocated_ns,
                age_ns: now.saturating_sub(a.allocated_ns),
                op: a.op.and_then(op_name),
            })
            .collect();
        v.sort_by_key(|o| (o.allocated_ns, o.address, o.buffer_type));
        v
    }
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
    /// Drops every allocation (process exit), returning how many there were.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.map.len();
        self.map.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_follow_live_bytes() {
        let mut m = MemoryBooks::default();
        m.allocate(BufferType::Dram, 100);
        m.allocate(BufferType::Dram, 50);
        m.free(BufferType::Dram, 100);
        m.allocate(BufferType::Dram, 20);
        let b = m.by_type[&BufferType::Dram];
        assert_eq!(
            (b.allocs, b.frees, b.live, b.live_bytes, b.peak_bytes),
            (3, 1, 2, 70, 150)
        );
        m.clear(BufferType::Dram, 70);
        let b = m.by_type[&BufferType::Dram];
        assert_eq!((b.cleared, b.live, b.live_bytes), (1, 1, 0));
    }

    #[test]
    fn same_address_in_two_banks_is_two_allocations() {
        let mut l = LiveAllocations::default();
        let a = Allocation {
            size: 1,
            allocated_ns: 0,
            owner: 0,
            buffer_type: BufferType::Dram,
            kernel_binaries: false,
            op: None,
        };
        assert!(l.insert(1, 0x1000, a).is_none());
        assert!(l.insert(2, 0x1000, a).is_none());
        assert_eq!(l.len(), 2);
        assert_eq!(l.drain_bank(1).len(), 1);
        assert_eq!(l.len(), 1);
    }
}
