//! ttnn device operations: which one is running on each thread, and what each operation type
//! did (launches, program-cache hits and misses, time, the buffers, circular buffers, kernels
//! and enqueues made while it ran, and what it left allocated).
//!
//! An operation's context is pushed by its `launch<Op>` attach point, whose cookie is the
//! context's `this`; the session tells the collector which operation each cookie is
//! ([`super::Collector::name_operations`]). Operations nest (one may launch another): the
//! innermost one on the thread owns what happens.

use std::{collections::HashMap, num::NonZeroU16, sync::Arc};

use serde::Serialize;

use super::{ledger::Tally, memory::BufferType};

/// An operation type's row in a process's table, as a live allocation keeps it: the index
/// plus one, in 16 bits, so that an allocation stays small (a process has a few hundred
/// operation types at most; past 65,535 its buffers are booked without one).
pub(crate) type OpId = NonZeroU16;

/// An armed `op_launch` attach point's operation, as the session resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpInfo {
    /// Short name (`BinaryNgDeviceOperation`): what ttnn's own graph capture calls it.
    pub name: String,
    /// Full type (`ttnn::operations::binary_ng::BinaryNgDeviceOperation`): short names repeat
    /// across namespaces.
    pub path: String,
    pub cache: CacheProbes,
}

/// Which program-cache signals of the operation are probed in its library.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheProbes {
    /// Its cache-hit handler (out of line).
    pub hit: bool,
    /// Its workload enqueue, which is told whether the program was cached (0.67+).
    pub enqueue: bool,
}

/// What a program-cache look-up of one launch came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    Hit,
    Miss,
}

/// One operation type's row in a process's table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpLedger {
    pub name: Arc<str>,
    pub path: String,
    pub launches: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Launches whose look-up no probe saw (no workload enqueued: an operation that skipped
    /// its launch, or failed; or a release where neither signal is out of line for it).
    pub cache_unknown: u64,
    /// Time inside its launches, summed (ns).
    pub time_ns: u64,
    /// Buffers allocated while it ran, by type.
    pub buffers: std::collections::BTreeMap<BufferType, Tally>,
    pub circular_buffers: Tally,
    /// Kernel binaries written (slow dispatch) or placed (fast dispatch) while it ran.
    pub kernels: Tally,
    pub enqueues: u64,
    /// Its buffers allocated now (at the end: still allocated when the process ended).
    pub live: Tally,
    /// Its buffers released by a device or mesh close rather than freed.
    pub released_at_close: Tally,
    #[serde(skip)]
    cache: CacheProbes,
}

/// A launch in progress on one thread.
#[derive(Clone, Copy, Debug)]
struct Frame {
    /// Index in [`Operations::table`].
    op: usize,
    start_ns: u64,
    outcome: Option<CacheOutcome>,
}

/// Every operation type a process ran, and the launches in progress on its threads.
#[derive(Debug, Default)]
pub struct Operations {
    pub table: Vec<OpLedger>,
    by_path: HashMap<String, usize>,
    running: HashMap<u32, Vec<Frame>>,
}

/// A launch that ended.
pub(super) struct Ended {
    pub name: Arc<str>,
    pub duration_ns: u64,
    pub outcome: Option<CacheOutcome>,
}

impl Operations {
    /// `info`'s launch began on thread `tid`; returns its name.
    pub(super) fn began(&mut self, tid: u32, info: &OpInfo, ts_ns: u64) -> Arc<str> {
        let op = match self.by_path.get(&info.path) {
            Some(&i) => i,
            None => {
                self.table.push(OpLedger {
                    name: info.name.as_str().into(),
                    path: info.path.clone(),
                    cache: info.cache,
                    ..Default::default()
                });
                self.by_path.insert(info.path.clone(), self.table.len() - 1);
                self.table.len() - 1
            }
        };
        self.running.entry(tid).or_default().push(Frame {
            op,
            start_ns: ts_ns,
            outcome: None,
        });
        self.table[op].name.clone()
    }

    /// The innermost launch on `tid` ended (None if none was seen beginning).
    pub(super) fn ended(&mut self, tid: u32, ts_ns: u64) -> Option<Ended> {
        let stack = self.running.get_mut(&tid)?;
        let frame = stack.pop()?;
        if stack.is_empty() {
            self.running.remove(&tid);
        }
        let row = &mut self.table[frame.op];
        let duration_ns = ts_ns.saturating_sub(frame.start_ns);
        row.launches += 1;
        row.time_ns = row.time_ns.saturating_add(duration_ns);
        // Where the hit handler is the only signal (0.62), a launch without it missed.
        let outcome = frame
            .outcome
            .or((row.cache.hit && !row.cache.enqueue).then_some(CacheOutcome::Miss));
        match outcome {
            Some(CacheOutcome::Hit) => row.cache_hits += 1,
            Some(CacheOutcome::Miss) => row.cache_misses += 1,
            None => row.cache_unknown += 1,
        }
        Some(Ended {
            name: row.name.clone(),
            duration_ns,
            outcome,
        })
    }

    /// The innermost launch on `tid` looked its program up: its name, and whether this is the
    /// first word on it (None if no launch runs on `tid`).
    pub(super) fn cache_looked_up(
        &mut self,
        tid: u32,
        outcome: CacheOutcome,
    ) -> Option<(Arc<str>, bool)> {
        let frame = self.running.get_mut(&tid)?.last_mut()?;
        // The hit handler and then the enqueue both tell (0.67+): the first one stands.
        let first = frame.outcome.is_none();
        frame.outcome.get_or_insert(outcome);
        Some((self.table[frame.op].name.clone(), first))
    }

    /// The operation running on `tid`.
    pub(super) fn current(&self, tid: u32) -> Option<OpId> {
        let f = self.running.get(&tid)?.last()?;
        u16::try_from(f.op + 1).ok().and_then(OpId::new)
    }

    pub(super) fn row(&mut self, op: OpId) -> Option<&mut OpLedger> {
        self.table.get_mut(usize::from(op.get()) - 1)
    }

    pub(super) fn name(&self, op: OpId) -> Option<Arc<str>> {
        self.table
            .get(usize::from(op.get()) - 1)
            .map(|r| r.name.clone())
    }

    /// The thread is gone (its process exited): its launches never end.
    pub(super) fn forget_threads(&mut self) {
        self.running.clear();
    }

    /// Launches in progress, all threads together.
    pub fn running(&self) -> usize {
        self.running.values().map(Vec::len).sum()
    }
}
