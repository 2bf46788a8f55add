//! `tt-tracer top`'s view: the [`LiveState`] the records build, as a table of one row per
//! process × chip, sorted as the user chose; the keys that change it; and the drawing
//! ([`render`]). No terminal I/O here: the subcommand owns the terminal.

mod render;

use std::{
    cell::RefCell,
    collections::BTreeMap,
    rc::Rc,
    time::{Duration, Instant},
};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
pub use render::{bytes, cells, draw, state_text};
use tokio::sync::Notify;

use super::{
    live::{LiveState, ProcessLive},
    Sink,
};
use crate::{
    collector::{ledger::Tally, memory::BufferType, ExitStatus, Record},
    report::Report,
};

/// How long an exited process's rows stay unless told otherwise.
pub const DEFAULT_KEEP_EXITED: Duration = Duration::from_secs(300);

/// The buffer types with a column of their own, in column order.
pub const BUFFER_COLUMNS: [BufferType; 4] = [
    BufferType::Dram,
    BufferType::L1,
    BufferType::L1Small,
    BufferType::Trace,
];

/// The column rows are sorted by; `s` moves to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
pub enum SortBy {
    #[strum(serialize = "PID")]
    Pid,
    #[strum(serialize = "DRAM")]
    Dram,
    #[strum(serialize = "L1")]
    L1,
    #[strum(serialize = "L1_SMALL")]
    L1Small,
    #[strum(serialize = "TRACE")]
    Trace,
    #[strum(serialize = "CB")]
    Cb,
    #[strum(serialize = "KERNELS")]
    Kernels,
    #[strum(serialize = "COMMAND")]
    Command,
}

impl SortBy {
    fn next(self) -> SortBy {
        use strum::IntoEnumIterator as _;
        let all: Vec<SortBy> = SortBy::iter().collect();
        let i = all.iter().position(|s| *s == self).unwrap_or(0);
        all[(i + 1) % all.len()]
    }

    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Figures sort largest first; pid and command in ascending order.
    fn descending(self) -> bool {
        !matches!(self, SortBy::Pid | SortBy::Command)
    }
}

/// What a process is doing, as a row shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Exited {
        status: ExitStatus,
        /// Buffers this row's chip still held at the exit, and their bytes.
        left_buffers: u64,
        left_bytes: u64,
    },
}

/// One row: a process on one chip (`chip` None: a process with no chip yet, or buffers no
/// chip can be named for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub pid: u32,
    pub command: String,
    pub chip: Option<i64>,
    /// The process has chips, and this row holds what none of them can be named for.
    pub unattributed: bool,
    /// Per [`BUFFER_COLUMNS`] type: (live bytes, peak bytes).
    pub buffers: [(u64, u64); 4],
    /// Circular buffers: (live bytes, peak bytes).
    pub circular_buffers: (u64, u64),
    pub system_kernels: Tally,
    pub application_kernels: Tally,
    /// The ttnn operation running now, else the bring-up phase (context) active on the
    /// process, else None.
    pub now: Option<String>,
    pub state: State,
}

/// The rows of one process.
fn rows_of(p: &ProcessLive) -> Vec<Row> {
    let command = p.comm.clone().unwrap_or_default();
    let state = |left_buffers, left_bytes| match &p.exited {
        None => State::Running,
        Some(e) => State::Exited {
            status: e.status,
            left_buffers,
            left_bytes,
        },
    };
    let now = |chip: Option<i64>| {
        p.operation.clone().or_else(|| {
            p.context_on(chip).map(|c| match c.chip {
                Some(n) if chip.is_none() => format!("{} (chip {n})", c.role),
                _ => c.role.to_string(),
            })
        })
    };
    if p.chips.is_empty() {
        return vec![Row {
            pid: p.pid,
            command,
            chip: None,
            unattributed: false,
            buffers: [(0, 0); 4],
            circular_buffers: (0, 0),
            system_kernels: Tally::default(),
            application_kernels: Tally::default(),
            now: now(None),
            state: match &p.exited {
                None => State::Running,
                Some(e) => State::Exited {
                    status: e.status,
                    left_buffers: e.leaked_buffers,
                    left_bytes: e.leaked_bytes,
                },
            },
        }];
    }
    let has_chips = p.chips.keys().any(Option::is_some);
    p.chips
        .iter()
        .map(|(chip, c)| Row {
            pid: p.pid,
            command: command.clone(),
            chip: *chip,
            unattributed: chip.is_none() && has_chips,
            buffers: BUFFER_COLUMNS.map(|t| (c.live(t), c.peak(t))),
            circular_buffers: (c.circular_buffers.bytes, c.circular_buffers.peak),
            system_kernels: c.system_kernels,
            application_kernels: c.application_kernels,
            now: now(*chip),
            state: state(c.left.count, c.left.bytes),
        })
        .collect()
}

