//! Issue 14: TCP bytes counted from the socket's own sequence numbers are exact whatever path
//! moved them — sendfile, splice (both ways), MSG_PEEK, MSG_ZEROCOPY — on both ends, IPv4 and
//! IPv6, for live sockets, across half-close and reset, and for a connection that opens, moves
//! data and closes between two polls. Per-event counting (loaded beside it) agrees to the byte
//! on plain traffic. Real syscalls only.

mod support;

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    thread,
    time::Duration,
};

use flow_common::{SockClosed, SockCounters};
use flow_user::ebpf::{Counting, KernelEvents, KernelProgram, LoadOptions, Store};
use support::{collect_closed, load, tuple_addrs, Pair};

const BINDS: [&str; 2] = ["127.0.0.1:0", "[::1]:0"];
/// Bytes per transfer: not a multiple of any buffer size.
const SIZE: usize = 1_000_003;

fn live(program: &mut KernelProgram, addrs: (SocketAddr, SocketAddr)) -> SockCounters {
    support::counters_of(&program.sockets().unwrap(), addrs)
}

fn pair(bind: &str) -> Pair {
    Pair::open(&TcpListener::bind(bind).unwrap())
}

/// A memfd of `len` bytes: what sendfile reads from (no filesystem needed, as in the VM).
fn memfd(len: usize) -> std::fs::File {
    let fd = unsafe { libc::memfd_create(c"flow-kernel-paths".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let chunk: Vec<u8> = (0..65_536u32).map(|i| i as u8).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        file.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    file
}

/// Sends `len` bytes of a file on `stream` with sendfile(2).
fn send_file(stream: &TcpStream, len: usize) {
    let file = memfd(len);
    let mut offset: libc::off_t = 0;
    while (offset as usize) < len {
        let n = unsafe {
            libc::sendfile(
                stream.as_raw_fd(),
                file.as_raw_fd(),
                &mut offset,
                len - offset as usize,
            )
        };
        assert!(n > 0, "sendfile: {}", std::io::Error::last_os_error());
    }
}

/// Reads exactly `len` bytes with plain reads.
fn read_exactly(stream: &TcpStream, len: usize) {
    let mut buf = vec![0u8; len];
    (&*stream).read_exact(&mut buf).unwrap();
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// splice(2) `len` bytes from `from` to `to` (one of them a pipe).
fn splice(from: i32, to: i32, len: usize) -> usize {
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE,
        )
    };
    assert!(n >= 0, "splice: {}", std::io::Error::last_os_error());
    n as usize
}

/// Reads `len` bytes from `stream` through a pipe into /dev/null, never into user memory.
fn splice_to_null(stream: &TcpStream, len: usize) {
    let (read_end, write_end) = pipe();
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    let mut done = 0;
    while done < len {
        let n = splice(
            stream.as_raw_fd(),
            write_end.as_raw_fd(),
            (len - done).min(65_536),
        );
        assert!(n > 0, "early EOF after {done} bytes");
        let mut moved = 0;
        while moved < n {
            moved += splice(read_end.as_raw_fd(), null.as_raw_fd(), n - moved);
        }
        done += n;
    }
}

/// Forwards `len` bytes from socket `from` to socket `to` through a pipe (splice both ways).
fn splice_relay(from: &TcpStream, to: &TcpStream, len: usize) {
    let (read_end, write_end) = pipe();
    let mut done = 0;
    while done < len {
        let n = splice(
            from.as_raw_fd(),
            write_end.as_raw_fd(),
            (len - done).min(65_536),
        );
        assert!(n > 0, "early EOF after {done} bytes");
        let mut moved = 0;
        while moved < n {
            moved += splice(read_end.as_raw_fd(), to.as_raw_fd(), n - moved);
        }
        done += n;
    }
}

fn load_sequence() -> Option<KernelProgram> {
    let program = load(&support::options())?;
    if program.rung().store() == Store::Local {
        assert_eq!(
            program.counting(),
            Counting::Sequence,
            "{}",
            program.describe()
        );
        assert!(
            program.describe().contains("counting: sequence numbers"),
            "{}",
            program.describe()
        );
    } else {
        assert_eq!(program.counting(), Counting::PerEvent);
        assert!(
            program.describe().contains("counting: per event ("),
            "{}",
            program.describe()
        );
    }
    Some(program)
}

/// Whether this rung sees bytes that bypass tcp_sendmsg/tcp_recvmsg (sendfile on 6.1, splice
/// receive): only sequence counting does.
fn sees_every_path(program: &KernelProgram) -> bool {
    program.counting() == Counting::Sequence
}

fn assert_ends(
    program: &mut KernelProgram,
    client: (SocketAddr, SocketAddr),
    server: (SocketAddr, SocketAddr),
    up: u64,
    down: u64,
    what: &str,
) {
    let c = live(program, client);
    let s = live(program, server);
    assert_eq!((c.tx_bytes, c.rx_bytes), (up, down), "{what}: client end");
    assert_eq!((s.tx_bytes, s.rx_bytes), (down, up), "{what}: server end");
}

#[test]
fn sendfile_sender_plain_receiver() {
    let Some(mut program) = load_sequence() else {
        return;
    };
    if !sees_every_path(&program) {
        eprintln!("per-event counting: sendfile is not claimed exact on this rung");
        return;
    }
    for bind in BINDS {
        let pair = pair(bind);
        let reader = pair.server.try_clone().unwrap();
        let receiving = thread::spawn(move || read_exactly(&reader, SIZE));
        send_file(&pair.client, SIZE);
        receiving.join().unwrap();
        let what = format!("sendfile {bind}");
        assert_ends(
            &mut program,
            pair.client_addrs(),
            pair.server_addrs(),
            SIZE as u64,
            0,
            &what,
        );
    }
}

#[test]
fn plain_sender_splice_receiver() {
    let Some(mut program) = load_sequence() else {
        return;
    };
    if !sees_every_path(&program) {
        return;
    }
    for bind in BINDS {
        let pair = pair(bind);
        let reader = pair.server.try_clone().unwrap();
        let receiving = thread::spawn(move || splice_to_null(&reader, SIZE));
        let data = vec![7u8; SIZE];
        (&pair.client).write_all(&data).unwrap();
        receiving.join().unwrap();
        let what = format!("splice receive {bind}");
        assert_ends(
            &mut program,
            pair.client_addrs(),
            pair.server_addrs(),
            SIZE as u64,
            0,
            &what,
        );
    }
}

/// source → relay_in ⇒ pipe ⇒ relay_out → sink: the relay's two sockets move every byte by
/// splice, in and out.
#[test]
fn splice_both_ways() {
    let Some(mut program) = load_sequence() else {
        return;
    };
    if !sees_every_path(&program) {
        return;
    }
    for bind in BINDS {
        let first = pair(bind);
        let second = pair(bind);
        let (relay_in, relay_out) = (
            first.server.try_clone().unwrap(),
            second.client.try_clone().unwrap(),
        );
        let relaying = thread::spawn(move || splice_relay(&relay_in, &relay_out, SIZE));
        let sink = second.server.try_clone().unwrap();
        let receiving = thread::spawn(move || read_exactly(&sink, SIZE));
        (&first.client).write_all(&vec![3u8; SIZE]).unwrap();
        relaying.join().unwrap();
        receiving.join().unwrap();
        let n = SIZE as u64;
        assert_ends(
            &mut program,
            first.client_addrs(),
            first.server_addrs(),
            n,
            0,
            bind,
        );
        assert_ends(
            &mut program,
            second.client_addrs(),
            second.server_addrs(),
            n,
            0,
            bind,
        );
    }
}

#[test]
fn peek_never_counts() {
    let Some(mut program) = load_sequence() else {
        return;
    };
    for bind in BINDS {
        let pair = pair(bind);
        (&pair.client).write_all(&[1u8; 10_000]).unwrap();
        // Peek until everything is there, twice over: none of it is read.
        let mut buf = vec![0u8; 10_000];
        for _ in 0..2 {
            loop {
                let n = unsafe {
                    libc::recv(
                        pair.server.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_PEEK,
                    )
                };
                if n == 10_000 {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
        let client = live(&mut program, pair.client_addrs());
        // The untyped rungs make an entry at a socket's first byte: none yet for the reader.
        let server = program
            .sockets()
            .unwrap()
            .into_iter()
            .find(|(_, c)| tuple_addrs(&c.tuple) == Some(pair.server_addrs()))
            .map_or(0, |(_, c)| c.rx_bytes);
        assert_eq!(
            (client.tx_bytes, server),
            (10_000, 0),
            "{bind}: peeked only"
        );
        read_exactly(&pair.server, 6_000);
        let server = live(&mut program, pair.server_addrs());
        assert_eq!(server.rx_bytes, 6_000, "{bind}: read after peeking");
    }
}

/// MSG_ZEROCOPY: the kernel pins the user pages instead of copying (on loopback it copies
/// after all); the bytes count once either way, and the completion notifications on the
/// error queue are not data.
#[test]
fn zerocopy_sends_count_once() {
    let Some(mut program) = load_sequence() else {
        return;
    };
    for bind in BINDS {
        let pair = pair(bind);
        let fd = pair.client.as_raw_fd();
        let one: libc::c_int = 1;
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ZEROCOPY,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_ZEROCOPY: {}", std::io::Error::last_os_error());
        let reader = pair.server.try_clone().unwrap();
        let total = 40 * 16_384;
        let receiving = thread::spawn(move || read_exactly(&reader, total));
        let data = vec![9u8; 16_384];
        let mut sent = 0;
        while sent < total {
            let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_ZEROCOPY) };
            assert!(
                n > 0,
                "send(MSG_ZEROCOPY): {}",
                std::io::Error::last_os_error()
            );
            sent += n as usize;
        }
        receiving.join().unwrap();
        drain_error_queue(fd);
        assert_ends(
            &mut program,
            pair.client_addrs(),
            pair.server_addrs(),
            total as u64,
            0,
            bind,
        );
    }
}

fn drain_error_queue(fd: i32) {
    let mut control = [0u8; 256];
    for _ in 0..100 {
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            return;
        }
    }
}

fn final_of(events: &[SockClosed], addrs: (SocketAddr, SocketAddr)) -> (u64, u64) {
    // Each socket may publish twice (at TCP_CLOSE and at destroy): the larger counts.
    events
        .iter()
        .filter(|e| tuple_addrs(&e.counters.tuple) == Some(addrs))
        .map(|e| (e.counters.tx_bytes, e.counters.rx_bytes))
        .max()
        .unwrap_or_else(|| panic!("no close event for {addrs:?}"))
}

fn closes_of(
    closed: &KernelEvents,
    client: (SocketAddr, SocketAddr),
    server: (SocketAddr, SocketAddr),
) -> Vec<SockClosed> {
    // Both ends' final (destroy) events: the last ones of a closed connection.
    let mut all = collect_closed(closed, Duration::from_secs(10), |all| {
        let finals = |a| {
            all.iter().any(|e| {
                tuple_addrs(&e.counters.tuple) == Some(a)
                    && e.counters.flags & flow_common::entry_flags::CLOSE_PUBLISHED != 0
            })
        };
        finals(client) && finals(server)
    });
    // Destroy events may trail by a moment: take what else comes.
    thread::sleep(Duration::from_millis(200));
    all.extend(closed.take_closed());
    all
}

/// Opens, sends a file, half-closes, answers, closes — all between two polls — then checks
/// the close events: the FINs in both directions are not app bytes; EOF reads consume them.
#[test]
fn sendfile_connection_between_two_polls() {
    let Some(mut program) = load_sequence() else {
        return;
    };
    if program.rung().store() != Store::Local || !sees_every_path(&program) {
        return;
    }
    let closed = KernelEvents::start(&mut program, false).unwrap();
    for bind in BINDS {
        program.changed_sockets().unwrap();
        let Pair {
            client: sender,
            server: mut reader,
        } = pair(bind);
        let (client, server) = (support::addrs(&sender), support::addrs(&reader));
        let serving = thread::spawn(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).unwrap(); // reads the FIN (EOF)
            reader.write_all(&[5u8; 4_321]).unwrap();
            all.len() // the server's socket closes here
        });
        send_file(&sender, SIZE);
        sender.shutdown(Shutdown::Write).unwrap();
        assert_eq!(serving.join().unwrap(), SIZE);
        let mut answer = Vec::new();
        (&sender).read_to_end(&mut answer).unwrap();
        assert_eq!(answer.len(), 4_321);
        drop(sender);
        let events = closes_of(&closed, client, server);
        assert_eq!(
            final_of(&events, client),
            (SIZE as u64, 4_321),
            "{bind} client"
        );
        assert_eq!(
            final_of(&events, server),
            (4_321, SIZE as u64),
            "{bind} server"
        );
    }
}

