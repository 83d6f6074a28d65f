//! The connection holders of the scale runs: a child process (`cargo xtask bench --hold …`,
//! hidden) opens COUNT loopback connections to its own listener, reports `ready`, touches each
//! one on each `touch` (a byte each way, so each socket gets an entry in flow's map), and from
//! the first on keeps a few active (1 KiB each way per second) until its stdin closes.
//!
//! Why child processes: 100,000 connections need 200,000 fds, and without CAP_SYS_RESOURCE the
//! hard RLIMIT_NOFILE (20,000 on these machines) cannot be raised; each holder stays under it.
//! Why a listener per holder on its own 127.0.0.x: std cannot bind a client before connecting,
//! so instead of spreading the clients' source addresses the destinations are spread; the
//! kernel picks ephemeral ports per destination, so no holder runs out of ports.

use anyhow::{bail, Context, Result};
use std::{
    io::{BufRead, ErrorKind, Read, Write},
    net::{IpAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

/// A holder never outlives this, even if nobody closes its stdin.
const LIFETIME: Duration = Duration::from_secs(30 * 60);
const OPEN_LIMIT: Duration = Duration::from_secs(300);

/// What a holder is asked to hold: `ADDR,COUNT,ACTIVE`.
#[derive(Debug, PartialEq, Eq)]
pub struct Spec {
    pub addr: IpAddr,
    pub count: usize,
    pub active: usize,
}

impl Spec {
    pub fn parse(text: &str) -> Result<Spec> {
        let parts: Vec<&str> = text.split(',').collect();
        let [addr, count, active] = parts[..] else {
            bail!("--hold wants ADDR,COUNT,ACTIVE, got `{text}`");
        };
        let spec = Spec {
            addr: addr.parse().context("--hold address")?,
            count: count.parse().context("--hold count")?,
            active: active.parse().context("--hold active")?,
        };
        if !spec.addr.is_loopback() {
            bail!("--hold: {} is not a loopback address", spec.addr);
        }
        Ok(spec)
    }

    pub fn arg(&self) -> String {
        format!("{},{},{}", self.addr, self.count, self.active)
    }
}

/// Client and server ends of `count` connections, `clients[i]` connected to `servers[i]`.
pub struct Pairs {
    pub clients: Vec<TcpStream>,
    pub servers: Vec<TcpStream>,
}

/// Opens `count` connections to a new listener on `addr`, within `limit`.
///
/// One at a time: when `connect` returns, the handshake is done and the connection waits in
/// the accept queue, so it is accepted at once. That keeps the queue from overflowing (each
/// overflow costs a 1 s SYN retransmission) without a second thread, and pairs the ends by
/// order.
pub fn open_pairs(addr: IpAddr, count: usize, limit: Duration) -> Result<Pairs> {
    let deadline = Instant::now() + limit;
    let listener = TcpListener::bind((addr, 0)).with_context(|| format!("listening on {addr}"))?;
    let target = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let mut clients = Vec::with_capacity(count);
    let mut servers = Vec::with_capacity(count);
    for i in 0..count {
        if Instant::now() >= deadline {
            bail!("connected {i} of {count} before the deadline");
        }
        let client = TcpStream::connect_timeout(&target, Duration::from_secs(10))
            .with_context(|| format!("connection {i} of {count} to {target}"))?;
        let server = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                // The last ACK may still be in flight on the other CPU: microseconds.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        bail!("connection {i} of {count} was never accepted");
                    }
                    thread::yield_now();
                }
                Err(e) => return Err(e).context("accept"),
            }
        };
        server.set_nonblocking(false)?;
        if server.peer_addr()? != client.local_addr()? {
            bail!("accepted a connection that is not ours on {target}");
        }
        clients.push(client);
        servers.push(server);
    }
    Ok(Pairs { clients, servers })
}

impl Pairs {
    /// Moves `bytes` each way on the first `n` pairs.
    pub fn exchange(&mut self, n: usize, bytes: usize) -> Result<()> {
        let out = vec![0x5a; bytes];
        let mut back = vec![0; bytes];
        let n = n.min(self.clients.len());
        for c in &mut self.clients[..n] {
            c.write_all(&out)?;
        }
        for s in &mut self.servers[..n] {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.read_exact(&mut back)?;
            s.write_all(&out)?;
        }
        for c in &mut self.clients[..n] {
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            c.read_exact(&mut back)?;
        }
        Ok(())
    }
}

