//! `cargo xtask test [-- <cargo test args>]`: a list of named steps, run in order.
//!
//! To add a step (e.g. `vm-test`, `bench --quick`), write a `fn(&mut Ctx) -> Result<()>` and
//! append it to `STEPS`. The first failing step stops the run; the command then exits non-zero.

use crate::{
    build::build_ebpf,
    util::{display, is_root, run, sudo_prefix, workspace_root},
};
use anyhow::{Context, Result};
use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

/// What the steps share.
#[derive(Default)]
pub struct Ctx {
    /// Extra arguments for `cargo test`.
    pub cargo_test_args: Vec<String>,
    /// Set by the `build-ebpf` step.
    pub object: Option<PathBuf>,
}

type StepFn = fn(&mut Ctx) -> Result<()>;

/// The hook point: every step `cargo xtask test` runs, in order.
const STEPS: &[(&str, StepFn)] = &[
    // The Debian tools the tests start (servers, clients, checkers), installed when missing.
    ("packages", |_| {
        crate::packages::ensure("packages", &crate::packages::test_packages())
    }),
    ("build-ebpf", step_build_ebpf),
    ("cargo-test", step_cargo_test),
    ("vm-test", step_vm_test),
    // The benchmark's building blocks, small and against the baseline only, so it cannot rot.
    ("bench-quick", |_| {
        crate::bench::run(&crate::bench::BenchArgs::quick())
    }),
];

pub fn test(cargo_test_args: Vec<String>) -> Result<()> {
    let mut ctx = Ctx {
        cargo_test_args,
        object: None,
    };
    let mut results: Vec<(&str, Duration, Result<()>)> = Vec::new();
    for &(name, step) in STEPS {
        println!("==> test step: {name}");
        let started = Instant::now();
        let result = step(&mut ctx);
        let failed = result.is_err();
        results.push((name, started.elapsed(), result));
        if failed {
            break;
        }
    }
    println!("==> test summary");
    let mut failed = None;
    for (name, elapsed, result) in &results {
        let verdict = if result.is_ok() { "ok" } else { "FAILED" };
        println!("{name:<12} {verdict:<7} {:>8.1} s", elapsed.as_secs_f64());
        if let Err(err) = result {
            failed.get_or_insert((*name, format!("{err:#}")));
        }
    }
    for &(name, _) in &STEPS[results.len()..] {
        println!("{name:<12} skipped");
    }
    match failed {
        Some((name, err)) => anyhow::bail!("test step `{name}` failed: {err}"),
        None => Ok(()),
    }
}

fn step_build_ebpf(ctx: &mut Ctx) -> Result<()> {
    ctx.object = Some(build_ebpf()?);
    Ok(())
}

/// `cargo test --workspace` embedding the object. The kernel tests need root: when we are not,
/// the test binaries (not the build, which would leave root-owned files in target/) run
/// through `sudo -E` as cargo's runner.
fn step_cargo_test(ctx: &mut Ctx) -> Result<()> {
    let object = ctx
        .object
        .as_ref()
        .context("no eBPF object (build-ebpf did not run)")?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root())
        .env("FLOW_EBPF_OBJECT", object)
        .arg("test");
    if !selects_packages(&ctx.cargo_test_args) {
        cmd.arg("--workspace");
    }
    if !is_root() {
        cmd.arg("--config").arg(runner_config(&sudo_prefix()));
        println!("cargo-test: not root, test binaries run through sudo -E");
    }
    cmd.args(&ctx.cargo_test_args);
    println!("cargo-test: {}", display(&cmd));
    run(&mut cmd)
}

/// The kernel tests again on Debian's 6.1 and 6.12 kernels under QEMU, every rung they have.
fn step_vm_test(ctx: &mut Ctx) -> Result<()> {
    let object = ctx
        .object
        .clone()
        .context("no eBPF object (build-ebpf did not run)")?;
    crate::vm::vm_test(&crate::vm::Options {
        object: Some(object),
        ..Default::default()
    })
}

/// Whether the cargo part of `args` (before `--`) picks packages itself (`-p`/`--package`),
/// in which case `--workspace` would override the choice.
fn selects_packages(args: &[String]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a.starts_with("-p") || a == "--package" || a.starts_with("--package="))
}

/// A `--config` value making `runner` the runner of every test binary (a TOML array, so values
/// with spaces survive).
fn runner_config(runner: &[String]) -> String {
    let quoted: Vec<String> = runner.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "target.'cfg(target_os = \"linux\")'.runner = [{}]",
        quoted.join(", ")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn package_selection() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(super::selects_packages(&args(&["-p", "flow-user"])));
        assert!(super::selects_packages(&args(&["-pflow-user"])));
        assert!(super::selects_packages(&args(&[
            "--package=flow-user",
            "--release"
        ])));
        assert!(!super::selects_packages(&args(&["--release", "--", "-p"])));
        assert!(!super::selects_packages(&args(&[])));
    }

    #[test]
    fn runner_config_is_a_toml_array() {
        let runner = ["sudo", "-E", "env", "PATH=/a b:/c\"d"].map(String::from);
        assert_eq!(
            super::runner_config(&runner),
            r#"target.'cfg(target_os = "linux")'.runner = ["sudo", "-E", "env", "PATH=/a b:/c\"d"]"#
        );
    }
}
