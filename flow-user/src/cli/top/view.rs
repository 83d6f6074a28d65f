//! What `flow top` shows, apart from how it is drawn: the rows, their order, the totals, and the
//! keys that change them. Pure, so the behaviour behind each key is unit-tested without a
//! terminal.

use std::{cmp::Ordering, collections::HashMap, time::Duration};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::{
    cli::{
        group::{GroupBy, GroupRow, Totals},
        output,
    },
    model::ConnectionBandwidth,
    observe::Health,
};

/// The order of the rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Receive plus send rate, busiest first.
    #[default]
    Total,
    Rx,
    Tx,
    /// Process name, then pid; busiest first within one process.
    Process,
}

impl SortKey {
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Total => "total",
            SortKey::Rx => "rx",
            SortKey::Tx => "tx",
            SortKey::Process => "process",
        }
    }

    fn compare(self, a: &ConnectionBandwidth, b: &ConnectionBandwidth) -> Ordering {
        let by_total = b.bytes_per_second.cmp(&a.bytes_per_second);
        let primary = match self {
            SortKey::Total => Ordering::Equal,
            SortKey::Rx => b.rx_bytes_per_second.cmp(&a.rx_bytes_per_second),
            SortKey::Tx => b.tx_bytes_per_second.cmp(&a.tx_bytes_per_second),
            SortKey::Process => {
                let (a, b) = (&a.connection, &b.connection);
                // Unknown owners last.
                (a.process.is_none(), &a.process, a.pid).cmp(&(
                    b.process.is_none(),
                    &b.process,
                    b.pid,
                ))
            }
        };
        // Ties in address order, so equal rows do not swap places between refreshes.
        primary
            .then(by_total)
            .then_with(|| a.connection.local.cmp(&b.connection.local))
            .then_with(|| a.connection.remote.cmp(&b.connection.remote))
    }

    /// The same orders for groups; `Process` orders by key. Ties: bigger total first, then key.
    fn compare_groups(self, a: &GroupRow, b: &GroupRow) -> Ordering {
        let primary = match self {
            SortKey::Total => b.bytes_per_second().cmp(&a.bytes_per_second()),
            SortKey::Rx => b.rx_bytes_per_second.cmp(&a.rx_bytes_per_second),
            SortKey::Tx => b.tx_bytes_per_second.cmp(&a.tx_bytes_per_second),
            SortKey::Process => a.key.cmp(&b.key),
        };
        primary
            .then_with(|| b.bytes_per_second().cmp(&a.bytes_per_second()))
            .then_with(|| {
                (b.total_tx_bytes + b.total_rx_bytes).cmp(&(a.total_tx_bytes + a.total_rx_bytes))
            })
            .then_with(|| a.key.cmp(&b.key))
    }
}

/// What a key asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// The view changed: draw it again.
    Redraw,
    Ignored,
}

/// One connection's line.
#[derive(Clone, Debug)]
pub struct Row {
    pub bandwidth: ConnectionBandwidth,
    /// Its total rate over the last samples, oldest first (the sparkline).
    pub history: Vec<u64>,
    /// Bytes sent and received since `flow` started (`(tx, rx)`).
    pub total: (u64, u64),
}

/// The state of the screen.
#[derive(Debug, Default)]
pub struct View {
    pub sort: SortKey,
    /// While paused, measurements go on but the rows on screen stay as they were.
    pub paused: bool,
    /// Rows scrolled off the top.
    pub scroll: usize,
    /// At least one interval has been measured (the first only sets a baseline).
    pub measured: bool,
    pub health: Health,
    /// The rows shown: by connection, or summed by process, container or remote host.
    pub group: GroupBy,
    rows: Vec<Row>,
    /// The grouped rows of `group` (empty in the connection view).
    groups: Vec<GroupRow>,
    /// Bytes since the start of every group of every view, from every step (paused or not).
    totals: Totals,
}

impl View {
    /// A view that starts grouped by `group`.
    pub fn grouped(group: GroupBy) -> View {
        View {
            group,
            ..View::default()
        }
    }

    /// Rows in display order (the connections of the last interval, in every view).
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Grouped rows in display order (empty in the connection view): every group seen lately,
    /// with 0 B/s when it had no row in the interval.
    pub fn groups(&self) -> &[GroupRow] {
        &self.groups
    }

    /// Lines the current view has.
    pub fn len(&self) -> usize {
        match self.group {
            GroupBy::Connection => self.rows.len(),
            _ => self.groups.len(),
        }
    }

    /// Whether any row of the interval is in a container (the connection view then shows a
    /// CONTAINER column).
    pub fn any_container(&self) -> bool {
        self.rows
            .iter()
            .any(|r| r.bandwidth.connection.attribution.container.is_some())
    }

    /// Receive and send rate summed over the rows.
    pub fn totals(&self) -> (u64, u64) {
        self.rows.iter().fold((0, 0), |(rx, tx), row| {
            (
                rx + row.bandwidth.rx_bytes_per_second,
                tx + row.bandwidth.tx_bytes_per_second,
            )
        })
    }

