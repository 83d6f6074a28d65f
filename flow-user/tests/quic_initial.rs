//! A real QUIC client's first datagram: aioquic (installed from PyPI when missing) writes its
//! client Initial for `quic.flowtest.test` to a non-443 port; `flow` calls it QUIC and reads the
//! server name out of the encrypted ClientHello.

use std::process::{Command, Stdio};

use flow_user::{
    protocol::{
        payload::classify_datagram,
        quic::{initial_sni, is_quic_long_header},
    },
    Protocol,
};

const SERVER_NAME: &str = "quic.flowtest.test";

/// Prints one line per QUIC version aioquic speaks here: `<version> <hex of the first datagram>`.
const CLIENT: &str = r#"
import sys, time
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicProtocolVersion

versions = [QuicProtocolVersion.VERSION_1]
if hasattr(QuicProtocolVersion, "VERSION_2"):
    versions.append(QuicProtocolVersion.VERSION_2)
for version in versions:
    config = QuicConfiguration(is_client=True, server_name=sys.argv[1], alpn_protocols=["h3"])
    config.supported_versions = [version]
    config.original_version = version
    connection = QuicConnection(configuration=config)
    now = time.time()
    connection.connect(("127.0.0.1", 4433), now=now)
    datagrams = connection.datagrams_to_send(now=now)
    print(f"{int(version):08x} {datagrams[0][0].hex()}")
"#;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// aioquic importable, installing it with pip when it is not. A failed install fails the test.
fn ensure_aioquic() {
    let python = python();
    let has = |python: &str| {
        Command::new(python)
            .args(["-c", "import aioquic"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has(&python) {
        return;
    }
    let pip = |extra: &[&str]| {
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(extra)
            .arg("aioquic")
            .output()
            .expect("python3 runs")
    };
    let mut out = pip(&[]);
    // Debian's own python3 refuses installs outside a venv (PEP 668); a test machine may.
    if !out.status.success()
        && String::from_utf8_lossy(&out.stderr).contains("externally-managed-environment")
    {
        out = pip(&["--break-system-packages"]);
    }
    assert!(
        out.status.success(),
        "pip install aioquic failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(has(&python), "aioquic installed but not importable");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn aioquic_client_initial_gives_its_server_name() {
    ensure_aioquic();
    let out = Command::new(python())
        .args(["-c", CLIENT, SERVER_NAME])
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
        let (version, datagram) = line.split_once(' ').expect("version and datagram");
        let datagram = hex(datagram.trim());
        assert!(datagram.len() >= 1200, "a client Initial is padded to 1200");
        assert!(is_quic_long_header(&datagram), "version {version}");
        assert_eq!(
            initial_sni(&datagram).as_deref(),
            Some(SERVER_NAME),
            "version {version}"
        );
        let facts = classify_datagram(&datagram);
        assert_eq!(facts.protocol, Some(Protocol::Quic));
        assert_eq!(facts.tls_server_name.as_deref(), Some(SERVER_NAME));
        // What a 256-byte kernel prefix shows: QUIC, no name.
        assert!(is_quic_long_header(&datagram[..256]));
        assert_eq!(initial_sni(&datagram[..256]), None);
        versions.push(version.to_string());
    }
    assert!(
        versions.iter().any(|v| v == "00000001"),
        "QUIC v1 was tried: {versions:?}"
    );
    eprintln!("aioquic Initials read for versions {versions:?}");
}
