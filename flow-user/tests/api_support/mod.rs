//! Helpers for the API tests over real loopback traffic: opening a monitor in each mode, paced
//! senders, draining readers, and sockets bound to a chosen local port.
#![allow(dead_code)]

use std::{
    io::{self, Read, Write},
    mem,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    os::fd::{AsRawFd, FromRawFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use flow_user::{
    observe::Mode, procfs::TcpInfoRow, ConnectionBandwidth, ModeChoice, Monitor, MonitorOptions,
};

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Opens a monitor in `mode`. eBPF mode needs root: without it the test says loudly that it did
/// not run, except under CI, where it fails.
pub fn open(mode: ModeChoice) -> Option<Monitor> {
    if mode == ModeChoice::Ebpf && !is_root() && !in_ci() {
        eprintln!("NOT RUN: this test loads the kernel program and needs root (CI runs it)");
        return None;
    }
    let monitor = Monitor::open(&MonitorOptions {
        mode,
        ..MonitorOptions::default()
    })
    .unwrap_or_else(|err| panic!("the monitor must open in {mode:?} mode here: {err:#}"));
    let expected = match mode {
        ModeChoice::Ebpf => Mode::Ebpf,
        _ => Mode::Procfs,
    };
    assert_eq!(monitor.mode(), expected, "{}", monitor.describe());
    eprintln!("{}", monitor.describe());
    Some(monitor)
}

/// Both ends' addresses as the monitor lists them: (local, remote) of `stream`.
pub fn addrs(stream: &TcpStream) -> (SocketAddr, SocketAddr) {
    (stream.local_addr().unwrap(), stream.peer_addr().unwrap())
}

/// The socket inode `fstat` gives for this stream.
pub fn fstat_inode(stream: &TcpStream) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{}", stream.as_raw_fd()))
        .unwrap()
        .ino()
}

/// The one row for this end of a connection (there must be exactly one).
pub fn row_of<'a>(
    rows: &'a [ConnectionBandwidth],
    stream: &TcpStream,
    what: &str,
) -> &'a ConnectionBandwidth {
    let (local, remote) = addrs(stream);
    let matching: Vec<_> = rows
        .iter()
        .filter(|b| b.connection.local == local && b.connection.remote == remote)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "{what}: expected one row for {local} -> {remote}, got {matching:#?}"
    );
    matching[0]
}

/// The sock_diag row of this end of a connection.
pub fn tcp_info(stream: &TcpStream) -> TcpInfoRow {
    let (local, remote) = addrs(stream);
    flow_user::procfs::dump_tcp_info()
        .unwrap()
        .into_iter()
        .find(|r| r.local == local && r.remote == remote)
        .unwrap_or_else(|| panic!("sock_diag has no row for {local} -> {remote}"))
}

/// What a paced sender did: when each chunk finished being written.
pub struct PacedReport {
    pub chunk: usize,
    pub written_at: Vec<Instant>,
}

impl PacedReport {
    /// Bytes whose write completed inside `[from, to]`.
    pub fn bytes_between(&self, from: Instant, to: Instant) -> u64 {
        let n = self
            .written_at
            .iter()
            .filter(|t| **t >= from && **t <= to)
            .count();
        (n * self.chunk) as u64
    }

    /// The largest lateness of a write against its schedule.
    pub fn worst_lag(&self, start: Instant, period: Duration) -> Duration {
        self.written_at
            .iter()
            .enumerate()
            .map(|(i, t)| t.saturating_duration_since(start + period * i as u32))
            .max()
            .unwrap_or_default()
    }
}

/// Writes `count` chunks of `chunk` bytes, chunk `i` at `start + i * period` (an absolute
/// schedule: a late write is followed by on-time ones, so the average rate holds), then shuts
/// down its sending side. `stop` ends it early.
pub struct Paced {
    pub start: Instant,
    pub period: Duration,
    pub stop: Arc<AtomicBool>,
    handle: JoinHandle<PacedReport>,
}

impl Paced {
    pub fn spawn(stream: &TcpStream, chunk: usize, period: Duration, count: usize) -> Paced {
        let mut writer = stream.try_clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let start = Instant::now();
        let handle = thread::spawn(move || {
            let data = vec![0xa5_u8; chunk];
            let mut written_at = Vec::with_capacity(count);
            for i in 0..count {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let due = start + period * i as u32;
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                writer.write_all(&data).unwrap();
                written_at.push(Instant::now());
            }
            writer.shutdown(std::net::Shutdown::Write).unwrap();
            PacedReport { chunk, written_at }
        });
        Paced {
            start,
            period,
            stop,
            handle,
        }
    }

    /// Stops early (at the next chunk) and waits for the sender.
    pub fn finish(self) -> PacedReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }

    /// Waits for the sender to write all its chunks.
    pub fn join(self) -> PacedReport {
        self.handle.join().unwrap()
    }
}

/// Reads `stream` until the peer shuts down (or `limit` passes); returns the bytes read.
pub fn drain(stream: &TcpStream, limit: Duration) -> JoinHandle<u64> {
    let mut reader = stream.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    thread::spawn(move || {
        let start = Instant::now();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        while start.elapsed() < limit {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("drain: {e}"),
            }
        }
        total
    })
}

/// A client socket bound to 127.0.0.1:`port` (0: any) with SO_REUSEADDR, connected to `to`.
pub fn connect_from(port: u16, to: SocketAddr) -> io::Result<TcpStream> {
    let SocketAddr::V4(to) = to else {
        panic!("connect_from is IPv4 only");
    };
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // Owns the fd from here: closed on every error path.
        let stream = TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        if libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let local = sockaddr_in(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        if libc::bind(
            fd,
            (&local as *const libc::sockaddr_in).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let remote = sockaddr_in(to);
        if libc::connect(
            fd,
            (&remote as *const libc::sockaddr_in).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = addr.port().to_be();
    sa.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
    sa
}

/// Closes with a reset (SO_LINGER 0): neither end keeps the 4-tuple in TIME_WAIT, so it can be
/// reused at once.
pub fn close_with_reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
    drop(stream);
}

/// `f` until it returns `Some`, at most `tries` times `pause` apart.
pub fn retry<T>(tries: usize, pause: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for i in 0..tries {
        if let Some(value) = f() {
            return Some(value);
        }
        if i + 1 < tries {
            thread::sleep(pause);
        }
    }
    None
}
