use std::{fs, os::unix::fs::MetadataExt, sync::Arc, time::Duration};

use super::{
    cgroup::{cgroup_v2_line, find_cgroup2, CgroupResolver, ScanLimits},
    testutil::{TempDir, ID_A},
};

/// This host's mountinfo, shortened: a hybrid layout with cgroup2 at `/sys/fs/cgroup/unified`.
const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

fn ino(path: &std::path::Path) -> u64 {
    fs::metadata(path).unwrap().ino()
}

/// A fixture root: mountinfo naming `/sys/fs/cgroup/unified` and a small tree under it.
fn fixture() -> TempDir {
    let dir = TempDir::new("cgroup");
    dir.write("proc/self/mountinfo", HYBRID);
    let mount = "sys/fs/cgroup/unified";
    dir.write(&format!("{mount}/cgroup.procs"), "");
    dir.write(
        &format!("{mount}/system.slice/nginx.service/cgroup.procs"),
        "1\n",
    );
    dir.mkdir(&format!("{mount}/system.slice/docker-{ID_A}.scope"));
    dir.mkdir(&format!(
        "{mount}/user.slice/user-1000.slice/session-3.scope"
    ));
    dir
}

#[test]
fn mountinfo_cgroup2() {
    assert_eq!(
        find_cgroup2(HYBRID),
        Some(("/sys/fs/cgroup/unified".into(), "/".into()))
    );
    let unified = "25 1 0:22 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
    assert_eq!(
        find_cgroup2(unified),
        Some(("/sys/fs/cgroup".into(), "/".into()))
    );
    // Optional fields before the separator, escaped spaces, a subtree mounted before the whole.
    let both = "\
50 1 0:22 /docker/abc /mnt/sub\\040tree rw shared:1 master:2 - cgroup2 cgroup2 rw
51 1 0:22 / /mnt/whole rw - cgroup2 cgroup2 rw
";
    assert_eq!(find_cgroup2(both), Some(("/mnt/whole".into(), "/".into())));
    assert_eq!(
        find_cgroup2(both.lines().next().unwrap()),
        Some(("/mnt/sub tree".into(), "/docker/abc".into()))
    );
    for bad in [
        "",
        "garbage",
        "1 2 3 - cgroup2",
        "- cgroup2 x",
        "\\\\\\ - cgroup2",
    ] {
        let _ = find_cgroup2(bad);
    }
    assert_eq!(
        find_cgroup2(&HYBRID.replace("cgroup2 cgroup2", "ext4 x")),
        None
    );
}

#[test]
fn proc_cgroup_line() {
    let hybrid = "9:name=systemd:/\n4:memory:/x\n0::/system.slice/nginx.service\n";
    assert_eq!(cgroup_v2_line(hybrid), Some("/system.slice/nginx.service"));
    assert_eq!(cgroup_v2_line("0::/\n"), Some("/"));
    assert_eq!(cgroup_v2_line("0::/gone (deleted)\n"), Some("/gone"));
    assert_eq!(cgroup_v2_line("1:cpu:/\n"), None);
    assert_eq!(cgroup_v2_line(""), None);
    assert_eq!(cgroup_v2_line("0::\n"), None);
}

#[test]
fn resolves_directory_inodes_to_paths() {
    let dir = fixture();
    let mount = dir.path().join("sys/fs/cgroup/unified");
    let mut resolver = CgroupResolver::with_root(dir.path());
    assert_eq!(resolver.mount().unwrap().dir, mount);

    let nginx = ino(&mount.join("system.slice/nginx.service"));
    let docker = ino(&mount.join(format!("system.slice/docker-{ID_A}.scope")));
    let session = ino(&mount.join("user.slice/user-1000.slice/session-3.scope"));
    assert_eq!(resolver.resolve(ino(&mount)).as_deref(), Some("/"));
    assert_eq!(
        resolver.resolve(nginx).as_deref(),
        Some("/system.slice/nginx.service")
    );
    assert_eq!(
        resolver.resolve(docker).as_deref(),
        Some(format!("/system.slice/docker-{ID_A}.scope").as_str())
    );
    assert_eq!(
        resolver.resolve(session).as_deref(),
        Some("/user.slice/user-1000.slice/session-3.scope")
    );
    // Files are not cgroups.
    let procs = ino(&mount.join("system.slice/nginx.service/cgroup.procs"));
    assert_eq!(resolver.resolve(procs), None);
    assert_eq!(resolver.last_scan().cgroups, 7);
    assert!(!resolver.last_scan().truncated);
}

