//! Draws the [`View`] with ratatui: a two-line header, the table, a line of keys.

use std::time::Duration;

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row, Table},
    Frame,
};

use super::view::{SortKey, View};
use crate::cli::{
    group::{self, GroupBy},
    output,
};

/// Samples in a sparkline (the history kept per connection).
pub const SPARK_WIDTH: usize = 20;

const KEYS: &str =
    "q quit  g view  t total  r rx  s tx  p process/key  space pause  \u{2191}\u{2193} scroll";

pub fn frame(frame: &mut Frame, view: &View, interval: Duration, limit: usize) {
    let [header, table, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_lines(view, interval)), header);
    draw_table(frame, table, view, limit);
    frame.render_widget(
        Paragraph::new(KEYS).style(Style::new().add_modifier(Modifier::DIM)),
        footer,
    );
}

/// The headline in bold, the totals under it.
fn header_lines(view: &View, interval: Duration) -> Vec<Line<'static>> {
    let [first, second] = view.headline(interval);
    vec![
        Line::styled(first, Style::new().add_modifier(Modifier::BOLD)),
        Line::raw(second),
    ]
}

/// Rows that fit in `area` under the header, at most `limit` (0: no limit).
fn shown(area: Rect, limit: usize) -> usize {
    let visible = usize::from(area.height.saturating_sub(1));
    if limit == 0 {
        visible
    } else {
        visible.min(limit)
    }
}

fn draw_table(frame: &mut Frame, area: Rect, view: &View, limit: usize) {
    if view.group != GroupBy::Connection {
        return draw_groups(frame, area, view, limit);
    }
    let containers = view.any_container();
    let marker = |key: SortKey, title: &'static str| -> String {
        if view.sort == key {
            format!("{title}\u{25bc}")
        } else {
            title.to_string()
        }
    };
    let mut header = vec![
        marker(SortKey::Process, "PROCESS/PID"),
        "LOCAL".into(),
        "REMOTE".into(),
        "PROTO".into(),
        marker(SortKey::Rx, "RX/S"),
        marker(SortKey::Tx, "TX/S"),
        "TOTAL".into(),
    ];
    if containers {
        header.push("CONTAINER".into());
    }
    header.push("HISTORY".into());
    let header = Row::new(header).style(Style::new().add_modifier(Modifier::REVERSED));
    let shown = shown(area, limit);
    let rows = view.rows().iter().skip(view.scroll).take(shown).map(|row| {
        let bw = &row.bandwidth;
        let c = &bw.connection;
        let style = if c.active {
            Style::new()
        } else {
            Style::new().add_modifier(Modifier::DIM)
        };
        let mut cells = vec![
            Cell::from(output::owner(c)),
            Cell::from(c.local.to_string()),
            Cell::from(c.remote.to_string()),
            Cell::from(c.protocol.name()),
            Cell::from(Line::from(output::rate(bw.rx_bytes_per_second)).right_aligned()),
            Cell::from(Line::from(output::rate(bw.tx_bytes_per_second)).right_aligned()),
            Cell::from(Line::from(output::bytes(row.total.0 + row.total.1)).right_aligned()),
        ];
        if containers {
            let name = group::container_label(&c.attribution).unwrap_or_else(|| "-".into());
            cells.push(Cell::from(name));
        }
        cells.push(Cell::from(spark(&row.history, SPARK_WIDTH)));
        Row::new(cells).style(style)
    });
    // Addresses and the owner matter most: on a narrow screen the sparkline gives way first
    // (ratatui satisfies `Min`, then `Max`, then `Length`, and `Fill` last).
    let mut widths = vec![
        Constraint::Min(12),
        Constraint::Min(16),
        Constraint::Min(16),
        Constraint::Length(7),
        Constraint::Length(11),
        Constraint::Length(11),
        Constraint::Length(10),
    ];
    if containers {
        widths.push(Constraint::Length(14));
    }
    widths.push(Constraint::Fill(1));
    frame.render_widget(Table::new(rows, widths).header(header), area);
}

/// A grouped view: the key, the connections with a row in the interval, rates and totals.
fn draw_groups(frame: &mut Frame, area: Rect, view: &View, limit: usize) {
    let marker = |key: SortKey, title: &'static str| -> String {
        if view.sort == key {
            format!("{title}\u{25bc}")
        } else {
            title.to_string()
        }
    };
    let header = Row::new([
        marker(SortKey::Process, view.group.heading()),
        "CONNS".into(),
        marker(SortKey::Rx, "RX/S"),
        marker(SortKey::Tx, "TX/S"),
        "RX TOTAL".into(),
        "TX TOTAL".into(),
    ])
    .style(Style::new().add_modifier(Modifier::REVERSED));
    let right = |text: String| Cell::from(Line::from(text).right_aligned());
    let rows = view
        .groups()
        .iter()
        .skip(view.scroll)
        .take(shown(area, limit))
        .map(|g| {
            let style = if g.connections > 0 {
                Style::new()
            } else {
                Style::new().add_modifier(Modifier::DIM)
            };
            Row::new([
                Cell::from(g.key.clone()),
                right(g.connections.to_string()),
                right(output::rate(g.rx_bytes_per_second)),
                right(output::rate(g.tx_bytes_per_second)),
                right(output::bytes(g.total_rx_bytes)),
                right(output::bytes(g.total_tx_bytes)),
            ])
            .style(style)
        });
    let widths = [
        Constraint::Min(24),
        Constraint::Length(6),
        Constraint::Length(11),
        Constraint::Length(11),
        Constraint::Length(11),
        Constraint::Length(11),
    ];
    frame.render_widget(Table::new(rows, widths).header(header), area);
}

/// The last `width` values as block characters, scaled to their own peak, newest at the right;
/// zero is blank so idle connections stay quiet.
pub fn spark(values: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let values = &values[values.len().saturating_sub(width)..];
    let peak = values.iter().copied().max().unwrap_or(0);
    let mut line = " ".repeat(width - values.len());
    for &v in values {
        line.push(match v {
            0 => ' ',
            // 1..=peak onto 0..=7 (ceil(8v/peak) - 1), in u128 so large rates cannot overflow.
            _ => {
                let level = (u128::from(v) * 8).div_ceil(u128::from(peak)) - 1;
                BARS[level.min(7) as usize]
            }
        });
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_its_peak_and_pads_left() {
        assert_eq!(spark(&[], 4), "    ");
        assert_eq!(spark(&[0, 1, 8], 4), "  ▁█");
        assert_eq!(spark(&[5, 5, 5, 5, 5, 5], 3), "███");
        assert_eq!(spark(&[u64::MAX, 1], 2), "█▁");
    }
}
