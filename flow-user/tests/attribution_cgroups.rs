//! Attribution on real cgroups: workers moved into cgroup v2 directories named like Docker's,
//! a Kubernetes pod's containerd container and a systemd service are attributed from their
//! cgroup id (the directory's inode, what `bpf_get_current_cgroup_id()` returns) and from
//! `/proc/<pid>/cgroup`. Needs root (mkdir under the cgroup2 mount, writes to `cgroup.procs`);
//! under `CI` a missing privilege fails the test instead of skipping it. Everything created is
//! removed at the end, also when an assertion fails (a guard kills and reaps the workers, then
//! removes the directories).

use std::{
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use flow_user::attribution::{Attributor, CgroupResolver, HostFiles, Runtime};

/// False (and says so) when this cannot run here: not root and not CI. Under CI the test runs
/// whatever the privileges, and fails where they are missing.
fn may_run() -> bool {
    if unsafe { libc::geteuid() } != 0 && std::env::var_os("CI").is_none() {
        eprintln!("NOT RUN: this test creates cgroups and needs root (CI runs it)");
        return false;
    }
    true
}

/// What the test created: workers to kill and reap, directories to remove (deepest last in the
/// list, removed first).
#[derive(Default)]
struct Cleanup {
    workers: Vec<Child>,
    dirs: Vec<PathBuf>,
}

impl Cleanup {
    fn mkdir(&mut self, dir: PathBuf) -> PathBuf {
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.dirs.push(dir.clone());
        dir
    }

    /// A `sleep` moved into cgroup `dir`.
    fn worker_in(&mut self, dir: &Path) -> u32 {
        let child = Command::new("sleep")
            .arg("120")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        self.workers.push(child);
        fs::write(dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", dir.display()));
        pid
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // A cgroup can only be removed once empty: the workers go first.
        for worker in &mut self.workers {
            let _ = worker.kill();
            let _ = worker.wait();
        }
        for dir in self.dirs.iter().rev() {
            for attempt in 0.. {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    // Still populated for a moment after the last task exits.
                    Err(_) if attempt < 50 => thread::sleep(Duration::from_millis(20)),
                    Err(e) => {
                        eprintln!("could not remove {}: {e}", dir.display());
                        break;
                    }
                }
            }
        }
    }
}

/// A fixture host root (the names Docker and the kubelet would keep), removed on drop.
struct Fixture(PathBuf);

impl Fixture {
    fn write(&self, relative: &str, contents: &str) {
        let file = self.0.join(relative);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, contents).unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// 64 hex digits, different per run and per `salt`.
fn hex64(salt: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x =
        nanos ^ (u64::from(std::process::id()) << 32) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..4)
        .map(|_| {
            // xorshift64*: enough to make distinct ids.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            format!("{:016x}", x.wrapping_mul(0x2545_f491_4f6c_dd1d))
        })
        .collect()
}

fn ino(dir: &Path) -> u64 {
    fs::metadata(dir).unwrap().ino()
}

#[test]
fn workers_in_container_pod_and_service_cgroups_are_attributed() {
    if !may_run() {
        return;
    }
    let mut resolver = CgroupResolver::new();
    let mount = resolver
        .mount()
        .expect("a cgroup2 mount in /proc/self/mountinfo")
        .clone();
    assert_eq!(
        mount.cgroup_root, "/",
        "the whole cgroup2 hierarchy is mounted"
    );
    // A walk before the cgroups exist: they must be found by a rescan later.
    resolver.set_rescan_interval(Duration::ZERO);
    resolver.rescan();

    let pid = std::process::id();
    let docker_id = hex64(1);
    let containerd_id = hex64(2);
    let uid_hex = hex64(3);
    let pod_uid = format!(
        "{}-{}-{}-{}-{}",
        &uid_hex[0..8],
        &uid_hex[8..12],
        &uid_hex[12..16],
        &uid_hex[16..20],
        &uid_hex[20..32]
    );
    let top = format!("flowtest-{pid}");
    let docker_rel = format!("/{top}/docker-{docker_id}.scope");
    let pod_rel = format!(
        "/{top}/kubepods-besteffort-pod{}.slice",
        pod_uid.replace('-', "_")
    );
    let containerd_rel = format!("{pod_rel}/cri-containerd-{containerd_id}.scope");
    let service_rel = format!("/{top}/flowtest.service");

    let fixture = Fixture(std::env::temp_dir().join(format!("flow-attribution-cgroups-{pid}")));
    let _ = fs::remove_dir_all(&fixture.0);
    fixture.write(
        &format!("var/lib/docker/containers/{docker_id}/config.v2.json"),
        r#"{"ID":"x","Name":"/flowtest-web","State":{"Running":true}}"#,
    );
    fs::create_dir_all(
        fixture
            .0
            .join(format!("var/log/pods/flowtest-ns_flowtest-pod_{pod_uid}")),
    )
    .unwrap();

    let mut cleanup = Cleanup::default();
    let under = |rel: &str| mount.dir.join(rel.trim_start_matches('/'));
    cleanup.mkdir(under(&format!("/{top}")));
    let docker_dir = cleanup.mkdir(under(&docker_rel));
    cleanup.mkdir(under(&pod_rel));
    let containerd_dir = cleanup.mkdir(under(&containerd_rel));
    let service_dir = cleanup.mkdir(under(&service_rel));
    let docker_pid = cleanup.worker_in(&docker_dir);
    let containerd_pid = cleanup.worker_in(&containerd_dir);
    let service_pid = cleanup.worker_in(&service_dir);

    let mut attributor = Attributor::new(CgroupResolver::new(), HostFiles::new(&fixture.0));
    for (dir, rel, worker) in [
        (&docker_dir, &docker_rel, docker_pid),
        (&containerd_dir, &containerd_rel, containerd_pid),
        (&service_dir, &service_rel, service_pid),
    ] {
        let id = ino(dir);
        assert_eq!(
            resolver.resolve(id).as_deref(),
            Some(rel.as_str()),
            "cgroup id {id} → path"
        );
        assert_eq!(
            resolver.from_proc(worker).as_deref(),
            Some(rel.as_str()),
            "/proc/{worker}/cgroup"
        );
        let by_id = attributor.attribute_id(id).expect("attribution by id");
        let by_pid = attributor
            .attribute_pid(worker)
            .expect("attribution by pid");
        assert_eq!(by_id, by_pid);
        assert_eq!(by_id.cgroup.as_deref(), Some(rel.as_str()));
    }

    let docker = attributor.attribute_pid(docker_pid).unwrap();
    let container = docker.container.as_ref().expect("a docker container");
    assert_eq!(container.runtime, Runtime::Docker);
    assert_eq!(&*container.id, docker_id);
    assert_eq!(container.name.as_deref(), Some("flowtest-web"));
    assert!(container.pod.is_none());
    assert_eq!(docker.service, None);

    let pod = attributor.attribute_pid(containerd_pid).unwrap();
    let container = pod.container.as_ref().expect("a containerd container");
    assert_eq!(container.runtime, Runtime::Containerd);
    assert_eq!(&*container.id, containerd_id);
    let in_pod = container.pod.as_ref().expect("its pod");
    assert_eq!(&*in_pod.uid, pod_uid);
    assert_eq!(in_pod.namespace.as_deref(), Some("flowtest-ns"));
    assert_eq!(in_pod.name.as_deref(), Some("flowtest-pod"));
    assert_eq!(pod.service, None);

    let service = attributor.attribute_pid(service_pid).unwrap();
    assert_eq!(service.container, None);
    assert_eq!(service.service.as_deref(), Some("flowtest.service"));
    let json = serde_json::to_value(&*docker).unwrap();
    assert_eq!(json["container"]["runtime"], "docker");
    assert_eq!(json["container"]["name"], "flowtest-web");
    assert_eq!(json["container"]["pod"], serde_json::Value::Null);

    // Cleanup happens in the guard; afterwards the ids no longer resolve.
    let ids: Vec<u64> = [&docker_dir, &containerd_dir, &service_dir]
        .iter()
        .map(|d| ino(d))
        .collect();
    let top_dir = under(&format!("/{top}"));
    drop(cleanup);
    assert!(!top_dir.exists(), "{} removed", top_dir.display());
    resolver.rescan();
    for id in ids {
        assert_eq!(resolver.resolve(id), None);
    }
}
