//! Monitor tests over a [`Replay`] of recorded observations, with waits recorded instead of slept.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use super::*;
use crate::{
    id::ConnectionId,
    model::{Counters, TcpState},
    observe::{ConnectionParts, ObservedSocket, Replay, Scope},
};

const SEC: Duration = Duration::from_secs(1);

fn conn(local: u16, inode: u64) -> NetConnection {
    ConnectionParts {
        local: SocketAddr::from(([127, 0, 0, 1], local)),
        remote: SocketAddr::from(([127, 0, 0, 1], 9000)),
        state: TcpState::Established,
        inode,
        uid: Some(0),
        pid: None,
        process: None,
        cookie: None,
        generation: inode,
        active: true,
    }
    .build()
}

fn sock(connection: &NetConnection, tx: u64, rx: u64) -> ObservedSocket {
    let counters = Counters {
        tx_bytes: tx,
        rx_bytes: rx,
        tx_packets: tx / 1_000,
        rx_packets: rx / 1_000,
    };
    observed(connection.clone(), counters, 0, 0)
}

fn observed(
    connection: NetConnection,
    counters: Counters,
    rx_queue: u64,
    tx_queue: u64,
) -> ObservedSocket {
    ObservedSocket {
        connection,
        counters,
        rx_queue,
        tx_queue,
        http: None,
    }
}

fn obs(at: Instant, sockets: Vec<ObservedSocket>) -> Observation {
    Observation {
        at,
        sockets,
        closed: Vec::new(),
        scope: Scope::Complete,
        health: Health {
            mode: Some(Mode::Procfs),
            ..Health::default()
        },
    }
}

/// `n` observations one second apart of connection `a`, which sends `rate(i)` bytes in second i.
fn steady(t0: Instant, a: &NetConnection, n: u32, rate: impl Fn(u32) -> u64) -> Vec<Observation> {
    let mut total = 0;
    (0..n)
        .map(|i| {
            if i > 0 {
                total += rate(i);
            }
            obs(t0 + SEC * i, vec![sock(a, total, total / 2)])
        })
        .collect()
}

/// A monitor over `observations` whose waits are recorded, not slept.
fn replaying(observations: Vec<Observation>) -> (Monitor, Arc<Mutex<Vec<Duration>>>) {
    let mut monitor = Monitor::with_observer(
        Box::new(Replay::new(Mode::Procfs, observations)),
        HistoryLimits::default(),
    );
    let waits = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&waits);
    monitor.set_sleeper(Box::new(move |d| {
        record.lock().unwrap().push(d);
        Ok(())
    }));
    (monitor, waits)
}

fn remaining(monitor: &Monitor) -> String {
    monitor.describe()
}

fn only<'a>(rows: &'a [ConnectionBandwidth], c: &NetConnection) -> &'a ConnectionBandwidth {
    let matching: Vec<_> = rows.iter().filter(|b| b.connection.id == c.id).collect();
    assert_eq!(matching.len(), 1, "{rows:#?}");
    matching[0]
}

#[test]
fn bandwidth_with_a_window_measures_between_two_observations() {
    let t0 = Instant::now();
    let a = conn(40000, 11);
    let observations = vec![
        obs(t0, vec![sock(&a, 1_000, 0)]),
        obs(t0 + SEC, vec![sock(&a, 501_000, 250_000)]),
        obs(t0 + 2 * SEC, vec![sock(&a, 9_999_999, 0)]),
    ];
    let (mut monitor, waits) = replaying(observations);
    let rows = monitor.connection_bandwidth(SEC).unwrap();
    let bw = only(&rows, &a);
    assert_eq!((bw.tx_bytes, bw.rx_bytes), (500_000, 250_000));
    assert_eq!(
        (
            bw.tx_bytes_per_second,
            bw.rx_bytes_per_second,
            bw.bytes_per_second
        ),
        (500_000, 250_000, 750_000)
    );
    assert_eq!(bw.packets_per_second, 750);
    assert_eq!(bw.sample_window, SEC);
    assert_eq!(*waits.lock().unwrap(), vec![SEC]);
    // Exactly two observations were used.
    assert_eq!(remaining(&monitor), "replaying 1 recorded observations");
    assert_eq!(monitor.health().mode, Some(Mode::Procfs));
}

