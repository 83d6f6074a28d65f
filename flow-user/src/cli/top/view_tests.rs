use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::cli::group::GroupBy;
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

#[test]
fn g_switches_views_and_group_totals_count_every_interval() {
    let mut view = sample_view();
    assert_eq!(view.group, GroupBy::Connection);
    assert!(view.groups().is_empty());
    assert_eq!(view.rows()[0].total, (500, 10), "a connection's own total");
    press(&mut view, 'g');
    assert_eq!(view.group, GroupBy::Process);
    let keys: Vec<&str> = view.groups().iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["zsh/1", "curl/1", "-"], "busiest first");
    // Next interval: only zsh moves; curl stays listed at 0 B/s with its total.
    view.update(
        vec![bw(1, Some("zsh"), 5, 5)],
        HashMap::new(),
        Health::default(),
    );
    let curl = view.groups().iter().find(|g| g.key == "curl/1").unwrap();
    assert_eq!((curl.bytes_per_second(), curl.total_rx_bytes), (0, 200));
    let zsh = &view.groups()[0];
    assert_eq!(
        (zsh.key.as_str(), zsh.total_tx_bytes, zsh.total_rx_bytes),
        ("zsh/1", 505, 15)
    );
    assert!(view.headline(Duration::from_secs(1))[0].contains("by process"));
    // Paused: the rows stay, the totals go on counting and show once resumed.
    press(&mut view, ' ');
    view.update(
        vec![bw(1, Some("zsh"), 7, 0)],
        HashMap::new(),
        Health::default(),
    );
    assert_eq!(view.groups()[0].total_rx_bytes, 15);
    press(&mut view, ' ');
    view.update(
        vec![bw(1, Some("zsh"), 1, 0)],
        HashMap::new(),
        Health::default(),
    );
    assert_eq!(view.groups()[0].total_rx_bytes, 23);
    press(&mut view, 'p');
    let keys: Vec<&str> = view.groups().iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["-", "curl/1", "zsh/1"], "p orders groups by key");
    for (key, group) in [('g', GroupBy::Container), ('g', GroupBy::Remote)] {
        press(&mut view, key);
        assert_eq!(view.group, group);
    }
    assert_eq!(
        view.groups()[0].key,
        "127.0.0.1",
        "every connection goes to one host"
    );
    assert_eq!(view.groups().len(), 1);
    let host = &view.groups()[0];
    assert_eq!((host.total_tx_bytes, host.total_rx_bytes), (705, 523));
    press(&mut view, 'g');
    assert_eq!(view.group, GroupBy::Connection);
}
