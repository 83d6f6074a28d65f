//! Rendering: plain tables for people, one JSON document for scripts.

use std::io::{self, Write};

use serde::Serialize;

use crate::model::{NetConnection, TcpState, Transport};

/// Writes `value` as one JSON document and a newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Writes each line and a newline (an error, not a panic, when stdout is gone).
pub fn lines(lines: &[&str]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// A plain table: columns padded to their widest cell, numbers right-aligned.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    right_aligned: Vec<bool>,
}

impl Table {
    pub fn new(columns: &[(&'static str, bool)]) -> Table {
        Table {
            headers: columns.iter().map(|c| c.0).collect(),
            right_aligned: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = io::stdout().lock();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let width = widths[i];
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right_aligned[i] {
                    line.push_str(&format!("{cell:>width$}"));
                } else {
                    line.push_str(&format!("{cell:<width$}"));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A grouped view as a plain table: the key, the connections with a row in the interval, the
/// rates and the bytes since the start.
pub fn groups(rows: &[super::group::GroupRow], by: super::group::GroupBy) -> io::Result<()> {
    let mut table = Table::new(&[
        (by.heading(), false),
        ("CONNS", true),
        ("RX/S", true),
        ("TX/S", true),
        ("RX TOTAL", true),
        ("TX TOTAL", true),
    ]);
    for row in rows {
        table.row(vec![
            row.key.clone(),
            row.connections.to_string(),
            rate(row.rx_bytes_per_second),
            rate(row.tx_bytes_per_second),
            bytes(row.total_rx_bytes),
            bytes(row.total_tx_bytes),
        ]);
    }
    table.print()
}

/// `1.5 MiB/s`-style rates.
pub fn rate(bytes_per_second: u64) -> String {
    format!("{}/s", bytes(bytes_per_second))
}

/// Binary units: B, KiB, MiB, GiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The TCP state, or `CLOSED` once the connection is gone.
pub fn state(connection: &NetConnection) -> String {
    if connection.active {
        connection.state.to_string()
    } else {
        "CLOSED".into()
    }
}

/// A socket's state as `ss` prints it for UDP (`ESTAB` once connected, `UNCONN` otherwise: the
/// JSON keeps the kernel's `ESTABLISHED` / `CLOSE`); TCP's own name.
pub fn socket_state(connection: &NetConnection) -> &'static str {
    match (connection.transport, connection.state) {
        (Transport::Udp, TcpState::Established) => "ESTAB",
        (Transport::Udp, TcpState::Close) => "UNCONN",
        (_, state) => state.name(),
    }
}

/// `curl/4242`, or `-` when unknown.
pub fn owner(connection: &NetConnection) -> String {
    match (&connection.process, connection.pid) {
        (Some(name), Some(pid)) => format!("{name}/{pid}"),
        (None, Some(pid)) => pid.to_string(),
        (Some(name), None) => name.clone(),
        (None, None) => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(rate(3 * 1024 * 1024 * 1024), "3.0 GiB/s");
    }

    #[test]
    fn udp_states_read_as_ss_prints_them_and_tcp_states_keep_their_names() {
        let connection = |transport, state| {
            let mut c = crate::observe::ConnectionParts {
                local: "127.0.0.1:5353".parse().unwrap(),
                remote: "0.0.0.0:0".parse().unwrap(),
                state,
                inode: 1,
                uid: None,
                pid: None,
                process: None,
                cookie: None,
                generation: 1,
                active: true,
            }
            .build();
            c.transport = transport;
            c
        };
        use {TcpState::*, Transport::*};
        assert_eq!(socket_state(&connection(Udp, Established)), "ESTAB");
        assert_eq!(socket_state(&connection(Udp, Close)), "UNCONN");
        assert_eq!(socket_state(&connection(Tcp, Close)), "CLOSE");
        assert_eq!(socket_state(&connection(Tcp, Established)), "ESTABLISHED");
    }
}
