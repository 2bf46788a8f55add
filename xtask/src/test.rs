//! `cargo xtask test`: everything CI runs, in order of cost. Fails on the first red step.

use std::process::Command;

use anyhow::Result;
use clap::Args;

use crate::{cargo, require_root, root, run, setup};

#[derive(Args)]
pub struct TestArgs {
    /// Skip fmt and clippy (for quick iterations; CI never does).
    #[arg(long)]
    no_lint: bool,
    /// Only integration tests whose name contains this.
    #[arg(long)]
    filter: Option<String>,
}

pub fn test(a: TestArgs) -> Result<()> {
    setup::setup()?;
    require_root("the integration test suite")?;
    if !a.no_lint {
        run(cargo().args(["fmt", "--all", "--check"]))?;
        // User-space crates, xtask and tests for the host…
        run(cargo().args([
            "clippy",
            "--workspace",
            "--exclude",
            "tracer-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        // …and the eBPF crate for its own target (what that target allows: no tests, no std).
        run(Command::new("rustup")
            .current_dir(root())
            .args([
                "run",
                "nightly",
                "cargo",
                "clippy",
                "-p",
                "tracer-ebpf",
                "--release",
            ])
            .args([
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
            ]))?;
    }
    // Unit tests: collector, catalog, resolution, … (no root needed).
    run(cargo().args([
        "test",
        "--workspace",
        "--exclude",
        "integration-tests",
        "--exclude",
        "tracer-ebpf",
    ]))?;
    // Integration tests load real eBPF programs into this kernel; one at a time, since each
    // holds probes on shared libraries.
    run(cargo().args(["build", "-p", "tt-tracer"]))?;
    let mut it = cargo();
    it.args(["test", "-p", "integration-tests"])
        .env("TT_TRACER_BIN", root().join("target/debug/tt-tracer"))
        .arg("--")
        .arg("--test-threads=1");
    if let Some(f) = &a.filter {
        it.arg(f);
    }
    run(&mut it)?;
    eprintln!("xtask test: all green");
    Ok(())
}
