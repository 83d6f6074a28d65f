//! `cargo xtask build-ebpf` and `cargo xtask build`.

use crate::{
    setup::setup,
    util::{run, target_dir, workspace_root},
};
use anyhow::{bail, Context, Result};
use std::{path::PathBuf, process::Command};

/// Runs setup, builds the kernel crate with nightly, returns the object's absolute path.
pub fn build_ebpf() -> Result<PathBuf> {
    setup()?;
    let crate_dir = workspace_root().join("flow-ebpf");
    // Pinned here (not left to $CARGO_TARGET_DIR) so flow-user/build.rs's default path holds.
    let target_dir = crate_dir.join("target");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&crate_dir)
        .args([
            "+nightly",
            "build",
            "--release",
            "--target",
            "bpfel-unknown-none",
        ])
        .args(["-Z", "build-std=core", "--target-dir"])
        .arg(&target_dir)
        // Host flags mean nothing to BPF; the kernel crate's own flags belong in its config.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    run(&mut cmd).context("build-ebpf: the kernel programs did not build")?;
    let object = target_dir.join("bpfel-unknown-none/release/flow");
    if !object.is_file() {
        bail!(
            "build-ebpf: the build passed but {} is missing",
            object.display()
        );
    }
    let object = object
        .canonicalize()
        .context("build-ebpf: resolving the object's path")?;
    println!("build-ebpf: {}", object.display());
    Ok(object)
}

/// `cargo build -p flow-user` embedding `object`; returns the `flow` binary's path.
pub fn build_user(release: bool, object: &PathBuf) -> Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root())
        .args(["build", "-p", "flow-user"])
        .env("FLOW_EBPF_OBJECT", object);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd).context("build: flow-user did not build")?;
    let binary = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("flow");
    if !binary.is_file() {
        bail!(
            "build: the build passed but {} is missing",
            binary.display()
        );
    }
    Ok(binary)
}

/// build-ebpf, then flow-user; returns the `flow` binary's path.
pub fn build(release: bool) -> Result<PathBuf> {
    let object = build_ebpf()?;
    let binary = build_user(release, &object)?;
    println!("build: {}", binary.display());
    Ok(binary)
}
