//! Helpers shared by the subcommands: where things are, who we are, running processes.

use anyhow::{bail, Context, Result};
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// The workspace root (the parent of `xtask/`), so every command works from any cwd.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// The userspace target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                env::current_dir().unwrap_or_default().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Whether the effective uid is 0 (read from /proc, falling back to `id -u`).
pub fn is_root() -> bool {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(euid) = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
        {
            return euid == "0";
        }
    }
    output(Command::new("id").arg("-u")).is_some_and(|uid| uid == "0")
}

/// The command as a shell-like line, for messages.
pub fn display(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` with inherited stdio; an error unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// The trimmed stdout of `cmd` when it starts and exits 0, else `None` (stderr is discarded).
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(std::process::Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `sudo -E` plus `env` assignments that keep the toolchain reachable: sudo's `secure_path`
/// replaces PATH even with `-E`, and CARGO_HOME/RUSTUP_HOME default to the caller's home.
pub fn sudo_prefix() -> Vec<String> {
    let mut prefix = vec!["sudo".to_string(), "-E".to_string(), "env".to_string()];
    let home = env::var("HOME").unwrap_or_default();
    let keep = [
        ("PATH", env::var("PATH").ok()),
        (
            "CARGO_HOME",
            env::var("CARGO_HOME")
                .ok()
                .or_else(|| Some(format!("{home}/.cargo"))),
        ),
        (
            "RUSTUP_HOME",
            env::var("RUSTUP_HOME")
                .ok()
                .or_else(|| Some(format!("{home}/.rustup"))),
        ),
    ];
    for (name, value) in keep {
        if let Some(value) = value {
            prefix.push(format!("{name}={value}"));
        }
    }
    prefix
}