/// Raises RLIMIT_NOFILE towards `wanted` (the hard limit too, where allowed); returns the soft
/// limit now in force.
pub fn raise_nofile(wanted: u64) -> u64 {
    use std::ffi::{c_int, c_ulong};
    /// glibc's `struct rlimit`: two `rlim_t` (unsigned long, 64 bits on the 64-bit hosts this
    /// runs on; the assertion below stops a build where that is not so).
    #[repr(C)]
    struct RLimit {
        cur: u64,
        max: u64,
    }
    const _: () = assert!(std::mem::size_of::<c_ulong>() == 8);
    extern "C" {
        fn getrlimit(resource: c_int, rlim: *mut RLimit) -> c_int;
        fn setrlimit(resource: c_int, rlim: *const RLimit) -> c_int;
    }
    const RLIMIT_NOFILE: c_int = 7;
    let mut limit = RLimit { cur: 0, max: 0 };
    // SAFETY: libc calls (std links libc) with valid pointers to a struct laid out as theirs.
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.cur >= wanted {
        // Never lower a limit someone else raised.
        return limit.cur;
    }
    if limit.max < wanted {
        // Needs CAP_SYS_RESOURCE; failing is expected and fine (the load splits over holders).
        let raised = RLimit {
            cur: wanted,
            max: wanted,
        };
        // SAFETY: as above.
        if unsafe { setrlimit(RLIMIT_NOFILE, &raised) } == 0 {
            return wanted;
        }
    }
    let soft = RLimit {
        cur: wanted.min(limit.max),
        max: limit.max,
    };
    // SAFETY: as above.
    if unsafe { setrlimit(RLIMIT_NOFILE, &soft) } == 0 {
        soft.cur
    } else {
        limit.cur
    }
}

/// The child's main: hold connections as `spec` says, driven by lines on stdin. Every `touch`
/// moves a byte each way on every connection (a scale section starts several flow processes
/// one after the other, each touching the same connections); the first also starts the active
/// ones.
pub fn hold(spec: &str) -> Result<()> {
    let spec = Spec::parse(spec)?;
    raise_nofile(2 * spec.count as u64 + 64);
    let pairs = Arc::new(Mutex::new(open_pairs(spec.addr, spec.count, OPEN_LIMIT)?));
    println!("ready {}", spec.count);
    let stop = Arc::new(AtomicBool::new(false));
    let born = Instant::now();
    let mut active_thread = None;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim() != "touch" {
            continue;
        }
        pairs
            .lock()
            .map_err(|_| anyhow::anyhow!("the active connections' thread failed"))?
            .exchange(spec.count, 1)?;
        println!("touched {}", spec.count);
        if active_thread.is_none() {
            let stop = Arc::clone(&stop);
            let pairs = Arc::clone(&pairs);
            let active = spec.active;
            active_thread = Some(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && born.elapsed() < LIFETIME {
                    let Ok(mut pairs) = pairs.lock() else { break };
                    if pairs.exchange(active, 1024).is_err() {
                        break;
                    }
                    drop(pairs);
                    thread::sleep(Duration::from_secs(1));
                }
            }));
        }
    }
    // stdin closed: the benchmark is done (or gone).
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = active_thread {
        let _ = t.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trip_and_loopback_only() {
        let spec = Spec::parse("127.0.0.3,9000,90").unwrap();
        assert_eq!(spec.count, 9000);
        assert_eq!(Spec::parse(&spec.arg()).unwrap(), spec);
        assert!(Spec::parse("10.0.0.1,1,0").is_err());
        assert!(Spec::parse("127.0.0.1,1").is_err());
    }

    #[test]
    fn opens_pairs_and_exchanges_within_limits() {
        let mut pairs =
            open_pairs("127.0.0.1".parse().unwrap(), 40, Duration::from_secs(20)).unwrap();
        assert_eq!(pairs.clients.len(), 40);
        for (c, s) in pairs.clients.iter().zip(&pairs.servers) {
            assert_eq!(c.local_addr().unwrap(), s.peer_addr().unwrap());
        }
        pairs.exchange(40, 1).unwrap();
        pairs.exchange(5, 1024).unwrap();
        // A deadline already past stops the loop at once instead of hanging.
        assert!(open_pairs("127.0.0.1".parse().unwrap(), 10, Duration::ZERO).is_err());
    }

    #[test]
    fn nofile_limit_is_raised_within_the_hard_limit() {
        let now = raise_nofile(256);
        assert!(now >= 256);
    }
}
