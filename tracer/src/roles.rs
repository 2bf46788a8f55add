//! The roles the collector understands. Which function plays a role in a given tt-metal release,
//! and where its arguments are, is data (catalog/tt-metal.toml); what a role *means* is here.

use serde::Serialize;

/// A role, as carried in every event (`Event::role`).
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    DeviceInit = 1,
    FabricContext = 2,
    DispatchContext = 3,
    ProgramBinaries = 4,
    DeviceOpen = 5,
    KernelBinaryWrite = 6,
    DeviceClose = 7,
    MeshClose = 8,
    MeshOpen = 9,
    DeviceAllocator = 10,
    MeshAllocator = 11,
    ScratchAllocator = 12,
    BankNew = 13,
    BankAllocate = 14,
    BankFree = 15,
    BankFreeAll = 16,
    CbAllocate = 17,
    CbFreeAll = 18,
    WorkloadEnqueue = 19,
}

impl Role {
    pub const ALL: [Role; 19] = [
        Role::DeviceInit,
        Role::FabricContext,
        Role::DispatchContext,
        Role::ProgramBinaries,
        Role::DeviceOpen,
        Role::KernelBinaryWrite,
        Role::DeviceClose,
        Role::MeshClose,
        Role::MeshOpen,
        Role::DeviceAllocator,
        Role::MeshAllocator,
        Role::ScratchAllocator,
        Role::BankNew,
        Role::BankAllocate,
        Role::BankFree,
        Role::BankFreeAll,
        Role::CbAllocate,
        Role::CbFreeAll,
        Role::WorkloadEnqueue,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Role::DeviceInit => "device_init",
            Role::FabricContext => "fabric_context",
            Role::DispatchContext => "dispatch_context",
            Role::ProgramBinaries => "program_binaries",
            Role::DeviceOpen => "device_open",
            Role::KernelBinaryWrite => "kernel_binary_write",
            Role::DeviceClose => "device_close",
            Role::MeshClose => "mesh_close",
            Role::MeshOpen => "mesh_open",
            Role::DeviceAllocator => "device_allocator",
            Role::MeshAllocator => "mesh_allocator",
            Role::ScratchAllocator => "scratch_allocator",
            Role::BankNew => "bank_new",
            Role::BankAllocate => "bank_allocate",
            Role::BankFree => "bank_free",
            Role::BankFreeAll => "bank_free_all",
            Role::CbAllocate => "cb_allocate",
            Role::CbFreeAll => "cb_free_all",
            Role::WorkloadEnqueue => "workload_enqueue",
        }
    }

    pub fn from_id(id: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.id() == id)
    }

    pub fn from_u16(v: u16) -> Option<Role> {
        Role::ALL.into_iter().find(|r| *r as u16 == v)
    }

    /// The fields the collector reads, in the order they sit in `Event::fields`.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Role::DeviceOpen => &["device", "chip"],
            Role::KernelBinaryWrite => &["bytes", "chip", "address"],
            Role::DeviceClose => &["device"],
            Role::MeshClose => &["mesh"],
            Role::MeshAllocator => &["mesh"],
            Role::BankNew => &["bank", "buffer_type"],
            Role::BankAllocate => &["bank", "size"],
            Role::BankFree => &["bank", "address"],
            Role::BankFreeAll => &["bank"],
            Role::CbAllocate => &["address", "size", "device"],
            Role::CbFreeAll => &["device"],
            Role::WorkloadEnqueue => &["queue"],
            Role::DeviceInit
            | Role::FabricContext
            | Role::DispatchContext
            | Role::ProgramBinaries
            | Role::MeshOpen
            | Role::DeviceAllocator
            | Role::ScratchAllocator => &[],
        }
    }

    /// The return value a `call_with_return` role reads, if any.
    pub fn return_value(self) -> Option<&'static str> {
        match self {
            Role::BankAllocate => Some("address"),
            _ => None,
        }
    }

    /// Index of `field` in `Event::fields`.
    pub fn field_index(self, field: &str) -> Option<usize> {
        self.fields().iter().position(|f| *f == field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_distinct() {
        for r in Role::ALL {
            assert_eq!(Role::from_id(r.id()), Some(r));
            assert_eq!(Role::from_u16(r as u16), Some(r));
            assert!(r.fields().len() <= tracer_common::MAX_FIELDS);
        }
        assert_eq!(Role::from_u16(0), None);
        assert_eq!(Role::from_id("nope"), None);
    }
}
