//! `cargo xtask setup`: rust-src for nightly, bpf-linker built against nightly's LLVM, tracefs.
//!
//! Idempotent and cheap when everything is there (two short process runs and a few stats).

use crate::util::{is_root, output, run};
use anyhow::{anyhow, bail, Context, Result};
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

pub fn setup() -> Result<()> {
    let sysroot = nightly_sysroot()?;
    rust_src(&sysroot).context("rust-src: could not be installed")?;
    bpf_linker(&sysroot).context("bpf-linker: could not be had")?;
    tracefs().context("tracefs: could not be mounted")?;
    Ok(())
}

/// `rustc +nightly --print sysroot`.
fn nightly_sysroot() -> Result<PathBuf> {
    output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            anyhow!(
                "nightly toolchain: `rustc +nightly --print sysroot` failed; \
                 install it with `rustup toolchain install nightly`"
            )
        })
}

fn rust_src(sysroot: &Path) -> Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library").is_dir() {
        println!("rust-src: present");
        return Ok(());
    }
    println!("rust-src: installing");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
        .context("fix: run `rustup component add rust-src --toolchain nightly` (needs network)")?;
    println!("rust-src: installed");
    Ok(())
}

fn bpf_linker(sysroot: &Path) -> Result<()> {
    if let Some(version) = output(Command::new("bpf-linker").arg("--version")) {
        println!("bpf-linker: present ({version})");
        return Ok(());
    }
    let lib = sysroot.join("lib");
    let (major, file) = find_rust_llvm(&lib)?;
    let link = lib.join("libLLVM.so");
    // `symlink_metadata` sees a dangling link too: replace that, keep anything that resolves.
    if link.symlink_metadata().is_ok() && link.metadata().is_err() {
        fs::remove_file(&link).with_context(|| format!("removing dangling {}", link.display()))?;
    }
    if link.symlink_metadata().is_err() {
        std::os::unix::fs::symlink(&file, &link).with_context(|| {
            format!(
                "fix: create the link yourself: ln -s {file} {}",
                link.display()
            )
        })?;
    }
    println!("bpf-linker: building against LLVM {major} of the nightly toolchain (~40 s)");
    run(Command::new("cargo")
        .env("LLVM_PREFIX", sysroot)
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major}")))
    .with_context(|| {
        format!(
            "fix: run `LLVM_PREFIX={} cargo install bpf-linker --locked --no-default-features \
             --features llvm-{major}` and read its error",
            sysroot.display()
        )
    })?;
    if output(Command::new("bpf-linker").arg("--version")).is_none() {
        bail!("installed, but `bpf-linker --version` does not run: is $CARGO_HOME/bin on PATH?");
    }
    println!("bpf-linker: built (LLVM {major})");
    Ok(())
}

/// The `libLLVM-<N>-rust-*.so` the nightly toolchain ships: its major version and file name.
/// With several, the highest version wins.
fn find_rust_llvm(lib: &Path) -> Result<(u32, String)> {
    let entries = fs::read_dir(lib)
        .with_context(|| format!("reading the nightly lib dir {}", lib.display()))?;
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| Some((llvm_major(&name)?, name)))
        .max()
        .ok_or_else(|| {
            anyhow!(
                "no libLLVM-<N>-rust-*.so in {}; fix: reinstall the toolchain \
                 (`rustup toolchain install nightly --force`)",
                lib.display()
            )
        })
}

/// The LLVM major version in a file name of the form `libLLVM-<N>-rust-*.so`.
pub fn llvm_major(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix("libLLVM-")?;
    let (major, rest) = rest.split_once('-')?;
    if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !rest.starts_with("rust-") || !rest.ends_with(".so") {
        return None;
    }
    major.parse().ok()
}

fn tracefs() -> Result<()> {
    let dir = Path::new("/sys/kernel/tracing");
    if dir.join("events").is_dir() {
        println!("tracefs: mounted");
        return Ok(());
    }
    if !is_root() {
        // Building needs no tracefs; loading the program does, and that runs as root.
        println!(
            "tracefs: not mounted (not root; the kernel tests need it: \
             `sudo mount -t tracefs tracefs {}`)",
            dir.display()
        );
        return Ok(());
    }
    run(Command::new("mount")
        .args(["-t", "tracefs", "tracefs"])
        .arg(dir))
    .with_context(|| {
        format!(
            "fix: mount it yourself (`mount -t tracefs tracefs {}`) or enable CONFIG_TRACING",
            dir.display()
        )
    })?;
    if !dir.join("events").is_dir() {
        bail!("mounted, but {} has no events/", dir.display());
    }
    println!("tracefs: mounted at {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::llvm_major;

    #[test]
    fn llvm_major_from_rust_file_names() {
        assert_eq!(llvm_major("libLLVM-22-rust-1.97.0-nightly.so"), Some(22));
        assert_eq!(llvm_major("libLLVM-19-rust-1.84.0-stable.so"), Some(19));
        assert_eq!(llvm_major("libLLVM.so.22.1-rust-1.97.0-nightly"), None);
        assert_eq!(llvm_major("libLLVM.so"), None);
        assert_eq!(llvm_major("libLLVM-22.so"), None);
        assert_eq!(llvm_major("libLLVM--rust-1.97.0-nightly.so"), None);
        assert_eq!(llvm_major("libLLVM-x2-rust-1.97.0-nightly.so"), None);
        assert_eq!(llvm_major("librustc_driver-b5a965480ee51f9a.so"), None);
    }
}
