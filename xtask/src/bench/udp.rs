//! Issue 15's cost lines: the UDP blast (`udp_blast`) on 127.0.0.1 without flow and with it, in
//! alternating pairs as the TCP overhead section does (`flow bandwidth`, payload capture on as
//! by default, then `--no-payload`), and the ns per event of flow's UDP programs from
//! `kernel.bpf_stats_enabled` in one separate run per configuration and size (the stats add two
//! clock reads per program run, which would bias the ratios).

use super::{
    bpf::StatsGuard,
    overhead::{run_monitored, slug, Monitor},
    results::{UdpCost, UdpOverhead},
    snmp::Packets,
    udp_blast::{blast, Blast},
    Ctx,
};
use anyhow::{Context, Result};
use std::time::Duration;

/// Measures every configuration at every size; one row per (configuration, size), and the costs.
pub fn measure(ctx: &mut Ctx, monitors: &[Monitor]) -> (Vec<UdpOverhead>, Vec<UdpCost>) {
    let sizes = ctx.plan.udp_sizes.clone();
    let mut rows: Vec<UdpOverhead> = Vec::new();
    for size in &sizes {
        for monitor in monitors {
            rows.push(UdpOverhead {
                tool: monitor.label(),
                size: size.to_string(),
                ..UdpOverhead::default()
            });
        }
    }
    // Round-robin, as the TCP pairs: drift on a shared machine spreads over every row.
    for pair in 0..ctx.plan.pairs {
        for (s, size) in sizes.iter().enumerate() {
            for (m, monitor) in monitors.iter().enumerate() {
                let index = s * monitors.len() + m;
                if rows[index].error.is_some() {
                    continue;
                }
                println!(
                    "bench: udp {} -l {size} pair {}/{}",
                    monitor.label(),
                    pair + 1,
                    ctx.plan.pairs
                );
                let tag = format!("udp-{}-l{size}-pair{pair}", slug(&monitor.label()));
                match one_pair(ctx, monitor, size, &tag) {
                    Ok(pair) => pair.add_to(&mut rows[index]),
                    Err(err) => rows[index].error = Some(format!("{err:#}")),
                }
            }
        }
    }
    let mut costs = Vec::new();
    for size in &sizes {
        for monitor in monitors {
            println!("bench: udp bpf_stats {} -l {size}", monitor.label());
            let tag = format!("udp-{}-l{size}-stats", slug(&monitor.label()));
            let measured = StatsGuard::enable().and_then(|_guard| {
                stats_run(ctx, monitor, size, &tag)
                // _guard drops here: the sysctl is back before anything else runs.
            });
            match measured {
                Ok(cost) => costs.push(cost),
                Err(err) => ctx.errors.push(format!(
                    "udp bpf_stats run of {} -l {size}: {err:#}",
                    monitor.label()
                )),
            }
        }
    }
    (rows, costs)
}

/// A baseline blast and the blast under flow right after it.
struct Pair {
    base: Blast,
    with: Blast,
    cores: f64,
    warnings: Vec<String>,
}

impl Pair {
    fn add_to(self, row: &mut UdpOverhead) {
        row.ratios.push(ratio(
            self.with.received_per_s(),
            self.base.received_per_s(),
        ));
        row.sent_ratios
            .push(ratio(self.with.sent_per_s(), self.base.sent_per_s()));
        row.cpu_ratios.push(ratio(
            self.with.sent_per_cpu_s(),
            self.base.sent_per_cpu_s(),
        ));
        row.baseline_rate.push(self.base.received_per_s());
        row.baseline_loss.push(self.base.loss());
        row.loss.push(self.with.loss());
        row.cores.push(self.cores);
        row.warnings.extend(self.warnings);
    }
}

fn one_pair(ctx: &mut Ctx, monitor: &Monitor, size: &str, tag: &str) -> Result<Pair> {
    let len = datagram_len(size)?;
    let duration = Duration::from_secs(u64::from(ctx.plan.seconds));
    let base = blast(len, duration).context("baseline blast")?;
    let m = run_monitored(ctx, monitor, false, tag, || blast(len, duration))?;
    Ok(Pair {
        base,
        with: m.load,
        cores: m.cores,
        warnings: m.warnings,
    })
}

/// One blast under flow with bpf_stats on; flow's program counters are read right after it,
/// with the namespace's packet counters over the same span.
fn stats_run(ctx: &mut Ctx, monitor: &Monitor, size: &str, tag: &str) -> Result<UdpCost> {
    let len = datagram_len(size)?;
    let duration = Duration::from_secs(u64::from(ctx.plan.seconds));
    // Read before flow starts: its programs count from their attach, a moment later.
    let before = Packets::read();
    let m = run_monitored(ctx, monitor, true, tag, || {
        let b = blast(len, duration)?;
        Ok((b, Packets::read()))
    })?;
    let (blast, after) = m.load;
    Ok(UdpCost {
        tool: monitor.label(),
        size: size.to_string(),
        blast,
        programs: m.programs,
        packets: before.zip(after).map(|(b, a)| a.since(&b)),
    })
}

fn datagram_len(size: &str) -> Result<usize> {
    size.parse()
        .with_context(|| format!("UDP datagram size {size:?} is not a number of bytes"))
}

/// `with / without`; NaN when the baseline moved nothing (the summaries skip NaNs).
pub fn ratio(with: f64, without: f64) -> f64 {
    if without > 0.0 {
        with / without
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_adds_its_ratios() {
        let blast = |sent, received| Blast {
            sent,
            received,
            send_errors: 0,
            seconds: 1.0,
            sender_cpu_s: sent as f64 / 2000.0,
        };
        let mut row = UdpOverhead::default();
        Pair {
            base: blast(1000, 1000),
            with: blast(990, 970),
            cores: 0.01,
            warnings: vec!["w".into()],
        }
        .add_to(&mut row);
        assert_eq!(row.ratios, vec![0.97]);
        assert_eq!(row.sent_ratios, vec![0.99]);
        assert_eq!(row.cpu_ratios, vec![1.0]);
        assert_eq!(row.baseline_rate, vec![1000.0]);
        assert_eq!(row.baseline_loss, vec![0.0]);
        assert!((row.loss[0] - 20.0 / 990.0).abs() < 1e-12);
        assert_eq!(row.warnings, vec!["w".to_string()]);
        assert!(ratio(1.0, 0.0).is_nan());
        assert_eq!(datagram_len("1400").unwrap(), 1400);
        assert!(datagram_len("64K").is_err());
    }
}
