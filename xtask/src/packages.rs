//! The Debian packages flow's tests and benchmark use: one list, installed when missing.
//!
//! `cargo xtask test` must pass on a fresh machine that has only rustup, so every tool a test
//! starts (a real server, a real client, a checker) is installed here, by the test command
//! itself: `apt-get update` once, then `apt-get install --no-install-recommends`, as root
//! directly and through `sudo` otherwise.

use crate::util::{display, is_root, output};
use anyhow::{bail, Result};
use std::process::{Command, Stdio};

/// What the tests run, and why (the one place this list lives).
pub const TEST_PACKAGES: &[(&str, &str)] = &[
    (
        "bpftool",
        "checks that detaching leaves no program behind; BPF cost per event",
    ),
    ("iperf3", "loopback load"),
    ("python3", "real HTTP server (http.server)"),
    ("curl", "real HTTP client"),
    ("openssl", "TLS server and client (s_server, s_client)"),
    ("tmux", "drives `flow top` as a terminal"),
    ("prometheus", "promtool checks the exporter's output"),
    (
        "apache2-utils",
        "htpasswd makes bcrypt hashes for --web-config",
    ),
    ("util-linux", "setpriv runs flow unprivileged"),
    (
        "iproute2",
        "ip netns for tests in their own network namespaces",
    ),
    ("systemd", "systemd-analyze verifies the installed unit"),
    (
        "sqlite3",
        "opens the flight recorder's store: PRAGMA integrity_check after kill -9",
    ),
    (
        "dnsmasq-base",
        "a real DNS server whose answers name remote addresses",
    ),
    ("bind9-dnsutils", "dig, the DNS client"),
    (
        "python3-pip",
        "installs aioquic, a real QUIC client whose Initials the parser and the kernel tests read",
    ),
    ("qemu-system-x86", "boots Debian kernels for vm-test"),
    ("busybox-static", "the VM's userland"),
    ("cpio", "packs the VM's initramfs"),
];

/// The packages of `list` that are not installed.
pub fn missing<'a>(list: &[&'a str]) -> Vec<&'a str> {
    list.iter().copied().filter(|p| !installed(p)).collect()
}

/// Installs every package of `list` that is missing, one line per action; an error naming the
/// packages that could not be had.
pub fn ensure(who: &str, list: &[&str]) -> Result<()> {
    let missing = missing(list);
    if missing.is_empty() {
        return Ok(());
    }
    let names = missing.join(" ");
    let apt = |args: &[&str]| -> bool {
        let mut cmd = apt_command();
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        println!("{who}: {}", display(&cmd));
        cmd.stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // A fresh machine has no package lists: without `update` apt finds nothing.
    if !apt(&["update", "-q"]) {
        println!("{who}: apt-get update failed; trying the lists this machine has");
    }
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&missing);
    if !apt(&install) {
        // One by one, to name the ones that cannot be had.
        let failed: Vec<&str> = missing
            .iter()
            .copied()
            .filter(|p| !apt(&["install", "-y", "-q", "--no-install-recommends", p]))
            .collect();
        if !failed.is_empty() {
            bail!(
                "Debian package(s) {} could not be installed (apt-get install failed{}); \
                 install them by hand and run again",
                failed.join(", "),
                if is_root() { "" } else { ", through sudo" }
            );
        }
    }
    let still = self::missing(&missing);
    if !still.is_empty() {
        bail!(
            "Debian package(s) {} still not installed after apt-get install",
            still.join(", ")
        );
    }
    println!("{who}: installed {names}");
    Ok(())
}

/// `apt-get`, through `sudo` when we are not root.
fn apt_command() -> Command {
    if is_root() {
        Command::new("apt-get")
    } else {
        let mut cmd = Command::new("sudo");
        cmd.arg("apt-get");
        cmd
    }
}

pub fn installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status == "install ok installed")
}

/// The names of [`TEST_PACKAGES`].
pub fn test_packages() -> Vec<&'static str> {
    TEST_PACKAGES.iter().map(|(name, _)| *name).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_list_has_no_duplicates_and_says_why() {
        let mut names = super::test_packages();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), super::TEST_PACKAGES.len());
        assert!(super::TEST_PACKAGES.iter().all(|(_, why)| !why.is_empty()));
    }
}
