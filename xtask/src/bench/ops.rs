//! Cost per ttnn operation launch on the real runtime: `ttnn.add` on a warm program cache (the
//! workload's `op_loop`), untraced, under bpftrace counting on every site tt-tracer probes in
//! that loop (the operation's own: `launch<Op>` entry and return, its enqueue and cache-hit
//! handler in `_ttnncpp.so`; libtt_metal's: the output's allocation and free, the workload
//! enqueue, the CB release), and under tt-tracer. Events per launch from tt-tracer's report.

use std::path::Path;

use anyhow::{Context as _, Result};

use super::{baseline, ttnn_loop, TtnnLoop, TtnnRuntime};

/// Launches timed per run (past the workload's warm-up).
const LAUNCHES: u32 = 20000;
/// The operation `op_loop` launches (`ttnn.add`).
const OP: &str = "ttnn::operations::binary_ng::BinaryNgDeviceOperation";

pub fn op_cost(
    tracer: &Path,
    lib: &Path,
    python: &str,
    env: &[(String, String)],
    scratch: &Path,
    runs: usize,
) -> Result<()> {
    // The operation's own sites, and libtt_metal's that fire in the loop.
    let sites = |lib: &Path| -> Result<Vec<baseline::Site>> {
        let mut sites = baseline::operation_sites(
            tracer,
            lib,
            &["op_launch", "op_enqueue", "op_cache_hit"],
            OP,
        )?;
        sites.extend(baseline::sites(
            tracer,
            lib,
            &[
                "bank_allocate",
                "bank_free",
                "workload_enqueue",
                "cb_free_all",
            ],
        )?);
        println!(
            "  {} sites, {} traps per launch for bpftrace",
            sites.len(),
            sites
                .iter()
                .map(|s| 1 + s.with_return as usize)
                .sum::<usize>()
        );
        Ok(sites)
    };
    ttnn_loop(
        &TtnnRuntime {
            tracer,
            lib,
            python,
            env,
            scratch,
        },
        &sites,
        &TtnnLoop {
            scenario: "op_loop",
            iterations: LAUNCHES,
            cpu_key: "loop_cpu_s",
            calls: LAUNCHES,
            label: format!("real runtime op launch ({LAUNCHES} × ttnn.add, program cache warm)"),
        },
        runs,
    )?;
    // What tt-tracer told per launch (its last run's report).
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.join("probe-report.json"))?)?;
    let p = r["processes"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|p| !p["operations"].as_array().is_none_or(Vec::is_empty))
        })
        .context("no process with operations in tt-tracer's report")?;
    let launches: u64 = p["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["launches"].as_u64())
        .sum();
    let events = r["events"].as_f64().unwrap_or(0.0);
    println!(
        "  tt-tracer: {events} events for {launches} launches ({:.1} per launch, whole process)",
        events / launches.max(1) as f64
    );
    Ok(())
}
