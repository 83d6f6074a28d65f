//! `cargo xtask bench [--quick]`: is flow cheap enough to leave on? (issues 7 and 12)
//!
//! Builds flow in release, then measures on loopback only, every loop bounded in time:
//! overhead against iperf3 next to the peers a user would run instead (`overhead`, `peers`),
//! the BPF cost per event (`bpf`), scale to many connections under `flow history`, `serve` and
//! `top` (`scale`, `hold`, `verbose` reads `flow -v`), churn (`churn`), start-up and its peak
//! memory (`startup`), a UDP blast with and without flow (`udp`); `report` judges the issues'
//! targets, no regression against the last full report (`baseline`) included, and writes
//! `bench/results/<timestamp>.{md,json}`. Raw outputs go to `bench/results/raw/` (ignored by
//! git); `--quick` reports go to `bench/results/quick/` (ignored too: CI runs it every time).

mod baseline;
mod bpf;
mod churn;
mod flow;
mod hold;
mod iperf;
mod issue12;
mod json;
mod overhead;
mod peers;
mod proc;
mod profile;
mod record;
mod report;
mod report_json;
mod results;
mod scale;
mod snmp;
mod startup;
mod stats;
mod udp;
mod udp_blast;
mod udp_report;
mod verbose;
mod walk;

