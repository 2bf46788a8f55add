//! Checks of a `--trace-file` timeline (docs/trace.md) against what the same run wrote
//! elsewhere: the event stream (`--events-file`) and the final report (`--report-file`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::{monotonic_ns, target_dir};

/// A path for a trace file of its own.
pub fn scratch_trace(name: &str) -> PathBuf {
    let dir = target_dir().join("it-scratch");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!(
        "{name}-{}-{}.trace.json",
        std::process::id(),
        monotonic_ns()
    ))
}

/// A timeline tt-tracer finished: valid JSON as it is.
pub fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no trace file {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()));
    assert_eq!(v["displayTimeUnit"], "ns", "{}", path.display());
    assert!(v["traceEvents"].is_array(), "{}", path.display());
    v
}

/// A timeline cut short (tt-tracer killed): valid once its closing `]}` is appended.
pub fn read_cut(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no trace file {}: {e}", path.display()));
    assert!(
        !text.trim_end().ends_with("]}"),
        "{} was closed: {text}",
        path.display()
    );
    serde_json::from_str(&format!("{text}\n]}}")).unwrap_or_else(|e| {
        panic!(
            "{} does not end after a whole event ({e}):\n{text}",
            path.display()
        )
    })
}

pub fn events(v: &Value) -> &[Value] {
    v["traceEvents"].as_array().expect("traceEvents")
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected an unsigned integer, found {v}"))
}

/// Per thread (pid, tid), in file order: every `E` ends the innermost open `B`, of the same
/// name, and a thread's span edges never go back in time. Returns the spans left open.
pub fn assert_spans_nest(events: &[Value]) -> usize {
    let mut stacks: BTreeMap<(u64, u64), Vec<(String, f64)>> = BTreeMap::new();
    for e in events {
        let ph = e["ph"].as_str().unwrap_or_else(|| panic!("no ph: {e}"));
        if ph != "B" && ph != "E" {
            continue;
        }
        let key = (u(&e["pid"]), u(&e["tid"]));
        let name = e["name"].as_str().expect("span name").to_string();
        let ts = e["ts"].as_f64().expect("span ts");
        let stack = stacks.entry(key).or_default();
        if ph == "B" {
            if let Some((outer, at)) = stack.last() {
                assert!(ts >= *at, "{name} begins before {outer} it is in: {e}");
            }
            stack.push((name, ts));
        } else {
            let (open, at) = stack
                .pop()
                .unwrap_or_else(|| panic!("an E with no open span on its thread: {e}"));
            assert_eq!(open, name, "E ends another span than the innermost: {e}");
            assert!(ts >= at, "{name} ends before it begins: {e}");
        }
    }
    stacks.values().map(Vec::len).sum()
}

/// The record kind a trace event stands for (B: `context_entered`, E: `context_exited`), or
/// None for metadata, counters and the span ends tt-tracer adds itself (`ended_by`).
fn kind_of(e: &Value) -> Option<String> {
    if !e["args"]["ended_by"].is_null() {
        return None;
    }
    let op = e["cat"] == "op";
    match e["ph"].as_str()? {
        "B" if op => Some("op_began".into()),
        "E" if op => Some("op_ended".into()),
        "B" => Some("context_entered".into()),
        "E" => Some("context_exited".into()),
        "i" => Some(e["name"].as_str()?.into()),
        _ => None,
    }
}

fn count<'a>(kinds: impl Iterator<Item = String> + 'a) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for k in kinds {
        *out.entry(k).or_default() += 1;
    }
    out
}

