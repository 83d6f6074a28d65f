use flow_common::{HelloEvent, PayloadEvent, DIRECTION_TX, HELLO_MAX, PAYLOAD_MAX};

use super::*;
use crate::{model::Protocol, protocol::quic::testing::big_client_hello};

/// The bytes of a ring item holding `record`.
fn item<T: Copy>(record: &T) -> Vec<u8> {
    // SAFETY: plain `repr(C)` data read as bytes.
    unsafe { std::slice::from_raw_parts((record as *const T).cast::<u8>(), size_of::<T>()) }
        .to_vec()
}

#[test]
fn the_two_payload_records_are_told_apart_by_length() {
    let handshake = big_client_hello("ring.flowtest.test");
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    assert!(record.len() > PAYLOAD_MAX && record.len() <= HELLO_MAX);
    let mut hello = HelloEvent {
        sock: 1,
        first_ns: 2,
        direction: DIRECTION_TX,
        len: record.len() as u32,
        data: [0; HELLO_MAX],
    };
    hello.data[..record.len()].copy_from_slice(&record);
    let seen = payload_seen(&item(&hello)).unwrap();
    assert_eq!((seen.sock, seen.first_ns), (1, 2));
    assert_eq!(seen.facts.protocol, Some(Protocol::Https));
    assert_eq!(
        seen.facts.tls_server_name.as_deref(),
        Some("ring.flowtest.test")
    );

    let request = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let mut prefix = PayloadEvent {
        sock: 3,
        first_ns: 4,
        direction: DIRECTION_TX,
        len: request.len() as u32,
        data: [0; PAYLOAD_MAX],
    };
    prefix.data[..request.len()].copy_from_slice(request);
    let seen = payload_seen(&item(&prefix)).unwrap();
    assert_eq!((seen.sock, seen.first_ns), (3, 4));
    assert_eq!(seen.facts.protocol, Some(Protocol::Http));

    // Shorter than either record: nothing.
    assert_eq!(payload_seen(&item(&prefix)[..100]), None);
}
