//! `cargo xtask install [--prefix DIR] [--binary PATH]`: flow, its man pages, shell completions
//! and systemd unit under a prefix.
//!
//! The man pages and completions come from the installed binary itself (`flow generate`, a
//! hidden command): the clap definitions live in flow-user, whose build script needs the kernel
//! object, so xtask cannot depend on it without building the eBPF program for every xtask run.
//! Asking the binary also means the pages describe exactly the `--help` of what was installed.
//!
//! `--binary` lays out an already built `flow` instead of building one (tests use it with
//! cargo's own test binary; packagers with theirs); everything after the build is the same code.

use crate::{build::build, util::display};
use anyhow::{bail, Context, Result};
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

/// The unit, with `@FLOW@` standing for the installed binary's absolute path.
///
/// The capabilities were found by running `flow serve` as `nobody` under
/// `setpriv --inh-caps/--ambient-caps/--bounding-set` with growing sets (Linux 6.18), and its
/// system calls under `strace -f` against `systemd-analyze syscall-filter @system-service`.
const UNIT_TEMPLATE: &str = "\
[Unit]
Description=flow: per-connection TCP bandwidth exporter (Prometheus /metrics)
Documentation=man:flow-serve(1)
After=network.target

[Service]
Type=simple
# Exports, and records every connection into the state directory (`flow report` reads it).
ExecStart=@FLOW@ serve --db /var/lib/flow/flow.db
Restart=on-failure
RestartSec=5s
# SIGINT and SIGTERM detach every program and map before flow exits.
KillSignal=SIGTERM

# A fresh uid, no root. Capabilities (each one tried away, as nobody, on Linux 6.18):
#   CAP_BPF             load the kernel programs and create their maps;
#   CAP_PERFMON         tracing programs (fexit, tp_btf, kprobe, tracepoint) and perf events;
#                       without it, or without CAP_BPF, the load is refused;
#   CAP_DAC_READ_SEARCH tracefs (/sys/kernel/tracing is 0700 root: the tracepoint rung finds
#                       no tracefs without it) and other users' /proc/<pid>/fd;
#   CAP_SYS_PTRACE      with CAP_DAC_READ_SEARCH, reading the /proc/<pid>/fd links of other
#                       users' processes: without either the PROCESS column stays `-`.
# Not needed: CAP_SYS_RESOURCE (Linux 5.11+ charges BPF memory to the memory cgroup; older
# kernels get LimitMEMLOCK below), CAP_NET_ADMIN (sock_diag's tcp_info needs none),
# CAP_SYS_ADMIN (only to mount tracefs when it is missing; systemd mounts it at boot).
DynamicUser=yes
AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH CAP_SYS_PTRACE
CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH CAP_SYS_PTRACE
LimitMEMLOCK=infinity
# Where a later recorder keeps its database (/var/lib/flow).
StateDirectory=flow

# Hardening. flow reads /proc (sockets and their owners: no ProtectProc=invisible, no
# ProcSubset=pid), /sys/kernel/btf and tracefs (read-only is enough), and needs the host's
# network namespace (no PrivateNetwork).
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
UMask=0077
# AF_NETLINK: sock_diag; AF_INET/AF_INET6: the exporter's listener.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
# Everything flow calls is in @system-service but bpf(2) and perf_event_open(2). A refused
# call (mount(2) of a missing tracefs) fails with EPERM instead of killing the service.
SystemCallFilter=@system-service bpf perf_event_open
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
";

/// Where each shell looks for completions under a prefix, and the file name it expects.
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "share/bash-completion/completions/flow"),
    ("zsh", "share/zsh/site-functions/_flow"),
    ("fish", "share/fish/vendor_completions.d/flow.fish"),
];

/// Builds flow in release (unless `binary` is given) and lays it out under `prefix`.
pub fn install(prefix: &Path, binary: Option<&Path>) -> Result<()> {
    let binary = match binary {
        Some(binary) => binary.to_path_buf(),
        None => build(true)?,
    };
    layout(prefix, &binary)?;
    println!(
        "install: enable the service with `systemctl daemon-reload && systemctl enable --now flow`"
    );
    Ok(())
}

/// Copies `binary` to `<prefix>/bin/flow` and writes the man pages, completions and unit next to
/// it; returns the installed binary's path.
pub fn layout(prefix: &Path, binary: &Path) -> Result<PathBuf> {
    if !binary.is_file() {
        bail!("install: {} is not a file", binary.display());
    }
    // The unit needs an absolute ExecStart, and systemd has no working directory to resolve
    // a relative one against.
    let prefix = std::path::absolute(prefix)
        .with_context(|| format!("install: resolving {}", prefix.display()))?;

    let bin = prefix.join("bin/flow");
    create_parent(&bin)?;
    // Copied to a temporary name and renamed: replacing a running binary in place fails with
    // ETXTBSY, a rename does not.
    let partial = prefix.join("bin/.flow.partial");
    fs::copy(binary, &partial)
        .with_context(|| format!("install: copying {} to {}", binary.display(), bin.display()))?;
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("install: making {} executable", partial.display()))?;
    fs::rename(&partial, &bin).with_context(|| format!("install: writing {}", bin.display()))?;
    println!("install: {}", bin.display());

    let man = prefix.join("share/man/man1");
    generate(&bin, &[Path::new("man").as_os_str(), man.as_os_str()])?;
    println!("install: {}/flow.1 and one page per command", man.display());

    for (shell, path) in COMPLETIONS {
        let script = generate(&bin, &["completions".as_ref(), shell.as_ref()])?;
        write(&prefix.join(path), &script, 0o644)?;
    }

    let bin_text = bin
        .to_str()
        .context("install: the prefix is not valid UTF-8 (systemd needs it in the unit)")?;
    if bin_text.contains(char::is_whitespace) || bin_text.contains(['%', '$', '"', '\\']) {
        bail!("install: the prefix {bin_text} has characters systemd would expand or split on");
    }
    let unit = UNIT_TEMPLATE.replace("@FLOW@", bin_text);
    write(
        &prefix.join("lib/systemd/system/flow.service"),
        unit.as_bytes(),
        0o644,
    )?;
    Ok(bin)
}

/// Runs `flow generate <args>` and returns its stdout; an error with its stderr otherwise.
fn generate(bin: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>> {
    let mut cmd = Command::new(bin);
    cmd.arg("generate").args(args);
    let out = cmd
        .output()
        .with_context(|| format!("install: could not start `{}`", display(&cmd)))?;
    if !out.status.success() {
        bail!(
            "install: `{}` failed ({}): {}",
            display(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn write(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    create_parent(path)?;
    fs::write(path, contents).with_context(|| format!("install: writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("install: setting the mode of {}", path.display()))?;
    println!("install: {}", path.display());
    Ok(())
}

fn create_parent(path: &Path) -> Result<()> {
    let dir = path.parent().expect("every installed path has a parent");
    fs::create_dir_all(dir).with_context(|| format!("install: creating {}", dir.display()))
}
