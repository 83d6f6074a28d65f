//! Loopback traffic: free ports, connection pairs, measured transfers, steady and paced senders,
//! draining readers, sockets bound to a chosen port, resets.

use std::{
    io::{self, Read, Write},
    mem,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

/// A loopback port nobody listens on now (bound, then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
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

/// Both ends of one loopback connection.
pub struct Pair {
    pub client: TcpStream,
    pub server: TcpStream,
}

impl Pair {
    pub fn open(listener: &TcpListener) -> Pair {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        Pair { client, server }
    }

    pub fn client_addrs(&self) -> (SocketAddr, SocketAddr) {
        addrs(&self.client)
    }

    pub fn server_addrs(&self) -> (SocketAddr, SocketAddr) {
        addrs(&self.server)
    }
}

/// Writes `sizes` (one `write_all` each) from `from` while `to` reads them all, peeking before
/// every read so `MSG_PEEK` traffic is in the mix. Returns the byte total.
pub fn transfer(from: &TcpStream, to: &TcpStream, sizes: &[usize]) -> u64 {
    let total: usize = sizes.iter().sum();
    let mut writer = from.try_clone().unwrap();
    let sizes = sizes.to_vec();
    let sender = thread::spawn(move || {
        for size in sizes {
            let chunk = vec![0x5a_u8; size];
            writer.write_all(&chunk).unwrap();
        }
    });
    let mut reader = to.try_clone().unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < total {
        peek(&reader, 32);
        let want = (total - got).min(buf.len());
        let n = reader.read(&mut buf[..want]).unwrap();
        assert!(n > 0, "peer closed early");
        got += n;
    }
    sender.join().unwrap();
    total as u64
}

/// A `recv(MSG_PEEK)` of up to `len` bytes: must not count as received.
pub fn peek(stream: &TcpStream, len: usize) -> isize {
    let mut buf = vec![0u8; len];
    unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            len,
            libc::MSG_PEEK,
        )
    }
}

/// One loopback connection carrying a steady stream from client to server until dropped or
/// `limit` passes. The server end's local port is [`Transfer::port`].
pub struct Transfer {
    pub port: u16,
    pub client_port: u16,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Transfer {
    /// Sends `chunk` bytes every `pause`.
    pub fn start(chunk: usize, pause: Duration, limit: Duration) -> Transfer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let client_port = client.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let end = Instant::now() + limit;
        let sender = {
            let (sent, stop) = (Arc::clone(&sent), Arc::clone(&stop));
            thread::spawn(move || {
                let data = vec![0x5a_u8; chunk];
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    if client.write_all(&data).is_err() {
                        break;
                    }
                    sent.fetch_add(chunk as u64, Ordering::Relaxed);
                    thread::sleep(pause);
                }
            })
        };
        let receiver = thread::spawn(move || {
            server
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            // Ends at EOF when the sender's stream is dropped, or at the deadline.
            while Instant::now() < end + Duration::from_secs(1) {
                match server.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
        });
        Transfer {
            port,
            client_port,
            sent,
            stop,
            threads: vec![sender, receiver],
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
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
