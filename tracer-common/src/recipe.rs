//! Attach-point recipes: how a generic probe turns registers into event fields.
//!
//! User space resolves each catalog role in the library, derives from the demangled parameter
//! list which register holds which field, and writes one [`Recipe`] per attach point into the
//! `RECIPES` array. The attach cookie is the recipe's index, so one pair of BPF programs serves
//! every role and every tt-metal version.

/// Most attach points a single tracer instance configures.
pub const MAX_RECIPES: u32 = 16384;
/// [`Recipe::context_arg`] value for a context named by its attach point rather than by an
/// argument: the context's `this` is the attach cookie (a ttnn operation: one attach point per
/// operation type, so the cookie says which operation runs).
pub const CONTEXT_NAMED_BY_COOKIE: u8 = 0xff;
/// Most fields a recipe reads per call.
pub const MAX_FIELDS: usize = 4;

/// What the entry / return programs do at an attach point.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "user",
    derive(serde::Serialize, serde::Deserialize, strum::Display),
    serde(rename_all = "snake_case"),
    strum(serialize_all = "snake_case")
)]
pub enum RecipeKind {
    /// Unused slot.
    None = 0,
    /// Entry pushes an origin context on the thread's stack, return pops it; both emit.
    Context = 1,
    /// Entry reads the fields and emits one event (no return probe).
    Call = 2,
    /// Entry reads the fields and keeps them; return adds the return value and emits.
    CallWithReturn = 3,
}

/// Which ring buffer the recipe's events go to.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "user",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Ring {
    /// Frequent events (kernel binaries, allocations), woken in batches.
    Payload = 0,
    /// Rare events that must never be crowded out (device open/close, process exit).
    Lifecycle = 1,
}

/// How one field is read.
/// (The catalog spells them `reg`, `u64`, `u32`, `vec_bytes`.)
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "user",
    derive(serde::Serialize, serde::Deserialize, strum::Display),
    serde(rename_all = "snake_case"),
    strum(serialize_all = "snake_case")
)]
pub enum FieldOp {
    /// Field not used.
    None = 0,
    /// The argument register itself.
    Reg = 1,
    /// A u64 read from user memory at `arg + offset`.
    #[cfg_attr(feature = "user", serde(rename = "u64"), strum(serialize = "u64"))]
    Load64 = 2,
    /// A u32 read from user memory at `arg + offset`.
    #[cfg_attr(feature = "user", serde(rename = "u32"), strum(serialize = "u32"))]
    Load32 = 3,
    /// Length in bytes of a `std::vector` whose begin/end pointers sit at `arg + offset`
    /// and `arg + offset + 8` (libstdc++ layout).
    VecBytes = 4,
}

/// One field: an operation on one System V argument register (0 = rdi … 5 = r9).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldRule {
    pub op: u8,
    pub arg: u8,
    pub _pad: [u8; 2],
    pub offset: u32,
}

impl FieldRule {
    pub const NONE: Self = Self {
        op: FieldOp::None as u8,
        arg: 0,
        _pad: [0; 2],
        offset: 0,
    };
}

/// What the probes do at one attach point.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipe {
    /// Catalog role id, copied into every event so user space knows what was called.
    pub role: u16,
    /// [`RecipeKind`].
    pub kind: u8,
    /// [`Ring`].
    pub ring: u8,
    /// For [`RecipeKind::Context`]: the [`crate::Origin`] pushed while the function runs.
    pub origin: u8,
    /// For [`RecipeKind::Context`]: the argument register naming the context: `this` (after a
    /// hidden result pointer, if any), else the first argument; or
    /// [`CONTEXT_NAMED_BY_COOKIE`].
    pub context_arg: u8,
    /// Library the attach point is in (1-based id kept by user space), copied into events.
    pub library: u16,
    /// 1 + the index of the last field with an operation (0: none): the probe reads only
    /// these rules, so a role with one field pays for one. Set by [`Recipe::count_fields`].
    pub used_fields: u8,
    pub _pad: [u8; 3],
    pub fields: [FieldRule; MAX_FIELDS],
}

impl Recipe {
    pub const EMPTY: Self = Self {
        role: 0,
        kind: RecipeKind::None as u8,
        ring: Ring::Payload as u8,
        origin: 0,
        context_arg: 0,
        library: 0,
        used_fields: 0,
        _pad: [0; 3],
        fields: [FieldRule::NONE; MAX_FIELDS],
    };

    /// Sets [`Recipe::used_fields`] from [`Recipe::fields`] (once per attach point, so the
    /// probe does not look at unused rules on every call).
    pub fn count_fields(&mut self) {
        self.used_fields = self
            .fields
            .iter()
            .rposition(|f| f.op != FieldOp::None as u8)
            .map_or(0, |i| i as u8 + 1);
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] data without padding holes that matter; any bit pattern is valid.
    unsafe impl aya::Pod for super::Recipe {}
}
