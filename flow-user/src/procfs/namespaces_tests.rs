use std::{fs, os::unix::fs::MetadataExt, path::Path};

use super::*;
use crate::{model::TcpState, testutil::TempDir};

fn row(local: &str, remote: &str, inode: u64) -> TcpRow {
    TcpRow {
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        state: TcpState::Established,
        tx_queue: 0,
        rx_queue: 0,
        uid: 0,
        inode,
    }
}

fn info(local: &str, remote: &str, cookie: u64, sent: u64, received: u64) -> TcpInfoRow {
    TcpInfoRow {
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        inode: 0,
        uid: 0,
        cookie,
        state: TcpState::Established,
        bytes_acked: 0,
        bytes_received: received,
        bytes_sent: sent,
        bytes_retrans: 0,
        segs_in: 1,
        segs_out: 1,
    }
}

fn namespace(netns: u64, rows: Vec<TcpRow>, diag: Option<Vec<TcpInfoRow>>) -> NamespaceRead {
    NamespaceRead {
        netns: Some(netns),
        tables: TcpTables {
            rows,
            malformed: Vec::new(),
        },
        diag,
    }
}

const A: &str = "127.0.0.1:47001";
const B: &str = "127.0.0.1:47002";

#[test]
fn the_same_four_tuple_in_two_namespaces_joins_to_each_namespace_s_own_counters() {
    let namespaces = [
        namespace(
            100,
            vec![row(B, A, 11), row(A, B, 12)],
            Some(vec![info(A, B, 0xa1, 10, 20), info(B, A, 0xa2, 20, 10)]),
        ),
        namespace(
            200,
            vec![row(B, A, 21), row(A, B, 22)],
            Some(vec![info(B, A, 0xb2, 40, 30), info(A, B, 0xb1, 30, 40)]),
        ),
    ];
    let joined = join(&namespaces);
    let found: Vec<_> = joined
        .iter()
        .map(|j| {
            (
                j.netns,
                j.row.inode,
                j.info.map(|i| i.cookie),
                j.info.map(|i| i.bytes_sent),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (Some(100), 11, Some(0xa2), Some(20)),
            (Some(100), 12, Some(0xa1), Some(10)),
            (Some(200), 21, Some(0xb2), Some(40)),
            (Some(200), 22, Some(0xb1), Some(30)),
        ]
    );
}

#[test]
fn a_namespace_without_counters_joins_to_none_not_to_another_namespace_s() {
    let namespaces = [
        namespace(
            100,
            vec![row(A, B, 11)],
            Some(vec![info(A, B, 0xa1, 10, 20)]),
        ),
        namespace(200, vec![row(A, B, 21)], None),
    ];
    let joined = join(&namespaces);
    assert_eq!(joined.len(), 2);
    assert_eq!(joined[0].info.map(|i| i.cookie), Some(0xa1));
    assert_eq!(joined[1].netns, Some(200));
    assert_eq!(joined[1].info, None, "counters unknown, not borrowed");
}

#[test]
fn join_keys_differ_by_namespace_alone() {
    let key = |netns| JoinKey {
        netns,
        local: A.parse().unwrap(),
        remote: B.parse().unwrap(),
    };
    assert_ne!(key(Some(1)), key(Some(2)));
    assert_ne!(key(Some(1)), key(None));
    assert_eq!(key(Some(1)), key(Some(1)));
}

#[test]
fn notice_wording() {
    let notice = |counters_unknown, not_listed, hidden_processes| {
        Unreadable {
            counters_unknown,
            not_listed,
            hidden_processes,
        }
        .notice()
    };
    assert_eq!(notice(0, 0, 0), None);
    assert_eq!(
        notice(1, 0, 0).unwrap(),
        "1 network namespace not readable without CAP_SYS_ADMIN (counters unknown there)"
    );
    assert_eq!(
        notice(0, 2, 0).unwrap(),
        "2 network namespaces not readable without CAP_SYS_ADMIN (counters unknown there; \
         connections of all not listed: no process of ours in them)"
    );
    assert_eq!(
        notice(2, 1, 0).unwrap(),
        "3 network namespaces not readable without CAP_SYS_ADMIN (counters unknown there; \
         connections of 1 not listed: no process of ours in it)"
    );
    assert_eq!(
        notice(0, 0, 1).unwrap(),
        "network namespace of 1 process not visible (permission denied)"
    );
    assert_eq!(
        notice(3, 0, 57).unwrap(),
        "3 network namespaces not readable without CAP_SYS_ADMIN (counters unknown there); \
         network namespace of 57 processes not visible (permission denied)"
    );
    for n in [notice(3, 2, 57), notice(1, 0, 0)] {
        assert!(!n.unwrap().contains('\n'), "one line");
    }
}

#[test]
fn namespace_paths_of_processes_lead_to_their_proc_dir() {
    let proc_root = Path::new("/proc");
    assert_eq!(
        pid_dir(proc_root, Path::new("/proc/4242/ns/net")),
        Some(PathBuf::from("/proc/4242"))
    );
    assert_eq!(pid_dir(proc_root, Path::new("/proc/self/ns/net")), None);
    assert_eq!(pid_dir(proc_root, Path::new("/run/netns/blue")), None);
    assert_eq!(pid_dir(proc_root, Path::new("/proc/4242/ns/mnt")), None);
    assert_eq!(pid_dir(proc_root, Path::new("/proc/4242")), None);
}

#[test]
fn cap_sys_admin_is_bit_21_of_the_effective_set() {
    let status = |eff: &str| {
        format!("Name:\tflow\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t{eff}\nCapBnd:\t000001ffffffffff\n")
    };
    assert!(has_cap_sys_admin(&status("000001ffffffffff")));
    assert!(has_cap_sys_admin(&status("0000000000200000")));
    assert!(!has_cap_sys_admin(&status("0000000000000000")));
    assert!(
        !has_cap_sys_admin(&status("00000000001fffff")),
        "bits 0-20 only"
    );
    assert!(!has_cap_sys_admin("Name:\tflow\n"));
}

const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when \
                          retrnsmt   uid  timeout inode\n";

/// A fake `/proc/<pid>` in a namespace of its own (`ns/net` a plain file: its inode is the
/// namespace's), with a `net/tcp` of one established socket.
fn process_in_namespace(root: &Path, pid: &str, inode: u64) -> u64 {
    let dir = root.join(pid);
    fs::create_dir_all(dir.join("ns")).unwrap();
    fs::create_dir_all(dir.join("net")).unwrap();
    fs::write(dir.join("ns/net"), pid).unwrap();
    fs::write(
        dir.join("net/tcp"),
        format!(
            "{TCP_HEADER}   0: 0100007F:B799 0100007F:B79A 01 00000000:00000000 00:00000000 \
             00000000  1000        0 {inode} 1 0000000000000000 20 0 0 10 -1\n"
        ),
    )
    .unwrap();
    fs::metadata(dir.join("ns/net")).unwrap().ino()
}

#[test]
fn without_cap_sys_admin_other_namespaces_are_listed_through_their_processes_without_counters() {
    let proc = TempDir::new("namespaces");
    let run = TempDir::new("namespaces-run");
    let root = proc.path();
    let own = process_in_namespace(root, "self", 1);
    std::os::unix::fs::symlink("self/net", root.join("net")).unwrap();
    fs::write(
        root.join("self/status"),
        "Name:\tflow\nCapEff:\t0000000000000000\n",
    )
    .unwrap();
    let first = process_in_namespace(root, "100", 1001);
    let second = process_in_namespace(root, "200", 2002);
    // A second process in the first namespace: read once.
    fs::create_dir_all(root.join("300/ns")).unwrap();
    fs::create_dir_all(root.join("300/net")).unwrap();
    fs::hard_link(root.join("100/ns/net"), root.join("300/ns/net")).unwrap();
    fs::copy(root.join("100/net/tcp"), root.join("300/net/tcp")).unwrap();
    // A mount with no process of ours in it.
    fs::write(run.path().join("blue"), "").unwrap();

    let mut reader = NamespaceReader::new(root.to_path_buf(), run.path().to_path_buf());
    assert!(!reader.may_enter());
    let expected = Unreadable {
        counters_unknown: 2,
        not_listed: 1,
        hidden_processes: 0,
    };
    assert_eq!(reader.expected(), expected);

    let read = reader.read().unwrap();
    assert_eq!(read.unreadable, expected);
    let netns: Vec<Option<u64>> = read.namespaces.iter().map(|n| n.netns).collect();
    assert_eq!(netns[0], Some(own), "own first");
    let mut others = netns[1..].to_vec();
    others.sort_unstable();
    let mut wanted = vec![Some(first), Some(second)];
    wanted.sort_unstable();
    assert_eq!(others, wanted, "each namespace once");
    assert!(read.namespaces[0].diag.is_some(), "own namespace: a dump");
    for ns in &read.namespaces[1..] {
        assert_eq!(ns.diag, None, "counters unknown");
        let inode = ns.tables.rows[0].inode;
        assert_eq!(
            Some(inode),
            [(first, 1001), (second, 2002)]
                .iter()
                .find(|(n, _)| Some(*n) == ns.netns)
                .map(|(_, i)| *i),
            "each namespace's own table"
        );
    }
}

#[test]
fn udp_tables_are_read_from_the_same_namespaces_the_same_way() {
    let proc = TempDir::new("namespaces-udp");
    let run = TempDir::new("namespaces-udp-run");
    let root = proc.path();
    let own = process_in_namespace(root, "self", 1);
    std::os::unix::fs::symlink("self/net", root.join("net")).unwrap();
    fs::write(
        root.join("self/status"),
        "Name:\tflow\nCapEff:\t0000000000000000\n",
    )
    .unwrap();
    let others = [("100", 1001), ("200", 2002)].map(|(pid, inode)| {
        let netns = process_in_namespace(root, pid, inode);
        (netns, inode)
    });
    for (pid, inode) in [("self", 1), ("100", 1001), ("200", 2002)] {
        fs::write(
            root.join(pid).join("net/udp"),
            format!(
                "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   \
                 uid  timeout inode ref pointer drops\n 1: 0100007F:18D1 00000000:0000 07 \
                 00000000:00000340 00:00000000 00000000     0        0 {inode} 2 \
                 0000000000000000 0\n"
            ),
        )
        .unwrap();
    }

    let mut reader = NamespaceReader::new(root.to_path_buf(), run.path().to_path_buf());
    let read = reader.read_udp().unwrap();
    assert_eq!(
        read.unreadable,
        Unreadable {
            counters_unknown: 2,
            ..Unreadable::default()
        }
    );
    assert_eq!(read.namespaces[0].netns, Some(own));
    assert_eq!(read.namespaces[0].tables.rows[0].inode, 1);
    let mut seen: Vec<(u64, u64)> = read.namespaces[1..]
        .iter()
        .map(|ns| {
            assert_eq!(ns.diag, None, "cookies unknown from outside");
            assert_eq!(ns.tables.rows[0].rx_queue, 832);
            (ns.netns.unwrap(), ns.tables.rows[0].inode)
        })
        .collect();
    seen.sort_unstable();
    let mut wanted = others.to_vec();
    wanted.sort_unstable();
    assert_eq!(seen, wanted, "each namespace's own table, once");
}
