//! Tracker tests over recorded observations.

use std::net::SocketAddr;

use super::*;
use crate::{
    id::generate_connection_id,
    id::ConnectionId,
    model::TcpState,
    observe::{ConnectionParts, Health, Scope},
};

const SEC: Duration = Duration::from_secs(1);

/// A connection 127.0.0.1:`local` -> 127.0.0.1:`remote` of this generation.
fn conn(local: u16, remote: u16, generation: u64, active: bool) -> NetConnection {
    ConnectionParts {
        local: SocketAddr::from(([127, 0, 0, 1], local)),
        remote: SocketAddr::from(([127, 0, 0, 1], remote)),
        state: if active {
            TcpState::Established
        } else {
            TcpState::Close
        },
        inode: generation,
        uid: Some(1000),
        pid: Some(42),
        process: Some("test".into()),
        cookie: None,
        generation,
        active,
    }
    .build()
}

fn sock(
    connection: &NetConnection,
    tx: u64,
    rx: u64,
    tx_packets: u64,
    rx_packets: u64,
) -> ObservedSocket {
    ObservedSocket {
        connection: connection.clone(),
        counters: Counters {
            tx_bytes: tx,
            rx_bytes: rx,
            tx_packets,
            rx_packets,
        },
        rx_queue: 0,
        tx_queue: 0,
        http: None,
    }
}

/// The same socket, closed, with its final counters.
fn closed(connection: &NetConnection, tx: u64, rx: u64) -> ObservedSocket {
    let mut connection = connection.clone();
    connection.active = false;
    connection.state = TcpState::Close;
    sock(&connection, tx, rx, 0, 0)
}

fn obs(at: Instant, sockets: Vec<ObservedSocket>, closed: Vec<ObservedSocket>) -> Observation {
    Observation {
        at,
        sockets,
        closed,
        scope: Scope::Complete,
        health: Health::default(),
    }
}

fn find<'a>(rows: &'a [ConnectionBandwidth], id: &ConnectionId) -> &'a ConnectionBandwidth {
    let matching: Vec<_> = rows.iter().filter(|b| b.connection.id == *id).collect();
    assert_eq!(matching.len(), 1, "exactly one row for {id}: {rows:#?}");
    matching[0]
}

fn history_of<'a>(histories: &'a [ConnectionHistory], id: &ConnectionId) -> &'a ConnectionHistory {
    histories
        .iter()
        .find(|h| h.connection_id == *id)
        .unwrap_or_else(|| panic!("no history for {id}: {histories:#?}"))
}

fn ats(history: &ConnectionHistory) -> Vec<Duration> {
    history.samples.iter().map(|s| s.at).collect()
}

fn secs(list: &[u64]) -> Vec<Duration> {
    list.iter().map(|s| Duration::from_secs(*s)).collect()
}

#[test]
fn first_record_sets_the_baseline_and_returns_nothing() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let mut tracker = Tracker::default();
    assert!(!tracker.initialized());
    assert_eq!(tracker.last_snapshot_time(), None);

    let first = tracker.record(&obs(t0, vec![sock(&a, 1_000, 2_000, 3, 4)], vec![]));
    assert!(first.is_empty(), "{first:?}");
    assert!(tracker.initialized());
    assert_eq!(tracker.last_snapshot_time(), Some(t0));
    assert!(tracker.history(Duration::ZERO).is_empty());
}

