//! One function per command: open the monitor, ask the library, print.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use super::{
    args::{Cli, Command, Filters},
    output::{self, Table},
};
use crate::{
    ebpf::LoadOptions,
    model::{ConnectionBandwidth, NetConnection},
    monitor::{Monitor, MonitorOptions},
};

/// Set by SIGINT/SIGTERM: waits end early and the command exits after detaching.
#[derive(Clone)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub fn install() -> Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
        }
        Ok(Interrupt(flag))
    }

    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sleeps up to `duration`; an error if a signal arrives meanwhile.
    pub fn sleep(&self, duration: Duration) -> Result<()> {
        let end = Instant::now() + duration;
        loop {
            if self.raised() {
                bail!(Interrupted);
            }
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }
}

/// The error a signal turns a wait into; `main` exits quietly on it.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

pub fn run(cli: Cli, interrupt: Interrupt) -> Result<()> {
    let options = MonitorOptions {
        mode: cli.global.mode,
        load: LoadOptions {
            map_entries: cli.global.map_entries,
            rung: cli.global.rung,
        },
        kernel_log: cli.global.verbose > 0,
        ..MonitorOptions::default()
    };
    let mut monitor = Monitor::open(&options)?;
    eprintln!("flow: {}", monitor.describe());
    let sleeper = interrupt.clone();
    monitor.set_sleeper(Box::new(move |d| sleeper.sleep(d)));

    match cli.command {
        Command::Bandwidth {
            window,
            filters,
            json,
        } => {
            let mut rows = monitor.connection_bandwidth(window)?;
            rows.retain(|bw| keep(&filters, &bw.connection));
            sort_by_rate(&mut rows);
            report_losses(&monitor);
            if json {
                output::json(&rows)
            } else {
                print_bandwidth(&rows)
            }
        }
        Command::Stats {
            inode,
            filters,
            json,
        } => {
            let mut rows = monitor.read_socket_stats(Some(inode))?;
            rows.retain(|s| keep(&filters, &s.connection));
            if inode != 0 && rows.is_empty() {
                bail!("no TCP socket with inode {inode}");
            }
            if json {
                return output::json(&rows);
            }
            let mut table = Table::new(&[
                ("INODE", true),
                ("LOCAL", false),
                ("REMOTE", false),
                ("STATE", false),
                ("RECV-Q", true),
                ("SEND-Q", true),
                ("RX", true),
                ("TX", true),
                ("RX-PKTS", true),
                ("TX-PKTS", true),
                ("PROCESS", false),
            ]);
            for s in &rows {
                table.row(vec![
                    s.inode.to_string(),
                    s.connection.local.to_string(),
                    s.connection.remote.to_string(),
                    s.connection.state.to_string(),
                    s.rx_queue.to_string(),
                    s.tx_queue.to_string(),
                    output::bytes(s.rx_bytes),
                    output::bytes(s.tx_bytes),
                    s.rx_packets.to_string(),
                    s.tx_packets.to_string(),
                    output::owner(&s.connection),
                ]);
            }
            Ok(table.print()?)
        }
        Command::History {
            window,
            interval,
            filters,
            json,
        } => {
            let mut histories = monitor.collect_history(window, interval)?;
            histories.retain(|h| {
                monitor
                    .tracker()
                    .connection(&h.connection_id)
                    .is_some_and(|c| keep(&filters, c))
            });
            report_losses(&monitor);
            if json {
                return output::json(&histories);
            }
            let mut table = Table::new(&[
                ("ID", false),
                ("LOCAL", false),
                ("REMOTE", false),
                ("PROCESS", false),
                ("SAMPLES", true),
                ("PEAK", true),
                ("MEAN", true),
            ]);
            for h in &histories {
                let Some(c) = monitor.tracker().connection(&h.connection_id) else {
                    continue;
                };
                let totals: Vec<u64> = h
                    .samples
                    .iter()
                    .map(|s| s.tx_bytes_per_second + s.rx_bytes_per_second)
                    .collect();
                let peak = totals.iter().copied().max().unwrap_or(0);
                let mean = totals.iter().sum::<u64>() / totals.len().max(1) as u64;
                table.row(vec![
                    h.connection_id.clone(),
                    c.local.to_string(),
                    c.remote.to_string(),
                    output::owner(c),
                    h.samples.len().to_string(),
                    output::rate(peak),
                    output::rate(mean),
                ]);
            }
            Ok(table.print()?)
        }
        Command::Connections { filters, json } => {
            let mut rows = monitor.connections()?;
            rows.retain(|c| keep(&filters, c));
            if json {
                return output::json(&rows);
            }
            let mut table = Table::new(&[
                ("LOCAL", false),
                ("REMOTE", false),
                ("STATE", false),
                ("PROTOCOL", false),
                ("PROCESS", false),
                ("UID", true),
                ("INODE", true),
            ]);
            for c in &rows {
                table.row(vec![
                    c.local.to_string(),
                    c.remote.to_string(),
                    c.state.to_string(),
                    c.protocol.to_string(),
                    output::owner(c),
                    c.uid.map_or("-".into(), |u| u.to_string()),
                    c.inode.to_string(),
                ]);
            }
            Ok(table.print()?)
        }
    }
}

