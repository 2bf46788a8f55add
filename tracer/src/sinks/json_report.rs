//! The JSON report, on stdout (`attach --json`) and/or in a file (`--report-file`).

use std::path::PathBuf;

use super::Sink;
use crate::{collector::Record, report::Report, Error};

pub struct JsonReport {
    pub stdout: bool,
    pub file: Option<PathBuf>,
}

impl Sink for JsonReport {
    fn record(&mut self, _: &Record) {}

    fn finish(&mut self, report: &Report) -> crate::Result<()> {
        let json = serde_json::to_string_pretty(report)
            .map_err(|e| Error::Other(format!("serialising the report: {e}")))?;
        if self.stdout {
            println!("{json}");
        }
        if let Some(path) = &self.file {
            std::fs::write(path, json + "\n").map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}
