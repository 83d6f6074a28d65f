//! One connection, one id: the same 16 hex digits in `bandwidth`, `connections`, `http`,
//! `history`, `top --once` and the exporter's per-connection series, each a separate `flow`
//! process, from the connection's first bytes to its close event. Real HTTP: Python's
//! http.server answering a keep-alive client.

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{flow, free_port, privileged, tool, wait_for, Running};

/// `python3 -m http.server`, HTTP/1.1 (keep-alive), killed when dropped.
struct Server {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl Server {
    fn start(python: &str) -> Server {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("flow-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("page.txt"), vec![b'x'; 3_000]).unwrap();
        let script = "import http.server as h, sys\n\
                      h.SimpleHTTPRequestHandler.protocol_version = 'HTTP/1.1'\n\
                      h.SimpleHTTPRequestHandler.log_message = lambda *a: None\n\
                      h.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), \
                      h.SimpleHTTPRequestHandler).serve_forever()";
        let child = Command::new(python)
            .args(["-c", script, &port.to_string()])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let up = wait_for(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "http.server did not start");
        Server { port, child, dir }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A keep-alive client asking for the page every 100 ms on one connection until stopped.
struct Client {
    local_port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Client {
    fn start(port: u16, limit: Duration) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let local_port = stream.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let end = Instant::now() + limit;
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                if write!(
                    writer,
                    "GET /page.txt HTTP/1.1\r\nHost: id.flowtest\r\n\r\n"
                )
                .is_err()
                {
                    break;
                }
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
            // Dropping the stream closes the connection.
        });
        Client {
            local_port,
            stop,
            thread: Some(thread),
        }
    }

    fn close(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

fn run_json(args: &[&str]) -> Value {
    let out = flow().args(args).output().expect("flow");
    assert!(
        out.status.success(),
        "flow {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "flow {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The id of the row whose connection's local port is `local_port` (the `connection` object
/// is the row itself for `connections`).
fn id_of(rows: &Value, local_port: u16) -> Option<String> {
    rows.as_array()?.iter().find_map(|row| {
        let c = row.get("connection").unwrap_or(row);
        let local = c["local"].as_str()?;
        local
            .ends_with(&format!(":{local_port}"))
            .then(|| c["id"].as_str().map(String::from))?
    })
}

#[test]
fn a_connection_has_one_id_in_every_command_until_its_close() {
    const TEST: &str = "a_connection_has_one_id_in_every_command_until_its_close";
    if !privileged(TEST) {
        return;
    }
    let Some(python) = tool("python3", TEST) else {
        return;
    };
    let server = Server::start(python);
    let port = server.port.to_string();
    let mut client = Client::start(server.port, Duration::from_secs(60));
    let mine = client.local_port;

    let bandwidth = run_json(&["bandwidth", "--json", "--window", "1s", "--port", &port]);
    let id = id_of(&bandwidth, mine).unwrap_or_else(|| panic!("client row missing: {bandwidth:#}"));
    assert_eq!(id.len(), 16, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let server_id = id_of(&bandwidth, server.port).expect("server end listed");
    assert_ne!(id, server_id, "the two ends are two connections");

    let connections = run_json(&["connections", "--json", "--port", &port]);
    assert_eq!(
        id_of(&connections, mine).as_deref(),
        Some(&*id),
        "connections: {connections:#}"
    );
    assert_eq!(
        id_of(&connections, server.port).as_deref(),
        Some(&*server_id)
    );

    let http = run_json(&["http", "--json", "--window", "2s", "--port", &port]);
    assert_eq!(id_of(&http, mine).as_deref(), Some(&*id), "http: {http:#}");

    let top = run_json(&[
        "top",
        "--once",
        "--json",
        "--interval",
        "1s",
        "--port",
        &port,
    ]);
    assert_eq!(id_of(&top, mine).as_deref(), Some(&*id), "top: {top:#}");

    let history = run_json(&[
        "history",
        "--json",
        "--window",
        "2s",
        "--interval",
        "1s",
        "--port",
        &port,
    ]);
    let ids: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["connection_id"].as_str())
        .collect();
    assert!(ids.contains(&&*id), "history {ids:?} lacks {id}");

    // The exporter's per-connection series carry it as their `id` label.
    let listen = format!("127.0.0.1:{}", free_port());
    let serve = Running::spawn(flow().args([
        "serve",
        "--listen",
        &listen,
        "--interval",
        "200ms",
        "--per-connection",
        "--port",
        &port,
    ]));
    let label = format!("id=\"{id}\"");
    let scraped = wait_for(Duration::from_secs(20), || {
        let mut stream = TcpStream::connect(&listen).ok()?;
        write!(stream, "GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        text.contains(&label).then_some(text)
    });
    assert!(
        scraped.is_some(),
        "no series with {label}: {}",
        serve.stderr()
    );
    drop(serve);

    // Closed inside a window: the close event reports the same id, inactive.
    let closing =
        Running::spawn(flow().args(["bandwidth", "--json", "--window", "3s", "--port", &port]));
    thread::sleep(Duration::from_millis(1_500));
    client.close();
    let mut closing = closing;
    let done = wait_for(Duration::from_secs(20), || {
        closing.child.try_wait().ok().flatten()
    });
    assert!(done.is_some_and(|s| s.success()), "{}", closing.stderr());
    let rows: Value = serde_json::from_str(&closing.stdout()).expect("JSON");
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["connection"]["id"].as_str() == Some(&*id))
        .unwrap_or_else(|| panic!("closed connection {id} missing: {rows:#}"));
    assert_eq!(row["connection"]["active"], Value::Bool(false), "{row:#}");
    assert_eq!(
        row["connection"]["local"],
        bandwidth_local(&bandwidth, mine)
    );
}

fn bandwidth_local(rows: &Value, local_port: u16) -> Value {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["connection"]["local"].clone())
        .find(|l| {
            l.as_str()
                .is_some_and(|s| s.ends_with(&format!(":{local_port}")))
        })
        .unwrap()
}
