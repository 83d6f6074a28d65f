//! `flow serve` scraped like Prometheus would: counters that grow by what moved, output that
//! promtool accepts, and a series count that stays bounded under connection churn.

mod support;

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use support::{flow, free_port, own_comm, privileged, tool, wait_for, Running};

/// A running exporter on a free loopback port.
struct Exporter {
    port: u16,
    flow: Running,
}

impl Exporter {
    fn start(extra: &[&str]) -> Exporter {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", &listen, "--interval", "200ms"];
        args.extend_from_slice(extra);
        let flow = Running::spawn(flow().args(&args));
        let exporter = Exporter { port, flow };
        let up = wait_for(Duration::from_secs(20), || exporter.try_scrape(None));
        assert!(
            up.is_some(),
            "exporter never answered: {}",
            exporter.flow.stderr()
        );
        exporter
    }

    /// `GET /metrics` over HTTP/1.0 (the body up to the server's close), or `None`.
    fn try_scrape(&self, accept: Option<&str>) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
        write!(stream, "GET /metrics HTTP/1.0\r\n{accept}\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.0 200").then(|| body.to_string())
    }

    fn scrape(&self) -> String {
        self.try_scrape(None)
            .unwrap_or_else(|| panic!("scrape failed: {}", self.flow.stderr()))
    }

    /// Sends SIGTERM: the exporter must stop cleanly and with 0.
    fn stop(mut self) {
        assert_eq!(
            self.flow.stop_with(libc::SIGTERM, Duration::from_secs(10)),
            Some(0),
            "{}",
            self.flow.stderr()
        );
        assert!(!self.flow.stderr().contains("panicked"));
    }
}

/// Sample lines: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Sum of `flow_process_bytes_total` for `process` in `direction`.
fn process_bytes(text: &str, process: &str, direction: &str) -> f64 {
    let process = format!("process=\"{process}\"");
    let direction = format!("direction=\"{direction}\"");
    samples(text)
        .iter()
        .filter(|(s, _)| {
            s.starts_with("flow_process_bytes_total{")
                && s.contains(&process)
                && s.contains(&direction)
        })
        .map(|(_, v)| v)
        .sum()
}

/// Sends `total` bytes from one end of `pair` to the other and reads them all.
fn send(client: &mut TcpStream, server: &mut TcpStream, total: usize) {
    let chunk = vec![7u8; 64 * 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let (mut sent, mut got) = (0, 0);
    while got < total {
        if sent < total {
            let n = chunk.len().min(total - sent);
            client.write_all(&chunk[..n]).unwrap();
            sent += n;
        }
        while got < sent {
            let n = server.read(&mut buf).unwrap();
            assert!(n > 0, "peer closed");
            got += n;
        }
    }
}

fn loopback_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

#[test]
fn bytes_counter_of_this_process_grows_by_what_it_sent() {
    if !privileged("bytes_counter_of_this_process_grows_by_what_it_sent") {
        return;
    }
    let exporter = Exporter::start(&[]);
    let comm = own_comm();
    let (mut client, mut server) = loopback_pair();
    // Moved once before the first scrape so both ends are known and owned.
    send(&mut client, &mut server, 1024);
    std::thread::sleep(Duration::from_millis(600));
    let before = exporter.scrape();
    let (tx0, rx0) = (
        process_bytes(&before, &comm, "tx"),
        process_bytes(&before, &comm, "rx"),
    );

    const SENT: usize = 8 * 1024 * 1024;
    for _ in 0..8 {
        send(&mut client, &mut server, SENT / 8);
        // Scraped while the traffic runs: it must answer and never go backwards.
        let during = exporter.scrape();
        assert!(process_bytes(&during, &comm, "tx") >= tx0);
    }
    let grown = wait_for(Duration::from_secs(15), || {
        let after = exporter.scrape();
        let tx = process_bytes(&after, &comm, "tx") - tx0;
        let rx = process_bytes(&after, &comm, "rx") - rx0;
        (tx >= SENT as f64 && rx >= SENT as f64).then_some((tx, rx))
    });
    let after = exporter.scrape();
    assert!(
        grown.is_some(),
        "process {comm}: tx {} → {}, rx {} → {}, sent {SENT}\n{after}",
        tx0,
        process_bytes(&after, &comm, "tx"),
        rx0,
        process_bytes(&after, &comm, "rx"),
    );
    // The monitor's health is exported with the traffic.
    for name in [
        "flow_monitor_info{",
        "flow_map_entries ",
        "flow_map_evictions_total ",
        "flow_close_events_dropped_total ",
        "flow_poll_duration_seconds_count ",
        "flow_process_segments_total{",
    ] {
        assert!(after.contains(name), "{name} missing:\n{after}");
    }
    exporter.stop();
}

#[test]
fn output_passes_promtool_in_both_formats() {
    if !privileged("output_passes_promtool_in_both_formats") {
        return;
    }
    let Some(promtool) = tool("promtool", "output_passes_promtool_in_both_formats") else {
        return;
    };
    let exporter = Exporter::start(&["--per-connection", "--max-series", "20"]);
    let (mut client, mut server) = loopback_pair();
    send(&mut client, &mut server, 1 << 20);
    std::thread::sleep(Duration::from_millis(600));
    let text = exporter.scrape();
    assert!(text.contains("flow_connection_bytes_total{"), "{text}");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let verdict = check.wait_with_output().unwrap();
    assert!(
        verdict.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&verdict.stdout),
        String::from_utf8_lossy(&verdict.stderr)
    );
    // A Prometheus server asks for OpenMetrics and gets it, with its end marker.
    let open = exporter
        .try_scrape(Some("application/openmetrics-text;version=1.0.0,*/*;q=0.1"))
        .unwrap();
    assert!(open.ends_with("# EOF\n") && open.contains("# UNIT flow_process_bytes bytes"));
    exporter.stop();
}

