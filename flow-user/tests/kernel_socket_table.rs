//! The socket iterator (socket-local storage rungs) reads the same socket table as
//! `/proc/net/tcp{,6}` — state, queues, uid, inode — plus segment counts and each socket's
//! entry, in one pass. Checked socket by socket against the kernel's own text tables.

mod support;

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    thread,
    time::Duration,
};

use flow_user::{
    ebpf::{LoadOptions, Rung, Store, TableRow},
    model::TcpState,
    procfs::read_tcp_tables,
};
use support::{load, Pair};

type Addrs = (SocketAddr, SocketAddr);

fn table_rows(table: &[TableRow], port: u16) -> HashMap<Addrs, TableRow> {
    table
        .iter()
        .filter_map(|row| Some((support::tuple_addrs(&row.socket.tuple)?, *row)))
        .filter(|((l, r), _)| l.port() == port || r.port() == port)
        .collect()
}

fn same_table_as_proc(bind: &str) {
    // The host's socket-local rung unless the VM matrix forces one.
    let rung = support::options().rung.unwrap_or(Rung::TpBtf);
    let Some(mut program) = load(&LoadOptions {
        rung: Some(rung),
        ..LoadOptions::default()
    }) else {
        return;
    };
    if rung.store() == Store::Hashed {
        let err = program
            .socket_table()
            .expect_err("LRU hash rungs have no iterator");
        assert!(format!("{err:#}").contains(rung.name()));
        return;
    }
    let listener = TcpListener::bind(bind).unwrap();
    let port = listener.local_addr().unwrap().port();
    // One pair with 5,000 unread bytes on the server, one that moved 300 bytes each way, and
    // one closed by the client first: its client end waits in TIME_WAIT.
    let unread = Pair::open(&listener);
    (&unread.client).write_all(&[7; 5_000]).unwrap();
    let both = Pair::open(&listener);
    support::transfer(&both.client, &both.server, &[300]);
    support::transfer(&both.server, &both.client, &[300]);
    let closed = Pair::open(&listener);
    drop(closed.client);
    let mut rest = Vec::new();
    (&closed.server).read_to_end(&mut rest).unwrap();
    drop(closed.server);

    // Until the unread bytes are all queued (loopback delivers within microseconds).
    let mut table = HashMap::new();
    for _ in 0..100 {
        table = table_rows(&program.socket_table().unwrap(), port);
        if table.get(&unread.server_addrs()).map(|r| r.socket.rx_queue) == Some(5_000) {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let proc_rows: HashMap<Addrs, _> = read_tcp_tables(Path::new("/proc"))
        .unwrap()
        .rows
        .into_iter()
        .filter(|r| r.local.port() == port || r.remote.port() == port)
        .map(|r| ((r.local, r.remote), r))
        .collect();
    eprintln!(
        "{bind}: {} sockets in the iterator, {} in /proc",
        table.len(),
        proc_rows.len()
    );
    assert_eq!(
        table.keys().collect::<std::collections::BTreeSet<_>>(),
        proc_rows.keys().collect(),
        "the same sockets"
    );
    for (addrs, row) in &proc_rows {
        let seen = &table[addrs].socket;
        let state = TcpState::from_kernel(seen.state as u8);
        assert_eq!(state, row.state, "{addrs:?}");
        assert_eq!(u64::from(seen.rx_queue), row.rx_queue, "{addrs:?} rx_queue");
        assert_eq!(u64::from(seen.tx_queue), row.tx_queue, "{addrs:?} tx_queue");
        assert_eq!(seen.uid, row.uid, "{addrs:?} uid");
        assert_eq!(seen.inode, row.inode, "{addrs:?} inode");
    }
    let at = |addrs: Addrs| &table[&addrs];
    assert_eq!(at(unread.server_addrs()).socket.rx_queue, 5_000);
    assert_eq!(at(unread.client_addrs()).counters.unwrap().tx_bytes, 5_000);
    // Established connections get their entry before they move a byte.
    assert_eq!(
        at(unread.server_addrs())
            .counters
            .map(|c| (c.tx_bytes, c.rx_bytes)),
        Some((0, 0)),
        "read nothing yet"
    );
    for end in [both.client_addrs(), both.server_addrs()] {
        let row = at(end);
        let counters = row.counters.expect("moved bytes: has an entry");
        assert_eq!((counters.tx_bytes, counters.rx_bytes), (300, 300));
        assert!(
            row.socket.segs_in >= 2 && row.socket.segs_out >= 2,
            "{row:?}"
        );
        assert_ne!(row.socket.cookie, 0);
    }
    assert!(
        table.values().any(|r| r.socket.state == 6),
        "the closed pair's TIME_WAIT end is listed"
    );
    drop((unread, both));
    let _ = TcpStream::connect(listener.local_addr().unwrap());
}

#[test]
fn socket_table_matches_proc_ipv4() {
    same_table_as_proc("127.0.0.1:0");
}

#[test]
fn socket_table_matches_proc_ipv6() {
    same_table_as_proc("[::1]:0");
}
