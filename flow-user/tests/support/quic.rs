//! A real QUIC client: aioquic (installed from PyPI when missing) sends its first flight — the
//! client Initial datagram(s) — from a real UDP socket on 127.0.0.1, and keeps the socket open
//! until dropped. Nobody needs to answer: the Initials are what `flow` reads.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
};

/// QUIC versions aioquic speaks (RFC 9000, RFC 9369).
pub const QUIC_V1: u32 = 0x0000_0001;
pub const QUIC_V2: u32 = 0x6b33_43cf;

/// How the ClientHello is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloShape {
    /// aioquic's own: one Initial datagram, the server name in it.
    Plain,
    /// Chrome's shape: an X25519MLKEM768 key share (1,216 bytes) first, so the ClientHello spans
    /// two Initial datagrams and its server name sits in the second.
    PostQuantum,
}

/// Python defining `chrome_shape(on)`: while on, aioquic's ClientHellos lead with an
/// X25519MLKEM768 key share of 1,216 (random) bytes, as Chrome's do; aioquic writes key_share
/// first and server_name after it, so the name lands past the first Initial datagram.
pub const CHROME_SHAPE: &str = r#"
import os
import aioquic.tls as _tls
_plain_hello = _tls.push_client_hello
def _chrome_like(buf, hello):
    hello.key_share = [(0x11EC, os.urandom(1216))] + hello.key_share
    hello.supported_groups = [0x11EC] + hello.supported_groups
    _plain_hello(buf, hello)
def chrome_shape(on):
    _tls.push_client_hello = _chrome_like if on else _plain_hello
"#;

/// Arguments: port, server name, version (hex), shape. Prints `<local port> <datagram sizes…>`,
/// then holds the socket until stdin closes.
const CLIENT: &str = r#"
import socket, sys, time
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

port, name, version, shape = int(sys.argv[1]), sys.argv[2], int(sys.argv[3], 16), sys.argv[4]
chrome_shape(shape == "pq")
config = QuicConfiguration(is_client=True, server_name=name, alpn_protocols=["h3"])
config.supported_versions = [version]
config.original_version = version
connection = QuicConnection(configuration=config)
now = time.time()
connection.connect(("127.0.0.1", port), now=now)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
sizes = []
for data, _ in connection.datagrams_to_send(now=now):
    sock.sendto(data, ("127.0.0.1", port))
    sizes.append(len(data))
print(sock.getsockname()[1], *sizes, flush=True)
sys.stdin.read()
"#;

pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// aioquic importable, installing it with pip when it is not. A failed install fails the test.
pub fn ensure_aioquic() {
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

/// An aioquic client whose first flight was sent; its socket stays open until dropped.
pub struct QuicClient {
    /// The client socket's address.
    pub local: SocketAddr,
    /// Sizes of the datagrams it sent, in order.
    pub sizes: Vec<usize>,
    child: Child,
}

impl QuicClient {
    /// Sends the client Initial(s) for `server_name` to 127.0.0.1:`port`.
    pub fn send(port: u16, server_name: &str, version: u32, shape: HelloShape) -> QuicClient {
        ensure_aioquic();
        let shape = match shape {
            HelloShape::Plain => "plain",
            HelloShape::PostQuantum => "pq",
        };
        let mut child = Command::new(python())
            .args(["-c", &format!("{CHROME_SHAPE}{CLIENT}")])
            .args([&port.to_string(), server_name])
            .args([&format!("{version:x}"), shape])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut words = line.split_whitespace().map(|w| w.parse::<u16>());
        let Some(Ok(local_port)) = words.next() else {
            let _ = child.kill();
            panic!("the aioquic client failed (printed {line:?})");
        };
        QuicClient {
            local: SocketAddr::from(([127, 0, 0, 1], local_port)),
            sizes: words.map(|w| usize::from(w.unwrap())).collect(),
            child,
        }
    }
}

impl Drop for QuicClient {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
