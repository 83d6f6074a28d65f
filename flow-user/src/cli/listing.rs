//! The listing commands: measure once, print one table or one JSON document.

use anyhow::{bail, Result};

use super::{
    args::ListCommand,
    group::{self, GroupBy},
    output::{self, Table},
    session::{report_losses, sort_by_rate},
};
use crate::{model::ConnectionBandwidth, monitor::Monitor};

pub(super) fn run(command: ListCommand, monitor: &mut Monitor) -> Result<()> {
    match command {
        ListCommand::Bandwidth {
            window,
            filters,
            group,
            json,
        } => {
            let mut rows = monitor.connection_bandwidth(window)?;
            rows.retain(|bw| filters.matches(&bw.connection));
            sort_by_rate(&mut rows);
            report_losses(monitor);
            if group != GroupBy::Connection {
                let grouped = group::group_once(group, &rows);
                return if json {
                    output::json(&grouped)
                } else {
                    Ok(output::groups(&grouped, group)?)
                };
            }
            if json {
                output::json(&rows)
            } else {
                print_bandwidth(&rows)
            }
        }
        ListCommand::Stats {
            inode,
            filters,
            json,
        } => {
            let mut rows = monitor.read_socket_stats(Some(inode))?;
            rows.retain(|s| filters.matches(&s.connection));
            if inode != 0 && rows.is_empty() {
                bail!("no TCP or UDP socket with inode {inode}");
            }
            report_losses(monitor);
            if json {
                return output::json(&rows);
            }
            let mut table = Table::new(&[
                ("INODE", true),
                ("NETID", false),
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
                    s.connection.transport.name().to_string(),
                    s.connection.local.to_string(),
                    s.connection.remote.to_string(),
                    output::socket_state(&s.connection).to_string(),
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
        ListCommand::History {
            window,
            interval,
            filters,
            json,
        } => {
            let mut histories = monitor.collect_history(window, interval)?;
            histories.retain(|h| {
                monitor
                    .tracker()
                    .connection(h.connection_id)
                    .is_some_and(|c| filters.matches(c))
            });
            report_losses(monitor);
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
                let Some(c) = monitor.tracker().connection(h.connection_id) else {
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
                    h.connection_id.to_string(),
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
        ListCommand::Http {
            window,
            filters,
            json,
        } => {
            let interval = window.min(std::time::Duration::from_secs(1));
            let mut rows = monitor.collect_http(window, interval)?;
            rows.retain(|h| filters.matches(&h.connection));
            report_losses(monitor);
            if json {
                return output::json(&rows);
            }
            let mut table = Table::new(&[
                ("PROCESS", false),
                ("LOCAL", false),
                ("REMOTE", false),
                ("METHOD", false),
                ("HOST", false),
                ("STATUS", true),
                ("STATE", false),
            ]);
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            for h in rows {
                let c = &h.connection;
                table.row(vec![
                    output::owner(c),
                    c.local.to_string(),
                    c.remote.to_string(),
                    or_dash(h.method.clone()),
                    or_dash(h.host.clone()),
                    or_dash(h.status_code.map(|s| s.to_string())),
                    output::state(c),
                ]);
            }
            Ok(table.print()?)
        }
        ListCommand::Connections {
            filters,
            group,
            json,
        } => {
            let mut rows = monitor.connections()?;
            rows.retain(|c| filters.matches(c));
            if group != GroupBy::Connection {
                // Connections are listed, not measured: counts, with no bytes.
                let grouped = group::group_connections(group, &rows);
                return if json {
                    output::json(&grouped)
                } else {
                    Ok(output::groups(&grouped, group)?)
                };
            }
            if json {
                return output::json(&rows);
            }
            let mut table = Table::new(&[
                ("LOCAL", false),
                ("REMOTE", false),
                ("STATE", false),
                ("PROTOCOL", false),
                ("BY", false),
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
                    c.protocol_source.to_string(),
                    output::owner(c),
                    c.uid.map_or("-".into(), |u| u.to_string()),
                    c.inode.to_string(),
                ]);
            }
            Ok(table.print()?)
        }
    }
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
            output::state(c),
        ]);
    }
    Ok(table.print()?)
}
