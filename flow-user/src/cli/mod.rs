//! The `flow` command line: argument parsing, one function per command, and output.

mod args;
mod commands;
mod output;

pub use args::Cli;
pub use commands::{run, Interrupt, Interrupted};
