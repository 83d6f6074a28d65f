use proptest::prelude::*;

use super::{
    model::Runtime,
    path::{is_container_id, parse_cgroup_path, CgroupFacts, ContainerRef},
    testutil::{ID_A, POD_UID},
};

/// (path, runtime, container id, pod uid, service); runtime `None` with an id: the path does not
/// say which runtime.
type Row = (
    String,
    Option<Option<Runtime>>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

fn expect(path: &str, facts: &CgroupFacts, row: &Row) {
    let (_, runtime, id, pod, service) = row;
    let want_container = id.map(|id| ContainerRef {
        runtime: runtime.expect("a runtime column for a container"),
        id: id.to_string(),
    });
    assert_eq!(facts.container, want_container, "container of {path}");
    assert_eq!(facts.pod_uid.as_deref(), *pod, "pod of {path}");
    assert_eq!(facts.service.as_deref(), *service, "service of {path}");
}

#[test]
fn real_world_paths() {
    let pod_ = POD_UID.replace('-', "_");
    let docker = Some(Some(Runtime::Docker));
    let containerd = Some(Some(Runtime::Containerd));
    let crio = Some(Some(Runtime::Crio));
    let podman = Some(Some(Runtime::Podman));
    let rows: Vec<Row> = vec![
        // Docker, systemd driver and cgroupfs driver.
        (format!("/system.slice/docker-{ID_A}.scope"), docker, Some(ID_A), None, None),
        (format!("/docker/{ID_A}"), docker, Some(ID_A), None, None),
        // Rootless Docker under the user's manager.
        (
            format!("/user.slice/user-1000.slice/user@1000.service/app.slice/docker.service/docker-{ID_A}.scope"),
            docker, Some(ID_A), None, None,
        ),
        // Kubernetes, systemd driver: the three QoS classes.
        (
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_}.slice/cri-containerd-{ID_A}.scope"),
            containerd, Some(ID_A), Some(POD_UID), None,
        ),
        (
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_}.slice/crio-{ID_A}.scope"),
            crio, Some(ID_A), Some(POD_UID), None,
        ),
        (
            format!("/kubepods.slice/kubepods-pod{pod_}.slice/docker-{ID_A}.scope"),
            docker, Some(ID_A), Some(POD_UID), None,
        ),
        // The pod level alone (its pause process' parent): a pod, no container.
        (
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_}.slice"),
            None, None, Some(POD_UID), None,
        ),
        // CRI-O's monitor process is not the container.
        (
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_}.slice/crio-conmon-{ID_A}.scope"),
            None, None, Some(POD_UID), None,
        ),
        // Kubernetes, cgroupfs driver: the runtime is not in the path.
        (format!("/kubepods/besteffort/pod{POD_UID}/{ID_A}"), Some(None), Some(ID_A), Some(POD_UID), None),
        (format!("/kubepods/burstable/pod{POD_UID}/{ID_A}"), Some(None), Some(ID_A), Some(POD_UID), None),
        (format!("/kubepods/pod{POD_UID}/{ID_A}"), Some(None), Some(ID_A), Some(POD_UID), None),
        (format!("/kubepods/besteffort/pod{POD_UID}/crio-{ID_A}"), crio, Some(ID_A), Some(POD_UID), None),
        // containerd with systemd names on cgroupfs (kind, k3s).
        (
            format!("/system.slice/containerd.service/kubepods-besteffort-pod{pod_}.slice:cri-containerd:{ID_A}"),
            containerd, Some(ID_A), Some(POD_UID), None,
        ),
        // A kind node (a Docker container) running a pod: the innermost container wins.
        (
            format!("/system.slice/docker-{ID_A}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{pod_}.slice/cri-containerd-{}.scope", "b".repeat(64)),
            containerd, Some(Box::leak("b".repeat(64).into_boxed_str())), Some(POD_UID), None,
        ),
        (
            format!("/docker/{ID_A}/kubepods/besteffort/pod{POD_UID}/{}", "c".repeat(64)),
            Some(None), Some(Box::leak("c".repeat(64).into_boxed_str())), Some(POD_UID), None,
        ),
        // Podman: systemd driver (with its inner `container` cgroup), rootless, cgroupfs.
        (format!("/machine.slice/libpod-{ID_A}.scope"), podman, Some(ID_A), None, None),
        (format!("/machine.slice/libpod-{ID_A}.scope/container"), podman, Some(ID_A), None, None),
        (
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID_A}.scope/container"),
            podman, Some(ID_A), None, None,
        ),
        (format!("/libpod_parent/libpod-{ID_A}"), podman, Some(ID_A), None, None),
        (format!("/machine.slice/libpod-conmon-{ID_A}.scope"), None, None, None, None),
        // Services.
        ("/system.slice/nginx.service".into(), None, None, None, Some("nginx.service")),
        ("/system.slice/docker.service".into(), None, None, None, Some("docker.service")),
        ("/system.slice/system-getty.slice/getty@tty1.service".into(), None, None, None, Some("getty@tty1.service")),
        // A service delegating sub-cgroups is still the service.
        ("/system.slice/nginx.service/worker".into(), None, None, None, Some("nginx.service")),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service".into(), None, None, None, Some("pipewire.service")),
        // Scopes and slices are not services: sessions, the user manager's init, PID 1.
        ("/user.slice/user-1000.slice/session-3.scope".into(), None, None, None, None),
        ("/user.slice/user-1000.slice/user@1000.service/init.scope".into(), None, None, None, None),
        ("/init.scope".into(), None, None, None, None),
        ("/system.slice".into(), None, None, None, None),
        ("/".into(), None, None, None, None),
        ("".into(), None, None, None, None),
        // A systemd service inside a Docker container is that service, in that container.
        (
            format!("/system.slice/docker-{ID_A}.scope/system.slice/nginx.service"),
            docker, Some(ID_A), None, Some("nginx.service"),
        ),
        // Near misses: not 64 hex digits, not under docker, no kubepods level.
        (format!("/system.slice/docker-{}.scope", &ID_A[..63]), None, None, None, None),
        (format!("/system.slice/docker-{}x.scope", &ID_A[..63]), None, None, None, None),
        ("/system.slice/docker-compose.scope".into(), None, None, None, None),
        (format!("/other/{ID_A}"), None, None, None, None),
        (format!("/pod{POD_UID}/{ID_A}"), None, None, None, None),
        (format!("/docker-{ID_A}"), None, None, None, None),
        (".service".into(), None, None, None, None),
        ("/kubepods-pod.slice".into(), None, None, None, None),
        ("/kubepods.slice/kubepods-podxyz.slice".into(), None, None, None, None),
    ];
    for row in &rows {
        let facts = parse_cgroup_path(&row.0);
        expect(&row.0, &facts, row);
    }
}

