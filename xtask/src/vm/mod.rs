//! `cargo xtask vm-test`: the kernel tests on other kernels, booted under QEMU.
//!
//! The host kernel only lets the tracepoint rungs attach (no kprobes, fentry denied), so the
//! fentry and kprobe rungs are tested here (and every rung on a second kernel): stock Debian kernels boot under QEMU TCG with a
//! busybox initramfs, and the same test executables run inside, once per rung each kernel has.
//! One file per step: `tools` installs QEMU & co, `kernels` fetches the kernels, `binaries`
//! builds the static tests, `initramfs` packs them with `init.sh`, `boot` runs QEMU and parses
//! the console. This file holds the plan and the report.

mod binaries;
mod boot;
mod initramfs;
mod kernels;
mod tools;

use crate::{build::build_ebpf, util::target_dir};
use anyhow::{bail, Result};
use boot::Line;
use kernels::Kernel;
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

/// Meta packages whose current kernel is tested: Debian bookworm's default (6.1, before the
/// sock length tracepoints) and its 6.12 (all four rungs). Both come from bookworm-security.
const KERNEL_PACKAGES: &[&str] = &["linux-image-amd64", "linux-image-6.12-amd64"];
/// Run once per rung, with that rung forced (`FLOW_TEST_RUNG`).
const RUNG_TESTS: &[&str] = &[
    "kernel_exact",
    "kernel_short_lived",
    "kernel_slow_sender",
    "kernel_socket_table",
    // Sequence counting on the typed rungs (sendfile goes through tcp_sendpage on 6.1).
    "kernel_paths",
    // UDP flows (cgroup_skb on the cgroup v2 root, which init.sh mounts), beside each rung.
    "kernel_udp",
];
/// Run once per kernel: it walks the ladder itself and checks the pick (`FLOW_EXPECT_RUNG`).
const LADDER_TEST: &str = "kernel_ladder";
/// kernel_detach and kernel_bad_conditions are host-only: they need bpftool and setpriv, which
/// the busybox userland does not have; so is kernel_udp_dns (dnsmasq, dig and the `flow`
/// binary, which the VM does not have either).
///
/// Seconds one test executable may run inside the VM (the slowest takes ~20 s under TCG).
const TEST_LIMIT: u64 = 120;
/// A VM that prints nothing of ours for this long (boot included) is killed: it hangs.
const QUIET_LIMIT: Duration = Duration::from_secs(TEST_LIMIT + 60);

#[derive(Default)]
pub struct Options {
    /// A prebuilt kernel object instead of `build-ebpf`'s (e.g. a deliberately broken one).
    pub object: Option<PathBuf>,
    /// Only these kernels, by `major.minor` (e.g. `6.1`); empty: all.
    pub kernels: Vec<String>,
    /// Only these test executables; empty: all.
    pub tests: Vec<String>,
}

/// What one VM runs, handed to `/init` on the kernel command line.
struct Plan {
    /// The rung the ladder must pick.
    expect: &'static str,
    ladder: Option<String>,
    rungs: Vec<&'static str>,
    tests: Vec<String>,
    absent: Vec<&'static str>,
}

impl Plan {
    /// Every Debian kernel tested has BTF trampolines and kprobes built in, so fentry is the
    /// ladder's pick and both rungs can be forced; `sock_{send,recv}_length`, which the tp_btf
    /// and tracepoint rungs hook, came in 6.3.
    fn new(version: (u32, u32), tests: &[String]) -> Plan {
        let sock_length = ["tp_btf", "tracepoint"];
        let (mut rungs, mut absent) = (vec!["fentry", "kprobe"], vec![]);
        if version >= (6, 3) {
            rungs.extend(sock_length);
        } else {
            absent.extend(sock_length);
        }
        Plan {
            expect: "fentry",
            ladder: tests.iter().find(|t| *t == LADDER_TEST).cloned(),
            rungs,
            tests: tests
                .iter()
                .filter(|t| *t != LADDER_TEST)
                .cloned()
                .collect(),
            absent,
        }
    }

    fn append(&self) -> String {
        // Unknown key=value words reach /init as environment variables (see init.sh).
        format!(
            "console=ttyS0 panic=-1 oops=panic loglevel=4 flow_expect={} flow_ladder={} \
             flow_rungs={} flow_tests={} flow_absent={} flow_timeout={TEST_LIMIT}",
            self.expect,
            self.ladder.as_deref().unwrap_or(""),
            self.rungs.join(","),
            self.tests.join(","),
            self.absent.join(","),
        )
    }

