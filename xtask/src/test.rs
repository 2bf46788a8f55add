//! `cargo xtask test`: everything CI runs, in order of cost. Fails on the first red step.

use std::process::Command;

use anyhow::Result;
use clap::Args;

use crate::{cargo, require_root, root, run, setup, setup::nightly_cargo};

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
        // rustfmt.toml groups imports the aya way, which needs the nightly rustfmt.
        run(nightly_cargo().args(["fmt", "--all", "--check"]))?;
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
        run(nightly_cargo()
            .args(["clippy", "-p", "tracer-ebpf", "--release"])
            .args([
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
            ]))?;
        // The fuzz targets build against the library's API (as cargo-fuzz builds them:
        // `--cfg fuzzing`, so no eBPF object), so an API change cannot leave them behind.
        run(nightly_cargo()
            .args([
                "clippy",
                "--manifest-path",
                "fuzz/Cargo.toml",
                "--bins",
                "--",
                "-D",
                "warnings",
            ])
            .env("RUSTFLAGS", "--cfg fuzzing")
            .env("CARGO_TARGET_DIR", root().join("fuzz/target/check")))?;
    }
    // Unit tests: collector, catalog, resolution, … (no root needed).
    let mut totals = Totals::default();
    totals.run(cargo().args(["test", "--workspace"]).args([
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
    totals.run(&mut it)?;
    // The plain closing line: every test of every binary above.
    println!("{} passed, {} failed", totals.passed, totals.failed);
    Ok(())
}

/// Runs `cargo test`, echoing its output, and adds up its `test result:` lines.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
}

impl Totals {
    fn run(&mut self, cmd: &mut Command) -> Result<()> {
        use std::io::{BufRead, BufReader};
        eprintln!("xtask: $ {}", crate::render(cmd));
        let mut child = cmd.stdout(std::process::Stdio::piped()).spawn()?;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let num = |word: &str| {
                    rest.split(';')
                        .find_map(|p| {
                            p.trim()
                                .trim_start_matches("ok. ")
                                .trim_start_matches("FAILED. ")
                                .strip_suffix(word)
                        })
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                self.passed += num(" passed");
                self.failed += num(" failed");
            }
        }
        let st = child.wait()?;
        if !st.success() {
            println!("{} passed, {} failed", self.passed, self.failed.max(1));
            anyhow::bail!("{} failed: {st}", crate::render(cmd));
        }
        Ok(())
    }
}