#[test]
fn deltas_and_rates_are_exact_over_a_known_window() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let mut tracker = Tracker::default();
    tracker.record(&obs(t0, vec![sock(&a, 1_000, 500, 10, 5)], vec![]));
    let rows = tracker.record(&obs(
        t0 + 2 * SEC,
        vec![sock(&a, 2_001_000, 400_500, 310, 105)],
        vec![],
    ));
    let bw = find(&rows, &a.id);
    assert_eq!((bw.tx_bytes, bw.rx_bytes), (2_000_000, 400_000));
    assert_eq!(bw.tx_bytes_per_second, 1_000_000);
    assert_eq!(bw.rx_bytes_per_second, 200_000);
    assert_eq!(bw.bytes_per_second, 1_200_000);
    // (300 out + 100 in) segments over 2 s.
    assert_eq!(bw.packets_per_second, 200);
    assert_eq!(bw.sample_window, 2 * SEC);
    assert!(bw.connection.active);
    assert_eq!(bw.connection, a);

    // A window that does not divide evenly: the rate is rounded down, never up.
    let rows = tracker.record(&obs(
        t0 + 5 * SEC,
        vec![sock(&a, 3_001_000, 400_500, 310, 105)],
        vec![],
    ));
    let bw = find(&rows, &a.id);
    assert_eq!(bw.tx_bytes, 1_000_000);
    assert_eq!(bw.tx_bytes_per_second, 333_333);
    assert_eq!(
        (bw.rx_bytes, bw.rx_bytes_per_second, bw.packets_per_second),
        (0, 0, 0)
    );
    assert_eq!(bw.sample_window, 3 * SEC);
}

#[test]
fn a_connection_first_seen_after_the_baseline_counts_from_zero() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let b = conn(40001, 80, 2, true);
    let mut tracker = Tracker::default();
    tracker.record(&obs(t0, vec![sock(&a, 0, 0, 0, 0)], vec![]));
    let rows = tracker.record(&obs(
        t0 + SEC,
        vec![sock(&a, 0, 0, 0, 0), sock(&b, 3_000, 1_000, 4, 2)],
        vec![],
    ));
    let bw = find(&rows, &b.id);
    assert_eq!((bw.tx_bytes, bw.rx_bytes), (3_000, 1_000));
    assert_eq!(bw.packets_per_second, 6);
}

#[test]
fn a_connection_closed_between_observations_counts_with_its_final_counters() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    // Opened and closed between two observations: only its close event shows it.
    let c = conn(40002, 443, 3, true);
    let mut tracker = Tracker::default();
    tracker.record(&obs(t0, vec![sock(&a, 100, 50, 1, 1)], vec![]));
    let rows = tracker.record(&obs(
        t0 + SEC,
        vec![],
        vec![closed(&a, 5_100, 1_050), closed(&c, 7_000, 70)],
    ));
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let bw = find(&rows, &a.id);
    assert_eq!((bw.tx_bytes, bw.rx_bytes), (5_000, 1_000));
    assert_eq!(bw.tx_bytes_per_second, 5_000);
    assert!(!bw.connection.active);
    let bw = find(&rows, &c.id);
    assert_eq!((bw.tx_bytes, bw.rx_bytes), (7_000, 70));
    assert!(!bw.connection.active);

    // Gone for good: not counted again, and its history says it is inactive.
    let rows = tracker.record(&obs(t0 + 2 * SEC, vec![], vec![]));
    assert!(rows.is_empty(), "{rows:#?}");
    assert!(!tracker.connection(a.id).unwrap().active);
    assert!(!tracker.connection(c.id).unwrap().active);
    let histories = tracker.history(Duration::ZERO);
    assert_eq!(ats(history_of(&histories, &a.id)), secs(&[1]));
}

#[test]
fn a_socket_listed_live_and_closed_counts_once_as_closed() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let mut tracker = Tracker::default();
    tracker.record(&obs(t0, vec![sock(&a, 100, 0, 0, 0)], vec![]));
    let rows = tracker.record(&obs(
        t0 + SEC,
        vec![sock(&a, 300, 0, 0, 0)],
        vec![closed(&a, 400, 0)],
    ));
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let bw = find(&rows, &a.id);
    assert_eq!(bw.tx_bytes, 300);
    assert!(!bw.connection.active);

    let snapshot = Tracker::take_snapshot(&obs(
        t0 + SEC,
        vec![sock(&a, 300, 0, 0, 0)],
        vec![closed(&a, 400, 0)],
    ));
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].counters.tx_bytes, 400);
    assert!(!snapshot[0].active);
}