/// A key's effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// The view changed: draw it again.
    Redraw,
    Nothing,
}

/// Everything the view shows, fed by the records (through [`TopSink`]) and the keys.
#[derive(Debug)]
pub struct TopState {
    pub live: LiveState,
    /// When each exited process's exit was seen; its rows go `keep_exited` after.
    ended: BTreeMap<u32, Instant>,
    pub keep_exited: Duration,
    pub sort: SortBy,
    /// Reverse the sort column's natural order.
    pub reverse: bool,
    /// Exact byte counts instead of KiB / MiB / GiB.
    pub exact: bool,
    /// First row shown (scrolling).
    pub offset: usize,
    /// Something changed since the last draw.
    pub dirty: bool,
    /// The reader's figures: events applied, events lost (all counters).
    pub events: u64,
    pub lost: u64,
    /// The library name watched for (shown in the title).
    pub library: String,
    /// Show only processes whose command name contains this.
    pub filter: Option<String>,
}

impl TopState {
    pub fn new(library: &str) -> TopState {
        TopState {
            live: LiveState::new(),
            ended: BTreeMap::new(),
            keep_exited: DEFAULT_KEEP_EXITED,
            sort: SortBy::Pid,
            reverse: false,
            exact: false,
            offset: 0,
            dirty: true,
            events: 0,
            lost: 0,
            library: library.to_string(),
            filter: None,
        }
    }

    /// One record, seen at `now`.
    pub fn record(&mut self, r: &Record, now: Instant) {
        if let Some(pid) = self.live.starts_over(r) {
            self.ended.remove(&pid);
        }
        if let Record::ProcessExited(c) = r {
            self.ended.insert(c.pid, now);
        }
        let pid = self.live.apply(r);
        // A change to a row not shown only matters to the title's counts.
        let shown = match (&self.filter, pid.and_then(|p| self.live.process(p))) {
            (Some(f), Some(p)) => p.comm.as_deref().is_some_and(|c| c.contains(f.as_str())),
            _ => true,
        };
        if shown
            || matches!(
                r,
                Record::ProcessStarted { .. }
                    | Record::ProcessExited(_)
                    | Record::LibraryTraced { .. }
                    | Record::LibraryRefused { .. }
            )
        {
            self.dirty = true;
        }
    }

    /// The reader's health figures (absolute).
    pub fn health(&mut self, counters: &BTreeMap<&str, u64>, events: u64) {
        let lost = counters.values().fold(0u64, |s, v| s.saturating_add(*v));
        if (events, lost) != (self.events, self.lost) {
            self.events = events;
            self.lost = lost;
            self.dirty = true;
        }
    }

