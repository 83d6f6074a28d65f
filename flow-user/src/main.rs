//! The `flow` binary: parse, run, and turn every failure into one line and an exit code.

use std::process::ExitCode;

use clap::{error::ErrorKind, Parser};
use flow_user::cli::{self, Cli};

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        eprintln!("flow: internal error: {message}");
    }));

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("flow: no command given (try `flow --help`)");
            return ExitCode::from(2);
        }
        Err(err) => {
            let text = err.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("flow: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let level = match cli.global.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format_target(false)
        .init();

    let interrupt = match cli::Interrupt::install() {
        Ok(interrupt) => interrupt,
        Err(err) => {
            eprintln!("flow: error: cannot install signal handlers: {err}");
            return ExitCode::FAILURE;
        }
    };
    match cli::run(cli, interrupt.clone()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is::<cli::Interrupted>() || interrupt.raised() => ExitCode::from(130),
        // `flow top | head`: the reader has all it wanted.
        Err(err) if broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("flow: error: {}", one_line(&format!("{err:#}")));
            ExitCode::FAILURE
        }
    }
}

fn broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
