//! What a cgroup v2 path says by itself: container id and runtime, pod uid, systemd service.
//! Pure string work (no file is read), total over any input: never panics, never allocates more
//! than the path.
//!
//! Forms recognised (the systemd cgroup driver first, then cgroupfs):
//!
//! | component | means |
//! | --- | --- |
//! | `docker-<64 hex>.scope` | Docker container |
//! | `cri-containerd-<64 hex>.scope` | containerd (CRI) container |
//! | `crio-<64 hex>.scope`, `crio-<64 hex>` | CRI-O container (`crio-conmon-<id>.scope` is its monitor: not one) |
//! | `libpod-<64 hex>.scope`, `libpod-<64 hex>` | Podman container (`libpod-conmon-<id>.scope`: not one) |
//! | `<slice>:<cri-containerd\|docker\|crio\|libpod>:<64 hex>` | the same, named by a runtime using systemd names on cgroupfs (kind, k3s) |
//! | `<64 hex>` under `docker` | Docker container (`/docker/<id>`) |
//! | `<64 hex>` under a pod | a Kubernetes container whose runtime the path does not tell |
//! | `[kubelet-]kubepods[-besteffort\|-burstable]-pod<uid, _ for ->.slice` | Kubernetes pod |
//! | `pod<uid>` under `kubepods…` | Kubernetes pod (cgroupfs driver) |
//! | `<unit>.service` as the innermost systemd unit, no container below | the service |
//!
//! The innermost container wins (a Kubernetes node inside Docker, as kind runs it, attributes to
//! the pod's container, not the node's); the pod is the innermost one above it.

use super::model::Runtime;

/// A container named by a cgroup path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// `None` when the path does not say: a bare id under a cgroupfs-driver pod
    /// (`/kubepods/pod<uid>/<id>`) is containerd's or Docker's.
    pub runtime: Option<Runtime>,
    /// The runtime's container id (64 hex digits).
    pub id: String,
}

/// Everything one cgroup path says by itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupFacts {
    pub container: Option<ContainerRef>,
    /// The pod uid with dashes (`a1b2…-…`), also when no container was found below it.
    pub pod_uid: Option<String>,
    /// The systemd service the cgroup belongs to (`nginx.service`).
    pub service: Option<String>,
}

/// Reads a cgroup v2 path (`/system.slice/docker-<id>.scope`, as `/proc/<pid>/cgroup` shows it).
pub fn parse_cgroup_path(path: &str) -> CgroupFacts {
    let mut facts = CgroupFacts::default();
    let mut in_kubepods = false;
    let mut previous = "";
    // (index of the component, what it said)
    let mut container: Option<(usize, ContainerRef)> = None;
    let mut pods: Vec<(usize, String)> = Vec::new();
    let mut unit: Option<(usize, &str)> = None;

    for (index, component) in path.split('/').filter(|c| !c.is_empty()).enumerate() {
        let pod_here = !pods.is_empty() && pods.last().map(|(i, _)| *i + 1) == Some(index);
        if let Some((pod, found)) = joined_name(component) {
            if let Some(uid) = pod {
                pods.push((index, uid));
            }
            container = Some((index, found));
        } else if let Some(found) =
            scope_container(component).or_else(|| bare_container(component, previous, pod_here))
        {
            container = Some((index, found));
        } else if let Some(uid) = pod_component(component, in_kubepods) {
            pods.push((index, uid));
        }
        if component.contains("kubepods") {
            in_kubepods = true;
        }
        if is_unit(component) {
            unit = Some((index, component));
        }
        previous = component;
    }

    let container_index = container.as_ref().map(|(i, _)| *i);
    facts.pod_uid = match container_index {
        Some(at) => pods.iter().rev().find(|(i, _)| *i <= at),
        None => pods.last(),
    }
    .map(|(_, uid)| uid.clone());
    facts.container = container.map(|(_, c)| c);
    facts.service = match unit {
        Some((at, name))
            if name.ends_with(".service") && container_index.is_none_or(|c| at > c) =>
        {
            Some(name.to_string())
        }
        _ => None,
    };
    facts
}

