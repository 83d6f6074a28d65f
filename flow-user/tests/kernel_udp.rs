//! UDP flows counted by the `cgroup_skb` programs: exact payload bytes and datagrams per remote
//! endpoint on both ends (a connected client, an unconnected server), IPv4 and IPv6, for live
//! sockets and for a socket that opens, exchanges and closes between two polls; a QUIC v1
//! Initial on a non-443 port named QUIC; the flow map bounded, its evictions counted.
//!
//! Plain sockets only: `cargo xtask vm-test` runs this on every rung of its kernels (UDP is
//! counted the same whatever the rung). DNS over UDP, which needs dnsmasq, dig and the `flow`
//! binary, is in `kernel_udp_dns` (host only).

mod support;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use flow_user::{
    ebpf::LoadOptions, model::Transport, ConnectionBandwidth, ModeChoice, Monitor, MonitorOptions,
    Protocol,
};
use support::{free_port, may_load, open};

/// The one UDP row of this flow (there must be exactly one).
fn flow_row(
    rows: &[ConnectionBandwidth],
    local: SocketAddr,
    remote: SocketAddr,
) -> &ConnectionBandwidth {
    let matching: Vec<_> = rows
        .iter()
        .filter(|b| b.connection.local == local && b.connection.remote == remote)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one row for {local} -> {remote}, got {matching:#?}"
    );
    assert_eq!(matching[0].connection.transport, Transport::Udp);
    matching[0]
}

/// Asserts a row's bytes and datagrams both ways.
fn assert_moved(row: &ConnectionBandwidth, tx: (u64, u64), rx: (u64, u64), what: &str) {
    assert_eq!(
        (row.tx_bytes, row.tx_packets, row.rx_bytes, row.rx_packets),
        (tx.0, tx.1, rx.0, rx.1),
        "{what}: (tx bytes, tx datagrams, rx bytes, rx datagrams) of {row:#?}"
    );
}

/// A client's traffic: `sends` datagrams of `size` bytes, answered by `replies` of `reply`.
struct Plan {
    sends: usize,
    size: usize,
    replies: usize,
    reply: usize,
}

impl Plan {
    fn client_moved(&self) -> ((u64, u64), (u64, u64)) {
        let tx = ((self.sends * self.size) as u64, self.sends as u64);
        let rx = ((self.replies * self.reply) as u64, self.replies as u64);
        (tx, rx)
    }
}

/// Runs `plans` between connected clients and the unconnected `server`; returns the clients.
fn exchange(server: &UdpSocket, plans: &[Plan]) -> Vec<UdpSocket> {
    let target = server.local_addr().unwrap();
    let clients: Vec<UdpSocket> = plans
        .iter()
        .map(|plan| {
            let client = UdpSocket::bind((target.ip(), 0)).unwrap();
            client.connect(target).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            for _ in 0..plan.sends {
                assert_eq!(client.send(&vec![1u8; plan.size]).unwrap(), plan.size);
            }
            client
        })
        .collect();
    let mut buffer = vec![0u8; 65_536];
    for _ in 0..plans.iter().map(|p| p.sends).sum::<usize>() {
        server.recv_from(&mut buffer).unwrap();
    }
    for (client, plan) in clients.iter().zip(plans) {
        let to = client.local_addr().unwrap();
        for _ in 0..plan.replies {
            server.send_to(&vec![2u8; plan.reply], to).unwrap();
        }
        for _ in 0..plan.replies {
            assert_eq!(client.recv(&mut buffer).unwrap(), plan.reply);
        }
    }
    clients
}