    /// Two lines: the mode and rung, interval, order and pause; then the totals and what the
    /// kernel side lost (evicted map entries, dropped close events and untracked sockets).
    pub fn headline(&self, interval: Duration) -> [String; 2] {
        let health = &self.health;
        let mode = health.mode.map_or("-", |m| m.name());
        let rung = health.rung.map_or(String::new(), |r| format!(", rung {r}"));
        let paused = if self.paused { "  [PAUSED]" } else { "" };
        let first = format!(
            "flow top  mode {mode}{rung}  every {}  by {}  sort: {}{paused}",
            humantime::format_duration(interval),
            self.group.name(),
            self.sort.name()
        );
        if !self.measured {
            return [first, "measuring the first interval...".into()];
        }
        let (rx, tx) = self.totals();
        let map = match (health.mode, health.map_capacity) {
            (Some(crate::observe::Mode::Ebpf), 0) => format!("  entries {}", health.map_entries),
            (_, 0) => String::new(),
            (_, capacity) => format!("  map {}/{capacity}", health.map_entries),
        };
        // Only a map with a capacity can evict.
        let evicted = if health.map_capacity > 0 {
            format!("  evicted {}", health.evictions)
        } else {
            String::new()
        };
        let second = format!(
            "{} connections ({} moving)  rx {}  tx {}{map}{evicted}  dropped {}",
            health.live_connections.max(self.rows.len() as u64),
            self.rows.len(),
            output::rate(rx),
            output::rate(tx),
            health.close_drops + health.insert_failures + health.missed_runs,
        );
        [first, second]
    }

    /// Takes one interval's measurement; `history` maps connection ids to their sparkline
    /// values. The health is always current; the rows only when not paused.
    pub fn update(
        &mut self,
        bandwidth: Vec<ConnectionBandwidth>,
        mut history: HashMap<crate::model::ConnectionId, Vec<u64>>,
        health: Health,
    ) {
        self.health = health;
        // Totals count every interval, paused or not.
        self.totals.record(&bandwidth);
        if !self.paused {
            self.measured = true;
            self.rows = bandwidth
                .iter()
                .map(|bw| Row {
                    history: history.remove(&bw.connection.id).unwrap_or_default(),
                    total: self
                        .totals
                        .total(GroupBy::Connection, &bw.connection.id.to_string())
                        .unwrap_or_default(),
                    bandwidth: bw.clone(),
                })
                .collect();
            self.regroup();
        }
        // A closed connection has had its last row: its own total is not needed any more.
        self.totals.forget_closed(&bandwidth);
    }

    /// The grouped rows of the current view from the last interval's rows and the totals.
    fn regroup(&mut self) {
        self.groups = match self.group {
            GroupBy::Connection => Vec::new(),
            group => {
                let rows: Vec<ConnectionBandwidth> =
                    self.rows.iter().map(|r| r.bandwidth.clone()).collect();
                self.totals.rows(group, &rows)
            }
        };
        self.sort_rows();
    }

    pub fn key(&mut self, key: KeyEvent) -> Action {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => Action::Quit,
            KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
            KeyCode::Char('t') => self.sort_by(SortKey::Total),
            KeyCode::Char('r') => self.sort_by(SortKey::Rx),
            KeyCode::Char('s') => self.sort_by(SortKey::Tx),
            KeyCode::Char('p') => self.sort_by(SortKey::Process),
            KeyCode::Char('g') => {
                self.group = self.group.next();
                self.scroll = 0;
                self.regroup();
                Action::Redraw
            }
            KeyCode::Char(' ') => {
                self.paused = !self.paused;
                Action::Redraw
            }
            KeyCode::Down | KeyCode::Char('j') => self.scroll_to(self.scroll.saturating_add(1)),
            KeyCode::Up | KeyCode::Char('k') => self.scroll_to(self.scroll.saturating_sub(1)),
            KeyCode::PageDown => self.scroll_to(self.scroll.saturating_add(10)),
            KeyCode::PageUp => self.scroll_to(self.scroll.saturating_sub(10)),
            KeyCode::Home => self.scroll_to(0),
            _ => Action::Ignored,
        }
    }

    fn sort_by(&mut self, sort: SortKey) -> Action {
        self.sort = sort;
        self.sort_rows();
        Action::Redraw
    }

    fn scroll_to(&mut self, scroll: usize) -> Action {
        self.scroll = scroll.min(self.len().saturating_sub(1));
        Action::Redraw
    }

    fn sort_rows(&mut self) {
        let sort = self.sort;
        self.rows
            .sort_by(|a, b| sort.compare(&a.bandwidth, &b.bandwidth));
        self.groups.sort_by(|a, b| sort.compare_groups(a, b));
        self.scroll = self.scroll.min(self.len().saturating_sub(1));
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