/// A connection reset with data unread: the reader's count is what it read, the sender's
/// what it queued; no FIN was sent or received.
#[test]
fn reset_connection_is_exact() {
    let Some(mut program) = load_sequence() else {
        return;
    };
    if program.rung().store() != Store::Local {
        return;
    }
    let closed = KernelEvents::start(&mut program, false).unwrap();
    for bind in BINDS {
        let pair = pair(bind);
        let (client, server) = (pair.client_addrs(), pair.server_addrs());
        (&pair.client).write_all(&[1u8; 5_000]).unwrap();
        read_exactly(&pair.server, 5_000);
        (&pair.server).write_all(&[2u8; 300]).unwrap();
        read_exactly(&pair.client, 300);
        (&pair.client).write_all(&[1u8; 77]).unwrap();
        thread::sleep(Duration::from_millis(50));
        // The server closes with 77 bytes unread: a reset, not a FIN.
        let Pair {
            client: c,
            server: s,
        } = pair;
        drop(s);
        thread::sleep(Duration::from_millis(50));
        drop(c);
        let events = closes_of(&closed, client, server);
        assert_eq!(final_of(&events, client), (5_077, 300), "{bind} client");
        assert_eq!(final_of(&events, server), (300, 5_000), "{bind} server");
    }
}

