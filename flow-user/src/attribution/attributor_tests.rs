use std::{fs, os::unix::fs::MetadataExt, sync::Arc, time::Duration};

use super::{
    testutil::{TempDir, ID_A, ID_B, POD_UID},
    Attribution, Attributor, CgroupResolver, HostFiles, Runtime,
};

/// A host root with Docker, Podman and kubelet files and a cgroup tree.
fn host() -> TempDir {
    let dir = TempDir::new("attributor");
    dir.write(
        "proc/self/mountinfo",
        "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n",
    );
    dir.write(
        &format!("var/lib/docker/containers/{ID_A}/config.v2.json"),
        r#"{"Name":"/web"}"#,
    );
    dir.write(
        "var/lib/containers/storage/overlay-containers/containers.json",
        format!(r#"[{{"id":"{ID_B}","names":["db"]}}]"#),
    );
    dir.mkdir(&format!("var/log/pods/shop_cart-7d9f_{POD_UID}"));
    dir
}

fn attributor(dir: &TempDir) -> Attributor {
    Attributor::new(
        CgroupResolver::with_root(dir.path()),
        HostFiles::new(dir.path()),
    )
}

fn json(attribution: &Attribution) -> serde_json::Value {
    serde_json::to_value(attribution).unwrap()
}

#[test]
fn docker_container_with_its_name() {
    let dir = host();
    let mut attributor = attributor(&dir);
    let path = format!("/system.slice/docker-{ID_A}.scope");
    let got = attributor.attribute(&path);
    assert_eq!(
        json(&got),
        serde_json::json!({
            "cgroup": path,
            "container": {"runtime": "docker", "id": ID_A, "name": "web", "pod": null},
            "service": null,
        })
    );
}

#[test]
fn kubernetes_pod_with_namespace_and_name() {
    let dir = host();
    let mut attributor = attributor(&dir);
    let pod_ = POD_UID.replace('-', "_");
    let path = format!(
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_}.slice/cri-containerd-{}.scope",
        "c".repeat(64)
    );
    let got = attributor.attribute(&path);
    assert_eq!(
        json(&got)["container"],
        serde_json::json!({
            "runtime": "containerd", "id": "c".repeat(64), "name": null,
            "pod": {"uid": POD_UID, "namespace": "shop", "name": "cart-7d9f"},
        })
    );
    // Another container of the same pod points at the same pod.
    let sibling = attributor.attribute(&path.replace(&"c".repeat(64), &"d".repeat(64)));
    let (a, b) = (
        got.container.as_ref().unwrap(),
        sibling.container.as_ref().unwrap(),
    );
    assert!(Arc::ptr_eq(
        a.pod.as_ref().unwrap(),
        b.pod.as_ref().unwrap()
    ));
}

#[test]
fn cgroupfs_pod_container_is_dockers_when_docker_keeps_it() {
    let dir = host();
    let mut attributor = attributor(&dir);
    let docker = attributor.attribute(&format!("/kubepods/besteffort/pod{POD_UID}/{ID_A}"));
    let docker = docker.container.as_ref().unwrap();
    assert_eq!(
        (docker.runtime, docker.name.as_deref()),
        (Runtime::Docker, Some("web"))
    );
    let other = attributor.attribute(&format!(
        "/kubepods/besteffort/pod{POD_UID}/{}",
        "e".repeat(64)
    ));
    assert_eq!(
        other.container.as_ref().unwrap().runtime,
        Runtime::Containerd
    );
}

#[test]
fn podman_container_and_its_inner_cgroup_share_one_container() {
    let dir = host();
    let mut attributor = attributor(&dir);
    let outer = attributor.attribute(&format!("/machine.slice/libpod-{ID_B}.scope"));
    let inner = attributor.attribute(&format!("/machine.slice/libpod-{ID_B}.scope/container"));
    let container = outer.container.as_ref().unwrap();
    assert_eq!(container.runtime, Runtime::Podman);
    assert_eq!(container.name.as_deref(), Some("db"));
    assert!(Arc::ptr_eq(container, inner.container.as_ref().unwrap()));
}

#[test]
fn service_and_nothing() {
    let dir = host();
    let mut attributor = attributor(&dir);
    assert_eq!(
        json(&attributor.attribute("/system.slice/nginx.service")),
        serde_json::json!({"cgroup": "/system.slice/nginx.service", "container": null, "service": "nginx.service"})
    );
    let session = attributor.attribute("/user.slice/user-0.slice/session-1.scope");
    assert!(session.container.is_none() && session.service.is_none());
    assert!(!session.is_empty());
    assert!(Attribution::default().is_empty());
    assert_eq!(
        json(&Attribution::default()),
        serde_json::json!({"cgroup": null, "container": null, "service": null})
    );
}

#[test]
fn one_arc_per_path() {
    let dir = host();
    let mut attributor = attributor(&dir);
    let path = format!("/system.slice/docker-{ID_A}.scope");
    let first = attributor.attribute(&path);
    let second = attributor.attribute(&path);
    assert!(Arc::ptr_eq(&first, &second));
}

#[test]
fn missing_names_are_looked_up_again_later() {
    let dir = host();
    let mut attributor = attributor(&dir);
    attributor.files().set_retry(Duration::from_millis(50));
    let id = "a".repeat(64);
    let path = format!("/system.slice/docker-{id}.scope");
    assert_eq!(
        attributor.attribute(&path).container.as_ref().unwrap().name,
        None
    );
    dir.write(
        &format!("var/lib/docker/containers/{id}/config.v2.json"),
        r#"{"Name":"/late"}"#,
    );
    std::thread::sleep(Duration::from_millis(80));
    let got = attributor.attribute(&path);
    assert_eq!(
        got.container.as_ref().unwrap().name.as_deref(),
        Some("late")
    );
    // Complete now: kept.
    assert!(Arc::ptr_eq(&got, &attributor.attribute(&path)));
}

#[test]
fn by_id_and_by_pid() {
    let dir = host();
    let scope = dir.mkdir(&format!("sys/fs/cgroup/system.slice/docker-{ID_A}.scope"));
    dir.write(
        "proc/77/cgroup",
        format!("0::/system.slice/docker-{ID_A}.scope\n"),
    );
    let mut attributor = attributor(&dir);
    let id = fs::metadata(&scope).unwrap().ino();
    let by_id = attributor.attribute_id(id).unwrap();
    let by_pid = attributor.attribute_pid(77).unwrap();
    assert!(Arc::ptr_eq(&by_id, &by_pid));
    assert_eq!(
        by_id.container.as_ref().unwrap().name.as_deref(),
        Some("web")
    );
    assert!(attributor.attribute_pid(78).is_none());
    assert!(attributor.attribute_id(u64::MAX).is_none());
}
