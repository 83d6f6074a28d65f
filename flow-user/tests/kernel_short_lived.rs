//! Connections that open, move bytes and close between two polls are all accounted for, and
//! leave no entry behind in the kernel map.

mod common;

use std::{
    collections::HashSet,
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    thread,
    time::Duration,
};

use common::{collect_closed, load, tuple_addrs};
use flow_user::ebpf::KernelEvents;

const CONNECTIONS: usize = 1_000;
const REQUEST: usize = 300;
const RESPONSE: usize = 1_700;

#[test]
fn a_thousand_short_connections_inside_one_poll() {
    let Some(mut program) = load(&common::options()) else {
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
    let events = collect_closed(&closed, Duration::from_secs(20), |all| {
        all.iter().filter(|e| ours(e)).count() >= 2 * CONNECTIONS
    });
    let ours: Vec<_> = events.iter().filter(|e| ours(e)).collect();
    let sockets: HashSet<_> = ours
        .iter()
        .map(|e| tuple_addrs(&e.counters.tuple))
        .collect();
    assert_eq!(ours.len(), 2 * CONNECTIONS, "one close event per socket");
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
