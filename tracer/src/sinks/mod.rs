//! Where records and the final report go. A sink sees the record stream and the final
//! [`Report`] only, never the session's or the collector's state, so any number of them can be
//! fed the same stream ([`Sinks`]).
//!
//! - [`TextLog`]: lines on stderr, then the text report;
//! - [`JsonLines`]: every record as one JSON object per line (`--events-file`), rotatable;
//! - [`JsonReport`]: the JSON report on stdout and/or in a file;
//! - [`metrics::MetricsExporter`]: Prometheus metrics over HTTP (`--metrics`);
//! - [`TraceFile`]: a timeline for ui.perfetto.dev (`--trace-file`);
//! - [`top::TopSink`]: the live table of `tt-tracer top`.
//!
//! [`live::LiveState`] is the per process × chip model of what is on the devices now that the
//! live views share.

mod json_lines;
mod json_report;
pub mod live;
pub mod metrics;
#[cfg(test)]
mod test_records;
mod text_log;
pub mod top;
mod trace_file;

pub use self::{
    json_lines::{JsonLines, DEFAULT_KEEP},
    json_report::JsonReport,
    text_log::TextLog,
    trace_file::TraceFile,
};
use crate::{collector::Record, report::Report};

pub trait Sink {
    /// One record, as it happens.
    fn record(&mut self, r: &Record);
    /// The end of tracing: the final report.
    fn finish(&mut self, report: &Report) -> crate::Result<()>;
    /// Reopen output files (log rotation, e.g. on SIGHUP). Nothing to do for most sinks.
    fn rotate(&mut self) {}
}

/// Several sinks fed the same stream, in order.
#[derive(Default)]
pub struct Sinks(pub Vec<Box<dyn Sink>>);

impl Sinks {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, sink: impl Sink + 'static) {
        self.0.push(Box::new(sink));
    }

    /// `self` as the session's record callback.
    pub fn as_callback(&mut self) -> impl FnMut(&Record) + '_ {
        move |r| self.record(r)
    }
}

impl Sink for Sinks {
    fn record(&mut self, r: &Record) {
        for s in &mut self.0 {
            s.record(r);
        }
    }

    /// Finishes every sink, even after one failed; returns the first failure.
    fn finish(&mut self, report: &Report) -> crate::Result<()> {
        let mut first = Ok(());
        for s in &mut self.0 {
            let r = s.finish(report);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn rotate(&mut self) {
        for s in &mut self.0 {
            s.rotate();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, rc::Rc};

    use super::*;
    use crate::collector::Collector;

    struct Counting(Rc<RefCell<(usize, usize, usize)>>);
    impl Sink for Counting {
        fn record(&mut self, _: &Record) {
            self.0.borrow_mut().0 += 1;
        }
        fn finish(&mut self, _: &Report) -> crate::Result<()> {
            self.0.borrow_mut().1 += 1;
            Err(crate::Error::Other("full disk".into()))
        }
        fn rotate(&mut self) {
            self.0.borrow_mut().2 += 1;
        }
    }

    #[test]
    fn every_sink_sees_every_record_and_is_finished_even_after_a_failure() {
        let seen = Rc::new(RefCell::new((0, 0, 0)));
        let mut sinks = Sinks::new();
        sinks.push(Counting(seen.clone()));
        sinks.push(Counting(seen.clone()));
        let r = Record::WorkloadEnqueued {
            op: None,
            pid: 1,
            tid: 1,
            ts_ns: 0,
            total: 1,
        };
        (sinks.as_callback())(&r);
        sinks.rotate();
        let report = Report::new(&Collector::new(), &[], Default::default(), 0);
        assert!(sinks.finish(&report).is_err());
        assert_eq!(*seen.borrow(), (2, 2, 2));
    }
}
