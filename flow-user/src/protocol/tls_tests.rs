use std::sync::Arc;

use proptest::prelude::*;

use super::*;

fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn sni_extension(name: &str) -> Vec<u8> {
    let mut entry = vec![HOST_NAME];
    entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
    entry.extend_from_slice(name.as_bytes());
    let mut list = (entry.len() as u16).to_be_bytes().to_vec();
    list.extend(entry);
    extension(EXT_SERVER_NAME, &list)
}

/// A ClientHello handshake message (no record header) with these extensions, in this order.
fn hello(extensions: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0xab; 32]);
    body.push(32);
    body.extend_from_slice(&[0xcd; 32]);
    let suites: &[u8] = &[0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2f];
    body.extend_from_slice(&(suites.len() as u16).to_be_bytes());
    body.extend_from_slice(suites);
    body.extend_from_slice(&[1, 0]);
    let all: Vec<u8> = extensions.concat();
    body.extend_from_slice(&(all.len() as u16).to_be_bytes());
    body.extend(all);
    let mut message = vec![CLIENT_HELLO];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend(body);
    message
}

/// The handshake message in TLS records, split after each of `splits` bytes.
fn records(message: &[u8], splits: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    for end in splits
        .iter()
        .copied()
        .chain([message.len()])
        .filter(|e| *e > 0)
    {
        let end = end.min(message.len());
        if end <= start {
            continue;
        }
        out.extend_from_slice(&[RECORD_HANDSHAKE, 0x03, 0x01]);
        out.extend_from_slice(&((end - start) as u16).to_be_bytes());
        out.extend_from_slice(&message[start..end]);
        start = end;
    }
    out
}

/// Extensions of a Chrome-sized ClientHello: GREASE, supported groups, an X25519MLKEM768 key
/// share (1216 bytes of key), ALPN, signature algorithms, padding and more.
fn chrome_like(name: &str) -> Vec<Vec<u8>> {
    let mut key_share = vec![0x04, 0xc6, 0x11, 0xec, 0x04, 0xc0];
    key_share.extend(vec![0x5a; 1216]);
    key_share.extend_from_slice(&[0x00, 0x1d, 0x00, 0x20]);
    key_share.extend(vec![0x77; 32]);
    let mut shares = (key_share.len() as u16).to_be_bytes().to_vec();
    shares.extend(key_share);
    vec![
        extension(0x0a0a, &[]),
        extension(0x000a, &[0, 8, 0x11, 0xec, 0, 0x1d, 0, 0x17, 0, 0x18]),
        extension(0x0033, &shares),
        extension(0x0010, b"\x00\x0c\x02h2\x08http/1.1"),
        extension(0x000d, &[0, 8, 4, 3, 8, 4, 4, 1, 5, 3]),
        extension(0x002b, &[6, 0x1a, 0x1a, 3, 4, 3, 3]),
        extension(0x0017, &[]),
        extension(0xff01, &[0]),
        extension(0x0012, &[]),
        extension(0x44cd, &[0, 3, 2, b'h', b'2']),
        extension(0xfe0d, &[0x11; 250]),
        sni_extension(name),
        extension(0x0015, &[0; 40]),
    ]
}

#[test]
fn plain_client_hello() {
    let msg = hello(&[sni_extension("example.test")]);
    assert_eq!(
        client_hello_sni(&records(&msg, &[])),
        Some("example.test".into())
    );
    assert_eq!(handshake_sni(&msg), Some("example.test".into()));
}

#[test]
fn sni_after_one_and_a_half_kib_of_other_extensions() {
    let msg = hello(&[
        extension(0x0033, &[0x42; 1000]),
        extension(0x0015, &[0; 536]),
        sni_extension("late.example.test"),
    ]);
    assert!(msg.len() > 1536 + 60);
    assert_eq!(
        client_hello_sni(&records(&msg, &[])),
        Some("late.example.test".into())
    );
}