#[test]
fn counters_that_go_backwards_saturate_to_zero() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let mut tracker = Tracker::default();
    tracker.record(&obs(t0, vec![sock(&a, 10_000, 5_000, 100, 50)], vec![]));
    // The kernel map evicted the socket and counting restarted.
    let rows = tracker.record(&obs(t0 + SEC, vec![sock(&a, 200, 100, 2, 1)], vec![]));
    let bw = find(&rows, &a.id);
    assert_eq!((bw.tx_bytes, bw.rx_bytes), (0, 0));
    assert_eq!(
        (
            bw.tx_bytes_per_second,
            bw.rx_bytes_per_second,
            bw.bytes_per_second,
            bw.packets_per_second
        ),
        (0, 0, 0, 0)
    );
    // The restarted counters are the new baseline.
    let rows = tracker.record(&obs(
        t0 + 2 * SEC,
        vec![sock(&a, 1_200, 600, 12, 6)],
        vec![],
    ));
    let bw = find(&rows, &a.id);
    assert_eq!(
        (bw.tx_bytes, bw.rx_bytes, bw.packets_per_second),
        (1_000, 500, 15)
    );
}

#[test]
fn history_is_oldest_first_and_bounded_per_connection() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let mut tracker = Tracker::new(HistoryLimits {
        per_connection: 3,
        total: 100,
        retention: Duration::from_secs(600),
    });
    for i in 0..6u64 {
        tracker.record(&obs(
            t0 + SEC * i as u32,
            vec![sock(&a, i * 1_000, 0, 0, 0)],
            vec![],
        ));
    }
    let histories = tracker.history(Duration::ZERO);
    assert_eq!(histories.len(), 1);
    let h = history_of(&histories, &a.id);
    assert_eq!(ats(h), secs(&[3, 4, 5]));
    assert!(h.samples.iter().all(|s| s.tx_bytes_per_second == 1_000));
    assert_eq!(tracker.dropped_samples(), 2);
}

#[test]
fn history_is_bounded_in_total_and_counts_what_it_drops() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let b = conn(40001, 80, 2, true);
    let c = conn(40002, 80, 3, true);
    let mut tracker = Tracker::new(HistoryLimits {
        per_connection: 10,
        total: 4,
        retention: Duration::from_secs(600),
    });
    let mut attempted = 0;
    for i in 0..5u64 {
        let mut sockets = vec![sock(&a, i * 10, 0, 0, 0), sock(&b, i * 20, 0, 0, 0)];
        if i == 4 {
            sockets.push(sock(&c, 5, 0, 0, 0));
        }
        attempted += tracker
            .record(&obs(t0 + SEC * i as u32, sockets, vec![]))
            .len() as u64;
    }
    assert_eq!(attempted, 9);
    let histories = tracker.history(Duration::ZERO);
    let kept: usize = histories.iter().map(|h| h.samples.len()).sum();
    assert_eq!(kept, 4, "{histories:#?}");
    assert_eq!(tracker.dropped_samples(), attempted - kept as u64);
    // The newest samples stay, oldest first.
    assert_eq!(ats(history_of(&histories, &a.id)), secs(&[3, 4]));
    assert_eq!(ats(history_of(&histories, &b.id)), secs(&[3, 4]));
    // A new connection that finds the total full is dropped and counted, not kept half-way.
    assert!(histories.iter().all(|h| h.connection_id != c.id));
}

#[test]
fn history_window_keeps_the_samples_inside_it() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let mut tracker = Tracker::default();
    for i in 0..6u64 {
        tracker.record(&obs(
            t0 + SEC * i as u32,
            vec![sock(&a, i * i * 1_000, 0, 0, 0)],
            vec![],
        ));
    }
    // Samples at 1..=5 s; a sample at `at` covers (at - 1 s, at].
    let all = tracker.history(Duration::ZERO);
    assert_eq!(ats(history_of(&all, &a.id)), secs(&[1, 2, 3, 4, 5]));
    assert_eq!(all[0].tracking_window, 5 * SEC);
    let rates: Vec<u64> = all[0]
        .samples
        .iter()
        .map(|s| s.tx_bytes_per_second)
        .collect();
    assert_eq!(rates, vec![1_000, 3_000, 5_000, 7_000, 9_000]);

    let last_two = tracker.history(2 * SEC);
    assert_eq!(ats(history_of(&last_two, &a.id)), secs(&[4, 5]));
    assert_eq!(last_two[0].tracking_window, 2 * SEC);

    let wide = tracker.history(100 * SEC);
    assert_eq!(ats(history_of(&wide, &a.id)), secs(&[1, 2, 3, 4, 5]));
    assert_eq!(wide[0].tracking_window, 100 * SEC);
}