#[test]
fn every_windowed_call_measures_afresh() {
    let t0 = Instant::now();
    let a = conn(40000, 11);
    let observations = vec![
        obs(t0, vec![sock(&a, 0, 0)]),
        obs(t0 + SEC, vec![sock(&a, 1_000, 0)]),
        obs(t0 + 5 * SEC, vec![sock(&a, 50_000, 0)]),
        obs(t0 + 7 * SEC, vec![sock(&a, 54_000, 0)]),
    ];
    let (mut monitor, waits) = replaying(observations);
    let first = monitor.connection_bandwidth(SEC).unwrap();
    assert_eq!(only(&first, &a).tx_bytes_per_second, 1_000);
    // Not since the previous call (49,000 over 4 s), but over its own window.
    let second = monitor.connection_bandwidth(2 * SEC).unwrap();
    let bw = only(&second, &a);
    assert_eq!((bw.tx_bytes, bw.sample_window), (4_000, 2 * SEC));
    assert_eq!(bw.tx_bytes_per_second, 2_000);
    assert_eq!(*waits.lock().unwrap(), vec![SEC, 2 * SEC]);
}

#[test]
fn zero_window_measures_since_the_previous_call() {
    let t0 = Instant::now();
    let a = conn(40000, 11);
    let observations = vec![
        obs(t0, vec![sock(&a, 0, 0)]),
        obs(t0 + SEC, vec![sock(&a, 2_000, 0)]),
        obs(t0 + 3 * SEC, vec![sock(&a, 10_000, 0)]),
        obs(t0 + 7 * SEC, vec![sock(&a, 10_400, 0)]),
        obs(t0 + 8 * SEC, vec![sock(&a, 10_400, 0)]),
    ];
    let (mut monitor, waits) = replaying(observations);

    // First call: no previous one, so two observations FIRST_CALL_WINDOW apart.
    let rows = monitor.connection_bandwidth(Duration::ZERO).unwrap();
    let bw = only(&rows, &a);
    assert_eq!((bw.tx_bytes, bw.sample_window), (2_000, SEC));
    assert_eq!(*waits.lock().unwrap(), vec![FIRST_CALL_WINDOW]);
    assert_eq!(remaining(&monitor), "replaying 3 recorded observations");

    // Later calls: one observation each, measured since the previous call, no wait.
    let rows = monitor.connection_bandwidth(Duration::ZERO).unwrap();
    let bw = only(&rows, &a);
    assert_eq!((bw.tx_bytes, bw.sample_window), (8_000, 2 * SEC));
    assert_eq!(bw.tx_bytes_per_second, 4_000);
    let rows = monitor.connection_bandwidth(Duration::ZERO).unwrap();
    let bw = only(&rows, &a);
    assert_eq!((bw.tx_bytes, bw.sample_window), (400, 4 * SEC));
    assert_eq!(bw.tx_bytes_per_second, 100);
    assert_eq!(*waits.lock().unwrap(), vec![FIRST_CALL_WINDOW]);
    assert_eq!(remaining(&monitor), "replaying 1 recorded observations");
}

#[test]
fn zero_window_after_a_windowed_call_continues_from_it() {
    let t0 = Instant::now();
    let a = conn(40000, 11);
    let (mut monitor, waits) = replaying(steady(t0, &a, 3, |i| u64::from(i) * 1_000));
    monitor.connection_bandwidth(SEC).unwrap();
    let rows = monitor.connection_bandwidth(Duration::ZERO).unwrap();
    assert_eq!(only(&rows, &a).tx_bytes, 2_000);
    assert_eq!(*waits.lock().unwrap(), vec![SEC]);
}