use crate::util::{is_root, output, workspace_root};
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use overhead::Monitor;
use results::Results;
use std::{
    fs,
    path::PathBuf,
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct BenchArgs {
    /// A few seconds with small counts, flow against the baseline only; installs nothing.
    #[arg(long)]
    pub quick: bool,
    /// Alternating baseline/monitor pairs per monitor and write size [default: 5; quick: 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub pairs: Option<u32>,
    /// Seconds per iperf3 run [default: 8; quick: 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub seconds: Option<u32>,
    /// Concurrent connections of a scale run; repeatable [default: 10000 and 100000; quick: 500].
    #[arg(long = "connections")]
    pub connections: Vec<u64>,
    /// Churn: new connections per second [default: 5000; quick: 200].
    #[arg(long)]
    pub churn_rate: Option<u64>,
    /// Churn: for how many seconds [default: 60; quick: 2].
    #[arg(long)]
    pub churn_seconds: Option<u64>,
    /// Churn: how many times; exact only if every run is [default: 5; quick: 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub churn_runs: Option<u32>,
    /// Leave out a part; repeatable.
    #[arg(long, value_enum)]
    pub skip: Vec<Section>,
    /// Measure this flow binary instead of building one from this tree (a build of another
    /// commit, say, for a before/after in one machine state).
    #[arg(long, value_name = "PATH")]
    pub flow_binary: Option<PathBuf>,
    /// Internal: hold connections for a scale run (the benchmark starts these itself).
    #[arg(long, hide = true, value_name = "ADDR,COUNT,ACTIVE")]
    pub hold: Option<String>,
}

impl BenchArgs {
    /// What `cargo xtask test` runs.
    pub fn quick() -> Self {
        BenchArgs {
            quick: true,
            ..BenchArgs::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Section {
    Overhead,
    /// The peers only (flow's own overhead runs stay).
    Peers,
    Scale,
    Churn,
    Startup,
    /// The flight recorder (issue 16).
    Record,
    /// The UDP blast with and without flow, and the UDP programs' cost per event (issue 15).
    Udp,
}

/// The numbers a run uses, defaults filled in.
#[derive(Clone, Debug)]
pub struct Plan {
    pub quick: bool,
    pub pairs: u32,
    pub seconds: u32,
    pub sizes: Vec<&'static str>,
    /// UDP payload bytes per datagram of the UDP blast.
    pub udp_sizes: Vec<&'static str>,
    pub connections: Vec<u64>,
    pub churn_rate: u64,
    pub churn_seconds: u64,
    pub churn_runs: u32,
    /// Seconds flow keeps running after each churn before its memory is read (0: not read).
    pub churn_after: u64,
    pub startup_runs: usize,
    pub skip: Vec<Section>,
}

impl Plan {
    pub fn from(args: &BenchArgs) -> Plan {
        let q = args.quick;
        Plan {
            quick: q,
            pairs: args.pairs.unwrap_or(if q { 1 } else { 5 }),
            seconds: args.seconds.unwrap_or(if q { 1 } else { 8 }),
            sizes: if q { vec!["64"] } else { vec!["64", "128K"] },
            // Small datagrams are the worst case per byte; 1400 B nearly fills an Ethernet frame.
            udp_sizes: if q { vec!["64"] } else { vec!["64", "1400"] },
            connections: if !args.connections.is_empty() {
                args.connections.clone()
            } else if q {
                vec![500]
            } else {
                vec![10_000, 100_000]
            },
            churn_rate: args.churn_rate.unwrap_or(if q { 200 } else { 5000 }),
            churn_seconds: args.churn_seconds.unwrap_or(if q { 2 } else { 60 }),
            churn_runs: args.churn_runs.unwrap_or(if q { 1 } else { 5 }),
            churn_after: if q { 0 } else { 60 },
            startup_runs: if q { 3 } else { 10 },
            skip: args.skip.clone(),
        }
    }

    fn runs(&self, section: Section) -> bool {
        !self.skip.contains(&section)
    }
}

/// What every section shares.
pub struct Ctx {
    pub plan: Plan,
    pub flow: flow::Flow,
    /// Raw outputs of this run.
    pub raw_dir: PathBuf,
    pub rung: Option<String>,
    pub notes: Vec<String>,
    /// Failures of flow's own runs outside the result rows (they fail the command).
    pub errors: Vec<String>,
}

impl Ctx {
    /// A path for a raw output file.
    pub fn raw(&self, name: &str) -> PathBuf {
        self.raw_dir.join(name)
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(spec) = &args.hold {
        return hold::hold(spec);
    }
    if !is_root() {
        bail!("bench loads flow's kernel programs and sets a sysctl: run it as root (sudo -E cargo xtask bench)");
    }
    let plan = Plan::from(args);
    let binary = match &args.flow_binary {
        Some(path) => path
            .canonicalize()
            .with_context(|| format!("bench: --flow-binary {}", path.display()))?,
        None => crate::build::build(true).context("bench: building flow in release")?,
    };
    let unix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let timestamp = report::utc_stamp(unix);
    let results_dir = workspace_root().join("bench/results");
    let out_dir = if plan.quick {
        results_dir.join("quick")
    } else {
        results_dir.clone()
    };
    let raw_dir = results_dir.join("raw").join(&timestamp);
    fs::create_dir_all(&raw_dir).with_context(|| format!("creating {}", raw_dir.display()))?;
    fs::create_dir_all(&out_dir)?;

    let mut ctx = Ctx {
        flow: flow::Flow::probe(&binary)?,
        plan,
        raw_dir,
        rung: None,
        notes: Vec::new(),
        errors: Vec::new(),
    };
    let mut r = Results {
        timestamp,
        quick: ctx.plan.quick,
        ..Results::default()
    };
    r.versions = versions(&ctx.flow);
    if args.flow_binary.is_some() {
        r.versions
            .push(("flow binary".into(), binary.display().to_string()));
    }
    r.before = baseline::load(&results_dir, &r.timestamp);
    if !ctx.flow.has_no_payload {
        ctx.notes.push("flow has no --no-payload flag: only the default configuration (payload capture on) was measured".into());
    }

    measure_all(&mut ctx, &mut r)?;

    r.rung = ctx.rung.take();
    r.notes = std::mem::take(&mut ctx.notes);
    r.notes
        .extend(ctx.errors.iter().map(|e| format!("error: {e}")));
    let md_path = out_dir.join(format!("{}.md", r.timestamp));
    let json_path = out_dir.join(format!("{}.json", r.timestamp));
    fs::write(&md_path, report::markdown(&r))?;
    fs::write(&json_path, json::pretty(&report_json::json(&r)))?;
    println!("\n{}", report::summary_table(&report::targets(&r)));
    println!("bench: report {}", md_path.display());
    println!("bench: raw outputs in {}", ctx.raw_dir.display());
    // Targets are judged in the report; a broken harness or flow is an error.
    let mut failures = errors(&r);
    failures.append(&mut ctx.errors);
    if !failures.is_empty() {
        bail!("bench: {}", failures.join("; "));
    }
    Ok(())
}

/// Every section the plan keeps, cheapest first.
fn measure_all(ctx: &mut Ctx, r: &mut Results) -> Result<()> {
    if ctx.plan.runs(Section::Startup) {
        println!("bench: start-up");
        let runs = ctx.plan.startup_runs;
        r.startup = Some(startup::measure(ctx, runs));
    }
    if ctx.plan.runs(Section::Overhead) {
        measure_overhead(ctx, r)?;
    }
    if ctx.plan.runs(Section::Udp) {
        let (rows, costs) = udp::measure(ctx, &flow_monitors(&ctx.flow));
        r.udp = rows;
        r.udp_costs = costs;
    }
    // The start-up peak, and what scale's memory per connection is counted above.
    if ctx.plan.runs(Section::Startup) || ctx.plan.runs(Section::Scale) {
        println!("bench: idle start (flow serve, nothing to watch)");
        r.idle = Some(startup::idle(ctx));
    }
    if ctx.plan.runs(Section::Scale) {
        for n in ctx.plan.connections.clone() {
            r.scale.push(scale::measure(ctx, n));
        }
        if r.scale
            .iter()
            .flat_map(|s| s.ok_runs())
            .any(|run| run.read_ms.is_empty())
        {
            ctx.notes.push("flow -v printed no per-poll read time in some scale runs: those metrics are missing there".into());
        }
    }
    if ctx.plan.runs(Section::Churn) {
        r.churn = churn::measure(ctx);
    }
    if ctx.plan.runs(Section::Record) {
        r.record = record::measure(ctx);
    }

    Ok(())
}

fn versions(flow: &flow::Flow) -> Vec<(String, String)> {
    vec![
        ("flow".into(), flow.version.clone()),
        (
            "kernel".into(),
            output(Command::new("uname").arg("-r")).unwrap_or_default(),
        ),
        ("iperf3".into(), iperf::version()),
        (
            "bpftool".into(),
            output(Command::new("bpftool").arg("version"))
                .and_then(|v| v.lines().next().map(str::to_string))
                .unwrap_or_else(|| "missing".into()),
        ),
        ("CPUs / load average at start".into(), machine()),
    ]
}

fn measure_overhead(ctx: &mut Ctx, r: &mut Results) -> Result<()> {
    let peers = if ctx.plan.quick || !ctx.plan.runs(Section::Peers) {
        Vec::new()
    } else {
        peers::prepare(&mut ctx.notes)
    };
    for peer in &peers {
        r.versions
            .push((peer.label().into(), peer.version().unwrap_or_default()));
    }
    let mut monitors = flow_monitors(&ctx.flow);
    let mut stats_for = monitors.clone();
    monitors.extend(peers.iter().map(|p| Monitor::Peer(*p)));
    if peers.contains(&peers::Peer::Bpftrace) {
        stats_for.push(Monitor::Peer(peers::Peer::Bpftrace));
    }
    let server = iperf::Server::start(&ctx.raw("iperf3-server.log"))?;
    let sizes = ctx.plan.sizes.clone();
    let (rows, costs) = overhead::measure(ctx, &server, &monitors, &sizes, &stats_for);
    r.overhead = rows;
    r.costs = costs;
    Ok(())
}

/// flow as it runs by default (payload capture on), and with `--no-payload` when it has it.
fn flow_monitors(flow: &flow::Flow) -> Vec<Monitor> {
    let mut monitors = vec![Monitor::Flow {
        label: "flow".into(),
        global: Vec::new(),
    }];
    if flow.has_no_payload {
        monitors.push(Monitor::Flow {
            label: "flow --no-payload".into(),
            global: vec!["--no-payload".into()],
        });
    }
    monitors
}

/// What went wrong in flow's own runs (a peer failing is only a note in the report).
fn errors(r: &Results) -> Vec<String> {
    let mut errors: Vec<String> = r
        .overhead
        .iter()
        .filter(|o| o.tool.starts_with("flow"))
        .filter_map(|o| {
            Some(format!(
                "overhead {} -l {}: {}",
                o.tool,
                o.size,
                o.error.as_ref()?
            ))
        })
        .collect();
    errors.extend(r.udp.iter().filter_map(|u| {
        Some(format!(
            "udp {} -l {}: {}",
            u.tool,
            u.size,
            u.error.as_ref()?
        ))
    }));
    errors.extend(
        r.scale
            .iter()
            .filter_map(|s| Some(format!("scale {}: {}", s.connections, s.error.as_ref()?))),
    );
    for s in &r.scale {
        errors.extend(s.runs.iter().filter_map(|run| {
            Some(format!(
                "scale {} flow {}: {}",
                s.connections,
                run.command,
                run.error.as_ref()?
            ))
        }));
    }
    errors.extend(
        r.churn
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some(format!("churn run {}: {}", i + 1, c.error.as_ref()?))),
    );
    errors.extend(
        r.idle
            .iter()
            .filter_map(|s| Some(format!("idle start: {}", s.error.as_ref()?))),
    );
    errors.extend(
        r.startup
            .iter()
            .filter_map(|s| Some(format!("start-up: {}", s.error.as_ref()?))),
    );
    errors
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cpus} / {}", load.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_plan_is_small_and_full_plan_follows_the_issue() {
        let quick = Plan::from(&BenchArgs::quick());
        assert_eq!((quick.pairs, quick.seconds), (1, 1));
        assert_eq!(quick.sizes, vec!["64"]);
        assert_eq!(quick.udp_sizes, vec!["64"]);
        assert_eq!(quick.connections, vec![500]);
        assert_eq!((quick.churn_rate, quick.churn_seconds), (200, 2));
        assert_eq!((quick.churn_runs, quick.churn_after), (1, 0));
        let full = Plan::from(&BenchArgs::default());
        assert!(full.pairs >= 3);
        assert_eq!(full.sizes, vec!["64", "128K"]);
        assert_eq!(full.udp_sizes, vec!["64", "1400"]);
        assert_eq!(full.connections, vec![10_000, 100_000]);
        assert_eq!((full.churn_rate, full.churn_seconds), (5000, 60));
        assert_eq!((full.churn_runs, full.churn_after), (5, 60));
        let some = Plan::from(&BenchArgs {
            connections: vec![20_000],
            skip: vec![Section::Peers],
            ..BenchArgs::default()
        });
        assert_eq!(some.connections, vec![20_000]);
        assert!(!some.runs(Section::Peers) && some.runs(Section::Scale));
    }
}
