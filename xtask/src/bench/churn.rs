//! Churn: short connections at a target rate (connect, send a known number of bytes, close),
//! while `flow bandwidth --json --port P -v` watches; flow's totals for the port must equal the
//! bytes moved, with nothing lost, and the sockets it keeps must shrink back afterwards. Also
//! the CPU and peak RSS during the churn, and (full mode) the RSS a minute after the churn
//! against the RSS just before, of that `bandwidth` (which holds every closed connection of its
//! window) and of a `flow serve` beside it (what people leave running: the targets' figures).
//! Repeated `--churn-runs` times.
//!
//! The server closes first (after reading every byte), so TIME_WAIT stays on the server's
//! side and the clients' ephemeral ports free at once; the listeners sit on several
//! 127.0.0.x addresses with one port, so 4-tuples repeat less often at 5,000 connections/s.

use super::{
    json,
    proc::{cpu_seconds, status_kib},
    results::Churn,
    verbose, Ctx,
};
use anyhow::{bail, Context, Result};
use std::{
    collections::HashSet,
    fs::{self, File},
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

/// Bytes each connection sends (not a round number, so a partial count stands out).
pub const BYTES_PER_CONNECTION: usize = 10_007;
/// Sockets left over after the churn that are still "back at baseline": other processes'
/// traffic on a shared machine adds sockets to flow's too.
pub const MAP_SLACK: u64 = 16;

/// How the clients run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Connections per second.
    pub rate: f64,
    pub total: u64,
    pub bytes: usize,
    pub workers: usize,
    /// No connection starts after this (since the start); the run is bounded in time.
    pub limit: Duration,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub done: u64,
    pub failed: u64,
    /// Connections never started because the time limit came first.
    pub skipped: u64,
    pub written: u64,
}

/// When connection `j` is due after the start.
pub fn due(rate: f64, j: u64) -> Duration {
    Duration::from_secs_f64(j as f64 / rate.max(1e-9))
}

/// Runs the clients against `targets` (round robin); bounded by `plan.total` and `plan.limit`.
pub fn generate(plan: &Plan, targets: &[SocketAddr]) -> Totals {
    let start = Instant::now();
    let payload = Arc::new(vec![0x42u8; plan.bytes]);
    let workers: Vec<JoinHandle<Totals>> = (0..plan.workers.max(1))
        .map(|w| {
            let plan = plan.clone();
            let targets = targets.to_vec();
            let payload = Arc::clone(&payload);
            thread::spawn(move || {
                let mut totals = Totals::default();
                let mut j = w as u64;
                while j < plan.total {
                    let at = due(plan.rate, j);
                    if at >= plan.limit || start.elapsed() >= plan.limit {
                        totals.skipped += (plan.total - j).div_ceil(plan.workers.max(1) as u64);
                        break;
                    }
                    if let Some(wait) = at.checked_sub(start.elapsed()) {
                        thread::sleep(wait);
                    }
                    match one(targets[j as usize % targets.len()], &payload) {
                        Ok(n) => {
                            totals.done += 1;
                            totals.written += n;
                        }
                        Err(_) => totals.failed += 1,
                    }
                    j += plan.workers.max(1) as u64;
                }
                totals
            })
        })
        .collect();
    workers
        .into_iter()
        .filter_map(|w| w.join().ok())
        .fold(Totals::default(), |a, b| Totals {
            done: a.done + b.done,
            failed: a.failed + b.failed,
            skipped: a.skipped + b.skipped,
            written: a.written + b.written,
        })
}

/// One connection: send everything, wait for the server to close.
fn one(target: SocketAddr, payload: &[u8]) -> Result<u64> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    stream.write_all(payload)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut sink = [0u8; 64];
    while stream.read(&mut sink)? > 0 {}
    Ok(payload.len() as u64)
}

/// Listeners on one port at several loopback addresses; each reads a connection's bytes, then
/// closes it.
pub struct Server {
    pub port: u16,
    pub addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<(u64, u64)>>,
}