    /// Removes the rows of processes that exited `keep_exited` before `now`.
    pub fn expire(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .ended
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= self.keep_exited)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in due {
            self.ended.remove(&pid);
            self.live.remove(pid);
            self.dirty = true;
        }
    }

    /// When the next exited process's rows are due to go.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.ended.values().min().map(|t| *t + self.keep_exited)
    }

    /// Every row, in the chosen order (ties: pid, then chip).
    pub fn rows(&self) -> Vec<Row> {
        let shown = |p: &&ProcessLive| match &self.filter {
            Some(f) => p.comm.as_deref().is_some_and(|c| c.contains(f.as_str())),
            None => true,
        };
        let mut rows: Vec<Row> = self
            .live
            .processes()
            .filter(shown)
            .flat_map(rows_of)
            .collect();
        let key = |r: &Row| -> u64 {
            match self.sort {
                SortBy::Pid | SortBy::Command => 0,
                SortBy::Dram => r.buffers[0].0,
                SortBy::L1 => r.buffers[1].0,
                SortBy::L1Small => r.buffers[2].0,
                SortBy::Trace => r.buffers[3].0,
                SortBy::Cb => r.circular_buffers.0,
                SortBy::Kernels => r
                    .system_kernels
                    .count
                    .saturating_add(r.application_kernels.count),
            }
        };
        let descending = self.sort.descending() != self.reverse;
        rows.sort_by(|a, b| {
            let primary = match self.sort {
                SortBy::Command => a.command.cmp(&b.command),
                _ => key(a).cmp(&key(b)),
            };
            let primary = if descending {
                primary.reverse()
            } else {
                primary
            };
            let tie = (a.pid, a.chip).cmp(&(b.pid, b.chip));
            let tie = if self.sort == SortBy::Pid && descending {
                tie.reverse()
            } else {
                tie
            };
            primary.then(tie)
        });
        rows
    }

    /// (running, exited) processes.
    pub fn counts(&self) -> (usize, usize) {
        let exited = self.live.processes().filter(|p| p.exited.is_some()).count();
        (self.live.processes().count() - exited, exited)
    }

    /// Applies a key: q / Ctrl-C quit, s next sort column, r reverse, b bytes or units,
    /// arrows / PgUp / PgDn / Home / End scroll.
    pub fn key(&mut self, k: KeyEvent) -> Action {
        if k.kind == KeyEventKind::Release {
            return Action::Nothing;
        }
        let rows = self.rows().len();
        match k.code {
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                return Action::Quit
            }
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('r') => self.reverse = !self.reverse,
            KeyCode::Char('b') => self.exact = !self.exact,
            KeyCode::Down | KeyCode::Char('j') => self.offset = self.offset.saturating_add(1),
            KeyCode::Up | KeyCode::Char('k') => self.offset = self.offset.saturating_sub(1),
            KeyCode::PageDown => self.offset = self.offset.saturating_add(10),
            KeyCode::PageUp => self.offset = self.offset.saturating_sub(10),
            KeyCode::Home => self.offset = 0,
            KeyCode::End => self.offset = rows.saturating_sub(1),
            _ => return Action::Nothing,
        }
        self.offset = self.offset.min(rows.saturating_sub(1));
        self.dirty = true;
        Action::Redraw
    }
}

/// The view as one of the session's sinks: a handle on the state the subcommand draws, and
/// the [`Notify`] that wakes it when the state goes from drawn to changed.
#[derive(Clone)]
pub struct TopSink {
    state: Rc<RefCell<TopState>>,
    changed: Rc<Notify>,
}

impl TopSink {
    pub fn new(state: Rc<RefCell<TopState>>, changed: Rc<Notify>) -> TopSink {
        TopSink { state, changed }
    }

    /// Applies `f` to the state; wakes the view if that made it dirty.
    fn change(&self, f: impl FnOnce(&mut TopState)) {
        let mut s = self.state.borrow_mut();
        let was = s.dirty;
        f(&mut s);
        if s.dirty && !was {
            self.changed.notify_one();
        }
    }

    /// The reader's health figures (see [`TopState::health`]).
    pub fn health(&self, counters: &BTreeMap<&str, u64>, events: u64) {
        self.change(|s| s.health(counters, events));
    }
}

impl Sink for TopSink {
    fn record(&mut self, r: &Record) {
        self.change(|s| s.record(r, Instant::now()));
    }

    fn finish(&mut self, _: &Report) -> crate::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
