use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::{model::TcpState, observe::ConnectionParts};

fn bw(port: u16, process: Option<&str>, rx: u64, tx: u64) -> ConnectionBandwidth {
    ConnectionBandwidth {
        connection: ConnectionParts {
            local: format!("127.0.0.1:{port}").parse().unwrap(),
            remote: "127.0.0.1:80".parse().unwrap(),
            state: TcpState::Established,
            inode: 0,
            uid: None,
            pid: process.map(|_| 1),
            process: process.map(str::to_string),
            cookie: None,
            generation: u64::from(port),
            active: true,
        }
        .build(),
        tx_bytes: tx,
        rx_bytes: rx,
        tx_packets: 0,
        rx_packets: 0,
        tx_bytes_per_second: tx,
        rx_bytes_per_second: rx,
        bytes_per_second: rx + tx,
        packets_per_second: 0,
        sample_window: Duration::from_secs(1),
    }
}

fn ports(view: &View) -> Vec<u16> {
    view.rows()
        .iter()
        .map(|r| r.bandwidth.connection.local.port())
        .collect()
}

fn press(view: &mut View, c: char) -> Action {
    view.key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn sample_view() -> View {
    let mut view = View::default();
    let rows = vec![
        bw(1, Some("zsh"), 10, 500),
        bw(2, None, 300, 0),
        bw(3, Some("curl"), 200, 200),
    ];
    let id3 = rows[2].connection.id;
    let history = HashMap::from([(id3, vec![1, 2, 3])]);
    view.update(rows, history, Health::default());
    view
}

#[test]
fn sorted_by_total_first_then_by_each_key() {
    let mut view = sample_view();
    assert_eq!(ports(&view), [1, 3, 2]);
    assert_eq!(press(&mut view, 'r'), Action::Redraw);
    assert_eq!((view.sort, ports(&view)), (SortKey::Rx, vec![2, 3, 1]));
    press(&mut view, 's');
    assert_eq!((view.sort, ports(&view)), (SortKey::Tx, vec![1, 3, 2]));
    press(&mut view, 'p');
    assert_eq!(ports(&view), [3, 1, 2], "by name, unknown owners last");
    press(&mut view, 't');
    assert_eq!(ports(&view), [1, 3, 2]);
}

#[test]
fn history_follows_its_connection_and_totals_add_up() {
    let view = sample_view();
    let row = view
        .rows()
        .iter()
        .find(|r| r.bandwidth.connection.local.port() == 3);
    assert_eq!(row.map(|r| r.history.clone()), Some(vec![1, 2, 3]));
    assert_eq!(view.totals(), (510, 700));
}

#[test]
fn pause_freezes_rows_but_not_health() {
    let mut view = sample_view();
    press(&mut view, ' ');
    let health = Health {
        evictions: 7,
        ..Health::default()
    };
    view.update(vec![bw(9, None, 1, 1)], HashMap::new(), health);
    assert_eq!(ports(&view), [1, 3, 2]);
    assert_eq!(view.health.evictions, 7);
    press(&mut view, ' ');
    view.update(vec![bw(9, None, 1, 1)], HashMap::new(), Health::default());
    assert_eq!(ports(&view), [9]);
}

#[test]
fn quit_keys_and_bounded_scroll() {
    let mut view = sample_view();
    assert_eq!(press(&mut view, 'q'), Action::Quit);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(view.key(ctrl_c), Action::Quit);
    assert_eq!(press(&mut view, 'x'), Action::Ignored);
    for _ in 0..5 {
        view.key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
    }
    assert_eq!(view.scroll, 2);
    view.key(KeyEvent::new(KeyCode::Home, KeyModifiers::NONE));
    assert_eq!(view.scroll, 0);
}
