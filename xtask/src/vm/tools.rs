//! The host tools vm-test needs, installed through apt when missing (a fresh machine has none).

use crate::util::{is_root, output, run};
use anyhow::{bail, Context, Result};
use std::process::Command;

/// QEMU to boot the kernels, a static busybox to be the VM's userland, cpio to pack it.
/// `.ci/run` installs the same list up front; this is for `cargo xtask vm-test` elsewhere.
const PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static", "cpio"];

/// Where busybox-static puts its binary (the dynamic `busybox` package would be useless inside
/// an initramfs without libc, so the package, not the path, is what gets checked).
pub const BUSYBOX: &str = "/bin/busybox";

pub fn ensure() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        bail!(
            "missing Debian packages; fix: sudo apt-get install -y --no-install-recommends {list}"
        );
    }
    println!("vm-test: installing {list}");
    let install = || {
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing))
    };
    // A fresh machine may have no package lists yet: update once, then try again.
    if install().is_err() {
        run(Command::new("apt-get").arg("update"))?;
        install().with_context(|| format!("installing {list}"))?;
    }
    Ok(())
}

fn installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status == "install ok installed")
}
