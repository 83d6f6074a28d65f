//! Shared by the tests that load the kernel program: privilege gate and loopback traffic.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    thread,
    time::{Duration, Instant},
};

use flow_user::ebpf::{KernelEvents, KernelProgram, LoadOptions};

/// Loads the kernel program. Without root it cannot: under CI that is a failure, elsewhere the
/// test says loudly that it did not run.
pub fn load(options: &LoadOptions) -> Option<KernelProgram> {
    if !may_load() {
        return None;
    }
    match KernelProgram::load(options) {
        Ok(program) => Some(program),
        Err(err) => panic!("the kernel program must load here: {err:#}"),
    }
}

/// False (and says so) when the kernel program cannot be loaded here: not root and not CI.
/// Under CI a missing privilege is not an excuse: the load is attempted and fails the test.
pub fn may_load() -> bool {
    if unsafe { libc::geteuid() } != 0 && std::env::var_os("CI").is_none() {
        eprintln!("NOT RUN: this test loads the kernel program and needs root (CI runs it)");
        return false;
    }
    true
}

/// Load options for the rung under test: `FLOW_TEST_RUNG` forces one (the VM matrix runs every
/// test once per rung); unset, the ladder picks.
pub fn options() -> LoadOptions {
    LoadOptions {
        rung: std::env::var("FLOW_TEST_RUNG").ok().map(|r| {
            r.parse()
                .expect("FLOW_TEST_RUNG: fentry, kprobe or tracepoint")
        }),
        ..LoadOptions::default()
    }
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
        (
            self.client.local_addr().unwrap(),
            self.client.peer_addr().unwrap(),
        )
    }

    pub fn server_addrs(&self) -> (SocketAddr, SocketAddr) {
        (
            self.server.local_addr().unwrap(),
            self.server.peer_addr().unwrap(),
        )
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

/// Collects close events until `done` says enough, or `limit` passes.
pub fn collect_closed(
    events: &KernelEvents,
    limit: Duration,
    mut done: impl FnMut(&[flow_common::SockClosed]) -> bool,
) -> Vec<flow_common::SockClosed> {
    let start = Instant::now();
    let mut all = Vec::new();
    loop {
        all.extend(events.take_closed());
        if done(&all) || start.elapsed() > limit {
            return all;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The kernel's counters of the socket with these `(local, remote)` addresses, from one map read.
pub fn counters_of(
    sockets: &[(flow_common::SockKey, flow_common::SockCounters)],
    addrs: (SocketAddr, SocketAddr),
) -> flow_common::SockCounters {
    sockets
        .iter()
        .find(|(_, c)| tuple_addrs(&c.tuple) == Some(addrs))
        .map(|(_, c)| *c)
        .unwrap_or_else(|| panic!("no kernel entry for {addrs:?}"))
}

/// The tuple the kernel recorded, as socket addresses.
pub fn tuple_addrs(tuple: &flow_common::SockTuple) -> Option<(SocketAddr, SocketAddr)> {
    flow_user::ebpf::tuple_addrs(tuple)
}