    /// (rung, test) of every result line the VM must print.
    fn cells(&self) -> Vec<(String, String)> {
        let mut cells: Vec<(String, String)> = Vec::new();
        if let Some(ladder) = &self.ladder {
            cells.push(("ladder".into(), ladder.clone()));
        }
        for rung in &self.rungs {
            for test in &self.tests {
                cells.push((rung.to_string(), test.clone()));
            }
        }
        for rung in &self.absent {
            cells.push((rung.to_string(), "absent".into()));
        }
        cells
    }
}

/// One (kernel, rung, test) of the matrix.
struct Cell {
    kernel: String,
    rung: String,
    test: String,
    passed: bool,
    text: String,
    log: Vec<String>,
}

/// One program's counters from `kernel_slow_sender`.
struct Stat {
    kernel: String,
    rung: String,
    prog: String,
    runs: u64,
    nanos: u64,
}

pub fn vm_test(options: &Options) -> Result<()> {
    let started = Instant::now();
    tools::ensure()?;
    let object = match &options.object {
        Some(object) => object.canonicalize()?,
        None => build_ebpf()?,
    };
    let dir = target_dir().join("vm");
    let kernels: Vec<Kernel> = kernels::fetch(KERNEL_PACKAGES, &dir.join("kernels"))?
        .into_iter()
        .filter(|k| {
            let short = format!("{}.{}", k.version.0, k.version.1);
            options.kernels.is_empty() || options.kernels.contains(&short)
        })
        .collect();
    if kernels.is_empty() {
        bail!("no kernel matches {:?}", options.kernels);
    }
    let tests: Vec<String> = RUNG_TESTS
        .iter()
        .chain([&LADDER_TEST])
        .map(|t| t.to_string())
        .filter(|t| options.tests.is_empty() || options.tests.contains(t))
        .collect();
    if tests.is_empty() {
        bail!("no test matches {:?}", options.tests);
    }
    let binaries = binaries::build(&object, &tests, &dir.join("cargo"))?;
    let initramfs = initramfs::build(&binaries, &dir)?;
    println!("vm-test: ready in {:.1} s", started.elapsed().as_secs_f64());

    let (mut cells, mut stats, mut unfinished) = (Vec::new(), Vec::new(), Vec::new());
    // One VM at a time: TCG is CPU-bound and the machine is shared.
    for kernel in &kernels {
        let plan = Plan::new(kernel.version, &tests);
        let log = dir.join(format!("console-{}.log", kernel.release));
        println!(
            "vm-test: booting {} (console: {})",
            kernel.release,
            log.display()
        );
        let vm_started = Instant::now();
        let run = boot::run(
            &kernel.vmlinuz,
            &initramfs,
            &plan.append(),
            &log,
            QUIET_LIMIT,
            |line| progress(&kernel.release, line),
        )?;
        println!(
            "vm-test: {} done in {:.1} s",
            kernel.release,
            vm_started.elapsed().as_secs_f64()
        );
        collect(kernel, &plan, &run, &mut cells, &mut stats);
        if let Some(why) = &run.unfinished {
            unfinished.push((kernel.release.clone(), why.clone(), run.tail.clone()));
        }
    }
    report(&cells, &stats, &unfinished);
    let failed = cells.iter().filter(|c| !c.passed).count();
    println!("vm-test: {} passed, {failed} failed", cells.len() - failed);
    println!(
        "vm-test: wall time {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if failed > 0 || !unfinished.is_empty() {
        bail!("{failed} of {} VM test runs failed", cells.len());
    }
    Ok(())
}

fn progress(kernel: &str, line: &Line) {
    match line.kind.as_str() {
        "boot" => println!("  {kernel}: booted ({})", line.rest),
        "result" => println!(
            "  {kernel}: {:<10} {:<20} {} {}",
            line.get("rung").unwrap_or("?"),
            line.get("test").unwrap_or("?"),
            line.get("status").unwrap_or("?"),
            line.get("secs")
                .map(|s| format!("{s} s"))
                .unwrap_or_default(),
        ),
        _ => {}
    }
}

