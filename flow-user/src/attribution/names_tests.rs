use std::time::Duration;

use super::{
    names::{docker_config_name, pod_log_dir, storage_names, HostFiles},
    testutil::{TempDir, ID_A, ID_B, POD_UID},
};

fn docker_config(dir: &TempDir, id: &str, contents: &str) {
    dir.write(
        &format!("var/lib/docker/containers/{id}/config.v2.json"),
        contents,
    );
}

#[test]
fn docker_name_without_its_slash() {
    let dir = TempDir::new("docker-name");
    docker_config(
        &dir,
        ID_A,
        &format!(r#"{{"ID":"{ID_A}","Name":"/web","State":{{"Running":true}}}}"#),
    );
    let mut files = HostFiles::new(dir.path());
    assert!(files.is_docker(ID_A));
    assert_eq!(files.docker_name(ID_A).as_deref(), Some("web"));
    // Cached: the file going away does not matter any more.
    std::fs::remove_dir_all(dir.path().join("var/lib/docker")).unwrap();
    assert_eq!(files.docker_name(ID_A).as_deref(), Some("web"));
    assert!(!files.is_docker(ID_A));
}

#[test]
fn docker_malformed_torn_or_missing_is_none() {
    let dir = TempDir::new("docker-bad");
    let whole = format!(r#"{{"ID":"{ID_A}","Name":"/web","Config":{{"Env":["A=1"]}}}}"#);
    let torn = &whole[..whole.len() / 2];
    docker_config(&dir, ID_A, torn);
    docker_config(&dir, ID_B, "not json at all \u{0}\u{1}");
    let mut files = HostFiles::new(dir.path());
    assert_eq!(files.docker_name(ID_A), None, "a torn file");
    assert_eq!(files.docker_name(ID_B), None, "garbage");
    assert_eq!(files.docker_name(&"e".repeat(64)), None, "no file");
    assert_eq!(files.docker_name("../../etc"), None, "not an id");
    assert_eq!(files.docker_name(""), None);

    // Names of the wrong type or empty are no names either.
    for bad in [
        r#"{"Name": 42}"#,
        r#"{"Name": ""}"#,
        r#"{"Name": "/"}"#,
        r#"[]"#,
        r#"{}"#,
        "",
    ] {
        assert_eq!(docker_config_name(bad.as_bytes()), None, "{bad:?}");
    }
    assert_eq!(
        docker_config_name(br#"{"Name":"noslash"}"#).as_deref(),
        Some("noslash")
    );
}

#[test]
fn a_missing_name_is_asked_again_after_the_retry() {
    let dir = TempDir::new("docker-retry");
    let mut files = HostFiles::new(dir.path());
    files.set_retry(Duration::from_millis(50));
    assert_eq!(files.docker_name(ID_A), None);
    docker_config(&dir, ID_A, r#"{"Name":"/late"}"#);
    // Within the retry interval the miss is remembered …
    assert_eq!(files.docker_name(ID_A), None);
    std::thread::sleep(Duration::from_millis(80));
    // … after it the file is read again.
    assert_eq!(files.docker_name(ID_A).as_deref(), Some("late"));
}

#[test]
fn podman_and_crio_names_from_containers_storage() {
    let dir = TempDir::new("storage");
    dir.write(
        "var/lib/containers/storage/overlay-containers/containers.json",
        format!(
            r#"[{{"id":"{ID_A}","names":["web"],"image":"i","layer":"l","metadata":"{{}}"}},
                {{"id":"{ID_B}","names":["k8s_nginx_mypod_default_{POD_UID}_0"],"image":"i","layer":"l"}},
                {{"id":"nonames","image":"i","layer":"l"}},
                {{"names":["noid"]}}]"#
        ),
    );
    let mut files = HostFiles::new(dir.path());
    assert_eq!(files.podman_name(ID_A).as_deref(), Some("web"));
    assert_eq!(files.crio_name(ID_B).as_deref(), Some("nginx"));
    assert_eq!(files.podman_name("nonames"), None);
    assert_eq!(files.podman_name(&"f".repeat(64)), None);

    // The volatile store counts too.
    let c = "c".repeat(64);
    dir.write(
        "var/lib/containers/storage/overlay-containers/volatile-containers.json",
        format!(r#"[{{"id":"{c}","names":["quick"]}}]"#),
    );
    let mut files = HostFiles::new(dir.path());
    assert_eq!(files.podman_name(&c).as_deref(), Some("quick"));
    assert_eq!(files.podman_name(ID_A).as_deref(), Some("web"));
}

#[test]
fn containers_storage_malformed_is_empty() {
    for bad in [
        "",
        "[",
        "{}",
        r#"[{"id": 1}]"#,
        r#"[{"id":"a","names":"web"}]"#,
        "null",
    ] {
        assert!(storage_names(bad.as_bytes()).is_empty(), "{bad:?}");
    }
    let dir = TempDir::new("storage-bad");
    dir.write(
        "var/lib/containers/storage/overlay-containers/containers.json",
        format!(r#"[{{"id":"{ID_A}","names":["we"#),
    );
    let mut files = HostFiles::new(dir.path());
    assert_eq!(files.podman_name(ID_A), None);
}

#[test]
fn pods_from_kubelet_log_directories() {
    let dir = TempDir::new("pods");
    dir.mkdir(&format!(
        "var/log/pods/kube-system_coredns-5d78c9869d-abcde_{POD_UID}/coredns"
    ));
    dir.mkdir("var/log/pods/default_web-0_11111111-2222-3333-4444-555555555555");
    // Not pod directories: ignored.
    dir.mkdir("var/log/pods/stray");
    dir.mkdir("var/log/pods/a_b_c_d");
    dir.write("var/log/pods/README", "x");
    let mut files = HostFiles::new(dir.path());
    let pod = files.pod(POD_UID).unwrap();
    assert_eq!(&*pod.namespace, "kube-system");
    assert_eq!(&*pod.name, "coredns-5d78c9869d-abcde");
    let pod = files.pod("11111111-2222-3333-4444-555555555555").unwrap();
    assert_eq!((&*pod.namespace, &*pod.name), ("default", "web-0"));
    assert_eq!(files.pod("c"), None);
    assert_eq!(files.pod("99999999-0000-0000-0000-000000000000"), None);
}

#[test]
fn no_pod_directory_is_none() {
    let dir = TempDir::new("no-pods");
    let mut files = HostFiles::new(dir.path());
    assert_eq!(files.pod(POD_UID), None);
    let mut files = HostFiles::new("/nonexistent/flow/root");
    assert_eq!(files.pod(POD_UID), None);
    assert_eq!(files.docker_name(ID_A), None);
    assert_eq!(files.podman_name(ID_A), None);
}

#[test]
fn pod_log_dir_names() {
    assert_eq!(
        pod_log_dir(&format!("default_web_{POD_UID}")),
        Some(("default", "web", POD_UID))
    );
    for bad in ["", "a", "a_b", "a_b_c_d", "_b_c", "a__c", "a_b_"] {
        assert_eq!(pod_log_dir(bad), None, "{bad:?}");
    }
}
