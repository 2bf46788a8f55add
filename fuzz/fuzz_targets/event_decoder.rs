//! Ring-buffer records → `Event::from_bytes` → `Collector::apply`, in order, then every
//! final-state path: the process ledgers, the text report, the JSON report. The input is cut
//! like the rings' contents: one event per `Event::SIZE` bytes, and a shorter tail (a malformed record).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tracer_common::Event;
use tt_tracer::{
    collector::Collector,
    report::{self, LibraryInfo, Report},
};

fuzz_target!(|data: &[u8]| {
    let mut collector = Collector::new();
    let mut malformed = 0;
    for record in data.chunks(Event::SIZE) {
        let Some(ev) = Event::from_bytes(record) else {
            malformed += 1;
            continue;
        };
        for rec in collector.apply(&ev) {
            // What `-v` and `--events-file` print for it.
            let _ = report::record_line(&rec);
            serde_json::to_string(&rec).expect("a record serialises");
        }
    }
    for p in collector.processes() {
        let _ = (p.loaded().total(), p.live_allocations());
        let _ = collector.has_ended(p.pid);
        if let Some(c) = &p.exit {
            let _ = report::cleanup_line(c);
        }
    }
    let _ = collector.live_count();
    let lost = BTreeMap::from([("payload_ring_full", 0), ("lifecycle_ring_full", 1)]);
    let library = LibraryInfo {
        id: 1,
        path: "fuzz.so".into(),
        build_id: Some("00".into()),
        catalog: "built-in".into(),
    };
    let report = Report::new(&collector, &[library], lost, malformed);
    let _ = report.to_text();
    serde_json::to_string(&report).expect("the report serialises");
});
