//! `flow top` without a terminal to draw on (`--once`, or stdout piped): the same view as plain
//! tables, so it can be logged or read by a script.

use std::time::Duration;

use anyhow::Result;

use super::view::View;
use crate::cli::output::{self, Table};

/// Prints the headline and one table of the view's rows (`limit` 0: all of them).
pub fn print(view: &View, interval: Duration, limit: usize) -> Result<()> {
    let mut table = Table::new(&[
        ("PROCESS/PID", false),
        ("LOCAL", false),
        ("REMOTE", false),
        ("PROTOCOL", false),
        ("RX/S", true),
        ("TX/S", true),
        ("STATE", false),
    ]);
    let shown = if limit == 0 { usize::MAX } else { limit };
    for row in view.rows().iter().take(shown) {
        let bw = &row.bandwidth;
        let c = &bw.connection;
        table.row(vec![
            output::owner(c),
            c.local.to_string(),
            c.remote.to_string(),
            c.protocol.to_string(),
            output::rate(bw.rx_bytes_per_second),
            output::rate(bw.tx_bytes_per_second),
            output::state(c),
        ]);
    }
    let [first, second] = view.headline(interval);
    output::lines(&[&first, &second])?;
    Ok(table.print()?)
}