/// 64 hex digits: what Docker, containerd, CRI-O and Podman use as container ids.
pub fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`, and
/// the cgroupfs forms `crio-<id>`, `libpod-<id>`.
fn scope_container(component: &str) -> Option<ContainerRef> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    let scoped = name.len() != component.len();
    const PREFIXES: [(&str, Runtime, bool); 4] = [
        // (prefix, runtime, also without `.scope`)
        ("docker-", Runtime::Docker, false),
        ("cri-containerd-", Runtime::Containerd, false),
        ("crio-", Runtime::Crio, true),
        ("libpod-", Runtime::Podman, true),
    ];
    PREFIXES.iter().find_map(|(prefix, runtime, bare)| {
        let id = name.strip_prefix(prefix)?;
        // `crio-conmon-<id>.scope` / `libpod-conmon-<id>.scope` fail here: not 64 hex.
        (is_container_id(id) && (scoped || *bare)).then(|| ContainerRef {
            runtime: Some(*runtime),
            id: id.to_string(),
        })
    })
}

/// `kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>`: systemd names used as one cgroupfs
/// directory. Returns the pod uid of the slice part too, when it is a pod slice.
fn joined_name(component: &str) -> Option<(Option<String>, ContainerRef)> {
    let mut parts = component.split(':');
    let (slice, prefix, id) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_container_id(id) {
        return None;
    }
    let runtime = match prefix {
        "cri-containerd" => Runtime::Containerd,
        "docker" => Runtime::Docker,
        "crio" => Runtime::Crio,
        "libpod" => Runtime::Podman,
        _ => return None,
    };
    let container = ContainerRef {
        runtime: Some(runtime),
        id: id.to_string(),
    };
    Some((pod_slice(slice), container))
}

/// `<id>` under `docker` (Docker's cgroupfs driver) or directly under a pod (the kubelet's
/// cgroupfs driver: containerd's or Docker's, the path does not say).
fn bare_container(component: &str, previous: &str, under_pod: bool) -> Option<ContainerRef> {
    if !is_container_id(component) {
        return None;
    }
    let runtime = if previous == "docker" {
        Some(Runtime::Docker)
    } else if under_pod {
        None
    } else {
        return None;
    };
    Some(ContainerRef {
        runtime,
        id: component.to_string(),
    })
}

/// A pod level: `kubepods-…-pod<uid>.slice` (systemd) or `pod<uid>` below a `kubepods` level
/// (cgroupfs).
fn pod_component(component: &str, in_kubepods: bool) -> Option<String> {
    pod_slice(component).or_else(|| {
        let uid = component.strip_prefix("pod")?;
        (in_kubepods && is_pod_uid(uid)).then(|| uid.to_string())
    })
}

/// `kubepods-pod<uid>.slice`, `kubepods-besteffort-pod<uid>.slice`, `kubepods-burstable-…`:
/// systemd escapes the uid's dashes as underscores.
fn pod_slice(component: &str) -> Option<String> {
    let name = component.strip_suffix(".slice")?;
    // `kubelet-kubepods-…` where the kubelet's cgroup root is `/kubelet` (kind).
    if !name.starts_with("kubepods-") && !name.contains("-kubepods-") {
        return None;
    }
    let last = name.rsplit('-').next()?;
    let uid = last.strip_prefix("pod")?.replace('_', "-");
    is_pod_uid(&uid).then_some(uid)
}

/// A pod uid: a UUID (36 characters) or, for static pods, a 32-digit hash; hex and dashes.
fn is_pod_uid(uid: &str) -> bool {
    (8..=64).contains(&uid.len()) && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// A systemd unit that can own a cgroup.
fn is_unit(component: &str) -> bool {
    [".service", ".scope", ".slice", ".socket", ".mount", ".swap"]
        .iter()
        .any(|suffix| {
            component
                .strip_suffix(suffix)
                .is_some_and(|n| !n.is_empty())
        })
}
