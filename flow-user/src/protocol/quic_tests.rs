use proptest::prelude::*;

use super::testing::{big_client_hello, crypto_frame, protect};
use super::*;

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// RFC 9001 Appendix A.2: the client Initial (DCID 8394c8f03e515708, packet number 2), 1200
/// bytes, carrying a ClientHello for `example.com`.
fn rfc9001_client_initial() -> Vec<u8> {
    hex(include_str!("testdata/rfc9001_a2_client_initial.hex"))
}

/// RFC 9369 Appendix A.2: the same ClientHello in a QUIC v2 Initial.
fn rfc9369_client_initial() -> Vec<u8> {
    hex(include_str!("testdata/rfc9369_a2_client_initial.hex"))
}

/// RFC 9001 Appendix A.3: the server's Initial (ACK + ServerHello), server keys.
const RFC9001_SERVER_INITIAL: &str = "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac\
    406a5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3dbcba3f6ea46c5b7684df35\
    48e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d\
    20398c276456cbc42158407dd074ee";

/// The first bytes of RFC 9001 A.2's unprotected payload: a CRYPTO frame at offset 0, 241 bytes,
/// holding a ClientHello.
const A2_PAYLOAD_START: &str = "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868";

#[test]
fn initial_keys_match_rfc_9001_and_9369_appendix_a1() {
    let dcid = hex("8394c8f03e515708");
    let (key, iv, hp) = client_key_material(VERSION_1, &dcid).unwrap();
    assert_eq!(key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
    assert_eq!(iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
    assert_eq!(hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
    let (key, iv, hp) = client_key_material(VERSION_2, &dcid).unwrap();
    assert_eq!(key.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
    assert_eq!(iv.to_vec(), hex("91f73e2351d8fa91660e909f"));
    assert_eq!(hp.to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));
    assert!(client_key_material(0xff00_001d, &dcid).is_none());
}

#[test]
fn rfc_9001_a2_client_initial_gives_its_sni() {
    let packet = rfc9001_client_initial();
    assert_eq!(packet.len(), 1200);
    assert!(is_quic_long_header(&packet));
    let header = parse_long_header(&packet).unwrap();
    assert_eq!(header.kind, LongType::Initial);
    assert_eq!(header.dcid, &hex("8394c8f03e515708")[..]);
    assert!(header.whole);
    let payload = open_initial(&packet, &header).expect("the RFC's packet opens");
    assert!(payload.starts_with(&hex(A2_PAYLOAD_START)));
    assert_eq!(payload.len(), 1162);
    assert_eq!(initial_sni(&packet), Some("example.com".into()));
    // The kernel's prefix of the datagram classifies, but does not decrypt.
    assert!(is_quic_long_header(&packet[..64]));
    assert_eq!(initial_sni(&packet[..600]), None);
}

#[test]
fn rfc_9369_a2_client_initial_v2_gives_its_sni() {
    let packet = rfc9369_client_initial();
    assert!(is_quic_long_header(&packet));
    let header = parse_long_header(&packet).unwrap();
    assert_eq!(
        (header.version, header.kind),
        (VERSION_2, LongType::Initial)
    );
    let payload = open_initial(&packet, &header).unwrap();
    assert!(payload.starts_with(&hex(A2_PAYLOAD_START)));
    assert_eq!(initial_sni(&packet), Some("example.com".into()));
}

#[test]
fn the_server_initial_is_quic_but_has_no_client_hello() {
    let packet = hex(RFC9001_SERVER_INITIAL);
    assert!(is_quic_long_header(&packet));
    assert_eq!(initial_sni(&packet), None);
}

#[test]
fn a_corrupted_initial_does_not_open() {
    let mut packet = rfc9001_client_initial();
    packet[700] ^= 1;
    assert!(is_quic_long_header(&packet));
    assert_eq!(initial_sni(&packet), None);
}

#[test]
fn long_header_checks() {
    let packet = rfc9001_client_initial();
    // Short header, version negotiation, an unknown version, Retry, oversized CIDs, too short.
    let mut short = packet.clone();
    short[0] = 0x40;
    assert!(!is_quic_long_header(&short));
    let mut vn = packet.clone();
    vn[1..5].copy_from_slice(&[0, 0, 0, 0]);
    assert!(!is_quic_long_header(&vn));
    let mut draft = packet.clone();
    draft[1..5].copy_from_slice(&[0xff, 0, 0, 0x1d]);
    assert!(!is_quic_long_header(&draft));
    let mut retry = packet.clone();
    retry[0] = 0xf0;
    assert!(!is_quic_long_header(&retry));
    let mut no_fixed_bit = packet.clone();
    no_fixed_bit[0] &= !0x40;
    assert!(!is_quic_long_header(&no_fixed_bit));
    let mut cid = packet.clone();
    cid[5] = 21;
    assert!(!is_quic_long_header(&cid));
    assert!(!is_quic_long_header(&packet[..10]));
    assert!(!is_quic_long_header(&[]));
    assert!(!is_quic_long_header(b"\x00\x1e\x12\x34\x01\x00\x00\x01"));
    // Handshake and 0-RTT packets of either version are QUIC too.
    let mut handshake = vec![0xe0, 0, 0, 0, 1, 4, 1, 2, 3, 4, 0, 0x40, 0x20];
    handshake.extend([0u8; 32]);
    assert!(is_quic_long_header(&handshake));
    let mut zero_rtt_v2 = vec![0xe0, 0x6b, 0x33, 0x43, 0xcf, 0, 0, 0x40, 0x20];
    zero_rtt_v2.extend([0u8; 32]);
    assert!(is_quic_long_header(&zero_rtt_v2));
}

#[test]
fn crypto_frames_out_of_order_with_ping_and_padding() {
    let hello = big_client_hello("shuffled.flowtest.test");
    let dcid = [0x11; 8];
    // Chrome-style: the ClientHello in pieces, out of order, PINGs and PADDING between.
    let mut frames = Vec::new();
    frames.extend(crypto_frame(900, &hello[900..]));
    frames.extend([0x01, 0x00, 0x00, 0x01]);
    frames.extend(crypto_frame(0, &hello[..500]));
    frames.extend([0x00; 7]);
    frames.extend(crypto_frame(400, &hello[400..950])); // overlaps both neighbours
    let packet = protect(VERSION_1, &dcid, 0, &frames, 1300);
    assert_eq!(initial_sni(&packet), Some("shuffled.flowtest.test".into()));
    // With a gap (the piece at 400 missing), the name past it is not read.
    let mut gap = Vec::new();
    gap.extend(crypto_frame(0, &hello[..400]));
    gap.extend(crypto_frame(900, &hello[900..]));
    let packet = protect(VERSION_1, &dcid, 0, &gap, 1300);
    assert_eq!(initial_sni(&packet), None);
}

#[test]
fn a_client_hello_over_two_coalesced_initials() {
    let hello = big_client_hello("two.flowtest.test");
    let dcid = [0x22; 12];
    for version in [VERSION_1, VERSION_2] {
        let mut datagram = protect(version, &dcid, 0, &crypto_frame(0, &hello[..1000]), 0);
        let ack = [0x02, 0x00, 0x00, 0x00, 0x00];
        let mut second = ack.to_vec();
        second.extend(crypto_frame(1000, &hello[1000..]));
        datagram.extend(protect(version, &dcid, 1, &second, 0));
        assert_eq!(initial_sni(&datagram), Some("two.flowtest.test".into()));
        // Only the first part: the name is past its end.
        let first_only = protect(version, &dcid, 0, &crypto_frame(0, &hello[..1000]), 0);
        assert_eq!(initial_sni(&first_only), None);
    }
}

#[test]
fn a_client_hello_over_two_datagrams() {
    let hello = big_client_hello("pq.flowtest.test");
    let dcid = [0x33; 8];
    // Chrome-style: the second datagram holds the name.
    let first = protect(VERSION_1, &dcid, 0, &crypto_frame(0, &hello[..1100]), 1200);
    let second = protect(
        VERSION_1,
        &dcid,
        1,
        &crypto_frame(1100, &hello[1100..]),
        1200,
    );
    assert_eq!(initial_sni(&first), None);
    let mut initials = InitialCrypto::default();
    assert!(initials.add_datagram(&second));
    assert_eq!(initials.sni(), None, "nothing from offset 0 yet");
    assert!(initials.add_datagram(&first));
    assert_eq!(initials.sni().as_deref(), Some("pq.flowtest.test"));
    // Other datagrams add nothing and break nothing.
    assert!(!initials.add_datagram(b"\x40 short header"));
    assert!(!initials.add_datagram(&hex(RFC9001_SERVER_INITIAL)));
    assert_eq!(initials.sni().as_deref(), Some("pq.flowtest.test"));
}

#[test]
fn crypto_data_is_bounded() {
    let mut crypto = Crypto::default();
    let chunk = vec![0u8; 1000];
    for i in 0..40 {
        crypto.add_frames(&crypto_frame(i * 1000 % 15_000, &chunk));
    }
    assert!(crypto.held <= MAX_CRYPTO);
    assert!(crypto.contiguous().len() <= MAX_CRYPTO as usize);
}

#[test]
fn an_initial_followed_by_other_coalesced_packets() {
    let mut datagram = rfc9001_client_initial();
    // A Handshake packet after it (not decryptable here) and trailing padding.
    let mut handshake = vec![0xe0, 0, 0, 0, 1, 8];
    handshake.extend(hex("8394c8f03e515708"));
    handshake.extend([0, 0x40, 0x20]);
    handshake.extend([0x33; 32]);
    datagram.extend(handshake);
    datagram.extend([0u8; 20]);
    assert_eq!(initial_sni(&datagram), Some("example.com".into()));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = is_quic_long_header(&bytes);
        let _ = initial_sni(&bytes);
    }

    #[test]
    fn long_header_like_bytes_never_panic(
        first in 0xc0u8..=0xff, v2 in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..1400),
    ) {
        let mut bytes = vec![first];
        bytes.extend_from_slice(&if v2 { VERSION_2 } else { VERSION_1 }.to_be_bytes());
        bytes.extend(tail);
        let _ = is_quic_long_header(&bytes);
        let _ = initial_sni(&bytes);
    }

    #[test]
    fn mutated_header_bytes_never_panic(at in 0usize..30, value in any::<u8>(), cut in 0usize..1200) {
        let mut packet = rfc9001_client_initial();
        packet[at] = value;
        packet.truncate(1200 - cut);
        let got = initial_sni(&packet);
        prop_assert!(got.is_none() || got.as_deref() == Some("example.com"));
    }

    #[test]
    fn arbitrary_decrypted_frames_never_panic(frames in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let mut crypto = Crypto::default();
        crypto.add_frames(&frames);
        let _ = handshake_sni(&crypto.contiguous());
    }
}