#[test]
fn reset_forgets_everything() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let mut tracker = Tracker::new(HistoryLimits {
        per_connection: 1,
        total: 10,
        retention: Duration::from_secs(600),
    });
    for i in 0..3u64 {
        tracker.record(&obs(
            t0 + SEC * i as u32,
            vec![sock(&a, i * 10, 0, 0, 0)],
            vec![],
        ));
    }
    assert!(!tracker.history(Duration::ZERO).is_empty());
    assert_eq!(tracker.dropped_samples(), 1);

    tracker.reset();
    assert!(!tracker.initialized());
    assert_eq!(tracker.last_snapshot_time(), None);
    assert!(tracker.history(Duration::ZERO).is_empty());
    assert!(tracker.connection(a.id).is_none());
    assert_eq!(tracker.dropped_samples(), 0);
    // The next observation is a new baseline, not a delta against the forgotten one.
    let rows = tracker.record(&obs(t0 + 3 * SEC, vec![sock(&a, 10_000, 0, 0, 0)], vec![]));
    assert!(rows.is_empty());
    let rows = tracker.record(&obs(t0 + 4 * SEC, vec![sock(&a, 10_500, 0, 0, 0)], vec![]));
    assert_eq!(find(&rows, &a.id).tx_bytes, 500);
    // History restarts its clock too: the first sample is 1 s after the new start.
    assert_eq!(
        ats(history_of(&tracker.history(Duration::ZERO), &a.id)),
        secs(&[1])
    );
}

#[test]
fn reset_baseline_keeps_history() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let mut tracker = Tracker::default();
    for i in 0..3u64 {
        tracker.record(&obs(
            t0 + SEC * i as u32,
            vec![sock(&a, i * 100, 0, 0, 0)],
            vec![],
        ));
    }
    tracker.reset_baseline();
    assert!(!tracker.initialized());
    assert_eq!(
        ats(history_of(&tracker.history(Duration::ZERO), &a.id)),
        secs(&[1, 2])
    );
    // A new measurement starts: the first record is a baseline again, history untouched.
    let rows = tracker.record(&obs(t0 + 10 * SEC, vec![sock(&a, 5_000, 0, 0, 0)], vec![]));
    assert!(rows.is_empty());
    assert_eq!(
        ats(history_of(&tracker.history(Duration::ZERO), &a.id)),
        secs(&[1, 2])
    );
    let rows = tracker.record(&obs(t0 + 11 * SEC, vec![sock(&a, 5_700, 0, 0, 0)], vec![]));
    let bw = find(&rows, &a.id);
    assert_eq!((bw.tx_bytes, bw.sample_window), (700, SEC));
    assert_eq!(
        ats(history_of(&tracker.history(Duration::ZERO), &a.id)),
        secs(&[1, 2, 11])
    );
}

#[test]
fn a_connection_gone_without_a_close_event_becomes_inactive() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let b = conn(40001, 80, 2, true);
    let mut tracker = Tracker::default();
    tracker.record(&obs(
        t0,
        vec![sock(&a, 0, 0, 0, 0), sock(&b, 0, 0, 0, 0)],
        vec![],
    ));
    tracker.record(&obs(
        t0 + SEC,
        vec![sock(&a, 10, 0, 0, 0), sock(&b, 10, 0, 0, 0)],
        vec![],
    ));
    assert!(tracker.connection(b.id).unwrap().active);
    // procfs mode: b is simply no longer listed.
    let rows = tracker.record(&obs(t0 + 2 * SEC, vec![sock(&a, 20, 0, 0, 0)], vec![]));
    assert!(rows.iter().all(|r| r.connection.id != b.id));
    assert!(tracker.connection(a.id).unwrap().active);
    assert!(!tracker.connection(b.id).unwrap().active);
    // Still listed (inactive) while its samples are in the window.
    let histories = tracker.history(Duration::ZERO);
    assert_eq!(ats(history_of(&histories, &b.id)), secs(&[1]));
}