#[test]
fn collect_history_gives_five_samples_per_live_connection_oldest_first() {
    let t0 = Instant::now();
    let a = conn(40000, 11);
    let b = conn(40001, 22);
    // c goes away after the third observation, without a close event.
    let c = conn(40002, 33);
    let observations: Vec<Observation> = (0..6u32)
        .map(|i| {
            let n = u64::from(i);
            let mut sockets = vec![sock(&a, n * n * 1_000, 0), sock(&b, n * 100, n * 10)];
            if i < 3 {
                sockets.push(sock(&c, n, 0));
            }
            obs(t0 + SEC * i, sockets)
        })
        .collect();
    let (mut monitor, waits) = replaying(observations);
    let histories = monitor.collect_history(5 * SEC, SEC).unwrap();
    assert_eq!(*waits.lock().unwrap(), vec![SEC; 5]);
    assert_eq!(remaining(&monitor), "replaying 0 recorded observations");

    let of = |id: &ConnectionId| histories.iter().find(|h| h.connection_id == *id).unwrap();
    for live in [&a, &b] {
        let h = of(&live.id);
        assert_eq!(h.tracking_window, 5 * SEC);
        let at: Vec<Duration> = h.samples.iter().map(|s| s.at).collect();
        assert_eq!(at, (1..=5).map(|s| SEC * s).collect::<Vec<_>>());
        assert!(monitor.tracker().connection(live.id).unwrap().active);
    }
    let rates: Vec<u64> = of(&a.id)
        .samples
        .iter()
        .map(|s| s.tx_bytes_per_second)
        .collect();
    assert_eq!(rates, vec![1_000, 3_000, 5_000, 7_000, 9_000]);
    let b0 = of(&b.id).samples[0];
    assert_eq!(
        (
            b0.tx_bytes_per_second,
            b0.rx_bytes_per_second,
            b0.packets_per_second
        ),
        (100, 10, 0)
    );
    // The connection that went away keeps the samples it had, and is inactive.
    assert_eq!(of(&c.id).samples.len(), 2);
    assert!(!monitor.tracker().connection(c.id).unwrap().active);

    // The same samples through connection_history; reset empties it.
    assert_eq!(monitor.connection_history(5 * SEC), histories);
    assert_eq!(monitor.connection_history(2 * SEC)[0].samples.len(), 2);
    monitor.reset_connection_tracking();
    assert!(monitor.connection_history(Duration::ZERO).is_empty());
    assert!(!monitor.tracker().initialized());
}

#[test]
fn collect_history_after_earlier_measurements_stays_inside_its_window() {
    let t0 = Instant::now();
    let a = conn(40000, 11);
    let (mut monitor, _waits) = replaying(steady(t0, &a, 8, |_| 1_000));
    monitor.connection_bandwidth(SEC).unwrap();
    let histories = monitor.collect_history(5 * SEC, SEC).unwrap();
    assert_eq!(histories.len(), 1);
    let at: Vec<Duration> = histories[0].samples.iter().map(|s| s.at).collect();
    assert_eq!(at, (3..=7).map(|s| SEC * s).collect::<Vec<_>>());
}

#[test]
fn read_socket_stats_filters_by_inode() {
    let t0 = Instant::now();
    let sockets: Vec<ObservedSocket> = [(40000, 11), (40001, 22), (40002, 33)]
        .into_iter()
        .map(|(port, inode)| {
            let counters = Counters {
                tx_bytes: inode * 1_000,
                rx_bytes: inode * 2_000,
                tx_packets: inode,
                rx_packets: inode * 2,
            };
            observed(conn(port, inode), counters, inode * 10, inode * 20)
        })
        .collect();
    let closed = observed(
        ConnectionParts {
            active: false,
            ..parts_of(&conn(40003, 44))
        }
        .build(),
        Counters::default(),
        0,
        0,
    );
    let observation = Observation {
        at: t0,
        sockets: sockets.clone(),
        closed: vec![closed],
        scope: Scope::Complete,
        health: Health::default(),
    };
    let (mut monitor, _) = replaying(vec![observation; 4]);

    let one = monitor.read_socket_stats(Some(22)).unwrap();
    assert_eq!(one.len(), 1, "{one:#?}");
    let s = &one[0];
    assert_eq!(s.inode, 22);
    assert_eq!(s.connection, sockets[1].connection);
    assert_eq!((s.rx_queue, s.tx_queue), (220, 440));
    assert_eq!((s.tx_bytes, s.rx_bytes), (22_000, 44_000));
    assert_eq!((s.tx_packets, s.rx_packets), (22, 44));

    for all in [None, Some(0)] {
        let rows = monitor.read_socket_stats(all).unwrap();
        let mut inodes: Vec<u64> = rows.iter().map(|s| s.inode).collect();
        inodes.sort_unstable();
        // Live sockets only: a closed socket has no queues to report.
        assert_eq!(inodes, vec![11, 22, 33], "{all:?}");
    }
    assert!(monitor.read_socket_stats(Some(99)).unwrap().is_empty());
}

