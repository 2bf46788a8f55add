//! Project tasks: `cargo xtask setup | demo | test | bench | fuzz | sim`.
//!
//! Every task that needs the toolchain calls `setup` first, and `setup` is idempotent, so the
//! README's two commands work on a fresh machine and cost nothing on a warm one.

mod bench;
mod fuzz;
mod setup;
mod sim;
mod test;

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "tt-tracer's build, demo, test, benchmark, fuzzing and simulator tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (the pinned nightly with rust-src, bpf-linker
    /// 0.10.4, g++, …).
    Setup,
    /// Trace the built-in demo workload (the stand-in libtt_metal.so and its driver). Root.
    Demo {
        /// Devices in the demo mesh.
        #[arg(long, default_value_t = 2)]
        devices: u32,
    },
    /// Everything CI runs: fmt, clippy, unit tests, root integration tests (stand-in and real
    /// tt-metal). Root.
    Test(test::TestArgs),
    /// Benchmarks (medians, ratios against a baseline measured in the same run). Root.
    Bench(bench::BenchArgs),
    /// Run the cargo-fuzz targets (fuzz/) from the committed corpus; fails on any crash.
    Fuzz(fuzz::FuzzArgs),
    /// tt-tracer on the real tt-metal device bring-up run by Tenstorrent's simulator ttsim,
    /// checked against gdb (not part of `test`: ttsim's source is an argument). Root.
    Sim(sim::SimArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    setup::ensure_host_toolchain()?;
    match cli.task {
        Task::Setup => setup::setup(),
        Task::Demo { devices } => demo(devices),
        Task::Test(a) => test::test(a),
        Task::Bench(a) => bench::bench(a),
        Task::Fuzz(a) => fuzz::fuzz(a),
        Task::Sim(a) => sim::sim(a),
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs a command, failing with its rendering if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", render(cmd));
    let st = cmd
        .status()
        .with_context(|| format!("starting {}", render(cmd)))?;
    if !st.success() {
        bail!("{} failed: {st}", render(cmd));
    }
    Ok(())
}

pub fn render(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `cargo` of the host toolchain ([`setup::STABLE`]), in the workspace root.
pub fn cargo() -> Command {
    let mut c = Command::new("rustup");
    c.current_dir(root()).args(["run", setup::STABLE, "cargo"]);
    c
}

pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        bail!("{what} loads eBPF programs into the kernel and must run as root: sudo -E cargo xtask …");
    }
    Ok(())
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Builds tt-tracer (debug) and the stand-in library + driver; returns their paths.
pub fn build_demo_parts() -> Result<(PathBuf, PathBuf, PathBuf)> {
    run(cargo().args(["build", "-p", "tt-tracer"]))?;
    let out = root().join("target/standin");
    run(Command::new("bash")
        .arg(root().join("tests/standin/build.sh"))
        .arg(&out))?;
    Ok((
        root().join("target/debug/tt-tracer"),
        out.join("libtt_metal.so"),
        out.join("tt_driver"),
    ))
}

fn demo(devices: u32) -> Result<()> {
    setup::setup()?;
    require_root("the demo")?;
    let (tracer, lib, driver) = build_demo_parts()?;
    eprintln!(
        "\nxtask: demo: {devices} devices; firmware written to every chip; fabric bring-up on \
         worker threads while 2 application threads load kernels; 2 programs enqueued in fast \
         dispatch (their binaries placed in the mesh's DRAM); 4 mesh buffers, one never freed; \
         normal close.\n"
    );
    run(Command::new(tracer)
        .args(["run", "-v", "--lib"])
        .arg(&lib)
        .arg("--")
        .arg(&driver)
        .args([
            "--devices",
            &devices.to_string(),
            "--app-kernels",
            "3",
            "--program-kernels",
            "2",
            "--buffers",
            "4",
            "--app-threads",
            "2",
        ]))
}
