//! Dispatch: hand each command the monitor options built from the global flags.

use anyhow::Result;

use super::{
    args::{Cli, Command},
    interrupt::Interrupt,
    listing, serve,
    session::{monitor_options, open_monitor},
    top,
};

pub fn run(cli: Cli, interrupt: Interrupt) -> Result<()> {
    let options = monitor_options(&cli.global);
    match cli.command {
        Command::Top(args) => top::run(&args, options, &interrupt),
        Command::Serve(args) => serve::run(&args, options, &interrupt),
        Command::Record(args) => super::record::run(&args, options, &interrupt),
        Command::Report(args) => super::report::run(&args),
        Command::Generate { what } => super::generate::run(&what),
        Command::List(command) => {
            let mut monitor = open_monitor(&options, &interrupt)?;
            listing::run(command, &mut monitor)
        }
    }
}
