//! The kernel program counts exactly the bytes each end of a loopback connection moved.

mod support;

use std::{net::TcpListener, time::Duration};

use flow_user::ebpf::KernelEvents;
use support::{collect_closed, load, transfer, tuple_addrs, Pair};

const CLIENT_WRITES: [usize; 5] = [1, 64, 1_500, 64 * 1024, 1024 * 1024];
const SERVER_WRITES: [usize; 5] = [1_048_576, 65_536, 1_500, 64, 1];

fn exact_on(bind: &str) {
    let Some(mut program) = load(&support::options()) else {
        return;
    };
    let closed = KernelEvents::start(&mut program, false).unwrap();
    let listener = TcpListener::bind(bind).unwrap();
    let pair = Pair::open(&listener);
    // Two rounds in each direction, interleaved, so both ends send and receive.
    let mut up = transfer(&pair.client, &pair.server, &CLIENT_WRITES);
    let mut down = transfer(&pair.server, &pair.client, &SERVER_WRITES);
    up += transfer(&pair.client, &pair.server, &CLIENT_WRITES[..3]);
    down += transfer(&pair.server, &pair.client, &[7, 1, 3]);

    let sockets = program.sockets().unwrap();
    let find = |addrs| support::counters_of(&sockets, addrs);
    let client = find(pair.client_addrs());
    let server = find(pair.server_addrs());
    assert_eq!((client.tx_bytes, client.rx_bytes), (up, down), "client end");
    assert_eq!((server.tx_bytes, server.rx_bytes), (down, up), "server end");
    assert_eq!(client.pid_tgid >> 32, std::process::id() as u64);

    // Closing hands the same totals to userspace and removes both entries.
    let (client_addrs, server_addrs) = (pair.client_addrs(), pair.server_addrs());
    drop(pair);
    let events = collect_closed(&closed, Duration::from_secs(5), |all| {
        let ours = |a| {
            all.iter()
                .any(|e| tuple_addrs(&e.counters.tuple) == Some(a))
        };
        ours(client_addrs) && ours(server_addrs)
    });
    let final_of = |addrs| {
        events
            .iter()
            .find(|e| tuple_addrs(&e.counters.tuple) == Some(addrs))
            .map(|e| e.counters)
            .unwrap_or_else(|| panic!("no close event for {addrs:?}"))
    };
    assert_eq!(
        (
            final_of(client_addrs).tx_bytes,
            final_of(client_addrs).rx_bytes
        ),
        (up, down)
    );
    assert_eq!(
        (
            final_of(server_addrs).tx_bytes,
            final_of(server_addrs).rx_bytes
        ),
        (down, up)
    );
    let left = program.sockets().unwrap();
    assert!(!left.iter().any(
        |(_, c)| matches!(tuple_addrs(&c.tuple), Some(a) if a == client_addrs || a == server_addrs)
    ));
}

#[test]
fn exact_bytes_ipv4() {
    exact_on("127.0.0.1:0");
}

#[test]
fn exact_bytes_ipv6() {
    exact_on("[::1]:0");
}
