//! `flow generate` (hidden): man pages and shell completions from the clap definitions.
//!
//! Why a hidden command in `flow` rather than code in xtask: the definitions live in the
//! `flow_user` crate, whose build script needs the kernel object, so xtask depending on it would
//! drag the eBPF build into every xtask build. `cargo xtask install` instead runs this command
//! on the binary it has just built, so the pages and scripts describe exactly that binary.

use std::{fs, io::Write};

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::args::{Cli, Generate};

pub fn run(what: &Generate) -> Result<()> {
    match what {
        Generate::Man { dir } => {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))
        }
        Generate::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut visible(Cli::command()), "flow", &mut script);
            std::io::stdout()
                .lock()
                .write_all(&script)
                .context("cannot write the completion script")
        }
    }
}

/// `command` without its hidden subcommands: the shells' generators list hidden ones too, and
/// `flow generate` is for the installer, not for tab completion. Global options still reach
/// every subcommand (they propagate when the copy is built).
fn visible(command: clap::Command) -> clap::Command {
    let mut copy = clap::Command::new("flow")
        .version(env!("CARGO_PKG_VERSION"))
        .args(command.get_arguments().cloned())
        .subcommands(
            command
                .get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .cloned(),
        )
        .subcommand_required(command.is_subcommand_required_set())
        .propagate_version(command.is_propagate_version_set());
    if let Some(about) = command.get_about() {
        copy = copy.about(about.clone());
    }
    copy
}
