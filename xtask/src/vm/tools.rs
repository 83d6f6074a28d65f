//! The host tools vm-test needs, installed through apt when missing (a fresh machine has none).

use anyhow::Result;

/// QEMU to boot the kernels, a static busybox to be the VM's userland, cpio to pack it.
/// They are in `packages::TEST_PACKAGES` too; this is for `cargo xtask vm-test` run alone.
const PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static", "cpio"];

/// Where busybox-static puts its binary (the dynamic `busybox` package would be useless inside
/// an initramfs without libc, so the package, not the path, is what gets checked).
pub const BUSYBOX: &str = "/bin/busybox";

pub fn ensure() -> Result<()> {
    crate::packages::ensure("vm-test", PACKAGES)
}