/// The timeline holds exactly the records of the event stream, in the same order: the same
/// count per kind, each at its time on its process's and thread's track, with the record's
/// fields (all but `record`, `pid`, `tid`, `ts_ns`) as args.
pub fn assert_same_records(events: &[Value], records: &[Value]) {
    let told: Vec<(&Value, String)> = events
        .iter()
        .filter_map(|e| kind_of(e).map(|k| (e, k)))
        .collect();
    let theirs = count(told.iter().map(|(_, k)| k.clone()));
    let ours = count(records.iter().map(|r| r["record"].as_str().unwrap().into()));
    assert_eq!(
        theirs, ours,
        "events per kind: timeline (left), event stream (right)"
    );
    for ((e, kind), r) in told.iter().zip(records) {
        assert_eq!(kind, r["record"].as_str().unwrap(), "in order: {e} for {r}");
        let mut fields = r.as_object().unwrap().clone();
        fields.remove("record");
        // An operation's span is named after it, not carried as an arg.
        let op_span = matches!(e["ph"].as_str(), Some("B" | "E")) && e["cat"] == "op";
        let op = if op_span { fields.remove("op") } else { None };
        let library = kind.starts_with("library_");
        if !library {
            let ts = fields
                .remove("ts_ns")
                .or_else(|| fields.get("exit_ns").cloned())
                .unwrap_or_else(|| panic!("no time in {r}"));
            // The same computation as the writer's, so exact.
            assert_eq!(
                e["ts"].as_f64(),
                Some(u(&ts) as f64 / 1000.0),
                "ts of {e} for {r}"
            );
            let pid = fields.remove("pid").unwrap();
            let tid = fields.remove("tid").unwrap_or_else(|| pid.clone());
            assert_eq!((&e["pid"], &e["tid"]), (&pid, &tid), "track of {e} for {r}");
        } else {
            assert_eq!(e["s"], "g", "a library event is global: {e}");
        }
        assert_eq!(
            e["args"],
            Value::Object(fields),
            "args of {e} for the record {r}"
        );
        match e["ph"].as_str() {
            Some("B") | Some("E") if op_span => {
                assert_eq!(Some(&e["name"]), op.as_ref(), "span name: {e}")
            }
            Some("B") | Some("E") => assert_eq!(e["name"], r["role"], "span name: {e}"),
            // Only a context left without its entry seen is an instant.
            _ if kind == "context_exited" => assert!(r["duration_ns"].is_null(), "{r}"),
            _ => {}
        }
    }
}

/// The last value of every counter series: (pid, track, series) → bytes.
pub fn last_counters(events: &[Value]) -> BTreeMap<(u64, String, String), u64> {
    let mut last = BTreeMap::new();
    for e in events.iter().filter(|e| e["ph"] == "C") {
        for (series, v) in e["args"].as_object().expect("counter args") {
            last.insert(
                (
                    u(&e["pid"]),
                    e["name"].as_str().unwrap().to_string(),
                    series.clone(),
                ),
                u(v),
            );
        }
    }
    last
}

/// Every counter series ends at the final report's figure (docs/trace.md): a chip's track is
/// its own allocator's live bytes plus those of each mesh it is in, and its live CB bytes.
/// Returns how many of those figures are not 0 (a test wants some, or it proves little).
pub fn assert_counters_end_at_report(events: &[Value], report: &Value) -> usize {
    let last = last_counters(events);
    let mut nonzero = 0;
    for p in report["processes"].as_array().expect("processes") {
        let pid = u(&p["pid"]);
        let mut want: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut add = |track: String, books: &Value| {
            for (ty, b) in books["by_type"].as_object().expect("books by_type") {
                *want.entry((track.clone(), ty.clone())).or_default() += u(&b["live_bytes"]);
            }
        };
        for (chip, d) in p["devices"].as_object().expect("devices") {
            add(format!("chip {chip} memory"), &d["memory"]);
        }
        for (m, mesh) in p["meshes"].as_object().expect("meshes") {
            let chips = mesh["chips"].as_array().expect("mesh chips");
            if chips.is_empty() {
                add(format!("mesh {m} memory"), &mesh["memory"]);
            }
            for c in chips {
                add(format!("chip {c} memory"), &mesh["memory"]);
            }
        }
        add("unattributed memory".into(), &p["unattributed"]);
        for (chip, d) in p["devices"].as_object().unwrap() {
            let cb = u(&d["circular_buffers"]["live_bytes"]);
            want.insert((format!("chip {chip} memory"), "CB".into()), cb);
        }
        let have: BTreeMap<(String, String), u64> = last
            .iter()
            .filter(|((p, _, _), _)| *p == pid)
            .map(|((_, t, s), v)| ((t.clone(), s.clone()), *v))
            .collect();
        // A series the timeline never drew is 0; one the report has no books for (a bank
        // cleared at close that never held a buffer) must end at 0.
        for (key, drawn) in &have {
            if !want.contains_key(key) {
                assert_eq!(*drawn, 0, "pid {pid}: {key:?} is in no report books");
            }
        }
        for (key, bytes) in &want {
            let drawn = have.get(key).copied().unwrap_or(0);
            assert_eq!(drawn, *bytes, "pid {pid}: last {key:?} vs the report");
            nonzero += (*bytes > 0) as usize;
        }
    }
    nonzero
}
