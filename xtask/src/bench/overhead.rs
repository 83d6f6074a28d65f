//! Overhead: iperf3 over loopback with and without a monitor, in alternating pairs, and the
//! cost per event of each monitor's BPF programs from `kernel.bpf_stats_enabled`.
//!
//! Pairs go round-robin over the monitors (B m1 B m2 … then the next pair), so slow drift
//! on a shared machine spreads over every monitor instead of hitting the last one. The
//! bpf_stats runs are separate runs after the pairs: the stats add two clock reads per
//! program run, which would bias the throughput ratios against BPF-based monitors.

use super::{
    bpf::{self, StatsGuard},
    flow::Running,
    iperf::Server,
    peers::Peer,
    proc::{CpuClock, Spawned},
    results::{Cost, Overhead},
    Ctx,
};
use anyhow::Result;
use std::{thread, time::Duration};

/// Something watching the traffic.
#[derive(Clone, Debug)]
pub enum Monitor {
    /// flow with these global flags (e.g. `--no-payload`).
    Flow {
        label: String,
        global: Vec<String>,
    },
    Peer(Peer),
}

impl Monitor {
    pub fn label(&self) -> String {
        match self {
            Monitor::Flow { label, .. } => label.clone(),
            Monitor::Peer(peer) => peer.label().to_string(),
        }
    }
}

enum Active {
    Flow(Running),
    Peer(Spawned, Peer),
}

/// One monitored run of a load (an iperf3 client, the UDP blast).
pub struct Monitored<T> {
    pub load: T,
    pub cores: f64,
    pub programs: Vec<bpf::ProgStats>,
    pub warnings: Vec<String>,
}

/// Measures every monitor at every size; returns one row per (monitor, size) and the costs.
pub fn measure(
    ctx: &mut Ctx,
    server: &Server,
    monitors: &[Monitor],
    sizes: &[&str],
    stats_for: &[Monitor],
) -> (Vec<Overhead>, Vec<Cost>) {
    let seconds = ctx.plan.seconds;
    let mut rows: Vec<Overhead> = Vec::new();
    for size in sizes {
        for monitor in monitors {
            rows.push(Overhead {
                tool: monitor.label(),
                size: size.to_string(),
                ..Overhead::default()
            });
        }
    }
    for pair in 0..ctx.plan.pairs {
        for (s, size) in sizes.iter().enumerate() {
            for (m, monitor) in monitors.iter().enumerate() {
                let row = &mut rows[s * monitors.len() + m];
                if row.error.is_some() {
                    continue;
                }
                let tag = format!("{}-l{size}-pair{pair}", slug(&row.tool));
                println!(
                    "bench: overhead {} -l {size} pair {}/{}",
                    row.tool,
                    pair + 1,
                    ctx.plan.pairs
                );
                let baseline = server.client(seconds, size, &ctx.raw(&format!("{tag}-base.json")));
                let raw = ctx.raw(&format!("{tag}-mon.json"));
                let monitored = baseline.and_then(|b| {
                    run_monitored(ctx, monitor, false, &tag, || {
                        server.client(seconds, size, &raw)
                    })
                    .map(|m| (b, m))
                });
                match monitored {
                    Ok((base, m)) => {
                        row.ratios.push(m.load / base);
                        row.cores.push(m.cores);
                        row.baseline_gbps.push(base / 1e9);
                        row.warnings.extend(m.warnings);
                    }
                    Err(err) => row.error = Some(format!("{err:#}")),
                }
            }
        }
    }
    let mut costs = Vec::new();
    for size in sizes {
        for monitor in stats_for {
            println!("bench: bpf_stats {} -l {size}", monitor.label());
            let tag = format!("{}-l{size}-stats", slug(&monitor.label()));
            let raw = ctx.raw(&format!("{tag}-mon.json"));
            let measured = StatsGuard::enable().and_then(|_guard| {
                run_monitored(ctx, monitor, true, &tag, || {
                    server.client(seconds, size, &raw)
                })
                // _guard drops here: the sysctl is back before anything else runs.
            });
            match measured {
                Ok(m) => costs.push(Cost {
                    tool: monitor.label(),
                    size: size.to_string(),
                    seconds: f64::from(seconds),
                    programs: m.programs,
                }),
                Err(err) => {
                    let line = format!("bpf_stats run of {} -l {size}: {err:#}", monitor.label());
                    // flow's own runs failing means the harness or flow broke; a peer's is a note.
                    if matches!(monitor, Monitor::Flow { .. }) {
                        ctx.errors.push(line);
                    } else {
                        ctx.notes.push(line);
                    }
                }
            }
        }
    }
    (rows, costs)
}

/// Starts `monitor`, runs `load` under it (about `ctx.plan.seconds` long), and stops it; with
/// `stats`, reads its programs' counters while it still holds them.
pub fn run_monitored<T>(
    ctx: &mut Ctx,
    monitor: &Monitor,
    stats: bool,
    tag: &str,
    load: impl FnOnce() -> Result<T>,
) -> Result<Monitored<T>> {
    let seconds = ctx.plan.seconds;
    let log = ctx.raw(&format!("{tag}.log"));
    let mut active = match monitor {
        Monitor::Flow { global, .. } => {
            // The window outlasts the iperf3 run so flow is alive while we read its counters.
            let window = format!("{}s", seconds + 2);
            let out = std::fs::File::create(ctx.raw(&format!("{tag}.out")))?;
            let args = ["bandwidth", "--window", &window].map(String::from);
            let running = ctx.flow.start(global, &args, Some(out), Some(&log))?;
            ctx.rung.get_or_insert_with(|| running.rung.clone());
            Active::Flow(running)
        }
        Monitor::Peer(peer) => Active::Peer(peer.start(&log)?, *peer),
    };
    let (pid, children) = match &active {
        Active::Flow(r) => (r.proc.pid(), false),
        Active::Peer(p, peer) => (p.pid(), peer.counts_children()),
    };
    // Let the monitor take its first sample before the traffic starts.
    thread::sleep(Duration::from_millis(300));
    let clock = CpuClock::start(&[pid], children);
    let load = load();
    let cores = clock.cores();
    let programs = if stats {
        bpf::programs_of(pid)
    } else {
        Ok(Vec::new())
    };
    let warnings = match active {
        Active::Flow(running) => {
            running
                .finish(Duration::from_secs(u64::from(seconds) + 60))?
                .warnings
        }
        Active::Peer(ref mut proc, _) => {
            proc.stop("INT", Duration::from_secs(5));
            Vec::new()
        }
    };
    Ok(Monitored {
        load: load?,
        cores,
        programs: programs?,
        warnings,
    })
}

/// A file-name-safe form of a label.
pub fn slug(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs_are_file_names() {
        assert_eq!(super::slug("ss -ti each 1 s"), "ss-ti-each-1-s");
        assert_eq!(super::slug("flow --no-payload"), "flow-no-payload");
    }
}