impl Server {
    pub fn start(hosts: &[Ipv4Addr], bytes: usize) -> Result<Server> {
        for _ in 0..20 {
            if let Some(listeners) = bind_all(hosts)? {
                return Ok(Self::serve(listeners, bytes));
            }
        }
        bail!("no port free on every one of {hosts:?}")
    }

    fn serve(listeners: Vec<TcpListener>, bytes: usize) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let threads = listeners
            .into_iter()
            .map(|listener| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || accept_loop(&listener, bytes, &stop))
            })
            .collect();
        Server {
            port: addrs[0].port(),
            addrs,
            stop,
            threads,
        }
    }

    /// Stops accepting; returns (connections served, bytes read).
    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .filter_map(|t| t.join().ok())
            .fold((0, 0), |(c, b), (c2, b2)| (c + c2, b + b2))
    }
}

/// Binds every host to one port (the first host's pick); `None` when that port is taken on
/// another host (try again).
fn bind_all(hosts: &[Ipv4Addr]) -> Result<Option<Vec<TcpListener>>> {
    let first = TcpListener::bind((hosts[0], 0)).context("binding the churn server")?;
    let port = first.local_addr()?.port();
    let mut listeners = vec![first];
    for host in &hosts[1..] {
        match TcpListener::bind(SocketAddrV4::new(*host, port)) {
            Ok(l) => listeners.push(l),
            Err(e) if e.kind() == ErrorKind::AddrInUse => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("binding {host}:{port}")),
        }
    }
    for l in &listeners {
        l.set_nonblocking(true)?;
    }
    Ok(Some(listeners))
}

