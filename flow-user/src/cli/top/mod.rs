//! `flow top`: the connections using the network now, busiest first, refreshed every interval.
//! Draws with ratatui on a terminal; prints plain tables when stdout is not one, or with `--once`.

mod draw;
mod plain;
mod terminal;
mod view;

use std::{
    collections::HashMap,
    io::{self, IsTerminal},
    time::{Duration, Instant},
};

use anyhow::Result;
use ratatui::crossterm::event::{Event, KeyEventKind};

use self::{
    draw::SPARK_WIDTH,
    terminal::Screen,
    view::{Action, View},
};
use super::{
    args::{Filters, TopArgs},
    group::GroupBy,
    interrupt::{Interrupt, Interrupted},
    output,
    session::{open_monitor, short_history},
};
use crate::{
    model::{ConnectionBandwidth, ConnectionId},
    monitor::{Monitor, MonitorOptions},
};

/// Longest wait for a key before the signal flag is checked again.
const KEY_WAIT: Duration = Duration::from_millis(200);

pub fn run(args: &TopArgs, mut options: MonitorOptions, interrupt: &Interrupt) -> Result<()> {
    let draw = !args.once && io::stdout().is_terminal();
    // Only the sparkline's worth of history, and none for plain tables (which have no
    // sparkline): memory stays bounded with many connections.
    let samples = if draw { SPARK_WIDTH } else { 1 };
    options.history = short_history(samples, args.interval);
    let mut monitor = open_monitor(&options, interrupt)?;
    if args.once {
        let rows = monitor.connection_bandwidth(args.interval)?;
        let mut view = View::grouped(args.group);
        view.update(
            filtered(rows, &args.filters),
            HashMap::new(),
            monitor.health().clone(),
        );
        let limit = if args.limit == 0 {
            usize::MAX
        } else {
            args.limit
        };
        if args.json && args.group != GroupBy::Connection {
            let groups: Vec<_> = view.groups().iter().take(limit).collect();
            return output::json(&groups);
        }
        if args.json {
            let rows: Vec<&ConnectionBandwidth> = view
                .rows()
                .iter()
                .map(|row| &row.bandwidth)
                .take(limit)
                .collect();
            return output::json(&rows);
        }
        return plain::print(&view, args.interval, args.limit);
    }
    let result = if draw {
        live(&mut monitor, args, interrupt)
    } else {
        stream(&mut monitor, args, interrupt)
    };
    // A signal is how a person stops `flow top`: a normal end, not a failure.
    match result {
        Err(err) if err.is::<Interrupted>() => Ok(()),
        other => other,
    }
}

/// Draws the view every interval and answers keys in between.
fn live(monitor: &mut Monitor, args: &TopArgs, interrupt: &Interrupt) -> Result<()> {
    monitor.step()?;
    let mut screen = Screen::start()?;
    let mut view = View::grouped(args.group);
    view.health = monitor.health().clone();
    let mut next = Instant::now() + args.interval;
    let mut dirty = true;
    while !interrupt.raised() {
        if dirty {
            screen.draw(|frame| draw::frame(frame, &view, args.interval, args.limit))?;
            dirty = false;
        }
        let now = Instant::now();
        if now >= next {
            let rows = filtered(monitor.step()?, &args.filters);
            let history = if view.paused {
                HashMap::new()
            } else {
                sparklines(monitor, &rows, args.interval)
            };
            view.update(rows, history, monitor.health().clone());
            // A late tick is not made up for, and keys get at least half an interval between
            // two measurements even when one takes longer than the interval.
            next = (next + args.interval).max(Instant::now() + args.interval / 2);
            dirty = true;
            continue;
        }
        match screen.next_event((next - now).min(KEY_WAIT))? {
            Some(Event::Key(key)) if key.kind == KeyEventKind::Press => match view.key(key) {
                Action::Quit => return Ok(()),
                Action::Redraw => dirty = true,
                Action::Ignored => {}
            },
            Some(Event::Resize(..)) => dirty = true,
            _ => {}
        }
    }
    Ok(())
}

/// Prints one plain table every interval until a signal (or a closed pipe) ends it.
fn stream(monitor: &mut Monitor, args: &TopArgs, interrupt: &Interrupt) -> Result<()> {
    monitor.step()?;
    // One view for the whole run: its totals count since the start.
    let mut view = View::grouped(args.group);
    let mut next = Instant::now() + args.interval;
    loop {
        interrupt.sleep(next.saturating_duration_since(Instant::now()))?;
        next = (next + args.interval).max(Instant::now() + args.interval / 2);
        let rows = filtered(monitor.step()?, &args.filters);
        view.update(rows, HashMap::new(), monitor.health().clone());
        plain::print(&view, args.interval, args.limit)?;
        output::lines(&[""])?;
    }
}

fn filtered(mut rows: Vec<ConnectionBandwidth>, filters: &Filters) -> Vec<ConnectionBandwidth> {
    rows.retain(|bw| filters.matches(&bw.connection));
    rows
}

/// Each shown connection's recent total rates, from the tracker's history (looked up for the
/// shown rows only: the tracker may hold 100,000 connections).
fn sparklines(
    monitor: &Monitor,
    rows: &[ConnectionBandwidth],
    interval: Duration,
) -> HashMap<ConnectionId, Vec<u64>> {
    let window = interval.saturating_mul(SPARK_WIDTH as u32);
    rows.iter()
        .filter_map(|bw| monitor.tracker().history_of(bw.connection.id, window))
        .map(|h| {
            let totals = h
                .samples
                .iter()
                .map(|s| s.tx_bytes_per_second + s.rx_bytes_per_second)
                .collect();
            (h.connection_id, totals)
        })
        .collect()
}
