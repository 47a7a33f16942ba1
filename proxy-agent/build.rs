//! Builds the eBPF objects (crate `proxy-ebpf`, one binary each: `proxy`
//! for the agent, `bench` for `bench-helper`) for bpfel-unknown-none with
//! nightly, into OUT_DIR, so the agent can embed them. `AYA_BUILD_SKIP=1` skips it
//! (aya-build then writes nothing and the agent will not compile: use it only
//! for tools that never build the agent).
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    // aya-build watches the eBPF crate only; the map layouts and verdict
    // codes it shares live in proxy-common, and an object built against
    // old ones would not match the agent.
    let common = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "proxy-common")
        .ok_or_else(|| anyhow!("package proxy-common not found in the workspace"))?;
    if let Some(dir) = common.manifest_path.parent() {
        println!("cargo:rerun-if-changed={dir}");
    }
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "proxy-ebpf")
        .ok_or_else(|| anyhow!("package proxy-ebpf not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("proxy-ebpf manifest has no parent directory"))?
        .as_str();
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
