//! Who a buffer belongs to. tt-metal hands every allocation to a `BankManager`; which chip or
//! mesh that bank serves follows from the context it was built in (a device's own allocator, a
//! mesh's lock-step allocator, a throw-away one), and the objects those contexts name (`Device*`,
//! `MeshDevice*`) are mapped here as they appear. No struct offset is read.

use std::collections::HashMap;

use tracer_common::Origin;

use super::memory::{BufferType, OwnerId};

/// Who a bank's allocations belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    Chip(i64),
    Mesh(u32),
    /// A throw-away allocator (bank tables); never allocates.
    Scratch,
    /// A bank built where no known context said whose it is.
    Unattributed,
}

/// One process's maps from tt-metal's objects to chips, meshes and owners.
#[derive(Debug, Default)]
pub(super) struct Attribution {
    /// Interned owners: a live allocation stores the small index.
    owners: Vec<Owner>,
    /// `BankManager*` → its buffer type and owner.
    banks: HashMap<u64, (BufferType, OwnerId)>,
    /// `Device*` → chip id.
    devices: HashMap<u64, i64>,
    /// `MeshDeviceImpl*` → mesh index.
    mesh_by_impl: HashMap<u64, u32>,
    /// `MeshDevice*` → mesh index.
    mesh_by_device: HashMap<u64, u32>,
    /// Chips opened inside each `MeshDevice::create` call (keyed by its result pointer).
    mesh_opens: HashMap<u64, Vec<i64>>,
}

impl Attribution {
    pub(super) fn owner_id(&mut self, o: Owner) -> OwnerId {
        match self.owners.iter().position(|x| *x == o) {
            Some(i) => i as OwnerId,
            None => {
                self.owners.push(o);
                (self.owners.len() - 1) as OwnerId
            }
        }
    }

    pub(super) fn owner(&self, id: OwnerId) -> Owner {
        self.owners
            .get(id as usize)
            .copied()
            .unwrap_or(Owner::Unattributed)
    }

    /// Every owner id handed out so far.
    pub(super) fn owner_ids(&self) -> impl Iterator<Item = OwnerId> {
        0..self.owners.len() as OwnerId
    }

    pub(super) fn owner_name(&self, id: OwnerId) -> String {
        match self.owner(id) {
            Owner::Chip(c) => format!("chip {c}"),
            Owner::Mesh(m) => format!("mesh {m}"),
            Owner::Scratch => "scratch allocator".into(),
            Owner::Unattributed => "unattributed".into(),
        }
    }

    pub(super) fn device_opened(&mut self, device: u64, chip: i64) {
        self.devices.insert(device, chip);
    }

    /// The chip of a `Device*`, if its constructor was seen.
    pub(super) fn chip_of(&self, device: u64) -> Option<i64> {
        self.devices.get(&device).copied()
    }

    /// A `MeshDevice::create` call (named by its result pointer) began.
    pub(super) fn mesh_open_began(&mut self, call: u64) {
        self.mesh_opens.insert(call, Vec::new());
    }

    /// A chip opened inside the `MeshDevice::create` call `call`.
    pub(super) fn chip_opened_in_mesh(&mut self, call: u64, chip: i64) {
        self.mesh_opens.entry(call).or_default().push(chip);
    }

    /// The chips opened so far inside the `MeshDevice::create` call `call`.
    pub(super) fn chips_opened_in(&self, call: u64) -> Vec<i64> {
        self.mesh_opens.get(&call).cloned().unwrap_or_default()
    }

    /// Mesh `index` has its lock-step allocator built by `mesh_impl` for `mesh_device`.
    pub(super) fn mesh_built(&mut self, index: u32, mesh_impl: u64, mesh_device: u64) {
        self.mesh_by_impl.insert(mesh_impl, index);
        self.mesh_by_device.insert(mesh_device, index);
    }

    /// The mesh index of a `MeshDevice*`.
    pub(super) fn mesh_of_device(&self, mesh_device: u64) -> Option<u32> {
        self.mesh_by_device.get(&mesh_device).copied()
    }

    /// Whose a bank is, from the innermost context of the thread that built it.
    pub(super) fn owner_of_new_bank(&self, origin: Option<Origin>, context_this: u64) -> Owner {
        match origin {
            Some(Origin::DeviceAllocator) => self
                .chip_of(context_this)
                .map_or(Owner::Unattributed, Owner::Chip),
            Some(Origin::MeshAllocator) => self
                .mesh_by_impl
                .get(&context_this)
                .map_or(Owner::Unattributed, |m| Owner::Mesh(*m)),
            Some(Origin::ScratchAllocator) => Owner::Scratch,
            _ => Owner::Unattributed,
        }
    }

    pub(super) fn bank_built(&mut self, bank: u64, buffer_type: BufferType, owner: Owner) {
        let id = self.owner_id(owner);
        self.banks.insert(bank, (buffer_type, id));
    }

    /// A bank's buffer type and owner; a bank never seen built is unattributed, type unknown.
    pub(super) fn bank(&mut self, bank: u64) -> (BufferType, OwnerId) {
        match self.banks.get(&bank) {
            Some(&b) => b,
            None => (BufferType::Other, self.owner_id(Owner::Unattributed)),
        }
    }
}
