//! Per-CPU counters of everything a probe could not record (index into the `COUNTERS` map).

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "user",
    derive(strum::IntoStaticStr, strum::EnumIter),
    strum(serialize_all = "snake_case")
)]
pub enum Counter {
    /// Payload ring full: an event was dropped.
    PayloadRingFull = 0,
    /// Lifecycle ring full: an event was dropped.
    LifecycleRingFull = 1,
    /// Thread-context map full: a context was not tracked (kernels may be misattributed).
    ContextMapFull = 2,
    /// Context stack deeper than supported: a context was not pushed.
    ContextTooDeep = 3,
    /// Pending-call map full: a call's return could not be matched with its entry.
    PendingMapFull = 4,
    /// A return fired without a recorded entry (entry missed or dropped).
    ReturnWithoutEntry = 5,
    /// Process map full: a process is traced but its exit will not be reported.
    ProcessMapFull = 6,
    /// Reading user memory for a field failed (field reported as 0).
    FieldReadFailed = 7,
    /// A process that opened a new library could not be stopped while it was armed: its
    /// first calls into it may be missed.
    LibraryStopFailed = 8,
}

impl Counter {
    /// Number of counters (the `COUNTERS` map's size).
    pub const COUNT: u32 = 9;
}