/// A connection made before the program loaded is adopted at load and counted from then on.
#[test]
fn connection_open_before_start_counts_from_start() {
    if !support::may_load() {
        return;
    }
    let pair = pair("127.0.0.1:0");
    (&pair.client).write_all(&[1u8; 1_000]).unwrap();
    read_exactly(&pair.server, 1_000);
    let Some(mut program) = load_sequence() else {
        return;
    };
    if program.rung().store() != Store::Local {
        return;
    }
    (&pair.client).write_all(&[1u8; 2_345]).unwrap();
    read_exactly(&pair.server, 2_345);
    (&pair.server).write_all(&[1u8; 10]).unwrap();
    read_exactly(&pair.client, 10);
    assert_ends(
        &mut program,
        pair.client_addrs(),
        pair.server_addrs(),
        2_345,
        10,
        "adopted",
    );
}

/// Both counting methods loaded at once see the same plain traffic: they agree to the byte.
#[test]
fn sequence_and_per_event_agree() {
    if !support::may_load() {
        return;
    }
    let options = support::options();
    let Some(mut sequence) = load_sequence() else {
        return;
    };
    if sequence.rung().store() != Store::Local {
        return;
    }
    let mut per_event = KernelProgram::load_counting(&options, Counting::PerEvent).unwrap();
    assert!(
        per_event.describe().contains("counting: per event ("),
        "{}",
        per_event.describe()
    );
    for bind in BINDS {
        let pair = pair(bind);
        let mut up = support::transfer(
            &pair.client,
            &pair.server,
            &[1, 64, 1_500, 65_536, 1_048_576],
        );
        let down = support::transfer(
            &pair.server,
            &pair.client,
            &[1_048_576, 65_536, 1_500, 64, 1],
        );
        up += support::transfer(&pair.client, &pair.server, &[7, 1, 3]);
        for addrs in [pair.client_addrs(), pair.server_addrs()] {
            let a = live(&mut sequence, addrs);
            let b = live(&mut per_event, addrs);
            assert_eq!(
                (a.tx_bytes, a.rx_bytes),
                (b.tx_bytes, b.rx_bytes),
                "{bind} {addrs:?}"
            );
        }
        assert_ends(
            &mut sequence,
            pair.client_addrs(),
            pair.server_addrs(),
            up,
            down,
            bind,
        );
    }
}

