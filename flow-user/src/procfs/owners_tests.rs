use std::{
    fs,
    os::unix::{fs::symlink, fs::MetadataExt, io::AsRawFd},
    path::Path,
};

use super::*;
use crate::testutil::TempDir;

/// A fake `/proc/<pid>` with `comm` and fds linking to `targets` (which need not exist).
fn process(root: &Path, pid: u32, comm: &str, targets: &[&str]) {
    let dir = root.join(pid.to_string());
    fs::create_dir_all(dir.join("fd")).unwrap();
    fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
    for (fd, target) in targets.iter().enumerate() {
        symlink(target, dir.join("fd").join(fd.to_string())).unwrap();
    }
}

fn owner(pid: u32, process: &str) -> Owner {
    Owner {
        pid,
        process: process.into(),
    }
}

fn fake_proc() -> TempDir {
    let dir = TempDir::new("owners");
    let root = dir.path();
    process(root, 1, "init", &["/dev/null", "socket:[500]"]);
    process(
        root,
        42,
        "nginx",
        &["/dev/null", "pipe:[77]", "socket:[1001]", "socket:[1002]"],
    );
    process(
        root,
        43,
        "Web Content",
        &[
            "socket:[2001]",
            "socket:[]",
            "socket:[x1]",
            "anon_inode:[eventfd]",
        ],
    );
    // A worker sharing its parent's listener: the lower pid wins.
    process(root, 44, "nginx-worker", &["socket:[1001]"]);
    // Not processes.
    fs::create_dir_all(root.join("net")).unwrap();
    fs::create_dir_all(root.join("+45/fd")).unwrap();
    symlink("socket:[3001]", root.join("+45/fd/0")).unwrap();
    dir
}

#[test]
fn resolves_fake_tree() {
    let dir = fake_proc();
    let mut cache = OwnerCache::new(dir.path().to_owned());
    let found = cache.resolve([1001, 1002, 2001, 500, 0, 3001, 77]);
    let expected: HashMap<u64, Owner> = [
        (1001, owner(42, "nginx")),
        (1002, owner(42, "nginx")),
        (2001, owner(43, "Web Content")),
        (500, owner(1, "init")),
    ]
    .into();
    assert_eq!(found, expected);
    assert_eq!(cache.scans, 1);
    assert_eq!(cache.unreadable_processes(), 0);
}

#[test]
fn rescans_only_for_unseen_inodes_or_dead_owners() {
    let dir = fake_proc();
    let root = dir.path();
    let mut cache = OwnerCache::new(root.to_owned());

    assert_eq!(cache.resolve([1001]).len(), 1);
    assert_eq!(cache.scans, 1);
    // 2001 was seen during the first scan; inode 0 never scans.
    assert_eq!(cache.resolve([1001, 2001, 0]).len(), 2);
    assert_eq!(cache.resolve(Vec::new()).len(), 0);
    assert_eq!(cache.scans, 1);

    // Unknown inode: one scan, then remembered as unknown.
    assert!(cache.resolve([9999]).is_empty());
    assert!(cache.resolve([9999, 1001]).contains_key(&1001));
    assert_eq!(cache.scans, 2);

    // A new process: its socket is found by one scan.
    process(root, 50, "sshd", &["socket:[3001]"]);
    assert_eq!(cache.resolve([3001, 9999])[&3001], owner(50, "sshd"));
    assert_eq!(cache.scans, 3);

    // The owner exited: rescan, and the socket is unowned.
    fs::remove_dir_all(root.join("43")).unwrap();
    assert!(cache.resolve([2001]).is_empty());
    assert_eq!(cache.scans, 4);
    assert!(cache.resolve([2001]).is_empty());
    assert_eq!(cache.scans, 4);
}

#[test]
fn unreadable_fd_dirs_are_skipped_and_counted() {
    let dir = fake_proc();
    // Tests run as root, which reads any mode; a non-directory `fd` fails the same way.
    fs::create_dir_all(dir.path().join("60")).unwrap();
    fs::write(dir.path().join("60/fd"), "").unwrap();
    let mut cache = OwnerCache::new(dir.path().to_owned());
    assert_eq!(cache.resolve([1002]).len(), 1);
    assert_eq!(cache.unreadable_processes(), 1);
}

#[test]
fn missing_proc_root_resolves_nothing() {
    let mut cache = OwnerCache::new("/nonexistent/proc".into());
    assert!(cache.resolve([1, 2, 3]).is_empty());
    assert_eq!(cache.unreadable_processes(), 0);
}

#[test]
fn parses_socket_links_only() {
    assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
    assert_eq!(
        socket_inode(b"socket:[18446744073709551615]"),
        Some(u64::MAX)
    );
    assert_eq!(socket_inode(b"socket:[18446744073709551616]"), None);
    assert_eq!(socket_inode(b"socket:[+1]"), None);
    assert_eq!(socket_inode(b"socket:[1"), None);
    assert_eq!(socket_inode(b"pipe:[1]"), None);
    assert_eq!(parse_pid(b"123"), Some(123));
    assert_eq!(parse_pid(b"self"), None);
    assert_eq!(parse_pid(b"+1"), None);
}

#[test]
fn resolves_own_listener_in_real_proc() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let inode = fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
        .unwrap()
        .ino();
    let comm = fs::read_to_string("/proc/self/comm").unwrap();
    let mut cache = OwnerCache::new("/proc".into());
    let found = cache.resolve([inode]);
    assert_eq!(
        found.get(&inode),
        Some(&owner(std::process::id(), comm.trim_end()))
    );
}
