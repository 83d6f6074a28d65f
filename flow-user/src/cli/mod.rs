//! The `flow` command line: argument parsing, one module per command, and output.

mod args;
mod commands;
mod generate;
mod group;
mod interrupt;
mod listing;
mod output;
mod record;
mod report;
mod serve;
mod session;
mod top;

pub use args::Cli;
pub use commands::run;
pub use interrupt::{Interrupt, Interrupted};
