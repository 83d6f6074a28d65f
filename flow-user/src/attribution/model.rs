//! What a connection is attributed to: its cgroup, container (and pod) and systemd service.
//!
//! Values are shared: every connection of one container points at the same [`Container`] (and
//! every container of one pod at the same [`Pod`]), so attaching an [`Attribution`] to a
//! connection costs one `Arc` clone. They serialise as SPEC's JSON:
//! `"container": {"runtime": "docker", "id": "…", "name": "web", "pod": null}`.

use std::sync::Arc;

use serde::{Serialize, Serializer};

/// The container runtime a cgroup path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Containerd,
    Crio,
    Podman,
}

impl Runtime {
    /// The name JSON and the CLI print: `docker`, `containerd`, `crio`, `podman`.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "crio",
            Runtime::Podman => "podman",
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kubernetes pod: its uid from the cgroup path, namespace and name from the kubelet's files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Pod {
    #[serde(serialize_with = "shared")]
    pub uid: Arc<str>,
    #[serde(serialize_with = "shared_opt")]
    pub namespace: Option<Arc<str>>,
    #[serde(serialize_with = "shared_opt")]
    pub name: Option<Arc<str>>,
}

/// A container: runtime and id from the cgroup path, name from the runtime's files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Container {
    pub runtime: Runtime,
    #[serde(serialize_with = "shared")]
    pub id: Arc<str>,
    #[serde(serialize_with = "shared_opt")]
    pub name: Option<Arc<str>>,
    #[serde(serialize_with = "shared_opt")]
    pub pod: Option<Arc<Pod>>,
}

/// Everything a cgroup path says about the task that moved data on a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Attribution {
    /// The cgroup v2 path relative to the cgroup2 mount (`/system.slice/nginx.service`).
    #[serde(serialize_with = "shared_opt")]
    pub cgroup: Option<Arc<str>>,
    #[serde(serialize_with = "shared_opt")]
    pub container: Option<Arc<Container>>,
    /// The systemd unit the cgroup is (`nginx.service`), `None` for scopes, slices and others.
    #[serde(serialize_with = "shared_opt")]
    pub service: Option<Arc<str>>,
}

impl Attribution {
    /// The shared "nothing known" attribution (one allocation for every such connection).
    pub fn none() -> Arc<Attribution> {
        static NONE: std::sync::LazyLock<Arc<Attribution>> =
            std::sync::LazyLock::new(|| Arc::new(Attribution::default()));
        Arc::clone(&NONE)
    }

    /// True when nothing is known (no cgroup, no container, no service).
    pub fn is_empty(&self) -> bool {
        self.cgroup.is_none() && self.container.is_none() && self.service.is_none()
    }
}

// serde serialises `Arc<T>` only with its `rc` feature; these write the value behind the pointer
// (the JSON is the same) without turning that feature on for the whole build.
fn shared<T: Serialize + ?Sized, S: Serializer>(value: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
    (**value).serialize(s)
}

fn shared_opt<T: Serialize + ?Sized, S: Serializer>(
    value: &Option<Arc<T>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    value.as_deref().serialize(s)
}
