//! Protocols from the wire: real peers on loopback (never on the protocols' standard ports),
//! classified from the first bytes the kernel program copied; HTTP method, host and status.

mod support;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use flow_user::{
    ebpf::LoadOptions,
    model::{HttpConnection, NetConnection, Protocol, ProtocolSource},
    ModeChoice, Monitor, MonitorOptions,
};
use support::{free_port, TlsServer};

fn monitor(payload_bytes: u32) -> Option<Monitor> {
    if !support::may_load() {
        return None;
    }
    let options = MonitorOptions {
        mode: ModeChoice::Ebpf,
        load: LoadOptions {
            payload_bytes,
            ..support::options()
        },
        ..MonitorOptions::default()
    };
    Some(Monitor::open(&options).expect("the kernel program must load here"))
}

/// An HTTP/1.1 server (keep-alive) in python, killed on drop.
struct PythonServer {
    child: Child,
    port: u16,
}

impl PythonServer {
    fn start() -> PythonServer {
        let port = free_port();
        let script = format!(
            "import http.server, socketserver\n\
             class H(http.server.SimpleHTTPRequestHandler):\n    protocol_version = 'HTTP/1.1'\n    def log_message(self, *a): pass\n\
             http.server.ThreadingHTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
        );
        let child = Command::new("python3")
            .args(["-c", &script])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is installed");
        wait_listening(port);
        PythonServer { child, port }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server on {port} did not start"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n",
            "--max-time",
            "10",
        ])
        .args(args)
        .output()
        .expect("curl is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// HTTP connections seen after `traffic` ran, those whose remote (client side) is `port`.
fn http_after(monitor: &mut Monitor, port: u16, traffic: impl FnOnce()) -> Vec<HttpConnection> {
    monitor.observe().unwrap();
    traffic();
    thread::sleep(Duration::from_millis(300));
    monitor.observe().unwrap();
    monitor
        .http_connections(Duration::ZERO)
        .unwrap()
        .into_iter()
        .filter(|h| h.connection.remote.port() == port)
        .collect()
}

#[test]
fn http_method_host_and_status() {
    let Some(mut monitor) = monitor(256) else {
        return;
    };
    let server = PythonServer::start();
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", server.port);

    let seen = http_after(&mut monitor, server.port, || {
        assert_eq!(curl(&["-H", "Host: example.test", &url("/")]), "200\n");
    });
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method.as_deref(), Some("GET"));
    assert_eq!(seen[0].host.as_deref(), Some("example.test"));
    assert_eq!(seen[0].status_code, Some(200));
    assert_eq!(seen[0].connection.protocol, Protocol::Http);
    assert_eq!(seen[0].connection.protocol_source, ProtocolSource::Payload);

    let seen = http_after(&mut monitor, server.port, || {
        assert_eq!(curl(&["-I", &url("/no-such-file")]), "404\n");
    });
    let head: Vec<_> = seen
        .iter()
        .filter(|h| h.method.as_deref() == Some("HEAD"))
        .collect();
    assert_eq!(head.len(), 1, "{seen:?}");
    assert_eq!(head[0].status_code, Some(404));

    // Two requests on one kept-alive connection: the latest exchange is the one shown.
    let seen = http_after(&mut monitor, server.port, || {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        for (path, host) in [("/", "first.test"), ("/missing", "second.test")] {
            // One write per request, as HTTP clients do.
            let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
            stream.write_all(request.as_bytes()).unwrap();
            read_response(&mut stream);
        }
    });
    let second: Vec<_> = seen
        .iter()
        .filter(|h| h.host.as_deref() == Some("second.test"))
        .collect();
    assert_eq!(second.len(), 1, "{seen:?}");
    assert_eq!(second[0].status_code, Some(404));
    assert!(!seen.iter().any(|h| h.host.as_deref() == Some("first.test")));
}

/// Reads one response with a Content-Length body, in large reads as HTTP clients do.
fn read_response(stream: &mut TcpStream) {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "server closed mid-response");
        received.extend_from_slice(&chunk[..n]);
        let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        if received.len() >= end + 4 + length {
            return;
        }
    }
}

