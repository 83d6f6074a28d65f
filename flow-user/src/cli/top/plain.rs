//! `flow top` without a terminal to draw on (`--once`, or stdout piped): the same view as plain
//! tables, so it can be logged or read by a script.

use std::time::Duration;

use anyhow::Result;

use super::view::View;
use crate::cli::{
    group::{self, GroupBy},
    output::{self, Table},
};

/// Prints the headline and one table of the view's rows (`limit` 0: all of them).
pub fn print(view: &View, interval: Duration, limit: usize) -> Result<()> {
    let shown = if limit == 0 { usize::MAX } else { limit };
    let [first, second] = view.headline(interval);
    output::lines(&[&first, &second])?;
    if view.group != GroupBy::Connection {
        let rows: Vec<_> = view.groups().iter().take(shown).cloned().collect();
        return Ok(output::groups(&rows, view.group)?);
    }
    let containers = view.any_container();
    let mut columns = vec![
        ("PROCESS/PID", false),
        ("LOCAL", false),
        ("REMOTE", false),
        ("PROTOCOL", false),
        ("RX/S", true),
        ("TX/S", true),
        ("TOTAL", true),
        ("STATE", false),
    ];
    if containers {
        columns.push(("CONTAINER", false));
    }
    let mut table = Table::new(&columns);
    for row in view.rows().iter().take(shown) {
        let bw = &row.bandwidth;
        let c = &bw.connection;
        let mut cells = vec![
            output::owner(c),
            c.local.to_string(),
            c.remote.to_string(),
            c.protocol.to_string(),
            output::rate(bw.rx_bytes_per_second),
            output::rate(bw.tx_bytes_per_second),
            output::bytes(row.total.0 + row.total.1),
            output::state(c),
        ];
        if containers {
            cells.push(group::container_label(&c.attribution).unwrap_or_else(|| "-".into()));
        }
        table.row(cells);
    }
    Ok(table.print()?)
}