#[test]
fn snapshot_and_connections_list_what_is_observed_without_recording() {
    let t0 = Instant::now();
    let a = conn(40000, 11);
    let observations = vec![
        obs(t0, vec![sock(&a, 10, 20)]),
        obs(t0 + SEC, vec![sock(&a, 30, 40)]),
    ];
    let (mut monitor, _) = replaying(observations);
    let snapshot = monitor.take_snapshot().unwrap();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].connection_id, a.id);
    assert_eq!(snapshot[0].timestamp, t0);
    assert_eq!(
        (snapshot[0].counters.tx_bytes, snapshot[0].counters.rx_bytes),
        (10, 20)
    );
    assert_eq!(monitor.connections().unwrap(), vec![a]);
    // Neither recorded anything.
    assert!(!monitor.tracker().initialized());
    assert!(monitor.connection_history(Duration::ZERO).is_empty());
}

#[test]
fn an_interrupted_wait_ends_the_measurement() {
    let t0 = Instant::now();
    let a = conn(40000, 11);
    let (mut monitor, _) = replaying(steady(t0, &a, 3, |_| 1));
    monitor.set_sleeper(Box::new(|_| Err(anyhow::anyhow!("interrupted"))));
    let err = monitor.connection_bandwidth(SEC).unwrap_err();
    assert_eq!(err.to_string(), "interrupted");
    assert!(monitor.collect_history(5 * SEC, SEC).is_err());
}

#[test]
fn an_exhausted_recording_is_an_error_not_a_panic() {
    let (mut monitor, _) = replaying(Vec::new());
    assert!(monitor.connection_bandwidth(SEC).is_err());
    assert!(monitor.read_socket_stats(None).is_err());
}

fn parts_of(c: &NetConnection) -> ConnectionParts {
    ConnectionParts {
        local: c.local,
        remote: c.remote,
        state: c.state,
        inode: c.inode,
        uid: c.uid,
        pid: c.pid,
        process: c.process.clone(),
        cookie: c.cookie,
        generation: c.generation,
        active: c.active,
    }
}

/// An observer on a simulated clock: every observation costs `cost`, and the monitor's sleeper
/// advances the same clock. Connection `a` moves 1,000 bytes per simulated millisecond.
struct SlowObserver {
    t0: Instant,
    clock: Arc<Mutex<Duration>>,
    cost: Duration,
    a: NetConnection,
}

impl Observer for SlowObserver {
    fn observe(&mut self) -> Result<Observation> {
        let mut now = self.clock.lock().unwrap();
        *now += self.cost;
        let bytes = now.as_millis() as u64 * 1_000;
        Ok(obs(self.t0 + *now, vec![sock(&self.a, bytes, 0)]))
    }

    fn mode(&self) -> Mode {
        Mode::Procfs
    }

    fn describe(&self) -> String {
        "simulated clock".into()
    }
}

#[test]
fn collect_history_keeps_its_schedule_when_observing_is_slow() {
    let clock = Arc::new(Mutex::new(Duration::ZERO));
    let a = conn(40000, 11);
    let mut monitor = Monitor::with_observer(
        Box::new(SlowObserver {
            t0: Instant::now(),
            clock: Arc::clone(&clock),
            cost: Duration::from_millis(800),
            a: a.clone(),
        }),
        HistoryLimits::default(),
    );
    let ticking = Arc::clone(&clock);
    monitor.set_sleeper(Box::new(move |d| {
        *ticking.lock().unwrap() += d;
        Ok(())
    }));
    let histories = monitor.collect_history(5 * SEC, SEC).unwrap();
    let h = histories.iter().find(|h| h.connection_id == a.id).unwrap();
    let at: Vec<Duration> = h.samples.iter().map(|s| s.at).collect();
    assert!((4..=6).contains(&at.len()), "samples at {at:?}");
}
