//! `cargo xtask setup`: installs, idempotently, everything the build and tests need.

use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::run;

/// The eBPF crate is built with this nightly plus rust-src (tracer/build.rs names it too): aya-ebpf
/// 0.3 needs rustc >= 1.98, and bpf-linker 0.10.x links with the toolchain's own libLLVM, which
/// must be LLVM 22 for it (later nightlies are on LLVM 23). rustfmt, clippy on the BPF target and
/// cargo-fuzz run with it as well.
pub const NIGHTLY: &str = "nightly-2026-07-01";
/// The host crates' toolchain (aya 0.16 needs rustc >= 1.98). No rust-toolchain.toml pins it:
/// xtask itself builds with whatever stable the machine has, installs this one and runs every
/// workspace cargo command with it ([`crate::cargo`]), so a fresh machine needs no step first.
pub const STABLE: &str = "1.99.1";
/// 0.10.x dlopens rustc's own libLLVM (no system LLVM needed); 0.10.2+ fixes aya-log BTF.
const BPF_LINKER: &str = "0.10.4";

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs `toolchain` (minimal profile) and `components` unless present.
fn ensure_toolchain(toolchain: &str, why: &str, components: &[(&str, &str)]) -> Result<()> {
    if Command::new("rustup").arg("--version").output().is_err() {
        bail!("rustup not found: tt-tracer is built with toolchains managed by rustup");
    }
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with(toolchain)) {
        eprintln!("xtask setup: installing the {toolchain} toolchain ({why})");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            toolchain,
            "--profile",
            "minimal",
        ]))?;
    }
    let comps = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        toolchain,
    ]))
    .unwrap_or_default();
    for (component, why) in components {
        if !comps.lines().any(|l| l.starts_with(component)) {
            eprintln!("xtask setup: adding {component} to {toolchain} ({why})");
            run(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                toolchain,
            ]))?;
        }
    }
    Ok(())
}

/// The host crates' toolchain, before any workspace build (every xtask command).
pub fn ensure_host_toolchain() -> Result<()> {
    ensure_toolchain(
        STABLE,
        "builds tt-tracer",
        &[("clippy", "host lints"), ("rustfmt", "rustfmt --check")],
    )
}

pub fn setup() -> Result<()> {
    ensure_host_toolchain()?;
    // Pinned: `nightly` alone would move to a later LLVM than bpf-linker links with.
    // rust-src: core is rebuilt for the BPF target; rustfmt and clippy: the nightly lints
    // (import grouping in rustfmt.toml, clippy for the BPF target).
    ensure_toolchain(
        NIGHTLY,
        "builds the eBPF programs",
        &[
            ("rust-src", "core for the BPF target"),
            ("rustfmt", "import grouping"),
            ("clippy", "eBPF lints"),
        ],
    )?;
    let linker = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if !linker.contains(BPF_LINKER) {
        eprintln!("xtask setup: installing bpf-linker {BPF_LINKER} (links the eBPF object; ~70 s)");
        run(Command::new("cargo").args([
            "install",
            &format!("bpf-linker@{BPF_LINKER}"),
            "--locked",
            "--force",
        ]))?;
        let linker = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
        if !linker.contains(BPF_LINKER) {
            bail!("bpf-linker {BPF_LINKER} installed but not on PATH (add ~/.cargo/bin to PATH)");
        }
    }
    let missing: Vec<&str> = [
        ("g++", "g++"),
        ("nm", "binutils"),
        ("gdb", "gdb"),
        ("unzip", "unzip"),
        // `tt-tracer top`'s tests draw it on a real terminal.
        ("tmux", "tmux"),
    ]
    .into_iter()
    .filter(|(tool, _)| !on_path(tool))
    .map(|(_, package)| package)
    .collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    install_prometheus()?;
    eprintln!("xtask setup: ok ({STABLE}, {NIGHTLY} + rust-src/rustfmt/clippy, bpf-linker {BPF_LINKER}, g++, binutils, gdb, tmux, prometheus)");
    Ok(())
}

/// `cargo` of [`NIGHTLY`] (rustfmt's import grouping, the BPF target, cargo-fuzz's flags need
/// it), in the workspace root.
pub fn nightly_cargo() -> Command {
    let mut c = Command::new("rustup");
    c.current_dir(crate::root()).args(["run", NIGHTLY, "cargo"]);
    c
}

pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Installs Debian packages (root only), updating the package lists first.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    eprintln!(
        "xtask setup: installing Debian packages: {}",
        packages.join(" ")
    );
    run(Command::new("apt-get").args(["update", "-qq"])).context("apt-get update (needs root)")?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Debian's `prometheus` package, for `prometheus` and `promtool`: the metrics tests run their
/// own instance (own config, own port, own storage), never the package's service.
fn install_prometheus() -> Result<()> {
    if on_path("prometheus") && on_path("promtool") {
        return Ok(());
    }
    // invoke-rc.d and deb-systemd-invoke ask policy-rc.d before starting a service; 101 means
    // "not allowed". Put one in place for the install only, unless the system already has one.
    let policy = std::path::Path::new("/usr/sbin/policy-rc.d");
    let own_policy = !policy.exists();
    if own_policy {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(
            policy,
            "#!/bin/sh\n# tt-tracer xtask setup: no service starts while installing\nexit 101\n",
        )
        .context("writing /usr/sbin/policy-rc.d (needs root)")?;
        std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))?;
    }
    let installed = apt_install(&["prometheus"]);
    if own_policy {
        let _ = std::fs::remove_file(policy);
    }
    installed?;
    // Under systemd the unit is still enabled for the next boot; disable it (it would only
    // scrape itself on :9090, but it is not ours to run).
    if std::path::Path::new("/run/systemd/system").is_dir() {
        let _ = Command::new("systemctl")
            .args(["disable", "--now", "prometheus.service"])
            .status();
    }
    if !(on_path("prometheus") && on_path("promtool")) {
        bail!("the prometheus package installed, but /usr/bin/prometheus or /usr/bin/promtool is missing");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The eBPF build (tracer/build.rs) and setup must name the same nightly: setup would
    /// otherwise install one toolchain and the build ask for another.
    #[test]
    fn the_ebpf_build_uses_the_nightly_setup_installs() {
        let build = std::fs::read_to_string(crate::root().join("tracer/build.rs")).unwrap();
        let named = build
            .lines()
            .find_map(|l| l.strip_prefix("const EBPF_NIGHTLY: &str = \""))
            .and_then(|rest| rest.strip_suffix("\";"))
            .expect("tracer/build.rs names its nightly in EBPF_NIGHTLY");
        assert_eq!(named, super::NIGHTLY);
    }
}
