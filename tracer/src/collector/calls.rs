//! Typed views of an event's fields: each role's values by name, read once, in one place. Where
//! a value sits in `Event::fields` follows from [`Role::fields`]; asking a role for a field it
//! does not carry is a bug the unit test below catches for every role.

use tracer_common::Event;

use super::memory::BufferType;
use crate::roles::{Field, Role};

/// What a `call` or `call_with_return` role reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Call {
    DeviceOpen {
        device: u64,
        chip: i64,
    },
    KernelBinaryWrite {
        bytes: u64,
        chip: i64,
        address: u64,
    },
    DeviceClose {
        device: u64,
    },
    MeshClose {
        mesh: u64,
    },
    BankNew {
        bank: u64,
        buffer_type: BufferType,
    },
    BankAllocate {
        bank: u64,
        size: u64,
        address: u64,
    },
    BankFree {
        bank: u64,
        address: u64,
    },
    BankFreeAll {
        bank: u64,
    },
    CbAllocate {
        size: u64,
        device: u64,
    },
    CbFreeAll {
        device: u64,
    },
    WorkloadEnqueue,
    /// The running operation's program came from the program cache (true) or was built.
    OpCache {
        hit: bool,
    },
    FirmwareWrite {
        bytes: u64,
        chip: i64,
        core_type: u64,
    },
    /// A context role: its enter and exit are context events, never a call.
    Context,
}

/// The fields of one event, read by name through its role.
struct Fields<'a> {
    role: Role,
    ev: &'a Event,
}

impl Fields<'_> {
    fn get(&self, field: Field) -> u64 {
        match self.role.field_index(field) {
            Some(i) => self.ev.fields[i],
            None => {
                debug_assert!(false, "{:?} carries no {field:?}", self.role);
                0
            }
        }
    }
    /// tt-metal's chip ids are `int`: the register's low 32 bits, sign-extended.
    fn chip(&self) -> i64 {
        self.get(Field::Chip) as u32 as i32 as i64
    }
}

impl Call {
    pub(super) fn decode(role: Role, ev: &Event) -> Call {
        let f = Fields { role, ev };
        match role {
            Role::DeviceOpen => Call::DeviceOpen {
                device: f.get(Field::Device),
                chip: f.chip(),
            },
            Role::KernelBinaryWrite => Call::KernelBinaryWrite {
                bytes: f.get(Field::Bytes),
                chip: f.chip(),
                address: f.get(Field::Address),
            },
            Role::DeviceClose => Call::DeviceClose {
                device: f.get(Field::Device),
            },
            Role::MeshClose => Call::MeshClose {
                mesh: f.get(Field::Mesh),
            },
            Role::BankNew => Call::BankNew {
                bank: f.get(Field::Bank),
                buffer_type: BufferType::from_raw(f.get(Field::BufferType)),
            },
            Role::BankAllocate => Call::BankAllocate {
                bank: f.get(Field::Bank),
                size: f.get(Field::Size),
                address: ev.ret,
            },
            Role::BankFree => Call::BankFree {
                bank: f.get(Field::Bank),
                address: f.get(Field::Address),
            },
            Role::BankFreeAll => Call::BankFreeAll {
                bank: f.get(Field::Bank),
            },
            Role::CbAllocate => Call::CbAllocate {
                size: f.get(Field::Size),
                device: f.get(Field::Device),
            },
            Role::CbFreeAll => Call::CbFreeAll {
                device: f.get(Field::Device),
            },
            Role::WorkloadEnqueue => Call::WorkloadEnqueue,
            Role::OpCacheHit => Call::OpCache { hit: true },
            // A C++ bool: only its low byte is defined in the register.
            Role::OpEnqueue => Call::OpCache {
                hit: f.get(Field::CacheHit) & 0xff != 0,
            },
            Role::FirmwareWrite => Call::FirmwareWrite {
                bytes: f.get(Field::Bytes),
                chip: f.chip(),
                core_type: f.get(Field::CoreType),
            },
            Role::DeviceInit
            | Role::FabricContext
            | Role::DispatchContext
            | Role::ProgramBinaries
            | Role::MeshOpen
            | Role::DeviceAllocator
            | Role::MeshAllocator
            | Role::ScratchAllocator
            | Role::OpLaunch => Call::Context,
        }
    }
}

/// The `MeshDevice*` a mesh-allocator context names.
pub(super) fn mesh_of_allocator(ev: &Event) -> u64 {
    Fields {
        role: Role::MeshAllocator,
        ev,
    }
    .get(Field::Mesh)
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator as _;
    use tracer_common::EventKind;

    use super::*;

    /// Every role decodes, asking only for fields it declares (else the debug assertion fires),
    /// and each value comes from the slot its field name has in `Role::fields`.
    #[test]
    fn every_role_decodes_its_own_fields_from_their_slots() {
        for role in Role::iter() {
            let mut ev = Event::new(EventKind::Call, role as u16, 1, 1, 1, 1);
            ev.fields = [101, 102, 103, 104];
            ev.ret = 999;
            let at = |f: Field| 101 + role.field_index(f).unwrap() as u64;
            let want = match role {
                Role::DeviceOpen => Call::DeviceOpen {
                    device: at(Field::Device),
                    chip: at(Field::Chip) as i64,
                },
                Role::KernelBinaryWrite => Call::KernelBinaryWrite {
                    bytes: at(Field::Bytes),
                    chip: at(Field::Chip) as i64,
                    address: at(Field::Address),
                },
                Role::BankAllocate => Call::BankAllocate {
                    bank: at(Field::Bank),
                    size: at(Field::Size),
                    address: 999,
                },
                Role::CbAllocate => Call::CbAllocate {
                    size: at(Field::Size),
                    device: at(Field::Device),
                },
                Role::FirmwareWrite => Call::FirmwareWrite {
                    bytes: at(Field::Bytes),
                    chip: at(Field::Chip) as i64,
                    core_type: at(Field::CoreType),
                },
                _ => Call::decode(role, &ev),
            };
            assert_eq!(Call::decode(role, &ev), want, "{role:?}");
        }
        let mut ev = Event::new(
            EventKind::ContextEnter,
            Role::MeshAllocator as u16,
            1,
            1,
            1,
            1,
        );
        ev.fields[Role::MeshAllocator.field_index(Field::Mesh).unwrap()] = 0x2222;
        assert_eq!(mesh_of_allocator(&ev), 0x2222);
    }

    #[test]
    fn chip_ids_are_the_low_32_bits_sign_extended() {
        let mut ev = Event::new(EventKind::Call, Role::DeviceOpen as u16, 1, 1, 1, 1);
        ev.fields[1] = 0xdead_beef_0000_0003;
        assert!(matches!(
            Call::decode(Role::DeviceOpen, &ev),
            Call::DeviceOpen { chip: 3, .. }
        ));
        ev.fields[1] = 0xffff_ffff;
        assert!(matches!(
            Call::decode(Role::DeviceOpen, &ev),
            Call::DeviceOpen { chip: -1, .. }
        ));
    }
}