fn keep(filters: &Filters, connection: &NetConnection) -> bool {
    filters.pid.is_none_or(|pid| connection.pid == Some(pid))
        && filters
            .port
            .is_none_or(|p| connection.local.port() == p || connection.remote.port() == p)
        && filters.protocol.is_none_or(|p| connection.protocol == p)
}

fn sort_by_rate(rows: &mut [ConnectionBandwidth]) {
    rows.sort_by(|a, b| {
        b.bytes_per_second
            .cmp(&a.bytes_per_second)
            .then_with(|| a.connection.local.cmp(&b.connection.local))
    });
}

fn print_bandwidth(rows: &[ConnectionBandwidth]) -> Result<()> {
    let mut table = Table::new(&[
        ("PROCESS", false),
        ("LOCAL", false),
        ("REMOTE", false),
        ("PROTOCOL", false),
        ("RX/S", true),
        ("TX/S", true),
        ("RX", true),
        ("TX", true),
        ("PKT/S", true),
        ("STATE", false),
    ]);
    for bw in rows {
        let c = &bw.connection;
        table.row(vec![
            output::owner(c),
            c.local.to_string(),
            c.remote.to_string(),
            c.protocol.to_string(),
            output::rate(bw.rx_bytes_per_second),
            output::rate(bw.tx_bytes_per_second),
            output::bytes(bw.rx_bytes),
            output::bytes(bw.tx_bytes),
            bw.packets_per_second.to_string(),
            if c.active {
                c.state.to_string()
            } else {
                "CLOSED".into()
            },
        ]);
    }
    Ok(table.print()?)
}

/// Nothing is lost silently: what the kernel or the tracker dropped is said on stderr.
fn report_losses(monitor: &Monitor) {
    let health = monitor.health();
    let mut losses = Vec::new();
    if health.evictions > 0 {
        losses.push(format!(
            "{} sockets evicted from a full map of {} (raise --map-entries)",
            health.evictions, health.map_capacity
        ));
    }
    if health.close_drops > 0 {
        losses.push(format!("{} close events lost", health.close_drops));
    }
    if health.insert_failures > 0 {
        losses.push(format!("{} sockets not tracked", health.insert_failures));
    }
    if health.malformed_lines > 0 {
        losses.push(format!(
            "{} malformed /proc/net/tcp lines skipped",
            health.malformed_lines
        ));
    }
    let dropped = monitor.tracker().dropped_samples();
    if dropped > 0 {
        losses.push(format!(
            "{dropped} history samples dropped (bounds reached)"
        ));
    }
    if !losses.is_empty() {
        eprintln!("flow: warning: {}", losses.join("; "));
    }
}
