//! Builds the kernel programs (`filibuster-ebpf`) for the BPF target and
//! puts the object in OUT_DIR, where `src/ebpf.rs` embeds it.

fn main() -> anyhow::Result<()> {
    // The BPF target needs `-Z build-std=core`; the stable toolchain allows
    // it under RUSTC_BOOTSTRAP, which aya-build passes to the inner cargo.
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    let package = aya_build::Package {
        name: "filibuster-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../filibuster-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom("stable"))
}
