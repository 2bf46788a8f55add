//! Builds the eBPF object (tracer-ebpf) for the BPF target with the nightly toolchain, so that
//! src/loader.rs can embed it.
use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
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
        Toolchain::default(),
    )
}
