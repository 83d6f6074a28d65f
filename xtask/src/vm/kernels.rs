//! Stock Debian kernels, fetched with Debian's own tools and cached under `target/vm/kernels`.
//!
//! A meta package (`linux-image-amd64`) names the current versioned image package; only its
//! `boot/vmlinuz-*` is kept: every option the tests need (BPF, JIT, kprobes, BTF, trampolines,
//! the 8250 console, devtmpfs) is built in, so no modules go into the VM.

use crate::util::{is_root, run};
use anyhow::{anyhow, bail, Context, Result};
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

pub struct Kernel {
    /// The versioned image package, e.g. `linux-image-6.1.0-56-amd64`.
    pub package: String,
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// (major, minor): what decides which rungs exist.
    pub version: (u32, u32),
    pub vmlinuz: PathBuf,
}

/// Resolves each meta package and downloads the images not cached yet.
pub fn fetch(meta_packages: &[&str], cache: &Path) -> Result<Vec<Kernel>> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let mut kernels = Vec::new();
    for meta in meta_packages {
        let package = resolve(meta)?;
        let release = package
            .strip_prefix("linux-image-")
            .context("image package name")?
            .to_string();
        let version = parse_version(&release)
            .ok_or_else(|| anyhow!("{meta} resolves to {package}: no version in its name"))?;
        let vmlinuz = cache.join(&package).join("vmlinuz");
        if vmlinuz.is_file() {
            println!("vm-test: {package} cached");
        } else {
            download(&package, &vmlinuz)?;
        }
        kernels.push(Kernel {
            package,
            release,
            version,
            vmlinuz,
        });
    }
    prune(cache, &kernels);
    Ok(kernels)
}

/// `apt-cache depends <meta>`: its first `Depends: linux-image-…` line. Without package lists
/// (a fresh machine) that finds nothing, so lists are updated once and the lookup retried.
fn resolve(meta: &str) -> Result<String> {
    let lookup = || -> Option<String> {
        let out = Command::new("apt-cache")
            .args(["depends", meta])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| {
                let name = line.trim().strip_prefix("Depends: ")?;
                name.starts_with("linux-image-").then(|| name.to_string())
            })
    };
    if let Some(package) = lookup() {
        return Ok(package);
    }
    if is_root() {
        run(Command::new("apt-get").arg("update"))?;
        if let Some(package) = lookup() {
            return Ok(package);
        }
    }
    bail!(
        "`apt-cache depends {meta}` names no kernel image; \
         fix: `apt-get update` (Debian's bookworm and bookworm-security suites carry it)"
    )
}

/// `6.1.0-56-amd64` → (6, 1); `6.12.117+deb12-amd64` → (6, 12).
fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// `apt-get download` the image (the unsigned build when there is one: the same kernel without
/// the Secure Boot signature), then extract only `boot/vmlinuz-*` from its data archive.
fn download(package: &str, vmlinuz: &Path) -> Result<()> {
    let dir = vmlinuz.parent().context("kernel cache dir")?;
    // Next to the cache entry, so the final rename stays on one filesystem.
    let work = dir.with_file_name(".download");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    println!("vm-test: downloading {package}");
    let apt_download = |name: &str| {
        run(Command::new("apt-get")
            .current_dir(&work)
            // apt's `_apt` user may not write here; root downloading to its own dir is fine.
            .args(["-q", "-o", "APT::Sandbox::User=root", "download", name]))
    };
    apt_download(&format!("{package}-unsigned")).or_else(|_| apt_download(package))?;
    let deb = fs::read_dir(&work)?
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb")?;

    // `dpkg-deb --fsys-tarfile | tar -x boot/vmlinuz-*`: like `dpkg-deb -x`, without writing the
    // few hundred MB of modules we would throw away.
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting dpkg-deb")?;
    let tar = Command::new("tar")
        .current_dir(&work)
        .args(["-x", "--wildcards", "./boot/vmlinuz-*"])
        .stdin(dpkg.stdout.take().context("dpkg-deb stdout")?)
        .status()
        .context("starting tar")?;
    let dpkg = dpkg.wait()?;
    if !dpkg.success() || !tar.success() {
        bail!("extracting {}: dpkg-deb {dpkg}, tar {tar}", deb.display());
    }
    let image = fs::read_dir(work.join("boot"))?
        .filter_map(|e| Some(e.ok()?.path()))
        .next()
        .with_context(|| format!("{} has no boot/vmlinuz-*", deb.display()))?;
    fs::create_dir_all(dir)?;
    fs::rename(&image, vmlinuz)?;
    fs::remove_dir_all(&work)?;
    Ok(())
}

/// Removes images no meta package points at any more (a kernel update changes the name).
fn prune(cache: &Path, keep: &[Kernel]) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !keep.iter().any(|k| name == k.package.as_str()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_from_release_names() {
        assert_eq!(super::parse_version("6.1.0-56-amd64"), Some((6, 1)));
        assert_eq!(super::parse_version("6.12.117+deb12-amd64"), Some((6, 12)));
        assert_eq!(super::parse_version("amd64"), None);
    }
}