#[test]
fn closed_connections_leave_once_past_the_retention() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let b = conn(40001, 80, 2, true);
    let mut tracker = Tracker::new(HistoryLimits {
        per_connection: 100,
        total: 1_000,
        retention: 3 * SEC,
    });
    tracker.record(&obs(
        t0,
        vec![sock(&a, 0, 0, 0, 0), sock(&b, 0, 0, 0, 0)],
        vec![],
    ));
    tracker.record(&obs(
        t0 + SEC,
        vec![sock(&a, 1, 0, 0, 0)],
        vec![closed(&b, 9, 0)],
    ));
    for i in 2..=4u32 {
        tracker.record(&obs(t0 + SEC * i, vec![sock(&a, 1, 0, 0, 0)], vec![]));
        assert!(
            tracker.connection(b.id).is_some_and(|c| !c.active),
            "at {i} s"
        );
    }
    tracker.record(&obs(t0 + 5 * SEC, vec![sock(&a, 1, 0, 0, 0)], vec![]));
    assert!(tracker.connection(b.id).is_none());
    let histories = tracker.history(Duration::ZERO);
    assert!(histories.iter().all(|h| h.connection_id != b.id));
    assert_eq!(ats(history_of(&histories, &a.id)), secs(&[2, 3, 4, 5]));
}

#[test]
fn the_same_connection_keeps_its_id_and_a_reused_tuple_gets_a_new_one() {
    let t0 = Instant::now();
    let first = conn(40000, 80, 7, true);
    // The same socket seen again: state and owner may change, the id does not.
    let mut again = conn(40000, 80, 7, true);
    again.state = TcpState::CloseWait;
    again.pid = Some(43);
    let again = ConnectionParts {
        local: again.local,
        remote: again.remote,
        state: again.state,
        inode: again.inode,
        uid: again.uid,
        pid: again.pid,
        process: None,
        // Learned later: the id stays the one the connection was first given.
        cookie: first.cookie,
        generation: again.generation,
        active: true,
    }
    .build();
    assert_eq!(first.id, again.id);
    assert_eq!(generate_connection_id(&first), first.id);
    // The same 4-tuple, a later connection.
    let reused = conn(40000, 80, 8, true);
    assert_eq!((reused.local, reused.remote), (first.local, first.remote));
    assert_ne!(reused.id, first.id);

    let mut tracker = Tracker::default();
    tracker.record(&obs(t0, vec![sock(&first, 100, 0, 0, 0)], vec![]));
    let rows = tracker.record(&obs(t0 + SEC, vec![sock(&again, 600, 0, 0, 0)], vec![]));
    assert_eq!(find(&rows, &first.id).tx_bytes, 500);
    // The old one closed and the tuple was reused: two connections, each with its own counts.
    let rows = tracker.record(&obs(
        t0 + 2 * SEC,
        vec![sock(&reused, 50, 0, 0, 0)],
        vec![closed(&first, 700, 0)],
    ));
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(find(&rows, &first.id).tx_bytes, 100);
    assert!(!find(&rows, &first.id).connection.active);
    assert_eq!(find(&rows, &reused.id).tx_bytes, 50);
    assert!(find(&rows, &reused.id).connection.active);
    let histories = tracker.history(Duration::ZERO);
    assert_eq!(ats(history_of(&histories, &first.id)), secs(&[1, 2]));
    assert_eq!(ats(history_of(&histories, &reused.id)), secs(&[2]));
}

#[test]
fn take_snapshot_reports_the_counters_at_the_observation() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let b = conn(40001, 80, 2, true);
    let snapshot =
        Tracker::take_snapshot(&obs(t0, vec![sock(&a, 1, 2, 3, 4)], vec![closed(&b, 5, 6)]));
    assert_eq!(snapshot.len(), 2);
    let a_snap = snapshot.iter().find(|s| s.connection_id == a.id).unwrap();
    assert_eq!(a_snap.timestamp, t0);
    assert!(a_snap.active);
    assert_eq!(
        a_snap.counters,
        Counters {
            tx_bytes: 1,
            rx_bytes: 2,
            tx_packets: 3,
            rx_packets: 4
        }
    );
    let b_snap = snapshot.iter().find(|s| s.connection_id == b.id).unwrap();
    assert!(!b_snap.active);
    assert_eq!((b_snap.counters.tx_bytes, b_snap.counters.rx_bytes), (5, 6));
}