#[test]
fn secrets_never_leave_the_parser() {
    let Some(mut monitor) = monitor(512) else {
        return;
    };
    let server = PythonServer::start();
    let token = format!("tok{:016x}", random());
    let body = format!("body{:016x}", random());
    let seen = http_after(&mut monitor, server.port, || {
        curl(&[
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-d",
            &body,
            &format!("http://127.0.0.1:{}/upload", server.port),
        ]);
    });
    assert!(
        seen.iter().any(|h| h.method.as_deref() == Some("POST")),
        "{seen:?}"
    );
    let everything = format!(
        "{}{}{:?}",
        serde_json::to_string(&monitor.http_connections(Duration::ZERO).unwrap()).unwrap(),
        serde_json::to_string(&monitor.connections().unwrap()).unwrap(),
        seen
    );
    assert!(
        !everything.contains(&token),
        "the Authorization value leaked"
    );
    assert!(!everything.contains(&body), "the body leaked");
}

/// A fresh random number (std's randomly keyed hasher), so the secrets are unguessable.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// A Rust client and server exchange a POST: method and status come through.
#[test]
fn rust_post_and_status() {
    let Some(mut monitor) = monitor(256) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = http_after(&mut monitor, port, || {
        let server = thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let n = socket.read(&mut request).unwrap();
            assert!(request[..n].starts_with(b"POST"));
            socket
                .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        });
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client
            .write_all(b"POST /items HTTP/1.1\r\nHost: rust.test\r\nContent-Length: 2\r\n\r\n{}")
            .unwrap();
        read_response(&mut client);
        server.join().unwrap();
    });
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method.as_deref(), Some("POST"));
    assert_eq!(seen[0].host.as_deref(), Some("rust.test"));
    assert_eq!(seen[0].status_code, Some(201));
}

/// The protocol of the connection whose server end listens on `port`, from its client side.
fn protocol_of(monitor: &mut Monitor, port: u16) -> Option<(Protocol, ProtocolSource)> {
    let connections: Vec<NetConnection> = monitor.connections().unwrap();
    connections
        .iter()
        .find(|c| c.remote.port() == port)
        .map(|c| (c.protocol, c.protocol_source))
}

/// A listener that greets each client with `banner`, then holds the connection for a while.
fn banner_server(banner: &'static [u8]) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        socket.write_all(banner).unwrap();
        let mut buf = [0u8; 64];
        let _ = socket.read(&mut buf);
    });
    (port, handle)
}

#[test]
fn ssh_and_smtp_banners_by_payload() {
    let Some(mut monitor) = monitor(256) else {
        return;
    };
    for (banner, expected) in [
        (&b"SSH-2.0-test\r\n"[..], Protocol::Ssh),
        (&b"220 mail.test ESMTP ready\r\n"[..], Protocol::Smtp),
    ] {
        let (port, server) = banner_server(banner);
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut greeting = vec![0u8; banner.len()];
        client.read_exact(&mut greeting).unwrap();
        thread::sleep(Duration::from_millis(200));
        monitor.observe().unwrap();
        assert_eq!(
            protocol_of(&mut monitor, port),
            Some((expected, ProtocolSource::Payload))
        );
        client.write_all(b"bye\n").unwrap();
        server.join().unwrap();
    }
}

#[test]
fn tls_handshake_is_https_by_payload() {
    let Some(mut monitor) = monitor(256) else {
        return;
    };
    let server = TlsServer::start("openssl", "flow.test");
    let port = server.port;
    wait_listening(port);
    // The probe above was a connection too; the client below is the one classified.
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut found = None;
    while found.is_none() && start.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(200));
        monitor.observe().unwrap();
        found = monitor
            .connections()
            .unwrap()
            .into_iter()
            .find(|c| c.remote.port() == port && c.protocol_source == ProtocolSource::Payload);
    }
    let _ = client.kill();
    let _ = client.wait();
    drop(server);
    let found = found.expect("the TLS client connection was classified by payload");
    assert_eq!(found.protocol, Protocol::Https);
}

