//! Embeds the kernel object built by `cargo xtask build-ebpf` (the xtask owns every build step,
//! including the nightly/bpf-linker one, so this script only copies its result).
use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let object = env::var_os("FLOW_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../flow-ebpf/target/bpfel-unknown-none/release/flow"));
    println!("cargo:rerun-if-env-changed=FLOW_EBPF_OBJECT");
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("flow.bpf.o");
    if let Err(err) = fs::copy(&object, &out) {
        eprintln!(
            "error: the eBPF object {} is missing ({err}); build it with `cargo xtask build-ebpf`",
            object.display()
        );
        std::process::exit(1);
    }
}