#[test]
fn unknown_ids_rescan_at_most_once_per_interval() {
    let dir = fixture();
    let mount = dir.path().join("sys/fs/cgroup/unified");
    let mut resolver = CgroupResolver::with_root(dir.path());
    resolver.set_rescan_interval(Duration::from_millis(200));
    let nginx = ino(&mount.join("system.slice/nginx.service"));
    let first = resolver.resolve(nginx).unwrap();

    // A cgroup created after the walk: unknown until the interval has passed.
    let late = dir.mkdir("sys/fs/cgroup/unified/system.slice/late.service");
    let late = ino(&late);
    assert_eq!(resolver.resolve(late), None);
    assert_eq!(resolver.resolve(u64::MAX), None);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(
        resolver.resolve(late).as_deref(),
        Some("/system.slice/late.service")
    );
    // The walk kept the paths it already handed out (connections hold them).
    let again = resolver.resolve(nginx).unwrap();
    assert!(Arc::ptr_eq(&first, &again));

    // A removed cgroup is forgotten by the next walk.
    fs::remove_dir(mount.join("system.slice/late.service")).unwrap();
    resolver.rescan();
    assert_eq!(resolver.resolve(late), None);
}

#[test]
fn walks_are_bounded() {
    let dir = fixture();
    let deep = (0..10)
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join("/");
    let deepest = dir.mkdir(&format!("sys/fs/cgroup/unified/{deep}"));
    for i in 0..50 {
        dir.mkdir(&format!("sys/fs/cgroup/unified/wide/c{i}"));
    }
    let mut resolver = CgroupResolver::with_root(dir.path());
    resolver.set_limits(ScanLimits {
        max_depth: 4,
        max_entries: 1_000,
    });
    let report = resolver.rescan();
    assert!(report.truncated);
    assert_eq!(resolver.resolve(ino(&deepest)), None);
    let level4 = dir.path().join("sys/fs/cgroup/unified/d0/d1/d2/d3");
    assert_eq!(
        resolver.resolve(ino(&level4)).as_deref(),
        Some("/d0/d1/d2/d3")
    );

    resolver.set_limits(ScanLimits {
        max_depth: 32,
        max_entries: 20,
    });
    let report = resolver.rescan();
    assert!(report.truncated);
    assert_eq!(report.cgroups, 20);
    assert_eq!(resolver.known(), 20);
}

#[test]
fn a_subtree_mount_prefixes_its_root() {
    let dir = TempDir::new("cgroup-subtree");
    dir.write(
        "proc/self/mountinfo",
        "50 1 0:22 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
    );
    let child = dir.mkdir(&format!("sys/fs/cgroup/{ID_A}"));
    let mut resolver = CgroupResolver::with_root(dir.path());
    assert_eq!(
        resolver.resolve(ino(&child)).as_deref(),
        Some(format!("/kubepods/pod1/{ID_A}").as_str())
    );
}

#[test]
fn no_cgroup2_mount_resolves_nothing() {
    let dir = TempDir::new("cgroup-none");
    dir.write(
        "proc/self/mountinfo",
        HYBRID.replace("cgroup2 cgroup2", "ext4 x"),
    );
    let mut resolver = CgroupResolver::with_root(dir.path());
    assert!(resolver.mount().is_none());
    assert_eq!(resolver.resolve(1), None);
    let mut resolver = CgroupResolver::with_root("/nonexistent/flow/root");
    assert_eq!(resolver.resolve(1), None);
    assert_eq!(resolver.from_proc(1), None);
}

#[test]
fn from_proc_reads_the_v2_line() {
    let dir = fixture();
    dir.write(
        "proc/4242/cgroup",
        format!("9:name=systemd:/\n0::/system.slice/docker-{ID_A}.scope\n"),
    );
    dir.write("proc/4243/cgroup", "1:cpu:/\n");
    let resolver = CgroupResolver::with_root(dir.path());
    assert_eq!(
        resolver.from_proc(4242).as_deref(),
        Some(format!("/system.slice/docker-{ID_A}.scope").as_str())
    );
    assert_eq!(resolver.from_proc(4243), None);
    assert_eq!(resolver.from_proc(4244), None);
}

#[test]
fn this_hosts_cgroup_of_this_process() {
    // The real /proc: whatever the layout, our own line resolves to a path.
    let resolver = CgroupResolver::new();
    if let Some(path) = resolver.from_proc(std::process::id()) {
        assert!(path.starts_with('/'), "{path}");
    }
}
