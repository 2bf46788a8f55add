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
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::DeviceInit,
        Role::FabricContext,
        Role::DispatchContext,
        Role::ProgramBinaries,
        Role::DeviceOpen,
        Role::KernelBinaryWrite,
        Role::DeviceClose,
        Role::MeshClose,
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
            Role::DeviceInit
            | Role::FabricContext
            | Role::DispatchContext
            | Role::ProgramBinaries => &[],
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
