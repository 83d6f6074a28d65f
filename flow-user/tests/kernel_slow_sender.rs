//! A reader blocked in one large `recv` while the peer dribbles small writes: the receive count
//! must still be exact.
//!
//! This is the shape that trips `tcp_cleanup_rbuf(sk, copied)`: with `MSG_WAITALL` the kernel
//! wakes the reader for every segment, copies it, and calls `tcp_cleanup_rbuf` with the running
//! total before sleeping again, so summing `copied` counts the early bytes once per wake-up (bcc
//! issue 5352). The buffer is far larger than what arrives, so counting the requested length
//! instead of what `tcp_recvmsg` returned is caught too.

mod support;

use std::{
    io::Write,
    net::{Shutdown, TcpListener},
    os::fd::AsRawFd,
    thread,
    time::{Duration, Instant},
};

use support::{load, Pair};

/// Small, so the test stays quick under QEMU's emulation (~20× slower than the host).
const WRITES: usize = 200;
const WRITE_SIZE: usize = 37;
const BUFFER: usize = 1024 * 1024;

#[test]
fn dribbled_writes_into_one_blocking_recv_count_exactly() {
    let Some(mut program) = load(&support::options()) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pair = Pair::open(&listener);
    // One segment per write, so the reader is woken once per write.
    pair.client.set_nodelay(true).unwrap();

    let mut writer = pair.client.try_clone().unwrap();
    let sender = thread::spawn(move || {
        for i in 0..WRITES {
            writer.write_all(&[0x37; WRITE_SIZE]).unwrap();
            thread::sleep(Duration::from_millis(2 + (i % 4) as u64));
        }
        // End of stream: this is what finally returns the MSG_WAITALL receive.
        writer.shutdown(Shutdown::Write).unwrap();
    });

    let started = Instant::now();
    let mut buf = vec![0u8; BUFFER];
    // SAFETY: `buf` is valid for `BUFFER` bytes for the whole call.
    let got = unsafe {
        libc::recv(
            pair.server.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            BUFFER,
            libc::MSG_WAITALL,
        )
    };
    sender.join().unwrap();
    let total = (WRITES * WRITE_SIZE) as isize;
    // The scenario itself: one receive call spanned every write (else the trap was not set).
    assert_eq!(got, total, "one recv should return the whole dribble");
    assert!(started.elapsed() >= Duration::from_millis(2 * WRITES as u64));

    let sockets = program.sockets().unwrap();
    let find = |addrs| support::counters_of(&sockets, addrs);
    let reader = find(pair.server_addrs());
    let writer = find(pair.client_addrs());
    let total = total as u64;
    assert_eq!(
        reader.rx_bytes,
        total,
        "reader rx ({} rung)",
        program.rung()
    );
    assert_eq!(
        writer.tx_bytes,
        total,
        "writer tx ({} rung)",
        program.rung()
    );
    assert_eq!((reader.tx_bytes, writer.rx_bytes), (0, 0));

    print_program_stats(program.rung());
}

/// Under `cargo xtask vm-test` (which sets `FLOW_PROG_STATS` and enables
/// `kernel.bpf_stats_enabled`): one line per program this process loaded, with the kernel's own
/// run count and run time, i.e. the cost per event of the rung under test.
fn print_program_stats(rung: flow_user::ebpf::Rung) {
    if std::env::var_os("FLOW_PROG_STATS").is_none() {
        return;
    }
    // Names come from the kernel's list of every program, counters from our own fds' fdinfo
    // (the list alone would also show other processes' programs).
    let names: Vec<(u32, String)> = aya::programs::loaded_programs()
        .flatten()
        .map(|info| (info.id(), info.name_as_str().unwrap_or("?").to_string()))
        .collect();
    let Ok(fds) = std::fs::read_dir("/proc/self/fdinfo") else {
        return;
    };
    for fd in fds.flatten() {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
        };
        let (Some(id), Some(runs), Some(nanos)) =
            (field("prog_id:"), field("run_cnt:"), field("run_time_ns:"))
        else {
            continue;
        };
        let name = names
            .iter()
            .find(|(i, _)| u64::from(*i) == id)
            .map_or("?", |(_, n)| n.as_str());
        println!("@@flow-vm@@ stats rung={rung} prog={name} run_cnt={runs} run_time_ns={nanos}");
    }
}