#[test]
fn container_ids_are_64_hex_digits() {
    assert!(is_container_id(ID_A));
    assert!(is_container_id(&ID_A.to_uppercase()));
    assert!(!is_container_id(&ID_A[1..]));
    assert!(!is_container_id(&format!("{ID_A}0")));
    assert!(!is_container_id(&"g".repeat(64)));
    // 64 bytes, but not 64 ASCII characters.
    assert!(!is_container_id(&"é".repeat(32)));
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(path in ".*") {
        let _ = parse_cgroup_path(&path);
    }

    #[test]
    fn path_like_strings_never_panic(
        parts in prop::collection::vec(
            prop_oneof![
                Just("docker".to_string()),
                Just("kubepods".to_string()),
                Just("kubepods.slice".to_string()),
                "[a-z_:.-]{0,12}",
                "(docker|crio|libpod|cri-containerd|kubepods-pod|pod)-?[0-9a-f_:-]{0,70}(\\.scope|\\.slice|\\.service)?",
                Just(ID_A.to_string()),
            ],
            0..8,
        )
    ) {
        let path = format!("/{}", parts.join("/"));
        let facts = parse_cgroup_path(&path);
        if let Some(container) = &facts.container {
            prop_assert!(is_container_id(&container.id));
            prop_assert!(path.contains(&container.id));
        }
        if let Some(service) = &facts.service {
            prop_assert!(service.ends_with(".service"));
            prop_assert!(path.contains(service.as_str()));
        }
    }

    /// Any well-formed Docker scope is found, wherever it sits.
    #[test]
    fn docker_scopes_are_found(id in "[0-9a-f]{64}", parent in "(/[a-z]{1,8}\\.slice){0,3}") {
        let facts = parse_cgroup_path(&format!("{parent}/docker-{id}.scope"));
        prop_assert_eq!(
            facts.container,
            Some(ContainerRef { runtime: Some(Runtime::Docker), id })
        );
        prop_assert_eq!(facts.service, None);
    }
}
