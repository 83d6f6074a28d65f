//! `cargo xtask`: every build step of flow, including the nightly/bpf-linker one.
//!
//! Each subcommand lives in its own file; `util` holds the process and path helpers they share.

mod bench;
mod build;
mod install;
mod packages;
mod run;
mod setup;
mod test;
mod util;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, run and test flow"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the eBPF build needs (rust-src, bpf-linker) and mount tracefs. Idempotent.
    Setup,
    /// Build the kernel programs (nightly, bpfel-unknown-none) and print the object's path.
    BuildEbpf,
    /// Build the kernel programs, then the `flow` binary that embeds them.
    Build {
        /// Build `flow` with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build, then run `flow` (as root: directly, otherwise through `sudo -E`).
    Run {
        /// Build `flow` with the release profile.
        #[arg(long)]
        release: bool,
        /// Arguments for `flow`, e.g. `cargo xtask run -- top --once`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the kernel programs, then run every test step (kernel tests run as root).
    Test {
        /// Extra arguments for `cargo test`, e.g. `cargo xtask test -- -p flow-user -- --nocapture`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Measure overhead, cost per event, scale, churn and start-up; write bench/results/.
    Bench(bench::BenchArgs),
    /// Build flow in release and install it with man pages, completions and a systemd unit.
    Install {
        /// Install under this directory (bin/, share/, lib/systemd/system/).
        #[arg(long, default_value = "/usr/local")]
        prefix: std::path::PathBuf,
        /// Lay out this already built `flow` instead of building one.
        #[arg(long)]
        binary: Option<std::path::PathBuf>,
    },
    /// Boot Debian's 6.1 and 6.12 kernels under QEMU and run the kernel tests there, per rung.
    VmTest {
        /// Use this kernel object instead of building one (e.g. a deliberately broken one).
        #[arg(long)]
        object: Option<std::path::PathBuf>,
        /// Only this kernel, by major.minor (`6.1`, `6.12`); repeatable.
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        /// Only this test executable (`kernel_exact`, …); repeatable.
        #[arg(long = "test")]
        tests: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::setup(),
        Command::BuildEbpf => build::build_ebpf().map(|_| ()),
        Command::Build { release } => build::build(release).map(|_| ()),
        Command::Run { release, args } => run::run(release, &args),
        Command::Test { args } => test::test(args),
        Command::Bench(args) => bench::run(&args),
        Command::Install { prefix, binary } => install::install(&prefix, binary.as_deref()),
        Command::VmTest {
            object,
            kernels,
            tests,
        } => vm::vm_test(&vm::Options {
            object,
            kernels,
            tests,
        }),
    };
    if let Err(err) = result {
        // One line, the whole context chain, no backtrace.
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