#[test]
fn chrome_sized_hello_in_any_order_and_split_over_two_records() {
    let mut exts = chrome_like("www.chrome.test");
    let total: usize = hello(&exts).len();
    assert!((1700..2100).contains(&total), "{total}");
    for round in 0..exts.len() {
        exts.rotate_left(1);
        if round % 2 == 0 {
            exts.reverse();
        }
        let msg = hello(&exts);
        for split in [0, 5, 100, 1000, 1500, msg.len() - 10] {
            let bytes = records(&msg, &[split]);
            assert_eq!(
                client_hello_sni(&bytes),
                Some("www.chrome.test".into()),
                "round {round} split {split}"
            );
        }
    }
}

#[test]
fn a_prefix_cut_before_the_name_gives_none_after_it_the_name() {
    let msg = hello(&[extension(0x0015, &[0; 300]), sni_extension("cut.test")]);
    let bytes = records(&msg, &[]);
    let sni_end = bytes.len();
    assert_eq!(client_hello_sni(&bytes[..sni_end - 1]), None);
    let msg = hello(&[sni_extension("cut.test"), extension(0x0015, &[0; 300])]);
    let bytes = records(&msg, &[]);
    assert_eq!(
        client_hello_sni(&bytes[..120]),
        Some("cut.test".into()),
        "the name is in the first 120 bytes"
    );
}

#[test]
fn names_are_normalised_and_checked() {
    let sni = |n: &str| client_hello_sni(&records(&hello(&[sni_extension(n)]), &[]));
    assert_eq!(sni("WWW.Example.TEST."), Some("www.example.test".into()));
    assert_eq!(sni("bad name.test"), None);
    assert_eq!(sni("evil\u{1b}[2J.test"), None);
    assert_eq!(sni(""), None);
}

#[test]
fn not_a_client_hello() {
    let no_sni = hello(&[extension(0x0015, &[0; 10])]);
    assert_eq!(client_hello_sni(&records(&no_sni, &[])), None);
    let mut server_hello = hello(&[sni_extension("x.test")]);
    server_hello[0] = 2;
    assert_eq!(client_hello_sni(&records(&server_hello, &[])), None);
    let mut alert = records(&hello(&[sni_extension("x.test")]), &[]);
    alert[0] = 0x15;
    assert_eq!(client_hello_sni(&alert), None);
    assert_eq!(client_hello_sni(b"GET / HTTP/1.1\r\n"), None);
    assert_eq!(client_hello_sni(&[]), None);
    assert_eq!(client_hello_sni(&[0x16, 3, 1, 0, 0]), None);
}

/// A real client's ClientHello: rustls (in the tree for `flow serve`) writing its first flight.
#[test]
fn rustls_client_hello() {
    use tokio_rustls::rustls;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("real.flowtest.test").unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    assert_eq!(wire[0], RECORD_HANDSHAKE);
    assert_eq!(client_hello_sni(&wire), Some("real.flowtest.test".into()));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2600)) {
        let _ = client_hello_sni(&bytes);
        let _ = handshake_sni(&bytes);
    }

    #[test]
    fn record_like_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..2600)) {
        let mut bytes = vec![0x16, 0x03, 0x01, 0x0a, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x03, 0x03];
        bytes.extend(tail);
        let _ = client_hello_sni(&bytes);
    }

    #[test]
    fn any_order_any_split_any_cut(
        seed in any::<u64>(), split in 0usize..2200, cut in 0usize..2300,
    ) {
        let mut exts = chrome_like("shuffled.test");
        // Fisher-Yates on a little LCG: a random extension order.
        let mut s = seed;
        for i in (1..exts.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            exts.swap(i, (s >> 33) as usize % (i + 1));
        }
        let bytes = records(&hello(&exts), &[split]);
        prop_assert_eq!(client_hello_sni(&bytes), Some("shuffled.test".to_string()));
        let got = client_hello_sni(&bytes[..cut.min(bytes.len())]);
        prop_assert!(got.is_none() || got.as_deref() == Some("shuffled.test"));
    }

    #[test]
    fn mutated_hellos_never_panic(at in 0usize..2000, value in any::<u8>()) {
        let mut bytes = records(&hello(&chrome_like("m.test")), &[700]);
        let len = bytes.len();
        bytes[at % len] = value;
        let _ = client_hello_sni(&bytes);
    }
}
