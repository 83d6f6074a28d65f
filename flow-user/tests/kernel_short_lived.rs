//! Connections that open, move bytes and close between two polls are all accounted for, and
//! leave no entry behind in the kernel map.

mod support;

use std::{
    collections::HashSet,
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    thread,
    time::Duration,
};

use flow_user::ebpf::KernelEvents;
use support::{collect_closed, load, tuple_addrs};

const CONNECTIONS: usize = 1_000;
const REQUEST: usize = 300;
const RESPONSE: usize = 1_700;

#[test]
fn a_thousand_short_connections_inside_one_poll() {
    let Some(mut program) = load(&support::options()) else {
        return;
    };
    let closed = KernelEvents::start(&mut program, false).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let server = thread::spawn(move || {
        for _ in 0..CONNECTIONS {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; REQUEST];
            socket.read_exact(&mut request).unwrap();
            socket.write_all(&[1u8; RESPONSE]).unwrap();
        }
    });
    for _ in 0..CONNECTIONS {
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client.write_all(&[2u8; REQUEST]).unwrap();
        let mut response = [0u8; RESPONSE];
        client.read_exact(&mut response).unwrap();
        client.shutdown(Shutdown::Both).unwrap();
    }
    server.join().unwrap();

    let ours = |e: &flow_common::SockClosed| {
        tuple_addrs(&e.counters.tuple)
            .is_some_and(|(local, remote)| local.port() == port || remote.port() == port)
    };
    // The typed rungs publish twice per socket (at TCP_CLOSE and at destroy), with cumulative
    // counters: keep the larger event per socket (cookie there; the tuple on the others).
    let latest = |all: &[flow_common::SockClosed]| {
        let mut by_socket = std::collections::HashMap::new();
        for event in all.iter().filter(|e| ours(e)) {
            let key = (event.counters.cookie, tuple_addrs(&event.counters.tuple));
            let kept = by_socket.entry(key).or_insert(*event);
            let total = |e: &flow_common::SockClosed| e.counters.tx_bytes + e.counters.rx_bytes;
            if total(event) > total(kept) {
                *kept = *event;
            }
        }
        by_socket.into_values().collect::<Vec<_>>()
    };
    let events = collect_closed(&closed, Duration::from_secs(20), |all| {
        let latest = latest(all);
        latest.len() >= 2 * CONNECTIONS
            && latest.iter().map(|e| e.counters.rx_bytes).sum::<u64>()
                == (CONNECTIONS * (REQUEST + RESPONSE)) as u64
    });
    let latest = latest(&events);
    let ours: Vec<_> = latest.iter().collect();
    // One socket, one event: by cookie where the rung has one (a 4-tuple can come back within
    // the test once its TIME_WAIT is a second old: loopback reuses it), else by 4-tuple.
    let sockets: HashSet<_> = ours
        .iter()
        .map(|e| (e.counters.cookie, tuple_addrs(&e.counters.tuple)))
        .collect();
    assert_eq!(
        ours.len(),
        2 * CONNECTIONS,
        "a close event for every socket"
    );
    assert_eq!(sockets.len(), 2 * CONNECTIONS, "no socket reported twice");
    let (clients, servers): (Vec<_>, Vec<_>) = ours
        .iter()
        .partition(|e| e.counters.tuple.remote_port == port);
    let sum = |set: &[&&flow_common::SockClosed], f: fn(&flow_common::SockCounters) -> u64| {
        set.iter().map(|e| f(&e.counters)).sum::<u64>()
    };
    let total = |n: usize| (CONNECTIONS * n) as u64;
    assert_eq!(sum(&clients, |c| c.tx_bytes), total(REQUEST));
    assert_eq!(sum(&clients, |c| c.rx_bytes), total(RESPONSE));
    assert_eq!(sum(&servers, |c| c.tx_bytes), total(RESPONSE));
    assert_eq!(sum(&servers, |c| c.rx_bytes), total(REQUEST));

    let left = program
        .sockets()
        .unwrap()
        .into_iter()
        .filter(|(_, c)| {
            tuple_addrs(&c.tuple)
                .is_some_and(|(local, remote)| local.port() == port || remote.port() == port)
        })
        .count();
    assert_eq!(left, 0, "closed sockets must leave the map");
    assert_eq!(program.stats().unwrap().close_drops, 0);
}