/// With `--no-payload` on a typed rung, no program runs per send or receive.
#[test]
fn no_payload_attaches_no_per_event_program() {
    let Some(program) = load(&LoadOptions {
        payload_bytes: 0,
        ..support::options()
    }) else {
        return;
    };
    if program.rung().store() != Store::Local || program.counting() != Counting::Sequence {
        return;
    }
    let loaded = program.loaded_programs();
    for name in [
        "flow_tx_btf",
        "flow_rx_btf",
        "flow_tx_fexit",
        "flow_rx_fexit",
    ] {
        assert!(!loaded.contains(&name), "{name} loaded: {loaded:?}");
    }
    assert!(program.describe().contains("counting: sequence numbers"));
}

/// shutdown(SHUT_RDWR) then close: the second entry into FIN_WAIT1/LAST_ACK (at close, after
/// the FIN) must not move the FIN's recorded sequence number; each close crosses the peer's.
#[test]
fn shutdown_then_close_counts_no_fin() {
    let Some(mut program) = load_sequence() else {
        return;
    };
    let closed = KernelEvents::start(&mut program, false).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        for _ in 0..300 {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 300];
            socket.read_exact(&mut request).unwrap();
            socket.write_all(&[1u8; 1700]).unwrap();
        }
    });
    for _ in 0..300 {
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client.write_all(&[2u8; 300]).unwrap();
        let mut response = [0u8; 1700];
        client.read_exact(&mut response).unwrap();
        client.shutdown(Shutdown::Both).unwrap();
    }
    server.join().unwrap();
    thread::sleep(Duration::from_secs(2));
    if program.counting() != Counting::Sequence {
        return;
    }
    let events = closed.take_closed();
    let clients: Vec<_> = events
        .iter()
        .map(|e| e.counters)
        .filter(|c| c.tuple.remote_port == port)
        .collect();
    assert!(
        clients.len() >= 300,
        "{} client close events",
        clients.len()
    );
    for c in clients {
        assert_eq!((c.tx_bytes, c.rx_bytes), (300, 1700), "flags {}", c.flags);
    }
}