/// Turns the VM's lines into cells, one per planned (rung, test); a planned one the VM never
/// reported (it hung or died) is a failed cell too.
fn collect(
    kernel: &Kernel,
    plan: &Plan,
    run: &boot::Run,
    cells: &mut Vec<Cell>,
    stats: &mut Vec<Stat>,
) {
    let mut log = Vec::new();
    let mut results = Vec::new();
    for line in &run.lines {
        match line.kind.as_str() {
            "log" => log.push(line.rest.clone()),
            "stats" => stats.push(Stat {
                kernel: kernel.release.clone(),
                rung: line.get("rung").unwrap_or("?").into(),
                prog: line.get("prog").unwrap_or("?").into(),
                runs: line
                    .get("run_cnt")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                nanos: line
                    .get("run_time_ns")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            }),
            "result" => results.push((line, std::mem::take(&mut log))),
            _ => {}
        }
    }
    for (rung, test) in plan.cells() {
        let found = results
            .iter()
            .find(|(l, _)| l.get("rung") == Some(&rung) && l.get("test") == Some(&test));
        let cell = match found {
            Some((line, log)) => {
                let passed = line.get("status") == Some("pass");
                let secs = line
                    .get("secs")
                    .map(|s| format!(" {s} s"))
                    .unwrap_or_default();
                Cell {
                    kernel: kernel.release.clone(),
                    rung,
                    test,
                    passed,
                    text: format!("{}{secs}", if passed { "pass" } else { "FAIL" }),
                    log: log.clone(),
                }
            }
            None => Cell {
                kernel: kernel.release.clone(),
                rung,
                test,
                passed: false,
                text: "MISSING".into(),
                log: vec![],
            },
        };
        cells.push(cell);
    }
}

/// The matrix (a row per kernel and rung, a column per test), the per-program costs, then the
/// output of whatever failed.
fn report(cells: &[Cell], stats: &[Stat], unfinished: &[(String, String, Vec<String>)]) {
    let mut columns: Vec<&str> = Vec::new();
    let mut rows: Vec<(&str, &str)> = Vec::new();
    for cell in cells {
        if !columns.contains(&cell.test.as_str()) {
            columns.push(&cell.test);
        }
        if !rows.contains(&(&cell.kernel, &cell.rung)) {
            rows.push((&cell.kernel, &cell.rung));
        }
    }
    println!("==> vm-test matrix (kernel × rung × test)");
    let mut header = format!("{:<22} {:<11}", "kernel", "rung");
    for column in &columns {
        header.push_str(&format!(" {:<14}", column.trim_start_matches("kernel_")));
    }
    println!("{}", header.trim_end());
    for (kernel, rung) in rows {
        let mut row = format!("{kernel:<22} {rung:<11}");
        for column in &columns {
            let text = cells
                .iter()
                .find(|c| c.kernel == kernel && c.rung == rung && c.test == *column)
                .map_or("-", |c| c.text.as_str());
            row.push_str(&format!(" {text:<14}"));
        }
        println!("{}", row.trim_end());
    }

    if !stats.is_empty() {
        println!("==> per-program cost in the VMs (kernel_slow_sender; TCG-emulated CPU, so compare rungs, not machines)");
        println!(
            "{:<22} {:<11} {:<18} {:>8} {:>12} {:>9}",
            "kernel", "rung", "program", "run_cnt", "run_time_ns", "ns/run"
        );
        for s in stats {
            println!(
                "{:<22} {:<11} {:<18} {:>8} {:>12} {:>9}",
                s.kernel,
                s.rung,
                s.prog,
                s.runs,
                s.nanos,
                s.nanos.checked_div(s.runs).unwrap_or(0)
            );
        }
    }

    for cell in cells.iter().filter(|c| !c.passed && !c.log.is_empty()) {
        println!(
            "==> {} {} {}: output tail",
            cell.kernel, cell.rung, cell.test
        );
        for line in &cell.log {
            println!("    {line}");
        }
    }
    for (kernel, why, tail) in unfinished {
        println!("==> {kernel}: the VM did not finish: {why}; console tail:");
        for line in tail {
            println!("    {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Plan;

    #[test]
    fn plans_follow_the_kernel_version() {
        let tests: Vec<String> = ["kernel_exact", "kernel_ladder"].map(String::from).to_vec();
        let old = Plan::new((6, 1), &tests);
        assert_eq!(old.rungs, ["fentry", "kprobe"]);
        assert_eq!(old.absent, ["tp_btf", "tracepoint"]);
        let cells: Vec<String> = old
            .cells()
            .iter()
            .map(|(r, t)| format!("{r}/{t}"))
            .collect();
        assert_eq!(
            cells,
            [
                "ladder/kernel_ladder",
                "fentry/kernel_exact",
                "kprobe/kernel_exact",
                "tp_btf/absent",
                "tracepoint/absent"
            ]
        );
        assert!(old
            .append()
            .contains(" flow_rungs=fentry,kprobe flow_tests=kernel_exact "));
        let new = Plan::new((6, 12), &tests);
        assert_eq!(new.rungs, ["fentry", "kprobe", "tp_btf", "tracepoint"]);
        assert!(new.absent.is_empty());
    }
}