/// Opens and closes `count` short connections, each moving `size` bytes each way.
fn churn(count: usize, size: usize) -> Vec<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut ports = Vec::with_capacity(count);
    for _ in 0..count {
        let (mut client, mut server) = {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            (client, server)
        };
        ports.push(client.local_addr().unwrap().port());
        send(&mut client, &mut server, size);
        send(&mut server, &mut client, size);
    }
    ports
}

fn series_count(text: &str) -> usize {
    samples(text).len()
}

#[test]
fn series_stay_bounded_under_two_thousand_short_connections() {
    if !privileged("series_stay_bounded_under_two_thousand_short_connections") {
        return;
    }
    let exporter = Exporter::start(&[]);
    let first = exporter.scrape();
    let before = series_count(&first);
    churn(2_000, 16);
    std::thread::sleep(Duration::from_millis(800));
    let after = exporter.scrape();
    if after.contains("flow_monitor_info{mode=\"ebpf\"") {
        // Connections that lived between two steps still count (close events): 16 bytes each
        // way on 2,000 connections is at least 64,000 bytes received, whoever they are
        // attributed to (the socket's owner, or the thread the kernel saw).
        let rx = |text: &str| -> f64 {
            samples(text)
                .iter()
                .filter(|(s, _)| {
                    s.starts_with("flow_process_bytes_total{") && s.contains("direction=\"rx\"")
                })
                .map(|(_, v)| v)
                .sum()
        };
        assert!(rx(&after) - rx(&first) >= 64_000.0, "{first}\n{after}");
    }
    assert!(
        !after.contains("flow_connection_"),
        "no per-connection series unless asked"
    );
    // A few new (process, protocol) pairs at most, whatever else runs on the machine.
    assert!(
        series_count(&after) <= before + 24,
        "{before} series before, {} after:\n{after}",
        series_count(&after)
    );
    exporter.stop();
}

#[test]
fn per_connection_series_are_capped_and_expire_when_closed() {
    if !privileged("per_connection_series_are_capped_and_expire_when_closed") {
        return;
    }
    let exporter = Exporter::start(&["--per-connection", "--max-series", "50"]);
    let ports = churn(2_000, 16);
    let per_connection = |text: &str| {
        samples(text)
            .keys()
            .filter(|s| s.starts_with("flow_connection_bytes_total{"))
            .count()
    };
    let capped = exporter.scrape();
    assert!(per_connection(&capped) <= 2 * 50, "{capped}");
    // Closed connections' series go within a few steps.
    let gone = wait_for(Duration::from_secs(10), || {
        let text = exporter.scrape();
        let left = ports
            .iter()
            .any(|p| text.contains(&format!("local=\"127.0.0.1:{p}\"")));
        (!left).then_some(())
    });
    assert!(gone.is_some(), "series of closed connections remain");
    exporter.stop();
}

#[test]
fn taken_address_is_one_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = flow()
        .args(["serve", "--listen", &address])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
}
