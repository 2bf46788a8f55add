//! Lines on stderr: every record with -v, else libraries and cleanups; the text report at the end.

use std::io::Write as _;

use super::Sink;
use crate::{
    collector::Record,
    report::{self, Report},
};

pub struct TextLog {
    /// Every record, not only cleanups.
    pub verbose: bool,
    /// Print the text report at finish (not when the JSON report goes to stdout instead).
    pub text_report: bool,
}

impl Sink for TextLog {
    fn record(&mut self, r: &Record) {
        // Libraries armed or refused and processes ended are always told; the rest with -v.
        if self.verbose
            || matches!(
                r,
                Record::ProcessExited(_)
                    | Record::LibraryTraced { .. }
                    | Record::LibraryRefused { .. }
            )
        {
            eprintln!("tt-tracer: {}", report::record_line(r));
        }
    }

    fn finish(&mut self, report: &Report) -> crate::Result<()> {
        if !report.complete {
            let pids: Vec<String> = report.processes.iter().map(|p| p.pid.to_string()).collect();
            eprintln!(
                "tt-tracer: warning: {}: the ledger of {} is incomplete",
                report.loss_summary(),
                if pids.is_empty() {
                    "every process".to_string()
                } else {
                    format!("pid {}", pids.join(", pid "))
                }
            );
        }
        if self.text_report {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(report.to_text().as_bytes());
        }
        Ok(())
    }
}
