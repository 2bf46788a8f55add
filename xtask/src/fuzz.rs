//! `cargo xtask fuzz`: runs the cargo-fuzz targets (fuzz/) one after the other, each for a
//! fixed time, from the committed corpus, and fails if any of them found a crash, a hang or an
//! allocation over the limit.
//!
//! New corpus entries go to a scratch directory (fuzz/target/corpus/TARGET, emptied first), so a
//! run never changes the committed corpus; libFuzzer's artifacts go to fuzz/artifacts/TARGET/.

use std::{
    fs::File,
    io::{BufRead, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::{render, root, run, setup, setup::nightly_cargo};

/// Every target, with its -max_len.
const TARGETS: [(&str, usize); 4] = [
    // 64 ring records (88 bytes each).
    ("event_decoder", 64 * 88),
    // The built-in catalog is ~9 KiB.
    ("catalog", 16 << 10),
    // The stand-in library seed is ~370 KiB.
    ("resolve", 512 << 10),
    // The longest constrained name in ttnn 0.62-0.81 is ~1.8 KiB (mangled).
    ("op_names", 4 << 10),
];

#[derive(Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Only this target (default: all, one after the other).
    #[arg(long, value_parser = TARGETS.map(|(name, _)| name))]
    target: Option<String>,
}

/// libFuzzer's closing figures for one run.
#[derive(Default)]
struct Figures {
    execs: Option<u64>,
    exec_per_sec: Option<u64>,
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<String>,
    peak_rss_mb: Option<u64>,
    artifacts: Vec<String>,
}

impl Figures {
    /// Takes what it can from one line of libFuzzer's output.
    fn read(&mut self, line: &str) {
        let word_after = |key: &str| -> Option<&str> {
            let mut words = line.split_whitespace();
            words.find(|w| *w == key)?;
            words.next()
        };
        // Status lines: `#34919  DONE   cov: 3780 ft: 16295 corp: 605/44Mb … exec/s: 383 …`
        if line.starts_with('#') {
            if let Some(v) = word_after("cov:").and_then(|v| v.parse().ok()) {
                self.cov = Some(v);
            }
            if let Some(v) = word_after("ft:").and_then(|v| v.parse().ok()) {
                self.ft = Some(v);
            }
            // `corp: 605/44Mb`: entries / total size.
            if let Some((n, size)) = word_after("corp:").and_then(|v| v.split_once('/')) {
                self.corpus = Some(format!("{n} entries ({size})"));
            }
        }
        let stat = |key: &str| {
            line.strip_prefix(key)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(v) = stat("stat::number_of_executed_units:") {
            self.execs = Some(v);
        }
        if let Some(v) = stat("stat::average_exec_per_sec:") {
            self.exec_per_sec = Some(v);
        }
        if let Some(v) = stat("stat::peak_rss_mb:") {
            self.peak_rss_mb = Some(v);
        }
        // `artifact_prefix='…'; Test unit written to ./fuzz/artifacts/resolve/crash-…`
        if let Some((_, path)) = line.split_once("Test unit written to ") {
            self.artifacts.push(path.trim().to_string());
        }
    }
}

fn show<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "?".into(), |v| v.to_string())
}

