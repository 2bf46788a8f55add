//! The roles the collector understands. Which function plays a role in a given tt-metal release,
//! and where its arguments are, is data (catalog/tt-metal.toml); what a role *means*, and which
//! fields its events carry, is here.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumIter, EnumString, FromRepr, IntoStaticStr};

/// A role, as carried in every event (`Event::role`). The catalog and the reports spell it in
/// snake_case (`fabric_context`).
#[repr(u16)]
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    Display,
    IntoStaticStr,
    EnumString,
    EnumIter,
    FromRepr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    FirmwareWrite = 20,
    /// A ttnn device operation runs (`launch<Op>`): a context named by its attach point.
    OpLaunch = 21,
    /// The running operation found its program in the program cache.
    OpCacheHit = 22,
    /// The running operation enqueues its workload, saying whether its program came from the
    /// program cache.
    OpEnqueue = 23,
}

/// A value a probe reads for the collector. The catalog names each in a role's `fields`; its
/// place in `Event::fields` is its index in [`Role::fields`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Display, IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Field {
    /// A `Device*` (or `IDevice const*`).
    Device,
    /// A chip id (`int`).
    Chip,
    /// A kernel binary's size in bytes.
    Bytes,
    /// A device address.
    Address,
    /// A `MeshDevice*`.
    Mesh,
    /// A `BankManager*`.
    Bank,
    /// A `BufferType` value.
    BufferType,
    /// A buffer's size in bytes.
    Size,
    /// A command queue.
    Queue,
    /// A programmable core type index (tt-metal's `HalProgrammableCoreType`).
    CoreType,
    /// A `bool`: the program was found in the program cache.
    CacheHit,
}

impl Role {
    /// How the catalog and the reports spell it.
    pub fn id(self) -> &'static str {
        self.into()
    }

    /// The role the catalog spells `id`.
    pub fn from_id(id: &str) -> Option<Role> {
        id.parse().ok()
    }

    /// The fields the collector reads, in the order they sit in `Event::fields`.
    pub fn fields(self) -> &'static [Field] {
        use Field::*;
        match self {
            Role::DeviceOpen => &[Device, Chip],
            Role::KernelBinaryWrite => &[Bytes, Chip, Address],
            Role::DeviceClose => &[Device],
            Role::MeshClose => &[Mesh],
            Role::MeshAllocator => &[Mesh],
            Role::BankNew => &[Bank, BufferType],
            Role::BankAllocate => &[Bank, Size],
            Role::BankFree => &[Bank, Address],
            Role::BankFreeAll => &[Bank],
            Role::CbAllocate => &[Address, Size, Device],
            Role::CbFreeAll => &[Device],
            Role::WorkloadEnqueue => &[Queue],
            Role::FirmwareWrite => &[Bytes, Chip, CoreType],
            Role::DeviceInit
            | Role::FabricContext
            | Role::DispatchContext
            | Role::ProgramBinaries
            | Role::MeshOpen
            | Role::DeviceAllocator
            | Role::ScratchAllocator
            | Role::OpLaunch
            | Role::OpCacheHit => &[],
            Role::OpEnqueue => &[CacheHit],
        }
    }

    /// The return value a `call_with_return` role reads, if any.
    pub fn return_value(self) -> Option<Field> {
        match self {
            Role::BankAllocate => Some(Field::Address),
            _ => None,
        }
    }

    /// Index of `field` in `Event::fields`.
    pub fn field_index(self, field: Field) -> Option<usize> {
        self.fields().iter().position(|f| *f == field)
    }
}

impl Field {
    /// How the catalog spells it.
    pub fn id(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator as _;

    use super::*;

    #[test]
    fn ids_round_trip_and_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Role::iter() {
            let id = serde_json::to_value(r).unwrap();
            assert_eq!(id, r.id(), "serde and strum spell it alike");
            assert_eq!(serde_json::from_value::<Role>(id).unwrap(), r);
            assert_eq!(Role::from_repr(r as u16), Some(r));
            assert!(seen.insert(r.id()));
            assert!(r.fields().len() <= tracer_common::MAX_FIELDS);
        }
        assert_eq!(Role::from_repr(0), None);
        assert!(serde_json::from_str::<Role>("\"nope\"").is_err());
    }
}
