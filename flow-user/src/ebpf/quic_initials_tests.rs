use flow_common::{
    udp::{UdpFlowKey, UdpInitialEvent, UDP_INITIAL_MAX},
    DIRECTION_RX, DIRECTION_TX,
};

use super::*;
use crate::protocol::quic::{
    testing::{big_client_hello, crypto_frame, protect},
    VERSION_1, VERSION_2,
};

fn key(port: u16) -> UdpFlowKey {
    UdpFlowKey {
        cookie: 7,
        remote_port: port,
        family: flow_common::AF_INET,
        ..UdpFlowKey::default()
    }
}

/// The record the kernel writes for `datagram`, the flow's `index`-th Initial in `direction`.
fn event(key: UdpFlowKey, direction: u32, index: u32, datagram: &[u8]) -> UdpInitialEvent {
    let mut data = [0u8; UDP_INITIAL_MAX];
    data[..datagram.len()].copy_from_slice(datagram);
    UdpInitialEvent {
        key,
        direction,
        len: datagram.len() as u32,
        index,
        _pad: 0,
        data,
    }
}

/// A ClientHello over two Initial datagrams, its server name in the second.
fn two_datagrams(version: u32, name: &str) -> (Vec<u8>, Vec<u8>) {
    let hello = big_client_hello(name);
    let dcid = [0x44; 8];
    let first = protect(version, &dcid, 0, &crypto_frame(0, &hello[..1100]), 1200);
    let second = protect(version, &dcid, 1, &crypto_frame(1100, &hello[1100..]), 1200);
    (first, second)
}

#[test]
fn a_name_in_the_second_initial_is_read_and_nothing_is_left() {
    for version in [VERSION_1, VERSION_2] {
        let mut initials = PendingInitials::default();
        let (first, second) = two_datagrams(version, "pq.flowtest.test");
        let facts = initials.add(&event(key(1), DIRECTION_TX, 0, &first));
        assert_eq!(facts.protocol, Some(Protocol::Quic));
        assert_eq!(facts.tls_server_name, None);
        assert_eq!(initials.len(), 1, "the first part waits for the second");
        // Another flow's Initial in between changes nothing.
        let (other, _) = two_datagrams(version, "other.flowtest.test");
        initials.add(&event(key(2), DIRECTION_TX, 0, &other));
        initials.tick();
        let facts = initials.add(&event(key(1), DIRECTION_TX, 1, &second));
        assert_eq!(facts.protocol, Some(Protocol::Quic));
        assert_eq!(facts.tls_server_name.as_deref(), Some("pq.flowtest.test"));
        assert_eq!(initials.len(), 1, "only the other flow still waits");
    }
}

#[test]
fn a_name_in_the_first_initial_needs_no_wait() {
    let mut initials = PendingInitials::default();
    let hello = big_client_hello("one.flowtest.test");
    let datagram = protect(VERSION_1, &[0x55; 8], 0, &crypto_frame(0, &hello), 1200);
    let facts = initials.add(&event(key(1), DIRECTION_RX, 0, &datagram));
    assert_eq!(facts.tls_server_name.as_deref(), Some("one.flowtest.test"));
    assert_eq!(initials.len(), 0);
}

#[test]
fn directions_are_apart_and_the_last_initial_ends_the_wait() {
    let mut initials = PendingInitials::default();
    let (first, second) = two_datagrams(VERSION_1, "dir.flowtest.test");
    initials.add(&event(key(1), DIRECTION_TX, 0, &first));
    // The second part arriving in the other direction does not complete it.
    let facts = initials.add(&event(key(1), DIRECTION_RX, 1, &second));
    assert_eq!(facts.tls_server_name, None);
    // The direction's last Initial without the name: nothing more is awaited.
    let facts = initials.add(&event(key(1), DIRECTION_TX, 1, &first));
    assert_eq!(facts.tls_server_name, None);
    assert_eq!(initials.len(), 0);
}

#[test]
fn what_does_not_open_is_not_kept_and_waiting_ends() {
    let mut initials = PendingInitials::default();
    // A server's Initial (other keys) or garbage with a long header: QUIC, nothing kept.
    let mut sealed = vec![0xc3, 0, 0, 0, 1, 8];
    sealed.extend([0x66; 8]);
    sealed.extend([0, 0, 0x44, 0xc4]); // no SCID, no token, 1,220 bytes
    sealed.extend([0x99; 1220]);
    let facts = initials.add(&event(key(1), DIRECTION_RX, 0, &sealed));
    assert_eq!(facts.protocol, Some(Protocol::Quic));
    assert_eq!(initials.len(), 0);
    // A first part whose second never comes is forgotten after a few reads.
    let (first, _) = two_datagrams(VERSION_1, "lost.flowtest.test");
    initials.add(&event(key(3), DIRECTION_TX, 0, &first));
    for _ in 0..=MAX_AGE_READS {
        assert_eq!(initials.len(), 1);
        initials.tick();
    }
    assert_eq!(initials.len(), 0);
}

#[test]
fn waiting_flows_are_bounded() {
    let mut initials = PendingInitials::default();
    let (first, _) = two_datagrams(VERSION_1, "many.flowtest.test");
    for port in 0..(MAX_PENDING + 10) as u16 {
        let facts = initials.add(&event(key(port), DIRECTION_TX, 0, &first));
        assert_eq!(facts.protocol, Some(Protocol::Quic));
    }
    assert_eq!(initials.len(), MAX_PENDING);
}
