//! The VM's whole userland: a static busybox, `/init` (init.sh) and the test executables, packed
//! as an uncompressed newc cpio (the kernel takes it as is; compressing would only cost time on
//! both sides of a local file).

use super::tools::BUSYBOX;
use crate::util::run;
use anyhow::{Context, Result};
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

const INIT: &str = include_str!("init.sh");

/// Builds `<dir>/initramfs.cpio` holding `tests` as `/tests/<name>`; returns its path.
pub fn build(tests: &[(String, PathBuf)], dir: &Path) -> Result<PathBuf> {
    let root = dir.join("root");
    let _ = fs::remove_dir_all(&root);
    for sub in ["bin", "tests"] {
        fs::create_dir_all(root.join(sub))?;
    }
    fs::copy(BUSYBOX, root.join("bin/busybox")).with_context(|| format!("copying {BUSYBOX}"))?;
    for (name, path) in tests {
        let to = root.join("tests").join(name);
        // A hard link costs nothing; the cargo target dir may sit on another filesystem.
        if fs::hard_link(path, &to).is_err() {
            fs::copy(path, &to).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    let init = root.join("init");
    fs::write(&init, INIT)?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;

    let archive = dir.join("initramfs.cpio");
    // Owned by root inside the VM whoever builds it; `find .` keeps paths relative to `/`.
    run(Command::new("sh").current_dir(&root).arg("-c").arg(format!(
        "find . | cpio --quiet -o -H newc -R 0:0 > '{}'",
        archive.display()
    )))
    .context("packing the initramfs")?;
    Ok(archive)
}