#[test]
fn without_payload_capture_ports_decide() {
    let Some(mut monitor) = monitor(0) else {
        return;
    };
    assert!(monitor.describe().contains("payload capture off"));
    let (port, server) = banner_server(b"SSH-2.0-test\r\n");
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut greeting = [0u8; 14];
    client.read_exact(&mut greeting).unwrap();
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        protocol_of(&mut monitor, port),
        Some((Protocol::Unknown, ProtocolSource::Port))
    );
    assert!(monitor.http_connections(Duration::ZERO).is_err());
    client.write_all(b"bye\n").unwrap();
    server.join().unwrap();
    // Capture has no program of its own: only the rung's hooks, its closing hook and (local
    // storage) its socket iterator load.
    let program = flow_user::ebpf::KernelProgram::load(&LoadOptions {
        payload_bytes: 0,
        ..support::options()
    })
    .unwrap();
    assert_eq!(program.payload_bytes(), 0);
    let mut loaded = program.loaded_programs();
    // The storage iterator is optional (kernels that refuse map iterators go without it).
    loaded.retain(|name| *name != "flow_store_iter");
    // So is the publish point at release (typed rungs, where the kernel allows socket storage
    // in cgroup_sock programs); it is not a capture program either.
    loaded.retain(|name| *name != "flow_tcp_release");
    // UDP's cgroup programs are the same on every rung (kernel_udp tests them).
    if program.udp().is_ok() {
        loaded.retain(|name| !name.starts_with("flow_udp_"));
    }
    loaded.sort();
    let mut expected = match program.rung() {
        flow_user::ebpf::Rung::Fentry => vec![
            "flow_destroy_btf",
            "flow_rx_fexit",
            "flow_socket_iter",
            "flow_state_btf",
            "flow_tcp_delta",
            "flow_tx_fexit",
        ],
        flow_user::ebpf::Rung::TpBtf => vec![
            "flow_destroy_btf",
            "flow_rx_btf",
            "flow_socket_iter",
            "flow_state_btf",
            "flow_tcp_delta",
            "flow_tx_btf",
        ],
        flow_user::ebpf::Rung::Kprobe => vec![
            "flow_destroy_tp",
            "flow_rx_kprobe",
            "flow_rx_kretprobe",
            "flow_tx_kprobe",
            "flow_tx_kretprobe",
        ],
        flow_user::ebpf::Rung::Tracepoint => vec!["flow_destroy_tp", "flow_rx_tp", "flow_tx_tp"],
    };
    if program.counting() == flow_user::ebpf::Counting::Sequence {
        // Counted from sequence numbers and nothing to capture: the per-event programs are not
        // even attached.
        expected.retain(|name| !name.starts_with("flow_tx_") && !name.starts_with("flow_rx_"));
    }
    assert_eq!(loaded, expected);
}

/// The CLI: `flow http --json` shows the exchange, and neither it nor `flow connections --json`
/// carries the Authorization value or the body.
#[test]
fn cli_http_json_shows_the_exchange_and_no_secret() {
    if !support::may_load() {
        return;
    }
    let server = PythonServer::start();
    let port = server.port.to_string();
    let flow = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flow"))
            .args(["--mode", "ebpf"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let watcher = flow(&["http", "--window", "3s", "--json", "--port", &port]);
    thread::sleep(Duration::from_millis(1000));
    let (token, body) = (
        format!("tok{:016x}", random()),
        format!("body{:016x}", random()),
    );
    let status = curl(&[
        "-H",
        "Host: cli.test",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-d",
        &body,
        &format!("http://127.0.0.1:{port}/form"),
    ]);
    assert_eq!(status, "501\n", "python's server does not implement POST");
    let out = watcher.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
    let client = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["connection"]["remote"].as_str() == Some(&format!("127.0.0.1:{port}")))
        .unwrap_or_else(|| panic!("no client row in {text}"));
    assert_eq!(client["method"], "POST");
    assert_eq!(client["host"], "cli.test");
    assert_eq!(client["status_code"], 501);
    assert_eq!(client["connection"]["protocol"], "HTTP");
    assert_eq!(client["connection"]["protocol_source"], "payload");
    let listing = flow(&["connections", "--json"]).wait_with_output().unwrap();
    for output in [
        text.as_ref(),
        String::from_utf8_lossy(&listing.stdout).as_ref(),
    ] {
        assert!(
            !output.contains(&token) && !output.contains(&body),
            "a secret leaked"
        );
    }
}