/// `(tx, rx)` of each of `ends` in one incremental read (`None`: not in it).
fn changed_of(
    program: &mut KernelProgram,
    ends: [(SocketAddr, SocketAddr); 2],
) -> [Option<(u64, u64)>; 2] {
    let rows = program.changed_sockets().unwrap().rows;
    ends.map(|addrs| {
        rows.iter()
            .filter(|row| tuple_addrs(&row.socket.tuple) == Some(addrs))
            .find_map(|row| row.counters)
            .map(|c| (c.tx_bytes, c.rx_bytes))
    })
}

/// Socket fields read through a helper call each (what a kernel without `bpf_skc_to_tcp_sock`
/// runs) count what direct loads count: live in the incremental read and the full table, and
/// at close. Both programs are loaded at once over the same traffic; incremental reads come
/// before, between and after it, so one finds both ends moved since the previous read and the
/// next (a few ticks later) finds them idle.
#[test]
fn probe_reads_count_as_typed_reads() {
    let Some(mut typed) = load_sequence() else {
        return;
    };
    if typed.rung().store() != Store::Local {
        return;
    }
    let mut probed = KernelProgram::load(&LoadOptions {
        probe_reads: true,
        ..support::options()
    })
    .unwrap();
    assert!(!probed.typed_reads());
    let closed = KernelEvents::start(&mut probed, false).unwrap();
    for bind in BINDS {
        let pair = pair(bind);
        let (client, server) = (pair.client_addrs(), pair.server_addrs());
        let mut up = support::transfer(&pair.client, &pair.server, &[1, 65_536]);
        let mut down = support::transfer(&pair.server, &pair.client, &[1_500]);
        for program in [&mut typed, &mut probed] {
            assert_ends(program, client, server, up, down, bind);
            program.changed_sockets().unwrap();
        }
        up += support::transfer(&pair.client, &pair.server, &[1_048_576, 7]);
        down += support::transfer(&pair.server, &pair.client, &[3]);
        for program in [&mut typed, &mut probed] {
            let moved = changed_of(program, [client, server]);
            assert_eq!(moved, [Some((up, down)), Some((down, up))], "{bind}, moved");
            assert_ends(program, client, server, up, down, bind);
            // A later tick: an unchanged entry is not reported again.
            thread::sleep(Duration::from_millis(50));
            assert_eq!(
                changed_of(program, [client, server]),
                [None, None],
                "{bind}, idle"
            );
        }
        drop(pair);
        let events = closes_of(&closed, client, server);
        assert_eq!(final_of(&events, client), (up, down), "{bind} client");
        assert_eq!(final_of(&events, server), (down, up), "{bind} server");
    }
}