fn accept_loop(listener: &TcpListener, bytes: usize, stop: &AtomicBool) -> (u64, u64) {
    let (mut served, mut read) = (0, 0);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut got = 0;
                while got < bytes {
                    match stream.read(&mut buf[..(bytes - got).min(64 * 1024)]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                served += 1;
                read += got as u64;
                // Dropping closes: the server's FIN goes first.
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if stop.load(Ordering::Relaxed) {
                    return (served, read);
                }
                thread::sleep(Duration::from_micros(100));
            }
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Every churn run of the plan, one after the other.
pub fn measure(ctx: &mut Ctx) -> Vec<Churn> {
    (0..ctx.plan.churn_runs.max(1))
        .map(|i| {
            let mut churn = Churn {
                rate: ctx.plan.churn_rate,
                seconds: ctx.plan.churn_seconds,
                planned: ctx.plan.churn_rate * ctx.plan.churn_seconds,
                bytes_per_connection: BYTES_PER_CONNECTION as u64,
                ..Churn::default()
            };
            if let Err(err) = run(ctx, &mut churn, i) {
                churn.error = Some(format!("{err:#}"));
            }
            churn
        })
        .collect()
}

fn run(ctx: &mut Ctx, churn: &mut Churn, index: u32) -> Result<()> {
    let hosts: Vec<Ipv4Addr> = (1..=4).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let server = Server::start(&hosts, BYTES_PER_CONNECTION)?;
    let port = server.port;
    let after = Duration::from_secs(ctx.plan.churn_after);
    // The window covers the churn, the minute after it (full mode) and some slack, so flow is
    // still running when its memory is read after that minute.
    let slack = if after.is_zero() { 2 } else { 5 };
    let window = format!("{}s", churn.seconds + after.as_secs() + slack);
    let args = [
        "bandwidth",
        "--window",
        &window,
        "--json",
        "--port",
        &port.to_string(),
    ]
    .map(String::from);
    let out_path = ctx.raw(&format!("churn-{index}-flow.json"));
    let log = ctx.raw(&format!("churn-{index}-flow.log"));
    // -v: each poll says how many sockets flow keeps (socket-local storage has no map that
    // bpftool could count).
    let running = ctx.flow.start(
        &["-v".to_string()],
        &args,
        Some(File::create(&out_path)?),
        Some(&log),
    )?;
    let pid = running.proc.pid();
    // What people leave running, beside it: its CPU and memory are the run's resident figures.
    let serve_args = [
        "serve",
        "--listen",
        &format!("127.0.0.1:{}", super::scale::free_port()?),
        "--interval",
        "1s",
    ]
    .map(String::from);
    let serve = ctx.flow.start(
        &[],
        &serve_args,
        None,
        Some(&ctx.raw(&format!("churn-{index}-serve.log"))),
    )?;
    let serve_pid = serve.proc.pid();
    // flow takes its first sample right after attaching; start after it.
    thread::sleep(Duration::from_millis(500));
    println!(
        "bench: churn run {} of {}: {} connections/s for {} s, {} bytes each",
        index + 1,
        ctx.plan.churn_runs,
        churn.rate,
        churn.seconds,
        BYTES_PER_CONNECTION
    );
    let plan = Plan {
        rate: churn.rate as f64,
        total: churn.planned,
        bytes: BYTES_PER_CONNECTION,
        workers: if ctx.plan.quick { 2 } else { 8 },
        limit: Duration::from_secs(churn.seconds),
    };
    churn.rss_before_kib = status_kib(pid, "VmRSS");
    churn.serve.rss_before_kib = status_kib(serve_pid, "VmRSS");
    let cpu_before = cpu_seconds(pid, false);
    let serve_cpu_before = cpu_seconds(serve_pid, false);
    let started = Instant::now();
    let totals = generate(&plan, &server.addrs);
    let elapsed = started.elapsed().as_secs_f64();
    let ended = Instant::now();
    if let (Some(a), Some(b)) = (cpu_before, cpu_seconds(pid, false)) {
        churn.cores = Some((b - a) / elapsed.max(1e-9));
    }
    if let (Some(a), Some(b)) = (serve_cpu_before, cpu_seconds(serve_pid, false)) {
        churn.serve.cores = Some((b - a) / elapsed.max(1e-9));
    }
    churn.peak_rss_kib = status_kib(pid, "VmHWM");
    churn.serve.peak_rss_kib = status_kib(serve_pid, "VmHWM");
    if !after.is_zero() {
        thread::sleep(after.saturating_sub(ended.elapsed()));
        churn.after_s = ended.elapsed().as_secs_f64();
        churn.rss_after_kib = status_kib(pid, "VmRSS");
        churn.serve.rss_after_kib = status_kib(serve_pid, "VmRSS");
        if churn.rss_after_kib.is_none() {
            ctx.notes.push(format!(
                "churn run {}: flow had exited before its memory was read a minute after the churn",
                index + 1
            ));
        }
    }
    if let Err(err) = serve.interrupt(Duration::from_secs(10)) {
        ctx.notes
            .push(format!("churn run {}: flow serve: {err:#}", index + 1));
    }
    let finished = running.finish(Duration::from_secs(churn.seconds + after.as_secs() + 120));
    let (_, moved) = server.stop();
    churn.done = totals.done;
    churn.failed = totals.failed + totals.skipped;
    churn.written = totals.written;
    churn.moved = moved;
    churn.achieved_rate = totals.done as f64 / elapsed.max(1e-9);
    let finished = finished?;
    // The first poll ran before the churn, the last one after it ended.
    let polls = verbose::polls(finished.lines.iter().map(|l| l.text.as_str()));
    churn.map_before = polls.first().map(|p| p.live);
    churn.map_after = polls.last().map(|p| p.live).filter(|_| polls.len() > 1);
    if churn.map_after.is_none() {
        ctx.notes.push(format!(
            "churn run {}: flow -v logged fewer than two poll lines",
            index + 1
        ));
    }
    churn.warnings = finished.warnings;
    churn.notes = finished.notes;
    let text = fs::read_to_string(&out_path).context("reading flow's JSON")?;
    tally(&text, port, churn)?;
    let exact = churn.reported_rx == churn.moved
        && churn.reported_tx == churn.written
        && churn.server_rows == churn.done
        && churn.client_rows == churn.done;
    if text.len() > 16 << 20 && exact {
        // Hundreds of MB at full rate; the totals are in the report. A run that is not exact
        // keeps its rows, to find the connections that went missing.
        let _ = fs::remove_file(&out_path);
    }
    Ok(())
}

/// Adds up flow's rows for `port`: client ends (remote port = `port`) send, server ends
/// (local port = `port`) receive; anything in the other direction is counted apart.
pub fn tally(text: &str, port: u16, churn: &mut Churn) -> Result<()> {
    let port_of =
        |v: Option<&json::Value>| -> Option<u16> { v?.as_str()?.rsplit_once(':')?.1.parse().ok() };
    // Each connection end should be one row; a 4-tuple listed twice means two connections
    // (the port reused within the window) or one connection shown twice.
    let mut tuples = HashSet::new();
    let rows = json::parse(text).context("parsing flow's JSON")?;
    for row in json::elements(&rows) {
        let tx = row
            .get("tx_bytes")
            .and_then(json::Value::as_u64)
            .unwrap_or(0);
        let rx = row
            .get("rx_bytes")
            .and_then(json::Value::as_u64)
            .unwrap_or(0);
        let local = row.pointer("/connection/local");
        let remote = row.pointer("/connection/remote");
        let tuple = (
            local
                .and_then(json::Value::as_str)
                .unwrap_or("")
                .to_string(),
            remote
                .and_then(json::Value::as_str)
                .unwrap_or("")
                .to_string(),
        );
        if !tuples.insert(tuple) {
            churn.repeated_tuples += 1;
        }
        if port_of(local) == Some(port) {
            churn.server_rows += 1;
            churn.reported_rx += rx;
            churn.reported_other += tx;
        } else if port_of(remote) == Some(port) {
            churn.client_rows += 1;
            churn.reported_tx += tx;
            churn.reported_other += rx;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_evenly_spaced() {
        assert_eq!(due(200.0, 0), Duration::ZERO);
        assert_eq!(due(200.0, 100), Duration::from_millis(500));
    }

    #[test]
    fn moves_exactly_the_planned_bytes() {
        let hosts = [Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2)];
        let server = Server::start(&hosts, 1000).unwrap();
        let plan = Plan {
            rate: 400.0,
            total: 40,
            bytes: 1000,
            workers: 3,
            limit: Duration::from_secs(20),
        };
        let totals = generate(&plan, &server.addrs);
        let (served, read) = server.stop();
        assert_eq!(
            totals,
            Totals {
                done: 40,
                failed: 0,
                skipped: 0,
                written: 40_000
            }
        );
        assert_eq!((served, read), (40, 40_000));
    }

    #[test]
    fn stops_at_the_time_limit() {
        let server = Server::start(&[Ipv4Addr::LOCALHOST], 10).unwrap();
        // 1,000,000 planned at 10/s, but only 0.3 s allowed: 3 start (2 if the machine stalls), the rest skip.
        let plan = Plan {
            rate: 10.0,
            total: 1_000_000,
            bytes: 10,
            workers: 2,
            limit: Duration::from_millis(300),
        };
        let started = Instant::now();
        let totals = generate(&plan, &server.addrs);
        server.stop();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!((2..=3).contains(&totals.done), "{totals:?}");
        assert_eq!(totals.done + totals.failed + totals.skipped, 1_000_000);
    }

    #[test]
    fn tallies_client_and_server_rows() {
        let text = r#"[
          {"connection":{"local":"127.0.0.1:40000","remote":"127.0.0.2:5555"},"tx_bytes":10,"rx_bytes":0},
          {"connection":{"local":"127.0.0.2:5555","remote":"127.0.0.1:40000"},"tx_bytes":0,"rx_bytes":10},
          {"connection":{"local":"[::1]:5555","remote":"[::1]:40001"},"tx_bytes":3,"rx_bytes":7},
          {"connection":{"local":"[::1]:5555","remote":"[::1]:40001"},"tx_bytes":0,"rx_bytes":0}
        ]"#;
        let mut churn = Churn::default();
        tally(text, 5555, &mut churn).unwrap();
        assert_eq!(
            (churn.reported_tx, churn.reported_rx, churn.reported_other),
            (10, 17, 3)
        );
        assert_eq!((churn.client_rows, churn.server_rows), (1, 3));
        assert_eq!(churn.repeated_tuples, 1);
    }
}