/// Installs cargo-fuzz unless `cargo fuzz` already runs.
fn ensure_cargo_fuzz() -> Result<()> {
    let installed = nightly_cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        eprintln!("xtask fuzz: installing cargo-fuzz");
        run(crate::cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

pub fn fuzz(a: FuzzArgs) -> Result<()> {
    setup::setup()?;
    ensure_cargo_fuzz()?;
    let fuzz_dir = root().join("fuzz");
    // Fuzz builds (nightly, sanitizers) keep their own target dir, whatever CARGO_TARGET_DIR says.
    let target_dir = fuzz_dir.join("target");
    let mut results = Vec::new();
    for (name, max_len) in TARGETS {
        if a.target.as_deref().is_some_and(|t| t != name) {
            continue;
        }
        let scratch = target_dir.join("corpus").join(name);
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)
                .with_context(|| format!("emptying {}", scratch.display()))?;
        }
        std::fs::create_dir_all(&scratch)?;
        let committed = fuzz_dir.join("corpus").join(name);
        let mut cmd = nightly_cargo();
        cmd.args(["fuzz", "run", "--target-dir"])
            .arg(&target_dir)
            .arg(name)
            // The first corpus directory receives new entries; the committed one is only read.
            .arg(&scratch)
            .arg(&committed)
            .arg("--")
            .arg(format!("-max_total_time={}", a.seconds))
            .arg(format!("-max_len={max_len}"))
            .args([
                "-rss_limit_mb=2048",
                "-malloc_limit_mb=2048",
                "-timeout=10",
                "-print_final_stats=1",
            ]);
        let log = target_dir.join(format!("{name}.log"));
        let (mut ok, figures) = run_logged(&mut cmd, &log)?;
        if !ok && !figures.artifacts.is_empty() && figures.artifacts.iter().all(|a| is_timeout(a)) {
            // On a loaded 2-core machine a unit can stall past -timeout; a real hang replays.
            ok = figures
                .artifacts
                .iter()
                .all(|a| !replay_hangs(&target_dir, name, a));
        }
        let files = |dir: &Path| std::fs::read_dir(dir).map_or(0, |d| d.count());
        println!(
            "xtask fuzz: {name}: {} runs ({}/s), cov {}, ft {}, corpus {} (committed {} + {} new), peak RSS {} MB{}",
            show(&figures.execs),
            show(&figures.exec_per_sec),
            show(&figures.cov),
            show(&figures.ft),
            show(&figures.corpus),
            files(&committed),
            files(&scratch),
            show(&figures.peak_rss_mb),
            if ok { "" } else { ": FAILED" }
        );
        results.push((name, ok, figures, log));
    }
    let failed: Vec<_> = results.iter().filter(|(_, ok, _, _)| !ok).collect();
    if failed.is_empty() {
        return Ok(());
    }
    for (name, _, figures, log) in &failed {
        match figures.artifacts.as_slice() {
            [] => eprintln!(
                "xtask fuzz: {name} failed without an artifact; see {}",
                log.display()
            ),
            artifacts => {
                for artifact in artifacts {
                    eprintln!(
                        "xtask fuzz: {name} found {artifact}; reproduce with \
                         `cargo +{} fuzz run {name} {artifact}` in the repository root \
                         (log: {})",
                        setup::NIGHTLY,
                        log.display()
                    );
                }
            }
        }
    }
    bail!(
        "fuzzing failed: {}",
        failed
            .iter()
            .map(|(name, ..)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn is_timeout(artifact: &str) -> bool {
    Path::new(artifact)
        .file_name()
        .is_some_and(|f| f.to_string_lossy().starts_with("timeout-"))
}

/// Runs a timeout artifact once more; true if it times out again.
fn replay_hangs(target_dir: &Path, name: &str, artifact: &str) -> bool {
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", "run", "--target-dir"])
        .arg(target_dir)
        .args([name, artifact, "--", "-timeout=10", "-rss_limit_mb=2048"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    eprintln!("xtask: $ {}", render(&cmd));
    let t = std::time::Instant::now();
    let hangs = !cmd.status().is_ok_and(|s| s.success());
    if !hangs {
        eprintln!(
            "xtask fuzz: WARNING: {name}: {artifact} ran in {:.2} s when replayed: the timeout was \
             the machine's load, not a hang (the run stopped there; its figures are partial)",
            t.elapsed().as_secs_f64()
        );
    }
    hangs
}

/// Runs `cmd`, its stderr (libFuzzer's output) to `log`, echoing the periodic and final lines.
fn run_logged(cmd: &mut Command, log: &Path) -> Result<(bool, Figures)> {
    eprintln!("xtask: $ {}", render(cmd));
    let mut file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", render(cmd)))?;
    let mut figures = Figures::default();
    let mut tail: Vec<String> = Vec::new();
    for line in BufReader::new(child.stderr.take().expect("piped stderr")).lines() {
        let line = line?;
        writeln!(file, "{line}")?;
        figures.read(&line);
        // libFuzzer prints a line per new corpus entry; keep the terminal to the pulses.
        let status = line.split_whitespace().nth(1).unwrap_or_default();
        if matches!(status, "pulse" | "DONE" | "INITED") || line.contains("Test unit written") {
            eprintln!("{line}");
        }
        tail.push(line);
        if tail.len() > 80 {
            tail.remove(0);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        eprintln!(
            "xtask fuzz: {} failed: {status}; its last lines:",
            render(cmd)
        );
        for line in &tail {
            eprintln!("  {line}");
        }
    }
    Ok((status.success(), figures))
}