fn exact_per_remote(loopback: IpAddr) {
    let Some(mut monitor) = open(ModeChoice::Ebpf) else {
        return;
    };
    assert!(
        monitor.describe().contains("udp flows counted"),
        "{}",
        monitor.describe()
    );
    // Where the kernel refuses the sender's pid to cgroup_skb (6.1), the mode line says so.
    let sender = (!monitor.describe().contains("senders unknown")).then(std::process::id);
    let server = UdpSocket::bind((loopback, 0)).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let at = server.local_addr().unwrap();
    monitor.step().unwrap();

    // Alive: two connected clients, one server socket talking to both.
    let plans = [
        Plan {
            sends: 3,
            size: 100,
            replies: 2,
            reply: 40,
        },
        Plan {
            sends: 5,
            size: 1_000,
            replies: 4,
            reply: 7,
        },
    ];
    let clients = exchange(&server, &plans);
    let rows = monitor.step().unwrap();
    for (client, plan) in clients.iter().zip(&plans) {
        let me = client.local_addr().unwrap();
        let (tx, rx) = plan.client_moved();
        let row = flow_row(&rows, me, at);
        assert_moved(row, tx, rx, "client end");
        assert!(row.connection.active);
        assert_eq!(row.connection.pid, sender, "{row:#?}");
        let server_end = flow_row(&rows, at, me);
        assert_moved(server_end, rx, tx, "server end, per remote");
        assert_eq!(server_end.connection.pid, sender, "{server_end:#?}");
    }

    // Opens, exchanges and closes between two polls.
    let plan = Plan {
        sends: 2,
        size: 77,
        replies: 1,
        reply: 33,
    };
    let short = exchange(&server, std::slice::from_ref(&plan));
    let me = short[0].local_addr().unwrap();
    drop(short);
    let rows = monitor.step().unwrap();
    let (tx, rx) = plan.client_moved();
    let row = flow_row(&rows, me, at);
    assert_moved(row, tx, rx, "short-lived client");
    assert!(!row.connection.active, "{row:#?}");
    assert_moved(
        flow_row(&rows, at, me),
        rx,
        tx,
        "server end of the short-lived client",
    );

    // Its flow was reported closed once and deleted: nothing more shows for it.
    let rows = monitor.step().unwrap();
    assert!(
        rows.iter()
            .filter(|r| r.connection.local == me)
            .all(|r| r.tx_bytes == 0 && r.rx_bytes == 0),
        "{rows:#?}"
    );
}

#[test]
fn udp_v4_exact_per_remote() {
    exact_per_remote(IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn udp_v6_exact_per_remote() {
    exact_per_remote(IpAddr::V6(Ipv6Addr::LOCALHOST));
}

/// The RFC 9001 (appendix A.2) client Initial, a QUIC v1 long-header packet.
fn quic_initial() -> Vec<u8> {
    let hex: String = include_str!("../src/protocol/testdata/rfc9001_a2_client_initial.hex")
        .split_whitespace()
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn quic_initial_on_another_port_is_quic() {
    let Some(mut monitor) = open(ModeChoice::Ebpf) else {
        return;
    };
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = server.local_addr().unwrap();
    assert_ne!(at.port(), 443);
    monitor.step().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let initial = quic_initial();
    client.send_to(&initial, at).unwrap();
    let mut buffer = vec![0u8; 4_096];
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(server.recv_from(&mut buffer).unwrap().0, initial.len());
    let me = client.local_addr().unwrap();
    let rows = monitor.step().unwrap();
    for (local, remote) in [(me, at), (at, me)] {
        let row = flow_row(&rows, local, remote);
        assert_eq!(row.connection.protocol, Protocol::Quic, "{row:#?}");
        assert_eq!(row.tx_bytes + row.rx_bytes, initial.len() as u64);
    }
}

#[test]
fn udp_flows_are_bounded_and_evictions_counted() {
    if !may_load() {
        return;
    }
    const CAPACITY: u32 = 8;
    const REMOTES: u16 = 40;
    let mut monitor = Monitor::open(&MonitorOptions {
        mode: ModeChoice::Ebpf,
        load: LoadOptions {
            udp_flows: CAPACITY,
            ..support::options()
        },
        ..MonitorOptions::default()
    })
    .unwrap();
    monitor.step().unwrap();
    // One unconnected socket, one datagram to each of 40 remotes (nobody listens: loopback
    // answers with ICMP, which an unconnected socket does not report).
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let base = free_port();
    for i in 0..REMOTES {
        let port = base.wrapping_add(i).max(1_024);
        sender.send_to(&[3u8; 10], ("127.0.0.1", port)).unwrap();
    }
    monitor.step().unwrap();
    let health = monitor.health();
    // At most CAPACITY of the 40 flows are in the map: the others were evicted (a lower bound).
    assert!(
        health.evictions >= u64::from(REMOTES) - u64::from(CAPACITY),
        "{health:#?}"
    );
}
