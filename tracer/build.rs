//! Builds the eBPF object (tracer-ebpf) for the BPF target with the nightly toolchain, so that
//! src/loader.rs can embed it.
use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

/// The nightly that builds the eBPF crate: aya-ebpf 0.3 needs rustc >= 1.98, and bpf-linker
/// 0.10.x (no system LLVM here) links with the toolchain's own libLLVM, written against LLVM 22.
/// This 1.98 nightly is still on LLVM 22 (22.1.8). `cargo xtask setup` installs it (same name there).
const EBPF_NIGHTLY: &str = "nightly-2026-07-01";

fn main() -> anyhow::Result<()> {
    // cargo-fuzz builds with `--cfg fuzzing` (seen here as CARGO_CFG_FUZZING). The fuzz targets
    // only exercise the pure parts (event decoding, collector, catalog, resolution) and never
    // load probes, and a nested BPF build under the fuzzer's nightly + sanitizer flags is slow at
    // best and may not build at all: embed an empty placeholder instead of the eBPF object.
    println!("cargo:rerun-if-env-changed=CARGO_CFG_FUZZING");
    if std::env::var_os("CARGO_CFG_FUZZING").is_some() {
        let out_dir = std::env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?;
        let placeholder = std::path::Path::new(&out_dir).join("tracer");
        std::fs::write(&placeholder, [])
            .with_context(|| format!("writing {}", placeholder.display()))?;
        return Ok(());
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "tracer-ebpf")
        .ok_or_else(|| anyhow!("tracer-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?
        .as_str();
    // aya-build forwards every line the inner cargo prints on stderr as a `cargo:warning`, so its
    // progress lines ("Compiling core …") would look like ~40 warnings on every fresh build.
    // Quiet cargo still reports errors there, and compiler warnings come through its JSON output.
    std::env::set_var("CARGO_TERM_QUIET", "true");
    aya_build::build_ebpf(
        [Package {
            name: "tracer-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(EBPF_NIGHTLY),
    )
}