#[test]
fn a_socket_listed_twice_counts_once() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let mut tracker = Tracker::default();
    tracker.record(&obs(t0, vec![sock(&a, 100, 0, 0, 0)], vec![]));
    let rows = tracker.record(&obs(
        t0 + SEC,
        vec![sock(&a, 1_100, 0, 0, 0), sock(&a, 1_100, 0, 0, 0)],
        vec![],
    ));
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(find(&rows, &a.id).tx_bytes, 1_000);
}

fn changes(at: Instant, sockets: Vec<ObservedSocket>, closed: Vec<ObservedSocket>) -> Observation {
    Observation {
        scope: Scope::Changes,
        ..obs(at, sockets, closed)
    }
}

#[test]
fn incremental_observations_keep_idle_connections_alive_and_their_baseline() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let b = conn(40001, 80, 2, true);
    let mut tracker = Tracker::default();
    tracker.record(&obs(
        t0,
        vec![sock(&a, 100, 0, 0, 0), sock(&b, 100, 0, 0, 0)],
        vec![],
    ));
    let rows = tracker.record(&changes(t0 + SEC, vec![sock(&a, 300, 0, 0, 0)], vec![]));
    assert_eq!(rows.len(), 1, "only what changed has a row: {rows:#?}");
    assert_eq!(find(&rows, &a.id).tx_bytes, 200);
    // b was not listed for two polls: still alive, and its next change counts from 100.
    tracker.record(&changes(t0 + 2 * SEC, vec![], vec![]));
    assert!(
        tracker.connection(b.id).is_none(),
        "no history before it moved"
    );
    let rows = tracker.record(&changes(t0 + 3 * SEC, vec![sock(&b, 160, 0, 0, 0)], vec![]));
    assert_eq!(find(&rows, &b.id).tx_bytes, 60);
    assert!(tracker.connection(b.id).unwrap().active);
    // a's idle polls are zeros, filled in when read.
    let histories = tracker.history(Duration::ZERO);
    let h = history_of(&histories, &a.id);
    assert_eq!(ats(h), secs(&[1, 2, 3]));
    let rates: Vec<u64> = h.samples.iter().map(|s| s.tx_bytes_per_second).collect();
    assert_eq!(rates, vec![200, 0, 0]);
    // A new measurement keeps the baselines of sockets the next observation does not list.
    tracker.reset_baseline();
    tracker.record(&changes(t0 + 4 * SEC, vec![], vec![]));
    let rows = tracker.record(&changes(t0 + 5 * SEC, vec![sock(&b, 170, 0, 0, 0)], vec![]));
    assert_eq!(find(&rows, &b.id).tx_bytes, 10);
    assert_eq!(tracker.tracked_connections(), 2);
}

#[test]
fn a_second_close_event_adds_only_what_is_new() {
    let t0 = Instant::now();
    let a = conn(40000, 80, 1, true);
    let mut tracker = Tracker::default();
    tracker.record(&changes(t0, vec![sock(&a, 100, 0, 0, 0)], vec![]));
    let rows = tracker.record(&changes(t0 + SEC, vec![], vec![closed(&a, 150, 0)]));
    assert_eq!(find(&rows, &a.id).tx_bytes, 50);
    // The kernel published the socket's final counters once more, with bytes read since.
    let rows = tracker.record(&changes(t0 + 2 * SEC, vec![], vec![closed(&a, 170, 5)]));
    let bw = find(&rows, &a.id);
    assert_eq!((bw.tx_bytes, bw.rx_bytes), (20, 5));
    assert!(!bw.connection.active);
    // Forgotten once past the grace and the retention of its samples.
    let mut t = 3;
    while tracker.tracked_connections() > 0 && t < 2_000 {
        tracker.record(&changes(t0 + SEC * t, vec![], vec![]));
        t += 1;
    }
    assert_eq!(tracker.tracked_connections(), 0);
}
