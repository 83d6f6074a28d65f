//! A real QUIC client's first flight: aioquic (installed from PyPI when missing) writes its
//! client Initial(s) for `quic.flowtest.test` to a non-443 port; `flow` calls it QUIC and reads
//! the server name out of the encrypted ClientHello — also when, as in Chrome's, a post-quantum
//! key share pushes the name into the second datagram.

mod support;

use std::process::Command;

use flow_user::{
    protocol::{
        payload::classify_datagram,
        quic::{initial_sni, is_quic_long_header, InitialCrypto},
    },
    Protocol,
};
use support::{ensure_aioquic, python, CHROME_SHAPE};

const SERVER_NAME: &str = "quic.flowtest.test";

/// Prints one line per QUIC version aioquic speaks here and ClientHello shape (`plain`, or `pq`:
/// Chrome's, see `CHROME_SHAPE`): `<version> <shape> <hex of each datagram of the first flight>`.
const CLIENT: &str = r#"
import sys, time
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicProtocolVersion

versions = [QuicProtocolVersion.VERSION_1]
if hasattr(QuicProtocolVersion, "VERSION_2"):
    versions.append(QuicProtocolVersion.VERSION_2)
for version in versions:
    for shape in ["plain", "pq"]:
        chrome_shape(shape == "pq")
        config = QuicConfiguration(is_client=True, server_name=sys.argv[1], alpn_protocols=["h3"])
        config.supported_versions = [version]
        config.original_version = version
        connection = QuicConnection(configuration=config)
        now = time.time()
        connection.connect(("127.0.0.1", 4433), now=now)
        datagrams = connection.datagrams_to_send(now=now)
        print(f"{int(version):08x} {shape}", *(d.hex() for d, _ in datagrams))
"#;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn aioquic_client_initial_gives_its_server_name() {
    ensure_aioquic();
    let out = Command::new(python())
        .args(["-c", &format!("{CHROME_SHAPE}{CLIENT}"), SERVER_NAME])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "aioquic client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut versions = Vec::new();
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        let (version, shape) = (words.next().unwrap(), words.next().unwrap());
        let datagrams: Vec<Vec<u8>> = words.map(hex).collect();
        let what = format!("version {version}, {shape} ClientHello");
        for datagram in &datagrams {
            assert!(datagram.len() >= 1200, "a client Initial is padded to 1200");
            assert!(is_quic_long_header(datagram), "{what}");
        }
        let first = &datagrams[0];
        if shape == "plain" {
            assert_eq!(datagrams.len(), 1, "{what}");
            assert_eq!(initial_sni(first).as_deref(), Some(SERVER_NAME), "{what}");
            let facts = classify_datagram(first);
            assert_eq!(facts.protocol, Some(Protocol::Quic));
            assert_eq!(facts.tls_server_name.as_deref(), Some(SERVER_NAME));
            // What a 256-byte kernel prefix shows: QUIC, no name.
            assert!(is_quic_long_header(&first[..256]));
            assert_eq!(initial_sni(&first[..256]), None);
        } else {
            // The name is in the second datagram: the first alone does not give it.
            assert_eq!(datagrams.len(), 2, "{what}");
            assert_eq!(initial_sni(first), None, "{what}");
            let mut crypto = InitialCrypto::default();
            for datagram in &datagrams {
                assert!(crypto.add_datagram(datagram), "{what}");
            }
            assert_eq!(crypto.sni().as_deref(), Some(SERVER_NAME), "{what}");
        }
        versions.push(format!("{version} {shape}"));
    }
    assert!(
        versions.iter().any(|v| v == "00000001 pq"),
        "QUIC v1 was tried: {versions:?}"
    );
    eprintln!("aioquic Initials read (version, ClientHello shape): {versions:?}");
}
