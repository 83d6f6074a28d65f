//! `cargo xtask run [--release] -- <flow args>`: build, then become `flow`.

use crate::{
    build::build,
    util::{is_root, sudo_prefix},
};
use anyhow::{Context, Result};
use std::{os::unix::process::CommandExt, process::Command};

pub fn run(release: bool, args: &[String]) -> Result<()> {
    let binary = build(release)?;
    let mut cmd = if is_root() {
        Command::new(&binary)
    } else {
        let prefix = sudo_prefix();
        let mut cmd = Command::new(&prefix[0]);
        cmd.args(&prefix[1..]).arg(&binary);
        cmd
    };
    cmd.args(args);
    // exec: flow gets our pid, signals and terminal, and its exit code is ours.
    let err = cmd.exec();
    Err(err).with_context(|| format!("run: could not start {}", binary.display()))
}
