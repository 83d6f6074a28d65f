//! The tools a user would run instead of flow, installed (full mode only) and started the same
//! way for every run: each one's command, readiness and version.

use super::proc::Spawned;
use anyhow::{bail, Result};
use std::{
    path::Path,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

/// A per-socket byte counter on the same tracepoints flow's tracepoint rung uses.
const BPFTRACE_SCRIPT: &str = "\
tracepoint:sock:sock_send_length /args->protocol == 6 && args->ret > 0/ { @tx[args->sk] = sum(args->ret); }
tracepoint:sock:sock_recv_length /args->protocol == 6 && args->ret > 0/ { @rx[args->sk] = sum(args->ret); }";

/// Debian packages of the peers (`ss` comes with iproute2, always present).
const PACKAGES: &[&str] = &["bpftrace", "nethogs", "iftop"];
/// `cargo install bandwhich` is given this long; beyond it the peer is skipped, with the reason.
const BANDWHICH_BUILD_LIMIT: &str = "600";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Bpftrace,
    Nethogs,
    Iftop,
    Bandwhich,
    SsPoll,
}

pub const ALL: &[Peer] = &[
    Peer::Bpftrace,
    Peer::Nethogs,
    Peer::Iftop,
    Peer::Bandwhich,
    Peer::SsPoll,
];

impl Peer {
    pub fn label(self) -> &'static str {
        match self {
            Peer::Bpftrace => "bpftrace",
            Peer::Nethogs => "nethogs -t",
            Peer::Iftop => "iftop -t",
            Peer::Bandwhich => "bandwhich --raw",
            Peer::SsPoll => "ss -ti each 1 s",
        }
    }

    fn command(self) -> Command {
        let mut cmd;
        match self {
            Peer::Bpftrace => {
                cmd = Command::new("bpftrace");
                // -B line: its stdout is a pipe, and we wait for the "Attaching" line.
                cmd.args(["-B", "line", "-e", BPFTRACE_SCRIPT]);
            }
            Peer::Nethogs => {
                cmd = Command::new("nethogs");
                // -a: without it nethogs refuses loopback ("No devices to monitor").
                cmd.args(["-t", "-a", "-d", "1", "lo"]);
            }
            Peer::Iftop => {
                cmd = Command::new("iftop");
                cmd.args(["-t", "-n", "-N", "-P", "-i", "lo"]);
            }
            Peer::Bandwhich => {
                cmd = Command::new("bandwhich");
                cmd.args(["--raw", "--no-resolve", "-i", "lo"]);
            }
            Peer::SsPoll => {
                // The shell waits for each `ss`, so its children's CPU lands in its cutime.
                cmd = Command::new("sh");
                cmd.args(["-c", "while :; do ss -ti >/dev/null; sleep 1; done"]);
            }
        }
        cmd
    }

    /// Whether the CPU of waited-for children belongs to this peer.
    pub fn counts_children(self) -> bool {
        self == Peer::SsPoll
    }

    /// Starts the peer and waits until it measures.
    pub fn start(self, log: &Path) -> Result<Spawned> {
        let mut proc = Spawned::start(self.label(), &mut self.command(), None, Some(log))?;
        match self {
            Peer::Bpftrace => {
                if proc
                    .wait_line(|l| l.starts_with("Attaching"), Duration::from_secs(60))
                    .is_none()
                {
                    bail!("bpftrace did not attach: {}", proc.tail(3));
                }
                // "Attaching N probes..." comes just before the attach itself.
                thread::sleep(Duration::from_millis(500));
            }
            // The pcap tools print nothing until the first interval; give them one.
            _ => thread::sleep(Duration::from_secs(1)),
        }
        if matches!(proc.wait(Duration::ZERO), Ok(Some(_))) {
            bail!("{} exited at start: {}", self.label(), proc.tail(3));
        }
        Ok(proc)
    }

    pub fn version(self) -> Option<String> {
        let out = |cmd: &mut Command| crate::util::output(cmd.stdin(Stdio::null()));
        match self {
            Peer::Bpftrace => out(Command::new("bpftrace").arg("--version")),
            Peer::Bandwhich => out(Command::new("bandwhich").arg("--version")),
            Peer::SsPoll => out(Command::new("ss").arg("-V")),
            Peer::Nethogs | Peer::Iftop => package_version(self.package()?),
        }
    }

    fn package(self) -> Option<&'static str> {
        match self {
            Peer::Bpftrace => Some("bpftrace"),
            Peer::Nethogs => Some("nethogs"),
            Peer::Iftop => Some("iftop"),
            Peer::Bandwhich | Peer::SsPoll => None,
        }
    }
}

fn package_version(package: &str) -> Option<String> {
    crate::util::output(Command::new("dpkg-query").args(["-W", "-f=${Version}", package]))
        .filter(|v| !v.is_empty())
        .map(|v| format!("{package} {v}"))
}

/// Installs what is missing; returns the peers that can run, and a note for each one that
/// cannot (with the reason) and for what was installed.
pub fn prepare(notes: &mut Vec<String>) -> Vec<Peer> {
    if !crate::packages::missing(PACKAGES).is_empty() {
        // A peer that cannot be had is skipped with the reason, not a failed benchmark.
        match crate::packages::ensure("bench", PACKAGES) {
            Ok(()) => notes.push(format!("installed with apt-get: {}", PACKAGES.join(", "))),
            Err(err) => notes.push(format!("{err:#}")),
        }
    }
    if Peer::Bandwhich.version().is_none() {
        println!("bench: cargo install bandwhich --locked (limit {BANDWHICH_BUILD_LIMIT} s)");
        let built = Command::new("timeout")
            .args([
                BANDWHICH_BUILD_LIMIT,
                "cargo",
                "install",
                "bandwhich",
                "--locked",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match built {
            Ok(out) if out.status.success() => {
                notes.push("installed with cargo install --locked: bandwhich".into());
            }
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let reason = match out.status.code() {
                    Some(124) => format!("did not build within {BANDWHICH_BUILD_LIMIT} s"),
                    _ => err
                        .lines()
                        .rfind(|l| l.contains("error"))
                        .unwrap_or("failed")
                        .to_string(),
                };
                notes.push(format!(
                    "bandwhich skipped: cargo install bandwhich --locked: {reason}"
                ));
            }
            Err(err) => notes.push(format!(
                "bandwhich skipped: cannot run cargo install: {err}"
            )),
        }
    }
    ALL.iter()
        .copied()
        .filter(|peer| {
            let ok = peer.version().is_some();
            if !ok && *peer != Peer::Bandwhich {
                notes.push(format!("{} skipped: not installed", peer.label()));
            }
            ok
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_peer_has_a_distinct_label_and_loopback_command() {
        let labels: std::collections::HashSet<_> = ALL.iter().map(|p| p.label()).collect();
        assert_eq!(labels.len(), ALL.len());
        for peer in ALL {
            let cmd = peer.command();
            let args: Vec<String> = cmd
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            // Only loopback is ever watched.
            if matches!(peer, Peer::Nethogs | Peer::Iftop | Peer::Bandwhich) {
                assert!(args.iter().any(|a| a == "lo"), "{args:?}");
            }
        }
        assert!(BPFTRACE_SCRIPT.contains("sock_recv_length"));
    }
}
